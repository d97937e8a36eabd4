"""Signing keys, public JWKs with a pinned algorithm, encryption at rest, and the trust store.

Every public key carries the one JWS algorithm it may be used with (``alg`` in its JWK): Ed25519 → ``EdDSA``,
P-256 → ``ES256``, RSA → ``PS256`` or ``RS256``. Verification uses that algorithm and never the one a JWS
header claims. ``kid`` is the RFC 7638 thumbprint of the public JWK.

Custodial private keys are stored sealed with AES-256-GCM under a key-encryption key (KEK) kept in the keys
folder, never in the database, so a database dump alone signs nothing.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc import jwk
from joserfc.errors import JoseError

from ebl.errors import BadRequest, InvalidSignature, SetupError
from ebl.log.note import witness_name

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
_JoseKey = jwk.OKPKey | jwk.ECKey | jwk.RSAKey

ALGORITHM_BY_CURVE = {"Ed25519": "EdDSA", "P-256": "ES256"}
_RSA_ALGORITHMS = ("PS256", "RS256")
_MIN_RSA_BITS = 2048
_NONCE_BYTES = 12


@dataclass(frozen=True)
class PublicKey:
    """A public JWK with its ``kid`` and the one algorithm it verifies."""

    jwk: Mapping[str, Any]

    @property
    def kid(self) -> str:
        return str(self.jwk["kid"])

    @property
    def alg(self) -> str:
        return str(self.jwk["alg"])

    @cached_property
    def _jose_key(self) -> _JoseKey:
        return _import_public(self.jwk)

    def jose_key(self) -> _JoseKey:
        # Imported once per key: a chain verifies many entries with the same few keys.
        return self._jose_key

    def to_json(self) -> dict[str, Any]:
        return dict(self.jwk)

    def ed25519(self) -> ed25519.Ed25519PublicKey | None:
        """The raw Ed25519 key (for C2SP notes, which are not JOSE), or ``None`` for another key type."""
        if self.jwk.get("kty") != "OKP" or self.jwk.get("crv") != "Ed25519":
            return None
        x = str(self.jwk["x"])
        return ed25519.Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)))


@dataclass(frozen=True)
class SigningKey:
    private: PrivateKey
    public: PublicKey = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "public", public_key_of(self.private))

    @property
    def kid(self) -> str:
        return self.public.kid

    @cached_property
    def _jose_key(self) -> _JoseKey:
        if isinstance(self.private, ed25519.Ed25519PrivateKey):
            return jwk.OKPKey.import_key(self.private)
        return jwk.ECKey.import_key(self.private)

    def jose_key(self) -> _JoseKey:
        return self._jose_key


def generate(curve: str = "Ed25519") -> SigningKey:
    if curve == "Ed25519":
        return SigningKey(ed25519.Ed25519PrivateKey.generate())
    if curve == "P-256":
        return SigningKey(ec.generate_private_key(ec.SECP256R1()))
    raise BadRequest(f"unsupported signing key type {curve!r}; use Ed25519 or P-256")


def public_key_of(private: PrivateKey) -> PublicKey:
    if isinstance(private, ed25519.Ed25519PrivateKey):
        key: _JoseKey = jwk.OKPKey.import_key(private.public_key())
        alg = "EdDSA"
    else:
        key = jwk.ECKey.import_key(private.public_key())
        alg = "ES256"
    data = dict(key.as_dict(private=False))
    return PublicKey({**data, "kid": key.thumbprint(), "alg": alg, "use": "sig"})


def parse_public_jwk(data: Any) -> PublicKey:
    """Validate a public JWK submitted from outside and pin its algorithm.

    Refuses private keys, symmetric keys, curves other than Ed25519 and P-256, RSA under 2048 bits, and an
    ``alg`` that does not fit the key type.
    """
    if not isinstance(data, Mapping):
        raise BadRequest("a JWK must be a JSON object")
    if any(member in data for member in ("d", "p", "q", "dp", "dq", "qi", "k")):
        raise BadRequest("submit the public JWK only: it holds private or symmetric key material")
    key = _import_public(data)
    if isinstance(key, jwk.RSAKey):
        alg = data.get("alg", "PS256")
        if alg not in _RSA_ALGORITHMS:
            raise BadRequest(f"an RSA key is pinned to PS256 or RS256, not {alg!r}")
        if key.raw_value.key_size < _MIN_RSA_BITS:
            raise BadRequest(f"RSA keys must have at least {_MIN_RSA_BITS} bits")
    else:
        alg = ALGORITHM_BY_CURVE[str(data["crv"])]
        if data.get("alg", alg) != alg:
            raise BadRequest(f"a {data['crv']} key is pinned to {alg}, not {data.get('alg')!r}")
    public = dict(key.as_dict(private=False))
    return PublicKey({**public, "kid": key.thumbprint(), "alg": alg, "use": "sig"})


def _import_public(data: Mapping[str, Any]) -> _JoseKey:
    kty = data.get("kty")
    try:
        if kty == "OKP" and data.get("crv") == "Ed25519":
            return jwk.OKPKey.import_key({"kty": "OKP", "crv": "Ed25519", "x": data["x"]})
        if kty == "EC" and data.get("crv") == "P-256":
            return jwk.ECKey.import_key({"kty": "EC", "crv": "P-256", "x": data["x"], "y": data["y"]})
        if kty == "RSA":
            return jwk.RSAKey.import_key({"kty": "RSA", "n": data["n"], "e": data["e"]})
    except (KeyError, ValueError, TypeError, JoseError) as exc:
        raise InvalidSignature(f"the JWK is malformed: {exc}") from None
    raise BadRequest(f"unsupported key type {kty!r}/{data.get('crv')!r}: use OKP Ed25519, EC P-256 or RSA")


# -- encryption at rest ------------------------------------------------------------------------------------


def seal(private: PrivateKey, kek: bytes, *, context: str) -> bytes:
    """Encrypt a private key under the KEK; ``context`` (the kid) is bound as associated data."""
    der = private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(kek).encrypt(nonce, der, context.encode())


def unseal(sealed: bytes, kek: bytes, *, context: str) -> SigningKey:
    der = AESGCM(kek).decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], context.encode())
    private = serialization.load_der_private_key(der, password=None)
    if not isinstance(private, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise TypeError("a sealed key must be Ed25519 or EC")
    return SigningKey(private)


# -- files in the keys folder ---------------------------------------------------------------------------------


def _write_private_file(path: Path, data: bytes) -> None:
    """Create ``path`` (mode 0600) holding ``data``, unless it exists by now.

    Written aside, then linked into place: processes that start together (server workers) never read a half-written
    key, and all of them end up with the one file that was linked first.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, aside = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)
    finally:
        os.unlink(aside)


def write_public_file(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` at once: a concurrent reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, aside = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(aside, 0o644)
    os.replace(aside, path)


class KeysSetupError(SetupError):
    """A file of the keys folder cannot be created or read, or does not hold what it must."""


def _read_or_create(path: Path, create: Callable[[], bytes]) -> bytes:
    """The bytes of a private file of the keys folder, written with ``create()`` on first start."""
    try:
        if not path.exists():
            _write_private_file(path, create())
        return path.read_bytes()
    except OSError as exc:
        raise KeysSetupError(f"{path} cannot be created or read: {exc.strerror}") from None


def load_or_create_secret(path: Path) -> bytes:
    """A random 256-bit secret in the keys folder (the KEK, the sandbox API-key seed); created on first start."""
    data = _read_or_create(path, lambda: secrets.token_bytes(32))
    if len(data) != 32:
        raise KeysSetupError(f"{path} must hold exactly 32 bytes")
    return data


def load_or_create_node_key(path: Path) -> SigningKey:
    """The node's Ed25519 signing key (PKCS#8 PEM); created on first start."""
    data = _read_or_create(
        path,
        lambda: ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise KeysSetupError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(private, ed25519.Ed25519PrivateKey):
        raise KeysSetupError(f"{path} must hold an Ed25519 private key")
    return SigningKey(private)


# -- trust store ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrustStore:
    """Which node keys (and, where wanted, carrier keys directly) a node or verifier recognises, per platform.

    File format (``keys/trust.json``)::

        {"platforms": {"CQSB": {"nodeKeys": [JWK, ...], "carrierKeys": [JWK, ...]}, ...}}
    """

    node_keys: Mapping[str, tuple[PublicKey, ...]]
    carrier_keys: Mapping[str, tuple[PublicKey, ...]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> TrustStore:
        if not isinstance(data, Mapping) or not isinstance(data.get("platforms"), Mapping):
            raise BadRequest('a trust store is {"platforms": {CODE: {"nodeKeys": [JWK, ...]}}}')
        node_keys: dict[str, tuple[PublicKey, ...]] = {}
        carrier_keys: dict[str, tuple[PublicKey, ...]] = {}
        for platform, entry in data["platforms"].items():
            if not isinstance(entry, Mapping):
                raise BadRequest(f"trust store entry {platform!r} must be an object")
            node_keys[platform] = tuple(parse_public_jwk(k) for k in _list(entry.get("nodeKeys")))
            carrier_keys[platform] = tuple(parse_public_jwk(k) for k in _list(entry.get("carrierKeys")))
        return cls(node_keys=node_keys, carrier_keys=carrier_keys)

    @classmethod
    def load(cls, path: Path) -> TrustStore:
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))

    def to_json(self) -> dict[str, Any]:
        platforms = sorted(set(self.node_keys) | set(self.carrier_keys))
        return {
            "platforms": {
                code: {
                    "nodeKeys": [k.to_json() for k in self.node_keys.get(code, ())],
                    "carrierKeys": [k.to_json() for k in self.carrier_keys.get(code, ())],
                }
                for code in platforms
            }
        }

    def with_node_key(self, platform: str, key: PublicKey) -> TrustStore:
        existing = self.node_keys.get(platform, ())
        if any(k.kid == key.kid for k in existing):
            return self
        return TrustStore({**self.node_keys, platform: (*existing, key)}, self.carrier_keys)

    def node_key(self, platform: str, kid: str) -> PublicKey | None:
        return next((k for k in self.node_keys.get(platform, ()) if k.kid == kid), None)

    def carrier_key(self, platform: str, kid: str) -> PublicKey | None:
        return next((k for k in self.carrier_keys.get(platform, ()) if k.kid == kid), None)

    def ed25519_node_keys(self, platform: str) -> list[ed25519.Ed25519PublicKey]:
        """The raw Ed25519 node keys of ``platform``: those that sign its C2SP checkpoints and cosignatures."""
        return [raw for key in self.node_keys.get(platform, ()) if (raw := key.ed25519()) is not None]

    def witnesses(self, log_platform: str) -> dict[str, list[ed25519.Ed25519PublicKey]]:
        """Who may cosign the checkpoints of ``log_platform``'s log: every other platform's node, under its witness
        name, with its keys (:func:`ebl.log.note.cosigners`)."""
        return {witness_name(p): self.ed25519_node_keys(p) for p in self.node_keys if p != log_platform}


def _list(value: Any) -> Iterable[Any]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise BadRequest("trust store key lists must be JSON arrays")
    return value
