"""Exactly one of many concurrent conflicting actions wins, and the chain and the log stay whole; the database
enforces it (a row lock on the eBL, unique keys on chain positions and references, one write transaction at a time).

The requests are spread over several nodes on one database, as over the processes of one deployment: each node has
its own engine and so its own connections, and only the database stands between their writes.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy.exc import IntegrityError

from api.app import create_app
from ebl.audit import AuditSummary, audit
from ebl.errors import DuplicateIssuance, LostRace
from ebl.service import EblView, IssueRequest, Node, TransactionRequest
from ebl.store.db import read_session, write
from ebl.store.repositories import Advance, Ebl, EblRepository, Entry, NewEbl, NewEntry
from tests.conftest import CARRIER, CONSIGNEE, CQ_BANK, CQ_CUSTOMS, SG_BANK, SG_CUSTOMS, SHIPPER, Api, assert_error

REF = "YXRS2611CKGSIN001"
CLIENTS = 50
NODES = 3


@pytest.fixture
def apis(node: Node) -> Iterator[list[Api]]:
    """``NODES`` nodes on the database of ``node``, each with its own engine, each driven over HTTP."""
    others = [Node.open(node.settings) for _ in range(NODES - 1)]
    clients = [TestClient(create_app(n), raise_server_exceptions=False) for n in [node, *others]]
    for client in clients:
        client.__enter__()
    try:
        yield [Api(client) for client in clients]
    finally:
        for client in clients:
            client.__exit__(None, None, None)
        for other in others:
            other.close()


def _assert_audit_passes(node: Node) -> AuditSummary:
    assert isinstance(node.node_key.private, Ed25519PrivateKey)
    summary = audit(
        node.engine, node.node_key.private.public_key(), node.ledger.origin, platform=node.platform, trust=node.trust
    )
    assert summary.ok, summary.failures
    assert summary.leaves == summary.entries
    return summary


def test_concurrent_conflicting_transfers_have_exactly_one_winner(
    apis: list[Api], node: Node, sample: dict[str, Any]
) -> None:
    api = apis[0]
    assert api.issue(sample).status_code == 201
    others = [CQ_BANK, SG_BANK, CONSIGNEE, CARRIER]
    recipients = [others[i % len(others)] for i in range(CLIENTS)]

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        responses = list(
            pool.map(lambda i: apis[i % NODES].act(SHIPPER, REF, "TRANSFER", recipients[i]), range(CLIENTS))
        )

    winners = [r for r in responses if r.status_code == 201]
    assert len(winners) == 1, sorted(r.status_code for r in responses)
    for response in responses:
        if response.status_code != 201:
            assert_error(response, 409)
    ebl = api.get(SHIPPER, f"/v1/ebls/{REF}").json()
    assert ebl["chainLength"] == 2
    assert ebl["possessor"] == winners[0].json()["possessor"]
    report = api.client.post("/v1/verify", json=api.get(SG_CUSTOMS, f"/v1/ebls/{REF}/bundle").json()).json()
    assert report["verdict"] == "VALID", report
    _assert_audit_passes(node)


def test_concurrent_issuance_of_one_reference_gives_one_ebl(
    apis: list[Api], node: Node, sample: dict[str, Any]
) -> None:
    api = apis[0]
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        responses = list(pool.map(lambda i: apis[i % NODES].issue(sample), range(CLIENTS)))
    assert sorted(r.status_code for r in responses) == [201] + [409] * (CLIENTS - 1)
    page = api.get(CQ_CUSTOMS, "/v1/ebls").json()
    assert [item["transportDocumentReference"] for item in page["items"]] == [REF]
    _assert_audit_passes(node)


def test_concurrent_actions_on_different_ebls_all_succeed(apis: list[Api], node: Node, sample: dict[str, Any]) -> None:
    """One write transaction at a time appends to the log: writers queue for their turn rather than failing."""
    documents = []
    for i in range(CLIENTS):
        document = copy.deepcopy(sample)
        document["transportDocumentReference"] = f"YXRS2611CONC{i:03d}"
        documents.append(document)

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        issued = list(pool.map(lambda i: apis[i % NODES].issue(documents[i]), range(CLIENTS)))
        assert [r.status_code for r in issued] == [201] * CLIENTS, [r.text for r in issued if r.status_code != 201]
        refs = [d["transportDocumentReference"] for d in documents]
        moved = list(
            pool.map(lambda i: apis[-1 - i % NODES].act(SHIPPER, refs[i], "TRANSFER", CQ_BANK), range(CLIENTS))
        )
    assert [r.status_code for r in moved] == [201] * CLIENTS, [r.text for r in moved if r.status_code != 201]
    summary = _assert_audit_passes(node)
    assert (summary.ebls, summary.entries) == (CLIENTS, 2 * CLIENTS)


def test_the_database_refuses_a_second_entry_at_the_same_chain_position(
    api: Api, node: Node, sample: dict[str, Any]
) -> None:
    """Below the row lock, the unique key on (eBL, sequence) is what makes a second writer fail."""
    assert api.issue(sample).status_code == 201
    with read_session(node.engine) as session:
        ebls = EblRepository(session)
        row = ebls.latest(REF)
        assert row is not None
        [first] = ebls.entries(row.id)
    twin = Entry(sequence=0, jws=first.jws + "x", checksum="0" * 64)
    with pytest.raises(IntegrityError):
        write(
            node.engine,
            lambda session: EblRepository(session).add_entries([NewEntry(row.id, twin, "ISSUE", datetime.now(UTC))]),
        )
    assert api.get(SHIPPER, f"/v1/ebls/{REF}").json()["chainLength"] == 1


def test_an_action_built_on_a_stale_read_advances_nothing(api: Api, node: Node, sample: dict[str, Any]) -> None:
    """Above the unique key, the eBL row's compare-and-set: a write that read another chain length, or an eBL that
    has been superseded since, changes no row, and the action is lost before it writes anything."""
    assert api.issue(sample).status_code == 201
    with read_session(node.engine) as session:
        row = EblRepository(session).latest(REF)
    assert row is not None and row.chain_length == 1
    outcomes: list[bool] = []

    def try_to_advance(from_length: int, *, supersede_first: bool = False) -> None:
        def job(session: Any) -> None:
            ebls = EblRepository(session)
            if supersede_first:
                ebls.supersede(row.id)
            moved = ebls.advance([Advance(row.id, from_length, "ISSUED", from_length + 1)])
            outcomes.append(moved == {row.id})
            raise LookupError("rolled back: this test writes nothing")

        with pytest.raises(LookupError):
            write(node.engine, job)

    try_to_advance(0)
    try_to_advance(1, supersede_first=True)
    try_to_advance(1)
    assert outcomes == [False, False, True]
    assert api.get(SHIPPER, f"/v1/ebls/{REF}").json()["chainLength"] == 1
    assert api.act(SHIPPER, REF, "TRANSFER", CQ_BANK).status_code == 201


def test_a_conflict_inside_one_write_batch_loses_only_the_later_action(
    api: Api, node: Node, sample: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Actions whose writes wait together share one transaction, and the eBLs they move on are moved in one
    statement. Two transfers built on one read of an eBL land in the same batch: that statement moves the eBL once,
    the batch runs again write by write, and only the second transfer loses; a transfer of another eBL in the batch
    stands."""
    other = copy.deepcopy(sample)
    other["transportDocumentReference"] = "YXRS2611CKGSIN002"
    assert api.issue(sample).status_code == 201
    assert api.issue(other).status_code == 201
    shipper = node.authenticate(api.parties[SHIPPER]["apiKey"])
    statements: list[int] = []
    advance = EblRepository.advance

    def counted(self: EblRepository, moves: list[Advance]) -> set[int]:
        statements.append(len(moves))
        return advance(self, moves)

    monkeypatch.setattr(EblRepository, "advance", counted)

    def transfer(to: str) -> TransactionRequest:
        return TransactionRequest.model_validate({"actionCode": "TRANSFER", "recipient": api.ref(to)})

    async def at_once() -> list[Any]:
        acts = [(REF, CQ_BANK), (REF, SG_BANK), (other["transportDocumentReference"], CQ_BANK)]
        return await asyncio.gather(*(node.act(shipper, ref, transfer(to)) for ref, to in acts), return_exceptions=True)

    first, second, third = asyncio.run(at_once())
    assert statements == [3, 1, 1, 1]  # the batch's one statement, then one per write when it ran again
    assert isinstance(first, EblView) and first.possessor["partyName"] == CQ_BANK
    assert isinstance(second, LostRace)
    assert isinstance(third, EblView) and third.chainLength == 2
    assert api.get(SHIPPER, f"/v1/ebls/{REF}").json()["possessor"]["partyName"] == CQ_BANK
    _assert_audit_passes(node)


def test_issuances_in_one_write_batch_store_their_ebls_in_one_statement_and_one_reference_once(
    api: Api, node: Node, sample: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issuances whose writes wait together store their eBLs in one statement. Two of one reference in the batch send
    it write by write, where the second is a duplicate; the rest of the batch stands."""
    carrier = node.authenticate(api.parties[CARRIER]["apiKey"])
    statements: list[int] = []
    add_first = EblRepository.add_first

    def counted(self: EblRepository, news: list[NewEbl]) -> dict[str, Ebl]:
        statements.append(len(news))
        return add_first(self, news)

    monkeypatch.setattr(EblRepository, "add_first", counted)

    def issuance(reference: str) -> IssueRequest:
        document = copy.deepcopy(sample)
        document["transportDocumentReference"] = reference
        return IssueRequest.model_validate({"transportDocument": document, "issueTo": api.issue_to(SHIPPER)})

    async def at_once(references: list[str]) -> list[Any]:
        return await asyncio.gather(
            *(node.issue(carrier, issuance(reference)) for reference in references), return_exceptions=True
        )

    distinct = [f"YXRS2611BATCH{i:03d}" for i in range(3)]
    assert [view.chainLength for view in asyncio.run(at_once(distinct))] == [1, 1, 1]
    assert statements == [3]

    statements.clear()
    first, again, other = asyncio.run(at_once([REF, REF, "YXRS2611BATCH100"]))
    assert statements == [1, 1, 1]  # the batch failed before its statement, then ran write by write
    assert isinstance(first, EblView) and isinstance(other, EblView)
    assert isinstance(again, DuplicateIssuance)
    summary = _assert_audit_passes(node)
    assert (summary.ebls, summary.entries) == (5, 5)
