"""Real signed eBL bundles for tests, built from the pure modules alone (no node, no database).

A :class:`Corridor` is one node (platform ``CQSB``, an Ed25519 node key) with the seven corridor parties of
``ebl.corridor`` enrolled on it — each with its own key and a node-signed credential — and the sample to-order bill
``ebl/samples/corridor-bl.json``. Its methods append chain entries exactly as a node would, but without asking the
state machine, so a test can also build chains that break the rules, are signed by the wrong key, and so on::

    corridor = Corridor().story()                 # ISSUE … SACC, eight entries
    report = verify_bundle(corridor.bundle(), corridor.trust())

All parties sit on one platform for simplicity; their identifying codes are the sample's (ZZZ, USCI / UEN).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ebl import canonical, chain, credentials, jws, keys
from ebl.bundle import assemble, sign_head
from ebl.chain import ActionCode, EntryPayload, Transaction
from ebl.corridor import CORRIDOR_PARTIES
from ebl.keys import SigningKey, TrustStore
from ebl.parties import PartyRef
from tests.conftest import CARRIER, CONSIGNEE, CQ_BANK, SG_BANK, SHIPPER, load_sample

PLATFORM = "CQSB"

REFERENCE = "YXRS2611CKGSIN001"
START = datetime(2026, 11, 20, 8, 30, tzinfo=UTC)

STORY = (
    ActionCode.ISSUE,
    ActionCode.TRANSFER,
    ActionCode.ENDORSE_TO_ORDER,
    ActionCode.TRANSFER,
    ActionCode.ENDORSE,
    ActionCode.TRANSFER,
    ActionCode.SURRENDER_FOR_DELIVERY,
    ActionCode.SACC,
)
"""The action codes of :meth:`Corridor.story`, in order."""


@dataclass(frozen=True)
class Party:
    name: str
    ref: dict[str, Any]
    """``{partyName, eblPlatform, identifyingCodes}``: the party as an actor or recipient."""
    roles: tuple[str, ...]
    key: SigningKey
    credential: str


class Corridor:
    """One node, its enrolled parties, one eBL's document and the chain built so far."""

    def __init__(self, *, platform: str = PLATFORM, document: Mapping[str, Any] | None = None) -> None:
        self.platform = platform
        self.node_key = keys.generate()
        self._ticks = 0
        self.document: dict[str, Any] = copy.deepcopy(dict(document)) if document is not None else load_sample()
        self.credentials: dict[str, str] = {}
        """kid → credential, for every key enrolled (also by a rogue node key): bundles pick the ones they need."""
        self.parties: dict[str, Party] = {}
        for seed in CORRIDOR_PARTIES:
            self.enrol(seed.party_name, seed.identifying_codes(), (seed.role.value,))
        self.issue_to: dict[str, Any] = self.issue_to_of(SHIPPER)
        self.entries: list[str] = []

    # -- parties and keys --

    def enrol(
        self,
        name: str,
        codes: list[dict[str, Any]],
        roles: Sequence[str],
        *,
        key: SigningKey | None = None,
        node_key: SigningKey | None = None,
    ) -> Party:
        """Give a party a key and a credential signed by ``node_key`` (default: this node's key)."""
        key = key or keys.generate()
        ref = {"partyName": name, "eblPlatform": self.platform, "identifyingCodes": codes}
        credential = credentials.issue(
            node_key or self.node_key, party=ref, roles=roles, public_key=key.public, issued_at=self.now()
        )
        party = Party(name=name, ref=ref, roles=tuple(roles), key=key, credential=credential)
        self.credentials[key.kid] = credential
        if node_key is None:
            self.parties[name] = party
        return party

    def ref(self, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.parties[name].ref)

    def issue_to_of(self, name: str) -> dict[str, Any]:
        ref = self.ref(name)
        return {"partyName": name, "sendToPlatform": ref["eblPlatform"], "identifyingCodes": ref["identifyingCodes"]}

    def trust(self) -> TrustStore:
        return TrustStore(node_keys={self.platform: (self.node_key.public,)})

    def now(self) -> str:
        """A clock that moves one minute per reading, so every entry has its own time."""
        self._ticks += 1
        return chain.action_datetime(START + timedelta(minutes=self._ticks))

    # -- the chain --

    def manifest(
        self,
        *,
        document: Mapping[str, Any] | None = None,
        issue_to: Mapping[str, Any] | None = None,
        key: SigningKey | None = None,
    ) -> str:
        """The carrier-signed issuance manifest (by default over this document and issueTo, with the carrier's key)."""
        manifest = chain.issuance_manifest(document or self.document, issue_to or self.issue_to)
        return jws.sign(manifest.model_dump(exclude_none=True), key or self.parties[CARRIER].key)

    def issue(
        self,
        to: str = SHIPPER,
        *,
        by: str = CARRIER,
        manifest: str | None = None,
        key: SigningKey | None = None,
        issue_to: Mapping[str, Any] | None = None,
    ) -> str:
        """Entry 0. ``issue_to`` (default: ``to``'s) is what the bundle and the manifest name."""
        self.issue_to = dict(issue_to) if issue_to is not None else self.issue_to_of(to)
        return self.act(by, ActionCode.ISSUE, to, key=key, manifest=manifest or self.manifest())

    def act(
        self,
        actor: str,
        action: ActionCode,
        recipient: str | None = None,
        *,
        key: SigningKey | None = None,
        manifest: str | None = None,
        **transaction: Any,
    ) -> str:
        """Append the next entry, signed by ``key`` (default: the actor's). The state machine is not consulted."""
        tx = Transaction(
            actionCode=action,
            actor=PartyRef.model_validate(self.ref(actor)),
            recipient=PartyRef.model_validate(self.ref(recipient)) if recipient is not None else None,
            actionDateTime=self.now(),
            **transaction,
        )
        payload = EntryPayload(
            transportDocumentReference=self.document["transportDocumentReference"],
            transportDocumentChecksum=canonical.checksum(self.document),
            sequence=len(self.entries),
            previousEntryChecksum=chain.entry_checksum(self.entries[-1]) if self.entries else None,
            transaction=tx,
            eblPlatform=self.platform,
            issuanceManifestSignedContent=manifest,
        )
        compact = chain.sign_entry(payload, key or self.parties[actor].key)
        self.entries.append(compact)
        return compact

    def story(self) -> Corridor:
        """The corridor story on the sample to-order bill (endorsee Bank of Chongqing), ending surrendered."""
        self.issue(SHIPPER)
        self.act(SHIPPER, ActionCode.TRANSFER, CQ_BANK)
        self.act(CQ_BANK, ActionCode.ENDORSE_TO_ORDER, SG_BANK)
        self.act(CQ_BANK, ActionCode.TRANSFER, SG_BANK)
        self.act(SG_BANK, ActionCode.ENDORSE, CONSIGNEE)
        self.act(SG_BANK, ActionCode.TRANSFER, CONSIGNEE)
        self.act(CONSIGNEE, ActionCode.SURRENDER_FOR_DELIVERY, CARRIER)
        self.act(CARRIER, ActionCode.SACC)
        return self

    # -- the bundle --

    def head(self, entries: Sequence[str] | None = None, *, node_key: SigningKey | None = None) -> str:
        return sign_head(
            node_key or self.node_key,
            document_checksum=canonical.checksum(self.document),
            transport_document_reference=self.document["transportDocumentReference"],
            entries=self.entries if entries is None else entries,
            platform=self.platform,
            exported_at=self.now(),
        )

    def credentials_for(self, entries: Sequence[str]) -> list[str]:
        """The credentials of every enrolled key that signed one of ``entries`` or the issuance manifest."""
        kids = {jws.kid(compact) for compact in entries}
        first = EntryPayload.model_validate(jws.unverified_payload(entries[0]))
        if first.issuanceManifestSignedContent is not None:
            kids.add(jws.kid(first.issuanceManifestSignedContent))
        return [self.credentials[kid] for kid in sorted(kids) if kid in self.credentials]

    def bundle(
        self,
        *,
        entries: Sequence[str] | None = None,
        head: str | None = None,
        credentials: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """The bundle a node would export now (``entries`` and ``head`` default to the whole chain)."""
        entries = list(self.entries if entries is None else entries)
        return assemble(
            document=copy.deepcopy(self.document),
            issue_to=copy.deepcopy(self.issue_to),
            entries=entries,
            credentials=self.credentials_for(entries) if credentials is None else credentials,
            head=head if head is not None else self.head(entries),
        )
