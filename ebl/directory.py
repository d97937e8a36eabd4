"""What a node knows of its own parties that never changes, read from the database once and then kept in memory.

Every request needs it: whose API key this is, which party an identifying code names, the key the node signs with for
a party. A party's row, its identifying codes and its custodial key are written once, when the party is created, and
never updated (a party may register more keys later, but never a custodial one), so a remembered answer cannot go
stale, whichever process of the node created the party. "Not found" is never remembered: a party may be added at
any moment.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, TypeVar

from sqlalchemy.engine import Engine

from ebl import keys
from ebl.parties import PartyRef, Role, code_keys
from ebl.store.db import read_session
from ebl.store.repositories import PartyRepository
from ebl.store.tables import PartyRow

# Enough for every party of a large platform; past it the memory is cleared and filled again from the database.
MAX_REMEMBERED = 100_000


def party_ref_json(name: str, platform: str, codes: Iterable[dict[str, Any]]) -> dict[str, Any]:
    return {"partyName": name, "eblPlatform": platform, "identifyingCodes": [dict(c) for c in codes]}


@dataclass(frozen=True)
class Caller:
    """An authenticated party."""

    id: str
    party_name: str
    platform: str
    roles: frozenset[str]
    identifying_codes: tuple[dict[str, Any], ...]

    @property
    def is_verifier(self) -> bool:
        return Role.VERIFIER in self.roles

    @cached_property
    def _ref(self) -> PartyRef:
        return PartyRef.model_validate(party_ref_json(self.party_name, self.platform, self.identifying_codes))

    def ref(self) -> PartyRef:
        """The caller as the actor of a transaction (never modify it: it is shared by every request of the caller)."""
        return self._ref


@dataclass(frozen=True)
class KnownParty:
    """A party of this node: its id and how transactions name it."""

    id: str
    ref: dict[str, Any]
    created_at: datetime
    is_verifier: bool
    """Verifiers (customs) read eBLs and never act on them, so they may never hold one."""


def _caller(row: PartyRow) -> Caller:
    return Caller(row.id, row.party_name, row.ebl_platform, frozenset(row.roles), tuple(row.identifying_codes))


def _known(row: PartyRow) -> KnownParty:
    return KnownParty(
        row.id,
        party_ref_json(row.party_name, row.ebl_platform, row.identifying_codes),
        row.created_at,
        Role.VERIFIER in row.roles,
    )


class Directory:
    """This node's parties, as far as requests need them: remembered once read (see the module docstring)."""

    def __init__(self, engine: Engine, key_encryption_key: bytes) -> None:
        self._engine = engine
        self._kek = key_encryption_key
        self._callers: dict[str, Caller] = {}
        self._by_code: dict[tuple[str, str, str], KnownParty] = {}
        self._custodial_keys: dict[str, keys.SigningKey | None] = {}

    def remembered_caller(self, api_key_hash: str) -> Caller | None:
        """The caller whose API key has this hash, if it has been read before; no database access."""
        return self._callers.get(api_key_hash)

    def caller(self, api_key_hash: str) -> Caller | None:
        """The caller whose API key has this hash, or ``None`` if no party has it."""
        found = self._callers.get(api_key_hash)
        if found is None:
            with read_session(self._engine) as session:
                row = PartyRepository(session).by_api_key_hash(api_key_hash)
            if row is None:
                return None
            found = _remember(self._callers, api_key_hash, _caller(row))
        return found

    def with_codes(self, platform: str, codes: Iterable[tuple[str, str]]) -> list[KnownParty]:
        """The parties of ``platform`` that hold any of these ``(codeListProvider, partyCode)`` pairs, oldest first."""
        wanted = {(platform, provider, code) for provider, code in codes}
        missing = [key for key in wanted if key not in self._by_code]
        if missing:
            with read_session(self._engine) as session:
                rows = PartyRepository(session).with_codes(
                    platform, [(provider, code) for _, provider, code in missing]
                )
            for row in rows:
                known = _known(row)
                for provider, code in code_keys({"identifyingCodes": row.identifying_codes}):
                    _remember(self._by_code, (platform, provider, code), known)
        found = {party.id: party for key in wanted if (party := self._by_code.get(key)) is not None}
        return sorted(found.values(), key=lambda party: (party.created_at, party.id))

    def custodial_key(self, party_id: str) -> keys.SigningKey | None:
        """The key the node holds for ``party_id`` and signs with on its behalf; ``None`` if it holds its own."""
        if party_id not in self._custodial_keys:
            with read_session(self._engine) as session:
                rows = PartyRepository(session).keys_of(party_id)
            key = next(
                (
                    keys.unseal(row.sealed_private_key, self._kek, context=row.kid)
                    for row in rows
                    if row.sealed_private_key is not None
                ),
                None,
            )
            _remember(self._custodial_keys, party_id, key)
        return self._custodial_keys[party_id]


_K = TypeVar("_K")
_V = TypeVar("_V")


def _remember(memory: dict[_K, _V], key: _K, value: _V) -> _V:
    if len(memory) >= MAX_REMEMBERED:
        memory.clear()
    memory[key] = value
    return value
