"""Relationship strength's summary: contactcolleagueday (per contact, colleague and UTC day, the
emails in, the emails out and the meetings they shared, and the latest), filled from the timeline

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07 12:00:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

# The definition of sync/stats.py as it stands at this revision, for every organisation.
_DAYS = """
INSERT INTO contactcolleagueday (contact_id, day, user_id, org_id, emails_in, emails_out, meetings, last_at)
SELECT c.contact_id, {day}, u.user_id, c.org_id,
       COUNT(DISTINCT CASE WHEN i.kind = 'email' AND i.direction = 'in' THEN i.id END),
       COUNT(DISTINCT CASE WHEN i.kind = 'email' AND COALESCE(i.direction, '') <> 'in' THEN i.id END),
       COUNT(DISTINCT CASE WHEN i.kind = 'meeting' THEN i.id END),
       MAX(i.occurred_at)
FROM participant c
JOIN participant u ON u.interaction_id = c.interaction_id AND u.user_id IS NOT NULL
JOIN interaction i ON i.id = c.interaction_id
WHERE c.contact_id IS NOT NULL AND i.kind IN ('email', 'meeting')
GROUP BY c.contact_id, {day}, u.user_id, c.org_id
"""


def upgrade() -> None:
    op.create_table(
        "contactcolleagueday",
        sa.Column("contact_id", sa.Integer(), sa.ForeignKey("contact.id"), primary_key=True),
        sa.Column("day", sqlmodel.sql.sqltypes.AutoString(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("app_user.id"), primary_key=True),
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("organisation.id"), nullable=False),
        sa.Column("emails_in", sa.Integer(), nullable=False),
        sa.Column("emails_out", sa.Integer(), nullable=False),
        sa.Column("meetings", sa.Integer(), nullable=False),
        sa.Column("last_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    )
    if op.get_bind().dialect.name == "postgresql":
        day = "to_char(c.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
    else:
        day = "substr(c.occurred_at, 1, 10)"
    op.execute(_DAYS.format(day=day))


def downgrade() -> None:
    op.drop_table("contactcolleagueday")
