"""``dnsrace up --isolate``: the cluster in network namespaces, relays, compose."""
