"""Duplicate contacts: contactmerge (each merge and the rows it moved, for undo) and
duplicatedismissal (candidate pairs an admin said are different people)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 00:00:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "contactmerge",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("organisation.id"), nullable=False),
        sa.Column("survivor_id", sa.Integer(), nullable=False),
        sa.Column("loser_id", sa.Integer(), nullable=False),
        sa.Column("audit_id", sa.Integer(), nullable=True),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("merged_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("merged_by", sa.Integer(), sa.ForeignKey("app_user.id"), nullable=True),
        sa.Column("undone_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    )
    op.create_index("ix_contactmerge_org_survivor", "contactmerge", ["org_id", "survivor_id"])
    op.create_index("ix_contactmerge_org_loser", "contactmerge", ["org_id", "loser_id"])
    op.create_table(
        "duplicatedismissal",
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("organisation.id"), primary_key=True),
        sa.Column("contact_a", sa.Integer(), primary_key=True),
        sa.Column("contact_b", sa.Integer(), primary_key=True),
        sa.Column("dismissed_by", sa.Integer(), sa.ForeignKey("app_user.id"), nullable=True),
        sa.Column("dismissed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("duplicatedismissal")
    op.drop_index("ix_contactmerge_org_loser", table_name="contactmerge")
    op.drop_index("ix_contactmerge_org_survivor", table_name="contactmerge")
    op.drop_table("contactmerge")
