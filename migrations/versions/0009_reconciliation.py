"""Reconciliation: folderstate.removed (copies an admin took off the timeline, still on the
server) and summarycheck (the latest recount of an organisation's kept summaries)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 14:00:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("folderstate", schema=None) as batch_op:
        batch_op.add_column(sa.Column("removed", sa.Integer(), nullable=False, server_default=sa.text("0")))
    op.create_table(
        "summarycheck",
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("checked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("contacts", sa.Integer(), nullable=False),
        sa.Column("disagreeing", sa.Integer(), nullable=False),
        sa.Column("contact_ids", sa.JSON(), nullable=False),
        sa.Column("mailbox_ids", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organisation.id"]),
        sa.PrimaryKeyConstraint("org_id"),
    )


def downgrade() -> None:
    op.drop_table("summarycheck")
    with op.batch_alter_table("folderstate", schema=None) as batch_op:
        batch_op.drop_column("removed")
