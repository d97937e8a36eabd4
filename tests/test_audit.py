"""``ebl audit`` finds every kind of direct tampering with the database, also after the triggers were dropped."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest

from ebl import canonical, cli
from ebl.service import Node
from tests.conftest import Api
from tests.test_api import play_story

LEDGER_TABLES = ("chain_entry", "log_leaf", "log_node", "checkpoint")


def _drop_triggers(dialect: str) -> list[str]:
    """What an operator with full access to the database would run first."""
    if dialect == "postgresql":
        return [f"DROP TRIGGER {table}_append_only ON {table}" for table in LEDGER_TABLES]
    return [f"DROP TRIGGER {table}_no_{verb}" for table in LEDGER_TABLES for verb in ("update", "delete")]


@pytest.fixture
def audited(api: Api, node: Node, sample: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    play_story(api, sample)
    api.get("Singapore Customs", "/v1/ebls/YXRS2611CKGSIN001/bundle")  # signs a checkpoint over all 8 entries
    monkeypatch.setenv("EBL_DATABASE_URL", node.settings.database_url)
    monkeypatch.setenv("EBL_KEYS_DIR", str(node.settings.keys_dir))
    return lambda: cli.main(["audit"])


def _tamper(node: Node, *statements: str) -> None:
    dialect = node.engine.dialect.name
    zeros = "decode(repeat('00', 32), 'hex')" if dialect == "postgresql" else "zeroblob(32)"
    with node.engine.begin() as connection:
        for statement in (*_drop_triggers(dialect), *statements):
            connection.exec_driver_sql(statement.replace("ZEROS", zeros))


def test_an_untouched_database_passes(audited: Callable[[], int], capsys: pytest.CaptureFixture[str]) -> None:
    assert audited() == 0
    out = capsys.readouterr().out
    assert "audited 1 eBLs, 8 chain entries, 8 log leaves" in out
    assert "OK" in out


@pytest.mark.parametrize(
    ("statements", "named"),
    [
        # (ZEROS stands for 32 zero bytes, written as the database at hand spells them.)
        # A changed byte in a stored entry.
        (
            [
                "UPDATE chain_entry SET jws = substr(jws, 1, 60) "
                "|| CASE substr(jws, 61, 1) WHEN 'A' THEN 'B' ELSE 'A' END || substr(jws, 62) WHERE sequence = 3"
            ],
            "chain_entry id=4",
        ),
        # The last entry deleted with its leaf: the chain still links, but the tree remembers it.
        (
            [
                "DELETE FROM log_leaf WHERE entry_checksum = (SELECT checksum FROM chain_entry WHERE sequence = 7)",
                "DELETE FROM chain_entry WHERE sequence = 7",
            ],
            "log_node level=0 index=7",
        ),
        # ... and with its tree nodes too: the signed checkpoint remembers it.
        (
            [
                "DELETE FROM log_leaf WHERE entry_checksum = (SELECT checksum FROM chain_entry WHERE sequence = 7)",
                "DELETE FROM chain_entry WHERE sequence = 7",
                'DELETE FROM log_node WHERE (level = 0 AND "index" = 7) OR (level = 1 AND "index" = 3) '
                'OR (level = 2 AND "index" = 1) OR (level = 3 AND "index" = 0)',
            ],
            "checkpoint",
        ),
        # A deleted middle entry: the next one no longer links.
        (["DELETE FROM chain_entry WHERE sequence = 2"], "chain_entry id=4"),
        # Reordered entries.
        (
            [
                "UPDATE chain_entry SET sequence = 100 WHERE sequence = 4",
                "UPDATE chain_entry SET sequence = 4 WHERE sequence = 5",
                "UPDATE chain_entry SET sequence = 5 WHERE sequence = 100",
                "UPDATE chain_entry SET id = 100 WHERE id = 5",
                "UPDATE chain_entry SET id = 5 WHERE id = 6",
                "UPDATE chain_entry SET id = 6 WHERE id = 100",
            ],
            "chain_entry id=5",
        ),
        # An inserted entry: a copy of an existing one under another id.
        (
            [
                "INSERT INTO chain_entry (ebl_id, sequence, jws, checksum, action_code, created_at) "
                # A fixed checksum: deriving it from the original could collide with it and trip the unique index.
                f"SELECT ebl_id, 8, jws, '{'ab' * 32}', action_code, created_at "
                "FROM chain_entry WHERE sequence = 7"
            ],
            "chain_entry id=9",
        ),
        # The log: a rewritten leaf, a rewritten interior node, a rewritten checkpoint.
        (['UPDATE log_leaf SET leaf_hash = ZEROS WHERE "index" = 2'], "log_leaf index=2"),
        (['UPDATE log_node SET hash = ZEROS WHERE level = 2 AND "index" = 0'], "log_node level=2 index=0"),
        (["UPDATE checkpoint SET root_hash = ZEROS WHERE size = 8"], "checkpoint"),
        # The document itself.
        (["UPDATE ebl SET document_json = replace(document_json, '11850.5', '1185.5')"], "ebl id=1"),
    ],
)
def test_tampering_is_found_and_named(
    audited: Callable[[], int], node: Node, capsys: pytest.CaptureFixture[str], statements: list[str], named: str
) -> None:
    _tamper(node, *statements)
    assert audited() == 1
    out = capsys.readouterr().out
    assert "AUDIT FAILED" in out
    failure = next(line for line in out.splitlines() if line.startswith("FAILED: "))
    assert named in failure, failure


def test_a_document_is_stored_as_the_text_its_checksum_is_of(api: Api, node: Node, sample: dict[str, Any]) -> None:
    """One serialisation of the document, its RFC 8785 form: what the checksum hashes is what the database holds."""
    play_story(api, sample)
    with node.engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT document_json, document_checksum FROM ebl").all()
    assert rows
    for stored, checksum in rows:
        assert stored.encode() == canonical.canonicalize(json.loads(stored))
        assert hashlib.sha256(stored.encode()).hexdigest() == checksum
