"""Schema changes are Alembic migrations: ``ebl db upgrade`` and node start-up apply them, on either database."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel

from ebl import cli
from ebl.store.db import LATEST_REVISION, DatabaseSetupError, make_engine, migrate
from tests.conftest import DATABASES

HEAD = LATEST_REVISION


@pytest.fixture
def database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = DATABASES.url(tmp_path)
    monkeypatch.setenv("EBL_DATABASE_URL", url)
    return url


def test_db_upgrade_brings_an_empty_database_to_the_latest_revision(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["db", "current"]) == 1
    assert "schema revision none" in capsys.readouterr().out
    assert cli.main(["db", "upgrade"]) == 0
    assert cli.main(["db", "upgrade"]) == 0  # a second run has nothing left to do
    assert cli.main(["db", "current"]) == 0
    out = capsys.readouterr().out
    assert out.count(f"schema revision {HEAD} (latest {HEAD})") == 3


def test_the_migrated_schema_is_the_schema_the_code_expects(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate(engine)
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_a_database_made_before_migrations_is_refused_with_a_reason(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        SQLModel.metadata.create_all(engine)
        with pytest.raises(DatabaseSetupError, match="before the schema had migrations"):
            migrate(engine)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("mysql://root@127.0.0.1/test", "unsupported database 'mysql'"),
        ("postgresql+psycopg2://postgres@127.0.0.1/test", "psycopg 3"),
        ("postgresql+psycopg://postgres@127.0.0.1:1/test", "cannot connect to the database"),
    ],
)
def test_an_unusable_database_url_is_refused_with_a_reason(
    url: str, reason: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EBL_DATABASE_URL", url)
    assert cli.main(["db", "upgrade"]) == 2
    assert reason in capsys.readouterr().err


def test_indexing_party_codes_carries_over_the_parties_already_registered(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate(engine, "0001")
        codes = [
            {"codeListProvider": "GLEIF", "partyCode": "529900T8BM49AURSDO55"},
            {"codeListProvider": "W3C", "partyCode": "did:web:shipper.example", "codeListName": "DID"},
        ]
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO party (id, party_name, ebl_platform, roles, identifying_codes, api_key_hash, "
                    "created_at) VALUES ('p1', 'Shipper', 'CQSB', '[]', :codes, 'h1', :now)"
                ),
                {"codes": json.dumps(codes), "now": datetime.now(UTC)},
            )
        migrate(engine)
        with engine.connect() as connection:
            columns = "ebl_platform, code_list_provider, party_code, party_id"
            rows = connection.execute(text(f"SELECT {columns} FROM party_code")).all()
    finally:
        engine.dispose()
    assert sorted(map(tuple, rows)) == [
        ("CQSB", "GLEIF", "529900T8BM49AURSDO55", "p1"),
        ("CQSB", "W3C", "did:web:shipper.example", "p1"),
    ]
