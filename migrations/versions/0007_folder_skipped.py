"""folderstate.skipped: each folder's share of the mailbox's skipped counts, so a
folder whose ids are reset (a new UIDVALIDITY) takes back what it had counted

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("folderstate", schema=None) as batch_op:
        batch_op.add_column(sa.Column("skipped", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))


def downgrade() -> None:
    with op.batch_alter_table("folderstate", schema=None) as batch_op:
        batch_op.drop_column("skipped")
