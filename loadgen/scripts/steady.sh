#!/usr/bin/env bash
# Steady load: a constant arrival rate on the regional name, bounded in time.
# Usage: loadgen/scripts/steady.sh [RATE] [SECONDS]   (against a cluster started by 'dnsrace up')
set -euo pipefail
rate="${1:-200}"
seconds="${2:-60}"
exec dnsrace loadgen --rate "$rate" --duration "$seconds" --ramp 2 --metrics-port 0 \
    --summary-json "steady-${rate}rps.json"
