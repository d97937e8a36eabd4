"""C2SP tlog-witness between two nodes that trust each other: cosigning, every answer code, and the policy."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from api.app import create_app
from ebl.log import note
from ebl.log.witness import AddCheckpoint
from ebl.service import Node
from tests.conftest import SG_CUSTOMS, Api, node_settings, trust_each_other
from tests.test_api import REF, play_story

WITNESS_URL = "http://sgsb.test/v1/log/witness"


@dataclass
class Corridor:
    cq: Node
    sg: Node
    cq_api: Api
    sg_client: TestClient


@pytest.fixture
def corridor(tmp_path: Path) -> Iterator[Corridor]:
    cq_settings = node_settings(tmp_path / "cq", witnesses=[WITNESS_URL])
    sg_settings = node_settings(tmp_path / "sg", platform="SGSB")
    trust_each_other(cq_settings, sg_settings)
    cq, sg = Node.open(cq_settings), Node.open(sg_settings)
    with TestClient(create_app(cq)) as cq_client, TestClient(create_app(sg)) as sg_client:
        yield Corridor(cq, sg, Api(cq_client), sg_client)
    cq.close()
    sg.close()


def test_a_peer_cosigns_and_the_policy_counts_it(corridor: Corridor, sample: dict[str, Any]) -> None:
    play_story(corridor.cq_api, sample)
    corridor.cq.sign_checkpoint()
    corridor.cq.push_checkpoint(corridor.sg_client)
    served = corridor.cq_api.client.get("/v1/log/checkpoint").text
    assert "— sgsb.ebl.example/witness " in served
    bundle = corridor.cq_api.get(SG_CUSTOMS, f"/v1/ebls/{REF}/bundle").json()
    for witnesses, verdict in ((1, "VALID"), (2, "INVALID")):
        report = corridor.cq_api.client.post(f"/v1/verify?witnesses={witnesses}", json=bundle).json()
        assert report["verdict"] == verdict, report
    ledger = next(c for c in report["checks"] if c["name"] == "LEDGER_INCLUSION")
    assert "policy asks for 2" in ledger["detail"]
    # The witness's line copied under other names (the key ID made for each) is still one witness.
    witnessed = bundle["checkpoint"].split("\n\n", 1)[1]
    cosignature = next(line for line in witnessed.splitlines(keepends=True) if "sgsb.ebl.example/witness" in line)
    raw = base64.b64decode(cosignature.split()[-1])
    sg_key = corridor.sg.node_key.public.ed25519()
    assert sg_key is not None
    forged = "".join(
        f"— {name} {base64.b64encode(note._cosignature_key_id(name, sg_key) + raw[4:]).decode()}\n"
        for name in ("evil-1.example/witness", "evil-2.example/witness")
    )
    # Every tlog-proof of the bundle ends with the checkpoint it proves against, the bundle's own.
    padded = {
        **bundle,
        "checkpoint": bundle["checkpoint"] + forged,
        "inclusionProofs": [proof + forged for proof in bundle["inclusionProofs"]],
    }
    report = corridor.cq_api.client.post("/v1/verify?witnesses=2", json=padded).json()
    assert report["verdict"] == "INVALID", report

    # The log grows: the next push proves consistency from the size the witness last cosigned.
    corridor.cq_api.issue({**sample, "transportDocumentReference": "YXRS2611SECOND"})
    corridor.cq.sign_checkpoint()
    corridor.cq.push_checkpoint(corridor.sg_client)
    text, _ = note.split_note(corridor.cq_api.client.get("/v1/log/checkpoint").text)
    assert note.Checkpoint.parse(text).size == 9
    assert "— sgsb.ebl.example/witness " in corridor.cq_api.client.get("/v1/log/checkpoint").text


def test_an_uncosigned_checkpoint_fails_a_witness_policy(corridor: Corridor, sample: dict[str, Any]) -> None:
    play_story(corridor.cq_api, sample)
    bundle = corridor.cq_api.get(SG_CUSTOMS, f"/v1/ebls/{REF}/bundle").json()
    assert corridor.cq_api.client.post("/v1/verify", json=bundle).json()["verdict"] == "VALID"
    assert corridor.cq_api.client.post("/v1/verify?witnesses=1", json=bundle).json()["verdict"] == "INVALID"
    # Taking the checkpoint out passes no policy: without one the check is skipped, unless witnesses are asked for.
    stripped = {key: value for key, value in bundle.items() if key not in ("checkpoint", "inclusionProofs")}
    assert corridor.cq_api.client.post("/v1/verify", json=stripped).json()["verdict"] == "VALID"
    report = corridor.cq_api.client.post("/v1/verify?witnesses=1", json=stripped).json()
    assert report["verdict"] == "INVALID"
    ledger = next(c for c in report["checks"] if c["name"] == "LEDGER_INCLUSION")
    assert ledger["status"] == "INVALID" and "carries no checkpoint" in ledger["detail"]


def test_a_witness_that_does_not_answer_does_not_keep_the_others_from_being_asked(
    corridor: Corridor, sample: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # With a password in it, which the logs must not show.
    dead = "http://alice:s3cret@dead.test/v1/log/witness"
    monkeypatch.setattr(corridor.cq.settings, "witnesses", [dead, WITNESS_URL])

    def network(request: httpx.Request) -> httpx.Response:
        if request.url.host == "dead.test":
            raise httpx.ConnectError("connection refused", request=request)
        answer = corridor.sg_client.post(request.url.path, content=request.content)
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    corridor.cq_api.issue(sample)
    corridor.cq.sign_checkpoint()
    with httpx.Client(transport=httpx.MockTransport(network)) as client:
        corridor.cq.push_checkpoint(client)
    assert "— sgsb.ebl.example/witness " in corridor.cq_api.client.get("/v1/log/checkpoint").text
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(message.startswith("witness http://dead.test/v1/log/witness did not answer") for message in warnings)
    assert not [message for message in warnings if "s3cret" in message], warnings
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def _add(corridor: Corridor, request: AddCheckpoint) -> Any:
    return corridor.sg_client.post("/v1/log/witness/add-checkpoint", content=request.to_text())


def test_every_witness_answer(corridor: Corridor, sample: dict[str, Any]) -> None:
    corridor.cq_api.issue(sample)
    signed = corridor.cq.sign_checkpoint()
    good = AddCheckpoint(0, [], signed.note)
    stranger = note.Signer("cqsb.ebl.example/log", Ed25519PrivateKey.generate())
    text, _ = note.split_note(signed.note)

    unknown = note.sign_note("zzzz.ebl.example/log\n1\n" + text.split("\n")[2] + "\n", [stranger])
    assert _add(corridor, AddCheckpoint(0, [], unknown)).status_code == 404
    assert _add(corridor, AddCheckpoint(0, [], note.sign_note(text, [stranger]))).status_code == 403
    assert _add(corridor, AddCheckpoint(5, [], signed.note)).status_code == 400
    assert _add(corridor, AddCheckpoint(0, [bytes(32)], signed.note)).status_code == 422
    for garbage in (
        "garbage",
        good.to_text().replace("old 0", "old \u00b2"),
        good.to_text().replace("old 0", "old 00"),
    ):
        assert corridor.sg_client.post("/v1/log/witness/add-checkpoint", content=garbage).status_code == 400

    accepted = _add(corridor, good)
    assert accepted.status_code == 200
    sg_key = corridor.sg.node_key.public.ed25519()
    assert sg_key is not None
    assert note.cosigners(signed.note + accepted.text, {"sgsb.ebl.example/witness": [sg_key]}) == [
        "sgsb.ebl.example/witness"
    ]
    stale = _add(corridor, good)
    assert stale.status_code == 409
    assert stale.headers["content-type"].startswith("text/x.tlog.size")
    assert stale.text == "1\n"

    corridor.cq_api.issue({**sample, "transportDocumentReference": "YXRS2611SECOND"})
    grown = corridor.cq.sign_checkpoint()
    assert _add(corridor, AddCheckpoint(1, [bytes(32)], grown.note)).status_code == 422
    proof = asyncio.run(corridor.cq.consistency_proof(1, 2))["proof"]
    honest = AddCheckpoint(1, [base64.b64decode(h) for h in proof], grown.note)
    assert _add(corridor, honest).status_code == 200
