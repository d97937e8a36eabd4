"""The node's append-only log over HTTP and in bundles: checkpoints, proofs, entries, and refusals."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy.exc import IntegrityError

from ebl import canonical
from ebl.log import merkle, note
from ebl.service import Node
from tests.conftest import SG_CUSTOMS, Api, assert_error
from tests.test_api import REF, play_story


def _open_checkpoint(client: TestClient) -> note.Checkpoint:
    verifier = note.parse_vkey(client.get("/v1/log/vkey").text.strip())
    text, _ = note.open_note(client.get("/v1/log/checkpoint").text, [verifier])
    return note.Checkpoint.parse(text)


def test_every_chain_entry_is_a_leaf_with_proofs(api: Api, node: Node, sample: dict[str, Any]) -> None:
    empty = _open_checkpoint(api.client)
    assert (empty.origin, empty.size, empty.root) == ("cqsb.ebl.example/log", 0, merkle.EMPTY_ROOT)
    play_story(api, sample)
    chain = api.get(SG_CUSTOMS, f"/v1/ebls/{REF}/chain").json()["entries"]
    node.sign_checkpoint()
    checkpoint = _open_checkpoint(api.client)
    assert checkpoint.size == len(chain) == 8
    for index, compact in enumerate(chain):
        entry = api.client.get(f"/v1/log/entries/{index}").json()
        assert entry["entry"] == compact
        assert entry["entryChecksum"] == canonical.sha256_hex(compact.encode())
        proof = api.client.get(f"/v1/log/proofs/inclusion?index={index}&treeSize={checkpoint.size}").json()
        merkle.verify_inclusion(
            merkle.entry_leaf_hash(entry["entryChecksum"]),
            index,
            checkpoint.size,
            [base64.b64decode(h) for h in proof["proof"]],
            checkpoint.root,
        )
    consistency = api.client.get("/v1/log/proofs/consistency?first=3&second=8").json()
    three = merkle.root(3, lambda level, index: _node(node, level, index))
    merkle.verify_consistency(3, 8, three, checkpoint.root, [base64.b64decode(h) for h in consistency["proof"]])


def _node(node: Node, level: int, index: int) -> bytes:
    from sqlmodel import Session

    from ebl.store.repositories import LogRepository

    with Session(node.engine) as session:
        return LogRepository(session).node(level, index)


def test_bad_proof_requests_get_4xx(api: Api, sample: dict[str, Any]) -> None:
    api.issue(sample)
    for path in (
        "/v1/log/proofs/inclusion?index=5&treeSize=1",
        "/v1/log/proofs/inclusion?index=0&treeSize=99",
        "/v1/log/proofs/inclusion?index=-1&treeSize=1",
        "/v1/log/proofs/inclusion?index=x&treeSize=1",
        "/v1/log/proofs/consistency?first=0&second=1",
        "/v1/log/proofs/consistency?first=2&second=1",
        "/v1/log/proofs/consistency?first=1&second=99",
        "/v1/log/entries/-1",
    ):
        assert_error(api.client.get(path), 400)
    assert_error(api.client.get("/v1/log/entries/7"), 404)


def test_bundles_prove_every_entry_in_the_log(api: Api, sample: dict[str, Any]) -> None:
    play_story(api, sample)
    bundle = api.get(SG_CUSTOMS, f"/v1/ebls/{REF}/bundle").json()
    assert len(bundle["inclusionProofs"]) == 8
    report = api.client.post("/v1/verify", json=bundle).json()
    ledger = next(c for c in report["checks"] if c["name"] == "LEDGER_INCLUSION")
    assert ledger["status"] == "VALID", ledger

    tampered = copy.deepcopy(bundle)
    proof = note.TlogProof.parse(tampered["inclusionProofs"][3])
    proof.hashes[0] = bytes(32)
    tampered["inclusionProofs"][3] = proof.to_text()
    report = api.client.post("/v1/verify", json=tampered).json()
    ledger = next(c for c in report["checks"] if c["name"] == "LEDGER_INCLUSION")
    assert (report["verdict"], ledger["status"], ledger["entry"]) == ("INVALID", "INVALID", 3)

    forged = copy.deepcopy(bundle)
    stranger = note.Signer("cqsb.ebl.example/log", Ed25519PrivateKey.generate())
    text, _ = note.split_note(bundle["checkpoint"])
    forged["checkpoint"] = note.sign_note(text, [stranger])
    report = api.client.post("/v1/verify", json=forged).json()
    assert report["verdict"] == "INVALID"


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE chain_entry SET jws = 'x'",
        "DELETE FROM chain_entry",
        "UPDATE log_leaf SET entry_checksum = 'x'",
        "DELETE FROM log_node",
        "DELETE FROM checkpoint",
        "UPDATE checkpoint SET size = 99",
    ],
)
def test_the_database_refuses_to_rewrite_history(api: Api, node: Node, sample: dict[str, Any], statement: str) -> None:
    play_story(api, sample)
    with node.engine.begin() as connection, pytest.raises(IntegrityError, match="append-only"):
        connection.exec_driver_sql(statement)
