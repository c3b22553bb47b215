"""Meeting series: the newest invitation seen of each recurring meeting's whole series (its
SEQUENCE, window and listed occurrences), so an older invitation read after it brings back
none of the occurrences it moved or cut (sync/meetings.py)

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-07 07:00:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "meetingseries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("series_key", sqlmodel.sql.sqltypes.AutoString(length=900), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("since", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("until", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("listed", sa.JSON(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organisation.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("org_id", "series_key"),
    )


def downgrade() -> None:
    op.drop_table("meetingseries")
