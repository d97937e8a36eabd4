"""``ebl demo``: the corridor story, played step by step through the HTTP API of a running sandbox node.

Yuxin issues the to-order BL to the Chongqing shipper → the shipper transfers it to Bank of Chongqing (the named
endorsee) → the bank endorses it to the order of Straits Trade Bank and transfers it → Straits Trade Bank endorses it
to Lion City Electronics and transfers it → Lion City surrenders it for delivery → Yuxin accepts → Singapore Customs
verifies the bundle.

``ebl demo --corridor`` plays it across the two nodes of ``ebl corridor``: the eBL crosses to Singapore over DCSA PINT
with the transfer to Straits Trade Bank, goes home to Chongqing with the surrender, and Singapore learns of the
accepted surrender; Singapore Customs verifies the history of both nodes.
"""

from __future__ import annotations

import copy
import json
import secrets
import string
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

import httpx

CARRIER = "Yuxin Rail-Sea Forwarding Co., Ltd."
SHIPPER = "Chongqing Laptop Export Co., Ltd."
CQ_BANK = "Bank of Chongqing Trade Finance"
SG_BANK = "Straits Trade Bank"
CONSIGNEE = "Lion City Electronics Pte. Ltd."
SG_CUSTOMS = "Singapore Customs"


def sample_document() -> dict[str, Any]:
    """The corridor sample shipped with the package."""
    text = resources.files("ebl").joinpath("samples/corridor-bl.json").read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


def _fresh_reference() -> str:
    # Each run issues a new eBL: a reference is issued once per node.
    suffix = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(8))
    return f"YXRS2611{suffix}"


class _Api:
    def __init__(self, client: httpx.Client, parties: dict[str, dict[str, Any]]) -> None:
        self._client = client
        self.parties = parties

    def ref(self, name: str) -> dict[str, Any]:
        party = self.parties[name]
        return {k: party[k] for k in ("partyName", "eblPlatform", "identifyingCodes")}

    def get(self, name: str, path: str) -> httpx.Response:
        return self._client.get(path, headers={"Authorization": f"Bearer {self.parties[name]['apiKey']}"})

    def call(self, name: str, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.parties[name]['apiKey']}"}
        response = self._client.request(method, path, json=body, headers=headers)
        if response.is_error:
            raise RuntimeError(f"{method} {path} as {name}: {response.status_code} {response.text}")
        return response.json()

    def act(self, name: str, reference: str, action: str, recipient: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"actionCode": action}
        if recipient is not None:
            body["recipient"] = self.ref(recipient)
        result: dict[str, Any] = self.call(name, "POST", f"/v1/ebls/{reference}/transactions", body)
        return result


def _say(step: int, text: str, ebl: dict[str, Any]) -> None:
    holder = ebl["titleHolder"]["partyName"] if ebl.get("titleHolder") else "(blank-endorsed)"
    print(f"{step}. {text}")
    print(f"   status {ebl['status']}; possessor {ebl['possessor']['partyName']}; title holder {holder}")


def run(url: str) -> int:
    with httpx.Client(base_url=url, timeout=30) as client:
        listing = client.get("/sandbox/parties")
        listing.raise_for_status()
        api = _Api(client, {p["partyName"]: p for p in listing.json()})
        document = copy.deepcopy(sample_document())
        reference = _fresh_reference()
        document["transportDocumentReference"] = reference
        shipper = api.ref(SHIPPER)
        issue_to = {
            "partyName": shipper["partyName"],
            "sendToPlatform": shipper["eblPlatform"],
            "identifyingCodes": shipper["identifyingCodes"],
        }
        print(f"eBL corridor demo against {url} — eBL {reference}\n")
        ebl = api.call(CARRIER, "POST", "/v1/ebls", {"transportDocument": document, "issueTo": issue_to})
        _say(1, f"{CARRIER} issues the to-order BL to {SHIPPER}", ebl)
        _say(2, f"{SHIPPER} transfers it to {CQ_BANK}", api.act(SHIPPER, reference, "TRANSFER", CQ_BANK))
        _say(
            3,
            f"{CQ_BANK} endorses it to the order of {SG_BANK}",
            api.act(CQ_BANK, reference, "ENDORSE_TO_ORDER", SG_BANK),
        )
        _say(4, f"{CQ_BANK} transfers it to {SG_BANK}", api.act(CQ_BANK, reference, "TRANSFER", SG_BANK))
        _say(5, f"{SG_BANK} endorses it to {CONSIGNEE}", api.act(SG_BANK, reference, "ENDORSE", CONSIGNEE))
        _say(6, f"{SG_BANK} transfers it to {CONSIGNEE}", api.act(SG_BANK, reference, "TRANSFER", CONSIGNEE))
        _say(
            7,
            f"{CONSIGNEE} surrenders it for delivery to {CARRIER}",
            api.act(CONSIGNEE, reference, "SURRENDER_FOR_DELIVERY", CARRIER),
        )
        _say(8, f"{CARRIER} accepts the surrender (SACC)", api.act(CARRIER, reference, "SACC"))

        bundle = api.call(SG_CUSTOMS, "GET", f"/v1/ebls/{reference}/bundle")
        report = client.post("/v1/verify", json=bundle).json()
        print(f"9. {SG_CUSTOMS} verifies the bundle: {report['verdict']}")
        _print_report(report)
        return 0 if report["verdict"] == "VALID" else 1


def _print_report(report: dict[str, Any]) -> None:
    for check in report["checks"]:
        print(f"   {check['name']:<18} {check['status']:<8} {check['detail']}")
    print("   history:")
    for item in report["history"]:
        recipient = item["recipient"]["partyName"] if item.get("recipient") else "—"
        print(
            f"   {item['sequence']:>2} {item['actionDateTime']} [{item['eblPlatform']}] {item['actionCode']:<22} "
            f"{item['actor']['partyName']} → {recipient}"
        )


def _until(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    """Wait for the nodes to deliver an envelope (they retry on their own; the demo only watches)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not done after {timeout:.0f} s")
        time.sleep(0.2)


def _holds(api: _Api, party: str, reference: str, platform: str, status: str | None = None) -> Callable[[], bool]:
    def check() -> bool:
        response = api.get(party, f"/v1/ebls/{reference}")
        if response.status_code != 200:
            return False
        ebl = response.json()
        return bool(ebl["eblPlatform"] == platform and (status is None or ebl["status"] == status))

    return check


def run_corridor(cq_url: str, sg_url: str) -> int:
    """The story across the two nodes: issued and financed in Chongqing, endorsed and delivered in Singapore."""
    with httpx.Client(base_url=cq_url, timeout=30) as cq_client, httpx.Client(base_url=sg_url, timeout=30) as sg:
        cq = _Api(cq_client, {p["partyName"]: p for p in cq_client.get("/sandbox/parties").raise_for_status().json()})
        sgp = _Api(sg, {p["partyName"]: p for p in sg.get("/sandbox/parties").raise_for_status().json()})
        both = {**cq.parties, **sgp.parties}
        cq.parties, sgp.parties = both, both
        document = copy.deepcopy(sample_document())
        reference = _fresh_reference()
        document["transportDocumentReference"] = reference
        shipper = cq.ref(SHIPPER)
        issue_to = {k: shipper[k] for k in ("partyName", "identifyingCodes")} | {"sendToPlatform": "CQSB"}
        print(f"eBL corridor demo: CQSB {cq_url}, SGSB {sg_url} — eBL {reference}\n")
        ebl = cq.call(CARRIER, "POST", "/v1/ebls", {"transportDocument": document, "issueTo": issue_to})
        _say(1, f"[CQSB] {CARRIER} issues the to-order BL to {SHIPPER}", ebl)
        _say(2, f"[CQSB] {SHIPPER} transfers it to {CQ_BANK}", cq.act(SHIPPER, reference, "TRANSFER", CQ_BANK))
        _say(
            3,
            f"[CQSB] {CQ_BANK} endorses it to the order of {SG_BANK} (SGSB)",
            cq.act(CQ_BANK, reference, "ENDORSE_TO_ORDER", SG_BANK),
        )
        _say(4, f"[CQSB] {CQ_BANK} transfers it to {SG_BANK} on SGSB", cq.act(CQ_BANK, reference, "TRANSFER", SG_BANK))
        _until("the envelope to SGSB", _holds(sgp, SG_BANK, reference, "SGSB"))
        receipt = cq.call(CQ_BANK, "GET", f"/v1/ebls/{reference}/transfers")[-1]
        print(f"   CQSB sent the PINT envelope; SGSB answered {receipt['responseCode']} (signed receipt kept)")
        _say(5, f"[SGSB] {SG_BANK} endorses it to {CONSIGNEE}", sgp.act(SG_BANK, reference, "ENDORSE", CONSIGNEE))
        _say(6, f"[SGSB] {SG_BANK} transfers it to {CONSIGNEE}", sgp.act(SG_BANK, reference, "TRANSFER", CONSIGNEE))
        _say(
            7,
            f"[SGSB] {CONSIGNEE} surrenders it for delivery to {CARRIER}: it goes home to CQSB",
            sgp.act(CONSIGNEE, reference, "SURRENDER_FOR_DELIVERY", CARRIER),
        )
        _until("the surrender to CQSB", _holds(cq, CARRIER, reference, "CQSB", "PENDING_SURRENDER_FOR_DELIVERY"))
        _say(8, f"[CQSB] {CARRIER} accepts the surrender (SACC)", cq.act(CARRIER, reference, "SACC"))
        _until(
            "the surrender answer to SGSB",
            _holds(sgp, CONSIGNEE, reference, "CQSB", "SURRENDERED_FOR_DELIVERY"),
        )
        print("   both nodes show it SURRENDERED_FOR_DELIVERY")
        bundle = sgp.call(SG_CUSTOMS, "GET", f"/v1/ebls/{reference}/bundle")
        report = sg.post("/v1/verify", json=bundle).json()
        print(f"9. [SGSB] {SG_CUSTOMS} verifies the bundle: {report['verdict']}")
        _print_report(report)
        return 0 if report["verdict"] == "VALID" else 1
