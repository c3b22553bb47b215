"""mailbox.last_error_fix: the connector's fix code (connectors.base.Fix) kept as a value
beside last_error_kind, so what to do is chosen from the table in sync/fixes.py and never
read back out of the error's words

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 13:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mailbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_error_fix", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mailbox", schema=None) as batch_op:
        batch_op.drop_column("last_error_fix")
