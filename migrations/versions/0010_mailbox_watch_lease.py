"""mailbox.watch_owner / watch_until: the lease on a mailbox's IDLE connection, so several
workers share the mailboxes to watch and a killed worker's are taken over when it expires

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 14:00:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mailbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("watch_owner", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("watch_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mailbox", schema=None) as batch_op:
        batch_op.drop_column("watch_until")
        batch_op.drop_column("watch_owner")
