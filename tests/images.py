"""The dnsrace image built with no registry: a Debian base from mmdebstrap, a host wheelhouse.

The base (bookworm with python3) takes about 30 s to make: it is kept under a stable folder,
keyed by a hash of what it holds, and imported into podman once. The image itself is built
once per test session (``image`` fixture) with ``podman build --format docker`` (the docker
format keeps the HEALTHCHECK) and ``--network none``.
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[1]
SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "iproute2", "dnsutils")
CACHE = Path(os.environ.get("DNSRACE_IMAGE_CACHE_DIR", "/var/tmp/dnsrace-images"))
LABEL = "dnsrace.test=1"
CONTAINERS_CONF = '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n' \
                  'events_logger = "file"\n'


def ulimits() -> list[str]:
    """--ulimit at the current limits (they cannot be raised here: no CAP_SYS_RESOURCE)."""
    nofile = min(*resource.getrlimit(resource.RLIMIT_NOFILE), 4096)
    nproc = min(*resource.getrlimit(resource.RLIMIT_NPROC), 4096)
    return [f"--ulimit=nofile={nofile}:{nofile}", f"--ulimit=nproc={nproc}:{nproc}"]


def podman(*args: str, timeout: float = 120, check: bool = True,
           ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        pytest.fail(f"podman {' '.join(args)}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return done


def _base(key: str) -> str:
    """The bookworm base image's name, made and imported if missing."""
    name = f"localhost/dnsrace-base:{key}"
    if podman("image", "exists", name, check=False).returncode == 0:
        return name
    CACHE.mkdir(parents=True, exist_ok=True)
    tar = CACHE / f"base-{key}.tar"
    if not tar.exists():
        partial = tar.with_suffix(".partial")
        subprocess.run(["mmdebstrap", "--variant=apt", "--format=tar",
                        "--include=" + ",".join(PACKAGES), SUITE, str(partial)],
                       check=True, capture_output=True, timeout=300)
        partial.rename(tar)
    podman("import", str(tar), name, timeout=180)
    return name


def _context(root: Path) -> Path:
    """The checkout's files (tracked and new, not ignored) and a wheelhouse, in one folder."""
    context = root / "context"
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file() and not source.is_symlink():
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, context / name)
        elif source.is_symlink():
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.readlink(source), context / name)
    # async-timeout: redis needs it on bookworm's Python 3.11.2 (< 3.11.3), not on ours.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(context / "wheelhouse"),
                    str(context), "async-timeout"], check=True, timeout=300)
    return context


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``localhost/dnsrace:test``, built once per session from the working tree."""
    for tool in ("podman", "mmdebstrap", "runc"):
        require_tool(tool)
    root = tmp_path_factory.mktemp("image")
    conf = root / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    os.environ["CONTAINERS_CONF"] = str(conf)
    key = hashlib.sha256(f"{SUITE} {' '.join(PACKAGES)}".encode()).hexdigest()[:12]
    base = _base(key)
    context = _context(root)
    name = "localhost/dnsrace:test"
    podman("build", "--format", "docker", "--network", "none", *ulimits(),
           "--build-arg", f"BASE={base}", "--build-arg", "APT_PACKAGES=", "-t", name,
           str(context), timeout=400)
    yield name
    podman("rm", "-f", "-t", "2", "--filter", f"label={LABEL}", check=False)
