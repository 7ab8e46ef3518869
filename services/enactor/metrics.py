"""The enactor's Prometheus metrics: one series set per AZ, every counter at zero from the start."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from services.core.records import RejectReason
from services.enactor.decisions import RefuseReason

PLANS_APPLIED = Counter("dnsrace_enactor_plans_applied_total",
                        "Plans walked to the end with at least one batch committed", ["az"])
AUTOMATION_ON = Gauge("dnsrace_enactor_automation_on",
                      "1 while the automation applies plans, 0 while an operator turned it off",
                      ["az"])
APPLY_SECONDS = Histogram("dnsrace_enactor_apply_seconds",
                          "Wall time to walk one plan over every endpoint", ["az"],
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
LOCKS = Counter("dnsrace_enactor_locks_total", "Endpoint lock attempts", ["az", "outcome"])
BACKOFF_SECONDS = Counter("dnsrace_enactor_backoff_seconds_total",
                          "Seconds spent backing off after losing a lock", ["az"])
REJECTED = Counter("dnsrace_enactor_batches_rejected_total",
                   "Change batches the zone refused, by reason", ["az", "reason"])
COMMITTED = Counter("dnsrace_enactor_batches_committed_total",
                    "Change batches committed (endpoint flips and clean-up deletions)",
                    ["az", "kind"])
REFUSED = Counter("dnsrace_enactor_plans_refused_total",
                  "Endpoint applies refused by plan validation", ["az", "reason"])
TREES_DELETED = Counter("dnsrace_enactor_trees_deleted_total",
                        "Trees deleted by clean-up; live=true when an alias still named it",
                        ["az", "live"])
CLEANUP_RACES = Counter("dnsrace_enactor_cleanup_races_total",
                        "Clean-up deletions another enactor had already made", ["az"])
APPLIED_GENERATION = Gauge("dnsrace_enactor_applied_generation",
                           "Generation this enactor last made the endpoint's alias name",
                           ["az", "endpoint"])
ROUND_ERRORS = Counter("dnsrace_enactor_round_errors_total",
                       "Rounds abandoned because Redis could not be reached", ["az"])
CHECKED_GENERATION = Gauge("dnsrace_enactor_checked_generation",
                           "Plan generation that passed this enactor's staleness check", ["az"])


def init_metrics(az: str) -> None:
    """Every counter series of this AZ at zero from the start, so rates exist before events."""
    for metric in (PLANS_APPLIED, APPLY_SECONDS, BACKOFF_SECONDS, CLEANUP_RACES, ROUND_ERRORS):
        metric.labels(az)
    for outcome in ("won", "lost"):
        LOCKS.labels(az, outcome)
    for reason in RejectReason:
        REJECTED.labels(az, reason)
    for kind in ("flip", "cleanup"):
        COMMITTED.labels(az, kind)
    for refusal in RefuseReason:
        REFUSED.labels(az, refusal)
    for live in ("true", "false"):
        TREES_DELETED.labels(az, live)
