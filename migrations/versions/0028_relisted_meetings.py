"""Meetings a folder read again from scratch may have lost: kept with the folder until its new
listing ends, so a run interrupted meanwhile no longer forgets them (a meeting deleted while the
sync could not see changes stayed on the timeline with no copy)

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-07 17:05:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("folderstate") as batch:
        batch.add_column(sa.Column("relisted", sa.JSON(), server_default=sa.text("'[]'"), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("folderstate") as batch:
        batch.drop_column("relisted")
