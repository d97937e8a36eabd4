"""The lookups every request makes follow an index in their own order, whatever the database knows of its tables.

A PostgreSQL database that has no statistics (new, freshly bulk-loaded, autovacuum off) once answered "the latest eBL
of this reference" by walking the primary key backwards past every newer eBL, ~2.6 ms at 18,000 eBLs and growing
(docs/benchmarks-history.md, step 13). These tests run the repositories' own statements on 20,000 eBLs that were never
analysed, and read the plan.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import Session

from ebl.service import Node
from ebl.store.db import read_session, write
from ebl.store.repositories import EblRepository

EBLS = 20_000


@pytest.fixture
def party_ids(node: Node, sample: dict[str, Any]) -> list[str]:
    """Two parties, each involved in every other of ``EBLS`` eBLs (rows as wide as real ones, with a chain entry each)
    never analysed."""
    document = json.dumps(sample)
    with read_session(node.engine) as session:
        ids = [row[0] for row in session.execute(text("SELECT id FROM party ORDER BY id LIMIT 2"))]

    def load(session: Session) -> None:
        now = datetime.now(UTC)
        session.execute(
            text(
                "INSERT INTO ebl (transport_document_reference, transport_document_sub_reference, document_json, "
                "document_checksum, issue_to, status, chain_length, superseded, created_at) "
                "VALUES (:ref, '', :document, :checksum, :issue_to, 'ISSUED', 1, false, :now)"
            ),
            [
                {
                    "ref": f"PLAN{n:06d}",
                    "document": document,
                    "checksum": "0" * 64,
                    "issue_to": json.dumps({}),
                    "now": now,
                }
                for n in range(EBLS)
            ],
        )
        # And a chain entry each: the subqueries that read an eBL's chain with it weigh in the planner's costs.
        session.execute(
            text(
                "INSERT INTO chain_entry (ebl_id, sequence, jws, checksum, action_code, created_at) "
                "VALUES (:ebl_id, 0, :jws, :checksum, 'ISSUE', :now)"
            ),
            [{"ebl_id": n + 1, "jws": "e" * 900, "checksum": f"{n:064x}", "now": now} for n in range(EBLS)],
        )
        session.execute(
            text(
                "INSERT INTO involvement (ebl_id, party_id) "
                "SELECT id, CASE WHEN id % 2 = 0 THEN :even ELSE :odd END FROM ebl"
            ),
            {"even": ids[0], "odd": ids[1]},
        )

    write(node.engine, load)
    return ids


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """The statements :class:`EblRepository` sends, with their parameters, while the test runs."""
    sent: list[tuple[str, Any]] = []
    execute = EblRepository._execute

    def record(self: EblRepository, statement: str, parameters: Any = ()) -> Any:
        sent.append((statement, parameters))
        return execute(self, statement, parameters)

    monkeypatch.setattr(EblRepository, "_execute", record)
    return sent


def _plan(node: Node, statement: str, parameters: Any) -> str:
    """The plan of ``statement`` as text, in each database's own words."""
    with node.engine.connect() as connection:
        cursor = connection.connection.driver_connection.cursor()
        if node.engine.dialect.name == "postgresql":
            cursor.execute("EXPLAIN " + statement.replace("?", "%s"), parameters)
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
        return "\n".join(" ".join(str(column) for column in row) for row in cursor.fetchall())


def test_the_latest_ebl_of_a_reference_is_one_index_descent(
    node: Node, party_ids: list[str], statements: list[tuple[str, Any]]
) -> None:
    with read_session(node.engine) as session:
        ebl_id = session.execute(text("SELECT id FROM ebl WHERE transport_document_reference = 'PLAN000001'")).one()[0]
        statements.clear()
        involved, other = party_ids if ebl_id % 2 == 0 else reversed(party_ids)
        found = EblRepository(session).read("PLAN000001", party_id=involved)
        assert EblRepository(session).read("PLAN000001", party_id=other) is None
    assert found is not None and found.ebl.id == ebl_id
    [(statement, parameters), _] = statements
    plan = _plan(node, statement, parameters)
    assert "ix_ebl_reference_id" in plan, plan
    assert "ebl_pkey" not in plan, plan


def test_a_partys_ebls_are_read_in_page_order_from_its_own_index(
    node: Node, party_ids: list[str], statements: list[tuple[str, Any]]
) -> None:
    with read_session(node.engine) as session:
        first = EblRepository(session).page(party_id=party_ids[0], after_id=0, limit=50)
        after = EblRepository(session).page(party_id=party_ids[0], after_id=first[-1].ebl.id, limit=50)
    ids = [record.ebl.id for record in first + after]
    assert ids == sorted(set(ids))
    assert all(ebl_id % 2 == 0 for ebl_id in ids) and len(first) == len(after) == 50
    [(statement, parameters), _] = [(s, p) for s, p in statements if "FROM involvement" in s]
    plan = _plan(node, statement, parameters)
    assert "ix_involvement_party_ebl" in plan, plan
