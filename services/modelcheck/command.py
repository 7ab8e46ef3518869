"""``dnsrace model-check``: Spin's exhaustive verdict on every cell of the protection matrix.

The rows come from the explorer's ``MATRIX_ROWS`` (handed in by ``services.tools.cli``), so
``dnsrace model-check --json`` and ``dnsrace explore --matrix --json`` print the same map
over the same protection sets.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from services.core.invariants import ALL_INVARIANTS, Invariant
from services.core.verdicts import ALL_NAME
from services.modelcheck.matrix import Checked, Row, check_matrix, checked_json, print_checked
from services.modelcheck.spin import (
    MAX_DEPTH,
    MODEL,
    ModelCheckError,
    Searched,
    Sizes,
    spin_version,
)
from services.modelcheck.trail import explorer_choices, read_trail, tell
from services.modelcheck.translate import Played, Translation, Untranslatable

MODEL_SWITCHES = ("EMPTY_PLANS", "FULL_VIEW")
DESCRIPTION = ("check the Promela model of the planner and enactors (models/dnsrace.pml) with "
               "Spin, exhaustively, for every protection set of 'dnsrace explore --matrix' and "
               "each invariant alone")


def _invariants(text: str) -> tuple[Invariant, ...]:
    try:
        chosen = {Invariant(i.strip().upper()) for i in text.split(",") if i.strip()}
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invariants are a comma list of {', '.join(ALL_INVARIANTS)}") from None
    return tuple(i for i in ALL_INVARIANTS if i in chosen)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plans", type=int, default=4, help="plans the planner publishes (4)")
    parser.add_argument("--endpoints", type=int, default=2,
                        help="endpoints, regional first, then FIPS, dual-stack (2; at most 3)")
    parser.add_argument("--enactors", type=int, default=3, help="enactors, one per AZ (3)")
    parser.add_argument("--cleanup-age", type=int, default=2,
                        help="clean-up deletes trees this many generations older (2)")
    parser.add_argument("--invariants", type=_invariants, default=ALL_INVARIANTS,
                        help="the invariants, each checked alone (I1,I2,I3)")
    parser.add_argument("--max-depth", type=int, default=MAX_DEPTH,
                        help=f"pan's -m: a search that needs more fails (default {MAX_DEPTH})")
    parser.add_argument("--model", type=Path, default=MODEL, help="the Promela model")
    parser.add_argument("--define", action="append", default=[], metavar="NAME",
                        choices=MODEL_SWITCHES,
                        help="a switch of the model (repeatable): EMPTY_PLANS lets the planner "
                             "publish a plan that gives an endpoint no address (the explorer's "
                             "never does: no longer comparable, and far bigger); FULL_VIEW "
                             "checks the model's shortcut for what an enactor read")
    parser.add_argument("--save", type=Path, metavar="FILE",
                        help="also write every cell's figures and trail as JSON to FILE")
    parser.add_argument("--trails", action="store_true",
                        help="tell each counterexample in the model's steps, and the "
                             "explorer actors that run them")
    parser.add_argument("--replay", action="store_true",
                        help="play every counterexample against the real enactor code under "
                             "the explorer (on DNSRACE_REDIS_URL or an embedded Redis) and "
                             "print the choices that replay it")
    parser.add_argument("--json", action="store_true",
                        help="print {protection set: {invariant: holds|breaks}} only")


def _print_trails(checked: Checked) -> None:
    for searched in checked.cells:
        if searched.holds:
            continue
        cell = searched.cell
        steps = read_trail(searched.trail)
        print(f"\n{cell.mode} {','.join(cell.active) or '(no protections)'}, "
              f"{cell.invariant}: {searched.assertion}")
        for line in tell(steps, checked.sizes.endpoints):
            print(f"  {line}")
        print(f"  explorer actors, step for step (before any waiting for lock leases): "
              f"{explorer_choices(steps)}")


class Replayed(Protocol):
    """A trail played on the real code (``services.tools.spin_trails.Replayed``)."""

    @property
    def translation(self) -> Translation: ...

    @property
    def record(self) -> Played: ...


Replays = Sequence[tuple[Searched, "Replayed | Untranslatable"]]
Replayer = Callable[[list[Searched], Sizes], Replays]
"""Plays broken cells' trails on the real code (the CLI passes
``services.tools.spin_trails.replay_trails``; this package may not import the explorer)."""


def _report_replays(replays: Replays, sizes: Sizes, as_json: bool
                    ) -> tuple[bool, dict[str, Any]]:
    """Print each replay; (did every trail break the same invariant in the real code,
    the explorer choices by cell for --save)."""
    agreed = True
    saved: dict[str, Any] = {}
    for searched, outcome in replays:
        cell = searched.cell
        name = f"{cell.mode} {','.join(cell.active) or '(no protections)'} {cell.invariant}"
        if isinstance(outcome, Untranslatable):
            agreed = False
            saved[name] = {"replayed": False, "why": str(outcome)}
            if not as_json:
                print(f"{name}: the real code does not do what the trail did: {outcome}")
            continue
        found = [v for v in outcome.record.violations if v.invariant == cell.invariant]
        agreed &= bool(found)
        translation = outcome.translation
        saved[name] = {"replayed": bool(found), "choices": translation.encoded,
                       "explorer_steps": len(translation.choices),
                       "waited": translation.waited,
                       "violations": [v.text for v in outcome.record.violations]}
        if not as_json:
            what = found[0].text if found else "no violation of " + str(cell.invariant)
            print(f"{name}: {searched.steps} model steps, {len(translation.choices)} explorer "
                  f"steps ({translation.waited} waiting for a lease or idle): {what}\n"
                  f"  replay: dnsrace explore --mode {cell.mode}"
                  + (f" --protections {','.join(cell.active)}" if cell.mode == "safe" else "")
                  + f" --plans {sizes.plans} --endpoints {sizes.endpoints} --cleanup-age "
                  f"{sizes.cleanup_age} --invariants {cell.invariant} "
                  f"--replay {translation.encoded}")
    return agreed, saved


def run(args: argparse.Namespace, rows: Sequence[Row], replayer: Replayer | None = None) -> int:
    """0 when every protection on holds every invariant, 1 when it does not (or a trail does
    not replay on the real code, with --replay), 2 on an error."""
    try:
        sizes = Sizes(enactors=args.enactors, plans=args.plans, endpoints=args.endpoints,
                      cleanup_age=args.cleanup_age)
        version = spin_version()
        progress = None if args.json else _show_progress
        checked = check_matrix(rows, sizes, args.invariants, model=args.model,
                               max_depth=args.max_depth, progress=progress,
                               extra=[f"-D{name}" for name in args.define])
        replays: Replays = []
        if args.replay and replayer is not None:
            replays = replayer([s for s in checked.cells if not s.holds], sizes)
    except (ModelCheckError, ValueError, OSError) as e:
        print(f"dnsrace model-check: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(checked.verdicts(), indent=2))
    else:
        print_checked(checked, version)
        if args.trails:
            _print_trails(checked)
    agreed, saved = _report_replays(replays, sizes, args.json)
    if args.save:
        details = checked_json(checked, version)
        if replays:
            details["replays"] = saved
        args.save.write_text(json.dumps(details, indent=2) + "\n")
    all_on = checked.verdicts().get(ALL_NAME, {})
    return 1 if "breaks" in all_on.values() or not agreed else 0


def _show_progress(searched: Searched) -> None:
    cell = searched.cell
    print(f"  ... {cell.mode} {','.join(cell.active) or '-'} {cell.invariant}: "
          f"{'holds' if searched.holds else 'breaks'} ({searched.states:,} states, "
          f"{searched.elapsed_s:.1f} s)", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None, rows: Sequence[Row], replayer: Replayer | None = None
         ) -> int:
    parser = argparse.ArgumentParser(prog="dnsrace model-check", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv), rows, replayer)
