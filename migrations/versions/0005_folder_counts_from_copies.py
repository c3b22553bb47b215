"""folderstate.messages recounted from the copies stored

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 10:00:00

Before this revision a folder's count only ever grew (removed copies were never
subtracted, a replayed batch was added again); from here on every insert and
delete of copies moves it exactly (sync/copies.py), so it is set right once.
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "UPDATE folderstate SET messages = "
        "(SELECT count(*) FROM interactionsource s WHERE s.folder_id = folderstate.id)"
    )


def downgrade() -> None:
    pass  # the recount is right under every revision
