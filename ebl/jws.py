"""Compact JWS (RFC 7515 §7.1) signing and verification with a pinned algorithm.

The algorithm a signature is checked with is the one pinned on the verifying key (:mod:`ebl.keys`), never the
one the JWS header names: a header that names another algorithm fails. ``none`` and HMAC are never accepted
because no key is ever pinned to them. Payloads are JSON; we sign their RFC 8785 form so that our own
signatures are deterministic to read, while verification takes the payload bytes exactly as they were signed.
"""

from __future__ import annotations

import binascii
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from types import MappingProxyType
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwa import JWSAlgModel

from ebl import canonical
from ebl.errors import InvalidSignature, MalformedJson
from ebl.keys import PublicKey, SigningKey

COMPACT_PATTERN = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
_BASE64URL_TO_BASE64 = bytes.maketrans(b"-_", b"+/")
# The last character of unpadded base64url whose unused low bits are zero, by how many "=" it lacks (RFC 4648 §3.5).
_CLEAN_LAST = {1: b"AEIMQUYcgkosw048", 2: b"AQgw"}

# joserfc flags "EdDSA" as superseded by RFC 9864's "Ed25519"; we and our peers use "EdDSA" (same
# Ed25519 signature), so the warning says nothing we can act on.
warnings.filterwarnings("ignore", message="EdDSA is deprecated")


def sign(payload: Mapping[str, Any], key: SigningKey, *, typ: str | None = None) -> str:
    header: dict[str, Any] = {"alg": key.public.alg, "kid": key.kid}
    if typ is not None:
        header["typ"] = typ
    return jws.serialize_compact(
        header, canonical.canonicalize(dict(payload)), key.jose_key(), algorithms=[key.public.alg]
    )


@dataclass(frozen=True, slots=True)
class Token:
    """A compact JWS, read but not verified: decode it once, then ask it for its kid, its payload, and whether a key
    verifies it."""

    header_segment: bytes
    """The protected header as it came, in base64url."""
    header: Mapping[str, Any]
    """The protected header, unverified: use it only to find the key that must then verify the JWS."""
    payload_bytes: bytes
    """The payload exactly as signed."""
    signing_input: bytes
    """``header.payload`` as it came: the bytes the signature covers."""
    signature_segment: bytes
    """The signature, still in base64url: a broken one fails verification, not reading."""

    @property
    def kid(self) -> str:
        value = self.header.get("kid")
        if not isinstance(value, str) or not value:
            raise InvalidSignature("the JWS header names no kid")
        if _CONTROL.search(value):
            # No key has such a kid, and PostgreSQL could not even look one up with U+0000 (a 500 there, not a 400).
            raise InvalidSignature("the JWS header's kid holds a control character")
        return value

    def payload(self) -> Any:
        """The payload as I-JSON."""
        return _json_payload(self.payload_bytes)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse(compact: Any) -> Token:
    """Read a compact JWS (RFC 7515 §7.1) without verifying it; raise :class:`InvalidSignature` if it is not one."""
    # fullmatch: the pattern's "$" also matches before a trailing newline.
    if not isinstance(compact, str) or not COMPACT_PATTERN.fullmatch(compact):
        raise InvalidSignature("not a compact JWS (header.payload.signature in base64url)")
    signing_input, _, signature_segment = compact.encode("ascii").rpartition(b".")
    header_segment, _, payload_segment = signing_input.partition(b".")
    try:
        payload = _b64url_decode(payload_segment)
    except ValueError:
        raise InvalidSignature("the JWS payload is not base64url") from None
    return Token(header_segment, _protected_header(header_segment), payload, signing_input, signature_segment)


def _b64url_decode(segment: bytes) -> bytes:
    """Strict unpadded base64url (RFC 7515 §2) of a segment :data:`COMPACT_PATTERN` admitted; ``ValueError`` for a
    length no base64 has or a last character with stray low bits, so that a JWS has exactly one encoding."""
    missing = -len(segment) % 4
    if missing == 3 or (missing and segment[-1] not in _CLEAN_LAST[missing]):
        raise ValueError("not canonical base64url")
    return binascii.a2b_base64(segment.translate(_BASE64URL_TO_BASE64) + b"=" * missing, strict_mode=True)


@lru_cache(maxsize=1024)
def _protected_header(segment: bytes) -> Mapping[str, Any]:
    """The decoded header, read-only, remembered: a chain's entries share a handful of headers (one per signer)."""
    try:
        protected = canonical.loads(_b64url_decode(segment))
    except (MalformedJson, ValueError):
        raise InvalidSignature("the JWS header is not base64url JSON") from None
    if not isinstance(protected, dict):
        raise InvalidSignature("the JWS header is not a JSON object")
    if not isinstance(protected.get("alg"), str):
        raise InvalidSignature("the JWS header names no alg")
    return MappingProxyType(protected)


def header(compact: Any) -> Mapping[str, Any]:
    """The protected header, unverified: use it only to find the key that must then verify the JWS."""
    return parse(compact).header


def kid(compact: Any) -> str:
    return parse(compact).kid


def unverified_payload(compact: Any) -> Any:
    """The payload as JSON, without checking the signature (to show what a broken entry claimed)."""
    return parse(compact).payload()


def verify(compact: str | Token, key: PublicKey) -> Any:
    """Verify ``compact`` with ``key`` and return its JSON payload; raise :class:`InvalidSignature` otherwise."""
    return _json_payload(verify_bytes(compact, key))


def _json_payload(payload: bytes) -> Any:
    """A payload as I-JSON, without U+0000: inside base64url, it passes the check of the request's body, and would
    reach the database (a party code, a reference) where PostgreSQL cannot take it."""
    value = canonical.loads(payload)
    if canonical.holds_nul(payload, value):
        raise InvalidSignature("the JWS payload holds U+0000 (NUL), which this node does not take")
    return value


def verify_bytes(compact: str | Token, key: PublicKey) -> bytes:
    """Verify ``compact`` with ``key`` and return the payload bytes it signs; raise :class:`InvalidSignature`."""
    token = compact if isinstance(compact, Token) else parse(compact)
    claimed = token.header
    if claimed.get("alg") != key.alg:
        raise InvalidSignature(
            f"the JWS header names alg {claimed.get('alg')!r} but key {key.kid} is pinned to {key.alg}"
        )
    if "crit" in claimed:
        raise InvalidSignature("the JWS header has critical extensions this verifier does not understand")
    _, algorithm = _pinned(key.alg)
    jose_key = key.jose_key()
    try:
        _check_registered_fields(token.header_segment, key.alg)
        algorithm.check_key(jose_key)
        valid = algorithm.verify(token.signing_input, _b64url_decode(token.signature_segment), jose_key)
    except (JoseError, ValueError, TypeError):
        valid = False
    if not valid:
        raise InvalidSignature(f"the signature does not verify with key {key.kid}")
    return token.payload_bytes


@cache
def _pinned(alg: str) -> tuple[jws.JWSRegistry, JWSAlgModel]:
    """joserfc's registry that admits only ``alg`` (the key's pinned algorithm, never the header's choice) and its
    implementation of ``alg``, looked up once: a chain verifies a hundred signatures with the same algorithm."""
    registry = jws.JWSRegistry(algorithms=[alg])
    return registry, registry.get_alg(alg)


@lru_cache(maxsize=1024)
def _check_registered_fields(header_segment: bytes, alg: str) -> None:
    """joserfc's check of the header's registered fields (raises ``JoseError``), remembered per header as
    :func:`_protected_header` is: the entries of a chain repeat a handful of headers."""
    registry, _ = _pinned(alg)
    registry.check_header(dict(_protected_header(header_segment)))
