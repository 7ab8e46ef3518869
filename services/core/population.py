"""The fleet as a population: which virtual clients are failing, and how fast that spread.

Pure: the caller passes each request's completion time and whether it failed; nothing here
reads a clock.  A client is *failing* when its last request failed.  From the share of the
fleet failing over time come the run's three figures:

- ``peak_share``: the largest share of the fleet failing at once;
- ``ramp_s``: the rise time of the first episode that reached 90 % failing: from the last
  moment 10 % or fewer were failing (with a clean fleet, the first failing client's moment,
  sampled) to 90 % failing; a step is 0; ``None`` if the share never reached 90 %.  The 10 %
  floor keeps a few clients that failed long before (a connection error at start-up, say)
  from stretching the ramp back to them;
- ``recovery_ramp_s``: from the last moment 90 % were failing to the share falling to 10 %
  or less; ``None`` if it never reached 90 %, or never came back down.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FAILING_HIGH = 0.9
"""The share counted as "the fleet is failing"."""
RECOVERED_LOW = 0.1
"""The share counted as "the fleet has recovered"."""


@dataclass(frozen=True)
class PopulationOutcome:
    clients: int
    peak_share: float
    ramp_s: float | None
    recovery_ramp_s: float | None

    def as_json(self) -> dict[str, float | None]:
        return {"peak_share": round(self.peak_share, 4),
                "ramp_s": None if self.ramp_s is None else round(self.ramp_s, 3),
                "recovery_ramp_s": (None if self.recovery_ramp_s is None
                                    else round(self.recovery_ramp_s, 3))}


@dataclass
class Population:
    """The fleet's failing set and the history of its share (one point per change)."""

    clients: int
    failing: set[int] = field(default_factory=set)
    history: list[tuple[float, float]] = field(default_factory=list)
    """(time, share failing) each time the share changed, in the order recorded."""

    def __post_init__(self) -> None:
        if isinstance(self.clients, bool) or not isinstance(self.clients, int) or self.clients < 1:
            raise ValueError(f"a population needs at least one client, got {self.clients!r}")

    def record(self, client: int, t: float, failed: bool) -> None:
        """Client ``client``'s request ended at ``t``; it failed or not."""
        if not 0 <= client < self.clients:
            raise ValueError(f"client {client} is not one of the {self.clients} clients")
        before = len(self.failing)
        if failed:
            self.failing.add(client)
        else:
            self.failing.discard(client)
        if len(self.failing) != before:
            self.history.append((t, self.share))

    @property
    def share(self) -> float:
        return len(self.failing) / self.clients

    def outcome(self) -> PopulationOutcome:
        return outcome_of(self.history, self.clients)


def outcome_of(history: list[tuple[float, float]], clients: int) -> PopulationOutcome:
    """The peak and the two ramps of a share-over-time history (see the module's text)."""
    peak = max((share for _, share in history), default=0.0)
    ramp_s: float | None = None
    recovery_s: float | None = None
    started: float | None = history[0][0] if history else None
    high_index: int | None = None
    for i, (t, share) in enumerate(history):
        if share <= RECOVERED_LOW:
            started = t
        if share >= FAILING_HIGH and started is not None:
            ramp_s = t - started
            high_index = i
            break
    if high_index is not None:
        last_high: float | None = None
        for t, share in history[high_index:]:
            if share >= FAILING_HIGH:
                last_high = t
                recovery_s = None
            elif share <= RECOVERED_LOW and last_high is not None and recovery_s is None:
                recovery_s = t - last_high
        # a later relapse to 90 % without coming back down leaves recovery_s None
    return PopulationOutcome(clients, peak, ramp_s, recovery_s)


@dataclass(frozen=True)
class FleetEvents:
    """When the outage reached the fleet and when the fleet came back, in seconds on the
    run's clock, measured from the events rather than from the scenario's start.

    - ``empty_at_s``: the first empty answer DNS polling saw (our server, no cache);
    - ``failing_90_at_s``: the first moment 90 % or more of the fleet was failing;
    - ``repair_at_s``: when the operators' repair was done;
    - ``recovered_at_s``: the first moment at or after the repair, once the fleet had reached
      90 % failing, that 10 % or fewer were failing.
    """

    empty_at_s: float | None
    failing_90_at_s: float | None
    repair_at_s: float | None
    recovered_at_s: float | None

    def as_json(self) -> dict[str, float | None]:
        return {key: None if value is None else round(value, 3)
                for key, value in vars(self).items()}


def fleet_events(empty_polls: list[float], history: list[tuple[float, float]],
                 repair_at_s: float | None) -> FleetEvents:
    """The fleet's event times from the empty polls' times, the share-over-time ``history``
    (time, share failing) and the repair's time (None: no repair)."""
    empty_at = min(empty_polls, default=None)
    high_at = next((t for t, share in history if share >= FAILING_HIGH), None)
    recovered_at: float | None = None
    if high_at is not None and repair_at_s is not None:
        recovered_at = next((t for t, share in history
                             if t >= max(repair_at_s, high_at) and share <= RECOVERED_LOW), None)
    return FleetEvents(empty_at, high_at, repair_at_s, recovered_at)
