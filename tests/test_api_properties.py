"""Property tests: no body sent to the issuing or action endpoints produces a 500; every 4xx is an ErrorResponse."""

from __future__ import annotations

import copy
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

REF = "YXRS2611CKGSIN001"

json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=False, allow_infinity=False)
) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    node = Node.open(node_settings(Path(tmp_path_factory.mktemp("properties"))))
    with TestClient(create_app(node), raise_server_exceptions=False) as client:
        api = Api(client)
        assert api.issue(load_sample()).status_code == 201
        yield api


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _mutate(value: Any, path: tuple[Any, ...], replacement: Any, delete: bool) -> Any:
    if not path:
        return replacement
    result = copy.deepcopy(value)
    target = result
    for step in path[:-1]:
        target = target[step]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = replacement
    return result


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
    path = data.draw(st.sampled_from(_paths(body)))
    _check(
        api.client.post(
            "/v1/ebls", json=_mutate(body, path, replacement, delete and bool(path)), headers=api.headers(CARRIER)
        )
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), replacement=json_values, delete=st.booleans())
def test_mutated_actions_are_never_a_500(api: Api, data: st.DataObject, replacement: Any, delete: bool) -> None:
    action = data.draw(st.sampled_from(["TRANSFER", "ENDORSE", "SIGN", "SURRENDER_FOR_AMENDMENT", "SREJ"]))
    body = {"actionCode": action, "recipient": api.ref(CARRIER), "reasonCode": "COD", "comments": "x"}
    path = data.draw(st.sampled_from(_paths(body)))
    mutated = _mutate(body, path, replacement, delete and bool(path))
    actor = data.draw(st.sampled_from(sorted(api.parties)))
    _check(api.client.post(f"/v1/ebls/{REF}/transactions", json=mutated, headers=api.headers(actor)))
