"""The observability files of dnsrace (Prometheus config, Grafana provisioning, dashboard,
metric table) and the small modules that generate them."""
