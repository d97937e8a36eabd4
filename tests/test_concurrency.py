"""Exactly one of several concurrent conflicting actions wins; the database enforces it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import CQ_BANK, CQ_CUSTOMS, SG_BANK, SHIPPER, Api, assert_error

REF = "YXRS2611CKGSIN001"


def test_concurrent_transfers_have_one_winner(api: Api, sample: dict[str, Any]) -> None:
    assert api.issue(sample).status_code == 201
    recipients = [CQ_BANK, SG_BANK, CQ_CUSTOMS] * 4

    def transfer(recipient: str) -> Any:
        return api.act(SHIPPER, REF, "TRANSFER", recipient)

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(transfer, recipients))
    winners = [r for r in responses if r.status_code == 201]
    assert len(winners) == 1, [r.status_code for r in responses]
    for response in responses:
        if response.status_code != 201:
            assert_error(response, 409)
    ebl = api.get(SHIPPER, f"/v1/ebls/{REF}").json()
    assert ebl["chainLength"] == 2
    assert ebl["possessor"] == winners[0].json()["possessor"]
    report = api.client.post("/v1/verify", json=api.get(CQ_CUSTOMS, f"/v1/ebls/{REF}/bundle").json()).json()
    assert report["verdict"] == "VALID", report


def test_concurrent_issuance_of_one_reference_gives_one_ebl(client: TestClient, sample: dict[str, Any]) -> None:
    api = Api(client)
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(lambda _: api.issue(sample), range(6)))
    assert sorted(r.status_code for r in responses) == [201] + [409] * 5
    page = api.get(CQ_CUSTOMS, "/v1/ebls").json()
    assert [item["transportDocumentReference"] for item in page["items"]] == [REF]
