"""The offline bundle of one eBL: its document, its signed chain, the key credentials of its signers, a signed head.

A bundle is what a verifier needs to check an eBL without the node (docs/api.md, Verifying)::

    {"bundleVersion": 1, "transportDocument": {...}, "issueTo": {...},
     "entries": [compact JWS, ...], "credentials": [compact JWS, ...], "head": compact JWS,
     "checkpoint": signed note, "inclusionProofs": [tlog-proof, ...]}

Chain links show that no entry was altered, removed from the middle or reordered, but not that the last entries
are all there: a truncated chain is still a well-linked chain. The **head** closes that gap. The exporting node
signs ``{transportDocumentReference, transportDocumentChecksum, length, lastEntryChecksum, eblPlatform,
exportedAt}`` with its node key, vouching for how long the chain was when it exported it. ``checkpoint`` is the
node's signed log checkpoint (docs/ledger.md) and ``inclusionProofs`` a C2SP tlog-proof per entry against it; a bundle
without them (``null``) still verifies, with ``LEDGER_INCLUSION`` SKIPPED.

Pure: no clock (the caller gives ``exportedAt``), no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from ebl import jws
from ebl.chain import entry_checksum
from ebl.keys import SigningKey

BUNDLE_VERSION = 1
HEAD_TYPE = "ebl-chain-head+jws"
"""The ``typ`` of a head: the node key also signs credentials, and a credential must never pass for a head."""

_Checksum = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
# ASCII digits only: in a pattern, ``\d`` also matches other scripts' digits.
_UtcMillis = Annotated[
    str, StringConstraints(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$")
]


def _exact_int(value: Any) -> Any:
    # Literal[1] alone accepts True and 1.0 (they compare equal to 1), even in strict mode.
    if type(value) is not int:
        raise ValueError("bundleVersion must be the integer 1")
    return value


class ChainHead(BaseModel):
    """The payload of a bundle's head: the exporting node vouches for the chain's length and last entry."""

    model_config = ConfigDict(extra="forbid", strict=True, use_attribute_docstrings=True)

    transportDocumentReference: Annotated[str, Field(max_length=20)]
    transportDocumentChecksum: _Checksum
    length: Annotated[int, Field(ge=1)]
    lastEntryChecksum: _Checksum
    """``chain.entry_checksum`` of the last entry: sha256_hex of its compact JWS."""
    eblPlatform: Annotated[str, Field(max_length=4)]
    """The platform of the exporting node; the head verifies with one of its node keys."""
    exportedAt: _UtcMillis


class Bundle(BaseModel):
    """An eBL bundle, version 1. Anything that does not fit this model is not a bundle (``UnusableBundle``)."""

    model_config = ConfigDict(extra="forbid", strict=True, use_attribute_docstrings=True)

    bundleVersion: Annotated[Literal[1], BeforeValidator(_exact_int)]
    transportDocument: dict[str, Any]
    """The DCSA transport document exactly as issued: its RFC 8785 checksum is the one the chain signs."""
    issueTo: dict[str, Any]
    """The DCSA ``IssueToParty`` of the issuance request, covered by the manifest's ``issueToChecksum``."""
    entries: Annotated[list[str], Field(min_length=1)]
    """The chain, oldest first: compact JWS, each signed by the acting party's key."""
    credentials: list[str]
    """Node-signed key credentials for every kid that signed an entry or the issuance manifest."""
    head: str
    """A compact JWS over a :class:`ChainHead`, signed by the exporting node's key."""
    checkpoint: str | None = None
    """The exporting node's log checkpoint (a C2SP signed note) that covers every entry."""
    inclusionProofs: list[str] | None = None
    """One C2SP tlog-proof per entry, in entry order, against ``checkpoint``."""


def sign_head(
    node_key: SigningKey,
    *,
    document_checksum: str,
    transport_document_reference: str,
    entries: Sequence[str],
    platform: str,
    exported_at: str,
) -> str:
    """The exporting node's signed head over ``entries`` (``ValueError`` on bad arguments)."""
    if not entries:
        raise ValueError("a head covers a chain of at least one entry (the ISSUE)")
    head = ChainHead(
        transportDocumentReference=transport_document_reference,
        transportDocumentChecksum=document_checksum,
        length=len(entries),
        lastEntryChecksum=entry_checksum(entries[-1]),
        eblPlatform=platform,
        exportedAt=exported_at,
    )
    return jws.sign(head.model_dump(mode="json"), node_key, typ=HEAD_TYPE)


def assemble(
    *,
    document: Mapping[str, Any],
    issue_to: Mapping[str, Any],
    entries: Sequence[str],
    credentials: Sequence[str],
    head: str,
    checkpoint: str | None = None,
    inclusion_proofs: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A version-1 bundle as a JSON-ready dict.

    The document is passed through as it is, never through a model dump: its checksum is over the value as issued.
    """
    return {
        "bundleVersion": BUNDLE_VERSION,
        "transportDocument": dict(document),
        "issueTo": dict(issue_to),
        "entries": list(entries),
        "credentials": list(credentials),
        "head": head,
        "checkpoint": checkpoint,
        "inclusionProofs": list(inclusion_proofs) if inclusion_proofs is not None else None,
    }
