"""Google Workspace service accounts (domain-wide delegation) that Gmail mailboxes are read through

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 03:15:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "googleworkspace",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("domain", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("client_email", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("client_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("key_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("secret_enc", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organisation.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("org_id", "client_email"),
    )
    with op.batch_alter_table("googleworkspace", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_googleworkspace_org_id"), ["org_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("googleworkspace", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_googleworkspace_org_id"))
    op.drop_table("googleworkspace")
