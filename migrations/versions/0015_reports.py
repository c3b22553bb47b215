"""Reports: an index on participant by colleague and time, so one rep's activity over a range
is a range scan of their own rows (bench/reports.py measured 9.5 s without it on 1,000,000
interactions, 0.2 s with it)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 00:10:00
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_participant_user_time", "participant", ["org_id", "user_id", "occurred_at", "role", "interaction_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_participant_user_time", table_name="participant")
