"""Several server processes of one node (``ebl serve --workers N``): each runs a PINT courier and the periodic
checkpoint, and they share the database. Two :class:`Node` objects opened on one database stand for two of them; the
peer (SGSB) is a node in this process, reached through :class:`httpx.MockTransport`. The races are played in a fixed
order: the second process runs while the first one's request is on its way to the peer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from api.app import create_app
from ebl import pint, transfers
from ebl.service import IssueRequest, Node
from tests.conftest import CARRIER, SG_BANK, load_sample, node_settings, trust_each_other

# Nothing listens there: every client here reaches the peer through a MockTransport, whatever the URL.
PEER_URL = "http://127.0.0.1:9"
REFERENCE = "YXRSWORKERS001"


@dataclass
class Workers:
    """Two processes of the Chongqing node on one database, and the Singapore node they deliver to."""

    first: Node
    second: Node
    sg: Node
    sg_client: TestClient
    database_url: str
    sent: list[str] = field(default_factory=list)
    """The path of every request that reached the peer, in order."""

    def client(self, before: Callable[[httpx.Request], None] = lambda _: None) -> httpx.Client:
        """A client whose requests reach the peer; ``before`` runs first, as the request is on its way."""

        def network(request: httpx.Request) -> httpx.Response:
            before(request)
            return self.to_peer(request)

        return httpx.Client(transport=httpx.MockTransport(network))

    def to_peer(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request.url.path)
        answer = self.sg_client.request(
            request.method,
            request.url.path,
            content=request.content,
            headers={"content-type": request.headers.get("content-type", "application/json")},
        )
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    def outbound(self) -> list[dict[str, Any]]:
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                rows = connection.exec_driver_sql(
                    "SELECT status, attempts, response_code, response, last_error FROM outbound_transfer ORDER BY id"
                ).all()
        finally:
            engine.dispose()
        return [dict(row._mapping) for row in rows]


@pytest.fixture
def workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workers]:
    cq_settings = node_settings(tmp_path / "cq", peers={"SGSB": PEER_URL})
    sg_settings = node_settings(tmp_path / "sg", platform="SGSB")
    trust_each_other(cq_settings, sg_settings)
    first, second, sg = Node.open(cq_settings), Node.open(cq_settings), Node.open(sg_settings)
    try:
        with TestClient(create_app(sg)) as sg_client:
            workers = Workers(first, second, sg, sg_client, cq_settings.database_url)
            # The receiver validation before an action asks the peer too.
            monkeypatch.setattr(
                httpx, "AsyncClient", partial(httpx.AsyncClient, transport=httpx.MockTransport(workers.to_peer))
            )
            yield workers
    finally:
        for node in (first, second, sg):
            node.close()


def _issue_to_singapore(workers: Workers) -> None:
    """The carrier issues the eBL to Straits Trade Bank, on SGSB: a transfer to deliver, due now."""
    bank = next(p for p in workers.sg_client.get("/sandbox/parties").json() if p["partyName"] == SG_BANK)
    document = load_sample() | {"transportDocumentReference": REFERENCE}
    issue_to = {"partyName": SG_BANK, "sendToPlatform": "SGSB", "identifyingCodes": bank["identifyingCodes"]}
    node = workers.first

    async def issue() -> None:
        carrier = next(p for p in await node.sandbox_parties() if p.partyName == CARRIER)
        request = IssueRequest.model_validate({"transportDocument": document, "issueTo": issue_to})
        await node.issue(node.authenticate(carrier.apiKey), request)

    asyncio.run(issue())


def test_two_couriers_deliver_a_transfer_once_and_keep_its_receipt(workers: Workers) -> None:
    _issue_to_singapore(workers)
    second_ran: list[float | None] = []

    def second_courier_meanwhile(request: httpx.Request) -> None:
        # The first courier has built the envelope and is sending it: the second courier looks now.
        if request.url.path == "/v3/envelopes" and not second_ran:
            with workers.client() as client:
                second_ran.append(workers.second.transfers.deliver_due(client))

    with workers.client(second_courier_meanwhile) as client:
        assert workers.first.transfers.deliver_due(client) is None
    assert second_ran, "the first courier sent no envelope"
    assert workers.sent.count("/v3/envelopes") == 1, workers.sent
    [transfer] = workers.outbound()
    assert (transfer["status"], transfer["attempts"], transfer["response_code"]) == ("DELIVERED", 1, "RECE")
    assert pint.read_response(transfer["response"]).responseCode == "RECE"

    # A courier that looks again finds nothing left to deliver, and rewrites nothing.
    with workers.client() as client:
        assert workers.second.transfers.deliver_due(client) is None
    assert workers.sent.count("/v3/envelopes") == 1
    assert workers.outbound() == [transfer]


class _Died(BaseException):
    """The process running the courier dies (SIGKILL, a crash): nothing after it runs."""


def test_the_claim_of_a_process_that_died_mid_attempt_runs_out(
    workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    _issue_to_singapore(workers)

    def first_dies(request: httpx.Request) -> None:
        if request.url.path == "/v3/envelopes":
            raise _Died

    with workers.client(first_dies) as client, pytest.raises(_Died):
        workers.first.transfers.deliver_due(client)
    # Its claim stands until it runs out: the second courier leaves the transfer alone until then, and looks again then.
    with workers.client() as client:
        wait = workers.second.transfers.deliver_due(client)
    assert wait is not None and 0 < wait <= transfers.CLAIM_SECONDS
    assert workers.sent.count("/v3/envelopes") == 0
    [transfer] = workers.outbound()
    assert (transfer["status"], transfer["attempts"]) == ("PENDING", 0)

    later = transfers._now() + timedelta(seconds=transfers.CLAIM_SECONDS + 1)
    monkeypatch.setattr(transfers, "_now", lambda: later)
    with workers.client() as client:
        assert workers.second.transfers.deliver_due(client) is None
    assert workers.sent.count("/v3/envelopes") == 1
    [transfer] = workers.outbound()
    assert (transfer["status"], transfer["attempts"], transfer["response_code"]) == ("DELIVERED", 1, "RECE")


@pytest.mark.parametrize("late", ["answer", "failure"])
def test_an_attempt_that_outlived_its_claim_does_not_rewrite_the_transfer(
    workers: Workers, monkeypatch: pytest.MonkeyPatch, late: str
) -> None:
    """The first courier's attempt takes longer than its claim: the second takes the transfer over and delivers it;
    then the first one's attempt ends, with the peer's DUPE or with an error, and neither is recorded."""
    _issue_to_singapore(workers)
    taken_over: list[bool] = []

    def slow_first_attempt(request: httpx.Request) -> None:
        if request.url.path == "/v3/envelopes" and not taken_over:
            taken_over.append(True)
            later = transfers._now() + timedelta(seconds=transfers.CLAIM_SECONDS + 1)
            monkeypatch.setattr(transfers, "_now", lambda: later)
            with workers.client() as client:
                assert workers.second.transfers.deliver_due(client) is None
            if late == "failure":
                raise httpx.ReadTimeout("timed out", request=request)

    with workers.client(slow_first_attempt) as client:
        workers.first.transfers.deliver_due(client)
    assert workers.sent.count("/v3/envelopes") == (2 if late == "answer" else 1)
    [transfer] = workers.outbound()
    assert (transfer["status"], transfer["attempts"], transfer["response_code"], transfer["last_error"]) == (
        "DELIVERED",
        1,
        "RECE",
        None,
    )
    assert pint.read_response(transfer["response"]).responseCode == "RECE"


def test_two_processes_keep_the_same_cosignature(workers: Workers, caplog: pytest.LogCaptureFixture) -> None:
    _issue_to_singapore(workers)
    workers.first.sign_checkpoint()
    pushed: list[bool] = []

    def second_pushes_meanwhile(request: httpx.Request) -> None:
        # The first process asks the witness; before it hears back, the second asks for the same checkpoint and keeps
        # the cosignature. The first then hears 409, asks again from the size the witness holds, and keeps its own.
        if request.url.path.endswith("/add-checkpoint") and not pushed:
            pushed.append(True)
            with workers.client() as client:
                workers.second.push_checkpoint(client)

    with workers.client(second_pushes_meanwhile) as client:
        workers.first.push_checkpoint(client)
    assert pushed
    assert workers.sent.count("/v1/log/witness/add-checkpoint") == 3, workers.sent
    served = workers.first.sign_checkpoint()
    checkpoint = asyncio.run(workers.first.checkpoint())
    assert checkpoint.startswith(served.note) and checkpoint.count("— sgsb.ebl.example/witness ") == 1
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")], caplog.records
