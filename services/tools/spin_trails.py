"""Spin's counterexamples played against the real code, under the explorer.

The model checker (:mod:`services.modelcheck`) and the explorer (:mod:`services.explorer`)
may not import each other; this is where the CLI and the tests put them together. A trail is
fitted to the explorer's timing by :func:`services.modelcheck.translate.translate`, with a
:class:`WatchedLab` whose history also goes to the translating chooser; the result is a
plain choice string that ``dnsrace explore --replay`` plays back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import uvloop

from services.core import events
from services.explorer.command import lab_of, quiet_enactor_logs, redis_url
from services.explorer.search import replay
from services.explorer.world import ACTORS, ExploreConfig, Lab, ScheduleRecord
from services.modelcheck.spin import Cell, Searched, Sizes
from services.modelcheck.trail import read_trail
from services.modelcheck.translate import (
    Played,
    TrailChooser,
    Translation,
    Untranslatable,
    translate,
)


@dataclass
class WatchedLab(Lab):
    """A lab whose actors' history is also shown to an observer, as it is recorded."""

    observer: Callable[[int, events.Event], None] | None = None

    def record(self, actor: int, event: events.Event) -> None:
        super().record(actor, event)
        if self.observer is not None:
            self.observer(actor, event)


def explorer_config(cell: Cell, sizes: Sizes) -> ExploreConfig:
    """The explorer's configuration for the world and the cell Spin searched."""
    if sizes.enactors != len(ACTORS) - 1:
        raise ValueError(f"the explorer runs {len(ACTORS) - 1} enactors, not {sizes.enactors}")
    if cell.invariant is None:
        raise ValueError("a cell with no invariant has no counterexample to replay")
    # The model walks one endpoint at a time: its trails replay on the cluster's walk at
    # window 1 (the same state machine, each window settled before the next read).
    return ExploreConfig(mode=cell.mode, protections=cell.active, plans=sizes.plans,
                         endpoints=sizes.endpoints, cleanup_age=sizes.cleanup_age,
                         invariants=(cell.invariant,), window=1)


@dataclass
class Replayed:
    """A trail fitted to the real code, and the plain replay of the schedule found."""

    config: ExploreConfig
    translation: Translation
    record: ScheduleRecord
    """What ``dnsrace explore --replay <choices>`` does: the choices alone, no observer."""


async def replay_trail(url: str, cell: Cell, trail: Sequence[str], sizes: Sizes) -> Replayed:
    """Fit one counterexample (the model's ``MC`` lines) to the explorer (Untranslatable if
    no schedule does what it did), then replay the schedule found with the explorer's own
    replay."""
    config = explorer_config(cell, sizes)
    async with lab_of(WatchedLab, url, config, "spin") as lab:

        async def play(chooser: TrailChooser) -> Played:
            lab.observer = chooser.observe
            try:
                return await lab.run(chooser)
            finally:
                lab.observer = None

        translation = await translate(read_trail(trail), play, sizes.endpoints)
        record = await replay(lab, translation.choices)
    return Replayed(config, translation, record)


def replay_trails(cells: list[Searched], sizes: Sizes
                  ) -> list[tuple[Searched, Replayed | Untranslatable]]:
    """Every broken cell's trail against the real code, on ``DNSRACE_REDIS_URL`` or an
    embedded Redis of its own."""
    async def all_of_them(url: str) -> list[tuple[Searched, Replayed | Untranslatable]]:
        done: list[tuple[Searched, Replayed | Untranslatable]] = []
        for searched in cells:
            try:
                done.append((searched, await replay_trail(url, searched.cell, searched.trail,
                                                          sizes)))
            except Untranslatable as e:
                done.append((searched, e))
        return done

    with redis_url() as url, quiet_enactor_logs():
        return uvloop.run(all_of_them(url))
