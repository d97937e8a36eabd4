"""Index parties by platform and identifying code: resolving a party reference becomes a key lookup, not a scan.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    party_code = op.create_table(
        "party_code",
        sa.Column("ebl_platform", sa.String(4), primary_key=True),
        sa.Column("code_list_provider", sa.String(100), primary_key=True),
        sa.Column("party_code", sa.String(150), primary_key=True),
        sa.Column("party_id", sa.String(32), sa.ForeignKey("party.id"), nullable=False, index=True),
    )
    party = sa.table(
        "party",
        sa.column("id", sa.String),
        sa.column("ebl_platform", sa.String),
        sa.column("identifying_codes", sa.JSON),
        sa.column("created_at"),
    )
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    query = sa.select(party.c.id, party.c.ebl_platform, party.c.identifying_codes).order_by(party.c.created_at)
    for party_id, platform, codes in op.get_bind().execute(query):
        for code in codes:
            key = (platform, code["codeListProvider"], code["partyCode"])
            # On a platform a code names one party: the party that registered it first keeps it.
            rows.setdefault(
                key,
                {"ebl_platform": platform, "code_list_provider": key[1], "party_code": key[2], "party_id": party_id},
            )
    if rows:
        op.bulk_insert(party_code, list(rows.values()))


def downgrade() -> None:
    op.drop_table("party_code")
