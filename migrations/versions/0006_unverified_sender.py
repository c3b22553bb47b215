"""interaction.unverified_sender: mail claiming a colleague as sender that nothing vouched for

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 09:00:00

Existing interactions keep false: what vouched for them (transport headers)
was never stored, so they cannot be judged again.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "interaction", sa.Column("unverified_sender", sa.Boolean(), nullable=False, server_default=sa.false())
    )


def downgrade() -> None:
    with op.batch_alter_table("interaction") as batch:
        batch.drop_column("unverified_sender")
