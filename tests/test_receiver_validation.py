"""An action toward a party of the peer platform waits for the peer's DCSA receiver validation, and the chain entry
records the party as the answer names it: an answer that names no party this node can record is no answer (503),
never a 500 and never an entry nobody can read back. The peer is an :class:`httpx.MockTransport` here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from ebl import service
from ebl.service import Node
from tests.conftest import SHIPPER, Api, assert_error, load_sample, node_settings
from tests.test_api import REF

STRAITS = {
    "partyName": "Straits Trade Bank",
    "eblPlatform": "SGSB",
    "identifyingCodes": [{"codeListProvider": "ZZZ", "codeListName": "UEN", "partyCode": "199901234D"}],
}


@dataclass
class Sender:
    """A node whose shipper holds the sample eBL, and whose peer SGSB gives ``answer`` to receiver validation."""

    api: Api
    answer: httpx.Response | None = None

    def transfer(self, answer: httpx.Response) -> Any:
        """The shipper transfers the eBL to a party of SGSB, whose platform answers ``answer``."""
        self.answer = answer
        return self.api.client.post(
            f"/v1/ebls/{REF}/transactions",
            json={"actionCode": "TRANSFER", "recipient": STRAITS},
            headers=self.api.headers(SHIPPER),
        )

    def still_holds(self) -> bool:
        held = self.api.get(SHIPPER, f"/v1/ebls/{REF}").json()
        return (held["chainLength"], held["eblPlatform"]) == (1, "CQSB")


@pytest.fixture
def sender(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sender]:
    node = Node.open(node_settings(tmp_path, peers={"SGSB": "http://sgsb.test"}))
    with TestClient(create_app(node)) as client:
        sender = Sender(Api(client))

        def peer(request: httpx.Request) -> httpx.Response:
            assert request.url.path == "/v3/receiver-validation" and sender.answer is not None
            return sender.answer

        monkeypatch.setattr(httpx, "AsyncClient", partial(httpx.AsyncClient, transport=httpx.MockTransport(peer)))
        assert sender.api.issue(load_sample()).status_code == 201
        yield sender
    node.close()


@pytest.mark.parametrize(
    "body",
    [
        b'{"partyName": "Straits\\u0000Bank"}',  # the entry would be signed, and could never be read back
        b'{"partyName": " Straits Trade Bank "}',  # DCSA's pattern: no space at either end
        b'{"partyName": "Straits\\nBank\\u0001"}',
        b'{"partyName": "' + b"S" * 200_000 + b'"}',
        b'{"partyName": "S", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"partyName": "S", "partyName": "T"}',
        b"not json",
        b'["Straits Trade Bank"]',
        b"{}",
    ],
    ids=["nul", "spaces", "controls", "long", "deep", "duplicate", "not-json", "list", "empty"],
)
def test_an_answer_that_names_no_recordable_party_is_no_answer(sender: Sender, body: bytes) -> None:
    answer = httpx.Response(200, content=body, headers={"content-type": "application/json"})
    assert_error(sender.transfer(answer), 503, "PEER_UNAVAILABLE")
    assert sender.still_holds()


class _Drip(httpx.AsyncByteStream):
    """An answer that never ends: a byte at a time, each within any read timeout."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            yield b" "
            await asyncio.sleep(0.05)  # the peer's pace, not a wait for anything


def test_a_peer_that_answers_a_byte_at_a_time_is_given_up_on(sender: Sender, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "RECEIVER_VALIDATION_SECONDS", 0.5)
    assert_error(sender.transfer(httpx.Response(200, stream=_Drip())), 503, "PEER_UNAVAILABLE")
    assert sender.still_holds()


def test_the_entry_records_the_party_as_its_platform_names_it(sender: Sender) -> None:
    response = sender.transfer(httpx.Response(200, json={"partyName": "Straits Trade Bank Ltd."}))
    assert response.status_code == 201, response.text
    assert response.json()["possessor"] == {**STRAITS, "partyName": "Straits Trade Bank Ltd."}
