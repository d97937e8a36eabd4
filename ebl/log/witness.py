"""C2SP tlog-witness: a node cosigns its peers' checkpoints, and asks its peers to cosign its own.

An ``add-checkpoint`` request is ``old <size>\\n``, the consistency proof from that size (base64, one hash a line), a
blank line, and the signed checkpoint. The witness answers (C2SP tlog-witness):

- 404 for a log it does not witness (an origin no platform of the trust store has);
- 403 when no trusted key of that log signed the checkpoint;
- 400 when ``old`` is larger than the checkpoint's size, or the request is malformed;
- 409 with its latest size (``text/x.tlog.size``) when ``old`` is not the size it last cosigned;
- 422 when the consistency proof does not verify (or, from size 0, is not empty);
- 200 with a cosignature line otherwise, after storing the checkpoint as the latest for that log.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ebl.errors import BadRequest, Forbidden, InvalidProof, NotFound, WitnessSizeMismatch
from ebl.log import merkle, note
from ebl.store.repositories import WitnessRepository
from ebl.store.tables import WitnessedLogRow

MAX_PROOF_LINES = 63


@dataclass(frozen=True)
class AddCheckpoint:
    old: int
    proof: list[bytes]
    checkpoint_note: str

    def to_text(self) -> str:
        lines = [f"old {self.old}", *(base64.b64encode(h).decode() for h in self.proof)]
        return "\n".join(lines) + "\n\n" + self.checkpoint_note

    @classmethod
    def parse(cls, body: str) -> AddCheckpoint:
        head, separator, checkpoint_note = body.partition("\n\n")
        lines = head.split("\n")
        if not separator or not re.fullmatch("old " + note.DECIMAL, lines[0]):
            raise BadRequest("an add-checkpoint body is 'old <size>', proof lines, a blank line, the checkpoint")
        if len(lines) - 1 > MAX_PROOF_LINES:
            raise BadRequest(f"a consistency proof has at most {MAX_PROOF_LINES} lines")
        try:
            proof = [base64.b64decode(line, validate=True) for line in lines[1:]]
        except (binascii.Error, ValueError):
            raise BadRequest("proof lines are standard base64") from None
        return cls(int(lines[0][4:]), proof, checkpoint_note)


class Witness:
    def __init__(self, name: str, key: Ed25519PrivateKey, logs: Mapping[str, Sequence[Ed25519PublicKey]]) -> None:
        self.name = name
        self._key = key
        self._logs = logs
        """Origin → the keys that sign that log's checkpoints."""

    def add_checkpoint(self, witnessed: WitnessRepository, body: str, now: datetime) -> str:
        """Check and cosign a peer's checkpoint; returns the cosignature line (see the module docstring)."""
        request = AddCheckpoint.parse(body)
        try:
            text, _ = note.split_note(request.checkpoint_note)
        except note.NoteError as exc:
            raise BadRequest(f"the checkpoint is not a signed note: {exc}") from None
        origin = text.split("\n", 1)[0]
        keys = self._logs.get(origin)
        if not keys:
            raise NotFound(f"this node does not witness the log {origin!r}")
        try:
            note.open_note(request.checkpoint_note, [note.verifier(origin, key) for key in keys])
            checkpoint = note.Checkpoint.parse(text)
        except note.NoteError as exc:
            raise Forbidden(f"the checkpoint is not signed by a trusted key of {origin}: {exc}") from None
        if request.old > checkpoint.size:
            raise BadRequest(f"old size {request.old} is larger than the checkpoint's size {checkpoint.size}")
        latest = witnessed.witnessed(origin)
        latest_size = latest.size if latest is not None else 0
        if request.old != latest_size:
            raise WitnessSizeMismatch(latest_size)
        if latest is None or request.old == 0:
            # Nothing to be consistent with yet (C2SP: old 0 takes no proof); an empty tree has the empty root.
            if request.proof or (checkpoint.size == 0 and checkpoint.root != merkle.EMPTY_ROOT):
                raise InvalidProof("from size 0 the proof is empty, and an empty tree has the empty root")
        else:
            try:
                merkle.verify_consistency(
                    latest.size, checkpoint.size, latest.root_hash, checkpoint.root, request.proof
                )
            except merkle.ProofError as exc:
                raise InvalidProof(f"the checkpoint is not consistent with size {latest.size}: {exc}") from None
        row = latest or WitnessedLogRow(origin=origin, size=0, root_hash=b"", note="", updated_at=now)
        row.size, row.root_hash, row.note, row.updated_at = (
            checkpoint.size,
            checkpoint.root,
            request.checkpoint_note,
            now,
        )
        witnessed.save_witnessed(row)
        return note.cosign(text, self.name, self._key, int(now.timestamp()))
