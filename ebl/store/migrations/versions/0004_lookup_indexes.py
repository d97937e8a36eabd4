"""Indexes that serve the two lookups every request makes by their own order, so their plans never hang on statistics.

The latest eBL of a reference (``WHERE transport_document_reference = ? ORDER BY id DESC LIMIT 1``) had only an index
on the reference. PostgreSQL without statistics on ``ebl`` (a new database, a bulk load not yet analysed, autovacuum
off) walked the primary key backwards instead, reading every newer eBL: 2.6 ms at 18,000 eBLs, growing with the table.
An index on ``(reference, id)`` answers it in one descent whatever the planner knows. A party's eBLs
(``GET /v1/ebls``) are found by ``(party_id, ebl_id)``, in page order: the primary key, ``(ebl_id, party_id)``, made
that a scan of every involvement.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_ebl_reference_id", "ebl", ["transport_document_reference", "id"])
    op.drop_index("ix_ebl_transport_document_reference", table_name="ebl")
    op.create_index("ix_involvement_party_ebl", "involvement", ["party_id", "ebl_id"])


def downgrade() -> None:
    op.drop_index("ix_involvement_party_ebl", table_name="involvement")
    op.create_index("ix_ebl_transport_document_reference", "ebl", ["transport_document_reference"])
    op.drop_index("ix_ebl_reference_id", table_name="ebl")
