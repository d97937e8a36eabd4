"""C2SP signed notes with Ed25519 keys, checkpoints, and offline tlog-proofs. Pure.

- signed-note: the text (ending in ``\\n``), a blank line, then signature lines ``— <name> base64(keyID ‖ sig)``
  (U+2014). Key ID = ``SHA-256(name ‖ 0x0A ‖ 0x01 ‖ pubkey)[:4]``; verifier key text ``<name>+<hex keyID>+<base64(0x01
  ‖ pubkey)>``. Verifiers ignore unknown keys, reject a note where a known key fails, and reject a note no known key
  signed.
- tlog-checkpoint: the note text ``<origin>\\n<size>\\n<base64 root>\\n``.
- tlog-proof: ``c2sp.org/tlog-proof@v1``, optional ``extra <base64>``, ``index <n>``, the inclusion hashes one per
  line, a blank line, then the signed checkpoint.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

_ED25519 = b"\x01"
_COSIGNATURE_V1 = b"\x04"
_DASH = "\u2014"
_NAME = re.compile(r"^[^\s+]+$")
_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
DECIMAL = r"(0|[1-9][0-9]*)"
"""A size or an index in C2SP text: ASCII digits, no leading zero (``str.isdigit`` also takes "²" and "١٢")."""
_INDEX_LINE = re.compile("index " + DECIMAL)


class NoteError(ValueError):
    """A note, checkpoint or proof that is malformed or does not verify."""


def _b64decode(text: str) -> bytes:
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"not standard base64: {text[:40]!r}") from None


def _key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + _ED25519 + public).digest()[:4]


@dataclass(frozen=True)
class Verifier:
    name: str
    key_id: bytes
    public_key: Ed25519PublicKey

    def vkey(self) -> str:
        raw = self.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(_ED25519 + raw).decode()}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            self.public_key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Signer:
    name: str
    private_key: Ed25519PrivateKey

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise NoteError("a key name is non-empty, with no spaces and no '+'")

    @property
    def verifier(self) -> Verifier:
        return verifier(self.name, self.private_key.public_key())

    def signature_line(self, text: str) -> str:
        signature = self.private_key.sign(text.encode())
        return f"{_DASH} {self.name} {base64.b64encode(self.verifier.key_id + signature).decode()}\n"


def verifier(name: str, public_key: Ed25519PublicKey) -> Verifier:
    """The note verifier of an Ed25519 key under a key name (for a log: its origin)."""
    return Verifier(name, _key_id(name, public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)), public_key)


def parse_vkey(vkey: str) -> Verifier:
    # The base64 key may itself contain '+': only the first two separate fields.
    parts = vkey.split("+", 2)
    if len(parts) != 3 or not _NAME.match(parts[0]):
        raise NoteError("a verifier key is <name>+<hex key ID>+<base64 key>")
    name, key_id_hex, key_b64 = parts
    key = _b64decode(key_b64)
    if len(key) != 33 or key[:1] != _ED25519:
        raise NoteError("only Ed25519 verifier keys (type 0x01) are supported")
    key_id = _key_id(name, key[1:])
    if key_id.hex() != key_id_hex:
        raise NoteError("the verifier key's ID does not match its name and key")
    return Verifier(name, key_id, Ed25519PublicKey.from_public_bytes(key[1:]))


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("note text ends with a newline")
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise NoteError("note text has control characters")


def sign_note(text: str, signers: Sequence[Signer]) -> str:
    _check_text(text)
    return text + "\n" + "".join(signer.signature_line(text) for signer in signers)


def split_note(note: str) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    """The text and its signature lines as ``(name, key ID, signature)``, unverified."""
    cut = note.rfind("\n\n")
    if cut < 0:
        raise NoteError("a signed note has a blank line before its signatures")
    text, block = note[: cut + 1], note[cut + 2 :]
    _check_text(text)
    if not block.endswith("\n") or not block.strip():
        raise NoteError("a signed note ends with at least one signature line")
    signatures = []
    for line in block[:-1].split("\n"):
        match = re.fullmatch(rf"{_DASH} (\S+) (\S+)", line)
        if match is None:
            raise NoteError(f"malformed signature line {line[:60]!r}")
        raw = _b64decode(match.group(2))
        if len(raw) < 5:
            raise NoteError("a signature line carries a key ID and a signature")
        signatures.append((match.group(1), raw[:4], raw[4:]))
    return text, signatures


def open_note(note: str, verifiers: Sequence[Verifier]) -> tuple[str, list[Verifier]]:
    """The text and the verifiers whose signatures hold; raise :class:`NoteError` if none or a known one fails."""
    text, signatures = split_note(note)
    known = {(v.name, v.key_id): v for v in verifiers}
    verified = []
    for name, key_id, signature in signatures:
        verifier = known.get((name, key_id))
        if verifier is None:
            continue
        if not verifier.verify(text.encode(), signature):
            raise NoteError(f"the signature of {name} does not verify")
        verified.append(verifier)
    if not verified:
        raise NoteError("no known key signed the note")
    return text, verified


# -- tlog-cosignature (C2SP): a witness's timestamped Ed25519 signature over a checkpoint ----------------------------


def _cosignature_key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(name.encode() + b"\n" + _COSIGNATURE_V1 + raw).digest()[:4]


def _cosigned_message(checkpoint_text: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{checkpoint_text}".encode()


def cosign(checkpoint_text: str, name: str, key: Ed25519PrivateKey, timestamp: int) -> str:
    """A cosignature line: ``— <name> base64(key ID ‖ 8-byte big-endian time ‖ Ed25519 signature)``."""
    _check_text(checkpoint_text)
    signature = key.sign(_cosigned_message(checkpoint_text, timestamp))
    raw = _cosignature_key_id(name, key.public_key()) + timestamp.to_bytes(8, "big") + signature
    return f"{_DASH} {name} {base64.b64encode(raw).decode()}\n"


def witness_name(platform: str) -> str:
    """The name under which a platform's node cosigns the checkpoints of its peers."""
    return f"{platform.lower()}.ebl.example/witness"


def cosigners(note: str, witnesses: Mapping[str, Sequence[Ed25519PublicKey]]) -> list[str]:
    """The names of the known ``witnesses`` (name → its keys) that validly cosigned the note's checkpoint, each once.

    A cosignature signs the checkpoint and a time, not the witness's name: only the key ID binds the name. So a line
    counts only under a name the caller knows with one of that name's own keys; anyone could copy a witness's line
    under a made-up name, with the key ID recomputed for it. Lines of unknown names and keys are ignored."""
    text, signatures = split_note(note)
    names = []
    for name, key_id, signature in signatures:
        for key in witnesses.get(name, ()):
            if key_id != _cosignature_key_id(name, key) or len(signature) != 72:
                continue
            timestamp = int.from_bytes(signature[:8], "big")
            try:
                key.verify(signature[8:], _cosigned_message(text, timestamp))
            except InvalidSignature:
                raise NoteError(f"the cosignature of {name} does not verify") from None
            if name not in names:
                names.append(name)
    return names


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def to_text(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise NoteError("a checkpoint has an origin, a size and a root hash, one per line")
        origin, size, root = lines[0], lines[1], _b64decode(lines[2])
        if not origin or not re.fullmatch(DECIMAL, size):
            raise NoteError("a checkpoint's size is a decimal number without leading zeros")
        if len(root) != 32:
            raise NoteError("a checkpoint's root hash is 32 bytes")
        return cls(origin, int(size), root)


@dataclass(frozen=True)
class TlogProof:
    index: int
    hashes: list[bytes]
    checkpoint_note: str
    extra: bytes | None = None

    def to_text(self) -> str:
        lines = [_PROOF_HEADER]
        if self.extra is not None:
            lines.append(f"extra {base64.b64encode(self.extra).decode()}")
        lines.append(f"index {self.index}")
        lines += [base64.b64encode(h).decode() for h in self.hashes]
        return "\n".join(lines) + "\n\n" + self.checkpoint_note

    @classmethod
    def parse(cls, text: str) -> TlogProof:
        head, separator, checkpoint_note = text.partition("\n\n")
        lines = head.split("\n")
        if not separator or lines[0] != _PROOF_HEADER:
            raise NoteError(f"a tlog-proof starts with {_PROOF_HEADER} and has a blank line before the checkpoint")
        position, extra = 1, None
        if position < len(lines) and lines[position].startswith("extra "):
            extra = _b64decode(lines[position].removeprefix("extra "))
            position += 1
        index_line = lines[position] if position < len(lines) else ""
        if not _INDEX_LINE.fullmatch(index_line):
            raise NoteError("a tlog-proof names the entry's index")
        hashes = [_b64decode(line) for line in lines[position + 1 :]]
        if any(len(h) != 32 for h in hashes):
            raise NoteError("inclusion proof hashes are 32 bytes")
        return cls(int(index_line.removeprefix("index ")), hashes, checkpoint_note, extra)
