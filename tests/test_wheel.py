"""The wheel works outside the checkout: built, installed into a fresh venv, run from a temp dir.

Also ``.env`` in the working directory, read by every command (services/envfile.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from services import envfile
from tests.conftest import cluster_settings

REPO = Path(__file__).resolve().parents[1]


def test_env_file_fills_only_what_the_environment_lacks(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("DNSRACE_DNS_PORT=5399\nDNSRACE_CONTROL_PORT=8699\n")
    environ = {"DNSRACE_CONTROL_PORT": "8601"}
    assert envfile.apply(path, environ) == {"DNSRACE_DNS_PORT": "5399"}
    assert environ == {"DNSRACE_DNS_PORT": "5399", "DNSRACE_CONTROL_PORT": "8601"}
    assert envfile.apply(tmp_path / "missing", environ) == {}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``dnsrace`` from a wheel (not editable) in a venv of its own."""
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(root / "dist"), str(REPO)], check=True, timeout=180)
    wheels = list((root / "dist").glob("dnsrace-*.whl"))
    assert len(wheels) == 1
    venv.create(root / "venv", with_pip=True)
    python = root / "venv" / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheels[0])],
                   check=True, timeout=300)
    return root / "venv" / "bin" / "dnsrace"


def _env() -> dict[str, str]:
    """The environment less DNSRACE_* and PYTHONPATH: only .env and the wheel speak."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("DNSRACE_") and k != "PYTHONPATH"}


def test_version(installed: Path, tmp_path: Path) -> None:
    done = subprocess.run([str(installed), "--version"], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stdout.strip() == "dnsrace 0.1.0"


def test_env_file_read_by_status(installed: Path, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DNSRACE_DNS_PORT=not-a-port\n")
    done = subprocess.run([str(installed), "status"], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "DNSRACE_DNS_PORT" in done.stderr
    assert "Traceback" not in done.stderr


def test_demo_from_a_temporary_directory(installed: Path, tmp_path: Path) -> None:
    """The packaged Procfile, scenario and Lua found from anywhere; ports from .env."""
    settings = cluster_settings(tmp_path)
    names = ["redis_port", "dns_port", "control_port", "metrics_port_base", "lb_network",
             "lb_port", "state_dir"]
    (tmp_path / ".env").write_text("".join(
        f"DNSRACE_{name.upper()}={getattr(settings, name)}\n" for name in names))
    done = subprocess.run([str(installed), "demo", "--legacy-only", "--rate", "50"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "legacy broke as in 2025 and was repaired by hand" in done.stdout
    assert list((tmp_path / "reports").glob("demo-*.html"))


def test_shipped_scenario_found_from_any_directory(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from services.tools.scenario import ScenarioError, load_file

    monkeypatch.chdir(tmp_path)
    assert load_file(Path("scenarios/race.toml")).timeline
    (tmp_path / "race.toml").write_text("not toml [")
    with pytest.raises(ScenarioError):  # a file in the working directory wins
        load_file(Path("race.toml"))
