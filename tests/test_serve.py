"""``ebl serve`` as a real process on a loopback port, and ``ebl demo`` playing the story against it."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import DATABASES
from tests.nodeproc import BIN, NodeProcess, free_port, wait_until_up


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


def _two_free_ports() -> int:
    """A port that is free, and the next one too (``ebl corridor`` serves on both)."""
    while True:
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def test_sigterm_stops_the_corridor_and_both_its_nodes(tmp_path: Path) -> None:
    base = _two_free_ports()
    log_path = tmp_path / "corridor.log"
    command = [str(BIN / "ebl"), "corridor", "--base-port", str(base), "--data-dir", str(tmp_path / "corridor")]
    with log_path.open("wb") as log:
        corridor = subprocess.Popen(command, stdout=log, stderr=log)
    try:
        for port in (base, base + 1):
            wait_until_up(f"http://127.0.0.1:{port}", corridor, log_path)
        nodes = [int(pid) for pid in Path(f"/proc/{corridor.pid}/task/{corridor.pid}/children").read_text().split()]
        assert len(nodes) == 2
        corridor.terminate()  # as a service manager stops it
        assert corridor.wait(timeout=60) == 0, log_path.read_text()
        # Both nodes stopped with it: no process is left, and nothing answers on their ports.
        assert [pid for pid in nodes if Path(f"/proc/{pid}").exists()] == []
        for port in (base, base + 1):
            with pytest.raises(httpx.TransportError):
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
    finally:
        if corridor.poll() is None:
            corridor.kill()


def test_every_line_the_node_writes_is_json_even_a_library_warning(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path, DATABASES.url(tmp_path))
    node.start()
    try:
        parties = httpx.get(f"{node.url}/sandbox/parties").json()
        carrier = next(p for p in parties if p["roles"] == ["carrier"])
        numbers = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key().public_numbers()
        weak = {"kty": "RSA", "n": _b64(numbers.n), "e": _b64(numbers.e)}  # joserfc warns about its size
        answer = httpx.post(
            f"{node.url}/v1/parties/me/keys",
            json={"publicJwk": weak, "proof": "e30.e30.AAAA"},
            headers={"Authorization": f"Bearer {carrier['apiKey']}"},
        )
        assert answer.status_code == 400, answer.text
    finally:
        node.stop()
    lines = node.log.splitlines()
    assert any("SecurityWarning" in line for line in lines), node.log
    for line in lines:
        json.loads(line)


def _b64(number: int) -> str:
    return base64.urlsafe_b64encode(number.to_bytes((number.bit_length() + 7) // 8, "big")).decode().rstrip("=")
