"""Partial indexes for the rep's day: meetings by time, tasks and notes by author and due date

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 00:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

MEETINGS = sa.text("kind = 'meeting'")
AUTHORED = sa.text("author_id IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_interaction_meeting_time",
        "interaction",
        ["org_id", "occurred_at"],
        sqlite_where=MEETINGS,
        postgresql_where=MEETINGS,
    )
    op.create_index(
        "ix_interaction_author_due",
        "interaction",
        ["org_id", "author_id", "due_at"],
        sqlite_where=AUTHORED,
        postgresql_where=AUTHORED,
    )


def downgrade() -> None:
    op.drop_index("ix_interaction_author_due", table_name="interaction")
    op.drop_index("ix_interaction_meeting_time", table_name="interaction")
