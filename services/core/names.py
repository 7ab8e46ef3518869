"""The names of things in the zone, in one place.

The zone is ``us-east-1.amazonaws.com``. Every endpoint ``E`` owns:

- ``E`` itself: the **root alias** (type ALIAS) naming the active tree;
- ``plan-<G>.E``: the **tree** of plan generation ``G`` (type A, one record per load balancer);
- ``_rollback.E``: the **rollback** alias naming the previous tree;
- ``_lock.E``: the **lock** (type TXT) holding the holder and its expiry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ZONE = "us-east-1.amazonaws.com"
REGIONAL = f"dynamodb.{ZONE}"
FIPS = f"dynamodb-fips.{ZONE}"
DUALSTACK = f"dynamodb.dualstack.{ZONE}"
NAMED_ENDPOINTS: tuple[str, ...] = (REGIONAL, FIPS, DUALSTACK)
AZS: tuple[str, ...] = ("use1-az1", "use1-az2", "use1-az4")

TARGET_PREFIX = "DynamoDB_20120810."
"""DynamoDB's JSON protocol: ``X-Amz-Target`` is this prefix and the operation's name."""
DEFAULT_TABLE = "dnsrace"
"""The table that exists from the start, so that load clients need no set-up."""
DEFAULT_HASH_KEY = "pk"

GENERATION_OPTION = 65001
"""EDNS option (local-use range, RFC 6891) in which the DNS server tells an EDNS client the
plan generation behind an endpoint's answer, so that clients can see stale answers (I2).
Resolvers that do not know it ignore it."""

TREE_PREFIX = "plan-"
ROLLBACK_PREFIX = "_rollback."
LOCK_PREFIX = "_lock."
_TREE_RE = re.compile(r"^plan-(\d+)\.(.+)$")


ACCOUNT_STRIDE = 7_919_133_511
"""Cell ``i``'s account id is ``FIRST_ACCOUNT + i * ACCOUNT_STRIDE`` modulo the ids' range: the
stride shares no factor with 9 x 10^11, so no two cells share an id, and the ids' digits all
vary as real account ids' do. Ids counting up from one value differ only in their last digits,
and Redis's Lua 5.1 hashes a long string from every second or third byte only: 100,000 such
names had 993 distinct hashes, and interning each Lua string walked chains of hundreds."""
FIRST_ACCOUNT = 100_000_000_000
ACCOUNTS = 900_000_000_000


def cell_endpoint(index: int) -> str:
    """An account-based cell endpoint (``<account-id>.ddb.<region>.amazonaws.com``)."""
    return f"{FIRST_ACCOUNT + index * ACCOUNT_STRIDE % ACCOUNTS:012d}.ddb.{ZONE}"


def endpoints(cells: int) -> tuple[str, ...]:
    """Every endpoint the planner plans for: the named three, then the cells, in walk order."""
    return NAMED_ENDPOINTS + tuple(cell_endpoint(i) for i in range(cells))


def tree_name(generation: int, endpoint: str) -> str:
    return f"{TREE_PREFIX}{generation}.{endpoint}"


def rollback_name(endpoint: str) -> str:
    return ROLLBACK_PREFIX + endpoint


def lock_name(endpoint: str) -> str:
    return LOCK_PREFIX + endpoint


@dataclass(frozen=True)
class TreeId:
    generation: int
    endpoint: str

    @property
    def name(self) -> str:
        return tree_name(self.generation, self.endpoint)


def parse_tree(name: str) -> TreeId | None:
    """The (generation, endpoint) of a tree name, or None if the name is not a tree."""
    match = _TREE_RE.match(name)
    if match is None:
        return None
    return TreeId(int(match.group(1)), match.group(2))


def endpoint_label(endpoint: str) -> str:
    """A bounded metric label: the named endpoints by role, every cell as ``cell``."""
    return {REGIONAL: "regional", FIPS: "fips", DUALSTACK: "dualstack"}.get(endpoint, "cell")
