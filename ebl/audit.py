"""``ebl audit``: recompute every checksum, link, signature, the log tree and the checkpoints from the database.

The audit trusts nothing the database says about itself: not its triggers (someone with the file can drop them),
not its cached state. It reads every row and checks, in this order:

1. each chain entry: its checksum is SHA-256 of its JWS, its sequence follows the one before, it links to the one
   before, it names its eBL's reference and document checksum, its signature verifies with the key its ``kid`` names
   (a key of this node's parties, or, for an entry another platform recorded, a key that platform's node vouched for
   in a credential the trust store verifies), and the chain folds through the state machine;
2. the log: leaves are numbered 0..n-1, each is the leaf of exactly one chain entry, and every entry this platform
   recorded has one (entries other platforms recorded are in their logs);
3. the tree: every stored subtree hash equals the one recomputed from the leaves;
4. the checkpoints: each is signed by the node key, and its root is the recomputed root at its size.

The first failure found is named with its table and row; the summary counts what was checked.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from ebl import canonical, chain, credentials, jws, keys
from ebl.chain import DocumentFacts, EntryPayload
from ebl.errors import EblError
from ebl.log import merkle, note
from ebl.store.tables import (
    ChainEntryRow,
    CheckpointRow,
    EblRow,
    ForeignCredentialRow,
    LogLeafRow,
    LogNodeRow,
    PartyKeyRow,
    TransferEntryRow,
)


class AuditFailure(Exception):
    """The first row that does not match what it should be."""


@dataclass
class AuditSummary:
    ebls: int = 0
    entries: int = 0
    leaves: int = 0
    nodes: int = 0
    checkpoints: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def audit(
    engine: Engine, node_key: Ed25519PublicKey, origin: str, *, platform: str, trust: keys.TrustStore
) -> AuditSummary:
    summary = AuditSummary()
    if engine.dialect.name == "postgresql":
        # One snapshot for the whole audit while the node goes on writing (SQLite's read transactions are snapshots).
        engine = engine.execution_options(isolation_level="REPEATABLE READ")
    with Session(engine) as session:
        try:
            entry_checksums = _audit_chains(session, summary, platform, trust)
            leaves = _audit_leaves(session, summary, entry_checksums)
            nodes = _audit_tree(session, summary, leaves)
            _audit_checkpoints(session, summary, nodes, note.verifier(origin, node_key))
        except AuditFailure as failure:
            summary.failures.append(str(failure))
    return summary


def _audit_chains(session: Session, summary: AuditSummary, platform: str, trust: keys.TrustStore) -> set[str]:
    """Every chain; returns the checksums of the entries this platform recorded (the ones its log must hold)."""
    party_keys = {row.kid: keys.PublicKey(row.public_jwk) for row in session.exec(select(PartyKeyRow)).all()}
    for row in session.exec(select(ForeignCredentialRow)).all():
        try:
            party_keys[row.kid] = credentials.verify(row.credential, trust).key
        except EblError as exc:
            raise AuditFailure(f"foreign_credential kid={row.kid}: not vouched for by a trusted node ({exc})") from None
    checksums: set[str] = set()
    for ebl in session.exec(select(EblRow).order_by(col(EblRow.id))).all():
        summary.ebls += 1
        document = json.loads(ebl.document_json)
        if canonical.checksum(document) != ebl.document_checksum:
            raise AuditFailure(f"ebl id={ebl.id}: the stored document does not match its checksum")
        entries = session.exec(
            select(ChainEntryRow).where(ChainEntryRow.ebl_id == ebl.id).order_by(col(ChainEntryRow.id))
        ).all()
        previous: str | None = None
        transactions = []
        hops = session.exec(select(TransferEntryRow).where(TransferEntryRow.ebl_id == ebl.id)).all()
        # An eBL from a platform that sent no party-signed chain has fewer entries than transactions: no fold.
        complete = all(hop.last_sequence < len(entries) for hop in hops)
        for position, entry in enumerate(entries):
            where = f"chain_entry id={entry.id} (eBL {ebl.transport_document_reference}, position {position})"
            if entry.checksum != hashlib.sha256(entry.jws.encode()).hexdigest():
                raise AuditFailure(f"{where}: the checksum is not SHA-256 of the stored JWS")
            key = party_keys.get(_kid(entry.jws, where))
            if key is None:
                raise AuditFailure(f"{where}: signed by a key this node never registered")
            try:
                payload = EntryPayload.model_validate(jws.verify(entry.jws, key))
            except (EblError, ValueError) as exc:
                raise AuditFailure(f"{where}: the signature or payload does not hold ({exc})") from None
            if entry.sequence != position or payload.sequence != position:
                raise AuditFailure(f"{where}: sequence {entry.sequence}/{payload.sequence} where {position} belongs")
            if payload.previousEntryChecksum != previous:
                raise AuditFailure(f"{where}: does not link to the entry before it")
            if (payload.transportDocumentReference, payload.transportDocumentChecksum) != (
                ebl.transport_document_reference,
                ebl.document_checksum,
            ):
                raise AuditFailure(f"{where}: names another document than its eBL row")
            transactions.append(payload.transaction)
            previous = entry.checksum
            if payload.eblPlatform == platform:
                checksums.add(entry.checksum)
            summary.entries += 1
        if not complete:
            continue
        try:
            chain.fold(DocumentFacts.of(document), transactions)
        except EblError as exc:
            raise AuditFailure(f"ebl id={ebl.id}: the chain breaks rule {exc.code}: {exc.message}") from None
    return checksums


def _kid(compact: str, where: str) -> str:
    try:
        return jws.kid(compact)
    except EblError:
        raise AuditFailure(f"{where}: the JWS names no key") from None


def _audit_leaves(session: Session, summary: AuditSummary, entry_checksums: set[str]) -> list[bytes]:
    leaves = session.exec(select(LogLeafRow).order_by(col(LogLeafRow.index))).all()
    logged: set[str] = set()
    for position, leaf in enumerate(leaves):
        if leaf.index != position:
            raise AuditFailure(f"log_leaf index={leaf.index}: leaf {position} is missing")
        if leaf.entry_checksum not in entry_checksums:
            raise AuditFailure(f"log_leaf index={leaf.index}: no chain entry has checksum {leaf.entry_checksum}")
        if leaf.leaf_hash != merkle.entry_leaf_hash(leaf.entry_checksum):
            raise AuditFailure(f"log_leaf index={leaf.index}: the leaf hash is not that of its entry")
        logged.add(leaf.entry_checksum)
        summary.leaves += 1
    missing = sorted(entry_checksums - logged)
    if missing:
        raise AuditFailure(f"chain_entry checksum={missing[0]}: the entry is not in the log")
    return [leaf.leaf_hash for leaf in leaves]


def _audit_tree(session: Session, summary: AuditSummary, leaves: list[bytes]) -> dict[tuple[int, int], bytes]:
    recomputed: dict[tuple[int, int], bytes] = {}
    for size, leaf in enumerate(leaves):
        for level, index, value in merkle.completed_nodes(size, leaf, lambda lv, ix: recomputed[(lv, ix)]):
            recomputed[(level, index)] = value
    stored = {(row.level, row.index): row.hash for row in session.exec(select(LogNodeRow)).all()}
    for position in sorted(set(stored) | set(recomputed)):
        if stored.get(position) != recomputed.get(position):
            raise AuditFailure(f"log_node level={position[0]} index={position[1]}: does not match the leaves")
    summary.nodes = len(stored)
    return recomputed


def _audit_checkpoints(
    session: Session, summary: AuditSummary, nodes: dict[tuple[int, int], bytes], verifier: note.Verifier
) -> None:
    size = sum(1 for level, _ in nodes if level == 0)
    for row in session.exec(select(CheckpointRow).order_by(col(CheckpointRow.id))).all():
        where = f"checkpoint id={row.id} (size {row.size})"
        try:
            text, _ = note.open_note(row.note, [verifier])
            signed = note.Checkpoint.parse(text)
        except note.NoteError as exc:
            raise AuditFailure(f"{where}: not signed by this node's key ({exc})") from None
        if (signed.size, signed.root) != (row.size, row.root_hash):
            raise AuditFailure(f"{where}: the row does not say what the signed note says")
        if row.size > size:
            raise AuditFailure(f"{where}: the log has only {size} leaves: leaves were removed")
        if merkle.root(row.size, lambda level, index: nodes[(level, index)]) != row.root_hash:
            raise AuditFailure(f"{where}: the log's root at this size is not the signed root")
        summary.checkpoints += 1
