"""Errors a service catches, logs and survives: each one counted, none passed over in silence.

One family, ``dnsrace_errors_swallowed_total{where}``, for the places that have no family of
their own (a part's own counter, such as ``dnsrace_history_errors_total``, stays where it
says more). Each place takes its counter at import, at module level, so ``where`` is a fixed
set per process and every series starts at 0::

    READ_ERRORS = swallowed("fault_gate_read")
    ...
    except RedisError as e:
        READ_ERRORS.inc()
        log.warning("could not read faults: %s", e)
"""

from __future__ import annotations

import re

from prometheus_client import Counter

ERRORS_SWALLOWED = Counter(
    "dnsrace_errors_swallowed",
    "Errors caught, logged and survived (the work is retried or skipped), by where",
    ["where"],
)
_WHERE = re.compile(r"[a-z][a-z0-9_]{0,39}")


def swallowed(where: str) -> Counter:
    """The counter of one place that swallows errors, created at 0; call it at import."""
    if not _WHERE.fullmatch(where):
        raise ValueError(f"where={where!r}: a short snake_case name of the place, "
                         "e.g. fault_gate_read")
    return ERRORS_SWALLOWED.labels(where)
