"""Parties as DCSA names them: identifying codes, actor and recipient references, the issue-to party.

A party lives on one platform node. DCSA identifies it by ``eblPlatform`` plus ``identifyingCodes``
(``codeListProvider``, ``partyCode``, ``codeListName``); two references denote the same party when they sit on the
same platform and share an identifying code. Code lists and platform codes are data, not enums: an unknown value
is carried as it is.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# DCSA's string rule: no leading or trailing white space.
_DcsaString = Annotated[str, StringConstraints(pattern=r"^\S(?:.*\S)?$")]

PLATFORM_NOTE = "CQSB and SGSB are this project's sandbox platform codes, not DCSA-registered ones."


class Role(StrEnum):
    CARRIER = "carrier"
    HOLDER = "holder"
    VERIFIER = "verifier"


class IdentifyingCode(BaseModel):
    model_config = ConfigDict(extra="forbid")

    codeListProvider: Annotated[_DcsaString, Field(max_length=100)]
    partyCode: Annotated[_DcsaString, Field(max_length=150)]
    codeListName: Annotated[_DcsaString, Field(max_length=100)] | None = None


class TaxLegalReference(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Annotated[_DcsaString, Field(max_length=50)]
    countryCode: Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
    value: Annotated[_DcsaString, Field(max_length=35)]


class RepresentedParty(BaseModel):
    model_config = ConfigDict(extra="forbid")

    partyName: Annotated[_DcsaString, Field(max_length=70)]
    identifyingCodes: list[IdentifyingCode] = Field(default_factory=list)


class PartyRef(BaseModel):
    """DCSA ``ActorParty`` / ``RecipientParty``: who acts or receives in a transaction."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partyName: Annotated[_DcsaString, Field(max_length=70)]
    eblPlatform: Annotated[_DcsaString, Field(max_length=4, description=PLATFORM_NOTE)]
    identifyingCodes: Annotated[list[IdentifyingCode], Field(min_length=1)]
    taxLegalReferences: list[TaxLegalReference] | None = None
    representedParty: RepresentedParty | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON form, made once: the same dict on every call, so read it and never change it."""
        return self._json

    @cached_property
    def _json(self) -> dict[str, Any]:
        # Verifying a chain asks for each party several times (state machine, signatures, history).
        return self.model_dump(exclude_none=True)


class IssueToParty(BaseModel):
    """DCSA ``IssueToParty``: the first possessor, named in the issuance request."""

    model_config = ConfigDict(extra="forbid")

    partyName: Annotated[_DcsaString, Field(max_length=70)]
    sendToPlatform: Annotated[_DcsaString, Field(max_length=4, description=PLATFORM_NOTE)]
    identifyingCodes: Annotated[list[IdentifyingCode], Field(min_length=1)]
    taxLegalReferences: list[TaxLegalReference] | None = None


def code_keys(party: Any) -> set[tuple[str, str]]:
    """The ``(codeListProvider, partyCode)`` pairs of any party-shaped JSON object."""
    if not isinstance(party, dict):
        return set()
    codes = party.get("identifyingCodes")
    if not isinstance(codes, list):
        return set()
    return {
        (code["codeListProvider"], code["partyCode"])
        for code in codes
        if isinstance(code, dict)
        and isinstance(code.get("codeListProvider"), str)
        and isinstance(code.get("partyCode"), str)
    }


def same_party(a: Any, b: Any) -> bool:
    """Whether two party-shaped JSON objects denote one party.

    Document parties need not name a platform, so the platform decides only when both name one.
    """
    if not isinstance(a, dict) or not isinstance(b, dict):
        return False
    if a == b:  # the common case when a chain is folded: the actor is the party that received it
        return bool(code_keys(a))
    platform_a, platform_b = a.get("eblPlatform"), b.get("eblPlatform")
    if platform_a is not None and platform_b is not None and platform_a != platform_b:
        return False
    return not code_keys(a).isdisjoint(code_keys(b))


NONE_PARTY: dict[str, Any] = {
    "partyName": "NONE",
    "eblPlatform": "NONE",
    "identifyingCodes": [{"codeListProvider": "NONE", "partyCode": "NONE"}],
}
"""DCSA's "No Party", the recipient of ``SIGN``, ``BLANK_ENDORSE`` and ``SURRENDERED`` links."""
