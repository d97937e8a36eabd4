"""The PINT receiver against the conformance scenarios of dcsa-notes §7, played by a test sender.

The node under test is the Singapore node (SGSB), a real ``ebl serve`` process on a loopback port. The sender is a
stand-in for another platform (CQSB) whose node key and carrier key the test holds and the receiver's trust store
recognises; its envelopes carry only the DCSA layout (no per-party chain), as a conformance tool's would. Every answer
that decides a transfer must be signed with the receiver's node key.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ebl import canonical, chain, jws, keys, pint
from tests.conftest import CARRIER, CONSIGNEE, CQ_BANK, DATABASES, SG_BANK, SHIPPER, Api, assert_error, load_sample
from tests.nodeproc import NodeProcess

SENDER_KEY = keys.generate("Ed25519")
SENDER_SECOND_KEY = keys.generate("Ed25519")
CARRIER_KEY = keys.generate("Ed25519")
STRANGER_KEY = keys.generate("Ed25519")


def _ref(name: str, platform: str, list_name: str, code: str) -> dict[str, Any]:
    return {
        "partyName": name,
        "eblPlatform": platform,
        "identifyingCodes": [{"codeListProvider": "ZZZ", "partyCode": code, "codeListName": list_name}],
    }


CARRIER_REF = _ref(CARRIER, "CQSB", "USCI", "91500000MA5U000002")
SHIPPER_REF = _ref(SHIPPER, "CQSB", "USCI", "91500000MA5U000001")
CQ_BANK_REF = _ref(CQ_BANK, "CQSB", "USCI", "91500000MA5U000003")
SG_BANK_REF = _ref(SG_BANK, "SGSB", "UEN", "199901234D")
CONSIGNEE_REF = _ref(CONSIGNEE, "SGSB", "UEN", "201912345K")
SG_CUSTOMS_REF = _ref("Singapore Customs", "SGSB", "UEN", "T08GA0001A")


def _tx(action: str, actor: dict[str, Any], recipient: dict[str, Any] | None, second: int) -> dict[str, Any]:
    tx: dict[str, Any] = {"actionCode": action, "actor": actor, "actionDateTime": f"2026-11-25T08:00:{second:02d}.000Z"}
    if recipient is not None:
        tx["recipient"] = recipient
    return tx


def _document(reference: str = "YXRSPINT0001") -> dict[str, Any]:
    document = load_sample()
    document["transportDocumentReference"] = reference
    return document


def _manifest(document: dict[str, Any]) -> str:
    issue_to = {k: SHIPPER_REF[k] for k in ("partyName", "identifyingCodes")} | {"sendToPlatform": "CQSB"}
    payload = chain.issuance_manifest(document, issue_to).model_dump(exclude_none=True)
    return jws.sign(payload, CARRIER_KEY)


def _entry(document: dict[str, Any], transactions: list[dict[str, Any]], key: keys.SigningKey = SENDER_KEY) -> str:
    payload = {
        "eblPlatform": "CQSB",
        "transportDocumentChecksum": canonical.checksum(document),
        "issuanceManifestSignedContent": _manifest(document),
        "transactions": transactions,
    }
    return jws.sign(payload, key)


def _envelope(
    document: dict[str, Any],
    transactions: list[dict[str, Any]],
    *,
    key: keys.SigningKey = SENDER_KEY,
    documents: list[bytes] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    entry = _entry(document, transactions, key)
    manifest: dict[str, Any] = {
        "transportDocumentChecksum": canonical.checksum(document),
        "lastEnvelopeTransferChainEntrySignedContentChecksum": chain.entry_checksum(entry),
    }
    if documents:
        manifest["supportingDocuments"] = [
            {
                "name": f"doc-{i}.pdf",
                "size": len(content),
                "mediaType": "application/pdf",
                "documentChecksum": hashlib.sha256(content).hexdigest(),
            }
            for i, content in enumerate(documents)
        ]
    return {
        "transportDocument": document,
        "envelopeManifestSignedContent": jws.sign(manifest, key),
        "envelopeTransferChain": [entry],
    }


def _to(recipient: dict[str, Any]) -> list[dict[str, Any]]:
    """ISSUE to the shipper on CQSB, then the shipper transfers it to ``recipient``."""
    return [_tx("ISSUE", CARRIER_REF, SHIPPER_REF, 1), _tx("TRANSFER", SHIPPER_REF, recipient, 2)]


@dataclass(frozen=True)
class Receiver:
    """The SGSB node as a real process on a loopback port, and its node key (which must sign every answer)."""

    api: Api
    key: keys.PublicKey

    @property
    def client(self) -> httpx.Client:
        client: httpx.Client = self.api.client
        return client


@pytest.fixture
def sg(tmp_path: Path) -> Iterator[Receiver]:
    trust = keys.TrustStore({"CQSB": (SENDER_KEY.public, SENDER_SECOND_KEY.public)}, {"CQSB": (CARRIER_KEY.public,)})
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "trust.json").write_text(json.dumps(trust.to_json()))
    # A peer whose address nothing listens on: this node only receives in these tests.
    process = NodeProcess(tmp_path, DATABASES.url(tmp_path), platform="SGSB", peers='{"CQSB": "http://127.0.0.1:9"}')
    process.start()
    try:
        with httpx.Client(base_url=process.url, timeout=30) as client:
            node_key = keys.load_or_create_node_key(tmp_path / "keys" / "node-SGSB.pem").public
            yield Receiver(Api(client), node_key)
    finally:
        process.stop()


def _signed(sg: Receiver, response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    compact = response.json()
    payload: dict[str, Any] = jws.verify(compact, sg.key)
    assert payload["responseCode"] == code, payload
    return payload


def test_receiver_validation_names_a_party_here_and_nothing_else(sg: Receiver) -> None:
    code = SG_BANK_REF["identifyingCodes"][0]
    assert sg.client.post("/v3/receiver-validation", json=code).json() == {"partyName": SG_BANK}
    assert_error(sg.client.post("/v3/receiver-validation", json=SHIPPER_REF["identifyingCodes"][0]), 404)
    # Customs reads eBLs and may never hold one: to a sender, it is no one to send an eBL to.
    assert_error(sg.client.post("/v3/receiver-validation", json=SG_CUSTOMS_REF["identifyingCodes"][0]), 404)


def test_an_envelope_may_be_larger_than_other_bodies(sg: Receiver) -> None:
    # It carries the eBL's whole chain: one of a few hundred entries is over 1 MB.
    envelope = {**_envelope(_document(), _to(SG_BANK_REF)), "padding": "x" * 1_500_000}
    _signed(sg, sg.client.post("/v3/envelopes", json=envelope), 200, "RECE")


def test_a_transfer_is_received_signed_and_held(sg: Receiver) -> None:
    envelope = _envelope(_document(), _to(SG_BANK_REF))
    answer = _signed(sg, sg.client.post("/v3/envelopes", json=envelope), 200, "RECE")
    assert answer["receivedAdditionalDocumentChecksums"] == []
    assert answer["lastEnvelopeTransferChainEntrySignedContentChecksum"] == chain.entry_checksum(
        envelope["envelopeTransferChain"][-1]
    )
    ebl = sg.api.get(SG_BANK, "/v1/ebls/YXRSPINT0001").json()
    assert (ebl["possessor"]["partyName"], ebl["eblPlatform"], ebl["chainLength"]) == (SG_BANK, "SGSB", 2)
    # No party-signed chain came with it: it is held and readable, not acted on here.
    assert_error(sg.api.act(SG_BANK, "YXRSPINT0001", "TRANSFER", CONSIGNEE), 409, "PARTY_CHAIN_MISSING")


def test_retries_unchanged_or_re_signed_are_duplicates_and_a_manipulated_one_is_a_double_spend(sg: Receiver) -> None:
    document = _document()
    envelope = _envelope(document, _to(SG_BANK_REF))
    _signed(sg, sg.client.post("/v3/envelopes", json=envelope), 200, "RECE")
    duplicate = _signed(sg, sg.client.post("/v3/envelopes", json=envelope), 200, "DUPE")
    assert (
        duplicate["duplicateOfAcceptedEnvelopeTransferChainEntrySignedContent"] == envelope["envelopeTransferChain"][-1]
    )
    re_signed = _envelope(document, _to(SG_BANK_REF), key=SENDER_SECOND_KEY, documents=[b"never sent"])
    assert re_signed["envelopeTransferChain"] != envelope["envelopeTransferChain"]
    # It names a document, but what was received is what came with the envelope accepted: none.
    assert (
        _signed(sg, sg.client.post("/v3/envelopes", json=re_signed), 200, "DUPE")["receivedAdditionalDocumentChecksums"]
        == []
    )
    # The same eBL sent again to another party here, from the same history: a second possessor is refused.
    manipulated = _envelope(document, [*_to(SG_BANK_REF)[:1], _tx("TRANSFER", SHIPPER_REF, CONSIGNEE_REF, 2)])
    _signed(sg, sg.client.post("/v3/envelopes", json=manipulated), 409, "DISE")
    inserted = _envelope(
        document,
        [*_to(SG_BANK_REF)[:1], _tx("SIGN", SHIPPER_REF, None, 2), _tx("TRANSFER", SHIPPER_REF, SG_BANK_REF, 3)],
    )
    _signed(sg, sg.client.post("/v3/envelopes", json=inserted), 409, "DISE")
    assert sg.api.get(SG_BANK, "/v1/ebls/YXRSPINT0001").json()["possessor"]["partyName"] == SG_BANK


def test_a_tampered_manifest_is_bsig_and_the_valid_retry_is_received(sg: Receiver) -> None:
    envelope = _envelope(_document(), _to(SG_BANK_REF))
    header, _, signature = envelope["envelopeManifestSignedContent"].split(".")
    forged = {"transportDocumentChecksum": "0" * 64, "lastEnvelopeTransferChainEntrySignedContentChecksum": "1" * 64}
    payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("=")
    tampered = {**envelope, "envelopeManifestSignedContent": f"{header}.{payload}.{signature}"}
    _signed(sg, sg.client.post("/v3/envelopes", json=tampered), 422, "BSIG")
    _signed(sg, sg.client.post("/v3/envelopes", json=envelope), 200, "RECE")


def test_an_envelope_signed_with_a_key_this_node_does_not_trust_is_bsig(sg: Receiver) -> None:
    forged = _envelope(_document(), _to(SG_BANK_REF), key=STRANGER_KEY)
    _signed(sg, sg.client.post("/v3/envelopes", json=forged), 422, "BSIG")
    assert_error(sg.api.get(SG_BANK, "/v1/ebls/YXRSPINT0001"), 404)


@pytest.mark.parametrize(
    "recipient",
    [
        _ref(SG_BANK, "ZZSB", "UEN", "199901234D"),  # another platform
        _ref("Nobody Pte. Ltd.", "SGSB", "UEN", "000000000X"),  # no such party here
        SG_CUSTOMS_REF,  # a verifier, who may never hold an eBL
        # Codes of two parties here: possession never goes to whichever matched first.
        {**SG_BANK_REF, "identifyingCodes": SG_BANK_REF["identifyingCodes"] + CONSIGNEE_REF["identifyingCodes"]},
    ],
    ids=["wrong-platform", "unknown-recipient", "verifier", "two-parties"],
)
def test_an_envelope_not_for_a_party_here_is_benv(sg: Receiver, recipient: dict[str, Any]) -> None:
    _signed(sg, sg.client.post("/v3/envelopes", json=_envelope(_document(), _to(recipient))), 422, "BENV")


def test_nothing_is_accepted_after_sacc(sg: Receiver) -> None:
    transactions = [
        _tx("ISSUE", CARRIER_REF, SHIPPER_REF, 1),
        _tx("TRANSFER", SHIPPER_REF, CQ_BANK_REF, 2),  # the bank is the document's endorsee
        _tx("SURRENDER_FOR_DELIVERY", CQ_BANK_REF, CARRIER_REF, 3),
        _tx("SACC", CARRIER_REF, None, 4),
        _tx("TRANSFER", CARRIER_REF, SG_BANK_REF, 5),
    ]
    answer = _signed(sg, sg.client.post("/v3/envelopes", json=_envelope(_document(), transactions)), 422, "BENV")
    assert "CHAIN_FROZEN" in answer["reason"]


def test_a_sacc_by_anyone_but_the_carrier_is_benv(sg: Receiver) -> None:
    # The envelope is for SGSB (the bank that asked to surrender is there), so only the rules can refuse it.
    transactions = [
        _tx("ISSUE", CARRIER_REF, SHIPPER_REF, 1),
        _tx("TRANSFER", SHIPPER_REF, CQ_BANK_REF, 2),
        _tx("ENDORSE", CQ_BANK_REF, SG_BANK_REF, 3),
        _tx("TRANSFER", CQ_BANK_REF, SG_BANK_REF, 4),
        _tx("SURRENDER_FOR_DELIVERY", SG_BANK_REF, CARRIER_REF, 5),
        _tx("SACC", SHIPPER_REF, None, 6),
    ]
    answer = _signed(sg, sg.client.post("/v3/envelopes", json=_envelope(_document(), transactions)), 422, "BENV")
    assert "CARRIER_ONLY" in answer["reason"]


@pytest.mark.parametrize(
    "odd",
    [
        {"action": ["TRNS"]},
        {"action": {"code": "TRNS"}},
        {"actionDateTime": "0001-01-01T00:00:00+05:00"},  # before year 1 in UTC
        {"actionDateTime": "9999-12-31T23:59:59-05:00"},  # after year 9999 in UTC
        {"actionDateTime": "2026-11-25T08:00:02"},  # no offset: whose local time?
        # U+0000 inside the signed entry, where the body's check cannot see it: PostgreSQL could not look it up.
        {"recipient": {**SG_BANK_REF, "identifyingCodes": [{"codeListProvider": "ZZZ", "partyCode": "1999\x00"}]}},
    ],
)
def test_a_peer_signed_transaction_with_odd_values_is_benv(sg: Receiver, odd: dict[str, Any]) -> None:
    transactions = _to(SG_BANK_REF)
    transactions[1] |= odd
    _signed(sg, sg.client.post("/v3/envelopes", json=_envelope(_document(), transactions)), 422, "BENV")


def test_the_conformance_tool_layout_is_accepted(sg: Receiver) -> None:
    document = _document()
    transactions = _to(SG_BANK_REF)
    # Legacy codes in `action`, `actionCode` always ISSUE, microseconds, the issuance manifest at the envelope root.
    transactions[0] |= {"action": "ISSU", "actionDateTime": "2026-11-25T08:00:01.123456Z"}
    transactions[1] |= {"action": "TRNS", "actionCode": "ISSUE"}
    entry = jws.sign(
        {
            "eblPlatform": "CQSB",
            "transportDocumentChecksum": canonical.checksum(document),
            "transactions": transactions,
        },
        SENDER_KEY,
    )
    manifest = {
        "transportDocumentChecksum": canonical.checksum(document),
        "lastEnvelopeTransferChainEntrySignedContentChecksum": chain.entry_checksum(entry),
    }
    envelope = {
        "transportDocument": document,
        "envelopeManifestSignedContent": jws.sign(manifest, SENDER_KEY),
        "envelopeTransferChain": [entry],
        "issuanceManifestSignedContent": _manifest(document),
    }
    _signed(sg, sg.client.post("/v3/envelopes", json=envelope), 200, "RECE")
    assert sg.api.get(SG_BANK, "/v1/ebls/YXRSPINT0001").json()["possessor"]["partyName"] == SG_BANK


def test_a_document_that_breaks_the_dcsa_schema_gets_an_error_response(sg: Receiver) -> None:
    document = _document()
    document["transports"]["placeOfReceipt"] = {
        "facility": {"facilityCode": "INVALID_FACILITY_CODE", "facilityCodeListProvider": "SMDG"}
    }
    assert_error(sg.client.post("/v3/envelopes", json=_envelope(document, _to(SG_BANK_REF))), 400, "SCHEMA")


def test_supporting_documents_missing_corrupted_undeclared_then_received(sg: Receiver) -> None:
    first, second = b"%PDF-1.7 packing list", b"%PDF-1.7 certificate of origin"
    envelope = _envelope(_document(), _to(SG_BANK_REF), documents=[first, second])
    checksums = sorted(hashlib.sha256(d).hexdigest() for d in (first, second))
    started = sg.client.post("/v3/envelopes", json=envelope)
    assert started.status_code == 201, started.text
    assert sorted(started.json()["missingAdditionalDocumentChecksums"]) == checksums
    reference = started.json()["envelopeReference"]
    path = f"/v3/envelopes/{reference}/additional-documents"

    def put(checksum: str, content: bytes) -> Any:
        return sg.client.put(f"{path}/{checksum}", json=base64.b64encode(content).decode())

    first_checksum = hashlib.sha256(first).hexdigest()
    _signed(sg, put(first_checksum, b"%PDF-1.7 packing lisT"), 409, "INCD")  # corrupted, path checksum kept
    unrelated = b"an unrelated file"
    _signed(sg, put(hashlib.sha256(unrelated).hexdigest(), unrelated), 409, "INCD")  # not declared
    early = _signed(sg, sg.client.put(f"/v3/envelopes/{reference}/finish-transfer"), 409, "MDOC")
    assert sorted(early["missingAdditionalDocumentChecksums"]) == checksums
    assert put(first_checksum, first).status_code == 204
    # Starting again mid-way continues the same transfer, with one document still missing.
    retried = sg.client.post("/v3/envelopes", json=envelope)
    assert retried.status_code == 201
    assert retried.json()["envelopeReference"] == reference
    assert retried.json()["missingAdditionalDocumentChecksums"] == [hashlib.sha256(second).hexdigest()]
    assert put(hashlib.sha256(second).hexdigest(), second).status_code == 204
    received = _signed(sg, sg.client.put(f"/v3/envelopes/{reference}/finish-transfer"), 200, "RECE")
    assert sorted(received["receivedAdditionalDocumentChecksums"]) == checksums
    again = _signed(sg, sg.client.put(f"/v3/envelopes/{reference}/finish-transfer"), 200, "DUPE")
    assert sorted(again["receivedAdditionalDocumentChecksums"]) == checksums


def _with_manifest(envelope: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    manifest = jws.unverified_payload(envelope["envelopeManifestSignedContent"])
    change(manifest)
    return {**envelope, "envelopeManifestSignedContent": jws.sign(manifest, SENDER_KEY)}


def test_a_manifest_must_declare_each_document_with_its_true_size(sg: Receiver) -> None:
    held = b"%PDF-1.7 packing list"
    envelope = _envelope(_document(), _to(SG_BANK_REF), documents=[held])
    started = sg.client.post("/v3/envelopes", json=envelope).json()
    path = f"/v3/envelopes/{started['envelopeReference']}"
    assert (
        sg.client.put(
            f"{path}/additional-documents/{hashlib.sha256(held).hexdigest()}", json=base64.b64encode(held).decode()
        ).status_code
        == 204
    )
    _signed(sg, sg.client.put(f"{path}/finish-transfer"), 200, "RECE")

    # Another eBL names the document this node holds: it is not sent again, so a false size would go unchecked.
    other = _envelope(_document("YXRSPINT0002"), _to(SG_BANK_REF), documents=[held])

    def lie(manifest: dict[str, Any]) -> None:
        manifest["supportingDocuments"][0]["size"] = 999_999

    def twice(manifest: dict[str, Any]) -> None:
        manifest["supportingDocuments"].append({**manifest["supportingDocuments"][0], "size": 5})

    for change in (lie, twice):
        answer = _signed(sg, sg.client.post("/v3/envelopes", json=_with_manifest(other, change)), 422, "BENV")
        assert "size" in answer["reason"], answer
    _signed(sg, sg.client.post("/v3/envelopes", json=other), 200, "RECE")


def test_a_document_larger_than_other_bodies_is_received_and_one_too_large_refused_at_once(sg: Receiver) -> None:
    # 900 kB take 1.2 MB in base64, over the 1 MB other bodies may have; a document may have up to 10 MB.
    large = bytes(range(256)) * 3_600
    envelope = _envelope(_document(), _to(SG_BANK_REF), documents=[large])
    checksum = hashlib.sha256(large).hexdigest()

    def too_large(manifest: dict[str, Any]) -> None:
        manifest["supportingDocuments"].append(
            {**manifest["supportingDocuments"][0], "documentChecksum": "a" * 64, "size": 10_000_001}
        )

    answer = _signed(sg, sg.client.post("/v3/envelopes", json=_with_manifest(envelope, too_large)), 422, "BENV")
    assert "at most 10000000" in answer["reason"]
    path = f"/v3/envelopes/{sg.client.post('/v3/envelopes', json=envelope).json()['envelopeReference']}"
    put = sg.client.put(f"{path}/additional-documents/{checksum}", json=base64.b64encode(large).decode())
    assert put.status_code == 204, put.text
    _signed(sg, sg.client.put(f"{path}/finish-transfer"), 200, "RECE")


def test_the_same_hop_with_other_documents_is_another_envelope(sg: Receiver) -> None:
    first, other = b"%PDF-1.7 packing list", b"%PDF-1.7 another packing list"
    envelope = _envelope(_document(), _to(SG_BANK_REF), documents=[first])
    opened = sg.client.post("/v3/envelopes", json=envelope).json()

    def other_document(manifest: dict[str, Any]) -> None:
        manifest["supportingDocuments"][0] |= {
            "size": len(other),
            "documentChecksum": hashlib.sha256(other).hexdigest(),
        }

    changed = sg.client.post("/v3/envelopes", json=_with_manifest(envelope, other_document)).json()
    assert changed["envelopeReference"] != opened["envelopeReference"]
    assert changed["missingAdditionalDocumentChecksums"] == [hashlib.sha256(other).hexdigest()]
    path = f"/v3/envelopes/{changed['envelopeReference']}"
    put = sg.client.put(
        f"{path}/additional-documents/{hashlib.sha256(other).hexdigest()}", json=base64.b64encode(other).decode()
    )
    assert put.status_code == 204, put.text
    _signed(sg, sg.client.put(f"{path}/finish-transfer"), 200, "RECE")


def test_a_finished_answer_decides_on_the_signed_code_not_the_status(sg: Receiver) -> None:
    """The sender's side of the same exchange: a signed answer is read, an unsigned one is not an answer."""
    envelope = _envelope(_document(), _to(SG_BANK_REF))
    base = str(sg.client.base_url).rstrip("/")
    compact = pint.deliver(sg.client, base, envelope, [sg.key])
    assert pint.read_response(compact).responseCode == "RECE"
    with pytest.raises(pint.DeliveryFailed):
        pint.deliver(sg.client, base, envelope, [STRANGER_KEY.public])
    with pytest.raises(pint.DeliveryFailed):
        pint.deliver(sg.client, "http://127.0.0.1:9", envelope, [sg.key])  # nobody listens there
