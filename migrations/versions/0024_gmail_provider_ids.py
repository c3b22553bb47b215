"""Gmail's own ids on mailbox copies: interactionsource.provider_id (X-GM-MSGID, the message's id
in every folder of the mailbox, for good) and provider_thread (X-GM-THRID), NULL elsewhere; a
partial unique index (one copy per message id and folder, and the mailbox's copies of a message
found by its id) and a partial index for the mailbox's copies of a thread

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07 10:00:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

HAS_ID = sa.text("provider_id IS NOT NULL")
HAS_THREAD = sa.text("provider_thread IS NOT NULL")


def upgrade() -> None:
    # Nullable columns without a default: added in place (no table copy on SQLite, no rewrite on PostgreSQL).
    with op.batch_alter_table("interactionsource", schema=None) as batch_op:
        batch_op.add_column(sa.Column("provider_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column("provider_thread", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.create_index(
        "ix_interactionsource_provider_id",
        "interactionsource",
        ["mailbox_id", "provider_id", "folder_id"],
        unique=True,
        sqlite_where=HAS_ID,
        postgresql_where=HAS_ID,
    )
    op.create_index(
        "ix_interactionsource_provider_thread",
        "interactionsource",
        ["mailbox_id", "provider_thread"],
        sqlite_where=HAS_THREAD,
        postgresql_where=HAS_THREAD,
    )


def downgrade() -> None:
    op.drop_index("ix_interactionsource_provider_thread", table_name="interactionsource")
    op.drop_index("ix_interactionsource_provider_id", table_name="interactionsource")
    with op.batch_alter_table("interactionsource", schema=None) as batch_op:
        batch_op.drop_column("provider_thread")
        batch_op.drop_column("provider_id")
