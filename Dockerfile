# The dnsrace image: every node container of docker-compose.yml runs it
# ("python -m services.isolate.cluster node NAME" starts that node's processes);
# 'docker compose up --build' builds it as dnsrace:latest.
#
# iproute2: an AZ node adds its load balancers' addresses to eth0 (with NET_ADMIN);
# dnsutils: dig, to look at the cluster's DNS from inside a container.
FROM python:3.11-slim-bookworm

RUN apt-get update \
    && apt-get install -y --no-install-recommends iproute2 dnsutils \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md Procfile ./
COPY services ./services
COPY dns_server ./dns_server
COPY loadgen ./loadgen
COPY dashboards ./dashboards
RUN pip install --no-cache-dir -e . && mkdir -p /var/lib/dnsrace

ENV PYTHONUNBUFFERED=1 DNSRACE_STATE_DIR=/var/lib/dnsrace
STOPSIGNAL SIGTERM
CMD ["python", "-m", "services.isolate.cluster", "node", "regional"]
