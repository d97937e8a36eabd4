"""The initial schema: parties, eBLs and their chains, the log, checkpoints, witnessing; append-only triggers.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY_TABLES = ("chain_entry", "log_leaf", "log_node", "checkpoint", "cosignature")
_REFUSAL = "is append-only: rows are never updated or deleted"


def _timestamp() -> sa.Column[datetime]:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "party",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("party_name", sa.String(70), nullable=False),
        sa.Column("ebl_platform", sa.String(4), nullable=False, index=True),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("identifying_codes", sa.JSON(), nullable=False),
        sa.Column("api_key_hash", sa.String(64), nullable=False, unique=True),
        _timestamp(),
    )
    op.create_table(
        "party_key",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("party_id", sa.String(32), sa.ForeignKey("party.id"), nullable=False, index=True),
        sa.Column("public_jwk", sa.JSON(), nullable=False),
        sa.Column("sealed_private_key", sa.LargeBinary(), nullable=True),
        sa.Column("credential", sa.Text(), nullable=False),
        _timestamp(),
    )
    op.create_table(
        "ebl",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("transport_document_reference", sa.String(20), nullable=False, index=True),
        sa.Column("transport_document_sub_reference", sa.String(100), nullable=False),
        sa.Column("document_json", sa.Text(), nullable=False),
        sa.Column("document_checksum", sa.String(64), nullable=False),
        sa.Column("issue_to", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(40), nullable=False),
        sa.Column("chain_length", sa.Integer(), nullable=False),
        sa.Column("superseded", sa.Boolean(), nullable=False),
        _timestamp(),
        sa.UniqueConstraint("transport_document_reference", "transport_document_sub_reference"),
    )
    op.create_table(
        "chain_entry",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("ebl_id", sa.Integer(), sa.ForeignKey("ebl.id"), nullable=False, index=True),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("jws", sa.Text(), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False, unique=True),
        sa.Column("action_code", sa.String(50), nullable=False),
        _timestamp(),
        sa.UniqueConstraint("ebl_id", "sequence"),
    )
    op.create_table(
        "involvement",
        sa.Column("ebl_id", sa.Integer(), sa.ForeignKey("ebl.id"), primary_key=True),
        sa.Column("party_id", sa.String(32), sa.ForeignKey("party.id"), primary_key=True),
    )
    op.create_table(
        "idempotency_record",
        sa.Column("party_id", sa.String(32), sa.ForeignKey("party.id"), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        _timestamp(),
    )
    op.create_table(
        "log_leaf",
        sa.Column("index", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("entry_checksum", sa.String(64), nullable=False, unique=True),
        sa.Column("leaf_hash", sa.LargeBinary(), nullable=False),
        _timestamp(),
    )
    op.create_table(
        "log_node",
        sa.Column("level", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("index", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "checkpoint",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("size", sa.BigInteger(), nullable=False, unique=True),
        sa.Column("root_hash", sa.LargeBinary(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        _timestamp(),
    )
    op.create_table(
        "cosignature",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("checkpoint_size", sa.BigInteger(), nullable=False, index=True),
        sa.Column("witness_url", sa.String(500), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        _timestamp(),
        sa.UniqueConstraint("checkpoint_size", "witness_url"),
    )
    op.create_table(
        "witnessed_log",
        sa.Column("origin", sa.String(200), primary_key=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    _create_append_only_triggers()


def _create_append_only_triggers() -> None:
    """Whoever connects to the database, the ledger tables refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION ebl_refuse_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"RAISE EXCEPTION '% {_REFUSAL}', TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation'; "
            "END $$"
        )
        for table in APPEND_ONLY_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION ebl_refuse_rewrite()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION ebl_refuse_rewrite()"
            )
        return
    for table in APPEND_ONLY_TABLES:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} {_REFUSAL}'); END"
            )


def downgrade() -> None:
    for table in reversed(
        (
            "party",
            "party_key",
            "ebl",
            "chain_entry",
            "involvement",
            "idempotency_record",
            "log_leaf",
            "log_node",
            "checkpoint",
            "cosignature",
            "witnessed_log",
        )
    ):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION ebl_refuse_rewrite()")
