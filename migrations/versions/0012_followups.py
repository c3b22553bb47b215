"""Follow-up queue (followup, one row per thread), key accounts, the rep's working calendar,
the digest's SMTP server, and interaction.automated (auto-replies never open or close a follow-up)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 14:10:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "followup",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("organisation.id"), nullable=False),
        sa.Column("thread_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("app_user.id"), nullable=True),
        sa.Column("interaction_id", sa.Integer(), sa.ForeignKey("interaction.id"), nullable=True),
        sa.Column("contact_id", sa.Integer(), sa.ForeignKey("contact.id"), nullable=True),
        sa.Column("company_id", sa.Integer(), sa.ForeignKey("company.id"), nullable=True),
        sa.Column("address", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("since", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("due_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("closed_reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("closed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("snoozed_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.UniqueConstraint("org_id", "thread_key"),
    )
    op.create_index("ix_followup_user_due", "followup", ["org_id", "user_id", "status", "due_at"])
    with op.batch_alter_table("interaction") as b:
        b.add_column(sa.Column("automated", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("contact") as b:
        b.add_column(sa.Column("key_account", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("company") as b:
        b.add_column(sa.Column("key_account", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("organisation") as b:
        b.add_column(sa.Column("followup_wait_days", sa.Integer(), nullable=False, server_default="3"))
        b.add_column(sa.Column("followup_reply_hours", sa.Integer(), nullable=False, server_default="8"))
        b.add_column(sa.Column("followup_quiet_days", sa.Integer(), nullable=False, server_default="30"))
        b.add_column(sa.Column("smtp", sa.JSON(), nullable=True))
        b.add_column(sa.Column("smtp_secret_enc", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    with op.batch_alter_table("app_user") as b:
        b.add_column(sa.Column("timezone", sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default="UTC"))
        b.add_column(sa.Column("working_days", sa.JSON(), nullable=False, server_default="[0,1,2,3,4]"))
        b.add_column(sa.Column("work_start_hour", sa.Integer(), nullable=False, server_default="9"))
        b.add_column(sa.Column("work_end_hour", sa.Integer(), nullable=False, server_default="17"))
        b.add_column(sa.Column("digest_enabled", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("app_user") as b:
        for name in ("digest_enabled", "work_end_hour", "work_start_hour", "working_days", "timezone"):
            b.drop_column(name)
    with op.batch_alter_table("organisation") as b:
        for name in ("smtp_secret_enc", "smtp", "followup_quiet_days", "followup_reply_hours", "followup_wait_days"):
            b.drop_column(name)
    for table in ("company", "contact"):
        with op.batch_alter_table(table) as b:
            b.drop_column("key_account")
    with op.batch_alter_table("interaction") as b:
        b.drop_column("automated")
    op.drop_index("ix_followup_user_due", table_name="followup")
    op.drop_table("followup")
