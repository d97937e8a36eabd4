"""Offline verification of bundles (ebl.verify): the story bundle, every kind of tampering, unusable input, fuzzing.

The bundles are real: keys, credentials, manifest, entries and head are signed by tests/bundles.py with the pure
modules, the way a node signs them.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebl import canonical, credentials, jws, keys
from ebl.bundle import HEAD_TYPE, Bundle, ChainHead, sign_head
from ebl.chain import ActionCode
from ebl.errors import UnusableBundle
from ebl.keys import TrustStore
from ebl.verify import CheckName, CheckResult, VerificationReport, verify_bundle
from tests.bundles import (
    CARRIER,
    CONSIGNEE,
    CQ_BANK,
    SG_BANK,
    SHIPPER,
    STORY,
    Corridor,
)
from tests.jsonvalues import paths

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")

ALL_CHECKS = list(CheckName)
VALID_EXCEPT_LEDGER = {name: "VALID" for name in ALL_CHECKS} | {CheckName.LEDGER_INCLUSION: "SKIPPED"}

STORY_CORRIDOR = Corridor().story()
STORY_BUNDLE = STORY_CORRIDOR.bundle()
TRUST = STORY_CORRIDOR.trust()


def story() -> tuple[Corridor, dict[str, Any]]:
    return STORY_CORRIDOR, copy.deepcopy(STORY_BUNDLE)


def statuses(report: VerificationReport) -> dict[CheckName, str]:
    return {check.name: check.status for check in report.checks}


def check(report: VerificationReport, name: CheckName) -> CheckResult:
    return next(c for c in report.checks if c.name == name)


def assert_invalid(
    report: VerificationReport, name: CheckName, entry: int | None, *words: str, only: bool = False
) -> CheckResult:
    """``name`` is INVALID about ``entry`` with ``words`` in its detail (and, with ``only``, no other check is)."""
    assert report.verdict == "INVALID"
    result = check(report, name)
    assert result.status == "INVALID", result
    assert result.entry == entry, result
    for word in words:
        assert word in result.detail, result.detail
    if only:
        assert statuses(report) == VALID_EXCEPT_LEDGER | {name: "INVALID"}, report.checks
    return result


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def reencode(compact: str, change: Callable[[dict[str, Any]], None]) -> str:
    """The JWS with its payload changed and re-encoded, header and signature kept."""
    header, _, signature = compact.split(".")
    payload = jws.unverified_payload(compact)
    change(payload)
    return ".".join([header, _b64(canonical.canonicalize(payload)), signature])


def flip_signature(compact: str) -> str:
    header, payload, signature = compact.split(".")
    middle = len(signature) // 2
    replacement = "A" if signature[middle] != "A" else "B"
    return ".".join([header, payload, signature[:middle] + replacement + signature[middle + 1 :]])


# -- the valid story ------------------------------------------------------------------------------------------


def test_the_story_bundle_is_valid() -> None:
    corridor, bundle = story()
    report = verify_bundle(bundle, corridor.trust())

    assert report.verdict == "VALID"
    assert [c.name for c in report.checks] == ALL_CHECKS
    assert statuses(report) == VALID_EXCEPT_LEDGER
    assert check(report, CheckName.LEDGER_INCLUSION).detail == "no checkpoint in the bundle"
    assert all(c.entry is None for c in report.checks)

    assert [item.actionCode for item in report.history] == list(STORY)
    assert [item.sequence for item in report.history] == list(range(len(STORY)))
    assert [item.actor["partyName"] for item in report.history] == [
        CARRIER, SHIPPER, CQ_BANK, CQ_BANK, SG_BANK, SG_BANK, CONSIGNEE, CARRIER
    ]  # fmt: skip
    assert report.history[0].recipient == corridor.ref(SHIPPER)
    assert report.history[-1].recipient is None

    document = report.document
    assert document is not None
    assert document.transportDocumentReference == "YXRS2611CKGSIN001"
    assert document.status == "SURRENDERED_FOR_DELIVERY"
    assert document.possessor == corridor.ref(CARRIER)
    assert document.titleHolder == corridor.ref(CONSIGNEE)
    assert document.eblPlatform == "CQSB"


def test_the_report_and_bundle_json_shapes() -> None:
    corridor, bundle = story()
    assert set(bundle) == {
        "bundleVersion", "transportDocument", "issueTo", "entries", "credentials", "head", "checkpoint",
        "inclusionProofs",
    }  # fmt: skip
    Bundle.model_validate(bundle)
    head = ChainHead.model_validate(jws.verify(bundle["head"], corridor.node_key.public))
    assert head.length == len(STORY)
    assert jws.header(bundle["head"])["typ"] == HEAD_TYPE

    data = verify_bundle(bundle, corridor.trust()).model_dump(mode="json")
    assert set(data) == {"verdict", "checks", "document", "history"}
    assert set(data["checks"][0]) == {"name", "status", "detail", "entry"}
    assert set(data["document"]) == {
        "transportDocumentReference", "status", "possessor", "titleHolder", "eblPlatform", "asOf"
    }  # fmt: skip
    assert data["document"]["asOf"] == head.exportedAt
    assert set(data["history"][0]) == {
        "sequence", "actionCode", "actor", "recipient", "actionDateTime", "eblPlatform"
    }  # fmt: skip


def test_a_checkpoint_without_proofs_or_signature_is_invalid() -> None:
    corridor, bundle = story()
    bundle["checkpoint"] = "cqsb.ebl.example/log\n8\nAAAA\n"
    report = verify_bundle(bundle, corridor.trust())
    ledger = check(report, CheckName.LEDGER_INCLUSION)
    assert ledger.status == "INVALID"
    assert report.verdict == "INVALID"


def test_an_issuance_manifest_key_trusted_directly_as_a_carrier_key() -> None:
    corridor = Corridor()
    carrier_own_key = keys.generate()  # the carrier's own key, outside any node: DCSA lets the carrier sign it
    corridor.issue(SHIPPER, manifest=corridor.manifest(key=carrier_own_key))
    bundle = corridor.bundle()

    untrusting = verify_bundle(bundle, corridor.trust())
    assert_invalid(untrusting, CheckName.ISSUER_IDENTITY, 0, "no credential")
    assert_invalid(untrusting, CheckName.ISSUANCE, 0, "no credential")

    trust = TrustStore(corridor.trust().node_keys, {"CQSB": (carrier_own_key.public,)})
    report = verify_bundle(bundle, trust)
    assert statuses(report) == VALID_EXCEPT_LEDGER
    assert "carrier key" in check(report, CheckName.ISSUER_IDENTITY).detail


# -- tampering ------------------------------------------------------------------------------------------------


def test_a_changed_weight_in_the_document() -> None:
    corridor, bundle = story()
    bundle["transportDocument"]["consignmentItems"][0]["cargoItems"][0]["cargoGrossWeight"]["value"] = 11850.6
    report = verify_bundle(bundle, corridor.trust())
    assert_invalid(report, CheckName.DOCUMENT_INTEGRITY, None, "altered")
    assert_invalid(report, CheckName.ISSUANCE, 0, "documentChecksum")
    assert check(report, CheckName.SIGNATURES).status == "VALID"
    assert check(report, CheckName.CHAIN_LINKS).status == "VALID"


def test_a_changed_byte_in_an_entry_payload() -> None:
    corridor, bundle = story()

    def later(payload: dict[str, Any]) -> None:
        payload["transaction"]["actionDateTime"] = "2026-11-21T08:41:00.000Z"

    bundle["entries"][3] = reencode(bundle["entries"][3], later)
    report = verify_bundle(bundle, corridor.trust())
    assert_invalid(report, CheckName.SIGNATURES, 3, "entry 3", "does not verify")
    assert_invalid(report, CheckName.CHAIN_LINKS, 4, "previousEntryChecksum")
    assert report.history[3].actionDateTime == "2026-11-21T08:41:00.000Z"  # what it claims, flagged by the checks


def test_a_changed_signature_byte() -> None:
    corridor, bundle = story()
    bundle["entries"][5] = flip_signature(bundle["entries"][5])
    report = verify_bundle(bundle, corridor.trust())
    assert_invalid(report, CheckName.SIGNATURES, 5, "does not verify")


def test_a_removed_middle_entry() -> None:
    corridor, bundle = story()
    del bundle["entries"][3]
    report = verify_bundle(bundle, corridor.trust())
    assert_invalid(report, CheckName.CHAIN_LINKS, 3, "sequence 4", "missing")
    assert check(report, CheckName.SIGNATURES).status == "VALID"


def test_a_removed_last_entry_is_caught_by_the_head() -> None:
    corridor, bundle = story()
    bundle["entries"].pop()
    report = verify_bundle(bundle, corridor.trust())
    # Every link still holds: only the head shows that the SACC is missing.
    assert_invalid(report, CheckName.CHAIN_LINKS, 7, "vouches for 8 entries", "removed", only=True)
    assert report.document is not None
    assert report.document.status == "PENDING_SURRENDER_FOR_DELIVERY"


def test_an_added_entry_the_head_does_not_vouch_for() -> None:
    corridor = Corridor()
    corridor.issue(SHIPPER)
    corridor.act(SHIPPER, ActionCode.TRANSFER, CQ_BANK)
    head = corridor.head()
    corridor.act(CQ_BANK, ActionCode.TRANSFER, SG_BANK)  # signed by the legitimate possessor, linked correctly
    report = verify_bundle(corridor.bundle(head=head), corridor.trust())
    assert_invalid(report, CheckName.CHAIN_LINKS, 2, "vouches for 2 entries", "added", only=True)


def test_reordered_entries() -> None:
    corridor, bundle = story()
    entries = bundle["entries"]
    entries[2], entries[3] = entries[3], entries[2]
    report = verify_bundle(bundle, corridor.trust())
    assert_invalid(report, CheckName.CHAIN_LINKS, 2, "sequence 3")
    # Read in this order, Bank of Chongqing hands the eBL over and then endorses what it no longer holds.
    assert_invalid(report, CheckName.STATE, 3, "NOT_POSSESSOR")


def test_an_entry_signed_by_a_key_with_no_credential() -> None:
    corridor = Corridor()
    corridor.issue(SHIPPER)
    stray = keys.generate()
    corridor.act(SHIPPER, ActionCode.TRANSFER, CQ_BANK, key=stray)
    report = verify_bundle(corridor.bundle(), corridor.trust())
    assert_invalid(report, CheckName.SIGNATURES, 1, stray.kid, "no credential", only=True)


def test_a_credential_signed_by_a_node_key_not_in_the_trust_store() -> None:
    corridor = Corridor()
    corridor.issue(SHIPPER)
    rogue_node = keys.generate()
    impostor = corridor.enrol(SHIPPER, corridor.ref(SHIPPER)["identifyingCodes"], ["holder"], node_key=rogue_node)
    corridor.act(SHIPPER, ActionCode.TRANSFER, CQ_BANK, key=impostor.key)
    report = verify_bundle(corridor.bundle(), corridor.trust())
    assert_invalid(report, CheckName.SIGNATURES, 1, impostor.key.kid, "does not verify", "trust store", only=True)


def test_an_entry_signed_with_the_key_of_another_party_than_its_actor() -> None:
    corridor = Corridor()
    corridor.issue(SHIPPER)
    corridor.act(SHIPPER, ActionCode.TRANSFER, CQ_BANK, key=corridor.parties[CQ_BANK].key)
    report = verify_bundle(corridor.bundle(), corridor.trust())
    assert_invalid(report, CheckName.SIGNATURES, 1, CQ_BANK, SHIPPER, only=True)


def test_an_issuance_manifest_over_another_document() -> None:
    corridor = Corridor()
    other = copy.deepcopy(corridor.document)
    other["consignmentItems"][0]["cargoItems"][0]["cargoGrossWeight"]["value"] = 9000.0
    corridor.issue(SHIPPER, manifest=corridor.manifest(document=other))
    report = verify_bundle(corridor.bundle(), corridor.trust())
    assert_invalid(report, CheckName.ISSUANCE, 0, "documentChecksum")
    assert_invalid(report, CheckName.DOCUMENT_INTEGRITY, 0, "issuance manifest")
    assert check(report, CheckName.ISSUER_IDENTITY).status == "VALID"


def test_an_issuance_manifest_for_another_issue_to_party() -> None:
    corridor = Corridor()
    corridor.issue(SHIPPER, manifest=corridor.manifest(issue_to=corridor.issue_to_of(CQ_BANK)))
    report = verify_bundle(corridor.bundle(), corridor.trust())
    assert_invalid(report, CheckName.ISSUANCE, 0, "issueToChecksum", only=True)


def test_an_issue_to_another_party_than_issue_to() -> None:
    corridor = Corridor()
    corridor.issue(CQ_BANK, issue_to=corridor.issue_to_of(SHIPPER))
    report = verify_bundle(corridor.bundle(), corridor.trust())
    assert_invalid(report, CheckName.ISSUANCE, 0, "recipient", CQ_BANK, only=True)


def test_an_issuance_manifest_signed_by_a_holder() -> None:
    corridor = Corridor()
    corridor.issue(SHIPPER, manifest=corridor.manifest(key=corridor.parties[SHIPPER].key))
    report = verify_bundle(corridor.bundle(), corridor.trust())
    assert_invalid(report, CheckName.ISSUER_IDENTITY, 0, SHIPPER, "carrier role", only=True)


def test_a_carrier_that_is_not_the_documents_issuing_party() -> None:
    corridor = Corridor()
    other_carrier = corridor.enrol(
        "Chongqing Other Line", [{"codeListProvider": "ZZZ", "partyCode": "91500000MA5U000099"}], ["carrier"]
    )
    corridor.issue(SHIPPER, by=other_carrier.name, manifest=corridor.manifest(key=other_carrier.key))
    report = verify_bundle(corridor.bundle(), corridor.trust())
    assert_invalid(report, CheckName.ISSUER_IDENTITY, 0, "issuingParty", "Yuxin")
    assert_invalid(report, CheckName.STATE, 0, "ISSUER_IS_NOT_THE_ISSUING_PARTY")


def test_a_correctly_signed_endorsement_by_a_non_endorsee() -> None:
    corridor = Corridor()
    corridor.issue(SHIPPER)
    corridor.act(SHIPPER, ActionCode.ENDORSE_TO_ORDER, SG_BANK)  # the endorsee is Bank of Chongqing, not the shipper
    report = verify_bundle(corridor.bundle(), corridor.trust())
    assert_invalid(report, CheckName.STATE, 1, "NOT_ENDORSEE", "ENDORSE_TO_ORDER", only=True)
    assert report.document is None
    assert len(report.history) == 2


def test_a_head_signed_by_an_untrusted_key() -> None:
    corridor, bundle = story()
    bundle["head"] = corridor.head(node_key=keys.generate())
    report = verify_bundle(bundle, corridor.trust())
    assert_invalid(report, CheckName.CHAIN_LINKS, None, "trust store does not know", only=True)


def test_a_credential_passed_off_as_the_head() -> None:
    corridor, bundle = story()
    bundle["head"] = bundle["credentials"][0]  # also signed by the node key
    report = verify_bundle(bundle, corridor.trust())
    assert_invalid(report, CheckName.CHAIN_LINKS, None)


def test_a_head_over_another_chain_length_signed_by_the_node() -> None:
    corridor, bundle = story()
    bundle["head"] = sign_head(
        corridor.node_key,
        document_checksum=canonical.checksum(bundle["transportDocument"]),
        transport_document_reference="YXRS2611CKGSIN001",
        entries=bundle["entries"][:5],
        platform="CQSB",
        exported_at="2026-11-20T09:00:00.000Z",
    )
    report = verify_bundle(bundle, corridor.trust())
    assert_invalid(report, CheckName.CHAIN_LINKS, 5, "added", only=True)


def test_a_verifier_that_knows_another_node_only() -> None:
    _, bundle = story()
    stranger = Corridor().trust()
    report = verify_bundle(bundle, stranger)
    assert report.verdict == "INVALID"
    for name in (CheckName.CHAIN_LINKS, CheckName.SIGNATURES, CheckName.ISSUER_IDENTITY, CheckName.ISSUANCE):
        assert check(report, name).status == "INVALID", name


def test_an_entry_that_is_not_a_jws() -> None:
    corridor, bundle = story()
    bundle["entries"][2] = "not a JWS"
    report = verify_bundle(bundle, corridor.trust())
    for name in (CheckName.DOCUMENT_INTEGRITY, CheckName.CHAIN_LINKS, CheckName.SIGNATURES, CheckName.STATE):
        assert_invalid(report, name, 2, "entry 2")
    assert [item.sequence for item in report.history] == [0, 1, 3, 4, 5, 6, 7]


def test_an_entry_payload_that_is_not_an_entry() -> None:
    corridor, bundle = story()
    bundle["entries"][1] = jws.sign({"hello": "world"}, corridor.parties[SHIPPER].key)
    report = verify_bundle(bundle, corridor.trust())
    assert_invalid(report, CheckName.SIGNATURES, 1, "not a chain entry")


def test_a_missing_credential_for_the_issuance_manifest() -> None:
    corridor, bundle = story()
    carrier = corridor.parties[CARRIER]
    bundle["credentials"] = [c for c in bundle["credentials"] if c != carrier.credential]
    report = verify_bundle(bundle, corridor.trust())
    assert_invalid(report, CheckName.ISSUER_IDENTITY, 0, "no credential")
    assert_invalid(report, CheckName.SIGNATURES, 0, "no credential")


def test_a_credential_for_another_platform_than_the_entry() -> None:
    corridor = Corridor()
    sg_node = keys.generate()
    corridor.issue(SHIPPER)
    shipper = corridor.parties[SHIPPER]
    elsewhere = credentials.issue(
        sg_node,
        party={**shipper.ref, "eblPlatform": "SGSB"},
        roles=["holder"],
        public_key=shipper.key.public,
        issued_at="2026-11-20T08:00:00.000Z",
    )
    corridor.act(SHIPPER, ActionCode.TRANSFER, CQ_BANK)
    bundle = corridor.bundle(credentials=[corridor.parties[CARRIER].credential, elsewhere])
    trust = corridor.trust().with_node_key("SGSB", sg_node.public)
    report = verify_bundle(bundle, trust)
    assert_invalid(report, CheckName.SIGNATURES, 1, "'SGSB'", only=True)


# -- unusable input -------------------------------------------------------------------------------------------


def _without(key: str) -> dict[str, Any]:
    bundle = copy.deepcopy(STORY_BUNDLE)
    del bundle[key]
    return bundle


def _with(key: str, value: Any) -> dict[str, Any]:
    return copy.deepcopy(STORY_BUNDLE) | {key: value}


@pytest.mark.parametrize(
    "bundle",
    [
        None,
        [],
        "bundle",
        42,
        {},
        _without("transportDocument"),
        _without("issueTo"),
        _without("entries"),
        _without("credentials"),
        _without("bundleVersion"),
        _with("bundleVersion", 2),
        _with("bundleVersion", True),
        _with("bundleVersion", 1.0),
        _with("transportDocument", "YXRS2611CKGSIN001"),
        _with("issueTo", []),
        _with("entries", STORY_BUNDLE["entries"][0]),
        _with("entries", []),
        _with("entries", [*STORY_BUNDLE["entries"], 7]),
        _with("credentials", None),
        _with("unexpected", 1),
    ],
    ids=repr,
)
def test_unusable_input(bundle: Any) -> None:
    with pytest.raises(UnusableBundle):
        verify_bundle(bundle, TRUST)


# -- properties -----------------------------------------------------------------------------------------------

_json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
_json = st.recursive(
    _json_leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
_FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _outcome(bundle: Any) -> VerificationReport | None:
    """The report, or ``None`` for UnusableBundle; any other exception fails the test."""
    try:
        report = verify_bundle(bundle, TRUST)
    except UnusableBundle:
        return None
    assert [c.name for c in report.checks] == ALL_CHECKS
    assert not any("internal error" in c.detail for c in report.checks), report.checks
    report.model_dump_json()  # the API answers with it: it must serialise
    return report


@_FAST
@given(_json)
def test_random_json_is_never_valid(value: Any) -> None:
    report = _outcome(value)
    assert report is None or report.verdict == "INVALID"


@_FAST
@given(st.fixed_dictionaries({key: _json for key in STORY_BUNDLE}))
def test_random_values_under_the_bundle_keys_are_never_valid(value: dict[str, Any]) -> None:
    report = _outcome(value)
    assert report is None or report.verdict == "INVALID"


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


@st.composite
def _mutated(draw: st.DrawFn) -> dict[str, Any]:
    """The story bundle with one node of its JSON tree replaced, removed, or (a string) edited by one character."""
    bundle = copy.deepcopy(STORY_BUNDLE)
    path = draw(st.sampled_from(paths(bundle)[1:]))
    parent, last = _get(bundle, path[:-1]), path[-1]
    target = parent[last]
    operation = draw(
        st.sampled_from(["replace", "remove", "edit"] if isinstance(target, str) else ["replace", "remove"])
    )
    if operation == "remove":
        del parent[last]
    elif operation == "replace":
        parent[last] = draw(_json)
    else:
        index = draw(st.integers(0, max(len(target) - 1, 0)))
        char = draw(st.characters(codec="utf-8") | st.sampled_from("-_.aAzZ09"))
        parent[last] = target[:index] + char + target[index + 1 :]
    return bundle


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_a_mutated_story_bundle_is_never_valid_when_the_document_or_chain_changed(bundle: dict[str, Any]) -> None:
    report = _outcome(bundle)
    changed = any(bundle.get(key) != STORY_BUNDLE[key] for key in ("transportDocument", "issueTo", "entries"))
    if report is not None and changed:
        assert report.verdict == "INVALID", report.checks
