"""The EC2 launch record in Redis: what ec2_api launched, and how long Network Manager's queue is.

The contract between the EC2 launch API (issue 14, ``services.ec2.api``) and Network Manager
(issue 15): both sides use this module, never the key names.

- Every successful launch is appended by ec2_api to the stream :data:`LAUNCHES_STREAM` with the
  fields ``instance_id``, ``az``, ``droplet``, ``at_ms`` (the launch's time, ms of ec2_api's
  clock) and ``slot`` (the instance's number in its AZ, counted by Redis in :data:`SLOTS_KEY` as
  the entry is added). Network Manager reads it to know what to propagate; the AZ's instances
  and the NLB both take the instance's address from its slot, so they agree on it whenever each
  of them started reading.
- Network Manager keeps its backlog of network-state propagations in :data:`NETMGR_BACKLOG_KEY`
  (an integer; absent means 0). Under ``queue_throttle`` ec2_api answers
  ``RequestLimitExceeded`` while that backlog is longer than ``DNSRACE_EC2_NETMGR_BACKLOG_LIMIT``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import redis.asyncio as aioredis

from services.core.addresses import MAX_INSTANCES, instance_address
from services.core.names import AZS
from services.errors import DnsraceError

log = logging.getLogger(__name__)

LAUNCHES_STREAM = "dnsrace:ec2:launches"
NETMGR_BACKLOG_KEY = "dnsrace:netmgr:backlog"
SLOTS_KEY = "dnsrace:ec2:slots"
"""A Redis hash: AZ -> how many instances were launched there (the next slot)."""
PROPAGATED_KEY = "dnsrace:netmgr:propagated"
"""A Redis hash Network Manager writes: instance id -> ms its network state propagated (the
instances and the NLB read it)."""
STREAM_MAXLEN = 100_000
"""The stream is capped at about this many launches (XADD MAXLEN ~)."""


class LaunchRecordError(DnsraceError, ValueError):
    """A stream entry or backlog value that does not follow the contract."""


@dataclass(frozen=True)
class Launch:
    """One instance placed on a droplet by ec2_api."""

    instance_id: str
    az: str
    droplet: str
    at_ms: int
    slot: int | None = None
    """The instance's number in its AZ (its address's); None until :func:`append_launch`."""

    def fields(self) -> dict[str, str]:
        out = {
            "instance_id": self.instance_id,
            "az": self.az,
            "droplet": self.droplet,
            "at_ms": str(self.at_ms),
        }
        if self.slot is not None:
            out["slot"] = str(self.slot)
        return out

    @classmethod
    def parse(cls, fields: dict[str, str]) -> Launch:
        try:
            launch = cls(
                fields["instance_id"], fields["az"], fields["droplet"], int(fields["at_ms"]),
                int(fields["slot"]),
            )
        except (KeyError, ValueError, TypeError) as e:
            raise LaunchRecordError(f"not a launch record: {fields!r} ({e})") from None
        if not (launch.instance_id and launch.az and launch.droplet):
            raise LaunchRecordError(f"not a launch record: {fields!r} (empty field)")
        if launch.at_ms < 0 or (launch.slot or 0) < 0:
            raise LaunchRecordError(f"not a launch record: {fields!r} (negative number)")
        return launch


def address_of(launch: Launch) -> str | None:
    """The loopback address the instance listens on and the NLB checks, from its AZ and slot;
    None (logged) for a launch no address can be given to: the AZ's instances and the NLB
    skip the same launches."""
    if launch.az not in AZS or launch.slot is None or not 0 <= launch.slot < MAX_INSTANCES:
        log.warning("launch %s has no address: slot %s in %s", launch.instance_id, launch.slot,
                    launch.az)
        return None
    return instance_address(launch.az, launch.slot)


# The slot is counted and the entry added in one step: two appends can never share a slot.
_APPEND = """
local slot = redis.call('HINCRBY', KEYS[2], ARGV[2], 1) - 1
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[5], '*',
    'instance_id', ARGV[1], 'az', ARGV[2], 'droplet', ARGV[3], 'at_ms', ARGV[4], 'slot', slot)
return {id, slot}
"""


async def append_launch(
    client: aioredis.Redis, launch: Launch, key: str = LAUNCHES_STREAM, slots_key: str = SLOTS_KEY
) -> tuple[str, Launch]:
    """Append ``launch`` to the stream, numbered in its AZ; returns its stream id and the
    launch as recorded (with its slot), as :func:`read_launches` gives it back."""
    entry_id, slot = await client.eval(
        _APPEND, 2, key, slots_key, launch.instance_id, launch.az, launch.droplet,
        str(launch.at_ms), str(STREAM_MAXLEN))
    return str(entry_id), dataclasses.replace(launch, slot=int(slot))


async def read_launches(
    client: aioredis.Redis,
    after: str = "0-0",
    count: int = 1000,
    block_ms: int | None = None,
    key: str = LAUNCHES_STREAM,
) -> list[tuple[str, Launch]]:
    """Launches after stream id ``after`` (oldest first), at most ``count``.

    ``block_ms``: wait up to that long for a first one (``None``: do not wait). An entry that
    does not follow the contract is logged and skipped, so one bad writer stops no reader.
    """
    answer = await client.xread({key: after}, count=count, block=block_ms)
    out: list[tuple[str, Launch]] = []
    for _stream, entries in answer or ():
        for entry_id, fields in entries:
            try:
                out.append((entry_id, Launch.parse(fields)))
            except LaunchRecordError as e:
                log.warning("launch stream entry %s skipped: %s", entry_id, e)
    return out


async def netmgr_backlog(client: aioredis.Redis, key: str = NETMGR_BACKLOG_KEY) -> int:
    """Network Manager's backlog of propagations (0 when it never wrote one)."""
    raw = await client.get(key)
    if raw is None:
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise LaunchRecordError(f"{key} holds {raw!r}, not an integer") from None
    return max(0, value)


async def set_netmgr_backlog(
    client: aioredis.Redis, backlog: int, key: str = NETMGR_BACKLOG_KEY
) -> None:
    """Network Manager's side: publish the current backlog."""
    if backlog < 0:
        raise LaunchRecordError(f"a backlog is >= 0, not {backlog}")
    await client.set(key, str(backlog))
