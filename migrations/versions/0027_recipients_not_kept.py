"""Recipients not kept: how many addresses a message named beyond the 500 of each field
(To, Cc, Bcc) that become participants, so a mass mailing says what it left out

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-07 14:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("interaction") as batch:
        batch.add_column(sa.Column("recipients_not_kept", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("interaction") as batch:
        batch.drop_column("recipients_not_kept")
