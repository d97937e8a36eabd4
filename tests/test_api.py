"""The HTTP API end to end on a real node (SQLite, real keys): the corridor story, refusals, auth, safety."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ebl import canonical, jws, keys, service
from ebl.errors import LostRace
from ebl.service import IDEMPOTENCY_CLAIM_ABANDONED_AFTER
from tests.conftest import (
    CARRIER,
    CONSIGNEE,
    CQ_BANK,
    CQ_CUSTOMS,
    SG_BANK,
    SG_CUSTOMS,
    SHIPPER,
    Api,
    assert_error,
)

REF = "YXRS2611CKGSIN001"


def play_story(api: Api, document: dict[str, Any]) -> dict[str, Any]:
    reference = document["transportDocumentReference"]
    assert api.issue(document).status_code == 201
    steps = [
        (SHIPPER, "TRANSFER", CQ_BANK),
        (CQ_BANK, "ENDORSE_TO_ORDER", SG_BANK),
        (CQ_BANK, "TRANSFER", SG_BANK),
        (SG_BANK, "ENDORSE", CONSIGNEE),
        (SG_BANK, "TRANSFER", CONSIGNEE),
        (CONSIGNEE, "SURRENDER_FOR_DELIVERY", CARRIER),
        (CARRIER, "SACC", None),
    ]
    result: dict[str, Any] = {}
    for actor, action, recipient in steps:
        response = api.act(actor, reference, action, recipient)
        assert response.status_code == 201, response.text
        result = response.json()
    return result


def test_the_corridor_story_ends_surrendered_and_verifies(api: Api, sample: dict[str, Any]) -> None:
    issued = api.issue(sample)
    assert issued.status_code == 201, issued.text
    body = issued.json()
    assert body["transportDocumentChecksum"] == canonical.checksum(sample)
    assert body["status"] == "ISSUED"
    assert body["possessor"]["partyName"] == SHIPPER
    assert body["titleHolder"]["partyName"] == CQ_BANK
    assert body["chainLength"] == 1

    steps = [
        (SHIPPER, "TRANSFER", CQ_BANK, CQ_BANK, CQ_BANK, "ISSUED"),
        (CQ_BANK, "ENDORSE_TO_ORDER", SG_BANK, CQ_BANK, SG_BANK, "ISSUED"),
        (CQ_BANK, "TRANSFER", SG_BANK, SG_BANK, SG_BANK, "ISSUED"),
        (SG_BANK, "ENDORSE", CONSIGNEE, SG_BANK, CONSIGNEE, "ISSUED"),
        (SG_BANK, "TRANSFER", CONSIGNEE, CONSIGNEE, CONSIGNEE, "ISSUED"),
        (CONSIGNEE, "SURRENDER_FOR_DELIVERY", CARRIER, CARRIER, CONSIGNEE, "PENDING_SURRENDER_FOR_DELIVERY"),
        (CARRIER, "SACC", None, CARRIER, CONSIGNEE, "SURRENDERED_FOR_DELIVERY"),
    ]
    for length, (actor, action, recipient, possessor, holder, status) in enumerate(steps, start=2):
        response = api.act(actor, REF, action, recipient)
        assert response.status_code == 201, response.text
        ebl = response.json()
        assert (ebl["possessor"]["partyName"], ebl["titleHolder"]["partyName"], ebl["status"]) == (
            possessor,
            holder,
            status,
        )
        assert ebl["chainLength"] == length
        assert ebl == api.get(actor, f"/v1/ebls/{REF}").json()

    chain = api.get(SG_CUSTOMS, f"/v1/ebls/{REF}/chain").json()["entries"]
    assert len(chain) == 8
    bundle = api.get(SG_CUSTOMS, f"/v1/ebls/{REF}/bundle").json()
    assert bundle["entries"] == chain
    report = api.client.post("/v1/verify", json=bundle).json()
    assert report["verdict"] == "VALID", report
    assert [h["actionCode"] for h in report["history"]] == [
        "ISSUE", "TRANSFER", "ENDORSE_TO_ORDER", "TRANSFER", "ENDORSE", "TRANSFER", "SURRENDER_FOR_DELIVERY", "SACC",
    ]  # fmt: skip
    assert report["document"]["status"] == "SURRENDERED_FOR_DELIVERY"


def test_a_bundle_larger_than_other_bodies_is_verified(api: Api, sample: dict[str, Any]) -> None:
    # A chain of some 600 entries makes a bundle over 1 MB; whitespace makes one here.
    assert api.issue(sample).status_code == 201
    bundle = json.dumps(api.get(SHIPPER, f"/v1/ebls/{REF}/bundle").json()) + " " * 1_100_000
    response = api.client.post("/v1/verify", content=bundle, headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert response.json()["verdict"] == "VALID"


def test_an_old_bundle_says_as_of_when_it_shows_the_ebl(api: Api, sample: dict[str, Any]) -> None:
    """A bundle exported before the eBL moved on is genuine (VALID), but old: the report says when it was exported,
    and only a fresh bundle shows what happened since."""
    assert api.issue(sample).status_code == 201
    old = api.get(SHIPPER, f"/v1/ebls/{REF}/bundle").json()
    assert api.act(SHIPPER, REF, "TRANSFER", CQ_BANK).status_code == 201
    fresh = api.get(CQ_BANK, f"/v1/ebls/{REF}/bundle").json()
    reports = [api.client.post("/v1/verify", json=bundle).json() for bundle in (old, fresh)]
    assert [r["verdict"] for r in reports] == ["VALID", "VALID"]
    assert [r["document"]["possessor"]["partyName"] for r in reports] == [SHIPPER, CQ_BANK]
    exported = [jws.unverified_payload(bundle["head"])["exportedAt"] for bundle in (old, fresh)]
    assert [r["document"]["asOf"] for r in reports] == exported
    assert exported[0] <= exported[1]


def test_an_ebl_takes_a_bounded_number_of_entries(
    api: Api, sample: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every entry travels in each later PINT envelope: endless SIGNs would make the eBL too large for any platform.
    monkeypatch.setattr(service, "MAX_CHAIN_ENTRIES", 3)
    assert api.issue(sample).status_code == 201
    assert api.act(SHIPPER, REF, "TRANSFER", CQ_BANK).status_code == 201
    assert api.act(CQ_BANK, REF, "SIGN").status_code == 201
    assert_error(api.act(CQ_BANK, REF, "SIGN"), 409, "CHAIN_TOO_LONG")
    assert_error(api.act(CQ_BANK, REF, "TRANSFER", SHIPPER), 409, "CHAIN_TOO_LONG")
    # The cargo stays deliverable: a surrender, and the carrier's answer, are still taken.
    assert api.act(CQ_BANK, REF, "SURRENDER_FOR_AMENDMENT", CARRIER, reasonCode="SWI").status_code == 201
    assert api.act(CARRIER, REF, "SREJ").status_code == 201
    assert api.get(SHIPPER, f"/v1/ebls/{REF}").json()["chainLength"] == 5


def test_chain_entries_are_signed_by_the_acting_party_and_linked(api: Api, sample: dict[str, Any]) -> None:
    play_story(api, sample)
    entries = api.get(CARRIER, f"/v1/ebls/{REF}/chain").json()["entries"]
    jwks = {k["kid"]: k for k in api.client.get("/.well-known/jwks.json").json()["keys"]}
    directory = {p["partyName"]: p for p in api.get(CARRIER, "/v1/parties").json()}
    previous = None
    for sequence, entry in enumerate(entries):
        header = jws.header(entry)
        assert header["alg"] == "EdDSA"
        payload = jws.verify(entry, keys.PublicKey(jwks[header["kid"]]))
        assert payload["sequence"] == sequence
        assert payload.get("previousEntryChecksum") == previous
        assert payload["transportDocumentChecksum"] == canonical.checksum(sample)
        actor = payload["transaction"]["actor"]["partyName"]
        assert header["kid"] in [k["kid"] for k in directory[actor]["publicKeys"]]
        previous = canonical.sha256_hex(entry.encode())
    first = jws.unverified_payload(entries[0])
    manifest = jws.verify(first["issuanceManifestSignedContent"], keys.PublicKey(jwks[jws.kid(entries[0])]))
    assert manifest["documentChecksum"] == canonical.checksum(sample)


def test_refused_actions_name_the_rule(api: Api, sample: dict[str, Any]) -> None:
    api.issue(sample)
    # Not the possessor: the bank holds title but the shipper holds the eBL.
    assert_error(api.act(CQ_BANK, REF, "TRANSFER", SG_BANK), 409, "NOT_POSSESSOR")
    # The shipper possesses but is not the endorsee.
    assert_error(api.act(SHIPPER, REF, "ENDORSE", SG_BANK), 409, "NOT_ENDORSEE")
    # Surrender is addressed to the issuing carrier.
    assert_error(api.act(SHIPPER, REF, "SURRENDER_FOR_DELIVERY", CQ_BANK), 409, "SURRENDER_RECIPIENT")
    # Only the title holder surrenders a to-order BL.
    assert_error(api.act(SHIPPER, REF, "SURRENDER_FOR_DELIVERY", CARRIER), 409, "NOT_ENTITLED_TO_SURRENDER")
    # A holder answering a surrender: its role never allows it.
    assert_error(api.act(SHIPPER, REF, "SACC"), 403, "CARRIER_ONLY")
    assert_error(api.act(CARRIER, REF, "SACC"), 409, "NO_PENDING_SURRENDER")
    # Customs read; they do not act.
    assert_error(api.act(SG_CUSTOMS, REF, "SIGN"), 403, "VERIFIER_READ_ONLY")
    # Malformed actions.
    assert_error(api.act(SHIPPER, REF, "SIGN", CQ_BANK), 400, "RECIPIENT_NOT_ALLOWED")
    assert_error(api.act(SHIPPER, REF, "TRANSFER"), 400, "RECIPIENT_REQUIRED")
    assert_error(api.act(SHIPPER, REF, "TRANSFER", CQ_BANK, reasonCode="SWTP"), 400, "REASON_CODE_NOT_ALLOWED")
    assert_error(api.act(SHIPPER, REF, "TELEPORT", CQ_BANK), 400, "SCHEMA")
    # Nothing was recorded by any refusal.
    assert api.get(SHIPPER, f"/v1/ebls/{REF}").json()["chainLength"] == 1


def test_nothing_is_possible_after_sacc(api: Api, sample: dict[str, Any]) -> None:
    play_story(api, sample)
    assert_error(api.act(CARRIER, REF, "SIGN"), 409, "CHAIN_FROZEN")
    assert_error(api.act(CARRIER, REF, "TRANSFER", SHIPPER), 409, "CHAIN_FROZEN")


def test_surrender_rejected_returns_possession(api: Api, sample: dict[str, Any]) -> None:
    api.issue(sample)
    api.act(SHIPPER, REF, "TRANSFER", CQ_BANK)
    pending = api.act(CQ_BANK, REF, "SURRENDER_FOR_AMENDMENT", CARRIER, reasonCode="COD").json()
    assert pending["status"] == "PENDING_SURRENDER_FOR_AMENDMENT"
    assert pending["possessor"]["partyName"] == CARRIER
    assert_error(api.act(CARRIER, REF, "TRANSFER", SHIPPER), 409, "SURRENDER_PENDING")
    rejected = api.act(CARRIER, REF, "SREJ", comments="wrong consignee address").json()
    assert rejected["status"] == "ISSUED"
    assert rejected["possessor"]["partyName"] == CQ_BANK
    links = api.get(CARRIER, f"/v3/endorsement-chains/{REF}").json()[0]["endorsementChain"]
    assert links[-1]["actionCode"] == "TRANSFER"
    assert (links[-1]["actor"]["partyName"], links[-1]["recipient"]["partyName"]) == (CARRIER, CQ_BANK)


def test_amended_reissue_after_accepted_surrender_for_amendment(api: Api, sample: dict[str, Any]) -> None:
    api.issue(sample)
    api.act(SHIPPER, REF, "TRANSFER", CQ_BANK)
    # Same reference, another document: refused while the first one is live.
    amended = copy.deepcopy(sample)
    amended["transportDocumentSubReference"] = "AMENDMENT-1"
    amended["termsAndConditions"] += " Amended."
    assert_error(api.issue(amended), 409, "DUPLICATE_ISSUANCE")
    api.act(CQ_BANK, REF, "SURRENDER_FOR_AMENDMENT", CARRIER, reasonCode="COD")
    api.act(CARRIER, REF, "SACC")
    reissued = api.issue(amended, to=CQ_BANK)
    assert reissued.status_code == 201, reissued.text
    assert reissued.json()["transportDocumentSubReference"] == "AMENDMENT-1"
    assert api.get(CQ_BANK, f"/v1/ebls/{REF}").json()["chainLength"] == 1


def test_duplicate_issuance_is_409(api: Api, sample: dict[str, Any]) -> None:
    assert api.issue(sample).status_code == 201
    assert_error(api.issue(sample), 409, "DUPLICATE_ISSUANCE")
    changed = copy.deepcopy(sample)
    changed["termsAndConditions"] += " Changed."
    assert_error(api.issue(changed), 409, "DUPLICATE_ISSUANCE")


def test_issuance_is_for_the_issuing_carrier_only(api: Api, sample: dict[str, Any]) -> None:
    assert_error(api.issue(sample, as_=SHIPPER), 403, "CARRIER_ONLY")
    assert_error(api.issue(sample, as_=SG_CUSTOMS), 403, "CARRIER_ONLY")


def test_invalid_documents_get_400_with_json_paths(api: Api, sample: dict[str, Any]) -> None:
    broken = copy.deepcopy(sample)
    broken["utilizedTransportEquipments"][0]["equipment"]["equipmentReference"] = "MSKU1234566"
    del broken["documentParties"]["notifyParties"]
    body = assert_error(api.issue(broken), 400)
    codes = {e["errorCodeText"] for e in body["errors"]}
    assert "NOTIFY_PARTY_REQUIRED" in codes
    assert all(e.get("jsonPath", "$").startswith("$") for e in body["errors"])
    assert_error(api.issue({"transportDocumentReference": REF}), 400)


def test_unknown_issue_to_party_is_400(api: Api, sample: dict[str, Any]) -> None:
    body = {
        "transportDocument": sample,
        "issueTo": {
            "partyName": "Nobody",
            "sendToPlatform": "CQSB",
            "identifyingCodes": [{"codeListProvider": "ZZZ", "partyCode": "NOPE"}],
        },
    }
    assert_error(api.client.post("/v1/ebls", json=body, headers=api.headers(CARRIER)), 400, "UNKNOWN_PARTY")


def test_carrier_signed_issuance_manifest(api: Api, sample: dict[str, Any]) -> None:
    carrier_key = keys.generate("P-256")
    registered = api.register_key(CARRIER, carrier_key)
    assert registered.status_code == 201, registered.text
    issue_to = api.issue_to(SHIPPER)
    manifest = jws.sign(
        {"documentChecksum": canonical.checksum(sample), "issueToChecksum": canonical.checksum(issue_to)}, carrier_key
    )
    response = api.issue(sample, issuanceManifestSignedContent=manifest)
    assert response.status_code == 201, response.text
    entries = api.get(CARRIER, f"/v1/ebls/{REF}/chain").json()["entries"]
    assert jws.unverified_payload(entries[0])["issuanceManifestSignedContent"] == manifest

    other = copy.deepcopy(sample)
    other["transportDocumentReference"] = "YXRS2611OTHER"
    # A manifest over another document, and one signed by a key the carrier never registered.
    mismatch = assert_error(api.issue(other, issuanceManifestSignedContent=manifest), 400, "INVALID_SIGNATURE")
    assert [(e["property"], e["jsonPath"]) for e in mismatch["errors"]] == [
        ("documentChecksum", "$.issuanceManifestSignedContent")
    ]
    extra = jws.sign(
        {"documentChecksum": canonical.checksum(other), "issueToChecksum": canonical.checksum(issue_to), "x": 1},
        carrier_key,
    )
    refused = assert_error(api.issue(other, issuanceManifestSignedContent=extra), 400, "INVALID_SIGNATURE")
    assert [(e["property"], e["jsonPath"]) for e in refused["errors"]] == [("x", "$.issuanceManifestSignedContent")]
    stranger = jws.sign({"documentChecksum": canonical.checksum(other), "issueToChecksum": "0" * 64}, keys.generate())
    assert_error(api.issue(other, issuanceManifestSignedContent=stranger), 400, "INVALID_SIGNATURE")


def test_a_reference_may_hold_a_slash(api: Api, sample: dict[str, Any]) -> None:
    # DCSA's pattern for transportDocumentReference allows "/"; a client sends it as %2F in the path.
    sample["transportDocumentReference"] = "YXRS/2611/CKG"
    assert api.issue(sample).status_code == 201
    path = "/v1/ebls/YXRS%2F2611%2FCKG"
    assert api.get(SHIPPER, path).json()["transportDocumentReference"] == "YXRS/2611/CKG"
    transferred = api.client.post(
        f"{path}/transactions",
        json={"actionCode": "TRANSFER", "recipient": api.ref(CQ_BANK)},
        headers=api.headers(SHIPPER),
    )
    assert transferred.status_code == 201, transferred.text
    assert len(api.get(CQ_BANK, f"{path}/chain").json()["entries"]) == 2
    assert api.get(CQ_BANK, f"{path}/transfers").json() == []
    bundle = api.get(CQ_CUSTOMS, f"{path}/bundle").json()
    report = api.client.post("/v1/verify", json=bundle).json()
    assert report["verdict"] == "VALID"
    # The title holder is still the endorsee the document names, a party with no platform.
    state = next(c["detail"] for c in report["checks"] if c["name"] == "STATE")
    assert "title holder 'Bank of Chongqing Trade Finance';" in state, state
    chain = api.get(CARRIER, "/v3/endorsement-chains/YXRS%2F2611%2FCKG")
    assert chain.status_code == 200, chain.text
    assert_error(api.get(SHIPPER, "/v1/ebls/YXRS%2F2611"), 404)
    # One ending as a sub-resource's path does would never be read: GET /v1/ebls/YXRS%2Fchain is YXRS's chain.
    for suffix in ("chain", "bundle", "transfers"):
        sample["transportDocumentReference"] = f"YXRS/{suffix}"
        assert_error(api.issue(sample), 400, "REFERENCE_NOT_ADDRESSABLE")


def test_a_key_is_registered_only_by_whoever_holds_it(api: Api) -> None:
    key = keys.generate()
    carrier = api.parties[CARRIER]

    def register(public_jwk: dict[str, Any], proof: str) -> Any:
        body = {"publicJwk": public_jwk, "proof": proof}
        return api.client.post("/v1/parties/me/keys", json=body, headers=api.headers(CARRIER))

    # The node's own public key, as anyone can read it: whoever does not hold the private key cannot prove it.
    node_jwk = api.client.get("/.well-known/jwks.json").json()["keys"][0]
    claimed = register(node_jwk, jws.sign({"partyId": carrier["id"], "eblPlatform": "CQSB"}, key))
    assert_error(claimed, 400, "INVALID_SIGNATURE")
    # A proof made for another party, or for another platform, registers the key for no one else.
    for_shipper = jws.sign({"partyId": api.parties[SHIPPER]["id"], "eblPlatform": "CQSB"}, key)
    assert_error(register(key.public.to_json(), for_shipper), 400, "INVALID_PROOF_OF_POSSESSION")
    elsewhere = jws.sign({"partyId": carrier["id"], "eblPlatform": "SGSB"}, key)
    assert_error(register(key.public.to_json(), elsewhere), 400, "INVALID_PROOF_OF_POSSESSION")
    manifest = jws.sign({"documentChecksum": "0" * 64, "issueToChecksum": "0" * 64}, key)
    assert_error(register(key.public.to_json(), manifest), 400, "INVALID_PROOF_OF_POSSESSION")
    assert_error(register(key.public.to_json(), "not a JWS"), 400)
    registered = api.register_key(CARRIER, key)
    assert registered.status_code == 201, registered.text
    assert registered.json()["kid"] == key.public.kid
    assert_error(api.register_key(CARRIER, key), 409, "KEY_ALREADY_REGISTERED")
    jwks = api.client.get("/.well-known/jwks.json").json()["keys"]
    assert [k["kid"] for k in jwks].count(node_jwk["kid"]) == 1


def test_dcsa_issuance_request(api: Api, sample: dict[str, Any]) -> None:
    key = keys.generate()
    assert api.register_key(CARRIER, key).status_code == 201
    issue_to = api.issue_to(SHIPPER)
    manifest = jws.sign(
        {"documentChecksum": canonical.checksum(sample), "issueToChecksum": canonical.checksum(issue_to)}, key
    )
    body = {"document": sample, "issueTo": issue_to, "issuanceManifestSignedContent": manifest}
    response = api.client.put("/v3/ebl-issuance-requests", json=body, headers=api.headers(CARRIER))
    assert response.status_code == 204, response.text
    assert api.get(SHIPPER, f"/v1/ebls/{REF}").json()["possessor"]["partyName"] == SHIPPER
    again = api.client.put("/v3/ebl-issuance-requests", json=body, headers=api.headers(CARRIER))
    assert_error(again, 409, "DUPLICATE_ISSUANCE")
    no_manifest = api.client.put(
        "/v3/ebl-issuance-requests", json={"document": sample, "issueTo": issue_to}, headers=api.headers(CARRIER)
    )
    assert_error(no_manifest, 400)


def test_a_carrier_visualisation_must_be_the_one_the_manifest_signs(api: Api, sample: dict[str, Any]) -> None:
    key = keys.generate()
    assert api.register_key(CARRIER, key).status_code == 201
    issue_to = api.issue_to(SHIPPER)
    pdf = b"%PDF-1.7 the carrier's rendering"
    visualisation = {"name": "bl.pdf", "content": base64.b64encode(pdf).decode()}

    def put(reference: str, visualisation_checksum: str | None, **extra: Any) -> Any:
        document = {**sample, "transportDocumentReference": reference}
        signed = {"documentChecksum": canonical.checksum(document), "issueToChecksum": canonical.checksum(issue_to)}
        if visualisation_checksum is not None:
            signed["eBLVisualisationByCarrierChecksum"] = visualisation_checksum
        body = {"document": document, "issueTo": issue_to, "issuanceManifestSignedContent": jws.sign(signed, key)}
        return api.client.put("/v3/ebl-issuance-requests", json=body | extra, headers=api.headers(CARRIER))

    right = canonical.sha256_hex(pdf)
    assert put("YXRSVIS1", right, eBLVisualisationByCarrier=visualisation).status_code == 204
    # A manifest that signs another visualisation, or one the request does not carry, or none for the one it carries.
    for reference, checksum, extra in (
        ("YXRSVIS2", "ab" * 32, {"eBLVisualisationByCarrier": visualisation}),
        ("YXRSVIS3", right, {}),
        ("YXRSVIS4", None, {"eBLVisualisationByCarrier": visualisation}),
    ):
        refused = assert_error(put(reference, checksum, **extra), 400, "INVALID_SIGNATURE")
        assert [e["property"] for e in refused["errors"]] == ["eBLVisualisationByCarrierChecksum"]
        assert_error(api.get(SHIPPER, f"/v1/ebls/{reference}"), 404)
    not_base64 = {**visualisation, "content": "JVBER=i0"}
    assert_error(put("YXRSVIS5", right, eBLVisualisationByCarrier=not_base64), 400)


def test_endorsement_chain_in_dcsa_shape(api: Api, sample: dict[str, Any]) -> None:
    play_story(api, sample)
    chains = api.get(CARRIER, f"/v3/endorsement-chains/{REF}").json()
    assert chains[0]["transportDocumentReference"] == REF
    links = chains[0]["endorsementChain"]
    assert [link["actionCode"] for link in links][-2:] == ["SURRENDER_FOR_DELIVERY", "SURRENDERED"]
    assert links[-1]["recipient"]["partyName"] == "NONE"
    assert_error(api.get(SHIPPER, f"/v3/endorsement-chains/{REF}"), 403)


def test_visibility_and_listing(api: Api, sample: dict[str, Any]) -> None:
    api.issue(sample)
    # Straits Trade Bank is not named in the document and not in the chain yet: it may not see the eBL.
    assert_error(api.get(SG_BANK, f"/v1/ebls/{REF}"), 404)
    assert_error(api.get(SG_BANK, "/v1/ebls/NO-SUCH-REF"), 404)
    assert api.get(SG_BANK, "/v1/ebls").json() == {"items": [], "nextCursor": None}
    api.act(SHIPPER, REF, "TRANSFER", CQ_BANK)
    api.act(CQ_BANK, REF, "ENDORSE_TO_ORDER", SG_BANK)
    assert api.get(SG_BANK, f"/v1/ebls/{REF}").status_code == 200
    for customs in (CQ_CUSTOMS, SG_CUSTOMS):
        assert api.get(customs, f"/v1/ebls/{REF}").status_code == 200

    for n in range(4):
        other = copy.deepcopy(sample)
        other["transportDocumentReference"] = f"YXRS2611PAGE{n}"
        assert api.issue(other).status_code == 201
    seen, cursor = [], None
    while True:
        page = api.get(CQ_CUSTOMS, "/v1/ebls?limit=2" + (f"&cursor={cursor}" if cursor else "")).json()
        seen += [item["transportDocumentReference"] for item in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == [REF] + [f"YXRS2611PAGE{n}" for n in range(4)]
    assert_error(api.get(CQ_CUSTOMS, "/v1/ebls?cursor=!!"), 400)
    # Numbers no id can be: beyond the database's integers, negative, or not in the form the API writes.
    for text in ("99999999999999999999", str(2**63), "-1", " 1_0 ", "\u0661\u0662", "01"):
        cursor = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
        assert_error(api.get(CQ_CUSTOMS, f"/v1/ebls?cursor={cursor}"), 400, "INVALID_CURSOR")
    assert_error(api.get(CQ_CUSTOMS, "/v1/ebls?limit=0"), 400)


def test_authentication(api: Api, sample: dict[str, Any]) -> None:
    assert_error(api.client.get("/v1/ebls"), 401, "UNAUTHENTICATED")
    assert_error(api.client.get("/v1/ebls", headers={"Authorization": "Bearer sbx_wrong"}), 401)
    assert_error(api.client.get("/v1/ebls", headers={"Authorization": "Basic abc"}), 401)
    assert_error(api.client.post("/v1/ebls", json={}), 401)
    assert api.client.get("/v1/ebls", headers=api.headers(SHIPPER)).status_code == 200


def test_api_keys_are_stored_only_as_hashes(api: Api, node: Any) -> None:
    from sqlalchemy import inspect
    from sqlmodel import Session, select

    from ebl.store.tables import PartyRow

    keys_shown = {p["apiKey"] for p in api.parties.values()}
    with Session(node.engine) as session:
        stored = [row.api_key_hash for row in session.exec(select(PartyRow)).all()]
    assert len(stored) == 7
    assert not keys_shown & set(stored)
    assert {canonical.sha256_hex(k.encode()) for k in keys_shown} == set(stored)
    # Nowhere else either: every value of every table, read back as text.
    with node.engine.connect() as connection:
        stored_text = " ".join(
            str(value)
            for table in inspect(connection).get_table_names()
            for row in connection.exec_driver_sql(f'SELECT * FROM "{table}"')
            for value in row
        )
    assert not any(k in stored_text for k in keys_shown)


def test_idempotency_key_replays_and_refuses_other_bodies(api: Api, sample: dict[str, Any]) -> None:
    headers = {**api.headers(CARRIER), "Idempotency-Key": "issue-1"}
    body = {"transportDocument": sample, "issueTo": api.issue_to(SHIPPER)}
    first = api.client.post("/v1/ebls", json=body, headers=headers)
    second = api.client.post("/v1/ebls", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    other = copy.deepcopy(body)
    other["transportDocument"]["transportDocumentReference"] = "YXRS2611OTHER"
    assert_error(api.client.post("/v1/ebls", json=other, headers=headers), 409, "IDEMPOTENCY_KEY_REUSED")
    # Keys belong to one party: another party may use the same key for its own request.
    transfer = {"actionCode": "TRANSFER", "recipient": api.ref(CQ_BANK)}
    shipper_headers = {**api.headers(SHIPPER), "Idempotency-Key": "issue-1"}
    assert api.client.post(f"/v1/ebls/{REF}/transactions", json=transfer, headers=shipper_headers).status_code == 201
    replay = api.client.post(f"/v1/ebls/{REF}/transactions", json=transfer, headers=shipper_headers)
    assert replay.status_code == 201
    assert api.get(SHIPPER, f"/v1/ebls/{REF}").json()["chainLength"] == 2


def test_an_ebl_goes_only_to_one_party_that_may_hold_it(api: Api, sample: dict[str, Any]) -> None:
    # Customs reads eBLs and never acts on them: an eBL given to it could never move again.
    assert_error(api.issue(sample, to=CQ_CUSTOMS), 400, "VERIFIER_CANNOT_HOLD")
    assert api.issue(sample).status_code == 201
    assert_error(api.act(SHIPPER, REF, "TRANSFER", SG_CUSTOMS), 400, "VERIFIER_CANNOT_HOLD")
    assert_error(api.act(SHIPPER, REF, "ENDORSE_TO_ORDER", CQ_CUSTOMS), 400, "VERIFIER_CANNOT_HOLD")
    # Identifying codes of two parties name neither: possession never goes to whichever matched first.
    both = {
        **api.ref(SG_BANK),
        "identifyingCodes": api.ref(SG_BANK)["identifyingCodes"] + api.ref(CQ_BANK)["identifyingCodes"],
    }
    ambiguous = api.client.post(
        f"/v1/ebls/{REF}/transactions", json={"actionCode": "TRANSFER", "recipient": both}, headers=api.headers(SHIPPER)
    )
    assert_error(ambiguous, 400, "AMBIGUOUS_PARTY")
    held = api.get(SHIPPER, f"/v1/ebls/{REF}").json()
    assert (held["possessor"]["partyName"], held["chainLength"]) == (SHIPPER, 1)
    assert api.act(SHIPPER, REF, "TRANSFER", CQ_BANK).status_code == 201


def test_a_lost_race_is_not_replayed_to_a_retry_with_the_same_key(
    api: Api, sample: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert api.issue(sample).status_code == 201
    node = api.client.app.state.node  # type: ignore[attr-defined]
    act = node.act

    async def lose_once(*args: Any) -> Any:
        # What the node answers when another action on the eBL was recorded between its read and its write.
        monkeypatch.setattr(node, "act", act)
        raise LostRace(f"another action on {REF} was recorded first; read it again")

    monkeypatch.setattr(node, "act", lose_once)
    headers = {**api.headers(SHIPPER), "Idempotency-Key": "transfer-1"}
    transfer = {"actionCode": "TRANSFER", "recipient": api.ref(CQ_BANK)}
    lost = api.client.post(f"/v1/ebls/{REF}/transactions", json=transfer, headers=headers)
    assert_error(lost, 409, "CONCURRENT_UPDATE")
    retried = api.client.post(f"/v1/ebls/{REF}/transactions", json=transfer, headers=headers)
    assert retried.status_code == 201, retried.text
    assert "Idempotent-Replayed" not in retried.headers
    assert (
        api.client.post(f"/v1/ebls/{REF}/transactions", json=transfer, headers=headers).headers["Idempotent-Replayed"]
        == "true"
    )


def test_a_key_whose_request_never_answered_is_free_again_later(
    api: Api, sample: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    node = api.client.app.state.node  # type: ignore[attr-defined]
    body = {"transportDocument": sample, "issueTo": api.issue_to(SHIPPER)}
    # A request that claimed its key, then died with its node before it answered (as a kill -9 leaves it).
    request_hash = canonical.sha256_hex(b"POST /v1/ebls\n" + canonical.canonicalize(body))
    carrier = node.authenticate(api.parties[CARRIER]["apiKey"])
    assert asyncio.run(node.begin_idempotent(carrier, "issue-1", request_hash)) is None
    headers = {**api.headers(CARRIER), "Idempotency-Key": "issue-1"}
    assert_error(api.client.post("/v1/ebls", json=body, headers=headers), 409, "IDEMPOTENCY_KEY_IN_USE")
    later = datetime.now(UTC) + IDEMPOTENCY_CLAIM_ABANDONED_AFTER + timedelta(seconds=1)
    monkeypatch.setattr("ebl.service._now", lambda: later)
    retried = api.client.post("/v1/ebls", json=body, headers=headers)
    assert retried.status_code == 201, retried.text
    replayed = api.client.post("/v1/ebls", json=body, headers=headers)
    assert (replayed.status_code, replayed.headers["Idempotent-Replayed"]) == (201, "true")


def test_bodies_must_be_i_json_and_within_the_limit(api: Api, sample: dict[str, Any]) -> None:
    headers = {**api.headers(CARRIER), "Content-Type": "application/json"}
    text = json.dumps({"transportDocument": sample, "issueTo": api.issue_to(SHIPPER)})
    duplicate = text.replace('"isToOrder": true', '"isToOrder": true, "isToOrder": false')
    for bad in (
        duplicate,
        text.replace("11850.5", "NaN"),
        text.replace("11850.5", "1e400"),
        text.replace("600", "9007199254740993"),
        "{",
        "",
        "[1,2",
    ):
        assert_error(api.client.post("/v1/ebls", content=bad, headers=headers), 400, "MALFORMED_JSON")
    huge = json.dumps({"transportDocument": sample, "padding": "x" * 1_100_000})
    assert_error(api.client.post("/v1/ebls", content=huge, headers=headers), 413, "PAYLOAD_TOO_LARGE")


def test_unknown_routes_and_methods_answer_error_responses(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing"), 404)
    assert_error(client.delete("/v1/ebls"), 405)


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/v1/ebls", {"GET", "POST"}),
        ("/health", {"GET", "HEAD"}),
        ("/v1/parties", {"GET"}),
        ("/openapi.json", {"GET", "HEAD"}),
    ],
)
def test_a_405_names_every_method_the_path_takes(client: TestClient, path: str, allowed: set[str]) -> None:
    """RFC 9110: a 405 carries Allow with the resource's methods, here spread over several routes of one path."""
    response = client.patch(path)
    assert_error(response, 405)
    assert set(response.headers["Allow"].split(", ")) == allowed
    for method in allowed:
        assert client.request(method, path).status_code != 405, method


def test_the_openapi_document_resolves_and_names_the_answers_the_node_gives(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    referenced = {ref.rsplit("/", 1)[1] for ref in _refs(spec)}
    assert referenced <= set(schemas), f"unresolved: {referenced - set(schemas)}"
    assert spec["paths"]["/v1/verify"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Bundle"
    }
    # A parameter the node refuses is a 400 ErrorResponse, as documented, never FastAPI's 422.
    assert_error(client.get("/v1/log/proofs/inclusion", params={"index": -1, "treeSize": 1}), 400)
    inclusion = spec["paths"]["/v1/log/proofs/inclusion"]["get"]["responses"]
    assert "422" not in inclusion
    assert inclusion["400"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    assert "HTTPValidationError" not in schemas
    witness = spec["paths"]["/v1/log/witness/add-checkpoint"]["post"]["responses"]
    assert {"400", "403", "404", "409", "422"} <= set(witness)
    # An ErrorResponse is JSON wherever it is answered, also beside the witness's text answers.
    assert set(witness["404"]["content"]) == {"application/json"}
    assert client.post("/v1/log/witness/add-checkpoint", content="x").headers["content-type"] == "application/json"
    # Bounds are JSON Schema's: a client that reads the document knows the values the node takes.
    parameters = [p for ops in spec["paths"].values() for op in ops.values() for p in op.get("parameters", [])]
    assert not [p["name"] for p in parameters if {"ge", "le", "gt", "lt"} & set(p["schema"])]
    limit = next(p["schema"] for p in spec["paths"]["/v1/ebls"]["get"]["parameters"] if p["name"] == "limit")
    assert (limit["minimum"], limit["maximum"]) == (1, 100)


def test_whole_number_parameters_are_decimal_digits_only(api: Api, sample: dict[str, Any]) -> None:
    assert api.issue(sample).status_code == 201
    assert api.client.get("/v1/log/entries/0").status_code == 200
    assert api.client.get("/v1/log/proofs/inclusion", params={"index": "0", "treeSize": "1"}).status_code == 200
    assert api.get(SHIPPER, "/v1/ebls?limit=1").status_code == 200
    # pydantic alone reads these as numbers: entry 10 for "1_0", and so on.
    for odd in ("1_0", "+0", " 0", "0.0", "\u0660", "-0"):
        assert_error(api.client.get(f"/v1/log/entries/{odd}"), 400, "INVALID_PARAMETER")
        inclusion = api.client.get("/v1/log/proofs/inclusion", params={"index": odd, "treeSize": "1"})
        assert_error(inclusion, 400, "INVALID_PARAMETER")
        assert_error(api.client.get("/v1/log/proofs/consistency", params={"first": odd, "second": "1"}), 400)
        assert_error(api.get(SHIPPER, f"/v1/ebls?limit={odd.replace(' ', '%20')}"), 400, "INVALID_PARAMETER")


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        own = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        return own + [ref for item in value.values() for ref in _refs(item)]
    if isinstance(value, list):
        return [ref for item in value for ref in _refs(item)]
    return []


def test_openapi_and_jwks(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "IssueRequest" in spec["components"]["schemas"]
    assert "/v1/ebls/{reference}/transactions" in spec["paths"]
    assert client.get("/docs").status_code == 200
    jwks = client.get("/.well-known/jwks.json").json()["keys"]
    assert all("d" not in key for key in jwks)
    assert client.get("/health").json()["status"] == "ok"
    probe = client.head("/health")
    assert (probe.status_code, probe.content) == (200, b"")
