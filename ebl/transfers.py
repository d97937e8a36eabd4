"""PINT use cases of a node: receiving envelopes from other platforms and delivering eBLs to them (docs/corridor.md).

Receiving (dcsa-notes §6.4): :func:`ebl.pint.open_envelope` checks signatures and structure; this module adds what
needs the database — the recipient is a party here (``BENV``), the envelope agrees with the history this node holds
(``DISE``, or ``DUPE`` for a transfer it already accepted), the additional documents are all here (``MDOC``,
``INCD``) — and imports the eBL: its transfer chain, and, when the sender sent the per-party chain
(``eblBundle``), every party-signed entry with its key credential and its proof in the sender's log.

Sending: an action that leaves the eBL on another platform records, in its own transaction, an outbound transfer.
:meth:`Transfers.deliver_due` (run by :class:`ebl.pint.Courier`) builds the envelope once — this hop's transfer
chain entry and the per-party bundle, against a checkpoint pushed to the peer witnesses first — and sends it until a
signed answer comes back, which it keeps as the receipt. Every server process runs a courier: each attempt is claimed in
the database first, so that one process makes it, and an answer is recorded only on a transfer still pending.

Every answer a receiver signs is a :class:`PintAnswer`; bad JSON and documents that break the DCSA schema are
:class:`~ebl.errors.BadRequest` (an ``ErrorResponse``), as the conformance tool expects.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
from sqlmodel import Session

from ebl import canonical, chain, credentials, jws, pint
from ebl.chain import DocumentFacts, EntryPayload, Transaction
from ebl.document import validate_transport_document
from ebl.errors import BadRequest, Conflict, EblError, NotFound
from ebl.parties import Role, code_keys
from ebl.store.db import read_session, write
from ebl.store.repositories import (
    Ebl,
    EblRepository,
    Entry,
    LogRepository,
    NewEbl,
    NewEntry,
    PartyRepository,
    TransferRepository,
)
from ebl.store.tables import (
    AdditionalDocumentRow,
    EnvelopeRow,
    ForeignCredentialRow,
    ForeignProofRow,
    OutboundTransferRow,
    TransferEntryRow,
)
from ebl.verify import verify_bundle

if TYPE_CHECKING:
    from ebl.service import Node

logger = logging.getLogger("ebl.pint")

PENDING, DELIVERED, REFUSED = "PENDING", "DELIVERED", "REFUSED"
CLAIM_SECONDS = 120.0
"""How long a courier's claim on an attempt stands: longer than an attempt takes (a checkpoint pushed to the witnesses,
the envelope built, and its two requests, each with a timeout of 10 s); once it runs out, another process's courier
may make the attempt (the one that claimed it died, presumably)."""
_STATUS_OF_ANSWER = {"RECE": 200, "DUPE": 200, "BSIG": 422, "BENV": 422, "INCD": 409, "MDOC": 409, "DISE": 409}


@dataclass(frozen=True)
class _Claim:
    """An attempt at a transfer that this process claimed (:meth:`TransferRepository.claim`)."""

    transfer_id: int
    attempts: int
    """The attempts made before this one."""
    until: datetime
    """When the claim runs out: the transfer's next attempt time while it stands, which marks it as this one's."""


@dataclass(frozen=True)
class PintAnswer:
    """What a PINT endpoint answers: a JSON body (a signed response is a JSON string) and its HTTP status."""

    status_code: int
    body: Any
    received: bool = False
    """Whether it accepts the eBL (``RECE``): logged once the write that accepts it has committed."""


def _now() -> datetime:
    return datetime.now(UTC)


def _logged(opened: pint.OpenedEnvelope, answer: PintAnswer) -> PintAnswer:
    if answer.received:
        logger.info("received %s from %s: RECE", opened.reference, opened.sender)
    return answer


def _manifest_of(envelope: EnvelopeRow) -> pint.EnvelopeManifest:
    """The manifest of an envelope this node stored, as it was read when the envelope was checked."""
    signed = json.loads(envelope.body)["envelopeManifestSignedContent"]
    return pint.EnvelopeManifest.model_validate(jws.unverified_payload(signed))


def _missing_documents(transfers: TransferRepository, manifest: pint.EnvelopeManifest, max_bytes: int) -> list[str]:
    """The checksums of the documents ``manifest`` declares that this node does not hold; ``BENV`` if it declares one
    larger than it takes (the transfer could never finish), or one it holds with another size (a document it holds is
    not sent again, so its size would never be checked)."""
    declared = manifest.documents()
    for checksum, metadata in declared.items():
        if metadata.size > max_bytes:
            raise pint.Refusal(
                "BENV", f"document {checksum} has {metadata.size} bytes; this platform takes at most {max_bytes}"
            )
    held = transfers.document_sizes(declared)
    for checksum, size in held.items():
        if declared[checksum].size != size:
            raise pint.Refusal(
                "BENV",
                f"the manifest gives document {checksum} a size of {declared[checksum].size} bytes; it has {size}",
            )
    return sorted(set(declared) - set(held))


def _received_documents(accepted: EnvelopeRow | None) -> list[str]:
    """The additional documents this node's receipt for an accepted envelope lists (none without a receipt)."""
    if accepted is None or not accepted.response:
        return []
    return pint.read_response(accepted.response).receivedAdditionalDocumentChecksums or []


def _tx_json(tx: Transaction) -> dict[str, Any]:
    return tx.model_dump(mode="json", exclude_none=True)


class Transfers:
    def __init__(self, node: Node) -> None:
        self._node = node

    # -- receiving ------------------------------------------------------------------------------------------

    def _answer(self, last_checksum: str, code: pint.ResponseCode, **fields: Any) -> PintAnswer:
        response = pint.FinishedResponse(
            lastEnvelopeTransferChainEntrySignedContentChecksum=last_checksum, responseCode=code, **fields
        )
        return PintAnswer(_STATUS_OF_ANSWER[code], pint.signed_response(response, self._node.node_key))

    def _refused(self, body: Any, refusal: pint.Refusal) -> PintAnswer:
        chain_jws = body.get("envelopeTransferChain") if isinstance(body, Mapping) else None
        last = chain_jws[-1] if isinstance(chain_jws, list) and chain_jws and isinstance(chain_jws[-1], str) else ""
        fields: dict[str, Any] = {"reason": refusal.reason}
        if refusal.missing:
            fields["missingAdditionalDocumentChecksums"] = list(refusal.missing)
        return self._answer(chain.entry_checksum(last), refusal.code, **fields)

    async def receiver_validation(self, code: Any) -> dict[str, str]:
        """``POST /v3/receiver-validation``: the name of the one party here with this identifying code."""
        if not isinstance(code, Mapping) or not isinstance(code.get("partyCode"), str):
            raise BadRequest("the body is a DCSA IdentifyingCode", code="INVALID_IDENTIFYING_CODE")
        codes = code_keys({"identifyingCodes": [code]})
        found = await self._node.db.read(
            lambda session: PartyRepository(session).with_codes(self._node.platform, codes)
        )
        if len(found) != 1 or Role.VERIFIER in found[0].roles:
            # Deliberately vague (DCSA): unknown, ambiguous, a verifier (who may never hold an eBL) or an unsupported
            # code list all look alike.
            raise NotFound("no party on this platform is known by this identifying code")
        return {"partyName": found[0].party_name}

    async def start(self, body: Any) -> PintAnswer:
        """``POST /v3/envelopes``."""
        try:
            opened = self._check(body)
            return _logged(opened, await self._node.db.write(lambda session: self._start(session, body, opened)))
        except pint.Refusal as refusal:
            return self._refused(body, refusal)

    def _check(self, body: Any) -> pint.OpenedEnvelope:
        opened = pint.open_envelope(body, self._node.trust, receiver=self._node.platform)
        validate_transport_document(opened.document)
        if opened.bundle is not None:
            self._check_bundle(opened)
        return opened

    def _check_bundle(self, opened: pint.OpenedEnvelope) -> None:
        """The per-party chain must verify fully and tell the same story as the platform-signed transfer chain."""
        report = verify_bundle(opened.bundle, self._node.trust)
        failed = [c for c in report.checks if c.status != "VALID"]
        if failed:
            code: pint.ResponseCode = "BSIG" if failed[0].name in ("SIGNATURES", "ISSUER_IDENTITY") else "BENV"
            raise pint.Refusal(
                code, f"{pint.BUNDLE_EXTENSION}: {failed[0].name} {failed[0].status}: {failed[0].detail}"
            )
        assert opened.bundle is not None
        entries = opened.bundle["entries"]
        told = [_tx_json(EntryPayload.model_validate(jws.unverified_payload(e)).transaction) for e in entries]
        if canonical.checksum(opened.bundle["transportDocument"]) != opened.document_checksum:
            raise pint.Refusal("BENV", f"{pint.BUNDLE_EXTENSION} is the chain of another document")
        if told != [_tx_json(tx) for tx in opened.transactions]:
            raise pint.Refusal(
                "BENV", f"the transactions of {pint.BUNDLE_EXTENSION} are not those of the transfer chain"
            )

    def _start(self, session: Session, body: Any, opened: pint.OpenedEnvelope) -> PintAnswer:
        duplicate = self._compare_with_held(session, opened)
        if duplicate is not None:
            return duplicate
        transfers = TransferRepository(session)
        missing = _missing_documents(transfers, opened.manifest, self._node.settings.max_document_bytes)
        if not missing:
            return self._accept(session, opened, body, reference=None)
        # Starting again while a transfer of this very envelope is open is a retry: it continues that transfer. The same
        # last entry with another manifest (other documents) is another envelope: its documents are the ones to send.
        manifest = opened.manifest.model_dump()
        open_ = [
            e
            for e in transfers.envelopes_for(opened.reference)
            if not e.accepted
            and e.last_entry_checksum == opened.last_checksum
            and _manifest_of(e).model_dump() == manifest
        ]
        row = open_[-1] if open_ else None
        if row is None:
            row = EnvelopeRow(
                reference=uuid.uuid4().hex,
                transport_document_reference=opened.reference,
                last_entry_checksum=opened.last_checksum,
                body=json.dumps(body, ensure_ascii=False),
                created_at=_now(),
            )
            transfers.save_envelope(row)
        return PintAnswer(
            201,
            {
                "envelopeReference": row.reference,
                "transportDocumentChecksum": opened.document_checksum,
                "lastEnvelopeTransferChainEntrySignedContentChecksum": opened.last_checksum,
                "missingAdditionalDocumentChecksums": missing,
            },
        )

    async def put_document(self, reference: str, checksum: str, body: Any) -> PintAnswer | None:
        """``PUT /v3/envelopes/{ref}/additional-documents/{checksum}``: ``None`` means 204."""

        def store(session: Session) -> PintAnswer | None:
            transfers = TransferRepository(session)
            row = self._open_envelope_row(transfers, reference)
            envelope = json.loads(row.body)
            try:
                manifest = pint.open_envelope(envelope, self._node.trust, receiver=self._node.platform).manifest
                metadata = manifest.documents().get(checksum)
                if metadata is None:
                    raise pint.Refusal("INCD", "the envelope manifest declares no document with this checksum")
                content = pint.decode_document(body, metadata, checksum)
            except pint.Refusal as refusal:
                return self._refused(envelope, refusal)
            transfers.add_document(
                AdditionalDocumentRow(
                    checksum=checksum, media_type=metadata.mediaType, content=content, created_at=_now()
                )
            )
            return None

        return await self._node.db.write(store)

    async def finish(self, reference: str) -> PintAnswer:
        """``PUT /v3/envelopes/{ref}/finish-transfer``."""
        row = await self._node.db.read(
            lambda session: self._open_envelope_row(TransferRepository(session), reference, accepted_too=True)
        )
        envelope = json.loads(row.body)
        if row.accepted:
            assert row.response is not None
            return PintAnswer(200, self._duplicate_of_accepted(row))
        try:
            opened = self._check(envelope)

            def accept(session: Session) -> PintAnswer:
                duplicate = self._compare_with_held(session, opened)
                if duplicate is not None:
                    return duplicate
                missing = _missing_documents(
                    TransferRepository(session), opened.manifest, self._node.settings.max_document_bytes
                )
                if missing:
                    raise pint.Refusal("MDOC", "additional documents are missing", missing=missing)
                return self._accept(session, opened, envelope, reference=reference)

            return _logged(opened, await self._node.db.write(accept))
        except pint.Refusal as refusal:
            return self._refused(envelope, refusal)

    def _open_envelope_row(
        self, transfers: TransferRepository, reference: str, accepted_too: bool = False
    ) -> EnvelopeRow:
        row = transfers.envelope(reference)
        if row is None or (row.accepted and not accepted_too):
            raise NotFound(f"no open envelope transfer {reference}", code="UNKNOWN_ENVELOPE")
        return row

    def _duplicate_of_accepted(self, row: EnvelopeRow) -> str:
        chain_jws = json.loads(row.body)["envelopeTransferChain"]
        answer = self._answer(
            row.last_entry_checksum,
            "DUPE",
            duplicateOfAcceptedEnvelopeTransferChainEntrySignedContent=chain_jws[-1],
            receivedAdditionalDocumentChecksums=_received_documents(row),
        )
        return str(answer.body)

    def _compare_with_held(self, session: Session, opened: pint.OpenedEnvelope) -> PintAnswer | None:
        """Step 7–8: ``DUPE`` for a transfer accepted before, ``DISE`` for one that contradicts what is held;
        ``None`` when the envelope extends the held history."""
        ebls = EblRepository(session)
        row = ebls.latest(opened.reference, for_update=True)
        if row is None:
            return None
        # An envelope accepted before is a duplicate however the eBL has moved since (its sender may have lost the
        # answer and tries again after the eBL came back to it), and even if its document has been amended since.
        accepted = TransferRepository(session).accepted_envelope(opened.reference, opened.last_checksum)
        if accepted is not None:
            return PintAnswer(200, self._duplicate_of_accepted(accepted))
        if row.document_checksum != opened.document_checksum:
            self._check_amended_reissue(session, row, opened)
            return None
        held = [r.jws for r in TransferRepository(session).chain(row.id)]
        sent = [jws.unverified_payload(c) for c in opened.chain]
        for position, compact in enumerate(held[: len(sent)]):
            # A re-signed entry with the same payload is the same hop (the conformance tool re-signs retries).
            if jws.unverified_payload(compact) != sent[position]:
                raise pint.Refusal(
                    "DISE", f"envelopeTransferChain[{position}] differs from the hop this platform holds"
                )
        if len(held) >= len(sent):
            last_held = held[len(sent) - 1]
            if len(held) == len(sent) and jws.unverified_payload(last_held)["eblPlatform"] != self._node.platform:
                # A re-signed retry: the documents received are those of the envelope accepted, not those it names.
                accepted = TransferRepository(session).accepted_envelope(
                    opened.reference, chain.entry_checksum(last_held)
                )
                return self._answer(
                    opened.last_checksum,
                    "DUPE",
                    duplicateOfAcceptedEnvelopeTransferChainEntrySignedContent=last_held,
                    receivedAdditionalDocumentChecksums=_received_documents(accepted),
                )
            raise pint.Refusal("DISE", "this platform holds transfers of this eBL that the envelope lacks")
        history, state = self._held(session, row)
        if state.platform == self._node.platform:
            raise pint.Refusal("DISE", "the eBL is held on this platform: the envelope would make a second possessor")
        held_transactions = [_tx_json(tx) for tx in history]
        if held_transactions != [_tx_json(tx) for tx in opened.transactions[: len(held_transactions)]]:
            raise pint.Refusal("DISE", "the envelope's transactions contradict the chain this platform holds")
        return None

    def _held(self, session: Session, row: Ebl) -> tuple[list[Transaction], chain.EblState]:
        """The transactions this platform holds of an eBL, and the state they leave it in."""
        record = EblRepository(session).record(row.id)
        assert record is not None
        history = self._node.history(session, record)
        return history, chain.fold(DocumentFacts.of(json.loads(row.document_json)), history)

    def _check_amended_reissue(self, session: Session, row: Ebl, opened: pint.OpenedEnvelope) -> None:
        """Another document under a reference this platform holds an eBL of: only the carrier's amended re-issue of an
        eBL that is not held here (it was surrendered for amendment, on the carrier's platform), with a new
        ``transportDocumentSubReference``. Its issuance is the carrier's, checked like any other (``BSIG``); the old
        eBL is voided here when the new one is accepted (:meth:`_accept`)."""
        sub_reference = str(opened.document.get("transportDocumentSubReference", ""))
        if EblRepository(session).has_sub_reference(row.transport_document_reference, sub_reference):
            raise pint.Refusal(
                "DISE", "this platform has held another document under this reference and transportDocumentSubReference"
            )
        _, state = self._held(session, row)
        if state.platform == self._node.platform:
            raise pint.Refusal(
                "DISE", "the eBL of this reference is held on this platform: another document under it would be another"
            )

    def _accept(self, session: Session, opened: pint.OpenedEnvelope, body: Any, *, reference: str | None) -> PintAnswer:
        node = self._node
        parties = PartyRepository(session)
        found = parties.with_codes(node.platform, code_keys(opened.addressee))
        if len(found) != 1:
            raise pint.Refusal("BENV", "the recipient's identifying codes name no one party on this platform")
        if Role.VERIFIER in found[0].roles:
            raise pint.Refusal("BENV", "the recipient is a verifier, who may never hold an eBL")
        ebls, transfers = EblRepository(session), TransferRepository(session)
        row = ebls.latest(opened.reference, for_update=True)
        if row is not None and row.document_checksum != opened.document_checksum:
            # The amended re-issue _check_amended_reissue let through: it replaces the old document here.
            ebls.supersede(row.id)
            row = None
        bundle = opened.bundle
        if row is None:
            row = ebls.add(
                NewEbl(
                    reference=opened.reference,
                    sub_reference=str(opened.document.get("transportDocumentSubReference", "")),
                    document_json=opened.document_json,
                    document_checksum=opened.document_checksum,
                    issue_to=bundle["issueTo"] if bundle is not None else _issue_to(opened.transactions[0]),
                    status="",
                    chain_length=0,
                    created_at=_now(),
                )
            )
        held_hops = len(transfers.chain(row.id))
        covered = 0
        for position, (compact, entry) in enumerate(zip(opened.chain, opened.entries, strict=True)):
            covered += len(entry.transactions)
            if position >= held_hops:
                transfers.add_entry(
                    TransferEntryRow(
                        ebl_id=row.id,
                        position=position,
                        jws=compact,
                        checksum=chain.entry_checksum(compact),
                        ebl_platform=entry.eblPlatform,
                        last_sequence=covered - 1,
                        created_at=_now(),
                    )
                )
        if bundle is not None:
            self._import_bundle(session, row, bundle)
        state = chain.fold(DocumentFacts.of(opened.document), opened.transactions)
        ebls.set_state(row.id, status=state.status.value, chain_length=len(opened.transactions))
        named = parties.with_codes(node.platform, node.named_codes(opened.document))
        ebls.involve((row.id, party_id) for party_id in [found[0].id, *(p.id for p in named)])
        received = sorted(opened.manifest.documents())
        answer = self._answer(opened.last_checksum, "RECE", receivedAdditionalDocumentChecksums=received)
        envelope = transfers.envelope(reference) if reference is not None else None
        if envelope is None:
            envelope = EnvelopeRow(
                reference=uuid.uuid4().hex,
                transport_document_reference=opened.reference,
                last_entry_checksum=opened.last_checksum,
                body=json.dumps(body, ensure_ascii=False),
                created_at=_now(),
            )
        envelope.accepted, envelope.response = True, str(answer.body)
        transfers.save_envelope(envelope)
        return PintAnswer(answer.status_code, answer.body, received=True)

    def _import_bundle(self, session: Session, row: Ebl, bundle: Mapping[str, Any]) -> None:
        """Store the party-signed entries this node does not hold yet, with their credentials and log proofs."""
        ebls, transfers, parties = EblRepository(session), TransferRepository(session), PartyRepository(session)
        held = [e.jws for e in ebls.entries(row.id)]
        entries: list[str] = bundle["entries"]
        if entries[: len(held)] != held:
            raise pint.Refusal("DISE", f"{pint.BUNDLE_EXTENSION} rewrites party-signed entries this platform holds")
        proofs = bundle.get("inclusionProofs") or []
        new_entries = []
        for sequence, compact in enumerate(entries[len(held) :], start=len(held)):
            checksum = chain.entry_checksum(compact)
            payload = EntryPayload.model_validate(jws.unverified_payload(compact))
            new_entries.append(
                NewEntry(row.id, Entry(sequence, compact, checksum), payload.transaction.actionCode.value, _now())
            )
            if payload.eblPlatform != self._node.platform:
                transfers.add_foreign_proof(
                    ForeignProofRow(entry_checksum=checksum, tlog_proof=proofs[sequence], created_at=_now())
                )
        ebls.add_entries(new_entries)
        for compact in bundle["credentials"]:
            try:
                vouched = credentials.verify(compact, self._node.trust)
            except EblError:
                continue  # the bundle verified with the credentials it needs; one that vouches for nothing is ignored
            if parties.key(vouched.key.kid) is None:
                transfers.add_foreign_credential(
                    ForeignCredentialRow(
                        kid=vouched.key.kid,
                        ebl_platform=vouched.party["eblPlatform"],
                        credential=compact,
                        created_at=_now(),
                    )
                )

    # -- sending --------------------------------------------------------------------------------------------

    def deliver_due(self, client: httpx.Client) -> float | None:
        """Try every pending transfer that is due and that this process claims; the seconds until the next one is
        due, or ``None``.

        Every server process runs a courier on the same transfers: each attempt is claimed in the database first
        (:meth:`TransferRepository.claim`), and a transfer another process claimed is left to it. Should that process
        die mid-attempt, its claim runs out after :data:`CLAIM_SECONDS`, and a courier that looks then takes it over.
        """
        with read_session(self._node.engine) as session:
            pending = TransferRepository(session).pending()
        next_due: float | None = None
        # One at a time per reference, in the order recorded: a receiver takes the hops of an eBL in order, and a
        # carrier's SACC must arrive before the amended re-issue under the same reference. A reference waits while
        # its earliest transfer is pending; once that one is decided, the next may go in the same pass.
        waiting: set[str] = set()
        for transfer_id, reference, due in pending:
            if reference in waiting:
                continue
            wait = (_aware(due) - _now()).total_seconds()
            if wait <= 0:
                claim = self._claim(transfer_id)
                if claim is None:  # another process's attempt: it takes the reference's next transfers too
                    waiting.add(reference)
                    continue
                wait_after = self._deliver(client, claim)
                if wait_after is None:
                    continue
                wait = wait_after
            waiting.add(reference)
            next_due = wait if next_due is None else min(next_due, wait)
        return next_due

    def _claim(self, transfer_id: int) -> _Claim | None:
        now = _now()
        until = now + timedelta(seconds=CLAIM_SECONDS)
        attempts = write(self._node.engine, lambda session: TransferRepository(session).claim(transfer_id, now, until))
        return None if attempts is None else _Claim(transfer_id, attempts, until)

    def _deliver(self, client: httpx.Client, claim: _Claim) -> float | None:
        node, transfer_id = self._node, claim.transfer_id
        with read_session(node.engine) as session:
            row = TransferRepository(session).outbound_by_id(transfer_id)
        assert row is not None
        url = node.settings.peers.get(row.ebl_platform)
        if url is None:
            return self._failed(claim, f"no --peer URL for platform {row.ebl_platform}")
        if row.envelope is None:
            node.sign_checkpoint()
            node.push_checkpoint(client)
            self._build_envelope(transfer_id)
            with read_session(node.engine) as session:
                row = TransferRepository(session).outbound_by_id(transfer_id)
            assert row is not None and row.envelope is not None
        try:
            compact = pint.deliver(
                client, url.rstrip("/"), json.loads(row.envelope), node.trust.node_keys.get(row.ebl_platform, ())
            )
        except pint.DeliveryFailed as exc:
            return self._failed(claim, str(exc))
        response = pint.read_response(compact)
        envelope = json.loads(row.envelope)
        if response.lastEnvelopeTransferChainEntrySignedContentChecksum != chain.entry_checksum(
            envelope["envelopeTransferChain"][-1]
        ):
            return self._failed(claim, "the signed answer is about another envelope")
        status = DELIVERED if response.responseCode in pint.ACCEPTED else REFUSED
        kept = write(
            node.engine,
            lambda session: TransferRepository(session).keep_answer(
                transfer_id, status=status, response=compact, response_code=response.responseCode
            ),
        )
        if not kept:
            logger.info(
                "transfer %d was answered %s, but another attempt had decided it already: its receipt stays",
                transfer_id,
                response.responseCode,
            )
            return None
        log = logger.info if response.responseCode in pint.ACCEPTED else logger.error
        log(
            "transfer %d to %s answered %s %s",
            transfer_id,
            row.ebl_platform,
            response.responseCode,
            response.reason or "",
        )
        return None

    def _failed(self, claim: _Claim, error: str) -> float | None:
        """Record a failed attempt; the seconds until the next one, or ``None`` if the attempt's claim had run out
        (the transfer is another attempt's now)."""
        attempts = claim.attempts + 1
        wait = pint.backoff_seconds(attempts)
        next_attempt_at = _now() + timedelta(seconds=wait)
        kept = write(
            self._node.engine,
            lambda session: TransferRepository(session).retry_later(
                claim.transfer_id,
                claimed_until=claim.until,
                attempts=attempts,
                next_attempt_at=next_attempt_at,
                error=error[:1000],
            ),
        )
        if not kept:
            logger.warning(
                "transfer %d: attempt %d failed (%s) after its claim ran out; not recorded",
                claim.transfer_id,
                attempts,
                error,
            )
            return None
        logger.warning("transfer %d: attempt %d failed (%s); next in %.1f s", claim.transfer_id, attempts, error, wait)
        return wait

    def _build_envelope(self, transfer_id: int) -> None:
        """This hop's transfer chain entry and the envelope, built once so that every retry sends the same one."""
        node = self._node

        def build(session: Session) -> None:
            transfers, ebls = TransferRepository(session), EblRepository(session)
            row = transfers.outbound_by_id(transfer_id, for_update=True)
            assert row is not None
            if row.envelope is not None:
                return
            record = ebls.record(row.ebl_id)
            assert record is not None
            ebl = record.ebl
            entries = record.entries[: row.sequence + 1]
            hops = list(transfers.chain(ebl.id))
            first = hops[-1].last_sequence + 1 if hops else 0
            payloads = [EntryPayload.model_validate(jws.unverified_payload(e.jws)) for e in entries]
            entry = pint.build_entry(
                platform=node.platform,
                document_checksum=ebl.document_checksum,
                previous=hops[-1].jws if hops else None,
                issuance_manifest=payloads[0].issuanceManifestSignedContent if not hops else None,
                transactions=[p.transaction for p in payloads[first:]],
                node_key=node.node_key,
            )
            transfers.add_entry(
                TransferEntryRow(
                    ebl_id=ebl.id,
                    position=len(hops),
                    jws=entry,
                    checksum=chain.entry_checksum(entry),
                    ebl_platform=node.platform,
                    last_sequence=row.sequence,
                    created_at=_now(),
                )
            )
            document = json.loads(ebl.document_json)
            complete = record.party_chain_complete
            checkpoint = node.ledger.sign_checkpoint(LogRepository(session), _now())
            bundle = node.export(session, ebl, entries, checkpoint) if complete else None
            envelope = pint.build_envelope(
                document=document,
                document_checksum=ebl.document_checksum,
                transfer_chain=[*(h.jws for h in hops), entry],
                bundle=bundle,
                node_key=node.node_key,
            )
            row.envelope = json.dumps(envelope, ensure_ascii=False)
            transfers.save_outbound(row)

        write(node.engine, build)

    def record_departure(self, session: Session, ebl_id: int, sequence: int, platform: str) -> None:
        """In the action's transaction: the eBL now lives on ``platform``, so an envelope must take it there."""
        if platform not in self._node.settings.peers:
            raise Conflict(
                f"the eBL would move to platform {platform}, to which this node has no route",
                code="NO_ROUTE_TO_PLATFORM",
            )
        TransferRepository(session).save_outbound(
            OutboundTransferRow(
                ebl_id=ebl_id,
                sequence=sequence,
                ebl_platform=platform,
                status=PENDING,
                next_attempt_at=_now(),
                created_at=_now(),
            )
        )

    def status(self, session: Session, ebl_id: int) -> list[dict[str, Any]]:
        """The transfers of an eBL to other platforms, with their signed receipts."""
        return [
            {
                "sequence": r.sequence,
                "toPlatform": r.ebl_platform,
                "status": r.status,
                "attempts": r.attempts,
                "responseCode": r.response_code,
                "signedResponse": r.response,
                "lastError": r.last_error if r.status == PENDING else None,
            }
            for r in TransferRepository(session).outbound(ebl_id)
        ]


def _aware(moment: datetime) -> datetime:
    # SQLite returns naive timestamps; they were stored in UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _issue_to(issue: Transaction) -> dict[str, Any]:
    """The ``IssueToParty`` an issuance named, for an eBL whose issuance request did not travel."""
    assert issue.recipient is not None
    recipient = issue.recipient.to_json()
    return {
        "partyName": recipient["partyName"],
        "sendToPlatform": recipient["eblPlatform"],
        "identifyingCodes": recipient["identifyingCodes"],
    }
