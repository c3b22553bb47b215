"""Stored duplicate candidates: duplicatecandidate (pairs with their evidence) and
duplicatescan (how fresh an organisation's list is)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 03:05:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "duplicatecandidate",
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("organisation.id"), primary_key=True),
        sa.Column("contact_a", sa.Integer(), primary_key=True),
        sa.Column("contact_b", sa.Integer(), primary_key=True),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("keep_hint", sa.Integer(), nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=False),
    )
    op.create_index("ix_duplicatecandidate_org_confidence", "duplicatecandidate", ["org_id", "confidence"])
    op.create_table(
        "duplicatescan",
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("organisation.id"), primary_key=True),
        sa.Column("refreshed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("full_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("participant_mark", sa.Integer(), nullable=False),
        sa.Column("contact_mark", sa.Integer(), nullable=False),
        sa.Column("interaction_mark", sa.Integer(), nullable=False),
        sa.Column("announcements", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("duplicatescan")
    op.drop_index("ix_duplicatecandidate_org_confidence", table_name="duplicatecandidate")
    op.drop_table("duplicatecandidate")
