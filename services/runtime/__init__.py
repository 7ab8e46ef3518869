"""What every process shares: service lifecycle, processes, embedded Redis, the cluster
supervisor, scraping, network namespaces."""
