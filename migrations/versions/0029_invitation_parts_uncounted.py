"""Invitation parts uncounted: the meetings an invitation brought (`uid#ics…`) are no message of
the server's count, so what their skipped and unreadable rows added to the folders' and mailboxes'
skipped counts is taken back (sync/skipped.py `counted`; one internal weekly invitation counted
dozens, hiding as many lost copies). Rows pruned before every skipped item kept its row cannot be
told apart: those counts stay until the folder is read again.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-07 17:50:00
"""

from collections import Counter

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None

PART = "%#ics%"


def upgrade() -> None:
    conn = op.get_bind()
    meta = sa.MetaData()
    folders = sa.Table(
        "folderstate",
        meta,
        sa.Column("id", sa.Integer),
        sa.Column("mailbox_id", sa.Integer),
        sa.Column("name", sa.String),
        sa.Column("skipped", sa.JSON),
    )
    mailboxes = sa.Table("mailbox", meta, sa.Column("id", sa.Integer), sa.Column("skipped", sa.JSON))
    taken: dict[tuple[int, str], Counter] = {}
    for table, reason in (("skippeditem", sa.column("reason")), ("syncissue", sa.literal("unreadable"))):
        t = sa.table(table, sa.column("mailbox_id"), sa.column("folder"), sa.column("remote_id"))
        query = (
            sa.select(t.c.mailbox_id, t.c.folder, reason.label("reason"), sa.func.count())
            .select_from(t)
            .where(t.c.remote_id.like(PART))
            .group_by(t.c.mailbox_id, t.c.folder, sa.text("3"))
        )
        for mailbox_id, folder, why, n in conn.execute(query):
            taken.setdefault((mailbox_id, folder), Counter())[why] += n
    by_mailbox: dict[int, Counter] = {}
    for (mailbox_id, folder), counts in taken.items():
        by_mailbox.setdefault(mailbox_id, Counter()).update(counts)
        row = conn.execute(
            sa.select(folders.c.id, folders.c.skipped).where(
                folders.c.mailbox_id == mailbox_id, folders.c.name == folder
            )
        ).first()
        if row is not None:
            conn.execute(sa.update(folders).where(folders.c.id == row[0]).values(skipped=_less(row[1], counts)))
    for mailbox_id, counts in by_mailbox.items():
        skipped = conn.execute(sa.select(mailboxes.c.skipped).where(mailboxes.c.id == mailbox_id)).scalar()
        conn.execute(sa.update(mailboxes).where(mailboxes.c.id == mailbox_id).values(skipped=_less(skipped, counts)))


def _less(counts: dict | None, taken: Counter) -> dict:
    left = {reason: int(n) - taken.get(reason, 0) for reason, n in (counts or {}).items()}
    return {reason: n for reason, n in left.items() if n > 0}


def downgrade() -> None:
    pass  # the counts of parts are not put back: they were never messages of the server's
