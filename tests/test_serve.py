"""``ebl serve`` as a real process on a loopback port, and ``ebl demo`` playing the story against it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import DATABASES

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "EBL_DATABASE_URL": DATABASES.url(tmp_path),
        "EBL_SANDBOX": "true",
        "EBL_KEYS_DIR": str(tmp_path / "keys"),
    }
    log_path = tmp_path / "serve.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [str(BIN / "ebl"), "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        # Readiness: poll /health until the node answers (bounded), instead of guessing a start-up time.
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the node did not start within 60 s"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_serve_seeds_the_corridor_and_the_demo_plays_the_story(server: str, tmp_path: Path) -> None:
    parties = httpx.get(f"{server}/sandbox/parties").json()
    assert len(parties) == 7
    assert {p["eblPlatform"] for p in parties} == {"CQSB"}
    assert (tmp_path / "keys" / "trust.json").exists()
    result = subprocess.run(
        [str(BIN / "ebl"), "demo", "--url", server], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Singapore Customs verifies the bundle: VALID" in result.stdout
    assert "SURRENDERED_FOR_DELIVERY" in result.stdout
    # Twice in a row: each run issues a fresh reference.
    again = subprocess.run(
        [str(BIN / "ebl"), "demo", "--url", server], capture_output=True, text=True, timeout=120, check=False
    )
    assert again.returncode == 0, again.stdout + again.stderr
