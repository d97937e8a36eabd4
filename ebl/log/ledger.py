"""The node's append-only log (docs/ledger.md): one RFC 6962 leaf per chain entry, signed C2SP checkpoints, proofs.

The leaf of a chain entry is ``SHA-256(0x00 ‖ SHA-256(utf8(compact JWS)))``: the 32 raw bytes of the entry checksum
are the leaf data (:func:`ebl.log.merkle.entry_leaf_hash`). Appends run inside the transaction that stores the entry,
so an entry and its leaf commit together or not at all; the leaves of a batch of writes are added together, after its
last write. Each leaf is stored with the perfect subtrees it completes (:func:`ebl.log.merkle.appended_nodes`), so
appending and proving read O(log n) stored hashes.

A checkpoint is signed only from the stored tree, after checking that it is consistent with the previous
checkpoint: the node never signs two inconsistent checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import Session

from ebl.keys import SigningKey
from ebl.log import merkle
from ebl.log.note import Checkpoint, Signer, TlogProof, sign_note
from ebl.store.db import at_end
from ebl.store.repositories import LogRepository
from ebl.store.tables import CheckpointRow

_T = TypeVar("_T")


def default_origin(platform: str) -> str:
    return f"{platform.lower()}.ebl.example/log"


class Ledger:
    def __init__(self, origin: str, node_key: SigningKey, *, checkpoint_every: int) -> None:
        if not isinstance(node_key.private, Ed25519PrivateKey):
            raise TypeError("the log signs checkpoints with the node's Ed25519 key")
        self.origin = origin
        self._signer = Signer(origin, node_key.private)
        self._checkpoint_every = checkpoint_every

    @property
    def vkey(self) -> str:
        return self._signer.verifier.vkey()

    def append(self, session: Session, entry_checksum: str, now: datetime) -> None:
        """Add the leaf of a chain entry, in the transaction of the write that stores the entry (run it in a write:
        :func:`ebl.store.db.write`).

        The leaves of a batch of writes are added together after its last write (:func:`ebl.store.db.at_end`), in
        the order they were asked for, with the subtrees they complete; and a checkpoint is signed when the log has
        grown by ``checkpoint_every`` leaves since the latest one (or has none).
        """
        at_end(session, self, list, self._add_leaves).append((entry_checksum, now))

    def _add_leaves(self, session: Session, pending: list[tuple[str, datetime]]) -> None:
        log = LogRepository(session)
        size, checkpointed = log.sizes()
        leaves = [merkle.entry_leaf_hash(checksum) for checksum, _ in pending]
        log.add_leaves(
            [
                (size + offset, checksum, leaf, now)
                for offset, ((checksum, now), leaf) in enumerate(zip(pending, leaves, strict=True))
            ]
        )
        log.add_nodes(_with_prefetched_nodes(log, lambda get: merkle.appended_nodes(size, leaves, get)))
        if checkpointed is None or size + len(leaves) - checkpointed >= self._checkpoint_every:
            self.sign_checkpoint(log, pending[-1][1])

    def root(self, log: LogRepository, size: int) -> bytes:
        return _with_prefetched_nodes(log, lambda get: merkle.root(size, get))

    def sign_checkpoint(self, log: LogRepository, now: datetime) -> CheckpointRow:
        """A checkpoint of the current tree, or the latest one if the tree has not grown since (in a write)."""
        size = log.size()
        latest = log.latest_checkpoint()
        if latest is not None and latest.size == size:
            return latest
        root = self.root(log, size)
        if latest is not None and latest.size > 0:
            # Belt and braces: the stored tree must extend what the node already signed.
            proof = _with_prefetched_nodes(log, lambda get: merkle.consistency_proof(latest.size, size, get))
            merkle.verify_consistency(latest.size, size, latest.root_hash, root, proof)
        text = Checkpoint(self.origin, size, root).to_text()
        row = CheckpointRow(size=size, root_hash=root, note=sign_note(text, [self._signer]), created_at=now)
        log.add_checkpoint(row)
        return row

    def inclusion_proof(self, log: LogRepository, index: int, size: int) -> list[bytes]:
        self._check_size(log, size)
        return _with_prefetched_nodes(log, lambda get: merkle.inclusion_proof(index, size, get))

    def consistency_proof(self, log: LogRepository, first: int, second: int) -> list[bytes]:
        self._check_size(log, second)
        return _with_prefetched_nodes(log, lambda get: merkle.consistency_proof(first, second, get))

    def tlog_proof(self, log: LogRepository, entry_checksum: str, checkpoint: CheckpointRow, cosigned_note: str) -> str:
        """The entry's C2SP tlog-proof against ``checkpoint``, carrying the note with its witnesses' cosignatures."""
        leaf = log.leaf_by_checksum(entry_checksum)
        if leaf is None or leaf.index >= checkpoint.size:
            raise merkle.ProofError("the entry is not in the checkpointed tree")
        hashes = _with_prefetched_nodes(log, lambda get: merkle.inclusion_proof(leaf.index, checkpoint.size, get))
        return TlogProof(index=leaf.index, hashes=hashes, checkpoint_note=cosigned_note).to_text()

    @staticmethod
    def _check_size(log: LogRepository, size: int) -> None:
        current = log.size()
        if size > current:
            raise merkle.ProofError(f"the log has {current} entries, not {size}")


def _with_prefetched_nodes(log: LogRepository, build: Callable[[merkle.NodeGetter], _T]) -> _T:
    """Run ``build`` twice: once to learn which subtree hashes it reads, then on those, fetched in one query (none
    when it reads none).

    Which hashes a proof or an append reads depends only on the sizes and the index, never on the hash values.
    """
    wanted: list[tuple[int, int]] = []

    def record(level: int, index: int) -> bytes:
        wanted.append((level, index))
        return bytes(merkle.HASH_SIZE)

    build(record)
    hashes = log.nodes(wanted)

    def fetched(level: int, index: int) -> bytes:
        try:
            return hashes[(level, index)]
        except KeyError:
            raise LookupError(f"the log has no subtree ({level}, {index})") from None

    return build(fetched)
