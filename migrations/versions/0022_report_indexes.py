"""Indexes the new-contacts and cold-accounts reports range-scan: contacts by creation time,
contact summaries by first email (the contacts new in a range), and a colleague's contacts (one
rep's companies)

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 04:00:00
"""

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_contact_org_created", "contact", ["org_id", "created_at"])
    op.create_index("ix_contactstats_org_first_email", "contactstats", ["org_id", "first_email_at"])
    op.create_index("ix_contactcolleague_org_user", "contactcolleague", ["org_id", "user_id", "contact_id"])


def downgrade() -> None:
    op.drop_index("ix_contactcolleague_org_user", table_name="contactcolleague")
    op.drop_index("ix_contactstats_org_first_email", table_name="contactstats")
    op.drop_index("ix_contact_org_created", table_name="contact")
