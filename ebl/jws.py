"""Compact JWS (RFC 7515 §7.1) signing and verification with a pinned algorithm.

The algorithm a signature is checked with is the one pinned on the verifying key (:mod:`ebl.keys`), never the
one the JWS header names: a header that names another algorithm fails. ``none`` and HMAC are never accepted
because no key is ever pinned to them. Payloads are JSON; we sign their RFC 8785 form so that our own
signatures are deterministic to read, while verification takes the payload bytes exactly as they were signed.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError

from ebl import canonical
from ebl.errors import InvalidSignature
from ebl.keys import PublicKey, SigningKey

COMPACT_PATTERN = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")

# joserfc flags "EdDSA" as superseded by RFC 9864's "Ed25519"; DESIGN and our peers use "EdDSA" (same
# Ed25519 signature), so the warning says nothing we can act on.
warnings.filterwarnings("ignore", message="EdDSA is deprecated", module="joserfc")


def sign(payload: Mapping[str, Any], key: SigningKey, *, typ: str | None = None) -> str:
    header: dict[str, Any] = {"alg": key.public.alg, "kid": key.kid}
    if typ is not None:
        header["typ"] = typ
    return jws.serialize_compact(
        header, canonical.canonicalize(dict(payload)), key.jose_key(), algorithms=[key.public.alg]
    )


@dataclass(frozen=True)
class Token:
    """A compact JWS, read but not verified: decode it once, then ask it for its kid, its payload, and whether a key
    verifies it."""

    compact: str
    header: dict[str, Any]
    """The protected header, unverified: use it only to find the key that must then verify the JWS."""
    payload_bytes: bytes
    """The payload exactly as signed."""
    _signed: jws.CompactSignature

    @property
    def kid(self) -> str:
        value = self.header.get("kid")
        if not isinstance(value, str) or not value:
            raise InvalidSignature("the JWS header names no kid")
        return value

    def payload(self) -> Any:
        """The payload as I-JSON."""
        return canonical.loads(self.payload_bytes)


def parse(compact: Any) -> Token:
    """Read a compact JWS (RFC 7515 §7.1) without verifying it; raise :class:`InvalidSignature` if it is not one."""
    # fullmatch: the pattern's "$" also matches before a trailing newline.
    if not isinstance(compact, str) or not COMPACT_PATTERN.fullmatch(compact):
        raise InvalidSignature("not a compact JWS (header.payload.signature in base64url)")
    try:
        signed = jws.extract_compact(compact.encode("ascii"))
    except (JoseError, ValueError, TypeError, RecursionError):
        raise InvalidSignature(
            "the JWS header is not base64url JSON with an alg, or the payload is not base64url"
        ) from None
    if not isinstance(signed.protected, dict):
        raise InvalidSignature("the JWS header is not a JSON object")
    return Token(compact, signed.protected, bytes(signed.payload), signed)


def header(compact: Any) -> dict[str, Any]:
    """The protected header, unverified: use it only to find the key that must then verify the JWS."""
    return parse(compact).header


def kid(compact: Any) -> str:
    return parse(compact).kid


def unverified_payload(compact: Any) -> Any:
    """The payload as JSON, without checking the signature (to show what a broken entry claimed)."""
    return parse(compact).payload()


def verify(compact: str | Token, key: PublicKey) -> Any:
    """Verify ``compact`` with ``key`` and return its JSON payload; raise :class:`InvalidSignature` otherwise."""
    return canonical.loads(verify_bytes(compact, key))


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
    try:
        valid = jws.validate_compact(token._signed, key.jose_key(), registry=_registry(key.alg))
    except (JoseError, ValueError, TypeError):
        valid = False
    if not valid:
        raise InvalidSignature(f"the signature does not verify with key {key.kid}")
    return token.payload_bytes


@cache
def _registry(alg: str) -> jws.JWSRegistry:
    """joserfc's registry that admits only ``alg``: the key's pinned algorithm, never the header's choice."""
    return jws.JWSRegistry(algorithms=[alg])
