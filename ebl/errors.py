"""The one exception tree of the eBL library.

Every error the domain raises is an :class:`EblError`. Each class carries the HTTP status the API
answers with and a DCSA-style ``errorCodeText``; the API maps the tree to a DCSA ``ErrorResponse`` in
one handler, so a new error needs no new HTTP code.

    EblError
    ├── BadRequest                  400  INVALID_REQUEST
    │   ├── MalformedJson           400  MALFORMED_JSON        (not I-JSON: duplicate keys, NaN, 2^53+ …)
    │   ├── InvalidDocument         400  INVALID_TRANSPORT_DOCUMENT (DCSA schema or business rule)
    │   ├── InvalidSignature        400  INVALID_SIGNATURE     (a JWS that does not verify)
    │   └── UnusableBundle          400  UNUSABLE_BUNDLE       (a bundle too broken to verify)
    ├── Unauthenticated             401  UNAUTHENTICATED
    ├── Forbidden                   403  FORBIDDEN             (the caller's role never allows it)
    ├── NotFound                    404  NOT_FOUND
    ├── Conflict                    409  CONFLICT
    │   ├── ActionRefused           409  <rule name>           (the eBL's current state forbids it)
    │   ├── DuplicateIssuance       409  DUPLICATE_ISSUANCE
    │   ├── LostRace                409  CONCURRENT_UPDATE
    │   ├── IdempotencyKeyReused    409  IDEMPOTENCY_KEY_REUSED
    │   └── WitnessSizeMismatch     409  (C2SP tlog-witness: answered with the witness's size, not an ErrorResponse)
    ├── PayloadTooLarge             413  PAYLOAD_TOO_LARGE
    ├── InvalidProof                422  INVALID_PROOF         (a consistency proof a witness cannot accept)
    └── PeerUnavailable             503  PEER_UNAVAILABLE      (a peer platform that must answer now did not)

A refusal by the state machine names the rule it broke in ``code`` (for example ``NOT_POSSESSOR``), so
the client sees which rule of the state machine (:mod:`ebl.chain`) applies. :class:`RoleForbidden` is the 403 twin of
:class:`ActionRefused`: the same rule names, for an action the actor's role can never perform.

Outside that tree, :class:`SetupError` says that a node cannot start as it is configured, before it answers anyone:

    SetupError
    ├── SettingsError               (ebl.config: an EBL_* variable holds a value the node cannot run with)
    ├── DatabaseSetupError          (ebl.store.db: an unsupported URL, an unreachable database, an unmigratable schema,
    │                                another node's database)
    └── KeysSetupError              (ebl.keys: a key file that cannot be created or read, or holds no usable key)

The ``ebl`` command prints its message in one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar


class SetupError(Exception):
    """The node cannot start as configured; the message says what to change."""


@dataclass(frozen=True)
class ErrorDetail:
    """One entry of a DCSA ``ErrorResponse.errors`` list."""

    message: str
    code: str | None = None
    property: str | None = None
    json_path: str | None = None


class EblError(Exception):
    status_code: ClassVar[int] = 400
    default_code: ClassVar[str] = "INVALID_REQUEST"

    def __init__(self, message: str, *, code: str | None = None, details: Sequence[ErrorDetail] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details: tuple[ErrorDetail, ...] = tuple(details)


class BadRequest(EblError):
    pass


class MalformedJson(BadRequest):
    default_code = "MALFORMED_JSON"


class InvalidDocument(BadRequest):
    default_code = "INVALID_TRANSPORT_DOCUMENT"


class InvalidSignature(BadRequest):
    default_code = "INVALID_SIGNATURE"


class UnusableBundle(BadRequest):
    default_code = "UNUSABLE_BUNDLE"


class Unauthenticated(EblError):
    status_code = 401
    default_code = "UNAUTHENTICATED"


class Forbidden(EblError):
    status_code = 403
    default_code = "FORBIDDEN"


class RoleForbidden(Forbidden):
    """The actor's role can never perform this action (a holder accepting a surrender)."""


class NotFound(EblError):
    status_code = 404
    default_code = "NOT_FOUND"


class Conflict(EblError):
    status_code = 409
    default_code = "CONFLICT"


class ActionRefused(Conflict):
    """The eBL's current state does not allow the action; ``code`` names the rule."""


class DuplicateIssuance(Conflict):
    default_code = "DUPLICATE_ISSUANCE"


class LostRace(Conflict):
    default_code = "CONCURRENT_UPDATE"


class IdempotencyKeyReused(Conflict):
    default_code = "IDEMPOTENCY_KEY_REUSED"


class WitnessSizeMismatch(Conflict):
    """The ``old`` size of an add-checkpoint request is not the size the witness last cosigned for that log."""

    default_code = "WITNESS_SIZE_MISMATCH"

    def __init__(self, latest_size: int) -> None:
        super().__init__(f"this witness last saw size {latest_size} of that log")
        self.latest_size = latest_size


class InvalidProof(EblError):
    status_code = 422
    default_code = "INVALID_PROOF"


class PayloadTooLarge(EblError):
    status_code = 413
    default_code = "PAYLOAD_TOO_LARGE"


class PeerUnavailable(EblError):
    """A peer platform that must confirm something before the node acts did not answer; trying again later may work."""

    status_code = 503
    default_code = "PEER_UNAVAILABLE"
