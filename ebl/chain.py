"""Transactions, chain entries and the eBL state machine — pure functions, no I/O.

An eBL's history is a chain of entries. Each entry is a compact JWS signed by the acting party over::

    {transportDocumentReference, transportDocumentChecksum, sequence, previousEntryChecksum?,
     transaction, eblPlatform, issuanceManifestSignedContent?}

``previousEntryChecksum`` is ``sha256_hex(utf8(previous compact JWS))`` and is absent on the first entry, which
also carries the carrier-signed issuance manifest (as DCSA PINT's first transfer-chain entry does). The state of an
eBL — possessor, title holder, status, where it lives — is :func:`fold` of its transactions, so any verifier
recomputes it from the chain alone. :func:`apply` enforces the rules that docs/api.md tabulates (DCSA eBL 3.0 and
PINT 3.0 semantics) and raises :class:`~ebl.errors.ActionRefused` (409) or :class:`~ebl.errors.RoleForbidden`
(403) with the rule's name as the error code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from ebl import jws
from ebl.canonical import checksum, sha256_hex
from ebl.errors import ActionRefused, BadRequest, RoleForbidden
from ebl.keys import SigningKey
from ebl.parties import PartyRef, same_party

_DcsaString = Annotated[str, StringConstraints(pattern=r"^\S(?:.*\S)?$")]
_Checksum = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
_ASCII_UTC_MILLIS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")


def _utc_millis(value: str) -> str:
    """The schema pattern's ``\\d`` also matches non-ASCII digits, and no pattern knows month 13: check both."""
    try:
        if not _ASCII_UTC_MILLIS.fullmatch(value):
            raise ValueError
        datetime.fromisoformat(value[:-1])
    except ValueError:
        raise ValueError("actionDateTime must be a real UTC time with milliseconds: 2026-11-20T08:30:00.000Z") from None
    return value


class ActionCode(StrEnum):
    ISSUE = "ISSUE"
    TRANSFER = "TRANSFER"
    ENDORSE = "ENDORSE"
    ENDORSE_TO_ORDER = "ENDORSE_TO_ORDER"
    BLANK_ENDORSE = "BLANK_ENDORSE"
    SIGN = "SIGN"
    SURRENDER_FOR_DELIVERY = "SURRENDER_FOR_DELIVERY"
    SURRENDER_FOR_AMENDMENT = "SURRENDER_FOR_AMENDMENT"
    SACC = "SACC"
    SREJ = "SREJ"


class Status(StrEnum):
    ISSUED = "ISSUED"
    PENDING_SURRENDER_FOR_DELIVERY = "PENDING_SURRENDER_FOR_DELIVERY"
    PENDING_SURRENDER_FOR_AMENDMENT = "PENDING_SURRENDER_FOR_AMENDMENT"
    SURRENDERED_FOR_DELIVERY = "SURRENDERED_FOR_DELIVERY"
    SURRENDERED_FOR_AMENDMENT = "SURRENDERED_FOR_AMENDMENT"
    VOIDED = "VOIDED"


ReasonCode = Literal["SWTP", "COD", "SWI"]

_ENDORSEMENTS = {ActionCode.ENDORSE, ActionCode.ENDORSE_TO_ORDER, ActionCode.BLANK_ENDORSE}
_SURRENDERS = {
    ActionCode.SURRENDER_FOR_DELIVERY: Status.PENDING_SURRENDER_FOR_DELIVERY,
    ActionCode.SURRENDER_FOR_AMENDMENT: Status.PENDING_SURRENDER_FOR_AMENDMENT,
}
_ACCEPTED = {
    Status.PENDING_SURRENDER_FOR_DELIVERY: Status.SURRENDERED_FOR_DELIVERY,
    Status.PENDING_SURRENDER_FOR_AMENDMENT: Status.SURRENDERED_FOR_AMENDMENT,
}
# Actions whose recipient is implied (SIGN, BLANK_ENDORSE, SACC) or fixed by the state (SREJ).
_NO_RECIPIENT = {ActionCode.SIGN, ActionCode.BLANK_ENDORSE, ActionCode.SACC}


class Transaction(BaseModel):
    """One DCSA PINT ``Transaction``."""

    model_config = ConfigDict(extra="forbid")

    actionCode: ActionCode
    actor: PartyRef
    recipient: PartyRef | None = None
    actionDateTime: Annotated[
        str, Field(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"), AfterValidator(_utc_millis)
    ]
    reasonCode: ReasonCode | None = None
    comments: Annotated[_DcsaString, Field(max_length=255)] | None = None
    auditReference: Annotated[_DcsaString, Field(max_length=100)] | None = None


class EntryPayload(BaseModel):
    """The signed payload of one chain entry."""

    model_config = ConfigDict(extra="forbid")

    transportDocumentReference: Annotated[str, Field(max_length=20)]
    transportDocumentChecksum: _Checksum
    sequence: Annotated[int, Field(ge=0, strict=True)]
    previousEntryChecksum: _Checksum | None = None
    transaction: Transaction
    eblPlatform: Annotated[str, Field(max_length=4)]
    issuanceManifestSignedContent: str | None = None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def action_datetime(moment: datetime) -> str:
    """UTC with millisecond precision, as PINT requires."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class DocumentFacts:
    """What the rules need from the transport document (party objects as the document has them)."""

    transport_document_reference: str
    is_to_order: bool
    issuing_party: Mapping[str, Any]
    shipper: Mapping[str, Any]
    consignee: Mapping[str, Any] | None
    endorsee: Mapping[str, Any] | None

    @classmethod
    def of(cls, document: Mapping[str, Any]) -> DocumentFacts:
        parties = document["documentParties"]
        return cls(
            transport_document_reference=document["transportDocumentReference"],
            is_to_order=document["isToOrder"] is True,
            issuing_party=parties["issuingParty"],
            shipper=parties["shipper"],
            consignee=parties.get("consignee"),
            endorsee=parties.get("endorsee"),
        )


@dataclass(frozen=True)
class EblState:
    """The state after a prefix of the chain; :func:`fold` computes it."""

    status: Status
    possessor: Mapping[str, Any]
    """The party in control (DCSA: the carrier while a surrender is pending)."""
    title_holder: Mapping[str, Any] | None
    """The consignee of a straight BL, the endorsee of a to-order BL; ``None`` while blank-endorsed."""
    can_endorse: bool
    """Whether the title holder may endorse further (false after ``ENDORSE``)."""
    platform: str
    """The platform the eBL lives on: only there can it be acted upon."""
    issuing_carrier: Mapping[str, Any]
    surrender_requester: Mapping[str, Any] | None = None
    length: int = 0

    @property
    def is_blank_endorsed(self) -> bool:
        return self.title_holder is None

    @property
    def is_final(self) -> bool:
        return self.status in (Status.SURRENDERED_FOR_DELIVERY, Status.SURRENDERED_FOR_AMENDMENT)


def _refuse(rule: str, message: str) -> ActionRefused:
    return ActionRefused(message, code=rule)


def _check_recipient(tx: Transaction) -> None:
    if tx.actionCode in _NO_RECIPIENT and tx.recipient is not None:
        raise BadRequest(f"{tx.actionCode} takes no recipient", code="RECIPIENT_NOT_ALLOWED")
    needs_recipient = tx.actionCode not in _NO_RECIPIENT and tx.actionCode != ActionCode.SREJ
    if needs_recipient and tx.recipient is None:
        raise BadRequest(f"{tx.actionCode} needs a recipient", code="RECIPIENT_REQUIRED")
    if tx.reasonCode is not None and tx.actionCode != ActionCode.SURRENDER_FOR_AMENDMENT:
        raise BadRequest("reasonCode applies only to SURRENDER_FOR_AMENDMENT", code="REASON_CODE_NOT_ALLOWED")


def _issue(facts: DocumentFacts, actor: dict[str, Any], recipient: dict[str, Any]) -> EblState:
    if not same_party(actor, facts.issuing_party):
        raise RoleForbidden("only the document's issuing party may issue it", code="ISSUER_IS_NOT_THE_ISSUING_PARTY")
    title_holder = facts.endorsee if facts.is_to_order else facts.consignee
    return EblState(
        status=Status.ISSUED,
        possessor=recipient,
        title_holder=title_holder,
        can_endorse=facts.is_to_order,
        platform=recipient["eblPlatform"],
        issuing_carrier=actor,
        length=1,
    )


def apply(state: EblState | None, facts: DocumentFacts, tx: Transaction) -> EblState:
    """The state after ``tx``; raises when a rule of the state machine refuses it."""
    _check_recipient(tx)
    actor = tx.actor.to_json()
    recipient = tx.recipient.to_json() if tx.recipient is not None else None

    if state is None:
        if tx.actionCode != ActionCode.ISSUE:
            raise _refuse("NOT_ISSUED", "the first transaction of an eBL must be ISSUE")
        assert recipient is not None
        return _issue(facts, actor, recipient)
    if tx.actionCode == ActionCode.ISSUE:
        raise _refuse("ALREADY_ISSUED", "an eBL is issued exactly once")
    if state.is_final:
        raise _refuse("CHAIN_FROZEN", f"the eBL is {state.status}: no action is possible after SACC")
    pending = state.status in _ACCEPTED
    if tx.actionCode in (ActionCode.SACC, ActionCode.SREJ):
        if not same_party(actor, state.issuing_carrier):
            raise RoleForbidden("only the issuing carrier answers a surrender request", code="CARRIER_ONLY")
        if not pending:
            raise _refuse("NO_PENDING_SURRENDER", f"{tx.actionCode} answers a pending surrender request")
    elif pending:
        raise _refuse("SURRENDER_PENDING", "a surrender request is pending: the carrier must answer it first")
    if actor["eblPlatform"] != state.platform:
        raise _refuse("ON_OTHER_PLATFORM", f"the eBL lives on platform {state.platform}, not here")
    if not same_party(actor, state.possessor):
        raise _refuse("NOT_POSSESSOR", "only the possessor of the eBL may act on it")

    # What the action changes; one replace() per transaction, as a chain folds a hundred of them to verify.
    changes: dict[str, Any]
    if tx.actionCode == ActionCode.SACC:
        changes = {"status": _ACCEPTED[state.status]}
    elif tx.actionCode == ActionCode.SREJ:
        requester = state.surrender_requester
        assert requester is not None
        if recipient is not None and not same_party(recipient, requester):
            raise _refuse("SREJ_RECIPIENT", "SREJ gives the eBL back to the party that asked to surrender it")
        changes = {
            "status": Status.ISSUED,
            "possessor": requester,
            "platform": requester["eblPlatform"],
            "surrender_requester": None,
        }
    elif tx.actionCode == ActionCode.SIGN:
        changes = {}
    elif tx.actionCode == ActionCode.TRANSFER:
        assert recipient is not None
        if same_party(recipient, actor):
            raise _refuse("TRANSFER_TO_SELF", "the recipient already possesses the eBL")
        changes = {"possessor": recipient, "platform": recipient["eblPlatform"]}
    elif tx.actionCode in _ENDORSEMENTS:
        changes = _endorse(state, facts, tx.actionCode, actor, recipient)
    else:
        assert recipient is not None
        changes = _surrender(state, facts, tx.actionCode, actor, recipient)
    return replace(state, length=state.length + 1, **changes)


def _endorse(
    state: EblState,
    facts: DocumentFacts,
    action: ActionCode,
    actor: Mapping[str, Any],
    recipient: Mapping[str, Any] | None,
) -> dict[str, Any]:
    if not facts.is_to_order:
        raise _refuse("STRAIGHT_BL_NOT_ENDORSABLE", "a straight bill of lading (isToOrder=false) cannot be endorsed")
    if not state.is_blank_endorsed and not same_party(actor, state.title_holder):
        raise _refuse("NOT_ENDORSEE", "only the endorsee (or the possessor of a blank-endorsed eBL) may endorse")
    if not state.can_endorse:
        raise _refuse("ENDORSEMENT_EXHAUSTED", "the eBL was endorsed with ENDORSE: its endorsee may not endorse it on")
    if action == ActionCode.BLANK_ENDORSE:
        return {"title_holder": None, "can_endorse": True}
    assert recipient is not None
    if same_party(recipient, actor):
        raise _refuse("ENDORSE_TO_SELF", "an endorsement names another party")
    return {"title_holder": recipient, "can_endorse": action == ActionCode.ENDORSE_TO_ORDER}


def _surrender(
    state: EblState,
    facts: DocumentFacts,
    action: ActionCode,
    actor: Mapping[str, Any],
    recipient: Mapping[str, Any],
) -> dict[str, Any]:
    if not same_party(recipient, state.issuing_carrier):
        raise _refuse("SURRENDER_RECIPIENT", "a surrender is addressed to the issuing carrier")
    if facts.is_to_order:
        entitled = state.is_blank_endorsed or same_party(actor, state.title_holder)
        who = "the endorsee (or, blank-endorsed, the possessor)"
    else:
        entitled = same_party(actor, facts.shipper) or same_party(actor, facts.consignee)
        who = "the shipper or the consignee"
    if not entitled:
        raise _refuse("NOT_ENTITLED_TO_SURRENDER", f"only {who} may surrender this eBL")
    # While a surrender is pending the carrier holds the eBL, on the carrier's platform (DCSA PINT: a surrender
    # request moves possession), so the carrier can answer it there.
    return {
        "status": _SURRENDERS[action],
        "possessor": recipient,
        "platform": recipient["eblPlatform"],
        "surrender_requester": actor,
    }


def fold(facts: DocumentFacts, transactions: Iterable[Transaction]) -> EblState:
    """The state after every transaction, in order (raises at the first refused one)."""
    state: EblState | None = None
    for tx in transactions:
        state = apply(state, facts, tx)
    if state is None:
        raise _refuse("NOT_ISSUED", "an eBL chain has at least its ISSUE entry")
    return state


def entry_checksum(compact: str) -> str:
    """``sha256_hex`` of the UTF-8 bytes of a whole compact JWS: the link to the next entry."""
    return sha256_hex(compact.encode("utf-8"))


def sign_entry(payload: EntryPayload, key: SigningKey) -> str:
    return jws.sign(payload.to_json(), key)


class IssuanceManifest(BaseModel):
    """DCSA ``IssuanceManifest``, signed by the carrier: it binds the document to its first possessor."""

    model_config = ConfigDict(extra="forbid")

    documentChecksum: _Checksum
    issueToChecksum: _Checksum
    eBLVisualisationByCarrierChecksum: _Checksum | None = None


def issuance_manifest(document: Mapping[str, Any], issue_to: Mapping[str, Any]) -> IssuanceManifest:
    return IssuanceManifest(documentChecksum=checksum(document), issueToChecksum=checksum(issue_to))
