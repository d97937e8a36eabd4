"""Property tests: no body sent to the issuing or action endpoints produces a 500; every 4xx is an ErrorResponse."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import create_app
from ebl.service import Node
from tests.conftest import CARRIER, SHIPPER, Api, load_sample, node_settings
from tests.jsonvalues import json_values, mutate, paths

REF = "YXRS2611CKGSIN001"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    node = Node.open(node_settings(Path(tmp_path_factory.mktemp("properties"))))
    with TestClient(create_app(node), raise_server_exceptions=False) as client:
        api = Api(client)
        assert api.issue(load_sample()).status_code == 201
        yield api
    node.close()


def _check(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert body["statusCode"] == response.status_code
        assert body["errors"] and all("errorCodeText" in e and "errorCodeMessage" in e for e in body["errors"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=json_values)
def test_arbitrary_json_to_the_issuing_endpoint_is_never_a_500(api: Api, body: Any) -> None:
    _check(api.client.post("/v1/ebls", json=body, headers=api.headers(CARRIER)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), replacement=json_values, delete=st.booleans())
def test_mutated_issue_requests_are_never_a_500(api: Api, data: st.DataObject, replacement: Any, delete: bool) -> None:
    document = load_sample()
    document["transportDocumentReference"] = "YXRS2611MUTANT"
    body = {"transportDocument": document, "issueTo": api.issue_to(SHIPPER)}
    path = data.draw(st.sampled_from(paths(body)))
    _check(api.client.post("/v1/ebls", json=mutate(body, path, replacement, delete), headers=api.headers(CARRIER)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), replacement=json_values, delete=st.booleans())
def test_mutated_actions_are_never_a_500(api: Api, data: st.DataObject, replacement: Any, delete: bool) -> None:
    action = data.draw(st.sampled_from(["TRANSFER", "ENDORSE", "SIGN", "SURRENDER_FOR_AMENDMENT", "SREJ"]))
    body = {"actionCode": action, "recipient": api.ref(CARRIER), "reasonCode": "COD", "comments": "x"}
    path = data.draw(st.sampled_from(paths(body)))
    mutated = mutate(body, path, replacement, delete)
    actor = data.draw(st.sampled_from(sorted(api.parties)))
    _check(api.client.post(f"/v1/ebls/{REF}/transactions", json=mutated, headers=api.headers(actor)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.text(max_size=300) | st.sampled_from(["old 0\n\n", "old 1\nAAAA\n\nx\n\n— x AAAAAAAA\n"]))
def test_arbitrary_witness_requests_are_never_a_500(api: Api, body: str) -> None:
    _check(api.client.post("/v1/log/witness/add-checkpoint", content=body.encode("utf-8", "surrogatepass")))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.integers(-5, 2**70), second=st.integers(-5, 2**70))
def test_arbitrary_proof_requests_are_never_a_500(api: Api, first: int, second: int) -> None:
    _check(api.client.get(f"/v1/log/proofs/consistency?first={first}&second={second}"))
    _check(api.client.get(f"/v1/log/proofs/inclusion?index={first}&treeSize={second}"))
    _check(api.client.get(f"/v1/log/entries/{first}"))
