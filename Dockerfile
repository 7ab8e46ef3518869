# The dnsrace image: every container of 'dnsrace up --containers', docker-compose.yml and
# deploy/kubernetes/ runs it, one process each (services/containers/entry.py); alone,
# 'docker run dnsrace' runs the whole cluster in one container (dnsrace up).
#
#   docker build -t dnsrace .                              (python:3.12-slim, packages from PyPI)
#   docker build --build-arg BASE=localhost/bookworm-py \
#       --build-arg APT_PACKAGES= -t dnsrace .             (a base made offline; see below)
#
# Offline (no registry reachable): put a wheelhouse beside this file first,
# `pip wheel -w wheelhouse . async-timeout` (async-timeout: redis needs it on Python < 3.11.3,
# as bookworm's 3.11.2), and the image installs from it with --no-index.
# iproute2: ip, to look at a container's addresses; dnsutils: dig, to look at the cluster's
# DNS from inside a container.
ARG BASE=python:3.12-slim
FROM ${BASE}

ARG APT_PACKAGES="iproute2 dnsutils"
RUN if [ -n "$APT_PACKAGES" ]; then apt-get update \
        && apt-get install -y --no-install-recommends $APT_PACKAGES \
        && rm -rf /var/lib/apt/lists/*; fi \
    && python3 -m venv /opt/dnsrace \
    && useradd --system --create-home --home-dir /var/lib/dnsrace dnsrace

# Dependencies in their own layer: it is rebuilt only when pyproject.toml changes.
COPY pyproject.toml wheelhouse* /build/
RUN cd /build && if [ -d wheelhouse ] || ls *.whl >/dev/null 2>&1; then \
        set -- --no-index --find-links /build; fi \
    && python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml','rb'))['project']['dependencies']))" > deps.txt \
    && /opt/dnsrace/bin/pip install --no-cache-dir "$@" -r deps.txt

COPY . /src
RUN cd /build && if [ -d /src/wheelhouse ]; then \
        /opt/dnsrace/bin/pip install --no-cache-dir --no-deps --no-index \
            --find-links /src/wheelhouse dnsrace; \
    else /opt/dnsrace/bin/pip install --no-cache-dir --no-deps /src; fi \
    && rm -rf /src /build

USER dnsrace
WORKDIR /var/lib/dnsrace
ENV PATH=/opt/dnsrace/bin:$PATH PYTHONUNBUFFERED=1 DNSRACE_STATE_DIR=/var/lib/dnsrace
# Every service answers /healthz on its metrics port; HEALTH_PORT says which (9510: the planner).
ENV HEALTH_PORT=9510
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
    CMD python3 -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['HEALTH_PORT'], timeout=2)"
STOPSIGNAL SIGTERM
CMD ["dnsrace", "up"]
