"""The NLB process's metrics beside the ones services.nlb.service declares (issue 15, part 2)."""

from __future__ import annotations

from prometheus_client import Counter

TARGETS_FAILED = Counter(
    "dnsrace_nlb_targets_failed",
    "Targets the health checker took out of service after failing checks (in service before)")
