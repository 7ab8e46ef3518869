"""The architecture contracts of pyproject.toml ([tool.importlinter]), checked by import-linter.

Layers inside ``services/`` (tools on top, core and config at the bottom), pure models free of
Redis and aiohttp, the DNS server and the load clients beside the parts, and no import cycles.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("services", "dns_server", "loadgen")


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} is missing: pip install -e '.[test]'")
    return subprocess.run([str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"),
                           "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120)


def copy_of_the_tree(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_tree_keeps_every_contract() -> None:
    result = lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("services/core/names.py", "import redis.asyncio", "services.core imports neither"),
    ("services/store/zone.py", "from services.enactor import decisions",
     "tools on top, core at the bottom"),
    ("dns_server/engine.py", "from services.planner import service", "stand beside the parts"),
    ("services/enactor/decisions.py", "from services.enactor import enactor",
     "no import cycles"),
], ids=["redis-in-core", "store-above-enactor", "dns-imports-planner", "cycle-in-enactor"])
def test_a_forbidden_import_breaks_its_contract(tmp_path: Path, module: str, line: str,
                                                contract: str) -> None:
    root = copy_of_the_tree(tmp_path)
    path = root / module
    path.write_text(path.read_text() + f"\n{line}  # forbidden on purpose\n")
    result = lint(root)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout
    # The copy is what was checked, not the installed package.
    assert "forbidden on purpose" not in (REPO / module).read_text()
