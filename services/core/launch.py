"""EC2's RunInstances as both sides speak it: the error codes and the outcome of one launch.

ec2_api (``services.ec2.api``) answers with these codes; the load generator's launch client
(``loadgen.launches``) counts what it gets by :class:`LaunchOutcome`. Pure: no I/O.
"""

from __future__ import annotations

import enum
from typing import Any

RUN_INSTANCES_PATH = "/RunInstances"
INSUFFICIENT_CAPACITY = "InsufficientInstanceCapacity"
"""No droplet with a lease and room (the symptom from 11:48 PM PDT on)."""
REQUEST_LIMIT_EXCEEDED = "RequestLimitExceeded"
"""The launch was throttled (what launches answered after 4:14 AM PDT)."""
INVALID_PARAMETER = "InvalidParameterValue"
INTERNAL_ERROR = "InternalError"
STATUS = {
    INSUFFICIENT_CAPACITY: 500,
    REQUEST_LIMIT_EXCEEDED: 503,
    INVALID_PARAMETER: 400,
    INTERNAL_ERROR: 500,
}
"""The HTTP status ec2_api answers each error code with (EC2's own)."""


class LaunchOutcome(enum.StrEnum):
    """How one launch ended: the bounded ``outcome`` label of ``dnsrace_ec2_launches_total``."""

    OK = "ok"
    INSUFFICIENT_CAPACITY = "insufficient_capacity"
    REQUEST_LIMIT_EXCEEDED = "request_limit_exceeded"
    ERROR = "error"
    """Any other answer: a bad request, an internal error, an unreadable body."""
    CONNECT_ERROR = "connect_error"
    TIMEOUT = "timeout"


_BY_CODE = {
    INSUFFICIENT_CAPACITY: LaunchOutcome.INSUFFICIENT_CAPACITY,
    REQUEST_LIMIT_EXCEEDED: LaunchOutcome.REQUEST_LIMIT_EXCEEDED,
}


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"Error": {"Code": code, "Message": message}}


def outcome_of(status: int, body: object) -> LaunchOutcome:
    """The outcome of an answer from ec2_api (``body``: the decoded JSON, or None)."""
    if status == 200 and isinstance(body, dict) and body.get("Instances"):
        return LaunchOutcome.OK
    error = body.get("Error") if isinstance(body, dict) else None
    code = error.get("Code") if isinstance(error, dict) else None
    return _BY_CODE.get(str(code), LaunchOutcome.ERROR)
