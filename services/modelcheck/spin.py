"""One cell of the matrix through Spin: generate the verifier, compile it, search, read the trail.

``spin -a`` turns the model, with one protection set and one invariant switched on by ``-D``,
into ``pan.c``; ``gcc -DSAFETY -DBFS`` compiles a breadth-first safety search (so a
counterexample is a shortest one); ``./pan -m DEPTH`` searches every reachable state. A cell
holds when the search ends with no error and was exhaustive: a search cut short (depth bound,
memory) is an error here, never a verdict. A cell breaks with the trail Spin wrote, which
``spin -t`` plays back as the model's own ``MC ...`` lines (:mod:`services.modelcheck.trail`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from services.config import DNS_PROTECTIONS, Mode, Protection
from services.core.invariants import Invariant
from services.errors import DnsraceError

MODEL = Path(__file__).resolve().parents[2] / "models" / "dnsrace.pml"
INSTALL_HINT = "apt-get install spin"
MAX_DEPTH = 10_000
"""pan's -m: far deeper than the model goes (its longest run is about 100 steps)."""
CELL_TIMEOUT_S = 600.0
PAN_FLAGS = ("-O2", "-w", "-DSAFETY", "-DBFS", "-DCOLLAPSE", "-DMEMLIM=8192")
"""Safety properties only, breadth first (shortest trails), states stored compressed
(lossless), and an 8 GB ceiling that is reported, not crashed into."""
INCOMPLETE = ("search depth too small", "Search not completed", "out of memory", "MEMLIM")


class ModelCheckError(DnsraceError):
    """Spin could not give a verdict; the message says what was wrong and how to fix it."""


class SpinMissing(ModelCheckError):
    pass


class SearchIncomplete(ModelCheckError):
    """The search was cut short: no verdict may be drawn from it."""


@dataclass(frozen=True)
class Sizes:
    """The world the model checks, as ``dnsrace explore``'s defaults."""

    enactors: int = 3
    plans: int = 4
    endpoints: int = 2
    cleanup_age: int = 2
    keep_newest: int = 3

    def __post_init__(self) -> None:
        if not 1 <= self.enactors <= 3:
            raise ValueError("enactors: 1 to 3 (one per AZ)")
        if not 1 <= self.endpoints <= 3:
            raise ValueError("endpoints: 1 to 3 (the named ones: regional, FIPS, dual-stack)")
        if not 1 <= self.plans * self.endpoints <= 30:
            raise ValueError("plans x endpoints must be at most 30 (one bit per tree)")
        if self.cleanup_age < 1 or self.keep_newest < 1:
            raise ValueError("cleanup_age and keep_newest must be >= 1")

    def defines(self) -> list[str]:
        return [f"-DN={self.enactors}", f"-DM={self.plans}", f"-DE={self.endpoints}",
                f"-DAGE={self.cleanup_age}", f"-DKEEP={self.keep_newest}"]


@dataclass(frozen=True)
class Cell:
    """One protection set against one invariant."""

    mode: Mode
    protections: tuple[Protection, ...]
    """Safe mode: the protections on (empty: all, as the explorer reads it)."""
    invariant: Invariant | None
    """None: no invariant asserted (only the model's own assertions, e.g. -DFULL_VIEW)."""

    @property
    def active(self) -> tuple[Protection, ...]:
        if self.mode == "legacy":
            return ()
        return tuple(p for p in DNS_PROTECTIONS if p in self.protections or
                     not self.protections)

    def defines(self) -> list[str]:
        checks = f"-DCHECK_{self.invariant}" if self.invariant else "-DNO_INVARIANTS"
        return [f"-D{p.upper()}" for p in self.active] + [checks]


@dataclass
class Searched:
    """What Spin said about one cell."""

    cell: Cell
    holds: bool
    states: int
    """States stored: every reachable state when the cell holds."""
    transitions: int
    depth: int
    """Deepest breadth-first level reached (the shortest counterexample's length if broken)."""
    memory_mb: float
    pan_s: float
    """pan's own search time."""
    elapsed_s: float
    """Generating, compiling and searching, wall clock."""
    assertion: str = ""
    """The assertion that failed, as Spin quotes it."""
    trail: list[str] = field(default_factory=list)
    """The model's ``MC ...`` lines along the counterexample, in order."""

    @property
    def steps(self) -> int:
        """Length of the counterexample in model steps (0 when the cell holds)."""
        return len(self.trail)


def require_spin() -> tuple[str, str]:
    """Paths of spin and gcc, or SpinMissing saying how to install them."""
    spin, gcc = shutil.which("spin"), shutil.which("gcc")
    if spin is None:
        raise SpinMissing(f"spin is not installed: {INSTALL_HINT} (Debian package, 6.5 or newer)")
    if gcc is None:
        raise SpinMissing("gcc is not installed (Spin compiles its verifier): "
                          "apt-get install gcc")
    return spin, gcc


def spin_version() -> str:
    spin, _ = require_spin()
    out = subprocess.run([spin, "-V"], capture_output=True, text=True, check=False).stdout
    return out.strip()


def _run(argv: Sequence[str], cwd: Path, what: str) -> str:
    try:
        done = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True,
                              timeout=CELL_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise SearchIncomplete(f"{what} took more than {CELL_TIMEOUT_S:.0f} s; make the model "
                               "smaller (fewer plans or endpoints)") from None
    output = done.stdout + done.stderr
    if done.returncode != 0 and what != "pan":
        raise ModelCheckError(f"{what} failed (exit {done.returncode}): "
                              f"{output.strip()[-800:]}")
    return output


def _number(pattern: str, text: str, default: float = 0.0) -> float:
    match = re.search(pattern, text)
    return float(match.group(1)) if match else default


def check_cell(cell: Cell, sizes: Sizes, workdir: Path, model: Path = MODEL,
               max_depth: int = MAX_DEPTH, extra: Sequence[str] = (),
               breadth_first: bool = True) -> Searched:
    """Search one cell exhaustively in ``workdir`` (created; left for the caller to delete).

    ``extra``: more ``-D`` switches of the model (``-DFULL_VIEW``, ``-DEMPTY_PLANS``).
    ``breadth_first=False``: depth first, faster and smaller where no shortest trail is
    wanted."""
    spin, gcc = require_spin()
    if not model.is_file():
        raise ModelCheckError(f"the model {model} is missing (it ships in models/ of the "
                              "repository; pass --model)")
    workdir.mkdir(parents=True, exist_ok=True)
    local = workdir / model.name
    shutil.copyfile(model, local)
    defines = sizes.defines() + cell.defines() + list(extra)
    started = time.perf_counter()
    _run([spin, *defines, "-a", local.name], workdir, "spin -a")
    flags = [f for f in PAN_FLAGS if breadth_first or f != "-DBFS"]
    _run([gcc, *flags, "-o", "pan", "pan.c"], workdir, "gcc")
    out = _run(["./pan", f"-m{max_depth}"], workdir, "pan")
    elapsed = time.perf_counter() - started
    errors = int(_number(r"errors: (\d+)", out, -1))
    if errors < 0 or "states, stored" not in out:
        raise ModelCheckError(f"pan gave no result: {out.strip()[-800:]}")
    # pan stops at the first error and then says the search was not completed: that is a
    # verdict. A depth or memory bound is never one, whatever pan found before it.
    incomplete = [marker for marker in INCOMPLETE if marker in out and
                  not (errors and marker == "Search not completed")]
    if incomplete:
        what = f"{cell.mode} {','.join(cell.active) or '-'} {cell.invariant or ''}".strip()
        raise SearchIncomplete(
            f"{what}: the search was not exhaustive ({incomplete[0]}); raise --max-depth "
            f"(now {max_depth}) or free memory")
    searched = Searched(
        cell, holds=errors == 0,
        states=int(_number(r"(\d+) states, stored", out)),
        transitions=int(_number(r"(\d+) transitions", out)),
        depth=int(_number(r"depth reached (\d+)", out)),
        memory_mb=_number(r"([\d.]+)\s+total actual memory usage", out),
        pan_s=_number(r"elapsed time ([\d.e+]+) seconds", out),
        elapsed_s=elapsed)
    if errors:
        played = _run([spin, *defines, "-t", local.name], workdir, "spin -t")
        searched.trail = model_lines(played)
        searched.assertion = next((line.split(":", 1)[1].strip() for line in played.splitlines()
                                   if "text of failed assertion" in line), "")
        if not searched.trail:
            raise ModelCheckError(f"spin -t printed no trail: {played.strip()[-800:]}")
    return searched


def model_lines(played: str) -> list[str]:
    """The model's own ``MC <actor> <what> ...`` lines of a ``spin -t`` play-back."""
    return [line.strip() for line in played.splitlines() if line.strip().startswith("MC ")]
