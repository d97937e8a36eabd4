"""PINT: transfer chains, envelopes received, additional documents, transfers to send; what other platforms proved.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

APPEND_ONLY_TABLES = ("foreign_proof", "foreign_credential", "transfer_entry")
_REFUSAL = "is append-only: rows are never updated or deleted"


def _timestamp() -> sa.Column[datetime]:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "foreign_proof",
        sa.Column("entry_checksum", sa.String(64), primary_key=True),
        sa.Column("tlog_proof", sa.Text(), nullable=False),
        _timestamp(),
    )
    op.create_table(
        "foreign_credential",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("ebl_platform", sa.String(4), nullable=False),
        sa.Column("credential", sa.Text(), nullable=False),
        _timestamp(),
    )
    op.create_table(
        "transfer_entry",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("ebl_id", sa.Integer(), sa.ForeignKey("ebl.id"), nullable=False, index=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("jws", sa.Text(), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("ebl_platform", sa.String(4), nullable=False),
        sa.Column("last_sequence", sa.Integer(), nullable=False),
        _timestamp(),
        sa.UniqueConstraint("ebl_id", "position"),
    )
    op.create_table(
        "envelope",
        sa.Column("reference", sa.String(100), primary_key=True),
        sa.Column("transport_document_reference", sa.String(20), nullable=False, index=True),
        sa.Column("last_entry_checksum", sa.String(64), nullable=False, index=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("response", sa.Text(), nullable=True),
        _timestamp(),
    )
    op.create_table(
        "additional_document",
        sa.Column("checksum", sa.String(64), primary_key=True),
        sa.Column("media_type", sa.String(100), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        _timestamp(),
    )
    op.create_table(
        "outbound_transfer",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("ebl_id", sa.Integer(), sa.ForeignKey("ebl.id"), nullable=False, index=True),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("ebl_platform", sa.String(4), nullable=False),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("response_code", sa.String(4), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _timestamp(),
        sa.UniqueConstraint("ebl_id", "sequence"),
    )
    # The same refusal as revision 0001's ledger tables (on PostgreSQL its function ebl_refuse_rewrite is reused).
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table in APPEND_ONLY_TABLES:
        if postgresql:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION ebl_refuse_rewrite()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION ebl_refuse_rewrite()"
            )
            continue
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} {_REFUSAL}'); END"
            )


def downgrade() -> None:
    for table in (
        "outbound_transfer",
        "additional_document",
        "envelope",
        "transfer_entry",
        "foreign_credential",
        "foreign_proof",
    ):
        op.drop_table(table)
