"""C2SP signed notes, checkpoints and tlog-proofs."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ebl.log import note
from ebl.log.note import Checkpoint, NoteError, Signer, TlogProof

C2SP_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
C2SP_NOTE = (
    "This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsY"
    "jOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)


def test_the_c2sp_example_note_verifies() -> None:
    verifier = note.parse_vkey(C2SP_VKEY)
    assert verifier.vkey() == C2SP_VKEY
    text, verified = note.open_note(C2SP_NOTE, [verifier])
    assert text == "This is an example message.\n"
    assert verified == [verifier]


def test_tampered_notes_fail() -> None:
    verifier = note.parse_vkey(C2SP_VKEY)
    with pytest.raises(NoteError, match="does not verify"):
        note.open_note(C2SP_NOTE.replace("example message", "exemplary message"), [verifier])
    with pytest.raises(NoteError, match="no known key"):
        note.open_note(C2SP_NOTE, [Signer("example.com/foo", Ed25519PrivateKey.generate()).verifier])


def test_verifier_keys_roundtrip_whatever_their_base64_holds() -> None:
    for _ in range(50):
        signer = Signer("cqsb.ebl.example/log", Ed25519PrivateKey.generate())
        assert note.parse_vkey(signer.verifier.vkey()) == signer.verifier


def test_sign_and_open_with_unknown_signers_ignored() -> None:
    log, other = Signer("cqsb.ebl.example/log", Ed25519PrivateKey.generate()), Signer("x", Ed25519PrivateKey.generate())
    signed = note.sign_note("hello\n", [log, other])
    assert note.open_note(signed, [log.verifier]) == ("hello\n", [log.verifier])
    with pytest.raises(NoteError):
        note.sign_note("no newline", [log])
    with pytest.raises(NoteError):
        note.sign_note("tab\there\n", [log])
    with pytest.raises(NoteError):
        Signer("has space", Ed25519PrivateKey.generate())


@pytest.mark.parametrize(
    "vkey",
    ["no-plus", "a+b+c+d", "example.com/foo+00000000+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "a+1234+!!", "a+b"],
)
def test_malformed_verifier_keys(vkey: str) -> None:
    with pytest.raises(NoteError):
        note.parse_vkey(vkey)


def test_checkpoint_roundtrip_and_malformed() -> None:
    checkpoint = Checkpoint("cqsb.ebl.example/log", 42, bytes(range(32)))
    assert Checkpoint.parse(checkpoint.to_text()) == checkpoint
    for bad in [
        "o\n042\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "o\n1\nAAAA\n",
        "o\n1\n",
        "o\n1\n!!\n",
        "\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
    ]:
        with pytest.raises(NoteError):
            Checkpoint.parse(bad)


def test_tlog_proof_roundtrip_and_malformed() -> None:
    log = Signer("cqsb.ebl.example/log", Ed25519PrivateKey.generate())
    signed = note.sign_note(Checkpoint("cqsb.ebl.example/log", 3, bytes(32)).to_text(), [log])
    proof = TlogProof(index=2, hashes=[bytes([1]) * 32, bytes([2]) * 32], checkpoint_note=signed, extra=b"x")
    assert TlogProof.parse(proof.to_text()) == proof
    no_extra = TlogProof(index=0, hashes=[], checkpoint_note=signed)
    assert TlogProof.parse(no_extra.to_text()) == no_extra
    text = proof.to_text()
    for bad in [
        text.replace("tlog-proof@v1", "tlog-proof@v2"),
        text.replace("index 2", "index 02"),
        text.replace("\n\n", "\n"),
        text.replace("AQEB", "AQE"),
    ]:
        with pytest.raises(NoteError):
            TlogProof.parse(bad)


def test_cosignatures_verify_and_tampering_fails() -> None:
    log = Signer("cqsb.ebl.example/log", Ed25519PrivateKey.generate())
    witness = Ed25519PrivateKey.generate()
    signed = note.sign_note(Checkpoint("cqsb.ebl.example/log", 3, bytes(32)).to_text(), [log])
    text, _ = note.split_note(signed)
    line = note.cosign(text, "sgsb.ebl.example/witness", witness, 1_795_000_000)
    known = {"sgsb.ebl.example/witness": [witness.public_key()]}
    assert note.cosigners(signed + line, known) == ["sgsb.ebl.example/witness"]
    assert (
        note.cosigners(signed + line, {"sgsb.ebl.example/witness": [Ed25519PrivateKey.generate().public_key()]}) == []
    )
    other = note.cosign(text.replace("\n3\n", "\n4\n"), "sgsb.ebl.example/witness", witness, 1_795_000_000)
    with pytest.raises(NoteError, match="does not verify"):
        note.cosigners(signed + other, known)


def test_a_cosignature_counts_only_under_the_name_its_key_is_known_by() -> None:
    """The signed message holds no name: a copy of a witness's line under another name, with the key ID made for that
    name, verifies with the witness's key. It must not count as another witness, nor as this one twice."""
    log = Signer("cqsb.ebl.example/log", Ed25519PrivateKey.generate())
    witness = Ed25519PrivateKey.generate()
    signed = note.sign_note(Checkpoint("cqsb.ebl.example/log", 3, bytes(32)).to_text(), [log])
    text, _ = note.split_note(signed)
    line = note.cosign(text, "sgsb.ebl.example/witness", witness, 1_795_000_000)
    copies = "".join(note.cosign(text, f"evil-{n}.example/witness", witness, 1_795_000_000) for n in range(3))
    known = {"sgsb.ebl.example/witness": [witness.public_key()], "xxsb.ebl.example/witness": []}
    assert note.cosigners(signed + line + line + copies, known) == ["sgsb.ebl.example/witness"]
    assert note.cosigners(signed + copies, known) == []
