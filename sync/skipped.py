"""Skipped items: what a sync read and left off the timeline on purpose, one row per item
with why (app.models.SkippedItem), beside the per-reason counts a folder keeps
(folderstate.skipped, which the reconciliation adds to the copies stored).

The rows also keep an item listed again (a changed message in a Graph delta round, a changed
meeting) from being counted twice. They are for people to see why, so they are bounded: each
folder keeps its newest PER_FOLDER, older ones pruned as new ones come (an item pruned and
listed again would be counted again: a count too high only hides a gap, never shows one).
A folder read again from scratch drops its rows (the new listing skips and lists them again).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from sqlalchemy import delete, select

from app.db import db_time, insert_values
from app.models import SkippedItem

ITEM = SkippedItem.__table__
PER_FOLDER = 200  # rows kept per folder; the console shows a mailbox's latest 50


def record(
    conn,
    org_id: int,
    mailbox_id: int | None,
    folder: str,
    items: list[tuple[str, str]],
    now: datetime,
    counts: Counter | None = None,
) -> None:
    """Keep these (remote id, reason) pairs of one folder. An item already kept (a delta or
    sync-token round lists a changed item again) keeps its first row and is taken out of
    `counts`, the batch's skipped counts by reason, so the folder counts it once."""
    if not items:
        return
    wanted = {remote_id[:900] for remote_id, _ in items}
    known: set[str] = set()
    listed = sorted(wanted)
    for i in range(0, len(listed), 500):
        known.update(
            conn.execute(
                select(ITEM.c.remote_id).where(
                    ITEM.c.mailbox_id == mailbox_id, ITEM.c.folder == folder, ITEM.c.remote_id.in_(listed[i : i + 500])
                )
            ).scalars()
        )
    rows = []
    created = db_time(conn, now)
    for remote_id, reason in items:
        remote_id = remote_id[:900]
        if remote_id in known:
            if counts is not None and counts.get(reason, 0) > 0:
                counts[reason] -= 1
                if not counts[reason]:
                    del counts[reason]
            continue
        known.add(remote_id)
        rows.append((org_id, mailbox_id, folder, remote_id, reason[:500], created))
    if not rows:
        return
    # Only the batch's newest PER_FOLDER can outlive the pruning below: a first import skipping
    # 15,154 of 100,000 messages inserted all of them to delete all but 200 of each folder.
    # One multi-row statement on PostgreSQL: through executemany each row was a round trip
    # (2,893 of them in a 20,000-message first import, docs/performance.md section 6).
    insert_values(
        conn,
        "skippeditem",
        ("org_id", "mailbox_id", "folder", "remote_id", "reason", "created_at"),
        rows[-PER_FOLDER:],
        "ON CONFLICT DO NOTHING",
    )
    # The folder's newest PER_FOLDER stay: everything older than the oldest one kept goes, in one
    # statement (no oldest one kept: fewer than PER_FOLDER, the comparison with NULL deletes nothing).
    oldest_kept = (
        select(ITEM.c.id)
        .where(ITEM.c.mailbox_id == mailbox_id, ITEM.c.folder == folder)
        .order_by(ITEM.c.id.desc())
        .offset(PER_FOLDER - 1)
        .limit(1)
        .scalar_subquery()
    )
    conn.execute(delete(ITEM).where(ITEM.c.mailbox_id == mailbox_id, ITEM.c.folder == folder, ITEM.c.id < oldest_kept))


def forget_folder(conn, mailbox_id: int | None, folder: str) -> None:
    conn.execute(delete(ITEM).where(ITEM.c.mailbox_id == mailbox_id, ITEM.c.folder == folder))


def latest(conn, mailbox_id: int, limit: int = 50) -> list[dict]:
    """The mailbox's latest skipped items, newest first."""
    rows = conn.execute(
        select(ITEM.c.folder, ITEM.c.remote_id, ITEM.c.reason, ITEM.c.created_at)
        .where(ITEM.c.mailbox_id == mailbox_id)
        .order_by(ITEM.c.id.desc())
        .limit(limit)
    ).mappings()
    return [dict(r) for r in rows]
