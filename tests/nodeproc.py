"""A node as a real ``ebl serve`` process on a loopback port, for the tests that need a process to start or kill."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Poll ``url``'s /health until it answers (bounded), instead of guessing a start-up time; fail with the log if
    ``process`` exits first."""
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None, log_path.read_text()
        assert time.monotonic() < deadline, f"{url} did not start within 60 s"
        time.sleep(0.1)


class NodeProcess:
    """``ebl serve`` on ``database_url`` with its keys in ``folder``; its output goes to ``folder/serve-N.log``."""

    def __init__(self, folder: Path, database_url: str, *, workers: int = 1, **settings: str) -> None:
        self.folder = folder
        self.workers = workers
        self.env = {
            **os.environ,
            "EBL_DATABASE_URL": database_url,
            "EBL_KEYS_DIR": str(folder / "keys"),
            "EBL_SANDBOX": "true",
            "EBL_RATE_LIMIT_PER_SECOND": "0",
            **{f"EBL_{name.upper()}": value for name, value in settings.items()},
        }
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._starts = 0

    def start(self) -> None:
        self._starts += 1
        log_path = self.folder / f"serve-{self._starts}.log"
        with log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [str(BIN / "ebl"), "serve", "--port", str(self.port), "--workers", str(self.workers)],
                env=self.env,
                stdout=log,
                stderr=log,
            )
        wait_until_up(self.url, self._process, log_path)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when the machine loses power or the kernel kills the process."""
        assert self._process is not None
        self._process.send_signal(signal.SIGKILL)
        self._process.wait(timeout=30)

    def wait(self) -> int:
        """The exit status, once the node has exited of its own accord (bounded)."""
        assert self._process is not None
        return self._process.wait(timeout=60)

    def stop(self) -> int | None:
        """SIGTERM, as a service manager stops a server; the exit status (``None`` if it was not running)."""
        if self._process is None or self._process.poll() is not None:
            return None
        self._process.terminate()
        return self._process.wait(timeout=60)

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def log(self) -> str:
        return (self.folder / f"serve-{self._starts}.log").read_text(encoding="utf-8")

    def run(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        """Run another ``ebl`` command on this node's database and keys."""
        return subprocess.run(
            [str(BIN / "ebl"), *arguments], env=self.env, capture_output=True, text=True, timeout=300, check=False
        )
