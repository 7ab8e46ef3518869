"""Which name each request asks: the regional name, and a set share the others (issue 19).

The outage's clients did not all call the regional endpoint: some called the FIPS endpoint and
some their account's cell endpoint. ``load_other_share`` sends that share of the requests to
``dynamodb-fips`` and the account cells in turn; the rest ask the names given (the regional
name by default). The choice is a pure function of the request's sequence number, so a run
asks exactly ``floor(n * share)`` of its first ``n`` requests elsewhere, whatever the timing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.core.names import FIPS, cell_endpoint


def other_endpoints(cells: int) -> tuple[str, ...]:
    """The FIPS endpoint, then every account cell the planner plans for."""
    return (FIPS, *(cell_endpoint(i) for i in range(cells)))


@dataclass(frozen=True)
class NameMix:
    names: tuple[str, ...]
    """Asked in turn by the requests that are not in the share."""
    others: tuple[str, ...] = ()
    share: float = 0.0
    """Share of the requests that ask ``others`` (in turn), from 0 to 1."""

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError("give at least one name to resolve")
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"the share of other endpoints must be from 0 to 1, not {self.share}")
        if self.share > 0 and not self.others:
            raise ValueError("a share of other endpoints needs other endpoints")

    def name_for(self, seq: int) -> str:
        """The name request ``seq`` (from 0) asks."""
        if self.share > 0:
            before = math.floor(seq * self.share)
            if math.floor((seq + 1) * self.share) > before:
                return self.others[before % len(self.others)]
        return self.names[seq % len(self.names)]

    @property
    def all_names(self) -> tuple[str, ...]:
        return self.names + (self.others if self.share > 0 else ())
