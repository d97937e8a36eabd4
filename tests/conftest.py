"""Shared fixtures: a real node on a temporary SQLite file and keys folder, driven over HTTP."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
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


def node_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'ebl.db'}",
        "keys_dir": tmp_path / "keys",
        "platform": "CQSB",
        "sandbox": True,
    }
    return Settings(**(values | overrides))


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node.open(node_settings(tmp_path))


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
