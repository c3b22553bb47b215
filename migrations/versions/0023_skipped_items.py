"""Skipped items: each item a sync left off the timeline on purpose, with why (mailbox,
folder, remote id, reason, when), so admins see the reasons per item and not only counts;
bounded per folder by the sync (sync/skipped.py)

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06 19:00:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "skippeditem",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("folder", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("remote_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["mailbox_id"], ["mailbox.id"]),
        sa.ForeignKeyConstraint(["org_id"], ["organisation.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("mailbox_id", "folder", "remote_id"),
    )
    with op.batch_alter_table("skippeditem", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_skippeditem_mailbox_id"), ["mailbox_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("skippeditem", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_skippeditem_mailbox_id"))
    op.drop_table("skippeditem")
