#!/usr/bin/env bash
# A ramp: climb linearly to RATE over RAMP seconds, then hold it until SECONDS have passed.
# Usage: loadgen/scripts/ramp.sh [RATE] [RAMP] [SECONDS]
set -euo pipefail
rate="${1:-2000}"
ramp="${2:-20}"
seconds="${3:-40}"
exec dnsrace loadgen --rate "$rate" --ramp "$ramp" --duration "$seconds" --metrics-port 0 \
    --operation mixed --summary-json "ramp-${rate}rps.json"
