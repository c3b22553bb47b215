"""organisation.erasure_key_enc: tombstones become keyed hashes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 16:45:00

Tombstones written before this revision are unkeyed hashes; they cannot be
re-keyed (the addresses are gone by design), so they stay and are still
matched (sync/exclusions.py: legacy_erased_hash).
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("organisation", sa.Column("erasure_key_enc", sqlmodel.sql.sqltypes.AutoString(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("organisation") as batch:
        batch.drop_column("erasure_key_enc")
