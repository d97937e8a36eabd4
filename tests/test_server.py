"""``ebl serve --workers N``: N processes on one port, each with a TCP socket of its own (ebl.server)."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from ebl import server
from tests.conftest import DATABASES
from tests.nodeproc import BIN, NodeProcess, free_port


def test_connections_a_worker_accepts_have_nagles_algorithm_off() -> None:
    # With it on, an answer written in two parts (head, then body) waits for the client's delayed ACK (~40 ms).
    async def accepted_nodelay() -> int:
        options: list[int] = []

        def connected(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            options.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        sock = server._bound_socket("127.0.0.1", 0)
        listening = await asyncio.start_server(connected, sock=sock)
        reader, writer = await asyncio.open_connection(*sock.getsockname())
        await reader.read()
        writer.close()
        listening.close()
        await listening.wait_closed()
        return options[0]

    assert asyncio.run(accepted_nodelay()) != 0


def _request_on_a_new_connection(url: str) -> str:
    """Its request id: the access log line of the request names the process that answered it."""
    request_id = uuid.uuid4().hex
    with httpx.Client() as client:  # a new connection: the kernel picks the worker
        assert client.get(f"{url}/health", headers={"X-Request-ID": request_id}).status_code == 200
    return request_id


def _access_log_processes(log: str, request_ids: set[str]) -> set[int]:
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return {line["process"] for line in lines if line.get("request_id") in request_ids}


def _workers_answering(node: NodeProcess) -> set[int]:
    """The worker processes, once each has answered: the kernel spreads new connections over their sockets."""
    request_ids: set[str] = set()
    deadline = time.monotonic() + 60
    while len(_access_log_processes(node.log, request_ids)) < node.workers:
        assert time.monotonic() < deadline, "not every worker answered"
        request_ids |= {_request_on_a_new_connection(node.url) for _ in range(8)}
    workers = _access_log_processes(node.log, request_ids)
    assert node.pid not in workers
    return workers


def _assert_gone(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"worker {pid} outlived its node")


def test_every_worker_answers_and_sigterm_stops_them_all(tmp_path: Path) -> None:
    # A new database: the workers must not race to create it.
    node = NodeProcess(tmp_path, DATABASES.url(tmp_path), workers=2)
    node.start()
    workers = _workers_answering(node)
    # The supervisor only starts and watches the workers, and stays small: it never loads pydantic, which the settings
    # and the web stack need (its compiled core would be mapped into the process).
    assert "pydantic_core" not in Path(f"/proc/{node.pid}/maps").read_text()
    assert all("pydantic_core" in Path(f"/proc/{pid}/maps").read_text() for pid in workers)
    assert node.stop() == 0
    _assert_gone(workers)


def test_a_worker_that_dies_stops_the_node_with_status_1(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path, DATABASES.url(tmp_path), workers=2)
    node.start()
    workers = _workers_answering(node)
    os.kill(min(workers), signal.SIGKILL)
    # For its service manager to restart it whole, rather than serve on with one worker fewer.
    assert node.wait() == 1
    _assert_gone(workers)
    assert "a worker process exited; stopping the others" in node.log


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("shared", [False, True], ids=["plain", "SO_REUSEPORT"])
def test_a_port_already_taken_is_refused_before_any_worker_starts(tmp_path: Path, workers: int, shared: bool) -> None:
    port = free_port()
    with socket.socket() as taken:
        # Shared as another node's workers share theirs: a socket of ours that shares the port would bind beside it.
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, shared)
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = subprocess.run(
            [str(BIN / "ebl"), "serve", "--port", str(port), "--workers", str(workers)],
            env={**os.environ, "EBL_DATABASE_URL": DATABASES.url(tmp_path), "EBL_KEYS_DIR": str(tmp_path / "keys")},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert not list(tmp_path.glob("*.db"))  # refused before the database was opened


def test_the_workers_of_a_killed_supervisor_stop(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path, DATABASES.url(tmp_path), workers=2)
    node.start()
    workers = _workers_answering(node)
    node.kill()
    for pid in workers:
        # Not our children: a pidfd tells when each exits (it reads as ready once the process is a zombie or gone).
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            ready, _, _ = select.select([pidfd], [], [], 60)
        finally:
            os.close(pidfd)
        assert ready, f"worker {pid} serves on without its supervisor"
    assert node.log.count(f"the supervisor (process {node.pid}) exited; this worker stops") == 2
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{node.url}/health", timeout=10)


def test_a_database_that_cannot_be_prepared_starts_no_worker(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "ebl"), "serve", "--port", str(free_port()), "--workers", "2"],
        env={**os.environ, "EBL_DATABASE_URL": "mysql://nobody@127.0.0.1/ebl", "EBL_KEYS_DIR": str(tmp_path / "keys")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "unsupported database 'mysql'" in result.stderr
    assert "preparing the database and the keys failed" in result.stderr
    assert "Started server process" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize(
    ("setting", "reason"),
    [
        ({"EBL_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/ebl"}, "cannot connect to the database"),
        ({"EBL_SHUTDOWN_GRACE_SECONDS": "soon"}, "EBL_SHUTDOWN_GRACE_SECONDS: Input should be a valid integer"),
        ({"EBL_PLATFORM": "Chongqing"}, "EBL_PLATFORM: String should match pattern"),
        ({"EBL_PEERS": '{"CQSB": "http://127.0.0.1:8001"}'}, "EBL_PEERS: names CQSB, this node's own platform"),
        ({"EBL_KEYS_DIR": "/dev/null/keys"}, "cannot be created or read: Not a directory"),
    ],
)
def test_a_node_that_cannot_start_says_why_without_a_traceback(
    tmp_path: Path, workers: str, setting: dict[str, str], reason: str
) -> None:
    result = subprocess.run(
        [str(BIN / "ebl"), "serve", "--port", str(free_port()), "--workers", workers],
        env={**os.environ, "EBL_DATABASE_URL": DATABASES.url(tmp_path), "EBL_KEYS_DIR": str(tmp_path / "keys")}
        | setting,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert reason in result.stderr
    assert "Traceback" not in result.stderr
    assert "Started server process" not in result.stderr
