"""Automatic AZ DNS failover and ``velocity_control``, as one pure decision.

The NLB's DNS name has one A record per AZ node. Automatic failover takes an AZ out of the name
when its healthy share falls below ``threshold``, and puts it back once it is at or above it.
On 20 October 2025 flapping health checks made failover remove capacity that was fine.

``velocity_control`` (AWS's third announced fix): an NLB never removes more than
``max_share`` of its AZs within ``window_s``, and never its last AZ. The operators' action of
the day, ``dnsrace nlb failover off``, puts every AZ back and stops removals.

:func:`decide` takes the AZs' healthy shares, the AZs in the name, the recent removals and
``now_s``; it returns the AZs the name should hold and what changed. No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.core.cascade_invariants import C3_MAX_SHARE, C3_WINDOW_S, velocity_budget


@dataclass(frozen=True)
class FailoverSettings:
    threshold: float = 0.5
    """An AZ whose healthy share is below this is failed away from."""
    enabled: bool = True
    """Automatic failover on (``dnsrace nlb failover off`` turns it off)."""
    velocity_control: bool = False
    """The fix: limit how much capacity failover removes."""
    max_share: float = C3_MAX_SHARE
    """With ``velocity_control``: at most this share of the AZs removed within ``window_s``."""
    window_s: float = C3_WINDOW_S

    def __post_init__(self) -> None:
        if not 0 <= self.threshold <= 1 or not 0 < self.max_share <= 1 or self.window_s <= 0:
            raise ValueError("threshold in [0, 1], max_share in (0, 1], window_s > 0")


@dataclass(frozen=True)
class Removal:
    az: str
    at_s: float


@dataclass(frozen=True)
class Decision:
    in_name: tuple[str, ...]
    """The AZs whose node's A record the name holds after this decision (in the AZs' order)."""
    removed: tuple[str, ...] = ()
    restored: tuple[str, ...] = ()
    held_back: tuple[str, ...] = ()
    """Unhealthy AZs ``velocity_control`` kept in the name."""


def decide(
    shares: Mapping[str, float | None],
    in_name: Sequence[str],
    removals: Sequence[Removal],
    now_s: float,
    settings: FailoverSettings,
) -> Decision:
    """The AZs the name should hold. ``shares``: each AZ's healthy share (None: no targets, kept
    as it is); ``removals``: failover's earlier removals (for the velocity window)."""
    azs = list(shares)
    current = [az for az in azs if az in in_name]
    if not settings.enabled:
        restored = tuple(az for az in azs if az not in current)
        return Decision(tuple(azs), restored=restored)
    healthy = {az for az, s in shares.items() if s is None or s >= settings.threshold}
    restored = tuple(az for az in azs if az not in current and az in healthy)
    keep = set(current) | set(restored)
    want_out = [az for az in azs if az in keep and az not in healthy]
    removed: list[str] = []
    held: list[str] = []
    if settings.velocity_control:
        recent = sum(1 for r in removals if now_s - r.at_s < settings.window_s)
        budget = max(0, velocity_budget(len(azs), settings.max_share) - recent)
        for az in sorted(want_out, key=lambda a: shares[a] or 0.0):
            if budget > 0 and len(keep) > 1:
                keep.discard(az)
                removed.append(az)
                budget -= 1
            else:
                held.append(az)
    else:
        for az in want_out:
            keep.discard(az)
            removed.append(az)
    return Decision(
        tuple(az for az in azs if az in keep),
        removed=tuple(az for az in azs if az in removed),
        restored=restored,
        held_back=tuple(az for az in azs if az in held),
    )
