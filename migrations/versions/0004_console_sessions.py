"""consolesession: admin console sessions kept server-side, so signing out ends them

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 16:40:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consolesession",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("csrf", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("ended_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisation.id"],
        ),
        sa.ForeignKeyConstraint(
            ["token_id"],
            ["apitoken.id"],
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["app_user.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("session_hash"),
    )
    op.create_index(op.f("ix_consolesession_user_id"), "consolesession", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_consolesession_user_id"), table_name="consolesession")
    op.drop_table("consolesession")
