"""SQLModel tables. Rows of ``chain_entry`` are never updated or deleted; the other tables are current state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


class PartyRow(SQLModel, table=True):
    __tablename__ = "party"

    id: str = Field(primary_key=True, max_length=32)
    party_name: str = Field(max_length=70)
    ebl_platform: str = Field(max_length=4, index=True)
    roles: list[str] = Field(sa_column=Column(JSON, nullable=False))
    identifying_codes: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    api_key_hash: str = Field(max_length=64, unique=True)
    created_at: datetime


class PartyCodeRow(SQLModel, table=True):
    """One identifying code of a party: on a platform, a ``(codeListProvider, partyCode)`` pair names one party."""

    __tablename__ = "party_code"

    ebl_platform: str = Field(primary_key=True, max_length=4)
    code_list_provider: str = Field(primary_key=True, max_length=100)
    party_code: str = Field(primary_key=True, max_length=150)
    party_id: str = Field(foreign_key="party.id", index=True, max_length=32)


class PartyKeyRow(SQLModel, table=True):
    __tablename__ = "party_key"

    kid: str = Field(primary_key=True, max_length=64)
    party_id: str = Field(foreign_key="party.id", index=True, max_length=32)
    public_jwk: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    sealed_private_key: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    credential: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime


class EblRow(SQLModel, table=True):
    """One issued transport document and a cache of its state (the chain is the truth)."""

    __tablename__ = "ebl"
    __table_args__ = (
        UniqueConstraint("transport_document_reference", "transport_document_sub_reference"),
        # The latest eBL of a reference, in one index descent (migration 0004 says why).
        Index("ix_ebl_reference_id", "transport_document_reference", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    transport_document_reference: str = Field(max_length=20)
    transport_document_sub_reference: str = Field(default="", max_length=100)
    document_json: str = Field(sa_column=Column(Text, nullable=False))
    document_checksum: str = Field(max_length=64)
    issue_to: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    status: str = Field(max_length=40)
    chain_length: int
    superseded: bool = False
    created_at: datetime


class ChainEntryRow(SQLModel, table=True):
    """A signed chain entry, stored verbatim. ``(ebl_id, sequence)`` is unique: two writers cannot both win."""

    __tablename__ = "chain_entry"
    __table_args__ = (UniqueConstraint("ebl_id", "sequence"),)

    id: int | None = Field(default=None, primary_key=True)
    ebl_id: int = Field(foreign_key="ebl.id", index=True)
    sequence: int
    jws: str = Field(sa_column=Column(Text, nullable=False))
    checksum: str = Field(max_length=64, unique=True)
    action_code: str = Field(max_length=50)
    created_at: datetime


class InvolvementRow(SQLModel, table=True):
    """Which parties of this node may see which eBL (named in the document, or actor/recipient in the chain)."""

    __tablename__ = "involvement"
    # A party's eBLs in page order (GET /v1/ebls); the primary key serves an eBL's parties.
    __table_args__ = (Index("ix_involvement_party_ebl", "party_id", "ebl_id"),)

    ebl_id: int = Field(foreign_key="ebl.id", primary_key=True)
    party_id: str = Field(foreign_key="party.id", primary_key=True, max_length=32)


class IdempotencyRow(SQLModel, table=True):
    __tablename__ = "idempotency_record"

    party_id: str = Field(foreign_key="party.id", primary_key=True, max_length=32)
    key: str = Field(primary_key=True, max_length=255)
    request_hash: str = Field(max_length=64)
    status_code: int | None = None
    response_body: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime


class LogLeafRow(SQLModel, table=True):
    """Leaf ``index`` of the node's RFC 6962 log: one per chain entry, appended in the entry's transaction."""

    __tablename__ = "log_leaf"

    index: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    entry_checksum: str = Field(max_length=64, unique=True)
    leaf_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime


class LogNodeRow(SQLModel, table=True):
    """The hash of the perfect subtree ``(level, index)``, covering leaves ``[index·2^level, (index+1)·2^level)``."""

    __tablename__ = "log_node"

    level: int = Field(primary_key=True)
    index: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class CheckpointRow(SQLModel, table=True):
    """A C2SP checkpoint the node signed. Every one is kept; sizes only grow."""

    __tablename__ = "checkpoint"

    id: int | None = Field(default=None, primary_key=True)
    size: int = Field(sa_column=Column(BigInteger, nullable=False, unique=True))
    root_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    note: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime


class CosignatureRow(SQLModel, table=True):
    """A peer witness's cosignature line on one of this node's checkpoints."""

    __tablename__ = "cosignature"
    __table_args__ = (UniqueConstraint("checkpoint_size", "witness_url"),)

    id: int | None = Field(default=None, primary_key=True)
    checkpoint_size: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    witness_url: str = Field(max_length=500)
    line: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime


class WitnessedLogRow(SQLModel, table=True):
    """As a witness: the latest checkpoint this node cosigned for a peer's log (C2SP keeps only the latest)."""

    __tablename__ = "witnessed_log"

    origin: str = Field(primary_key=True, max_length=200)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    root_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    note: str = Field(sa_column=Column(Text, nullable=False))
    updated_at: datetime


class ForeignProofRow(SQLModel, table=True):
    """For a chain entry another platform recorded: the C2SP tlog-proof of it in that platform's log, as it came."""

    __tablename__ = "foreign_proof"

    entry_checksum: str = Field(primary_key=True, max_length=64)
    tlog_proof: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime


class ForeignCredentialRow(SQLModel, table=True):
    """A key credential another platform's node signed for one of its parties, as it came with an eBL."""

    __tablename__ = "foreign_credential"

    kid: str = Field(primary_key=True, max_length=64)
    ebl_platform: str = Field(max_length=4)
    credential: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime


class TransferEntryRow(SQLModel, table=True):
    """One entry of an eBL's PINT envelope transfer chain (one per cross-platform hop), stored verbatim."""

    __tablename__ = "transfer_entry"
    __table_args__ = (UniqueConstraint("ebl_id", "position"),)

    id: int | None = Field(default=None, primary_key=True)
    ebl_id: int = Field(foreign_key="ebl.id", index=True)
    position: int
    jws: str = Field(sa_column=Column(Text, nullable=False))
    checksum: str = Field(max_length=64)
    ebl_platform: str = Field(max_length=4)
    last_sequence: int
    """The sequence of the last chain entry this hop covers."""
    created_at: datetime


class EnvelopeRow(SQLModel, table=True):
    """As a receiver: one envelope transfer, from its start to its signed answer."""

    __tablename__ = "envelope"

    reference: str = Field(primary_key=True, max_length=100)
    transport_document_reference: str = Field(max_length=20, index=True)
    last_entry_checksum: str = Field(max_length=64, index=True)
    body: str = Field(sa_column=Column(Text, nullable=False))
    accepted: bool = False
    response: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime


class AdditionalDocumentRow(SQLModel, table=True):
    """A supporting document or carrier visualisation received with a transfer, kept by its SHA-256."""

    __tablename__ = "additional_document"

    checksum: str = Field(primary_key=True, max_length=64)
    media_type: str = Field(max_length=100)
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime


class OutboundTransferRow(SQLModel, table=True):
    """As a sender: an eBL this node hands to another platform, delivered until a signed answer comes back."""

    __tablename__ = "outbound_transfer"
    __table_args__ = (UniqueConstraint("ebl_id", "sequence"),)

    id: int | None = Field(default=None, primary_key=True)
    ebl_id: int = Field(foreign_key="ebl.id", index=True)
    sequence: int
    """The chain entry that moved the eBL to ``ebl_platform``."""
    ebl_platform: str = Field(max_length=4)
    status: str = Field(max_length=20, index=True)
    attempts: int = 0
    next_attempt_at: datetime
    envelope: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    response: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    response_code: str | None = Field(default=None, max_length=4)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime


APPEND_ONLY_TABLES = (
    "chain_entry",
    "log_leaf",
    "log_node",
    "checkpoint",
    "cosignature",
    "foreign_proof",
    "foreign_credential",
    "transfer_entry",
)
"""Tables whose rows are never updated or deleted: the database refuses it (see ``ebl.store.db``)."""
