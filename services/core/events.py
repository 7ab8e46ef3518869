"""Domain events: what every process did, as frozen dataclasses in the incident's words.

The history (a Redis stream, :mod:`services.store.history`) is made of them; ``dnsrace check``
and the reports read them. Events speak the incident's words, never wire formats.

An event's time is passed in, never read here: the sink that records an event stamps it with
the sink's clock (the host's in a process, the logical one in the explorer), unless whoever
made the event passed ``at_ms`` because it knows better (an answer sampled before it is
queued for recording).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Self

from services.core.clock import Clock

_COMPACT = json.JSONEncoder(separators=(",", ":"))

UNSTAMPED = -1
"""``at_ms`` of an event no clock has stamped yet (every clock here counts from 0 upwards)."""


@dataclass(frozen=True, kw_only=True)
class Event:
    kind: ClassVar[str] = "event"
    at_ms: int = UNSTAMPED
    """When it happened, in ms of the clock of the sink that recorded it (or of the caller)."""
    source: str = ""

    def stamped(self, clock: Clock) -> Self:
        """This event at ``clock``'s time, unless it already has one."""
        if self.at_ms != UNSTAMPED:
            return self
        return dataclasses.replace(self, at_ms=clock.now_ms())

    def to_json(self) -> str:
        names = _FIELD_NAMES.get(type(self))
        if names is None:
            names = _FIELD_NAMES[type(self)] = tuple(f.name for f in dataclasses.fields(self))
        return _COMPACT.encode({"kind": self.kind, **{n: getattr(self, n) for n in names}})


_FIELD_NAMES: dict[type[Event], tuple[str, ...]] = {}
"""Each kind's field names, in order, looked up once (an enactor records one event per
endpoint)."""


_KINDS: dict[str, type[Event]] = {}


def _event(cls: type[Event]) -> type[Event]:
    _KINDS[cls.kind] = cls
    return cls


@_event
@dataclass(frozen=True, kw_only=True)
class PlanPublished(Event):
    kind: ClassVar[str] = "plan_published"
    generation: int


@_event
@dataclass(frozen=True, kw_only=True)
class CheckPassed(Event):
    """The enactor's one-time staleness check: plan ``generation`` is newer than ``applied``."""

    kind: ClassVar[str] = "check_passed"
    generation: int
    applied: int


@_event
@dataclass(frozen=True, kw_only=True)
class LockLost(Event):
    kind: ClassVar[str] = "lock_lost"
    endpoint: str
    generation: int
    reason: str
    backoff_s: float


@_event
@dataclass(frozen=True, kw_only=True)
class BatchCommitted(Event):
    """An endpoint's alias now names the tree of ``generation`` (was ``previous``)."""

    kind: ClassVar[str] = "batch_committed"
    endpoint: str
    generation: int
    previous: int
    rollback: int
    serial: int
    repaired: bool = False


@_event
@dataclass(frozen=True, kw_only=True)
class BatchRejected(Event):
    kind: ClassVar[str] = "batch_rejected"
    endpoint: str
    generation: int
    reason: str
    detail: str


@_event
@dataclass(frozen=True, kw_only=True)
class RoundCompleted(Event):
    """An enactor finished a round (walk and clean-up) for the plan of ``generation``."""

    kind: ClassVar[str] = "round_completed"
    generation: int
    committed: int
    rejected: int
    deleted: int


@_event
@dataclass(frozen=True, kw_only=True)
class PlanRefused(Event):
    kind: ClassVar[str] = "plan_refused"
    endpoint: str
    generation: int
    reason: str


@_event
@dataclass(frozen=True, kw_only=True)
class TreeDeleted(Event):
    """Clean-up deleted a tree; ``live`` when an alias or rollback named it at that moment."""

    kind: ClassVar[str] = "tree_deleted"
    tree: str
    endpoint: str
    generation: int
    live: bool
    serial: int


@_event
@dataclass(frozen=True, kw_only=True)
class Stalled(Event):
    kind: ClassVar[str] = "stalled"
    point: str
    endpoint: str
    generation: int
    fault_id: str


@_event
@dataclass(frozen=True, kw_only=True)
class Resumed(Event):
    kind: ClassVar[str] = "resumed"
    point: str
    endpoint: str
    generation: int
    fault_id: str


@_event
@dataclass(frozen=True, kw_only=True)
class FaultStarted(Event):
    kind: ClassVar[str] = "fault_started"
    fault_id: str
    type: str
    target: str
    expires_ms: int
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


@_event
@dataclass(frozen=True, kw_only=True)
class FaultEnded(Event):
    kind: ClassVar[str] = "fault_ended"
    fault_id: str
    type: str
    target: str
    why: str


@_event
@dataclass(frozen=True, kw_only=True)
class ProcessRestarted(Event):
    """The supervisor started a process again: after it crashed, or at a crash fault's end."""

    kind: ClassVar[str] = "process_restarted"
    process: str
    why: str
    """``crashed`` (it exited on its own, or was killed from outside) or ``fault``."""
    exit_code: int
    down_s: float


@_event
@dataclass(frozen=True, kw_only=True)
class AutomationSwitched(Event):
    """An operator turned the enactors' automation off (they stop applying plans) or on."""

    kind: ClassVar[str] = "automation_switched"
    on: bool


@_event
@dataclass(frozen=True, kw_only=True)
class DnsAnswer(Event):
    """A sampled answer: which generation stood behind it and how many addresses it held."""

    kind: ClassVar[str] = "dns_answer"
    endpoint: str
    generation: int
    addresses: int


@_event
@dataclass(frozen=True, kw_only=True)
class DwfmStarted(Event):
    """A DWFM host started, owning ``droplets`` droplets (the lease count C1 is judged on)."""

    kind: ClassVar[str] = "dwfm_started"
    host: str
    droplets: int


@_event
@dataclass(frozen=True, kw_only=True)
class LeaseLost(Event):
    """A droplet's lease expired: no renewal reached DynamoDB within the lease TTL."""

    kind: ClassVar[str] = "lease_lost"
    host: str
    droplet: str
    az: str


@_event
@dataclass(frozen=True, kw_only=True)
class LeaseRegained(Event):
    """Lease work for a droplet finished before its deadline: the droplet takes launches."""

    kind: ClassVar[str] = "lease_regained"
    host: str
    droplet: str
    az: str
    attempt: int


@_event
@dataclass(frozen=True, kw_only=True)
class OperatorAction(Event):
    """What the operators did by hand: ``dns_repair``, ``throttle``, ``restart``."""

    kind: ClassVar[str] = "operator_action"
    action: str
    target: str
    detail: str = ""


@_event
@dataclass(frozen=True, kw_only=True)
class CollapseSeen(Event):
    """DWFM's goodput stayed below 10 % of its healthy rate while DNS answered, from
    ``since_ms`` for ``lasted_s`` (recorded by whoever watched it: ``dnsrace cascade``)."""

    kind: ClassVar[str] = "collapse_seen"
    since_ms: int
    lasted_s: float


@_event
@dataclass(frozen=True, kw_only=True)
class InstanceLaunched(Event):
    """An instance was launched and queued for Network Manager's propagation (issue 15)."""

    kind: ClassVar[str] = "instance_launched"
    instance: str
    az: str


@_event
@dataclass(frozen=True, kw_only=True)
class NetworkPropagated(Event):
    """Network Manager propagated an instance's network state: it has connectivity."""

    kind: ClassVar[str] = "network_propagated"
    instance: str
    az: str


@_event
@dataclass(frozen=True, kw_only=True)
class TargetInService(Event):
    """The NLB's health checker put a target (an instance) in service."""

    kind: ClassVar[str] = "target_in_service"
    instance: str
    az: str
    nlb: str = ""


@_event
@dataclass(frozen=True, kw_only=True)
class AzFailedAway(Event):
    """Automatic AZ DNS failover took ``az``'s node out of the NLB's name (of ``azs`` AZs)."""

    kind: ClassVar[str] = "az_failed_away"
    nlb: str
    az: str
    azs: int
    max_share: float | None = None
    """The velocity limit configured when it happened (None: an older history; the default)."""
    window_s: float | None = None


def decode(raw: str) -> Event:
    data = json.loads(raw)
    cls = _KINDS[data.pop("kind")]
    return cls(**data)


class HistorySink(Protocol):
    async def record(self, event: Event) -> None: ...
    async def record_many(self, events: Sequence[Event]) -> None:
        """Record ``events`` in their order (one round-trip where the sink has a network)."""
        ...


class MemoryHistory:
    """A history kept in a list, stamped by the clock it is given; for tests."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.events: list[Event] = []
        self._recorded = asyncio.Event()

    async def record(self, event: Event) -> None:
        self.events.append(event.stamped(self.clock))
        self._recorded.set()

    async def record_many(self, events: Sequence[Event]) -> None:
        self.events.extend(event.stamped(self.clock) for event in events)
        self._recorded.set()

    async def wait_for(self, seen: Callable[[Event], bool], timeout_s: float) -> Event:
        """The first recorded event ``seen`` accepts, waiting up to ``timeout_s`` for it."""
        async def first() -> Event:
            checked = 0
            while True:
                for event in self.events[checked:]:
                    if seen(event):
                        return event
                checked = len(self.events)
                self._recorded.clear()
                await self._recorded.wait()
        return await asyncio.wait_for(first(), timeout_s)
