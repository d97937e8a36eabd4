"""``ebl serve`` as a real process on a loopback port, and ``ebl demo`` playing the story against it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import DATABASES
from tests.nodeproc import BIN, NodeProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    node = NodeProcess(tmp_path, DATABASES.url(tmp_path))
    node.start()
    try:
        yield node.url
    finally:
        node.stop()


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
