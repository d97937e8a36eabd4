"""Party key credentials: a node vouches for a party's public key.

A credential is a compact JWS signed by the node key over
``{partyName, eblPlatform, identifyingCodes, roles, publicJwk, kid, issuedAt}``. Bundles carry the credential of
every key that signed an entry, so an offline verifier needs only node keys in its trust store and reaches each
party's key through them. A node vouches only for parties on its own platform.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ebl import jws
from ebl.errors import BadRequest, InvalidSignature
from ebl.keys import PublicKey, SigningKey, TrustStore, parse_public_jwk

CREDENTIAL_TYPE = "ebl-key-credential+jws"


@dataclass(frozen=True)
class Credential:
    """A verified credential: the party it names and the key it vouches for."""

    party: dict[str, Any]
    """``{partyName, eblPlatform, identifyingCodes}`` — the shape of a DCSA actor."""
    roles: tuple[str, ...]
    key: PublicKey
    issued_at: str
    compact: str


def issue(
    node_key: SigningKey,
    *,
    party: dict[str, Any],
    roles: Sequence[str],
    public_key: PublicKey,
    issued_at: str,
) -> str:
    payload = {
        "partyName": party["partyName"],
        "eblPlatform": party["eblPlatform"],
        "identifyingCodes": party["identifyingCodes"],
        "roles": list(roles),
        "publicJwk": public_key.to_json(),
        "kid": public_key.kid,
        "issuedAt": issued_at,
    }
    return jws.sign(payload, node_key, typ=CREDENTIAL_TYPE)


def verify(compact: Any, trust: TrustStore) -> Credential:
    """Check a credential against the node keys of the platform it names; raise :class:`InvalidSignature`."""
    try:
        token = jws.parse(compact)
        payload = token.payload()
    except BadRequest as exc:
        raise InvalidSignature(f"the key credential is unreadable: {exc.message}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("eblPlatform"), str):
        raise InvalidSignature("a key credential names the platform of its party")
    platform = payload["eblPlatform"]
    node_key = trust.node_key(platform, token.kid)
    if node_key is None:
        raise InvalidSignature(f"the credential is signed by a key the trust store does not know for {platform}")
    jws.verify_bytes(token, node_key)  # the payload read above is the one this signature covers
    if token.header.get("typ") != CREDENTIAL_TYPE:
        raise InvalidSignature(f"a key credential has typ {CREDENTIAL_TYPE}")
    try:
        key = parse_public_jwk(payload["publicJwk"])
        roles = payload["roles"]
        if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
            raise InvalidSignature("the credential's roles are not a list of role names")
        if key.kid != payload["kid"]:
            raise InvalidSignature("the credential's kid is not the thumbprint of its key")
        party = {
            "partyName": payload["partyName"],
            "eblPlatform": platform,
            "identifyingCodes": payload["identifyingCodes"],
        }
        return Credential(
            party=party,
            roles=tuple(roles),
            key=key,
            issued_at=str(payload["issuedAt"]),
            compact=compact,
        )
    except (KeyError, TypeError) as exc:
        raise InvalidSignature(f"the credential lacks {exc}") from None
    except InvalidSignature:
        raise
    except BadRequest as exc:
        raise InvalidSignature(f"the credential's key is not acceptable: {exc.message}") from None
