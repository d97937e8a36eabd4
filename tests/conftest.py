"""Shared fixtures: a real node on a fresh database and keys folder, driven over HTTP.

The suite runs on SQLite (``pytest``, or ``pytest --database=sqlite``) or on PostgreSQL
(``pytest --database=postgresql`` with ``EBL_TEST_POSTGRES_URL=postgresql+psycopg://user@host/database``): there every
node gets a schema of its own in that database, dropped when the run ends.
"""

from __future__ import annotations

import copy
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, make_url
from sqlalchemy.engine import Engine

from api.app import create_app
from ebl import jws, keys
from ebl.config import Settings
from ebl.demo import CARRIER, CONSIGNEE, CQ_BANK, SG_BANK, SG_CUSTOMS, SHIPPER, sample_document
from ebl.service import Node

# The party names come from the demo, which plays the same story; the tests import them from here.
__all__ = ["CARRIER", "CONSIGNEE", "CQ_BANK", "CQ_CUSTOMS", "SG_BANK", "SG_CUSTOMS", "SHIPPER", "Api", "assert_error"]

CQ_CUSTOMS = "Chongqing Customs"
load_sample = sample_document


@pytest.fixture
def sample() -> dict[str, Any]:
    return copy.deepcopy(load_sample())


POSTGRES_URL_VARIABLE = "EBL_TEST_POSTGRES_URL"


class _Databases:
    """Where this run's nodes keep their data: a SQLite file each, or a PostgreSQL schema each."""

    def __init__(self) -> None:
        self.backend = "sqlite"
        self._postgres_url: str | None = None
        self._admin: Engine | None = None
        self._schemas: list[str] = []

    def use_postgresql(self, url: str) -> None:
        self.backend, self._postgres_url = "postgresql", url
        self._admin = create_engine(url, isolation_level="AUTOCOMMIT")

    def url(self, folder: Path) -> str:
        """A fresh, empty database for one node."""
        if self._admin is None:
            return f"sqlite:///{folder / 'ebl.db'}"
        schema = f"test_{uuid.uuid4().hex[:16]}"
        with self._admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
        self._schemas.append(schema)
        return (
            make_url(self._postgres_url)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )

    def drop_all(self) -> None:
        if self._admin is None:
            return
        with self._admin.connect() as connection:
            for schema in self._schemas:
                connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        self._admin.dispose()


DATABASES = _Databases()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--database",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help=f"where the nodes under test keep their data (postgresql needs {POSTGRES_URL_VARIABLE})",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--database") == "postgresql":
        url = os.environ.get(POSTGRES_URL_VARIABLE)
        if not url:
            raise pytest.UsageError(f"--database=postgresql needs {POSTGRES_URL_VARIABLE}")
        DATABASES.use_postgresql(url)


def pytest_unconfigure(config: pytest.Config) -> None:
    DATABASES.drop_all()


def pytest_report_header(config: pytest.Config) -> str:
    return f"database: {DATABASES.backend}"


def node_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": DATABASES.url(tmp_path),
        "keys_dir": tmp_path / "keys",
        "platform": "CQSB",
        "sandbox": True,
        # Tests drive nodes as fast as they answer; the rate limit has tests of its own.
        "rate_limit_per_second": 0,
    }
    return Settings(**(values | overrides))


def trust_each_other(*settings: Settings) -> None:
    """Make the nodes' keys (each node opened once) and give every node a trust store that holds all their node keys:
    the mutual recognition of a corridor, which the nodes read when they open."""
    opened = [Node.open(s) for s in settings]
    for node in opened:
        node.close()
    trust = keys.TrustStore({s.platform: (node.node_key.public,) for s, node in zip(settings, opened, strict=True)})
    for s in settings:
        (s.keys_dir / "trust.json").write_text(json.dumps(trust.to_json()), encoding="utf-8")


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = Node.open(node_settings(tmp_path))
    yield node
    node.close()


class Api:
    """A test client that speaks as the corridor parties."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.parties = {p["partyName"]: p for p in client.get("/sandbox/parties").json()}

    def headers(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.parties[name]['apiKey']}"}

    def ref(self, name: str) -> dict[str, Any]:
        party = self.parties[name]
        return {k: party[k] for k in ("partyName", "eblPlatform", "identifyingCodes")}

    def issue_to(self, name: str) -> dict[str, Any]:
        ref = self.ref(name)
        return {
            "partyName": ref["partyName"],
            "sendToPlatform": ref["eblPlatform"],
            "identifyingCodes": ref["identifyingCodes"],
        }

    def issue(self, document: dict[str, Any], to: str = SHIPPER, as_: str = CARRIER, **extra: Any) -> Any:
        body = {"transportDocument": document, "issueTo": self.issue_to(to), **extra}
        return self.client.post("/v1/ebls", json=body, headers=self.headers(as_))

    def act(self, name: str, reference: str, action: str, recipient: str | None = None, **extra: Any) -> Any:
        body: dict[str, Any] = {"actionCode": action, **extra}
        if recipient is not None:
            body["recipient"] = self.ref(recipient)
        return self.client.post(f"/v1/ebls/{reference}/transactions", json=body, headers=self.headers(name))

    def get(self, name: str, path: str) -> Any:
        return self.client.get(path, headers=self.headers(name))

    def register_key(self, name: str, key: keys.SigningKey) -> Any:
        """Register ``key`` for ``name``, proving that it holds the private key."""
        party = self.parties[name]
        proof = jws.sign({"partyId": party["id"], "eblPlatform": party["eblPlatform"]}, key)
        body = {"publicJwk": key.public.to_json(), "proof": proof}
        return self.client.post("/v1/parties/me/keys", json=body, headers=self.headers(name))


@pytest.fixture
def client(node: Node) -> Iterator[TestClient]:
    with TestClient(create_app(node), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def api(client: TestClient) -> Api:
    return Api(client)


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """A DCSA ErrorResponse with this status (and, if given, this errorCodeText among its errors)."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert {"httpMethod", "requestUri", "statusCode", "statusCodeText", "errorDateTime", "errors"} <= body.keys()
    assert body["statusCode"] == status
    assert body["errors"], body
    if code is not None:
        assert code in [e["errorCodeText"] for e in body["errors"]], body
    return body
