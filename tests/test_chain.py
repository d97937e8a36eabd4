"""The eBL state machine (ebl.chain.apply / fold), transactions and chain-entry payloads.

Three kinds of bill from the corridor sample: to-order (the sample, endorsee Bank of Chongqing), blank (the sample
without an endorsee) and straight (isToOrder=false, Lion City Electronics as consignee).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ebl import canonical, chain, jws, keys
from ebl.chain import ActionCode, DocumentFacts, EblState, EntryPayload, Status, Transaction
from ebl.errors import ActionRefused, BadRequest, RoleForbidden
from ebl.parties import same_party
from tests.conftest import load_sample

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")

WHEN = "2026-11-20T08:30:00.000Z"


def party(name: str, platform: str, code: str, code_list: str) -> dict[str, Any]:
    return {
        "partyName": name,
        "eblPlatform": platform,
        "identifyingCodes": [{"codeListProvider": "ZZZ", "codeListName": code_list, "partyCode": code}],
    }


CARRIER = party("Yuxin Rail-Sea Forwarding Co., Ltd.", "CQSB", "91500000MA5U000002", "USCI")
SHIPPER = party("Chongqing Laptop Export Co., Ltd.", "CQSB", "91500000MA5U000001", "USCI")
CQ_BANK = party("Bank of Chongqing Trade Finance", "CQSB", "91500000MA5U000003", "USCI")
CQ_CUSTOMS = party("Chongqing Customs", "CQSB", "11500000MB1234567X", "USCI")
SG_BANK = party("Straits Trade Bank", "SGSB", "199901234D", "UEN")
CONSIGNEE = party("Lion City Electronics Pte. Ltd.", "SGSB", "201912345K", "UEN")
PARTIES = [CARRIER, SHIPPER, CQ_BANK, CQ_CUSTOMS, SG_BANK, CONSIGNEE]

ENDORSEMENTS = [ActionCode.ENDORSE, ActionCode.ENDORSE_TO_ORDER, ActionCode.BLANK_ENDORSE]
SURRENDERS = [ActionCode.SURRENDER_FOR_DELIVERY, ActionCode.SURRENDER_FOR_AMENDMENT]
NO_RECIPIENT = {ActionCode.SIGN, ActionCode.BLANK_ENDORSE, ActionCode.SACC}


def to_order_document() -> dict[str, Any]:
    return load_sample()


def blank_document() -> dict[str, Any]:
    document = load_sample()
    del document["documentParties"]["endorsee"]
    return document


def straight_document() -> dict[str, Any]:
    document = load_sample()
    document["isToOrder"] = False
    parties = document["documentParties"]
    del parties["endorsee"]
    parties["consignee"] = copy.deepcopy(parties["notifyParties"][0])
    return document


TO_ORDER = DocumentFacts.of(to_order_document())
BLANK = DocumentFacts.of(blank_document())
STRAIGHT = DocumentFacts.of(straight_document())
KINDS = {"to-order": TO_ORDER, "blank": BLANK, "straight": STRAIGHT}


def tx(action: str, actor: dict[str, Any], recipient: dict[str, Any] | None = None, **extra: Any) -> Transaction:
    body: dict[str, Any] = {"actionCode": action, "actor": actor, "actionDateTime": WHEN, **extra}
    if recipient is not None:
        body["recipient"] = recipient
    return Transaction.model_validate(body)


def run(facts: DocumentFacts, *steps: Transaction) -> EblState:
    """Apply steps one by one and check that fold of them agrees."""
    state: EblState | None = None
    for step in steps:
        state = chain.apply(state, facts, step)
    assert state is not None
    assert chain.fold(facts, steps) == state
    return state


def issued(facts: DocumentFacts, to: dict[str, Any] = SHIPPER) -> list[Transaction]:
    return [tx("ISSUE", CARRIER, to)]


def refused(
    facts: DocumentFacts, steps: Sequence[Transaction], step: Transaction, code: str, error: type = ActionRefused
) -> None:
    state = run(facts, *steps) if steps else None
    with pytest.raises(error) as raised:
        chain.apply(state, facts, step)
    assert raised.value.code == code, raised.value.message
    assert type(raised.value) is error


def same(a: Any, b: Any) -> bool:
    return same_party(dict(a), dict(b))


# -- the sample and its variants -----------------------------------------------------------------------------


def test_document_facts_of_the_three_kinds() -> None:
    assert TO_ORDER.is_to_order and BLANK.is_to_order and not STRAIGHT.is_to_order
    assert TO_ORDER.transport_document_reference == "YXRS2611CKGSIN001"
    assert same(TO_ORDER.endorsee or {}, CQ_BANK)
    assert BLANK.endorsee is None
    assert STRAIGHT.endorsee is None and same(STRAIGHT.consignee or {}, CONSIGNEE)
    assert same(TO_ORDER.issuing_party, CARRIER) and same(TO_ORDER.shipper, SHIPPER)


# -- ISSUE ------------------------------------------------------------------------------------------------------


def test_issue_to_order() -> None:
    state = run(TO_ORDER, *issued(TO_ORDER))
    assert state.status == Status.ISSUED
    assert state.possessor == SHIPPER
    assert same(state.title_holder or {}, CQ_BANK)
    assert state.can_endorse
    assert not state.is_blank_endorsed and not state.is_final
    assert state.platform == "CQSB"
    assert state.issuing_carrier == CARRIER
    assert state.surrender_requester is None
    assert state.length == 1


def test_issue_blank() -> None:
    state = run(BLANK, *issued(BLANK))
    assert state.title_holder is None and state.is_blank_endorsed and state.can_endorse


def test_issue_straight() -> None:
    state = run(STRAIGHT, *issued(STRAIGHT))
    assert same(state.title_holder or {}, CONSIGNEE)
    assert not state.can_endorse


def test_issue_to_a_party_on_another_platform_puts_the_ebl_there() -> None:
    state = run(STRAIGHT, *issued(STRAIGHT, to=CONSIGNEE))
    assert state.possessor == CONSIGNEE and state.platform == "SGSB"


def test_issuing_party_is_recognised_by_identifying_code_not_name() -> None:
    renamed = {**CARRIER, "partyName": "Yuxin (Chongqing branch)"}
    assert run(TO_ORDER, tx("ISSUE", renamed, SHIPPER)).issuing_carrier == renamed


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("action", [a for a in ActionCode if a != ActionCode.ISSUE])
def test_nothing_before_issue(kind: str, action: ActionCode) -> None:
    recipient = None if action in NO_RECIPIENT | {ActionCode.SREJ} else CQ_BANK
    refused(KINDS[kind], [], tx(action, CARRIER, recipient), "NOT_ISSUED")


def test_fold_of_no_transactions_is_not_an_ebl() -> None:
    with pytest.raises(ActionRefused) as raised:
        chain.fold(TO_ORDER, [])
    assert raised.value.code == "NOT_ISSUED"


@pytest.mark.parametrize("kind", KINDS)
def test_issue_only_once(kind: str) -> None:
    facts = KINDS[kind]
    refused(facts, issued(facts), tx("ISSUE", CARRIER, SHIPPER), "ALREADY_ISSUED")
    refused(facts, issued(facts), tx("ISSUE", SHIPPER, CQ_BANK), "ALREADY_ISSUED")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "issuer",
    [
        SHIPPER,
        CQ_BANK,
        party("Yuxin Rail-Sea Forwarding Co., Ltd.", "CQSB", "91500000MA5U999999", "USCI"),  # right name, other code
        {**CARRIER, "eblPlatform": "SGSB", "identifyingCodes": [{"codeListProvider": "LEI", "partyCode": "X"}]},
    ],
)
def test_only_the_documents_issuing_party_issues(kind: str, issuer: dict[str, Any]) -> None:
    refused(KINDS[kind], [], tx("ISSUE", issuer, SHIPPER), "ISSUER_IS_NOT_THE_ISSUING_PARTY", RoleForbidden)


# -- possession and TRANSFER --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_transfer_moves_possession_only(kind: str) -> None:
    facts = KINDS[kind]
    before = run(facts, *issued(facts))
    after = run(facts, *issued(facts), tx("TRANSFER", SHIPPER, CQ_BANK))
    assert after.possessor == CQ_BANK
    assert after.title_holder == before.title_holder
    assert after.can_endorse == before.can_endorse
    assert after.status == Status.ISSUED
    assert after.length == 2
    back = run(facts, *issued(facts), tx("TRANSFER", SHIPPER, CQ_BANK), tx("TRANSFER", CQ_BANK, SHIPPER))
    assert back.possessor == SHIPPER


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "actor", [CARRIER, CQ_BANK, CQ_CUSTOMS, party("Chongqing Laptop Export Co., Ltd.", "CQSB", "FAKE", "USCI")]
)
@pytest.mark.parametrize("action", ["TRANSFER", "SIGN", *ENDORSEMENTS, *SURRENDERS])
def test_only_the_possessor_acts(kind: str, actor: dict[str, Any], action: str) -> None:
    facts = KINDS[kind]
    recipient = None if action in NO_RECIPIENT else (CARRIER if action.startswith("SURRENDER") else SG_BANK)
    refused(facts, issued(facts), tx(action, actor, recipient), "NOT_POSSESSOR")


@pytest.mark.parametrize("kind", KINDS)
def test_transfer_to_self_is_refused(kind: str) -> None:
    facts = KINDS[kind]
    refused(facts, issued(facts), tx("TRANSFER", SHIPPER, SHIPPER), "TRANSFER_TO_SELF")
    renamed = {**SHIPPER, "partyName": "Chongqing Laptop Export"}
    refused(facts, issued(facts), tx("TRANSFER", SHIPPER, renamed), "TRANSFER_TO_SELF")


def test_transfer_to_the_same_code_on_another_platform_is_another_party() -> None:
    twin = {**SHIPPER, "eblPlatform": "SGSB"}
    state = run(TO_ORDER, *issued(TO_ORDER), tx("TRANSFER", SHIPPER, twin))
    assert state.possessor == twin and state.platform == "SGSB"


# -- SIGN and the recipient rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_sign_by_the_possessor_changes_nothing_but_the_length(kind: str) -> None:
    facts = KINDS[kind]
    before = run(facts, *issued(facts))
    after = run(facts, *issued(facts), tx("SIGN", SHIPPER))
    assert after.length == before.length + 1
    assert after == EblState(**{**before.__dict__, "length": before.length + 1})


@pytest.mark.parametrize("action", sorted(NO_RECIPIENT))
def test_recipient_not_allowed(action: str) -> None:
    refused(TO_ORDER, issued(TO_ORDER), tx(action, SHIPPER, CQ_BANK), "RECIPIENT_NOT_ALLOWED", BadRequest)


@pytest.mark.parametrize("action", ["ISSUE", "TRANSFER", "ENDORSE", "ENDORSE_TO_ORDER", *SURRENDERS])
def test_recipient_required(action: str) -> None:
    steps = [] if action == "ISSUE" else issued(TO_ORDER)
    refused(TO_ORDER, steps, tx(action, CARRIER if action == "ISSUE" else SHIPPER), "RECIPIENT_REQUIRED", BadRequest)


@pytest.mark.parametrize("action", [a for a in ActionCode if a != ActionCode.SURRENDER_FOR_AMENDMENT])
def test_reason_code_only_on_surrender_for_amendment(action: ActionCode) -> None:
    recipient = None if action in NO_RECIPIENT | {ActionCode.SREJ} else CARRIER
    step = tx(action, SHIPPER, recipient, reasonCode="SWTP")
    refused(TO_ORDER, issued(TO_ORDER), step, "REASON_CODE_NOT_ALLOWED", BadRequest)


# -- endorsement --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ENDORSEMENTS)
@pytest.mark.parametrize("holder", [SHIPPER, CONSIGNEE])
def test_straight_bl_is_not_endorsable(action: str, holder: dict[str, Any]) -> None:
    steps = [*issued(STRAIGHT), *([tx("TRANSFER", SHIPPER, holder)] if holder != SHIPPER else [])]
    recipient = None if action in NO_RECIPIENT else SG_BANK
    refused(STRAIGHT, steps, tx(action, holder, recipient), "STRAIGHT_BL_NOT_ENDORSABLE")


@pytest.mark.parametrize("action", ENDORSEMENTS)
def test_possessor_who_is_not_the_endorsee_cannot_endorse(action: str) -> None:
    recipient = None if action in NO_RECIPIENT else SG_BANK
    refused(TO_ORDER, issued(TO_ORDER), tx(action, SHIPPER, recipient), "NOT_ENDORSEE")


def test_endorsee_who_is_not_the_possessor_cannot_endorse() -> None:
    refused(TO_ORDER, issued(TO_ORDER), tx("ENDORSE_TO_ORDER", CQ_BANK, SG_BANK), "NOT_POSSESSOR")


def test_endorse_to_order_names_a_new_endorsee_who_may_endorse_on() -> None:
    steps = [*issued(TO_ORDER), tx("TRANSFER", SHIPPER, CQ_BANK), tx("ENDORSE_TO_ORDER", CQ_BANK, SG_BANK)]
    state = run(TO_ORDER, *steps)
    assert state.title_holder == SG_BANK
    assert state.can_endorse
    assert state.possessor == CQ_BANK  # endorsing does not move possession
    assert state.platform == "CQSB"
    # The old endorsee no longer endorses, even while possessing.
    refused(TO_ORDER, steps, tx("ENDORSE", CQ_BANK, CONSIGNEE), "NOT_ENDORSEE")
    # The new endorsee, once in possession, endorses on.
    steps += [tx("TRANSFER", CQ_BANK, SG_BANK), tx("ENDORSE_TO_ORDER", SG_BANK, CONSIGNEE)]
    state = run(TO_ORDER, *steps)
    assert state.title_holder == CONSIGNEE and state.can_endorse and state.possessor == SG_BANK


@pytest.mark.parametrize("action", ENDORSEMENTS)
def test_after_endorse_the_endorsee_cannot_endorse_further(action: str) -> None:
    steps = [
        *issued(TO_ORDER),
        tx("TRANSFER", SHIPPER, CQ_BANK),
        tx("ENDORSE", CQ_BANK, CONSIGNEE),
        tx("TRANSFER", CQ_BANK, CONSIGNEE),
    ]
    state = run(TO_ORDER, *steps)
    assert state.title_holder == CONSIGNEE and not state.can_endorse
    recipient = None if action in NO_RECIPIENT else SG_BANK
    refused(TO_ORDER, steps, tx(action, CONSIGNEE, recipient), "ENDORSEMENT_EXHAUSTED")
    # ... but still holds title: it may transfer and surrender.
    run(TO_ORDER, *steps, tx("TRANSFER", CONSIGNEE, SG_BANK))
    pending = run(TO_ORDER, *steps, tx("SURRENDER_FOR_DELIVERY", CONSIGNEE, CARRIER))
    assert pending.status == Status.PENDING_SURRENDER_FOR_DELIVERY


@pytest.mark.parametrize("action", ["ENDORSE", "ENDORSE_TO_ORDER"])
def test_endorse_to_self_is_refused(action: str) -> None:
    steps = [*issued(TO_ORDER), tx("TRANSFER", SHIPPER, CQ_BANK)]
    refused(TO_ORDER, steps, tx(action, CQ_BANK, CQ_BANK), "ENDORSE_TO_SELF")


def test_blank_endorse_makes_the_ebl_bearer_like() -> None:
    steps = [*issued(TO_ORDER), tx("TRANSFER", SHIPPER, CQ_BANK), tx("BLANK_ENDORSE", CQ_BANK)]
    state = run(TO_ORDER, *steps)
    assert state.title_holder is None and state.is_blank_endorsed and state.can_endorse
    assert state.possessor == CQ_BANK
    # Any possessor may now endorse ...
    endorsed = run(TO_ORDER, *steps, tx("TRANSFER", CQ_BANK, SHIPPER), tx("ENDORSE", SHIPPER, SG_BANK))
    assert endorsed.title_holder == SG_BANK and not endorsed.can_endorse
    # ... or blank-endorse again, or surrender.
    run(TO_ORDER, *steps, tx("TRANSFER", CQ_BANK, CQ_CUSTOMS), tx("BLANK_ENDORSE", CQ_CUSTOMS))
    pending = run(TO_ORDER, *steps, tx("TRANSFER", CQ_BANK, SG_BANK), tx("SURRENDER_FOR_DELIVERY", SG_BANK, CARRIER))
    assert pending.surrender_requester == SG_BANK
    # A non-possessor still may not.
    refused(TO_ORDER, steps, tx("ENDORSE", SHIPPER, SG_BANK), "NOT_POSSESSOR")


@pytest.mark.parametrize("action", ENDORSEMENTS)
def test_blank_bl_endorsable_by_any_possessor(action: str) -> None:
    recipient = None if action in NO_RECIPIENT else SG_BANK
    for steps in (issued(BLANK), [*issued(BLANK), tx("TRANSFER", SHIPPER, CQ_CUSTOMS)]):
        holder = steps[-1].recipient
        assert holder is not None
        state = run(BLANK, *steps, tx(action, holder.to_json(), recipient))
        assert state.title_holder == recipient
        assert state.can_endorse == (action != "ENDORSE")
        assert state.possessor == holder.to_json()


def test_endorsement_to_another_platform_does_not_move_the_ebl() -> None:
    steps = [*issued(TO_ORDER), tx("TRANSFER", SHIPPER, CQ_BANK), tx("ENDORSE", CQ_BANK, CONSIGNEE)]
    state = run(TO_ORDER, *steps)
    assert state.platform == "CQSB" and state.possessor == CQ_BANK
    refused(TO_ORDER, steps, tx("SIGN", CONSIGNEE), "ON_OTHER_PLATFORM")


# -- surrender ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("action", SURRENDERS)
@pytest.mark.parametrize(
    "recipient",
    [
        CQ_BANK,
        CQ_CUSTOMS,
        party("Yuxin Rail-Sea Forwarding Co., Ltd.", "CQSB", "91500000MA5U999999", "USCI"),
        {**CARRIER, "eblPlatform": "SGSB"},
    ],
)
def test_surrender_goes_to_the_issuing_carrier(kind: str, action: str, recipient: dict[str, Any]) -> None:
    facts = KINDS[kind]
    steps = issued(facts, to=CQ_BANK if facts.is_to_order else SHIPPER)
    actor = steps[-1].recipient
    assert actor is not None
    refused(facts, steps, tx(action, actor.to_json(), recipient), "SURRENDER_RECIPIENT")


@pytest.mark.parametrize("action", SURRENDERS)
@pytest.mark.parametrize(
    ("kind", "holder", "allowed"),
    [
        ("straight", SHIPPER, True),
        ("straight", CONSIGNEE, True),
        ("straight", CQ_BANK, False),
        ("straight", SG_BANK, False),
        ("to-order", CQ_BANK, True),  # the endorsee
        ("to-order", SHIPPER, False),
        ("to-order", CONSIGNEE, False),
        ("blank", SHIPPER, True),
        ("blank", CQ_CUSTOMS, True),
        ("blank", CONSIGNEE, True),
    ],
)
def test_who_may_surrender(action: str, kind: str, holder: dict[str, Any], allowed: bool) -> None:
    facts = KINDS[kind]
    steps = issued(facts, to=holder)
    step = tx(action, holder, CARRIER)
    if not allowed:
        refused(facts, steps, step, "NOT_ENTITLED_TO_SURRENDER")
        return
    state = run(facts, *steps, step)
    expected = {
        "SURRENDER_FOR_DELIVERY": Status.PENDING_SURRENDER_FOR_DELIVERY,
        "SURRENDER_FOR_AMENDMENT": Status.PENDING_SURRENDER_FOR_AMENDMENT,
    }
    assert state.status == expected[action]
    assert state.possessor == CARRIER  # the carrier holds it while the request is pending
    assert state.platform == CARRIER["eblPlatform"]
    assert state.surrender_requester == holder
    assert state.title_holder == run(facts, *steps).title_holder


def test_to_order_surrender_by_the_new_endorsee_only() -> None:
    steps = [*issued(TO_ORDER), tx("TRANSFER", SHIPPER, CQ_BANK), tx("ENDORSE_TO_ORDER", CQ_BANK, SG_BANK)]
    refused(TO_ORDER, steps, tx("SURRENDER_FOR_DELIVERY", CQ_BANK, CARRIER), "NOT_ENTITLED_TO_SURRENDER")
    steps.append(tx("TRANSFER", CQ_BANK, SG_BANK))
    assert run(TO_ORDER, *steps, tx("SURRENDER_FOR_DELIVERY", SG_BANK, CARRIER)).possessor == CARRIER


def pending_steps(facts: DocumentFacts, action: str = "SURRENDER_FOR_DELIVERY", **extra: Any) -> list[Transaction]:
    """Issued to the title holder on the Singapore platform, who then asks to surrender."""
    holder = CONSIGNEE
    steps = issued(facts, to=SHIPPER)
    if facts is TO_ORDER:
        steps += [
            tx("TRANSFER", SHIPPER, CQ_BANK),
            tx("ENDORSE", CQ_BANK, CONSIGNEE),
            tx("TRANSFER", CQ_BANK, CONSIGNEE),
        ]
    else:
        steps.append(tx("TRANSFER", SHIPPER, CONSIGNEE))
    return [*steps, tx(action, holder, CARRIER, **extra)]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("actor", "action", "recipient", "code"),
    [
        (CONSIGNEE, "TRANSFER", SG_BANK, "SURRENDER_PENDING"),
        (CONSIGNEE, "SIGN", None, "SURRENDER_PENDING"),
        (CONSIGNEE, "SURRENDER_FOR_DELIVERY", CARRIER, "SURRENDER_PENDING"),
        (CARRIER, "TRANSFER", SHIPPER, "SURRENDER_PENDING"),
        (CARRIER, "SIGN", None, "SURRENDER_PENDING"),
        (CARRIER, "BLANK_ENDORSE", None, "SURRENDER_PENDING"),
        (CARRIER, "ENDORSE", SHIPPER, "SURRENDER_PENDING"),
        (CARRIER, "SURRENDER_FOR_AMENDMENT", CARRIER, "SURRENDER_PENDING"),
        (SHIPPER, "TRANSFER", SG_BANK, "SURRENDER_PENDING"),
    ],
)
def test_while_pending_only_the_carrier_answers(
    kind: str, actor: dict[str, Any], action: str, recipient: dict[str, Any] | None, code: str
) -> None:
    facts = KINDS[kind]
    refused(facts, pending_steps(facts), tx(action, actor, recipient), code)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("action", ["SACC", "SREJ"])
@pytest.mark.parametrize("actor", [CONSIGNEE, SHIPPER, CQ_BANK, {**CARRIER, "eblPlatform": "SGSB"}])
def test_only_the_issuing_carrier_answers_a_surrender(kind: str, action: str, actor: dict[str, Any]) -> None:
    facts = KINDS[kind]
    refused(facts, pending_steps(facts), tx(action, actor), "CARRIER_ONLY", RoleForbidden)
    refused(facts, issued(facts), tx(action, actor), "CARRIER_ONLY", RoleForbidden)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("action", ["SACC", "SREJ"])
def test_no_answer_without_a_pending_surrender(kind: str, action: str) -> None:
    facts = KINDS[kind]
    refused(facts, issued(facts), tx(action, CARRIER), "NO_PENDING_SURRENDER")
    refused(facts, issued(facts, to=CARRIER), tx(action, CARRIER), "NO_PENDING_SURRENDER")
    rejected = [*pending_steps(facts), tx("SREJ", CARRIER)]
    refused(facts, rejected, tx(action, CARRIER), "NO_PENDING_SURRENDER")


@pytest.mark.parametrize("kind", KINDS)
def test_sacc_freezes_the_chain(kind: str) -> None:
    facts = KINDS[kind]
    steps = [*pending_steps(facts), tx("SACC", CARRIER)]
    state = run(facts, *steps)
    assert state.status == Status.SURRENDERED_FOR_DELIVERY and state.is_final
    assert state.possessor == CARRIER
    for action in ActionCode:
        for actor in PARTIES:
            recipient = None if action in NO_RECIPIENT | {ActionCode.SREJ} else CONSIGNEE
            code = "ALREADY_ISSUED" if action == ActionCode.ISSUE else "CHAIN_FROZEN"
            refused(facts, steps, tx(action, actor, recipient), code)


@pytest.mark.parametrize("kind", KINDS)
def test_srej_gives_the_ebl_back_to_the_requester(kind: str) -> None:
    facts = KINDS[kind]
    before = run(facts, *pending_steps(facts)[:-1])
    state = run(facts, *pending_steps(facts), tx("SREJ", CARRIER))
    assert state.status == Status.ISSUED
    assert state.possessor == CONSIGNEE
    assert state.platform == "SGSB"
    assert state.surrender_requester is None
    assert (state.title_holder, state.can_endorse) == (before.title_holder, before.can_endorse)
    # The requester acts again, and may ask again.
    again = run(facts, *pending_steps(facts), tx("SREJ", CARRIER), tx("SURRENDER_FOR_DELIVERY", CONSIGNEE, CARRIER))
    assert again.status == Status.PENDING_SURRENDER_FOR_DELIVERY
    run(facts, *pending_steps(facts), tx("SREJ", CARRIER), tx("TRANSFER", CONSIGNEE, SG_BANK))
    # The carrier no longer holds it.
    refused(facts, [*pending_steps(facts), tx("SREJ", CARRIER)], tx("SIGN", CARRIER), "ON_OTHER_PLATFORM")


def test_srej_recipient_when_named_is_the_requester() -> None:
    state = run(TO_ORDER, *pending_steps(TO_ORDER), tx("SREJ", CARRIER, CONSIGNEE))
    assert state.possessor == CONSIGNEE
    refused(TO_ORDER, pending_steps(TO_ORDER), tx("SREJ", CARRIER, SG_BANK), "SREJ_RECIPIENT")


def test_surrender_for_amendment_with_reason_code() -> None:
    steps = pending_steps(TO_ORDER, "SURRENDER_FOR_AMENDMENT", reasonCode="SWTP", comments="Switch to paper")
    assert steps[-1].reasonCode == "SWTP"
    state = run(TO_ORDER, *steps)
    assert state.status == Status.PENDING_SURRENDER_FOR_AMENDMENT
    done = run(TO_ORDER, *steps, tx("SACC", CARRIER))
    assert done.status == Status.SURRENDERED_FOR_AMENDMENT and done.is_final
    refused(TO_ORDER, [*steps, tx("SACC", CARRIER)], tx("TRANSFER", CARRIER, SHIPPER), "CHAIN_FROZEN")
    rejected = run(TO_ORDER, *steps, tx("SREJ", CARRIER))
    assert rejected.status == Status.ISSUED and rejected.possessor == CONSIGNEE


@pytest.mark.parametrize("reason", ["COD", "SWI"])
def test_surrender_for_amendment_reason_codes(reason: str) -> None:
    run(STRAIGHT, *pending_steps(STRAIGHT, "SURRENDER_FOR_AMENDMENT", reasonCode=reason))
    run(STRAIGHT, *pending_steps(STRAIGHT, "SURRENDER_FOR_AMENDMENT"))  # the reason is optional


@pytest.mark.parametrize("reason", ["SW2P", "swtp", "", "XXXXX"])
def test_unknown_reason_code_is_refused(reason: str) -> None:
    with pytest.raises(ValidationError):
        tx("SURRENDER_FOR_AMENDMENT", CONSIGNEE, CARRIER, reasonCode=reason)


# -- platforms ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("actor", "action", "recipient"),
    [
        (SHIPPER, "TRANSFER", CQ_BANK),  # the former possessor
        (SHIPPER, "SIGN", None),
        (CARRIER, "SIGN", None),
        (CQ_BANK, "BLANK_ENDORSE", None),
        (SHIPPER, "SURRENDER_FOR_DELIVERY", CARRIER),
    ],
)
def test_an_ebl_on_another_platform_accepts_nothing_here(
    kind: str, actor: dict[str, Any], action: str, recipient: dict[str, Any] | None
) -> None:
    facts = KINDS[kind]
    steps = [*issued(facts), tx("TRANSFER", SHIPPER, CONSIGNEE)]
    assert run(facts, *steps).platform == "SGSB"
    refused(facts, steps, tx(action, actor, recipient), "ON_OTHER_PLATFORM")
    # A party on the eBL's platform who is not the possessor is simply not the possessor.
    refused(facts, steps, tx("SIGN", SG_BANK), "NOT_POSSESSOR")


def test_possession_returns_to_this_platform_by_transfer() -> None:
    steps = [*issued(BLANK), tx("TRANSFER", SHIPPER, CONSIGNEE), tx("TRANSFER", CONSIGNEE, CQ_BANK)]
    state = run(BLANK, *steps)
    assert state.platform == "CQSB" and state.possessor == CQ_BANK


# -- the corridor story -------------------------------------------------------------------------------------------


def corridor() -> list[Transaction]:
    return [
        tx("ISSUE", CARRIER, SHIPPER),
        tx("TRANSFER", SHIPPER, CQ_BANK),
        tx("ENDORSE_TO_ORDER", CQ_BANK, SG_BANK),
        tx("TRANSFER", CQ_BANK, SG_BANK),
        tx("ENDORSE", SG_BANK, CONSIGNEE),
        tx("TRANSFER", SG_BANK, CONSIGNEE),
        tx("SURRENDER_FOR_DELIVERY", CONSIGNEE, CARRIER),
        tx("SACC", CARRIER),
    ]


def test_corridor_story() -> None:
    states: list[EblState] = []
    state: EblState | None = None
    for step in corridor():
        state = chain.apply(state, TO_ORDER, step)
        states.append(state)
    expected = [
        (SHIPPER, CQ_BANK, "CQSB", Status.ISSUED),
        (CQ_BANK, CQ_BANK, "CQSB", Status.ISSUED),
        (CQ_BANK, SG_BANK, "CQSB", Status.ISSUED),
        (SG_BANK, SG_BANK, "SGSB", Status.ISSUED),
        (SG_BANK, CONSIGNEE, "SGSB", Status.ISSUED),
        (CONSIGNEE, CONSIGNEE, "SGSB", Status.ISSUED),
        (CARRIER, CONSIGNEE, "CQSB", Status.PENDING_SURRENDER_FOR_DELIVERY),
        (CARRIER, CONSIGNEE, "CQSB", Status.SURRENDERED_FOR_DELIVERY),
    ]
    for got, (possessor, title_holder, platform, status) in zip(states, expected, strict=True):
        assert same(got.possessor, possessor)
        assert same(got.title_holder or {}, title_holder)
        assert (got.platform, got.status) == (platform, status)
    final = states[-1]
    assert final.status == Status.SURRENDERED_FOR_DELIVERY
    assert final.length == 8
    assert chain.fold(TO_ORDER, corridor()) == final


def test_corridor_story_with_a_rejected_surrender() -> None:
    steps = [
        *corridor()[:-1],
        tx("SREJ", CARRIER),
        tx("SIGN", CONSIGNEE),
        tx("SURRENDER_FOR_DELIVERY", CONSIGNEE, CARRIER),
    ]
    state = run(TO_ORDER, *steps)
    assert state.status == Status.PENDING_SURRENDER_FOR_DELIVERY and state.possessor == CARRIER
    assert run(TO_ORDER, *steps, tx("SACC", CARRIER)).status == Status.SURRENDERED_FOR_DELIVERY


# -- property: random action sequences -----------------------------------------------------------------------------

party_index = st.integers(min_value=0, max_value=len(PARTIES) - 1)
POSSESSOR, TITLE_HOLDER = len(PARTIES), len(PARTIES) + 1
# (action, actor: a party or the current possessor / title holder, recipient: a party or, from 6 up, the carrier,
#  noise: 0 flips whether a recipient is given, 1 adds a reasonCode)
random_step = st.tuples(
    st.sampled_from(list(ActionCode)),
    st.integers(min_value=0, max_value=TITLE_HOLDER),
    st.integers(min_value=0, max_value=len(PARTIES) + 2),
    st.integers(min_value=0, max_value=9),
)


def _random_tx(state: EblState | None, action: ActionCode, actor: int, recipient: int, noise: int) -> Transaction:
    if actor == POSSESSOR:
        actor_json = dict(state.possessor) if state is not None else CARRIER
    elif actor == TITLE_HOLDER:
        holder = (state.title_holder or state.possessor) if state is not None else CARRIER
        actor_json = next(p for p in PARTIES if same(p, holder))  # a document party names no platform
    else:
        actor_json = PARTIES[actor]
    body: dict[str, Any] = {"actionCode": action, "actor": actor_json, "actionDateTime": WHEN}
    wants_recipient = action not in NO_RECIPIENT and action != ActionCode.SREJ
    if wants_recipient != (noise == 0):
        body["recipient"] = PARTIES[recipient] if recipient < len(PARTIES) else CARRIER
    if noise == 1 or (action == ActionCode.SURRENDER_FOR_AMENDMENT and noise < 5):
        body["reasonCode"] = "SWTP"
    return Transaction.model_validate(body)


def _check_invariants(state: EblState, facts: DocumentFacts) -> None:
    assert len([p for p in PARTIES if same(p, state.possessor)]) == 1  # exactly one possessor
    assert state.platform == state.possessor["eblPlatform"]
    assert same(state.issuing_carrier, CARRIER)
    pending = state.status in (Status.PENDING_SURRENDER_FOR_DELIVERY, Status.PENDING_SURRENDER_FOR_AMENDMENT)
    if pending or state.is_final:
        assert same(state.possessor, CARRIER)
    assert (state.surrender_requester is not None) == (pending or state.is_final)
    assert state.status != Status.VOIDED
    if not facts.is_to_order:
        assert not state.can_endorse
        assert same(state.title_holder or {}, CONSIGNEE)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(sorted(KINDS)),
    first_recipient=party_index,
    steps=st.lists(random_step, max_size=40),
)
def test_random_action_sequences_keep_the_invariants(
    kind: str, first_recipient: int, steps: list[tuple[ActionCode, int, int, int]]
) -> None:
    facts = KINDS[kind]
    accepted: list[Transaction] = []
    state: EblState | None = None
    # Start with a valid ISSUE so that sequences get somewhere; the random steps may hold other ISSUEs.
    candidates = [(ActionCode.ISSUE, 0, first_recipient, 9), *steps]
    for action, actor, recipient, noise in candidates:
        candidate = _random_tx(state, action, actor, recipient, noise)
        try:
            new = chain.apply(state, facts, candidate)
        except (ActionRefused, RoleForbidden, BadRequest):
            continue
        assert state is None or not state.is_final, "an action was accepted after SACC"
        assert new.length == len(accepted) + 1
        if candidate.actionCode == ActionCode.TRANSFER:
            assert candidate.recipient is not None
            assert new.possessor == candidate.recipient.to_json()
        if candidate.actionCode in (ActionCode.ENDORSE, ActionCode.ENDORSE_TO_ORDER, ActionCode.BLANK_ENDORSE):
            assert state is not None and new.possessor == state.possessor  # endorsing does not move possession
        if candidate.actionCode == ActionCode.SIGN:
            assert state is not None and new == EblState(**{**state.__dict__, "length": new.length})
        if candidate.actionCode == ActionCode.SREJ:
            assert state is not None and new.possessor == state.surrender_requester
        accepted.append(candidate)
        state = new
        _check_invariants(state, facts)
    assert state is not None
    assert chain.fold(facts, accepted) == state


# -- Transaction and EntryPayload validation -------------------------------------------------------------------


def entry_json(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "transportDocumentReference": "YXRS2611CKGSIN001",
        "transportDocumentChecksum": "17113c94dd94be0d8072a4f74e72cf85e40d283943f9bcd6d3b7c6149621c770",
        "sequence": 1,
        "previousEntryChecksum": "0" * 64,
        "transaction": {"actionCode": "TRANSFER", "actor": SHIPPER, "recipient": CQ_BANK, "actionDateTime": WHEN},
        "eblPlatform": "CQSB",
    }
    return {**payload, **changes}


def test_entry_payload_roundtrip() -> None:
    data = entry_json()
    payload = EntryPayload.model_validate(data)
    assert payload.to_json() == data
    first = entry_json(sequence=0, issuanceManifestSignedContent="a.b.c")
    del first["previousEntryChecksum"]
    assert EntryPayload.model_validate(first).to_json() == first


@pytest.mark.parametrize(
    "moment",
    [
        "2026-11-20T08:30:00.000Z",
        "2024-02-29T23:59:59.999Z",
        "1970-01-01T00:00:00.000Z",
    ],
)
def test_action_date_time_accepted(moment: str) -> None:
    assert tx("SIGN", SHIPPER, actionDateTime=moment).actionDateTime == moment


@pytest.mark.parametrize(
    "moment",
    [
        "2026-11-20T08:30:00Z",  # no milliseconds
        "2026-11-20T08:30:00.0Z",
        "2026-11-20T08:30:00.000000Z",  # microseconds
        "2026-11-20T08:30:00.000+00:00",  # an offset, not Z
        "2026-11-20T16:30:00.000+08:00",
        "2026-11-20T08:30:00.000",  # no zone
        "2026-11-20T08:30:00.000z",
        "2026-11-20 08:30:00.000Z",
        "2026-11-20t08:30:00.000Z",
        "2026-11-20T08:30:00.000Z\n",
        " 2026-11-20T08:30:00.000Z",
        "2026-13-20T08:30:00.000Z",  # month 13
        "2026-02-30T08:30:00.000Z",  # 30 February
        "2025-02-29T08:30:00.000Z",  # not a leap year
        "2026-11-20T24:00:00.000Z",
        "2026-11-20T08:60:00.000Z",
        "٢٠٢٦-١١-٢٠T08:30:00.000Z",  # Arabic-Indic digits
        "２０２６-11-20T08:30:00.000Z",  # full-width digits
        "1763627400000",
    ],
)
def test_action_date_time_refused(moment: str) -> None:
    with pytest.raises(ValidationError):
        tx("SIGN", SHIPPER, actionDateTime=moment)


def test_action_datetime_formats_utc_milliseconds() -> None:
    moment = datetime(2026, 11, 20, 16, 30, 0, 123_987, tzinfo=timezone(timedelta(hours=8)))
    text = chain.action_datetime(moment)
    assert text == "2026-11-20T08:30:00.123Z"
    assert tx("SIGN", SHIPPER, actionDateTime=text).actionDateTime == text
    assert chain.action_datetime(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05.000Z"


@pytest.mark.parametrize("code", ["ISSU", "TRNS", "SURRENDERED", "issue", "BLNK", "VOID", ""])
def test_unknown_action_code_is_refused(code: str) -> None:
    with pytest.raises(ValidationError):
        tx(code, SHIPPER, CQ_BANK)
    with pytest.raises(ValidationError):
        EntryPayload.model_validate(entry_json(transaction={**entry_json()["transaction"], "actionCode": code}))


@pytest.mark.parametrize("where", ["payload", "transaction", "actor", "identifyingCode"])
def test_extra_fields_are_refused(where: str) -> None:
    data = copy.deepcopy(entry_json())
    target = {
        "payload": data,
        "transaction": data["transaction"],
        "actor": data["transaction"]["actor"],
        "identifyingCode": data["transaction"]["actor"]["identifyingCodes"][0],
    }[where]
    target["extra"] = "x"
    with pytest.raises(ValidationError):
        EntryPayload.model_validate(data)


@pytest.mark.parametrize(
    "changes",
    [
        {"sequence": -1},
        {"sequence": "1"},
        {"sequence": True},
        {"sequence": 1.5},
        {"transportDocumentChecksum": "17113C94DD94BE0D8072A4F74E72CF85E40D283943F9BCD6D3B7C6149621C770"},
        {"transportDocumentChecksum": "abc"},
        {"previousEntryChecksum": "g" * 64},
        {"transportDocumentReference": "X" * 21},
        {"eblPlatform": "CQSBX"},
        {"transaction": {"actionCode": "SIGN", "actor": {**SHIPPER, "identifyingCodes": []}, "actionDateTime": WHEN}},
        {"transaction": {"actionCode": "SIGN", "actor": SHIPPER, "actionDateTime": WHEN, "comments": " padded"}},
        {"transaction": {"actionCode": "SIGN", "actor": SHIPPER}},
    ],
)
def test_entry_payload_field_rules(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        EntryPayload.model_validate(entry_json(**changes))


def test_signed_entry_verifies_and_links_by_checksum() -> None:
    key = keys.generate()
    payload = EntryPayload.model_validate(entry_json())
    compact = chain.sign_entry(payload, key)
    assert jws.verify(compact, key.public) == payload.to_json()
    assert EntryPayload.model_validate(jws.verify(compact, key.public)) == payload
    assert chain.entry_checksum(compact) == canonical.sha256_hex(compact.encode("utf-8"))
    assert len(chain.entry_checksum(compact)) == 64


def test_issuance_manifest_binds_document_and_issue_to() -> None:
    document = to_order_document()
    issue_to = {
        "partyName": SHIPPER["partyName"],
        "sendToPlatform": "CQSB",
        "identifyingCodes": SHIPPER["identifyingCodes"],
    }
    manifest = chain.issuance_manifest(document, issue_to)
    assert manifest.documentChecksum == "17113c94dd94be0d8072a4f74e72cf85e40d283943f9bcd6d3b7c6149621c770"
    assert manifest.issueToChecksum == canonical.checksum(issue_to)
