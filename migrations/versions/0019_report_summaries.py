"""Report summaries: repday (a colleague's emails out, emails in and meetings per UTC day) and
answersample (one row per answered turn of an email thread), filled from the timeline

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 03:20:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

# The definitions of sync/reportsums.py as they stand at this revision, for every organisation.
_ACTIVITY = """
INSERT INTO repday (org_id, user_id, day, emails_out, emails_in, meetings)
SELECT p.org_id, p.user_id, {day},
  COUNT(DISTINCT CASE WHEN i.kind = 'email' AND i.direction = 'out' AND p.role = 'from' THEN i.id END),
  COUNT(DISTINCT CASE WHEN i.kind = 'email' AND i.direction = 'in' AND p.role IN ('to', 'cc', 'bcc') THEN i.id END),
  COUNT(DISTINCT CASE WHEN i.kind = 'meeting' AND COALESCE(i.status, '') <> 'cancelled' THEN i.id END)
FROM participant p JOIN interaction i ON i.id = p.interaction_id
WHERE p.user_id IS NOT NULL
GROUP BY p.org_id, p.user_id, {day}
"""
_SAMPLES = """
INSERT INTO answersample (org_id, thread_key, asked_at, answered_at, seconds, direction, sender)
SELECT org_id, thread_key, prev_at, occurred_at, {secs}, direction,
  lower(CASE WHEN direction = 'out' THEN from_address ELSE prev_from END)
FROM (
  SELECT id, org_id, thread_key, occurred_at, direction, from_address,
    LAG(occurred_at) OVER (PARTITION BY org_id, thread_key ORDER BY occurred_at, id) AS prev_at,
    LAG(from_address) OVER (PARTITION BY org_id, thread_key ORDER BY occurred_at, id) AS prev_from
  FROM (
    SELECT i.id, i.org_id, i.thread_key, i.occurred_at, i.direction, i.from_address,
      LAG(i.direction) OVER (PARTITION BY i.org_id, i.thread_key ORDER BY i.occurred_at, i.id) AS prev_dir
    FROM interaction i WHERE i.kind = 'email' AND i.automated = {no}
  ) e WHERE prev_dir IS NULL OR prev_dir <> direction
) t WHERE prev_at IS NOT NULL
"""


def upgrade() -> None:
    op.create_table(
        "repday",
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("organisation.id"), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("app_user.id"), primary_key=True),
        sa.Column("day", sqlmodel.sql.sqltypes.AutoString(), primary_key=True),
        sa.Column("emails_out", sa.Integer(), nullable=False),
        sa.Column("emails_in", sa.Integer(), nullable=False),
        sa.Column("meetings", sa.Integer(), nullable=False),
    )
    op.create_table(
        "answersample",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("organisation.id"), nullable=False),
        sa.Column("thread_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("asked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("answered_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("direction", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("sender", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    )
    op.create_index(
        "ix_answersample_org_sender",
        "answersample",
        ["org_id", "sender", "direction", "seconds", "answered_at", "asked_at"],
    )
    op.create_index("ix_answersample_org_thread", "answersample", ["org_id", "thread_key"])
    if op.get_bind().dialect.name == "postgresql":
        day = "to_char(p.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        secs, no = "EXTRACT(EPOCH FROM (occurred_at - prev_at))", "false"
    else:
        day = "substr(p.occurred_at, 1, 10)"
        secs, no = "(julianday(occurred_at) - julianday(prev_at)) * 86400.0", "0"
    op.execute(_ACTIVITY.format(day=day))
    op.execute(_SAMPLES.format(secs=secs, no=no))


def downgrade() -> None:
    op.drop_index("ix_answersample_org_thread", table_name="answersample")
    op.drop_index("ix_answersample_org_sender", table_name="answersample")
    op.drop_table("answersample")
    op.drop_table("repday")
