"""Offline verification of an eBL bundle (:mod:`ebl.bundle`) → :class:`VerificationReport` (docs/api.md, Verifying).

Pure: no database, no network, no files, no clock. The verifier brings only its trust store — node keys per platform
and, where wanted, carrier keys — and reaches every party key through the node-signed credentials in the bundle.

Seven checks run, always all of them, in this order:

1. ``DOCUMENT_INTEGRITY`` — the RFC 8785 checksum of ``transportDocument`` is the ``transportDocumentChecksum`` of
   every entry and of the head, and the ``documentChecksum`` of the issuance manifest; every entry and the head name
   the document's ``transportDocumentReference``.
2. ``ISSUANCE`` — entry 0 is the ``ISSUE`` and carries the carrier-signed issuance manifest; the manifest verifies with
   the key its kid names; its ``documentChecksum`` and ``issueToChecksum`` are those of ``transportDocument`` and
   ``issueTo``; the ``ISSUE`` goes to the ``issueTo`` party on its ``sendToPlatform``.
3. ``CHAIN_LINKS`` — sequences run 0..n-1, each entry links to the checksum of the one before, and the head, signed by
   a trusted node key of its platform, vouches for the length and the last entry (links alone cannot show that the
   last entries were dropped).
4. ``SIGNATURES`` — every entry verifies with the key its header names; a credential that verifies against the trust
   store vouches for that key; the credential's party is the entry's actor, on the entry's platform.
5. ``ISSUER_IDENTITY`` — the manifest's key belongs to a carrier (a trusted credential with role ``carrier``, or a key
   the trust store holds directly as a carrier key), and that carrier is the document's ``issuingParty`` and the
   ``ISSUE`` actor.
6. ``STATE`` — the transactions fold through the state machine (:func:`ebl.chain.apply`) without breaking a rule; the
   report's ``document`` is the final state.
7. ``LEDGER_INCLUSION`` — each entry's tlog-proof shows its leaf (:func:`ebl.log.merkle.entry_leaf_hash`) under the
   root of a checkpoint signed by a trusted node key of the platform that recorded the entry: the exporting node's
   entries under the bundle's own checkpoint, another node's entries (an eBL that crossed platforms) under that
   node's checkpoint, as it came with the eBL. A witness policy asks for cosignatures on every checkpoint used.
   SKIPPED for a bundle without a checkpoint, unless a witness policy asks for one: then INVALID.

Each check is a function that returns a detail when it holds and raises ``_CheckFailed(detail, entry=...)`` when it
does not; the runner turns both into the report. Where a check needs what an entry claims it reads the payload
without verifying it: check 4 is the one that says whether the signatures hold, and the verdict is VALID only when no
check is INVALID. Nothing is VALID that was not checked: a check whose input is unusable is INVALID, and one this
verifier cannot run is SKIPPED. ``verify_bundle`` raises :class:`~ebl.errors.UnusableBundle` only for input that is
not a bundle at all, and nothing else for any input.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ebl import canonical, chain, credentials, jws
from ebl.bundle import HEAD_TYPE, Bundle, ChainHead
from ebl.chain import ActionCode, DocumentFacts, EblState, EntryPayload, IssuanceManifest, Status
from ebl.credentials import Credential
from ebl.errors import EblError, ErrorDetail, UnusableBundle
from ebl.keys import PublicKey, TrustStore
from ebl.log import merkle, note
from ebl.parties import Role, same_party

__all__ = ["CheckName", "CheckResult", "DocumentState", "HistoryItem", "VerificationReport", "verify_bundle"]


class CheckName(StrEnum):
    DOCUMENT_INTEGRITY = "DOCUMENT_INTEGRITY"
    ISSUANCE = "ISSUANCE"
    CHAIN_LINKS = "CHAIN_LINKS"
    SIGNATURES = "SIGNATURES"
    ISSUER_IDENTITY = "ISSUER_IDENTITY"
    STATE = "STATE"
    LEDGER_INCLUSION = "LEDGER_INCLUSION"


class CheckResult(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: CheckName
    status: Literal["VALID", "INVALID", "SKIPPED"]
    detail: str
    entry: int | None = None
    """The sequence (position in the chain) of the entry the result is about, if it is about one."""


class DocumentState(BaseModel):
    """The eBL's state after the whole chain, as the verifier recomputed it."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    transportDocumentReference: str
    status: Status
    possessor: dict[str, Any]
    titleHolder: dict[str, Any] | None
    eblPlatform: str
    asOf: str | None
    """When the exporting node vouched for the chain (the head's ``exportedAt``): the state is the eBL's as that node
    knew it then, and an action after it is in no bundle exported before it. Only the node, or a fresh bundle, tells
    whether the eBL has moved since. ``null`` when the head does not verify."""


class HistoryItem(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    sequence: int
    actionCode: ActionCode
    actor: dict[str, Any]
    recipient: dict[str, Any] | None
    actionDateTime: str
    eblPlatform: str


class VerificationReport(BaseModel):
    """``history`` is what the entries claim; ``checks`` say whether the claims hold."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    verdict: Literal["VALID", "INVALID"]
    checks: list[CheckResult]
    document: DocumentState | None
    history: list[HistoryItem]


# -- internals ------------------------------------------------------------------------------------------------


class _CheckFailed(Exception):
    def __init__(self, detail: str, *, entry: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.entry = entry


class _CheckSkipped(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


_MAX_QUOTED = 80


def _quote(value: Any) -> str:
    """A value from the bundle, shortened: details must pinpoint, not echo a megabyte back."""
    text = repr(value)
    return text if len(text) <= _MAX_QUOTED else text[: _MAX_QUOTED - 1] + "…"


def _validation_detail(exc: ValidationError) -> str:
    error = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in error["loc"]) or "(root)"
    return f"{where}: {error['msg']}"


def _name(party: Mapping[str, Any]) -> str:
    # A document's party (an endorsee named in it) has no platform.
    platform = party.get("eblPlatform")
    return _quote(party.get("partyName")) + (f" on {_quote(platform)}" if platform is not None else "")


@dataclass(frozen=True, slots=True)
class _Entry:
    index: int
    """Its position in the bundle: the sequence it must have."""
    checksum: str
    """What the next entry links to and what the log's leaf holds (:func:`ebl.chain.entry_checksum`)."""
    token: jws.Token | None
    """The JWS, decoded once for every check; ``None`` when it is not a compact JWS."""
    payload: EntryPayload | None
    """What it claims, read without verifying the signature; ``None`` when unreadable."""
    problem: str
    """Why ``payload`` is ``None``."""


def _read_entry(index: int, compact: str) -> _Entry:
    checksum = chain.entry_checksum(compact)
    try:
        token = jws.parse(compact)
    except EblError as exc:
        return _Entry(index, checksum, None, None, exc.message)
    try:
        return _Entry(index, checksum, token, EntryPayload.model_validate(token.payload()), "")
    except EblError as exc:
        return _Entry(index, checksum, token, None, exc.message)
    except ValidationError as exc:
        return _Entry(index, checksum, token, None, f"its payload is not a chain entry ({_validation_detail(exc)})")


class _Context:
    """The parsed bundle and the trust store, shared by the checks."""

    def __init__(self, bundle: Bundle, trust: TrustStore, witnesses: int = 0) -> None:
        self.bundle = bundle
        self.trust = trust
        self.witnesses = witnesses
        self.entries = tuple(_read_entry(i, compact) for i, compact in enumerate(bundle.entries))
        self.verified_manifests: dict[str, IssuanceManifest] = {}
        """The issuance manifest by the kid of each key it verified with (checks 2 and 5 both need it)."""

    @property
    def document(self) -> dict[str, Any]:
        return self.bundle.transportDocument

    @cached_property
    def document_checksum(self) -> str:
        """The RFC 8785 checksum of the document, computed once for the checks that compare it."""
        try:
            return canonical.checksum(self.document)
        except EblError as exc:
            raise _CheckFailed(f"transportDocument has no RFC 8785 checksum: {exc.message}") from None

    @cached_property
    def head(self) -> tuple[ChainHead, str]:
        """The verified head and the kid of its key (:func:`_verified_head`), for the check and the report."""
        return _verified_head(self)

    @cached_property
    def folded(self) -> tuple[DocumentFacts, EblState]:
        """The facts and the final state (:func:`_fold`), computed once for the check and the report."""
        return _fold(self)

    def payload(self, entry: _Entry) -> EntryPayload:
        if entry.payload is None:
            raise _CheckFailed(f"entry {entry.index} is unreadable: {entry.problem}", entry=entry.index)
        return entry.payload

    def first(self) -> EntryPayload:
        return self.payload(self.entries[0])

    def manifest_jws(self) -> str:
        first = self.first()
        if first.issuanceManifestSignedContent is None:
            raise _CheckFailed("entry 0 carries no issuanceManifestSignedContent", entry=0)
        return first.issuanceManifestSignedContent

    @cached_property
    def _credentials(self) -> tuple[dict[str, list[Credential]], dict[str, str]]:
        # Computed on first use, inside a check, so that whatever a credential holds is reported by that check.
        verified: dict[str, list[Credential]] = {}
        problems: dict[str, str] = {}
        for compact in self.bundle.credentials:
            try:
                credential = credentials.verify(compact, self.trust)
            except EblError as exc:
                claimed = _claimed_kid(compact)
                if claimed is not None:
                    problems.setdefault(claimed, exc.message)
                continue
            verified.setdefault(credential.key.kid, []).append(credential)
        return verified, problems

    def credentials_of(self, kid: str) -> list[Credential]:
        """The verified credentials that vouch for ``kid`` (the same key may be vouched for more than once)."""
        return self._credentials[0].get(kid, [])

    def no_credential(self, what: str, kid: str, entry: int | None) -> _CheckFailed:
        problem = self._credentials[1].get(kid)
        if problem is not None:
            return _CheckFailed(
                f"{what} is signed by key {kid}, whose credential does not verify: {problem}", entry=entry
            )
        return _CheckFailed(f"{what} is signed by key {kid}, for which the bundle carries no credential", entry=entry)


def _claimed_kid(compact: str) -> str | None:
    """The kid a credential claims to vouch for, to say which key an unverifiable credential was about."""
    try:
        payload = jws.unverified_payload(compact)
    except EblError:
        return None
    kid = payload.get("kid") if isinstance(payload, dict) else None
    return kid if isinstance(kid, str) else None


def _kid(compact: str, what: str, entry: int | None) -> str:
    try:
        return jws.kid(compact)
    except EblError as exc:
        raise _CheckFailed(f"{what}: {exc.message}", entry=entry) from None


def _unverified_head(ctx: _Context) -> ChainHead:
    try:
        return ChainHead.model_validate(jws.unverified_payload(ctx.bundle.head))
    except EblError as exc:
        raise _CheckFailed(f"the head is unreadable: {exc.message}") from None
    except ValidationError as exc:
        raise _CheckFailed(f"the head's payload is not a chain head ({_validation_detail(exc)})") from None


def _unverified_manifest(ctx: _Context) -> IssuanceManifest:
    try:
        return IssuanceManifest.model_validate(jws.unverified_payload(ctx.manifest_jws()))
    except EblError as exc:
        raise _CheckFailed(f"entry 0's issuance manifest is unreadable: {exc.message}", entry=0) from None
    except ValidationError as exc:
        raise _CheckFailed(
            f"entry 0's issuance manifest is not an IssuanceManifest ({_validation_detail(exc)})", entry=0
        ) from None


def _verified_manifest(ctx: _Context, key: PublicKey) -> IssuanceManifest:
    if key.kid in ctx.verified_manifests:
        return ctx.verified_manifests[key.kid]
    try:
        manifest = IssuanceManifest.model_validate(jws.verify(ctx.manifest_jws(), key))
    except EblError as exc:
        raise _CheckFailed(f"entry 0's issuance manifest does not verify: {exc.message}", entry=0) from None
    except ValidationError as exc:
        raise _CheckFailed(
            f"entry 0's issuance manifest is not an IssuanceManifest ({_validation_detail(exc)})", entry=0
        ) from None
    ctx.verified_manifests[key.kid] = manifest
    return manifest


def _document_reference(ctx: _Context) -> str:
    reference = ctx.document.get("transportDocumentReference")
    if not isinstance(reference, str):
        raise _CheckFailed("transportDocument.transportDocumentReference is missing or not a string")
    return reference


def _issuing_party(ctx: _Context) -> dict[str, Any]:
    parties = ctx.document.get("documentParties")
    issuing = parties.get("issuingParty") if isinstance(parties, dict) else None
    if not isinstance(issuing, dict):
        raise _CheckFailed("transportDocument.documentParties.issuingParty is missing or not an object")
    return issuing


# -- the checks -----------------------------------------------------------------------------------------------


def _check_document_integrity(ctx: _Context) -> str:
    """1. DOCUMENT_INTEGRITY: the document is the one every entry, the head and the issuance manifest sign for."""
    expected = ctx.document_checksum
    reference = _document_reference(ctx)
    head = _unverified_head(ctx)
    claims: list[tuple[str, int | None, str]] = [
        (f"entry {entry.index}: transportDocumentChecksum", entry.index, ctx.payload(entry).transportDocumentChecksum)
        for entry in ctx.entries
    ]
    claims.append(("the head's transportDocumentChecksum", None, head.transportDocumentChecksum))
    claims.append(("entry 0's issuance manifest: documentChecksum", 0, _unverified_manifest(ctx).documentChecksum))
    wrong = [claim for claim in claims if claim[2] != expected]
    if wrong and len(wrong) == len(claims) and len({claim[2] for claim in claims}) == 1:
        # Everything else agrees with itself: it is the document that changed.
        raise _CheckFailed(
            f"transportDocument was altered: its RFC 8785 checksum is {expected}, but every entry, the head and the "
            f"issuance manifest were signed for {claims[0][2]}"
        )
    if wrong:
        where, position, claimed = wrong[0]
        raise _CheckFailed(
            f"{where} {claimed} is not the RFC 8785 checksum of transportDocument ({expected})", entry=position
        )
    for entry in ctx.entries:
        named = ctx.payload(entry).transportDocumentReference
        if named != reference:
            raise _CheckFailed(
                f"entry {entry.index}: transportDocumentReference {named!r} is not the document's {_quote(reference)}",
                entry=entry.index,
            )
    if head.transportDocumentReference != reference:
        raise _CheckFailed(
            f"the head's transportDocumentReference {head.transportDocumentReference!r} is not the document's "
            f"{_quote(reference)}"
        )
    return (
        f"transportDocument {reference} (RFC 8785 checksum {expected}) is the one all {len(ctx.entries)} entries, "
        "the head and the issuance manifest sign for"
    )


def _issuance_key(ctx: _Context, kid: str, platform: str) -> PublicKey:
    """The key the manifest's kid names: vouched for by a verified credential, or trusted directly as a carrier's."""
    found = ctx.credentials_of(kid)
    if found:
        return found[0].key  # kid is the key's thumbprint: every credential for it carries the same key
    direct = ctx.trust.carrier_key(platform, kid)
    if direct is not None:
        return direct
    raise ctx.no_credential("entry 0's issuance manifest", kid, 0)


def _check_issuance(ctx: _Context) -> str:
    """2. ISSUANCE: entry 0 issues this document to the issueTo party, under a manifest that covers both."""
    first = ctx.first()
    tx = first.transaction
    if tx.actionCode != ActionCode.ISSUE:
        raise _CheckFailed(f"entry 0 is {tx.actionCode.value}, not ISSUE", entry=0)
    for entry in ctx.entries[1:]:
        if entry.payload is not None and entry.payload.issuanceManifestSignedContent is not None:
            raise _CheckFailed(
                f"entry {entry.index} carries an issuance manifest: only the ISSUE entry does", entry=entry.index
            )
    manifest_jws = ctx.manifest_jws()
    kid = _kid(manifest_jws, "entry 0's issuance manifest", 0)
    manifest = _verified_manifest(ctx, _issuance_key(ctx, kid, first.eblPlatform))
    document_checksum = ctx.document_checksum
    if manifest.documentChecksum != document_checksum:
        raise _CheckFailed(
            f"entry 0's issuance manifest: documentChecksum {manifest.documentChecksum} is not the RFC 8785 checksum "
            f"of transportDocument ({document_checksum})",
            entry=0,
        )
    issue_to = ctx.bundle.issueTo
    try:
        issue_to_checksum = canonical.checksum(issue_to)
    except EblError as exc:
        raise _CheckFailed(f"issueTo has no RFC 8785 checksum: {exc.message}") from None
    if manifest.issueToChecksum != issue_to_checksum:
        raise _CheckFailed(
            f"entry 0's issuance manifest: issueToChecksum {manifest.issueToChecksum} is not the RFC 8785 checksum "
            f"of issueTo ({issue_to_checksum})",
            entry=0,
        )
    if tx.recipient is None:
        raise _CheckFailed("entry 0: the ISSUE names no recipient", entry=0)
    recipient = tx.recipient.to_json()
    if not same_party(recipient, issue_to):
        raise _CheckFailed(
            f"entry 0: the ISSUE recipient {_name(recipient)} shares no identifying code with issueTo "
            f"{_quote(issue_to.get('partyName'))}",
            entry=0,
        )
    if tx.recipient.eblPlatform != issue_to.get("sendToPlatform"):
        raise _CheckFailed(
            f"entry 0: the ISSUE recipient is on {tx.recipient.eblPlatform!r}, but issueTo.sendToPlatform is "
            f"{_quote(issue_to.get('sendToPlatform'))}",
            entry=0,
        )
    return (
        f"entry 0 issues the document to {_name(recipient)}, the issueTo party; the issuance manifest, signed by "
        f"key {kid}, covers transportDocument and issueTo"
    )


def _verified_head(ctx: _Context) -> tuple[ChainHead, str]:
    """The head, verified with a trusted node key of the platform it names, and that key's kid."""
    head = ctx.bundle.head
    try:
        claimed = jws.unverified_payload(head)
        kid = jws.kid(head)
    except EblError as exc:
        raise _CheckFailed(f"the head is unreadable: {exc.message}") from None
    platform = claimed.get("eblPlatform") if isinstance(claimed, dict) else None
    if not isinstance(platform, str):
        raise _CheckFailed("the head names no eblPlatform, so no node key can verify it")
    key = ctx.trust.node_key(platform, kid)
    if key is None:
        raise _CheckFailed(
            f"the head is signed by key {kid}, which the trust store does not know as a node key of {_quote(platform)}"
        )
    try:
        payload = jws.verify(head, key)
    except EblError as exc:
        raise _CheckFailed(f"the head does not verify: {exc.message}") from None
    if jws.header(head).get("typ") != HEAD_TYPE:
        # The node key also signs credentials: only a JWS typed as a head may vouch for a chain.
        raise _CheckFailed(f"the head's JWS typ is not {HEAD_TYPE}")
    try:
        return ChainHead.model_validate(payload), kid
    except ValidationError as exc:
        raise _CheckFailed(f"the head's payload is not a chain head ({_validation_detail(exc)})") from None


def _check_chain_links(ctx: _Context) -> str:
    """3. CHAIN_LINKS: sequences 0..n-1, each entry linked to the one before; the head vouches for n and the last."""
    previous: _Entry | None = None
    for entry in ctx.entries:
        payload = ctx.payload(entry)
        if payload.sequence != entry.index:
            raise _CheckFailed(
                f"entry {entry.index}: the entry at this position has sequence {payload.sequence}: an entry is "
                "missing, added or out of order",
                entry=entry.index,
            )
        if previous is None:
            if payload.previousEntryChecksum is not None:
                raise _CheckFailed("entry 0 has a previousEntryChecksum: the first entry has none", entry=0)
        else:
            link = previous.checksum
            if payload.previousEntryChecksum != link:
                raise _CheckFailed(
                    f"entry {entry.index}: previousEntryChecksum {payload.previousEntryChecksum} is not the checksum "
                    f"of entry {previous.index} ({link})",
                    entry=entry.index,
                )
        previous = entry
    head, kid = ctx.head
    length = len(ctx.entries)
    if head.length != length:
        change = "entries were removed from its end" if head.length > length else "entries were added after it"
        raise _CheckFailed(
            f"the head vouches for {head.length} entries but the bundle has {length}: {change}",
            entry=min(head.length, length),
        )
    last = ctx.entries[-1].checksum
    if head.lastEntryChecksum != last:
        raise _CheckFailed(
            f"the head's lastEntryChecksum {head.lastEntryChecksum} is not the checksum of entry {length - 1} ({last})",
            entry=length - 1,
        )
    return (
        f"{length} entries with sequences 0..{length - 1}, each linked to the one before; the head, signed by "
        f"{head.eblPlatform} node key {kid} at {head.exportedAt}, vouches for the length and the last entry"
    )


def _check_signatures(ctx: _Context) -> str:
    """4. SIGNATURES: each entry verifies with a credentialed key of its actor, on the entry's platform."""
    for entry in ctx.entries:
        what = f"entry {entry.index}"
        if entry.token is None:
            raise _CheckFailed(f"{what}: {entry.problem}", entry=entry.index)
        try:
            kid = entry.token.kid
        except EblError as exc:
            raise _CheckFailed(f"{what}: {exc.message}", entry=entry.index) from None
        found = ctx.credentials_of(kid)
        if not found:
            raise ctx.no_credential(what, kid, entry.index)
        try:
            # The entry's payload was read from the very token verified here: the signature covers what it claims.
            jws.verify_bytes(entry.token, found[0].key)
        except EblError as exc:
            raise _CheckFailed(f"{what}: {exc.message}", entry=entry.index) from None
        payload = ctx.payload(entry)
        actor = payload.transaction.actor.to_json()
        if not any(
            credential.party["eblPlatform"] == payload.eblPlatform and same_party(credential.party, actor)
            for credential in found
        ):
            raise _CheckFailed(
                f"{what}: key {kid} is vouched for as {_name(found[0].party)}, but the entry's actor is "
                f"{_name(actor)} and it was recorded on {payload.eblPlatform!r}",
                entry=entry.index,
            )
    return f"all {len(ctx.entries)} entries verify with keys that trusted node credentials vouch for as their actors'"


def _check_issuer_identity(ctx: _Context) -> str:
    """5. ISSUER_IDENTITY: a trusted carrier signed the issuance manifest; it is the issuing party and the issuer."""
    first = ctx.first()
    if first.transaction.actionCode != ActionCode.ISSUE:
        raise _CheckFailed(
            f"entry 0 is {first.transaction.actionCode.value}, not ISSUE: no issuer to identify", entry=0
        )
    actor = first.transaction.actor.to_json()
    issuing_party = _issuing_party(ctx)
    kid = _kid(ctx.manifest_jws(), "entry 0's issuance manifest", 0)
    carriers = [c for c in ctx.credentials_of(kid) if Role.CARRIER in c.roles]
    for credential in carriers:
        if same_party(credential.party, issuing_party) and same_party(credential.party, actor):
            _verified_manifest(ctx, credential.key)
            return (
                f"the issuance manifest is signed by key {kid} of carrier {_name(credential.party)}, vouched for by "
                "a trusted node; it is the document's issuingParty and the ISSUE actor"
            )
    direct = ctx.trust.carrier_key(first.eblPlatform, kid)
    if direct is not None:
        _verified_manifest(ctx, direct)
        # A carrier key trusted directly names no party: the ISSUE actor is the identity it is taken to sign for.
        if not same_party(actor, issuing_party):
            raise _CheckFailed(
                f"entry 0: the ISSUE actor {_name(actor)} is not the document's issuingParty "
                f"{_quote(issuing_party.get('partyName'))}",
                entry=0,
            )
        return (
            f"the issuance manifest is signed by key {kid}, which the trust store holds as a carrier key of "
            f"{first.eblPlatform}; the ISSUE actor {_name(actor)} is the document's issuingParty"
        )
    if carriers:
        credential = carriers[0]
        if not same_party(credential.party, issuing_party):
            raise _CheckFailed(
                f"the issuance manifest is signed by carrier {_name(credential.party)}, but the document's "
                f"issuingParty is {_quote(issuing_party.get('partyName'))}",
                entry=0,
            )
        raise _CheckFailed(
            f"the issuance manifest is signed by carrier {_name(credential.party)}, but entry 0's ISSUE actor is "
            f"{_name(actor)}",
            entry=0,
        )
    others = ctx.credentials_of(kid)
    if others:
        raise _CheckFailed(
            f"the issuance manifest is signed by key {kid} of {_name(others[0].party)}, whose credential does not "
            "give it the carrier role",
            entry=0,
        )
    raise ctx.no_credential("entry 0's issuance manifest", kid, 0)


def _facts(ctx: _Context) -> DocumentFacts:
    document = ctx.document
    _document_reference(ctx)
    _issuing_party(ctx)
    parties = document["documentParties"]
    if not isinstance(parties.get("shipper"), dict):
        raise _CheckFailed("transportDocument.documentParties.shipper is missing or not an object")
    for role in ("consignee", "endorsee"):
        if parties.get(role) is not None and not isinstance(parties[role], dict):
            raise _CheckFailed(f"transportDocument.documentParties.{role} is not an object")
    if not isinstance(document.get("isToOrder"), bool):
        raise _CheckFailed("transportDocument.isToOrder is missing or not a boolean")
    return DocumentFacts.of(document)


def _fold(ctx: _Context) -> tuple[DocumentFacts, EblState]:
    facts = _facts(ctx)
    state: EblState | None = None
    for entry in ctx.entries:
        tx = ctx.payload(entry).transaction
        try:
            state = chain.apply(state, facts, tx)
        except EblError as exc:  # ActionRefused, RoleForbidden, BadRequest: the rule is in exc.code
            raise _CheckFailed(
                f"entry {entry.index}: {tx.actionCode.value} by {_name(tx.actor.to_json())} breaks rule {exc.code}: "
                f"{exc.message}",
                entry=entry.index,
            ) from None
    assert state is not None  # a bundle has at least one entry
    return facts, state


def _check_state(ctx: _Context) -> str:
    """6. STATE: every transaction is allowed by the state machine in the state the ones before it left."""
    _, state = ctx.folded
    holder = "blank-endorsed" if state.title_holder is None else f"title holder {_name(state.title_holder)}"
    return (
        f"all {len(ctx.entries)} transactions follow the rules of the state machine: the eBL is {state.status.value}, "
        f"possessed by {_name(state.possessor)}, {holder}; it lives on {state.platform}"
    )


def _check_ledger_inclusion(ctx: _Context) -> str:
    """7. LEDGER_INCLUSION: every entry is a leaf of the log of the node that recorded it, under a checkpoint that
    node's key signed; the exporting node's entries under the bundle's own checkpoint."""
    if ctx.bundle.checkpoint is None:
        if ctx.witnesses:
            # Else taking the checkpoint out of a bundle would pass a policy it fails.
            raise _CheckFailed(
                f"the policy asks for {ctx.witnesses} witness cosignature(s) on the checkpoint, and the bundle carries "
                "no checkpoint"
            )
        if ctx.bundle.inclusionProofs is not None:
            raise _CheckSkipped("the bundle carries inclusion proofs but no checkpoint to check them against")
        raise _CheckSkipped("no checkpoint in the bundle")
    proofs = ctx.bundle.inclusionProofs or []
    if len(proofs) != len(ctx.entries):
        raise _CheckFailed(f"the bundle carries {len(proofs)} inclusion proofs for {len(ctx.entries)} entries")
    exporter = _unverified_head(ctx).eblPlatform
    if all(ctx.payload(entry).eblPlatform != exporter for entry in ctx.entries):
        # It proves none of the entries (they were all recorded elsewhere), but it is still the exporter's word.
        _trusted_checkpoint(ctx, ctx.bundle.checkpoint, exporter, None)
    # (note, platform) → the checkpoint it signs and how many entries it proves: a note opened for one platform's
    # keys says nothing about another platform's entries.
    logs: dict[tuple[str, str], tuple[note.Checkpoint, list[int]]] = {}
    for entry, text_proof in zip(ctx.entries, proofs, strict=True):
        sequence = entry.index
        platform = ctx.payload(entry).eblPlatform
        try:
            proof = note.TlogProof.parse(text_proof)
        except note.NoteError as exc:
            raise _CheckFailed(f"entry {sequence} is not proven in the log: {exc}", entry=sequence) from None
        if platform == exporter and proof.checkpoint_note != ctx.bundle.checkpoint:
            raise _CheckFailed(
                f"entry {sequence}: its inclusion proof is against another checkpoint than the bundle's", entry=sequence
            )
        key = (proof.checkpoint_note, platform)
        if key not in logs:
            logs[key] = (_trusted_checkpoint(ctx, proof.checkpoint_note, platform, sequence), [])
        checkpoint, proven = logs[key]
        try:
            leaf = merkle.entry_leaf_hash(entry.checksum)
            merkle.verify_inclusion(leaf, proof.index, checkpoint.size, proof.hashes, checkpoint.root)
        except merkle.ProofError as exc:
            raise _CheckFailed(f"entry {sequence} is not proven in the log: {exc}", entry=sequence) from None
        proven.append(sequence)
    parts = [
        f"{len(proven)} of {checkpoint.origin} at size {checkpoint.size} (checkpoint signed by a trusted {platform} "
        f"node key{_witnessed_by(ctx, text, platform)})"
        for (text, platform), (checkpoint, proven) in logs.items()
    ]
    if len(parts) == 1:
        return f"all {len(ctx.entries)} entries are leaves of log {parts[0].removeprefix(f'{len(ctx.entries)} of ')}"
    return f"all {len(ctx.entries)} entries are leaves of their nodes' logs: {'; '.join(parts)}"


def _trusted_checkpoint(ctx: _Context, text: str, platform: str, sequence: int | None) -> note.Checkpoint:
    """The checkpoint ``text`` signs, if a trusted node key of ``platform`` signed it; ``sequence``: the entry whose
    proof it came with (``None``: the bundle's own)."""
    try:
        origin = text.split("\n", 1)[0]
        verifiers = [note.verifier(origin, key) for key in ctx.trust.ed25519_node_keys(platform)]
        opened, _ = note.open_note(text, verifiers)
        return note.Checkpoint.parse(opened)
    except (note.NoteError, ValueError) as exc:
        whose = "the bundle's checkpoint is" if sequence is None else f"entry {sequence}: its checkpoint is"
        raise _CheckFailed(f"{whose} not signed by a trusted {platform} node key: {exc}", entry=sequence) from None


def _witnessed_by(ctx: _Context, text: str, platform: str) -> str:
    try:
        names = sorted(note.cosigners(text, ctx.trust.witnesses(platform)))
    except note.NoteError as exc:
        raise _CheckFailed(f"a witness cosignature on a {platform} checkpoint does not verify: {exc}") from None
    if len(names) < ctx.witnesses:
        raise _CheckFailed(
            f"the policy asks for {ctx.witnesses} witness cosignature(s) from other trusted nodes; the {platform} "
            f"checkpoint has {len(names)}"
        )
    return f", cosigned by {', '.join(names)}" if names else ""


_CHECKS: Sequence[tuple[CheckName, Callable[[_Context], str]]] = (
    (CheckName.DOCUMENT_INTEGRITY, _check_document_integrity),
    (CheckName.ISSUANCE, _check_issuance),
    (CheckName.CHAIN_LINKS, _check_chain_links),
    (CheckName.SIGNATURES, _check_signatures),
    (CheckName.ISSUER_IDENTITY, _check_issuer_identity),
    (CheckName.STATE, _check_state),
    (CheckName.LEDGER_INCLUSION, _check_ledger_inclusion),
)


def _run(name: CheckName, check: Callable[[_Context], str], ctx: _Context) -> CheckResult:
    try:
        detail = check(ctx)
    except _CheckFailed as failed:
        return CheckResult(name=name, status="INVALID", detail=failed.detail, entry=failed.entry)
    except _CheckSkipped as skipped:
        return CheckResult(name=name, status="SKIPPED", detail=skipped.detail)
    except Exception as exc:
        # A verifier answers every input with a report: an error no check foresaw means the property was not
        # established, so it is INVALID — never a crash, never VALID.
        return CheckResult(
            name=name, status="INVALID", detail=f"internal error while checking: {type(exc).__name__}: {_quote(exc)}"
        )
    return CheckResult(name=name, status="VALID", detail=detail)


def _parse(bundle: object) -> Bundle:
    if not isinstance(bundle, dict):
        raise UnusableBundle("a bundle is a JSON object")
    try:
        return Bundle.model_validate(bundle)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        details = [
            ErrorDetail(
                message=error["msg"],
                property=str(error["loc"][0]) if error["loc"] else None,
                json_path="$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]),
            )
            for error in errors[:10]
        ]
        raise UnusableBundle(f"not an eBL bundle (version 1): {_validation_detail(exc)}", details=details) from None


def _history(ctx: _Context) -> list[HistoryItem]:
    return [
        HistoryItem(
            sequence=entry.payload.sequence,
            actionCode=entry.payload.transaction.actionCode,
            actor=entry.payload.transaction.actor.to_json(),
            recipient=entry.payload.transaction.recipient.to_json() if entry.payload.transaction.recipient else None,
            actionDateTime=entry.payload.transaction.actionDateTime,
            eblPlatform=entry.payload.eblPlatform,
        )
        for entry in ctx.entries
        if entry.payload is not None
    ]


def _document(ctx: _Context) -> DocumentState:
    facts, state = ctx.folded
    try:
        as_of: str | None = ctx.head[0].exportedAt
    except _CheckFailed:
        as_of = None
    return DocumentState(
        transportDocumentReference=facts.transport_document_reference,
        status=state.status,
        possessor=dict(state.possessor),
        titleHolder=dict(state.title_holder) if state.title_holder is not None else None,
        eblPlatform=state.platform,
        asOf=as_of,
    )


def verify_bundle(bundle: object, trust: TrustStore, *, witnesses: int = 0) -> VerificationReport:
    """Verify a bundle (parsed JSON) against ``trust``; raise :class:`UnusableBundle` only if it is not a bundle.

    ``witnesses`` is the policy for the log checkpoint: besides the log's own node key, how many other trusted
    nodes must have cosigned it (C2SP tlog-cosignature).
    """
    ctx = _Context(_parse(bundle), trust, witnesses)
    checks = [_run(name, check, ctx) for name, check in _CHECKS]
    state_valid = next(c for c in checks if c.name == CheckName.STATE).status == "VALID"
    return VerificationReport(
        verdict="INVALID" if any(c.status == "INVALID" for c in checks) else "VALID",
        checks=checks,
        # The state the chain claims, shown whenever it folds; the verdict says whether the chain is genuine.
        document=_document(ctx) if state_valid else None,
        history=_history(ctx),
    )
