"""DCSA PINT 3.0: envelopes between platforms — built, opened and checked here (pure), sent by :class:`Courier`.

An eBL crosses to another platform in an ``EblEnvelope``::

    {"transportDocument": {...},                        # byte-for-byte the issued document (RFC 8785 checksum)
     "envelopeManifestSignedContent": JWS,              # the sending node: document and last-entry checksums
     "envelopeTransferChain": [JWS, ...],               # one entry per cross-platform hop, signed by its sender
     "eblBundle": {...}}                                # our extension: the per-party chain (ebl.bundle)

The transfer chain carries each hop's DCSA transactions signed by a *platform*. ``eblBundle`` carries the same
transactions as the per-party chain entries of :mod:`ebl.chain`, each signed by the party that acted, with the key
credentials and the log proofs a verifier needs; a receiver that does not know the extension ignores it, as DCSA
receivers ignore unknown properties.

:func:`open_envelope` runs the receiver's checks of dcsa-notes §6.4 that need no database, in its order: signatures
(``BSIG``), then structure (``BENV``). The checks that compare with what a node holds — duplicates, double spending,
documents — are the node's (``ebl.service``). A refusal is a :class:`Refusal`: the node answers it with a response
it signs, not with an ``ErrorResponse``.

Conformance-tool variants are read on receipt and never sent: the legacy ``action`` code of a transaction (with
``actionCode`` always ``ISSUE``), the issuance manifest at the envelope root, and ``actionDateTime`` with more than
millisecond precision.
"""

from __future__ import annotations

import base64
import binascii
import logging
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from ebl import canonical, chain, credentials, jws
from ebl.chain import Transaction
from ebl.errors import EblError
from ebl.keys import PublicKey, SigningKey, TrustStore
from ebl.parties import Role

logger = logging.getLogger("ebl.pint")

BUNDLE_EXTENSION = "eblBundle"
ResponseCode = Literal["RECE", "DUPE", "BSIG", "BENV", "INCD", "MDOC", "DISE"]
ACCEPTED: frozenset[str] = frozenset({"RECE", "DUPE"})
REFUSED: frozenset[str] = frozenset({"BSIG", "BENV", "DISE"})
"""Answers that end a transfer without it: retrying the same envelope cannot change them."""

_Checksum = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
_Model = TypeVar("_Model", bound=BaseModel)
_Compact = Annotated[str, StringConstraints(pattern=jws.COMPACT_PATTERN.pattern)]
# The legacy codes the conformance tool still sends in ``action`` (dcsa-notes §7).
_LEGACY_ACTIONS = {
    "ISSU": "ISSUE",
    "TRNS": "TRANSFER",
    "ENDO": "ENDORSE",
    "SIGN": "SIGN",
    "SREQ": "SURRENDER_FOR_DELIVERY",
    "SURR": "SURRENDER_FOR_DELIVERY",
    "AREQ": "SURRENDER_FOR_AMENDMENT",
    "SACC": "SACC",
    "SREJ": "SREJ",
}


class Refusal(Exception):
    """The receiver refuses the envelope (or a document) with a PINT response code."""

    def __init__(self, code: ResponseCode, reason: str, *, missing: Sequence[str] = ()) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason[:255]
        self.missing = tuple(missing)


class DocumentMetadata(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: Annotated[str, Field(min_length=1, max_length=100)]
    size: Annotated[int, Field(ge=1, strict=True)]
    mediaType: Annotated[str, Field(min_length=1, max_length=100)]
    documentChecksum: _Checksum


class EnvelopeManifest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    transportDocumentChecksum: _Checksum
    lastEnvelopeTransferChainEntrySignedContentChecksum: _Checksum
    eBLVisualisationByCarrier: DocumentMetadata | None = None
    supportingDocuments: list[DocumentMetadata] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_size_per_document(self) -> EnvelopeManifest:
        # A checksum names one content: listed twice, it must have one size, or the receiver takes either.
        sizes: dict[str, int] = {}
        for document in self._listed():
            if sizes.setdefault(document.documentChecksum, document.size) != document.size:
                raise ValueError(f"document {document.documentChecksum} is declared with two sizes")
        return self

    def _listed(self) -> list[DocumentMetadata]:
        return [
            *self.supportingDocuments,
            *([self.eBLVisualisationByCarrier] if self.eBLVisualisationByCarrier else []),
        ]

    def documents(self) -> dict[str, DocumentMetadata]:
        """Every additional document of the transfer, by checksum."""
        return {d.documentChecksum: d for d in self._listed()}


class TransferChainEntry(BaseModel):
    """``EnvelopeTransferChainEntry``; ``transactions`` stay raw until :func:`_transaction` reads them."""

    model_config = ConfigDict(extra="ignore")

    eblPlatform: Annotated[str, Field(min_length=1, max_length=4)]
    transportDocumentChecksum: _Checksum
    previousEnvelopeTransferChainEntrySignedContentChecksum: _Checksum | None = None
    issuanceManifestSignedContent: _Compact | None = None
    controlTrackingRegistry: Annotated[str, Field(max_length=1024)] | None = None
    transactions: Annotated[list[dict[str, Any]], Field(min_length=1)]


class FinishedResponse(BaseModel):
    """``EnvelopeTransferFinishedResponse``, signed by the receiving platform."""

    model_config = ConfigDict(extra="forbid")

    lastEnvelopeTransferChainEntrySignedContentChecksum: _Checksum
    responseCode: ResponseCode
    duplicateOfAcceptedEnvelopeTransferChainEntrySignedContent: _Compact | None = None
    reason: Annotated[str, Field(max_length=255)] | None = None
    missingAdditionalDocumentChecksums: list[_Checksum] | None = None
    receivedAdditionalDocumentChecksums: list[_Checksum] | None = None


@dataclass(frozen=True)
class OpenedEnvelope:
    """An envelope whose signatures and structure hold (:func:`open_envelope`)."""

    document: dict[str, Any]
    document_json: str
    """The document in its RFC 8785 form, the text its checksum is of."""
    document_checksum: str
    manifest: EnvelopeManifest
    chain: tuple[str, ...]
    """The transfer chain entries as sent, oldest first."""
    entries: tuple[TransferChainEntry, ...]
    transactions: tuple[Transaction, ...]
    """Every hop's transactions, in order, read into the model the state machine folds."""
    issuance_manifest: str
    sender: str
    """The platform that sent this hop (the last entry's ``eblPlatform``)."""
    bundle: dict[str, Any] | None
    addressee: Mapping[str, Any]
    """The party on this platform the envelope is for (:func:`_addressee`)."""

    @property
    def last_checksum(self) -> str:
        return chain.entry_checksum(self.chain[-1])

    @property
    def reference(self) -> str:
        return str(self.document["transportDocumentReference"])


def signed_response(response: FinishedResponse, node_key: SigningKey) -> str:
    return jws.sign(response.model_dump(exclude_none=True), node_key)


# -- receiving ------------------------------------------------------------------------------------------------


def open_envelope(body: Any, trust: TrustStore, *, receiver: str) -> OpenedEnvelope:
    """dcsa-notes §6.4 steps 1–6 for an envelope addressed to platform ``receiver``; raises :class:`Refusal`."""
    if not isinstance(body, Mapping):
        raise Refusal("BENV", "the envelope is not a JSON object")
    document = body.get("transportDocument")
    manifest_jws = body.get("envelopeManifestSignedContent")
    chain_jws = body.get("envelopeTransferChain")
    if not isinstance(document, dict) or not isinstance(manifest_jws, str) or not isinstance(chain_jws, list):
        raise Refusal("BENV", "an envelope has transportDocument, envelopeManifestSignedContent, envelopeTransferChain")
    if not chain_jws:
        raise Refusal("BENV", "envelopeTransferChain is empty")
    entries = [_read(TransferChainEntry, c, f"envelopeTransferChain[{i}]") for i, c in enumerate(chain_jws)]
    sender = entries[-1].eblPlatform
    # 1. Signatures: the manifest by the sending platform, each entry by the platform that sent that hop.
    manifest = _read(EnvelopeManifest, manifest_jws, "envelopeManifestSignedContent")
    _verify_platform(manifest_jws, trust, sender, "envelopeManifestSignedContent")
    for i, (compact, entry) in enumerate(zip(chain_jws, entries, strict=True)):
        _verify_platform(compact, trust, entry.eblPlatform, f"envelopeTransferChain[{i}]")
    issuance_manifest = entries[0].issuanceManifestSignedContent or body.get("issuanceManifestSignedContent")
    if not isinstance(issuance_manifest, str):
        raise Refusal("BENV", "the first transfer chain entry carries no issuanceManifestSignedContent")
    bundle = body.get(BUNDLE_EXTENSION)
    if bundle is not None and not isinstance(bundle, dict):
        raise Refusal("BENV", f"{BUNDLE_EXTENSION} is not a bundle object")
    issued = _verify_issuance_manifest(issuance_manifest, trust, entries[0].eblPlatform, bundle)
    # 2. The manifest names the last entry.
    if manifest.lastEnvelopeTransferChainEntrySignedContentChecksum != chain.entry_checksum(chain_jws[-1]):
        raise Refusal("BENV", "lastEnvelopeTransferChainEntrySignedContentChecksum is not the last entry's checksum")
    # 3. Each entry links to the one before it.
    for i, entry in enumerate(entries):
        expected = chain.entry_checksum(chain_jws[i - 1]) if i else None
        if entry.previousEnvelopeTransferChainEntrySignedContentChecksum != expected:
            raise Refusal("BENV", f"envelopeTransferChain[{i}] does not link to the entry before it")
        if i and (entry.issuanceManifestSignedContent or entry.controlTrackingRegistry):
            raise Refusal("BENV", f"envelopeTransferChain[{i}] repeats what only the first entry carries")
    # 4. One document throughout: the anti-replay check.
    try:
        document_json, document_checksum = canonical.text_and_checksum(document)
    except EblError as exc:
        raise Refusal("BENV", f"transportDocument has no RFC 8785 checksum: {exc.message}") from None
    claimed = [manifest.transportDocumentChecksum, issued.documentChecksum] + [
        e.transportDocumentChecksum for e in entries
    ]
    if any(c != document_checksum for c in claimed):
        raise Refusal("BENV", "a checksum in the manifest or the chain is not the checksum of transportDocument")
    if entries[0].controlTrackingRegistry is not None:
        raise Refusal("BENV", "this platform does not take part in a control tracking registry")
    # 5. The first transaction of the first entry is the issuance.
    transactions = tuple(
        _transaction(raw, f"envelopeTransferChain[{i}].transactions[{j}]")
        for i, entry in enumerate(entries)
        for j, raw in enumerate(entry.transactions)
    )
    if transactions[0].actionCode != chain.ActionCode.ISSUE:
        raise Refusal("BENV", "the first transaction of the first entry is not ISSUE")
    # 6. The transactions follow the rules, and the last one hands the eBL to a party on this platform.
    if not _has_facts(document):
        raise Refusal("BENV", "transportDocument lacks the parties and isToOrder the transfer rules need")
    try:
        addressee = _addressee(chain.DocumentFacts.of(document), transactions)
    except EblError as exc:
        raise Refusal("BENV", f"the transactions break rule {exc.code}: {exc.message}") from None
    if addressee.get("eblPlatform") != receiver:
        raise Refusal("BENV", f"the envelope is for platform {addressee.get('eblPlatform')}, not {receiver}")
    return OpenedEnvelope(
        document=document,
        document_json=document_json,
        document_checksum=document_checksum,
        manifest=manifest,
        chain=tuple(chain_jws),
        entries=tuple(entries),
        transactions=transactions,
        issuance_manifest=issuance_manifest,
        sender=sender,
        bundle=bundle,
        addressee=addressee,
    )


def addressee(action: chain.ActionCode, before: chain.EblState | None, after: chain.EblState) -> Mapping[str, Any]:
    """The party an envelope ending with ``action`` is for, from the states before and after it: the new possessor,
    or, for ``SACC``, the party that asked to surrender — the carrier keeps the eBL, and the requester's platform
    learns that it is surrendered (DCSA's surrender response, carried here as a PINT hop)."""
    if action == chain.ActionCode.SACC:
        assert before is not None and before.surrender_requester is not None  # SACC answers a pending surrender
        return before.surrender_requester
    return after.possessor


def _addressee(facts: chain.DocumentFacts, transactions: Sequence[Transaction]) -> Mapping[str, Any]:
    """:func:`addressee` of the last of ``transactions``, every one of them held to the rules (raises otherwise)."""
    before = chain.fold(facts, transactions[:-1]) if len(transactions) > 1 else None
    return addressee(transactions[-1].actionCode, before, chain.apply(before, facts, transactions[-1]))


def _has_facts(document: Mapping[str, Any]) -> bool:
    parties = document.get("documentParties")
    return (
        isinstance(document.get("transportDocumentReference"), str)
        and isinstance(document.get("isToOrder"), bool)
        and isinstance(parties, dict)
        and isinstance(parties.get("issuingParty"), dict)
        and isinstance(parties.get("shipper"), dict)
    )


def _read(model: type[_Model], compact: Any, where: str) -> _Model:
    try:
        return model.model_validate(jws.unverified_payload(compact))
    except EblError as exc:
        raise Refusal("BENV", f"{where} is not a readable JWS: {exc.message}") from None
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        at = ".".join(str(p) for p in error["loc"])
        raise Refusal("BENV", f"{where}: {at}: {error['msg']}") from None


def _verify_with(compact: str, candidates: Sequence[PublicKey]) -> bool:
    """Whether one of ``candidates`` verifies ``compact``: the one its kid names, or (a header with only ``alg``,
    as the conformance tool sends) any of them."""
    claimed_kid = jws.header(compact).get("kid")
    for key in candidates:
        if claimed_kid is not None and key.kid != claimed_kid:
            continue
        try:
            jws.verify_bytes(compact, key)
        except EblError:
            continue
        return True
    return False


def _verify_platform(compact: str, trust: TrustStore, platform: str, where: str) -> None:
    if not _verify_with(compact, trust.node_keys.get(platform, ())):
        raise Refusal("BSIG", f"{where} does not verify with a node key this platform trusts for {platform}")


def _verify_issuance_manifest(
    compact: str, trust: TrustStore, platform: str, bundle: Mapping[str, Any] | None
) -> chain.IssuanceManifest:
    """The carrier's key: held directly in the trust store, or vouched for by a trusted node's credential."""
    candidates = list(trust.carrier_keys.get(platform, ()))
    for credential in (bundle or {}).get("credentials", []) if isinstance(bundle, Mapping) else []:
        try:
            vouched = credentials.verify(credential, trust)
        except EblError:
            continue
        if Role.CARRIER in vouched.roles:
            candidates.append(vouched.key)
    if not _verify_with(compact, candidates):
        raise Refusal("BSIG", "issuanceManifestSignedContent does not verify with a carrier key this platform trusts")
    try:
        return chain.IssuanceManifest.model_validate(jws.unverified_payload(compact))
    except ValidationError:
        raise Refusal("BENV", "issuanceManifestSignedContent is not an IssuanceManifest") from None


def _transaction(raw: Mapping[str, Any], where: str) -> Transaction:
    value = dict(raw)
    legacy = value.pop("action", None)
    if legacy is not None:
        if not isinstance(legacy, str) or legacy not in _LEGACY_ACTIONS:
            raise Refusal("BENV", f"{where}: unknown legacy action {legacy!r}"[:300])
        value["actionCode"] = _LEGACY_ACTIONS[legacy]
    moment = value.get("actionDateTime")
    if isinstance(moment, str):
        try:
            parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                # RFC 3339 has no local time: read as this server's, the entry would mean another moment elsewhere.
                raise ValueError("no UTC offset")
            value["actionDateTime"] = chain.action_datetime(parsed)
        except (ValueError, OverflowError):  # OverflowError: an offset that takes it past year 1 or 9999 in UTC
            raise Refusal("BENV", f"{where}: actionDateTime is not an RFC 3339 date-time with an offset") from None
    try:
        return Transaction.model_validate(value)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        at = ".".join(str(p) for p in error["loc"])
        raise Refusal("BENV", f"{where}.{at}: {error['msg']}") from None


def decode_document(body: Any, metadata: DocumentMetadata, checksum: str) -> bytes:
    """An additional document's bytes from the PUT body (a JSON string of base64); ``INCD`` unless they are the
    declared ones."""
    if not isinstance(body, str):
        raise Refusal("INCD", "the body is a JSON string holding the document in base64")
    try:
        content = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise Refusal("INCD", "the body is not base64") from None
    if canonical.sha256_hex(content) != checksum:
        raise Refusal("INCD", "the document's SHA-256 is not the checksum in the path")
    if len(content) != metadata.size:
        raise Refusal("INCD", f"the document has {len(content)} bytes; the manifest declares {metadata.size}")
    return content


# -- sending --------------------------------------------------------------------------------------------------


def build_entry(
    *,
    platform: str,
    document_checksum: str,
    previous: str | None,
    issuance_manifest: str | None,
    transactions: Sequence[Transaction],
    node_key: SigningKey,
) -> str:
    """This node's transfer chain entry for one hop, in the spec's layout only."""
    payload: dict[str, Any] = {"eblPlatform": platform, "transportDocumentChecksum": document_checksum}
    if previous is not None:
        payload["previousEnvelopeTransferChainEntrySignedContentChecksum"] = chain.entry_checksum(previous)
    if issuance_manifest is not None:
        payload["issuanceManifestSignedContent"] = issuance_manifest
    payload["transactions"] = [tx.model_dump(mode="json", exclude_none=True) for tx in transactions]
    return jws.sign(payload, node_key)


def build_envelope(
    *,
    document: Mapping[str, Any],
    document_checksum: str,
    transfer_chain: Sequence[str],
    bundle: Mapping[str, Any] | None,
    node_key: SigningKey,
) -> dict[str, Any]:
    manifest = {
        "transportDocumentChecksum": document_checksum,
        "lastEnvelopeTransferChainEntrySignedContentChecksum": chain.entry_checksum(transfer_chain[-1]),
    }
    envelope: dict[str, Any] = {
        "transportDocument": dict(document),
        "envelopeManifestSignedContent": jws.sign(manifest, node_key),
        "envelopeTransferChain": list(transfer_chain),
    }
    if bundle is not None:
        envelope[BUNDLE_EXTENSION] = dict(bundle)
    return envelope


class DeliveryFailed(Exception):
    """No signed answer yet (the peer is down, or answered without signing): send again later."""


def deliver(client: httpx.Client, base_url: str, envelope: Mapping[str, Any], peer_keys: Sequence[PublicKey]) -> str:
    """Run one PINT transfer to ``base_url``; return the signed answer that decides it (whatever its code).

    Raises :class:`DeliveryFailed` while no answer a trusted ``peer_keys`` signed has come back: the sender must
    decide on the signed ``responseCode``, never on an HTTP status.
    """
    try:
        started = client.post(f"{base_url}/v3/envelopes", json=envelope)
        if started.status_code == 201:
            # This node sends no additional documents; a receiver that asks for some gets an early finish and MDOC.
            reference = started.json()["envelopeReference"]
            finished = client.put(f"{base_url}/v3/envelopes/{reference}/finish-transfer")
            return _signed_answer(finished, peer_keys)
        return _signed_answer(started, peer_keys)
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None


def _signed_answer(response: httpx.Response, peer_keys: Sequence[PublicKey]) -> str:
    if response.status_code not in (200, 409, 422):
        raise DeliveryFailed(f"HTTP {response.status_code} without a signed answer")
    compact = response.json()
    if not isinstance(compact, str) or not _verify_with(compact, peer_keys):
        raise DeliveryFailed(f"HTTP {response.status_code}: the answer is not signed by the peer's node key")
    return compact


def read_response(compact: str) -> FinishedResponse:
    return FinishedResponse.model_validate(jws.unverified_payload(compact))


class Courier:
    """A thread that delivers pending transfers with exponential backoff until each holds a signed answer.

    ``attempt`` tries every transfer that is due and returns the seconds until the next one is (``None``: none is
    pending). :meth:`wake` makes the thread look again at once, after a new transfer was recorded. Each server process
    runs one, and ``attempt`` claims every attempt in the database (:meth:`ebl.transfers.Transfers.deliver_due`), so
    that the couriers of a node's processes never make the same one.
    """

    def __init__(self, attempt: Callable[[], float | None], *, idle_seconds: float = 30.0) -> None:
        self._attempt = attempt
        self._idle = idle_seconds
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pint-courier", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wakeup.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wakeup.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wakeup.clear()
            try:
                due_in = self._attempt()
            except Exception:
                logger.exception("delivering PINT transfers failed; trying again")
                due_in = self._idle
            self._wakeup.wait(self._idle if due_in is None else max(0.0, due_in))


def backoff_seconds(attempts: int, *, first: float = 0.5, cap: float = 30.0) -> float:
    """Exponential backoff with jitter, so that two senders that failed together do not retry together."""
    base: float = min(cap, first * 2 ** max(0, attempts - 1))
    return base * (0.5 + random.random() / 2)  # noqa: S311 — jitter, not a secret


def transactions_of(transfer_chain: Sequence[str]) -> list[Transaction]:
    """Every transaction of stored transfer chain entries, oldest first, read as they were on receipt."""
    return [
        _transaction(raw, f"envelopeTransferChain[{i}].transactions[{j}]")
        for i, compact in enumerate(transfer_chain)
        for j, raw in enumerate(_read(TransferChainEntry, compact, f"envelopeTransferChain[{i}]").transactions)
    ]
