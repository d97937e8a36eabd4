"""Compact JWS with pinned algorithms (ebl.jws), keys and trust store (ebl.keys), key credentials (ebl.credentials)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from joserfc import jwk as jose_jwk
from joserfc import jws as jose_jws

from ebl import credentials, jws, keys
from ebl.errors import BadRequest, InvalidSignature, MalformedJson

# joserfc flags "EdDSA" as superseded by RFC 9864's "Ed25519"; we and our peers use "EdDSA" (see ebl.jws).
pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")

PAYLOAD = {"transportDocumentReference": "YXRS2611CKGSIN001", "sequence": 0, "weight": 11620.0, "name": "重庆"}
CURVES = ["Ed25519", "P-256"]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(value: Any) -> str:
    return b64(json.dumps(value).encode("utf-8"))


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


@pytest.fixture(scope="module")
def ed() -> keys.SigningKey:
    return keys.generate("Ed25519")


@pytest.fixture(scope="module")
def p256() -> keys.SigningKey:
    return keys.generate("P-256")


@pytest.fixture(scope="module")
def rsa_private() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def rsa_public_jwk(private: rsa.RSAPrivateKey, **extra: Any) -> dict[str, Any]:
    public = dict(jose_jwk.RSAKey.import_key(private.public_key()).as_dict(private=False))
    return {**public, **extra}


# -- sign / verify ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("curve", CURVES)
def test_sign_verify_roundtrip(curve: str) -> None:
    key = keys.generate(curve)
    token = jws.sign(PAYLOAD, key)
    assert jws.verify(token, key.public) == PAYLOAD
    assert jws.header(token) == {"alg": keys.ALGORITHM_BY_CURVE[curve], "kid": key.kid}
    assert jws.kid(token) == key.kid
    assert jws.unverified_payload(token) == PAYLOAD


def test_signed_payload_is_the_rfc8785_form(ed: keys.SigningKey) -> None:
    token = jws.sign({"b": 1, "a": 11620.0}, ed)
    assert unb64(token.split(".")[1]) == b'{"a":11620,"b":1}'


def test_typ_goes_into_the_protected_header(ed: keys.SigningKey) -> None:
    token = jws.sign(PAYLOAD, ed, typ="example+jws")
    assert jws.header(token)["typ"] == "example+jws"
    assert jws.verify(token, ed.public) == PAYLOAD


def test_verify_with_another_key_of_the_same_type_fails(ed: keys.SigningKey, p256: keys.SigningKey) -> None:
    for signer in (ed, p256):
        other = keys.generate("Ed25519" if signer is ed else "P-256")
        with pytest.raises(InvalidSignature):
            jws.verify(jws.sign(PAYLOAD, signer), other.public)


def test_es256_token_verified_with_ed25519_key_fails(ed: keys.SigningKey, p256: keys.SigningKey) -> None:
    with pytest.raises(InvalidSignature):
        jws.verify(jws.sign(PAYLOAD, p256), ed.public)
    with pytest.raises(InvalidSignature):
        jws.verify(jws.sign(PAYLOAD, ed), p256.public)


def test_header_alg_that_differs_from_the_pinned_alg_fails_even_with_a_valid_signature(
    rsa_private: rsa.RSAPrivateKey,
) -> None:
    # The same RSA key pinned to PS256 must not accept an RS256 signature.
    pinned = keys.parse_public_jwk(rsa_public_jwk(rsa_private, alg="PS256"))
    token = jose_jws.serialize_compact(
        {"alg": "RS256", "kid": pinned.kid}, b"{}", jose_jwk.RSAKey.import_key(rsa_private), algorithms=["RS256"]
    )
    with pytest.raises(InvalidSignature):
        jws.verify(token, pinned)


@pytest.mark.parametrize("signature", ["", "AA"])
def test_alg_none_is_refused(ed: keys.SigningKey, signature: str) -> None:
    token = f"{b64json({'alg': 'none', 'kid': ed.kid})}.{b64json(PAYLOAD)}.{signature}"
    with pytest.raises(InvalidSignature):
        jws.verify(token, ed.public)


def _public_secrets(key: keys.SigningKey) -> list[bytes]:
    public = key.private.public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    secrets = [pem, der, json.dumps(key.public.to_json()).encode(), unb64(key.public.jwk["x"])]
    return secrets


@pytest.mark.parametrize("curve", CURVES)
def test_hmac_with_the_public_key_as_secret_is_refused(curve: str) -> None:
    """The classic algorithm-confusion attack: HS256 keyed with bytes everybody knows."""
    key = keys.generate(curve)
    for secret in _public_secrets(key):
        for alg, digest in (("HS256", hashlib.sha256), ("HS512", hashlib.sha512)):
            signing_input = f"{b64json({'alg': alg, 'kid': key.kid})}.{b64json(PAYLOAD)}"
            mac = hmac.new(secret, signing_input.encode("ascii"), digest).digest()
            with pytest.raises(InvalidSignature):
                jws.verify(f"{signing_input}.{b64(mac)}", key.public)


@pytest.mark.parametrize("curve", CURVES)
def test_tampered_payload_is_refused(curve: str) -> None:
    key = keys.generate(curve)
    header, _, signature = jws.sign(PAYLOAD, key).split(".")
    forged = b64(json.dumps({**PAYLOAD, "sequence": 1}, separators=(",", ":"), sort_keys=True).encode())
    with pytest.raises(InvalidSignature):
        jws.verify(f"{header}.{forged}.{signature}", key.public)


@pytest.mark.parametrize("curve", CURVES)
def test_tampered_signature_is_refused(curve: str) -> None:
    key = keys.generate(curve)
    header, payload, signature = jws.sign(PAYLOAD, key).split(".")
    raw = bytearray(unb64(signature))
    raw[0] ^= 1
    with pytest.raises(InvalidSignature):
        jws.verify(f"{header}.{payload}.{b64(bytes(raw))}", key.public)
    with pytest.raises(InvalidSignature):
        jws.verify(f"{header}.{payload}.{b64(bytes(raw[:-1]))}", key.public)


def test_tampered_header_is_refused(ed: keys.SigningKey) -> None:
    _, payload, signature = jws.sign(PAYLOAD, ed).split(".")
    header = b64json({"alg": "EdDSA", "kid": ed.kid, "typ": "x"})
    with pytest.raises(InvalidSignature):
        jws.verify(f"{header}.{payload}.{signature}", ed.public)


def test_critical_header_extensions_are_refused(ed: keys.SigningKey) -> None:
    payload = json.dumps(PAYLOAD).encode()
    for crit in (["exp"], [], 5, "b64"):
        header = {"alg": "EdDSA", "kid": ed.kid, "crit": crit, "exp": 1}
        signing_input = f"{b64json(header)}.{b64(payload)}"
        assert isinstance(ed.private, ed25519.Ed25519PrivateKey)
        signature = ed.private.sign(signing_input.encode("ascii"))
        with pytest.raises(InvalidSignature):
            jws.verify(f"{signing_input}.{b64(signature)}", ed.public)


def test_verified_payload_must_be_i_json(ed: keys.SigningKey) -> None:
    token = jose_jws.serialize_compact(
        {"alg": "EdDSA", "kid": ed.kid}, b'{"a": 1, "a": 2}', ed.jose_key(), algorithms=["EdDSA"]
    )
    with pytest.raises(MalformedJson):
        jws.verify(token, ed.public)


def _valid(ed: keys.SigningKey) -> str:
    return jws.sign(PAYLOAD, ed)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: None,
        lambda t: 42,
        lambda t: t.encode(),
        lambda t: "",
        lambda t: t + "\n",
        lambda t: "\n" + t,
        lambda t: t + " ",
        lambda t: t + ".",
        lambda t: t + ".AAAA",
        lambda t: ".".join(t.split(".")[:2]),
        lambda t: t.replace(".", "..", 1),
        lambda t: t.split(".")[0] + "=." + ".".join(t.split(".")[1:]),
        lambda t: t.replace("-", "+").replace("_", "/") + "+/",
        lambda t: "ey JhbGciOiJFZERTQSJ9." + ".".join(t.split(".")[1:]),
    ],
)
def test_malformed_compact_strings_are_refused(ed: keys.SigningKey, mangle: Any) -> None:
    token = mangle(_valid(ed))
    with pytest.raises(InvalidSignature):
        jws.verify(token, ed.public)
    with pytest.raises(InvalidSignature):
        jws.header(token)


_BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _with_a_stray_bit(segment: str) -> str:
    """Another base64url spelling of the same bytes: the last character with one of its unused low bits set."""
    assert len(segment) % 4 in (2, 3), "only a segment without a whole last quantum has unused bits"
    return segment[:-1] + _BASE64URL[_BASE64URL.index(segment[-1]) + 1]


def test_a_segment_spelled_with_stray_bits_is_refused(ed: keys.SigningKey) -> None:
    # One signed byte string has one encoding: a lenient decoder would read these as the genuine JWS.
    token = next(t for n in range(8) if len((t := jws.sign({"n": "x" * n}, ed)).split(".")[1]) % 4 in (2, 3))
    header, payload, signature = token.split(".")
    assert unb64(_with_a_stray_bit(payload)) == unb64(payload)
    assert unb64(_with_a_stray_bit(signature)) == unb64(signature)
    jws.verify(token, ed.public)
    for forged in (
        f"{header}.{_with_a_stray_bit(payload)}.{signature}",
        f"{header}.{payload}.{_with_a_stray_bit(signature)}",
    ):
        with pytest.raises(InvalidSignature):
            jws.verify(forged, ed.public)
    with pytest.raises(InvalidSignature):
        jws.parse(f"{header}.{_with_a_stray_bit(payload)}.{signature}")


@pytest.mark.parametrize(
    "header_segment",
    [
        b64(b"not json"),
        b64(b"[1, 2]"),
        b64(b'"EdDSA"'),
        b64(b"\xff\xfe"),
        b64(b"[" * 100_000 + b"]" * 100_000),
        "A",  # one base64url character is never a whole byte
        b64(b'{"kid":"k"}'),  # no alg
        # Two kids: which key a reader looks up would depend on its JSON parser.
        b64(b'{"alg":"EdDSA","kid":"k1","kid":"k2"}'),
    ],
)
def test_unreadable_headers_are_refused(ed: keys.SigningKey, header_segment: str) -> None:
    _, payload, signature = _valid(ed).split(".")
    token = f"{header_segment}.{payload}.{signature}"
    with pytest.raises(InvalidSignature):
        jws.header(token)
    with pytest.raises(InvalidSignature):
        jws.verify(token, ed.public)


@pytest.mark.parametrize("header", [{"alg": "EdDSA"}, {"alg": "EdDSA", "kid": ""}, {"alg": "EdDSA", "kid": 7}])
def test_kid_requires_a_kid(ed: keys.SigningKey, header: dict[str, Any]) -> None:
    token = f"{b64json(header)}.{b64json(PAYLOAD)}.AAAA"
    with pytest.raises(InvalidSignature):
        jws.kid(token)


def test_unverified_payload_refuses_what_is_not_json(ed: keys.SigningKey) -> None:
    header, _, signature = _valid(ed).split(".")
    with pytest.raises(BadRequest):
        jws.unverified_payload(f"{header}.{b64(b'not json')}.{signature}")
    with pytest.raises(BadRequest):
        jws.unverified_payload(f"{header}.A.{signature}")


# -- public JWKs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("curve", CURVES)
def test_parse_public_jwk_pins_the_algorithm_and_recomputes_the_kid(curve: str) -> None:
    key = keys.generate(curve)
    submitted = {**key.public.to_json(), "kid": "attacker-chosen", "alg": keys.ALGORITHM_BY_CURVE[curve]}
    parsed = keys.parse_public_jwk(submitted)
    assert parsed.kid == key.kid
    assert parsed.alg == keys.ALGORITHM_BY_CURVE[curve]
    without_alg = {k: v for k, v in key.public.to_json().items() if k not in ("alg", "kid", "use")}
    assert keys.parse_public_jwk(without_alg) == key.public
    token = jws.sign(PAYLOAD, key)
    assert jws.verify(token, parsed) == PAYLOAD


def test_parse_public_jwk_refuses_private_members(ed: keys.SigningKey, p256: keys.SigningKey) -> None:
    for key in (ed, p256):
        private = dict(key.jose_key().as_dict(private=True))
        assert "d" in private
        with pytest.raises(BadRequest):
            keys.parse_public_jwk(private)
    with pytest.raises(BadRequest):
        keys.parse_public_jwk({"kty": "oct", "k": b64(b"secret")})


def test_parse_public_jwk_refuses_rsa_private_members(rsa_private: rsa.RSAPrivateKey) -> None:
    private = dict(jose_jwk.RSAKey.import_key(rsa_private).as_dict(private=True))
    with pytest.raises(BadRequest):
        keys.parse_public_jwk(private)
    for member in ("p", "q", "dp", "dq", "qi"):
        with pytest.raises(BadRequest):
            keys.parse_public_jwk({**rsa_public_jwk(rsa_private), member: private[member]})


@pytest.mark.filterwarnings("ignore:Key size should be")
def test_parse_public_jwk_refuses_small_rsa() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(BadRequest):
        keys.parse_public_jwk(rsa_public_jwk(small))


@pytest.mark.parametrize(
    ("curve", "alg"),
    [("Ed25519", "ES256"), ("Ed25519", "HS256"), ("Ed25519", "none"), ("P-256", "EdDSA"), ("P-256", "ES384")],
)
def test_parse_public_jwk_refuses_an_alg_that_does_not_fit(curve: str, alg: str) -> None:
    key = keys.generate(curve)
    with pytest.raises(BadRequest):
        keys.parse_public_jwk({**key.public.to_json(), "alg": alg})


@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "HS256", "none", "RS512"])
def test_parse_public_jwk_refuses_rsa_with_a_foreign_alg(rsa_private: rsa.RSAPrivateKey, alg: str) -> None:
    with pytest.raises(BadRequest):
        keys.parse_public_jwk(rsa_public_jwk(rsa_private, alg=alg))


@pytest.mark.parametrize(
    "jwk",
    [
        {"kty": "foo"},
        {"x": "AAAA"},
        {"kty": "OKP", "crv": "X25519", "x": b64(bytes(32))},
        {"kty": "OKP", "crv": "Ed448", "x": b64(bytes(57))},
        {"kty": "EC", "crv": "P-384", "x": b64(bytes(48)), "y": b64(bytes(48))},
        {"kty": "EC", "crv": "secp256k1", "x": b64(bytes(32)), "y": b64(bytes(32))},
        {"kty": ["OKP"], "crv": "Ed25519", "x": b64(bytes(32))},
        {"kty": "OKP", "crv": "Ed25519"},
        {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"},
        {"kty": "OKP", "crv": "Ed25519", "x": 5},
        {"kty": "EC", "crv": "P-256", "x": b64(bytes(32)), "y": b64(bytes(32))},
        {"kty": "RSA", "n": 5, "e": "AQAB"},
        {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
        [],
        "EdDSA",
        None,
    ],
)
def test_parse_public_jwk_refuses_unknown_or_malformed_keys(jwk: Any) -> None:
    with pytest.raises(BadRequest):
        keys.parse_public_jwk(jwk)


@pytest.mark.parametrize("alg", ["PS256", "RS256"])
def test_rsa_2048_signature_made_with_joserfc_verifies_through_ebl(rsa_private: rsa.RSAPrivateKey, alg: str) -> None:
    public = keys.parse_public_jwk(rsa_public_jwk(rsa_private, alg=alg))
    assert public.alg == alg
    assert public.kid == jose_jwk.RSAKey.import_key(rsa_private.public_key()).thumbprint()
    token = jose_jws.serialize_compact(
        {"alg": alg, "kid": public.kid},
        json.dumps(PAYLOAD).encode(),
        jose_jwk.RSAKey.import_key(rsa_private),
        algorithms=[alg],
    )
    assert jws.verify(token, public) == PAYLOAD
    other = "RS256" if alg == "PS256" else "PS256"
    with pytest.raises(InvalidSignature):
        jws.verify(token, keys.parse_public_jwk(rsa_public_jwk(rsa_private, alg=other)))


def test_rsa_key_without_alg_is_pinned_to_ps256(rsa_private: rsa.RSAPrivateKey) -> None:
    assert keys.parse_public_jwk(rsa_public_jwk(rsa_private)).alg == "PS256"


def test_generate_refuses_other_curves() -> None:
    with pytest.raises(BadRequest):
        keys.generate("P-384")


# -- sealing private keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize("curve", CURVES)
def test_seal_unseal_roundtrip(curve: str) -> None:
    key = keys.generate(curve)
    kek = bytes(range(32))
    sealed = keys.seal(key.private, kek, context=key.kid)
    assert (
        key.private.private_bytes(
            serialization.Encoding.Raw if curve == "Ed25519" else serialization.Encoding.DER,
            serialization.PrivateFormat.Raw if curve == "Ed25519" else serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        not in sealed
    )
    restored = keys.unseal(sealed, kek, context=key.kid)
    assert restored.public == key.public
    assert jws.verify(jws.sign(PAYLOAD, restored), key.public) == PAYLOAD
    assert keys.seal(key.private, kek, context=key.kid) != sealed  # a fresh nonce every time


def test_unseal_with_wrong_context_kek_or_bytes_fails(ed: keys.SigningKey) -> None:
    kek = bytes(range(32))
    sealed = keys.seal(ed.private, kek, context=ed.kid)
    with pytest.raises(InvalidTag):
        keys.unseal(sealed, kek, context="another-kid")
    with pytest.raises(InvalidTag):
        keys.unseal(sealed, bytes(32), context=ed.kid)
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(InvalidTag):
        keys.unseal(bytes(tampered), kek, context=ed.kid)


def test_node_key_and_secret_files_are_created_once_private_and_reloaded(tmp_path: Path) -> None:
    node_path = tmp_path / "keys" / "node.pem"
    node = keys.load_or_create_node_key(node_path)
    assert keys.load_or_create_node_key(node_path).public == node.public
    assert node.public.alg == "EdDSA"
    secret_path = tmp_path / "keys" / "kek.bin"
    secret = keys.load_or_create_secret(secret_path)
    assert len(secret) == 32
    assert keys.load_or_create_secret(secret_path) == secret
    for path in (node_path, secret_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_secret_file_of_wrong_length_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kek.bin"
    path.write_bytes(b"short")
    with pytest.raises(keys.KeysSetupError, match="32 bytes"):
        keys.load_or_create_secret(path)


def test_a_node_key_file_that_holds_no_ed25519_key_is_refused(tmp_path: Path, p256: keys.SigningKey) -> None:
    path = tmp_path / "node.pem"
    path.write_text("garbage\n")
    with pytest.raises(keys.KeysSetupError, match="is not an unencrypted PEM private key"):
        keys.load_or_create_node_key(path)
    path.write_bytes(
        p256.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(keys.KeysSetupError, match="must hold an Ed25519 private key"):
        keys.load_or_create_node_key(path)


def test_a_keys_folder_that_cannot_be_created_is_refused_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(keys.KeysSetupError, match="cannot be created or read: Not a directory"):
        keys.load_or_create_node_key(tmp_path / "a-file" / "keys" / "node.pem")
    with pytest.raises(keys.KeysSetupError, match="cannot be created or read: Not a directory"):
        keys.load_or_create_secret(tmp_path / "a-file" / "keys" / "kek.bin")


# -- trust store ------------------------------------------------------------------------------------------------


def test_trust_store_json_roundtrip(ed: keys.SigningKey, p256: keys.SigningKey, tmp_path: Path) -> None:
    sg_node = keys.generate()
    store = keys.TrustStore(node_keys={"CQSB": (ed.public,), "SGSB": (sg_node.public,)}).with_node_key(
        "CQSB", keys.generate().public
    )
    store = keys.TrustStore(node_keys=store.node_keys, carrier_keys={"CQSB": (p256.public,)})
    data = store.to_json()
    again = keys.TrustStore.from_json(json.loads(json.dumps(data)))
    assert again.to_json() == data
    assert again.node_key("CQSB", ed.kid) == ed.public
    assert again.node_key("SGSB", sg_node.kid) == sg_node.public
    assert again.node_key("SGSB", ed.kid) is None
    assert again.carrier_key("CQSB", p256.kid) == p256.public
    assert again.carrier_key("SGSB", p256.kid) is None
    path = tmp_path / "trust.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert keys.TrustStore.load(path).to_json() == data


def test_with_node_key_is_idempotent(ed: keys.SigningKey) -> None:
    store = keys.TrustStore(node_keys={}).with_node_key("CQSB", ed.public)
    assert store.with_node_key("CQSB", ed.public) is store
    assert store.node_keys["CQSB"] == (ed.public,)


@pytest.mark.parametrize(
    "data",
    [
        [],
        {},
        {"platforms": []},
        {"platforms": {"CQSB": []}},
        {"platforms": {"CQSB": {"nodeKeys": {}}}},
        {"platforms": {"CQSB": {"nodeKeys": [{"kty": "oct", "k": "AAAA"}]}}},
    ],
)
def test_trust_store_refuses_malformed_files(data: Any) -> None:
    with pytest.raises(BadRequest):
        keys.TrustStore.from_json(data)


def test_trust_store_refuses_a_private_key(ed: keys.SigningKey) -> None:
    private = dict(ed.jose_key().as_dict(private=True))
    with pytest.raises(BadRequest):
        keys.TrustStore.from_json({"platforms": {"CQSB": {"nodeKeys": [private]}}})


# -- party key credentials -----------------------------------------------------------------------------------

CARRIER = {
    "partyName": "Yuxin Rail-Sea Forwarding Co., Ltd.",
    "eblPlatform": "CQSB",
    "identifyingCodes": [{"codeListProvider": "ZZZ", "codeListName": "USCI", "partyCode": "91500000MA5U000002"}],
}
ISSUED_AT = "2026-11-20T08:00:00.000Z"


@pytest.fixture(scope="module")
def node() -> keys.SigningKey:
    return keys.generate()


@pytest.fixture(scope="module")
def trust(node: keys.SigningKey) -> keys.TrustStore:
    return keys.TrustStore(node_keys={"CQSB": (node.public,)})


def test_credential_roundtrip(node: keys.SigningKey, trust: keys.TrustStore, p256: keys.SigningKey) -> None:
    compact = credentials.issue(node, party=CARRIER, roles=["carrier"], public_key=p256.public, issued_at=ISSUED_AT)
    assert jws.header(compact)["typ"] == credentials.CREDENTIAL_TYPE
    credential = credentials.verify(compact, trust)
    assert credential.party == CARRIER
    assert credential.roles == ("carrier",)
    assert credential.key == p256.public
    assert credential.issued_at == ISSUED_AT
    assert credential.compact == compact
    # The vouched-for key verifies what its party signs.
    assert jws.verify(jws.sign(PAYLOAD, p256), credential.key) == PAYLOAD


def test_credential_from_a_node_trusted_for_another_platform_is_refused(
    node: keys.SigningKey, trust: keys.TrustStore, ed: keys.SigningKey
) -> None:
    """The Chongqing node cannot vouch for a party that claims to live on the Singapore platform."""
    sg_party = {**CARRIER, "eblPlatform": "SGSB"}
    compact = credentials.issue(node, party=sg_party, roles=["carrier"], public_key=ed.public, issued_at=ISSUED_AT)
    with pytest.raises(InvalidSignature):
        credentials.verify(compact, trust)
    both = trust.with_node_key("SGSB", keys.generate().public)
    with pytest.raises(InvalidSignature):
        credentials.verify(compact, both)
    assert credentials.verify(compact, trust.with_node_key("SGSB", node.public)).party == sg_party


def test_credential_from_an_unknown_node_is_refused(trust: keys.TrustStore, ed: keys.SigningKey) -> None:
    rogue = keys.generate()
    compact = credentials.issue(rogue, party=CARRIER, roles=["carrier"], public_key=ed.public, issued_at=ISSUED_AT)
    with pytest.raises(InvalidSignature):
        credentials.verify(compact, trust)


def test_credential_with_a_forged_kid_header_is_refused(
    node: keys.SigningKey, trust: keys.TrustStore, ed: keys.SigningKey
) -> None:
    """A rogue key that claims the trusted node's kid still does not verify."""
    rogue = keys.generate()
    compact = credentials.issue(rogue, party=CARRIER, roles=["carrier"], public_key=ed.public, issued_at=ISSUED_AT)
    _, payload, signature = compact.split(".")
    header = b64json({"alg": "EdDSA", "kid": node.kid, "typ": credentials.CREDENTIAL_TYPE})
    with pytest.raises(InvalidSignature):
        credentials.verify(f"{header}.{payload}.{signature}", trust)


def _payload(public_key: keys.PublicKey, **changes: Any) -> dict[str, Any]:
    payload = {
        "partyName": CARRIER["partyName"],
        "eblPlatform": CARRIER["eblPlatform"],
        "identifyingCodes": CARRIER["identifyingCodes"],
        "roles": ["carrier"],
        "publicJwk": public_key.to_json(),
        "kid": public_key.kid,
        "issuedAt": ISSUED_AT,
    }
    return {**payload, **changes}


@pytest.mark.parametrize("typ", [None, "JWT", "ebl-key-credential"])
def test_credential_with_the_wrong_typ_is_refused(
    node: keys.SigningKey, trust: keys.TrustStore, ed: keys.SigningKey, typ: str | None
) -> None:
    compact = jws.sign(_payload(ed.public), node, typ=typ)
    with pytest.raises(InvalidSignature):
        credentials.verify(compact, trust)


def test_credential_whose_kid_does_not_match_its_key_is_refused(
    node: keys.SigningKey, trust: keys.TrustStore, ed: keys.SigningKey, p256: keys.SigningKey
) -> None:
    compact = jws.sign(_payload(ed.public, kid=p256.kid), node, typ=credentials.CREDENTIAL_TYPE)
    with pytest.raises(InvalidSignature):
        credentials.verify(compact, trust)


@pytest.mark.parametrize(
    "changes",
    [
        {"roles": "carrier"},
        {"roles": [1]},
        {"publicJwk": {"kty": "oct", "k": "AAAA"}},
        {"publicJwk": "not a key"},
        {"publicJwk": None},
        {"partyName": None, "issuedAt": None, "roles": None},
    ],
)
def test_credential_with_bad_content_is_refused(
    node: keys.SigningKey, trust: keys.TrustStore, ed: keys.SigningKey, changes: dict[str, Any]
) -> None:
    payload = {k: v for k, v in _payload(ed.public, **changes).items() if v is not None}
    compact = jws.sign(payload, node, typ=credentials.CREDENTIAL_TYPE)
    with pytest.raises(InvalidSignature):
        credentials.verify(compact, trust)


def test_tampered_or_malformed_credential_is_refused(
    node: keys.SigningKey, trust: keys.TrustStore, ed: keys.SigningKey
) -> None:
    compact = credentials.issue(node, party=CARRIER, roles=["holder"], public_key=ed.public, issued_at=ISSUED_AT)
    header, _, signature = compact.split(".")
    promoted = b64(json.dumps(_payload(ed.public), separators=(",", ":"), sort_keys=True).encode())
    for bad in (f"{header}.{promoted}.{signature}", f"{header}.{b64(b'[1]')}.{signature}", "x.y", None):
        with pytest.raises(InvalidSignature):
            credentials.verify(bad, trust)
    with pytest.raises(InvalidSignature):
        credentials.verify(f"{header}.{b64(b'{nope')}.{signature}", trust)
