"""Use cases of one platform node: issue, act, read, export and verify eBLs.

Each use case runs in one database transaction, raises errors from :mod:`ebl.errors`, and returns plain models;
the HTTP adapter (``api/``) only parses, calls and serialises. Authorization lives here: who is involved in an
eBL, which role may do what. The rules of the eBL itself live in :mod:`ebl.chain`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, text

from ebl import canonical, chain, credentials, jws, keys, pint
from ebl.bundle import assemble, sign_head
from ebl.chain import ActionCode, DocumentFacts, EblState, EntryPayload, Status, Transaction
from ebl.config import Settings
from ebl.corridor import CORRIDOR_PARTIES
from ebl.directory import Caller, Directory, party_ref_json
from ebl.document import validate_transport_document
from ebl.errors import (
    BadRequest,
    Conflict,
    DuplicateIssuance,
    ErrorDetail,
    Forbidden,
    IdempotencyKeyReused,
    InvalidDocument,
    InvalidSignature,
    LostRace,
    MalformedJson,
    NotFound,
    PeerUnavailable,
    Unauthenticated,
)
from ebl.log import note
from ebl.log.ledger import Ledger, default_origin
from ebl.log.merkle import ProofError
from ebl.log.witness import AddCheckpoint, Witness
from ebl.logs import shown_url
from ebl.parties import NONE_PARTY, IssueToParty, PartyRef, Role, code_keys
from ebl.store.db import Database, DatabaseSetupError, at_end, make_engine, migrate, read_session, write
from ebl.store.repositories import (
    Advance,
    Ebl,
    EblRecord,
    EblRepository,
    Entry,
    IdempotencyRepository,
    LogRepository,
    NewEbl,
    NewEntry,
    PartyRepository,
    TransferRepository,
    WitnessRepository,
)
from ebl.store.tables import (
    CheckpointRow,
    CosignatureRow,
    IdempotencyRow,
    LogLeafRow,
    PartyKeyRow,
    PartyRow,
)
from ebl.transfers import Transfers
from ebl.verify import VerificationReport, verify_bundle

MAX_PAGE_SIZE = 100
IDEMPOTENCY_CLAIM_ABANDONED_AFTER = timedelta(seconds=60)
"""A claimed Idempotency-Key with no answer this long after its claim belongs to a request that never finished (its
node stopped mid-way): a retry may claim it again. No request takes this long on a running node."""
logger = logging.getLogger("ebl.node")
_Model = TypeVar("_Model", bound=BaseModel)
_MANIFEST_PATH = "$.issuanceManifestSignedContent"
"""Where a request carries the carrier's signed issuance manifest (both issuance endpoints)."""


# -- request and response models ----------------------------------------------------------------------------


class IssueRequest(BaseModel):
    """``POST /v1/ebls``: issue a transport document to its first possessor."""

    model_config = ConfigDict(extra="forbid")

    transportDocument: Annotated[
        dict[str, Any], Field(description="DCSA eBL 3.0.3 TransportDocument, hashed exactly as received")
    ]
    issueTo: IssueToParty
    issuanceManifestSignedContent: Annotated[
        str | None,
        Field(
            pattern=jws.COMPACT_PATTERN.pattern,
            description="DCSA IssuanceManifest signed by the carrier; without it the node signs one with the "
            "carrier's custodial key",
        ),
    ] = None


class KeyRegistration(BaseModel):
    """``POST /v1/parties/me/keys``: a public key the caller holds, with a proof that it holds its private key."""

    model_config = ConfigDict(extra="forbid")

    publicJwk: Annotated[
        dict[str, Any], Field(description="the public JWK: Ed25519, P-256 or RSA of 2048 bits or more")
    ]
    proof: Annotated[
        str,
        Field(
            pattern=jws.COMPACT_PATTERN.pattern,
            description='a compact JWS signed with this key over {"partyId": <the caller\'s party id>, '
            '"eblPlatform": <this node\'s platform>}: whoever registers a key holds it, and a proof made for one '
            "party or platform registers it for no other",
        ),
    ]


class _KeyRegistrationProof(BaseModel):
    model_config = ConfigDict(extra="forbid")

    partyId: str
    eblPlatform: str


class CarrierVisualisation(BaseModel):
    """DCSA ``eBLVisualisationByCarrier``: the carrier's rendering of the document, which its manifest signs."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=100)]
    content: Annotated[str, Field(pattern=r"^[A-Za-z0-9+/]*={0,2}$", description="the file, in base64")]
    contentType: str | None = None

    def checksum(self) -> str:
        """SHA-256 of the decoded content, as the issuance manifest's ``eBLVisualisationByCarrierChecksum``."""
        try:
            content = base64.b64decode(self.content, validate=True)
        except binascii.Error as exc:
            raise BadRequest(
                f"eBLVisualisationByCarrier.content is not base64: {exc}",
                details=[ErrorDetail(message="not base64", json_path="$.eBLVisualisationByCarrier.content")],
            ) from None
        return canonical.sha256_hex(content)


class DcsaIssuanceRequest(BaseModel):
    """``PUT /v3/ebl-issuance-requests``: DCSA eBL Issuance 3.0.3 ``IssuanceRequest``."""

    model_config = ConfigDict(extra="forbid")

    document: dict[str, Any]
    issueTo: IssueToParty
    issuanceManifestSignedContent: Annotated[str, Field(pattern=jws.COMPACT_PATTERN.pattern)]
    eBLVisualisationByCarrier: Annotated[
        CarrierVisualisation | None,
        Field(description="checked against the manifest's eBLVisualisationByCarrierChecksum; not kept"),
    ] = None
    transportDocumentReplacements: Annotated[
        dict[str, Any] | None, Field(description="amendment metadata the manifest does not cover; not kept")
    ] = None


class TransactionRequest(BaseModel):
    """``POST /v1/ebls/{ref}/transactions``: one action on an eBL, signed by the node for the caller."""

    model_config = ConfigDict(extra="forbid")

    actionCode: ActionCode
    recipient: PartyRef | None = Field(
        None, description="resolved by eblPlatform and identifying code; absent for SIGN, BLANK_ENDORSE, SACC"
    )
    reasonCode: chain.ReasonCode | None = Field(None, description="SWTP, COD or SWI; SURRENDER_FOR_AMENDMENT only")
    comments: Annotated[str, Field(max_length=255, pattern=r"^\S(?:.*\S)?$")] | None = None


class EblView(BaseModel):
    transportDocumentReference: str
    transportDocumentSubReference: str | None = None
    transportDocument: dict[str, Any]
    transportDocumentChecksum: str
    status: Status
    possessor: dict[str, Any]
    titleHolder: dict[str, Any] | None = Field(description="the endorsee or consignee; null while blank-endorsed")
    eblPlatform: str
    chainLength: int


class EblPage(BaseModel):
    items: list[EblView]
    nextCursor: str | None


class _PartyBase(BaseModel):
    id: str
    partyName: str
    eblPlatform: str
    roles: list[str]
    identifyingCodes: list[dict[str, Any]]


class PartyInfo(_PartyBase):
    publicKeys: list[dict[str, Any]]


class SandboxParty(_PartyBase):
    apiKey: str


def _party_fields(row: PartyRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "partyName": row.party_name,
        "eblPlatform": row.ebl_platform,
        "roles": row.roles,
        "identifyingCodes": row.identifying_codes,
    }


@dataclass(frozen=True)
class _Recipient:
    """Whom an action hands the eBL to: a party of this node, or one of a peer platform."""

    ref: dict[str, Any]
    local_id: str | None

    @property
    def local_ids(self) -> list[str]:
        return [self.local_id] if self.local_id is not None else []


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: str


# -- helpers --------------------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _row_ref(row: PartyRow) -> dict[str, Any]:
    return party_ref_json(row.party_name, row.ebl_platform, row.identifying_codes)


MAX_CHAIN_ENTRIES = 1_000
"""The entries one eBL may have here before only a surrender and its answer are taken. Every entry travels in each
later PINT envelope, and a possessor who repeated ``SIGN`` without end would otherwise make the eBL too large for any
platform to take (a real one has a few dozen). A surrender is never refused for it: the cargo must be deliverable."""
_SURRENDER_ACTIONS = frozenset(
    {ActionCode.SURRENDER_FOR_DELIVERY, ActionCode.SURRENDER_FOR_AMENDMENT, ActionCode.SACC, ActionCode.SREJ}
)


RECEIVER_VALIDATION_SECONDS = 5.0
"""How long an action waits for the peer's DCSA receiver validation, its whole answer included."""


def _confirmed_party(answer: httpx.Response, platform: str, codes: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The party a DCSA receiver validation answer confirms, as the chain will record it; ``None`` for an answer that
    is not I-JSON ``{"partyName": ...}`` with a name a party reference may hold. The chain entry is signed with it:
    a name the node could not read back (U+0000, one DCSA refuses) would leave the eBL held by no one."""
    try:
        body = canonical.loads(answer.content)
    except MalformedJson:
        return None
    name = body.get("partyName") if isinstance(body, dict) else None
    if not isinstance(name, str) or canonical.holds_nul(answer.content, body):
        return None
    try:
        return PartyRef.model_validate(party_ref_json(name, platform, codes)).to_json()
    except ValidationError:
        return None


def hash_api_key(api_key: str) -> str:
    # API keys carry 256 random bits, so one SHA-256 is enough: there is nothing to brute-force.
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def _validation_error(exc: ValidationError, prefix: str = "$") -> BadRequest:
    details = [
        ErrorDetail(
            message=error["msg"],
            code="SCHEMA",
            property=str(error["loc"][-1]) if error["loc"] else None,
            json_path=prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]),
        )
        for error in exc.errors(include_url=False)
    ]
    return BadRequest("the request body does not match the expected shape", details=details)


def parse_model(model: type[_Model], value: Any) -> _Model:
    """Validate a parsed JSON value into ``model``, turning pydantic's errors into a 400 with JSON paths."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise _validation_error(exc) from None


def _validate_document(document: Any, *, at: str) -> None:
    """Validate a transport document, reporting JSON paths within the request body."""
    try:
        validate_transport_document(document)
    except InvalidDocument as exc:
        details = [
            replace(detail, json_path=at + detail.json_path.removeprefix("$") if detail.json_path else at)
            for detail in exc.details
        ]
        raise InvalidDocument(exc.message, details=details) from None


def _named_codes(document: Mapping[str, Any]) -> set[tuple[str, str]]:
    """The identifying codes of every party the document names."""
    parties = document.get("documentParties", {})
    named: list[Any] = [v for k, v in parties.items() if k not in ("notifyParties", "other")]
    named += parties.get("notifyParties", []) + [o.get("party") for o in parties.get("other", [])]
    return set().union(*(code_keys(p) for p in named))


def _unknown_party(platform: str, where: str) -> BadRequest:
    return _party_refused(f"no party on {platform} has the identifying codes of {where}", "UNKNOWN_PARTY", where)


def _party_refused(message: str, code: str, where: str) -> BadRequest:
    return BadRequest(
        message, code=code, details=[ErrorDetail(message=message, property=where, json_path=f"$.{where}")]
    )


def _transactions(entries: Sequence[Entry]) -> list[Transaction]:
    return [EntryPayload.model_validate(jws.unverified_payload(e.jws)).transaction for e in entries]


# -- the node -------------------------------------------------------------------------------------------------


class _Recorded:
    """What the writes of a batch record at its end (:meth:`Node._record`)."""

    __slots__ = ("entries", "involved")

    def __init__(self) -> None:
        self.entries: list[NewEntry] = []
        self.involved: list[tuple[int, str]] = []


def _advance(session: Session, moves: list[tuple[Advance, LostRace]]) -> None:
    """Move on the eBLs that the actions of a write batch act on, in one statement (:func:`ebl.store.db.at_end`, done
    first). If one was moved by another action since it was read, that action has lost: here it fails the batch,
    which runs again write by write, and there, alone in its write, it answers 409 with nothing written."""
    # Fewer eBLs moved than actions: one was moved since, or two actions move one eBL. In a batch any exception sends
    # it write by write; alone in its write, the one action is the one that lost.
    if len(EblRepository(session).advance([move for move, _ in moves])) < len(moves):
        raise moves[0][1]


@dataclass(slots=True)
class _Issuance:
    """An issuance's write, done at the end of its batch (:func:`_store_issued`)."""

    new: NewEbl
    record: Callable[[Session, int], None]
    """Records the issuance's chain entry, log leaf and involvements once its eBL has an id."""
    duplicate: DuplicateIssuance
    stored: Ebl | None = None


def _store_issued(session: Session, issuances: list[_Issuance]) -> None:
    """Store the eBLs that the issuances of a write batch issue, in one statement, then record each one's chain entry
    with its eBL's id (:func:`ebl.store.db.at_end`, done first). A reference taken already is looked at alone: a
    duplicate, or the amended re-issue of a surrendered eBL. Two issuances of one reference in the batch fail it, and
    it runs again write by write, where the second finds the first's eBL."""
    references = {issuance.new.reference for issuance in issuances}
    if len(references) < len(issuances):
        raise issuances[-1].duplicate
    ebls = EblRepository(session)
    stored = ebls.add_first([issuance.new for issuance in issuances])
    for issuance in issuances:
        issuance.stored = stored.get(issuance.new.reference) or _reissue(ebls, issuance)
        issuance.record(session, issuance.stored.id)


def _reissue(ebls: EblRepository, issuance: _Issuance) -> Ebl:
    """Store an eBL whose reference is taken, if it is the amended re-issue of the surrendered eBL that holds it,
    which it then supersedes; else it is a duplicate (409)."""
    new = issuance.new
    latest = ebls.latest(new.reference, for_update=True)
    if latest is not None:
        if latest.document_checksum == new.document_checksum:
            raise DuplicateIssuance(f"{new.reference} is already issued with this document")
        if (
            latest.status != Status.SURRENDERED_FOR_AMENDMENT
            or new.sub_reference == latest.transport_document_sub_reference
        ):
            raise DuplicateIssuance(
                f"{new.reference} is already issued; an amended document is issued only after an accepted "
                "SURRENDER_FOR_AMENDMENT, with a new transportDocumentSubReference"
            )
        ebls.supersede(latest.id)
    try:
        return ebls.add(new)
    except IntegrityError:
        raise issuance.duplicate from None


def _store_recorded(session: Session, recorded: _Recorded) -> None:
    ebls = EblRepository(session)
    ebls.add_entries(recorded.entries)
    ebls.involve(recorded.involved)


class _EblTally:
    """How many eBL rows the database holds: counted in full once, then only past the highest id already counted.

    Exact, because rows are never deleted and one write transaction at a time inserts them (the write turn), so no row
    commits with an id below one already counted. A ``COUNT(*)`` at every metrics scrape read the whole table on
    PostgreSQL: 0.3–0.7 s at 10^6 eBLs (docs/BENCHMARKS.md).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # scrapes run on threads, perhaps two at once
        self._count = 0
        self._highest_id = 0

    def update(self, ebls: EblRepository) -> int:
        with self._lock:
            added, self._highest_id = ebls.count_after(self._highest_id)
            self._count += added
            return self._count


def _refuse_another_nodes_database(engine: Engine, settings: Settings) -> None:
    """Refuse a database whose log this node did not sign: another node's, or this one's under another platform code.
    Opening it would seed parties, keys and checkpoints of the wrong node into it, and its tables are append-only."""
    with read_session(engine) as session:
        latest = LogRepository(session).latest_checkpoint()
    if latest is None:
        return
    origin = settings.log_origin or default_origin(settings.platform)
    key_path = settings.keys_dir / f"node-{settings.platform}.pem"
    node_key = keys.load_or_create_node_key(key_path).public.ed25519() if key_path.exists() else None
    try:
        if node_key is None:
            raise note.NoteError(f"there is no node key at {key_path}")
        note.open_note(latest.note, [note.verifier(origin, node_key)])
    except note.NoteError as exc:
        raise DatabaseSetupError(
            f"this database holds the log of another node: its checkpoints are not signed as {origin} with this "
            f"node's key ({exc}); check EBL_PLATFORM, EBL_KEYS_DIR, EBL_LOG_ORIGIN and EBL_DATABASE_URL"
        ) from None


class Node:
    """One platform node: its database, its keys and its use cases."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.platform = settings.platform
        self.engine = engine
        self.db = Database(engine)
        keys_dir = settings.keys_dir
        self.node_key = keys.load_or_create_node_key(keys_dir / f"node-{self.platform}.pem")
        self._kek = keys.load_or_create_secret(keys_dir / f"kek-{self.platform}.bin")
        self._parties = Directory(engine, self._kek)
        trust_path = keys_dir / "trust.json"
        trust = keys.TrustStore.load(trust_path) if trust_path.exists() else keys.TrustStore({})
        self.trust = trust.with_node_key(self.platform, self.node_key.public)
        keys.write_public_file(trust_path, json.dumps(self.trust.to_json(), indent=2) + "\n")
        self.ledger = Ledger(
            settings.log_origin or default_origin(self.platform),
            self.node_key,
            checkpoint_every=settings.checkpoint_every_entries,
        )
        assert isinstance(self.node_key.private, Ed25519PrivateKey), "node keys are Ed25519"
        self.witness = Witness(
            note.witness_name(self.platform),
            self.node_key.private,
            {default_origin(p): self.trust.ed25519_node_keys(p) for p in self.trust.node_keys if p != self.platform},
        )
        self._sandbox_seed = (
            keys.load_or_create_secret(keys_dir / f"sandbox-{self.platform}.bin") if settings.is_sandbox else None
        )
        self.transfers = Transfers(self)
        self._ebl_tally = _EblTally()
        self.departed: Callable[[], None] = lambda: None
        """Called after an action sent an eBL to another platform: the API wakes its courier with it."""

    @classmethod
    def open(cls, settings: Settings) -> Node:
        engine = make_engine(settings.database_url)
        migrate(engine)
        _refuse_another_nodes_database(engine, settings)
        node = cls(settings, engine)
        if settings.is_sandbox:
            # A lone node seeds the whole corridor; a node with peers seeds its own side.
            node.seed_corridor_parties(side=node.platform if settings.peers else None)
        node.sign_checkpoint()
        return node

    def close(self) -> None:
        """Close the database connections this node holds (it opens new ones if it is used again)."""
        self.db.close()
        self.engine.dispose()

    # -- parties and authentication --

    def _sandbox_api_key(self, party_id: str) -> str:
        # Derived, not stored: the database keeps only hashes, yet the sandbox can show every key again.
        assert self._sandbox_seed is not None
        digest = hmac.new(self._sandbox_seed, party_id.encode(), hashlib.sha256).digest()
        return "sbx_" + base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def seed_corridor_parties(self, side: str | None) -> None:
        """Create the corridor parties (all seven, or one side's) on this node, once.

        Two processes of one node that start together seed in turn (writes take turns), and the second finds the
        parties there."""

        def seed(session: Session) -> None:
            parties = PartyRepository(session)
            existing = {(row.party_name, row.ebl_platform) for row in parties.on_platform(self.platform)}
            for seed in CORRIDOR_PARTIES:
                if (side is not None and seed.side != side) or (seed.party_name, self.platform) in existing:
                    continue
                party_id = uuid.uuid5(uuid.NAMESPACE_URL, f"ebl:{self.platform}:{seed.party_code}").hex
                self._add_party(
                    session,
                    party_id=party_id,
                    name=seed.party_name,
                    roles=[seed.role.value],
                    codes=seed.identifying_codes(),
                    api_key=self._sandbox_api_key(party_id),
                )

        write(self.engine, seed)

    def _add_party(
        self,
        session: Session,
        *,
        party_id: str,
        name: str,
        roles: list[str],
        codes: list[dict[str, Any]],
        api_key: str,
    ) -> PartyRow:
        now = _now()
        row = PartyRow(
            id=party_id,
            party_name=name,
            ebl_platform=self.platform,
            roles=roles,
            identifying_codes=codes,
            api_key_hash=hash_api_key(api_key),
            created_at=now,
        )
        parties = PartyRepository(session)
        parties.add(row)
        signing_key = keys.generate("Ed25519")
        parties.add_key(
            self._key_row(row, signing_key.public, keys.seal(signing_key.private, self._kek, context=signing_key.kid))
        )
        return row

    def _key_row(self, party: PartyRow, public: keys.PublicKey, sealed: bytes | None) -> PartyKeyRow:
        now = _now()
        credential = credentials.issue(
            self.node_key,
            party=_row_ref(party),
            roles=party.roles,
            public_key=public,
            issued_at=chain.action_datetime(now),
        )
        return PartyKeyRow(
            kid=public.kid,
            party_id=party.id,
            public_jwk=public.to_json(),
            sealed_private_key=sealed,
            credential=credential,
            created_at=now,
        )

    def authenticate(self, api_key: str) -> Caller:
        caller = self._parties.caller(hash_api_key(api_key))
        if caller is None:
            raise Unauthenticated("the API key is not valid")
        return caller

    def remembered_caller(self, api_key: str) -> Caller | None:
        """The caller of a valid API key that was used before (no database access), else ``None``."""
        return self._parties.remembered_caller(hash_api_key(api_key))

    async def sandbox_parties(self) -> list[SandboxParty]:
        if not self.settings.is_sandbox:
            raise NotFound("the sandbox is off on this node")
        rows = await self.db.read(lambda session: PartyRepository(session).on_platform(self.platform))
        return [SandboxParty(**_party_fields(row), apiKey=self._sandbox_api_key(row.id)) for row in rows]

    async def directory(self) -> list[PartyInfo]:
        def read(session: Session) -> list[PartyInfo]:
            parties = PartyRepository(session)
            public_keys: dict[str, list[dict[str, Any]]] = {}
            for key in parties.all_keys():
                public_keys.setdefault(key.party_id, []).append(key.public_jwk)
            return [PartyInfo(**_party_fields(row), publicKeys=public_keys.get(row.id, [])) for row in parties.all()]

        return await self.db.read(read)

    async def register_key(self, caller: Caller, request: KeyRegistration) -> dict[str, Any]:
        """Register a public key the caller proves it holds; the node vouches for it with a credential. Without the
        proof, anyone could have the node vouch that a key they saw somewhere (another party's, this node's own)
        is theirs, and keep its holder from registering it."""
        public = keys.parse_public_jwk(request.publicJwk)
        try:
            signed = _KeyRegistrationProof.model_validate(jws.verify(request.proof, public))
        except ValidationError:
            raise BadRequest(
                'the proof\'s payload is not {"partyId": ..., "eblPlatform": ...}', code="INVALID_PROOF_OF_POSSESSION"
            ) from None
        if (signed.partyId, signed.eblPlatform) != (caller.id, self.platform):
            raise BadRequest(
                f"the proof is signed for party {signed.partyId!r} on {signed.eblPlatform!r}, not for the caller "
                f"({caller.id!r} on {self.platform!r})",
                code="INVALID_PROOF_OF_POSSESSION",
            )

        def register(session: Session) -> PartyKeyRow:
            parties = PartyRepository(session)
            if parties.key(public.kid) is not None:
                raise Conflict("this key is already registered", code="KEY_ALREADY_REGISTERED")
            party = parties.get(caller.id)
            assert party is not None
            row = self._key_row(party, public, sealed=None)
            parties.add_key(row)
            return row

        row = await self.db.write(register)
        return {"kid": row.kid, "publicJwk": row.public_jwk, "credential": row.credential}

    async def jwks(self) -> dict[str, Any]:
        party_keys = await self.db.read(lambda session: [row.public_jwk for row in PartyRepository(session).all_keys()])
        return {"keys": [self.node_key.public.to_json(), *party_keys]}

    async def _resolve(self, ref: Mapping[str, Any], platform: str, where: str) -> _Recipient:
        """The party ``ref`` names on ``platform``: one party that may hold an eBL, confirmed by its platform if that
        is another."""
        if platform != self.platform:
            return _Recipient(await self._remote_party(ref, platform, where), None)
        found = self._parties.with_codes(platform, code_keys(ref))
        if not found:
            raise _unknown_party(platform, where)
        if len(found) > 1:
            # Possession of a document of title never goes to whichever of them matched first.
            raise _party_refused(
                f"the identifying codes of {where} belong to {len(found)} different parties of {platform}",
                "AMBIGUOUS_PARTY",
                where,
            )
        party = found[0]
        if party.is_verifier:
            raise _party_refused(
                f"{where} {party.ref['partyName']} is a verifier: verifiers read eBLs and never hold them",
                "VERIFIER_CANNOT_HOLD",
                where,
            )
        return _Recipient(party.ref, party.id)

    async def _remote_party(self, ref: Mapping[str, Any], platform: str, where: str) -> dict[str, Any]:
        """A party on a peer platform, as that platform names it (DCSA receiver validation). Without the peer's answer
        the action waits: an eBL sent to a party the peer then refuses would be held nowhere, and an endorsee only
        named in this chain would be checked by no platform ever."""
        url = self.settings.peers.get(platform)
        if url is None:
            raise Conflict(
                f"{where} is on platform {platform}; this node ({self.platform}) has no route to it",
                code="NO_ROUTE_TO_PLATFORM",
            )
        codes = [dict(c) for c in ref["identifyingCodes"]]
        try:
            # A deadline for the whole answer: httpx's timeout bounds each read, and a peer sending a byte at a time
            # would hold the action open for minutes.
            async with asyncio.timeout(RECEIVER_VALIDATION_SECONDS), httpx.AsyncClient() as client:
                answer = await client.post(f"{url.rstrip('/')}/v3/receiver-validation", json=codes[0])
        except (httpx.HTTPError, TimeoutError) as exc:
            failure = str(exc) or type(exc).__name__
        else:
            if answer.status_code == 404:
                raise _unknown_party(platform, where)
            named = _confirmed_party(answer, platform, codes) if answer.status_code == 200 else None
            if named is not None:
                return named
            failure = f"it answered {answer.status_code}" + (
                " without a partyName this node can record" if answer.status_code == 200 else ""
            )
        raise PeerUnavailable(
            f"{where} is on platform {platform}, which did not confirm the party ({failure}); try again later"
        )

    def _custodial_key(self, party_id: str) -> keys.SigningKey:
        key = self._parties.custodial_key(party_id)
        if key is None:
            raise Forbidden("this party holds its own key: the node cannot sign for it", code="NO_CUSTODIAL_KEY")
        return key

    # -- issuance --

    async def issue(
        self,
        caller: Caller,
        request: IssueRequest,
        *,
        document_path: str = "$.transportDocument",
        visualisation_checksum: str | None = None,
    ) -> EblView:
        """Issue a transport document. ``visualisation_checksum``: the SHA-256 of the carrier's visualisation that a
        DCSA IssuanceRequest carried; the carrier's manifest must name it, and name none when there is none."""
        if Role.CARRIER not in caller.roles:
            raise Forbidden("only a carrier issues eBLs", code="CARRIER_ONLY")
        document = request.transportDocument
        _validate_document(document, at=document_path)
        issue_to_json = request.issueTo.model_dump(exclude_none=True)
        facts = DocumentFacts.of(document)
        document_json, document_checksum = canonical.text_and_checksum(document)
        # Everything that needs no lock is done before the write, which then only checks and stores: the writes
        # waiting meanwhile wait for as short a time as they can.
        recipient = await self._resolve(issue_to_json, request.issueTo.sendToPlatform, "issueTo")
        signing_key = self._custodial_key(caller.id)
        issue_to_checksum = canonical.checksum(issue_to_json)
        manifest = request.issuanceManifestSignedContent
        if manifest is None:
            signed = chain.IssuanceManifest(documentChecksum=document_checksum, issueToChecksum=issue_to_checksum)
            manifest = jws.sign(signed.model_dump(exclude_none=True), signing_key)
        else:
            await self._check_manifest(caller, manifest, document_checksum, issue_to_checksum, visualisation_checksum)
        named = self._parties.with_codes(self.platform, _named_codes(document))
        tx = Transaction(
            actionCode=ActionCode.ISSUE,
            actor=caller.ref(),
            recipient=PartyRef.model_validate(recipient.ref),
            actionDateTime=chain.action_datetime(_now()),
        )
        state = chain.apply(None, facts, tx)
        payload = EntryPayload(
            transportDocumentReference=facts.transport_document_reference,
            transportDocumentChecksum=document_checksum,
            sequence=0,
            transaction=tx,
            eblPlatform=self.platform,
            issuanceManifestSignedContent=manifest,
        )
        entry = chain.sign_entry(payload, signing_key)

        new = NewEbl(
            reference=facts.transport_document_reference,
            sub_reference=str(document.get("transportDocumentSubReference", "")),
            document_json=document_json,
            document_checksum=document_checksum,
            issue_to=issue_to_json,
            status=state.status.value,
            chain_length=1,
            created_at=_now(),
        )

        def record(session: Session, ebl_id: int) -> None:
            self._record(session, ebl_id, payload, entry, [caller.id, *recipient.local_ids, *(p.id for p in named)])
            if state.platform != self.platform:
                self.transfers.record_departure(session, ebl_id, 0, state.platform)

        issuance = _Issuance(
            new, record, DuplicateIssuance(f"{new.reference} was issued concurrently by another request")
        )

        def store(session: Session) -> None:
            at_end(session, _store_issued, list, _store_issued, first=True).append(issuance)

        try:
            await self.db.write(store)
        except IntegrityError:
            raise issuance.duplicate from None
        assert issuance.stored is not None  # set by _store_issued, in the transaction that committed
        view = self._view(issuance.stored, state, document)
        if state.platform != self.platform:
            self.departed()
        return view

    async def _check_manifest(
        self,
        caller: Caller,
        manifest: str,
        document_checksum: str,
        issue_to_checksum: str,
        visualisation_checksum: str | None,
    ) -> None:
        kid = jws.kid(manifest)
        key_row = await self.db.read(lambda session: PartyRepository(session).key(kid))
        if key_row is None or key_row.party_id != caller.id:
            raise InvalidSignature(
                "the issuance manifest is not signed by a key of the issuing carrier",
                details=[ErrorDetail(message="unknown kid", json_path=_MANIFEST_PATH)],
            )
        try:
            payload = chain.IssuanceManifest.model_validate(jws.verify(manifest, keys.PublicKey(key_row.public_jwk)))
        except ValidationError as exc:
            # The fields are inside the JWS, where no JSONPath of the request reaches: the path names the JWS.
            raise InvalidSignature(
                "the issuance manifest's payload is not a DCSA IssuanceManifest",
                details=[
                    ErrorDetail(
                        message=error["msg"],
                        property=str(error["loc"][-1]) if error["loc"] else None,
                        json_path=_MANIFEST_PATH,
                    )
                    for error in exc.errors(include_url=False, include_input=False)
                ],
            ) from None
        mismatches = []
        if payload.documentChecksum != document_checksum:
            mismatches.append(("documentChecksum", "does not match the RFC 8785 checksum of the document"))
        if payload.issueToChecksum != issue_to_checksum:
            mismatches.append(("issueToChecksum", "does not match the RFC 8785 checksum of issueTo"))
        if payload.eBLVisualisationByCarrierChecksum != visualisation_checksum:
            mismatches.append(
                (
                    "eBLVisualisationByCarrierChecksum",
                    "does not match the SHA-256 of eBLVisualisationByCarrier's decoded content"
                    if visualisation_checksum is not None
                    else "names a carrier visualisation this request does not carry",
                )
            )
        if mismatches:
            raise InvalidSignature(
                "the issuance manifest does not describe this request",
                details=[ErrorDetail(message=m, property=p, json_path=_MANIFEST_PATH) for p, m in mismatches],
            )

    def _record(
        self, session: Session, ebl_id: int, payload: EntryPayload, entry: str, involved: Iterable[str]
    ) -> None:
        """Store a signed chain entry with its log leaf, and the parties now involved in the eBL, in the write's
        transaction: after its batch's last write, with the batch's other entries (:func:`ebl.store.db.at_end`), a
        statement for all the entries, one for all the involvements, and the ledger's few for all the leaves.
        The entry's unique ``(eBL, sequence)`` is checked then: the write fails with ``IntegrityError``."""
        checksum = chain.entry_checksum(entry)
        recorded = at_end(session, self._record, _Recorded, _store_recorded)
        recorded.entries.append(
            NewEntry(ebl_id, Entry(payload.sequence, entry, checksum), payload.transaction.actionCode.value, _now())
        )
        recorded.involved += [(ebl_id, party_id) for party_id in involved]
        self.ledger.append(session, checksum, _now())

    # -- actions --

    async def act(self, caller: Caller, reference: str, request: TransactionRequest) -> EblView:
        """Apply one action. The entry is built and signed from a read of the chain, then stored only if the chain
        has not moved since: otherwise another action won the race and this one answers 409."""
        if caller.is_verifier:
            raise Forbidden("verifiers read eBLs; they do not act on them", code="VERIFIER_READ_ONLY")

        def load(session: Session) -> EblRecord:
            record = self._visible(session, caller, reference)
            if not record.party_chain_complete:
                raise Conflict(
                    f"{reference} came from a platform that sent no party-signed chain: it can be read here, not "
                    "acted on",
                    code="PARTY_CHAIN_MISSING",
                )
            return record

        record = await self.db.read(load)
        row, entries = record.ebl, record.entries
        if row.superseded:
            raise Conflict(f"{reference} was replaced by an amended document", code="SUPERSEDED")
        if len(entries) >= MAX_CHAIN_ENTRIES and request.actionCode not in _SURRENDER_ACTIONS:
            raise Conflict(
                f"{reference} has {len(entries)} chain entries, as many as this node records for one eBL; it can still "
                "be surrendered",
                code="CHAIN_TOO_LONG",
            )
        document = json.loads(row.document_json)
        facts = DocumentFacts.of(document)
        transactions = _transactions(entries)
        state = chain.fold(facts, transactions)
        recipient = await self._recipient(request, state)
        signing_key = self._custodial_key(caller.id)
        tx = Transaction(
            actionCode=request.actionCode,
            actor=caller.ref(),
            recipient=PartyRef.model_validate(recipient.ref) if recipient else None,
            actionDateTime=chain.action_datetime(_now()),
            reasonCode=request.reasonCode,
            comments=request.comments,
        )
        new_state = chain.apply(state, facts, tx)
        payload = EntryPayload(
            transportDocumentReference=row.transport_document_reference,
            transportDocumentChecksum=row.document_checksum,
            sequence=len(entries),
            previousEntryChecksum=entries[-1].checksum,
            transaction=tx,
            eblPlatform=self.platform,
        )
        entry = chain.sign_entry(payload, signing_key)
        lost = LostRace(f"another action on {reference} was recorded first; read it again")
        destination = str(pint.addressee(tx.actionCode, state, new_state)["eblPlatform"])
        departs = destination != self.platform

        def store(session: Session) -> None:
            move = Advance(row.id, len(entries), new_state.status.value, new_state.length)
            at_end(session, _advance, list, _advance, first=True).append((move, lost))
            self._record(session, row.id, payload, entry, [caller.id, *(recipient.local_ids if recipient else [])])
            if departs:
                self.transfers.record_departure(session, row.id, payload.sequence, destination)

        try:
            await self.db.write(store)
        except IntegrityError:  # the chain entry's unique (eBL, sequence): a race the compare-and-set did not see
            raise lost from None
        view = self._view(row, new_state, document)
        if departs:
            self.departed()
        return view

    async def _recipient(self, request: TransactionRequest, state: EblState) -> _Recipient | None:
        if request.recipient is not None:
            return await self._resolve(request.recipient.to_json(), request.recipient.eblPlatform, "recipient")
        if request.actionCode == ActionCode.SREJ and state.surrender_requester is not None:
            # SREJ returns the eBL to whoever asked to surrender it: that party is the recipient.
            requester = state.surrender_requester
            return await self._resolve(requester, str(requester["eblPlatform"]), "recipient")
        return None

    # -- reading --

    def _visible(self, session: Session, caller: Caller, reference: str) -> EblRecord:
        record = EblRepository(session).read(reference, party_id=None if caller.is_verifier else caller.id)
        # 404 whether it does not exist or the caller may not see it: existence is not revealed.
        if record is None:
            raise NotFound(f"no eBL {reference} that you may see")
        return record

    def _view(self, row: Ebl, state: EblState, document: dict[str, Any]) -> EblView:
        return EblView(
            transportDocumentReference=row.transport_document_reference,
            transportDocumentSubReference=row.transport_document_sub_reference or None,
            transportDocument=document,
            transportDocumentChecksum=row.document_checksum,
            status=Status.VOIDED if row.superseded else state.status,
            possessor=dict(state.possessor),
            titleHolder=dict(state.title_holder) if state.title_holder is not None else None,
            eblPlatform=state.platform,
            chainLength=state.length,
        )

    async def get(self, caller: Caller, reference: str) -> EblView:
        def load(session: Session) -> tuple[Ebl, list[Transaction]]:
            record = self._visible(session, caller, reference)
            return record.ebl, self.history(session, record)

        row, history = await self.db.read(load)
        document = json.loads(row.document_json)
        return self._view(row, chain.fold(DocumentFacts.of(document), history), document)

    async def transfers_of(self, caller: Caller, reference: str) -> list[dict[str, Any]]:
        """The eBL's transfers to other platforms, with the receivers' signed answers."""

        def read(session: Session) -> list[dict[str, Any]]:
            return self.transfers.status(session, self._visible(session, caller, reference).ebl.id)

        return await self.db.read(read)

    @staticmethod
    def history(session: Session, record: EblRecord) -> list[Transaction]:
        """Every transaction of the eBL: from its party-signed entries, or, for an eBL that came from a platform
        that sent no party-signed chain, from the platform-signed transfer chain."""
        if record.party_chain_complete:
            return _transactions(record.entries)
        return pint.transactions_of([hop.jws for hop in TransferRepository(session).chain(record.ebl.id)])

    @staticmethod
    def named_codes(document: Mapping[str, Any]) -> set[tuple[str, str]]:
        return _named_codes(document)

    async def list_ebls(self, caller: Caller, *, limit: int, cursor: str | None) -> EblPage:
        after_id = _decode_cursor(cursor)
        limit = max(1, min(limit, MAX_PAGE_SIZE))

        def read(session: Session) -> tuple[list[Ebl], list[list[Transaction]]]:
            ebls = EblRepository(session)
            records = ebls.page(party_id=None if caller.is_verifier else caller.id, after_id=after_id, limit=limit + 1)
            return [r.ebl for r in records], [self.history(session, record) for record in records[:limit]]

        rows, histories = await self.db.read(read)
        items = []
        for row, history in zip(rows, histories, strict=False):
            document = json.loads(row.document_json)
            items.append(self._view(row, chain.fold(DocumentFacts.of(document), history), document))
        last_id = rows[limit - 1].id if len(rows) > limit else None
        next_cursor = _encode_cursor(last_id) if last_id is not None else None
        return EblPage(items=items, nextCursor=next_cursor)

    async def chain_entries(self, caller: Caller, reference: str) -> list[str]:
        record = await self.db.read(lambda session: self._visible(session, caller, reference))
        return [e.jws for e in record.entries]

    async def bundle(self, caller: Caller, reference: str) -> dict[str, Any]:
        """Everything a verifier needs offline: document, chain, key credentials, a node-signed head, and for every
        entry an inclusion proof (C2SP tlog-proof) in the log of the node that recorded it."""

        def load(session: Session) -> tuple[Ebl, list[Entry]]:
            record = self._visible(session, caller, reference)
            if not record.party_chain_complete:
                raise Conflict(
                    f"{reference} came from a platform that sent no party-signed chain: there is no bundle to export",
                    code="PARTY_CHAIN_MISSING",
                )
            return record.ebl, record.entries

        row, entries = await self.db.read(load)
        # The entries read are in the log already: a checkpoint signed now covers them all.
        checkpoint = await self.db.write(lambda session: self.ledger.sign_checkpoint(LogRepository(session), _now()))
        return await self.db.read(lambda session: self.export(session, row, entries, checkpoint))

    def export(self, session: Session, row: Ebl, entries: Sequence[Entry], checkpoint: CheckpointRow) -> dict[str, Any]:
        """The bundle of ``entries`` (a chain's first entries, or all of them), proven against ``checkpoint``, which
        must cover them."""
        compacts = [e.jws for e in entries]
        payloads = [EntryPayload.model_validate(jws.unverified_payload(c)) for c in compacts]
        signers = {jws.kid(c) for c in compacts}
        if payloads[0].issuanceManifestSignedContent is not None:
            signers.add(jws.kid(payloads[0].issuanceManifestSignedContent))
        parties, transfers = PartyRepository(session), TransferRepository(session)
        creds = []
        for kid in sorted(signers):
            local = parties.key(kid)
            foreign = transfers.foreign_credential(kid) if local is None else None
            creds += [local.credential] if local else [foreign.credential] if foreign else []
        log = LogRepository(session)
        cosigned = self._cosigned(session, checkpoint)
        # Entries other platforms recorded are proven in their logs: the proofs came with the eBL.
        foreign_proofs = transfers.foreign_proofs(
            e.checksum for e, p in zip(entries, payloads, strict=True) if p.eblPlatform != self.platform
        )
        proofs = [
            self.ledger.tlog_proof(log, e.checksum, checkpoint, cosigned)
            if p.eblPlatform == self.platform
            else foreign_proofs[e.checksum]
            for e, p in zip(entries, payloads, strict=True)
        ]
        head = sign_head(
            self.node_key,
            document_checksum=row.document_checksum,
            transport_document_reference=row.transport_document_reference,
            entries=compacts,
            platform=self.platform,
            exported_at=chain.action_datetime(_now()),
        )
        return assemble(
            document=json.loads(row.document_json),
            issue_to=row.issue_to,
            entries=compacts,
            credentials=creds,
            head=head,
            checkpoint=cosigned,
            inclusion_proofs=proofs,
        )

    async def endorsement_chain(self, caller: Caller, reference: str) -> list[dict[str, Any]]:
        """DCSA Endorsement Chain 3.0.3: SACC shows as SURRENDERED to the "NONE" party, SREJ as a TRANSFER back."""
        if Role.CARRIER not in caller.roles:
            raise Forbidden("the endorsement chain is served to carriers", code="CARRIER_ONLY")
        record = await self.db.read(lambda session: self._visible(session, caller, reference))
        row, entries = record.ebl, record.entries
        links = []
        for entry in entries:
            tx = EntryPayload.model_validate(jws.unverified_payload(entry.jws)).transaction
            code = {ActionCode.SACC: "SURRENDERED", ActionCode.SREJ: "TRANSFER"}.get(tx.actionCode, tx.actionCode.value)
            recipient = tx.recipient.to_json() if tx.recipient is not None else NONE_PARTY
            links.append(
                {
                    "actionDateTime": tx.actionDateTime,
                    "actionCode": code,
                    "actor": tx.actor.to_json(),
                    "recipient": NONE_PARTY if tx.actionCode == ActionCode.SACC else recipient,
                    # The entry checksum lets the carrier check the link against the signed chain.
                    "auditReference": tx.auditReference or entry.checksum,
                }
            )
        chain_view: dict[str, Any] = {
            "transportDocumentReference": row.transport_document_reference,
            "carrierSCACCode": json.loads(row.document_json).get("carrierCode"),
            "endorsementChain": links,
        }
        if row.transport_document_sub_reference:
            chain_view["transportDocumentSubReference"] = row.transport_document_sub_reference
        return [chain_view]

    def verify(self, bundle: Any, *, witnesses: int = 0) -> VerificationReport:
        return verify_bundle(bundle, self.trust, witnesses=witnesses)

    # -- the log --

    def sign_checkpoint(self) -> CheckpointRow:
        """Sign a checkpoint of the log now (a no-op answer with the latest one if the log has not grown)."""
        return write(self.engine, lambda session: self.ledger.sign_checkpoint(LogRepository(session), _now()))

    async def checkpoint(self) -> str:
        """The latest checkpoint with the cosignatures peer witnesses gave it."""

        def read(session: Session) -> str:
            latest = LogRepository(session).latest_checkpoint()
            assert latest is not None, "Node.open signs the first checkpoint"
            return self._cosigned(session, latest)

        return await self.db.read(read)

    @staticmethod
    def _cosigned(session: Session, checkpoint: CheckpointRow) -> str:
        lines = [row.line for row in WitnessRepository(session).cosignatures(checkpoint.size)]
        return checkpoint.note + "".join(lines)

    async def add_checkpoint(self, body: str) -> str:
        """As a witness (C2SP tlog-witness): check a peer's checkpoint and cosign it."""
        return await self.db.write(
            lambda session: self.witness.add_checkpoint(WitnessRepository(session), body, _now())
        )

    def push_checkpoint(self, client: httpx.Client) -> None:
        """Ask every configured peer witness to cosign the latest checkpoint; keep the cosignatures they give. A witness
        that does not answer is logged and passed over: the others are still asked, and it is asked again next time."""
        peer_witnesses = self.trust.witnesses(self.platform)
        for url in self.settings.witness_urls:
            with read_session(self.engine) as session:
                latest = LogRepository(session).latest_checkpoint()
                old = WitnessRepository(session).last_cosigned_size(url)
            assert latest is not None
            if old == latest.size:
                continue
            try:
                response = client.post(f"{url}/add-checkpoint", content=self._add_checkpoint_body(old, latest))
                if response.status_code == 409 and response.headers.get("content-type", "").startswith(
                    "text/x.tlog.size"
                ):
                    # The witness has seen another size of our log than we recorded: prove from there.
                    response = client.post(
                        f"{url}/add-checkpoint", content=self._add_checkpoint_body(int(response.text.strip()), latest)
                    )
            except httpx.HTTPError as exc:
                logger.warning("witness %s did not answer for checkpoint %d: %s", shown_url(url), latest.size, exc)
                continue
            except ValueError as exc:  # its 409 named no size of our log that a proof can start from
                logger.warning(
                    "witness %s answered checkpoint %d with a size it cannot have: %s", shown_url(url), latest.size, exc
                )
                continue
            if response.status_code != 200:
                logger.warning(
                    "witness %s refused checkpoint %d: %s", shown_url(url), latest.size, response.status_code
                )
                continue
            line = response.text
            if not note.cosigners(latest.note + line, peer_witnesses):
                logger.warning("witness %s answered a cosignature no trusted peer key made", shown_url(url))
                continue
            self._keep_cosignature(
                CosignatureRow(checkpoint_size=latest.size, witness_url=url, line=line, created_at=_now())
            )

    def _keep_cosignature(self, row: CosignatureRow) -> None:
        write(self.engine, lambda session: WitnessRepository(session).add_cosignature(row))

    def _add_checkpoint_body(self, old: int, checkpoint: CheckpointRow) -> str:
        with read_session(self.engine) as session:
            proof = (
                self.ledger.consistency_proof(LogRepository(session), old, checkpoint.size)
                if 0 < old < checkpoint.size
                else []
            )
        return AddCheckpoint(old, proof, checkpoint.note).to_text()

    async def inclusion_proof(self, index: int, size: int) -> dict[str, Any]:
        def read(session: Session) -> tuple[LogLeafRow | None, list[bytes]]:
            log = LogRepository(session)
            return log.leaf(index), self._proof(lambda: self.ledger.inclusion_proof(log, index, size))

        leaf, proof = await self.db.read(read)
        assert leaf is not None
        return {"index": index, "treeSize": size, "leafHash": _b64(leaf.leaf_hash), "proof": [_b64(h) for h in proof]}

    async def consistency_proof(self, first: int, second: int) -> dict[str, Any]:
        proof = await self.db.read(
            lambda session: self._proof(lambda: self.ledger.consistency_proof(LogRepository(session), first, second))
        )
        return {"first": first, "second": second, "proof": [_b64(h) for h in proof]}

    @staticmethod
    def _proof(build: Callable[[], list[bytes]]) -> list[bytes]:
        try:
            return build()
        except ProofError as exc:
            raise BadRequest(str(exc), code="INVALID_PROOF_REQUEST") from None

    async def log_entry(self, index: int) -> dict[str, Any]:
        def read(session: Session) -> tuple[LogLeafRow | None, Entry | None]:
            leaf = LogRepository(session).leaf(index)
            return leaf, EblRepository(session).entry_by_checksum(leaf.entry_checksum) if leaf is not None else None

        leaf, entry = await self.db.read(read)
        if leaf is None or entry is None:
            raise NotFound(f"the log has no entry {index}")
        return {
            "index": index,
            "entryChecksum": leaf.entry_checksum,
            "leafHash": _b64(leaf.leaf_hash),
            "entry": entry.jws,
        }

    def counts(self) -> tuple[int, int]:
        """How many eBLs this node holds, and how many leaves its log has."""
        with read_session(self.engine) as session:
            return self._ebl_tally.update(EblRepository(session)), LogRepository(session).size()

    async def health(self) -> None:
        await self.db.read(lambda session: session.exec(text("SELECT 1")))  # type: ignore[call-overload]

    # -- idempotency --

    async def begin_idempotent(self, caller: Caller, key: str, request_hash: str) -> StoredResponse | None:
        """Claim ``key`` for this request, or return the stored answer of the first request that used it."""
        if not 0 < len(key) <= 255:
            raise BadRequest("Idempotency-Key must be 1 to 255 characters", code="INVALID_IDEMPOTENCY_KEY")

        def claim(session: Session) -> IdempotencyRow | None:
            records = IdempotencyRepository(session)
            existing = records.get(caller.id, key)
            now = _now()
            if existing is None:
                records.add(IdempotencyRow(party_id=caller.id, key=key, request_hash=request_hash, created_at=now))
                return None
            claimed_at = existing.created_at.replace(tzinfo=existing.created_at.tzinfo or UTC)
            abandoned = existing.status_code is None and now - claimed_at > IDEMPOTENCY_CLAIM_ABANDONED_AFTER
            if abandoned and hmac.compare_digest(existing.request_hash, request_hash):
                existing.created_at = now
                records.save(existing)
                return None
            return existing

        existing = await self.db.write(claim)
        if existing is None:
            return None
        if not hmac.compare_digest(existing.request_hash, request_hash):
            raise IdempotencyKeyReused("this Idempotency-Key was used with another request (method, path or body)")
        if existing.status_code is None or existing.response_body is None:
            raise LostRace("a request with this Idempotency-Key is in progress", code="IDEMPOTENCY_KEY_IN_USE")
        return StoredResponse(existing.status_code, existing.response_body)

    async def finish_idempotent(self, caller: Caller, key: str, response: StoredResponse | None) -> None:
        """Store the answer to replay, or (``None``) release the key so that the request can be tried again."""

        def finish(session: Session) -> None:
            records = IdempotencyRepository(session)
            row = records.get(caller.id, key)
            if row is None:
                return
            if response is None:
                session.delete(row)
                return
            row.status_code, row.response_body = response.status_code, response.body
            records.save(row)

        await self.db.write(finish)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(str(last_id).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    refused = BadRequest("the cursor is not one this API returned", code="INVALID_CURSOR")
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        raise refused from None
    # Only the form _encode_cursor writes: int() alone would take "-1", " 1_0 ", other scripts' digits, and ids
    # beyond any database's integers.
    if not (text.isascii() and text.isdigit() and len(text) <= 18) or _encode_cursor(int(text)) != cursor:
        raise refused
    return int(text)
