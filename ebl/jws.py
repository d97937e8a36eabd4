"""Compact JWS (RFC 7515 §7.1) signing and verification with a pinned algorithm.

The algorithm a signature is checked with is the one pinned on the verifying key (:mod:`ebl.keys`), never the
one the JWS header names: a header that names another algorithm fails. ``none`` and HMAC are never accepted
because no key is ever pinned to them. Payloads are JSON; we sign their RFC 8785 form so that our own
signatures are deterministic to read, while verification takes the payload bytes exactly as they were signed.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import warnings
from collections.abc import Mapping
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


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _parts(compact: Any) -> list[str]:
    # fullmatch: the pattern's "$" also matches before a trailing newline.
    if not isinstance(compact, str) or not COMPACT_PATTERN.fullmatch(compact):
        raise InvalidSignature("not a compact JWS (header.payload.signature in base64url)")
    return compact.split(".")


def header(compact: Any) -> dict[str, Any]:
    """The protected header, unverified: use it only to find the key that must then verify the JWS."""
    try:
        value = json.loads(_b64decode(_parts(compact)[0]))
    except (binascii.Error, ValueError, RecursionError):
        raise InvalidSignature("the JWS header is not base64url JSON") from None
    if not isinstance(value, dict):
        raise InvalidSignature("the JWS header is not a JSON object")
    return value


def kid(compact: Any) -> str:
    value = header(compact).get("kid")
    if not isinstance(value, str) or not value:
        raise InvalidSignature("the JWS header names no kid")
    return value


def unverified_payload(compact: Any) -> Any:
    """The payload as JSON, without checking the signature (to show what a broken entry claimed)."""
    return canonical.loads(payload_bytes(compact))


def payload_bytes(compact: Any) -> bytes:
    """The payload bytes, without checking the signature."""
    try:
        return _b64decode(_parts(compact)[1])
    except binascii.Error:
        raise InvalidSignature("the JWS payload is not base64url") from None


def verify(compact: Any, key: PublicKey) -> Any:
    """Verify ``compact`` with ``key`` and return its JSON payload; raise :class:`InvalidSignature` otherwise."""
    return canonical.loads(verify_bytes(compact, key))


def verify_bytes(compact: Any, key: PublicKey) -> bytes:
    """Verify ``compact`` with ``key`` and return the payload bytes it signs; raise :class:`InvalidSignature`.

    For a caller that already read the payload (:func:`unverified_payload`) and only needs to know that the
    signature covers those very bytes.
    """
    claimed = header(compact)
    if claimed.get("alg") != key.alg:
        raise InvalidSignature(
            f"the JWS header names alg {claimed.get('alg')!r} but key {key.kid} is pinned to {key.alg}"
        )
    if "crit" in claimed:
        raise InvalidSignature("the JWS header has critical extensions this verifier does not understand")
    try:
        result = jws.deserialize_compact(compact, key.jose_key(), algorithms=[key.alg])
    except (JoseError, ValueError, TypeError):
        raise InvalidSignature(f"the signature does not verify with key {key.kid}") from None
    return bytes(result.payload)
