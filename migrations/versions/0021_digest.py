"""The daily digest: each rep's local hour and the last local day it was sent (the claim
that makes it once a day), and the SMTP server's last error shown in the console; an index
for the follow-up queue's cross-thread closing at ingest (followup by kind, status, since)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 03:00:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_followup_open_since", "followup", ["org_id", "kind", "status", "since"])
    with op.batch_alter_table("app_user") as b:
        b.add_column(sa.Column("digest_hour", sa.Integer(), nullable=False, server_default="8"))
        b.add_column(sa.Column("digest_sent_on", sa.Date(), nullable=True))
    with op.batch_alter_table("organisation") as b:
        b.add_column(sa.Column("smtp_last_error", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        b.add_column(sa.Column("smtp_last_error_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        b.add_column(sa.Column("smtp_last_sent_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("organisation") as b:
        for name in ("smtp_last_sent_at", "smtp_last_error_at", "smtp_last_error"):
            b.drop_column(name)
    with op.batch_alter_table("app_user") as b:
        for name in ("digest_sent_on", "digest_hour"):
            b.drop_column(name)
    op.drop_index("ix_followup_open_since", table_name="followup")
