"""Skipped items: what a sync read and left off the timeline on purpose, one row per item
with why (app.models.SkippedItem), beside the per-reason counts a folder keeps
(folderstate.skipped, which the reconciliation adds to the copies stored).

The rows also keep the counts exact: an item listed again (a changed message in a Graph delta
round, a changed meeting) is found and not counted twice, and an item that leaves the server
(a Graph or CalDAV removal, an IMAP expunge, told by QRESYNC or found by listing) takes its row and its count
with it (`forget`). So every skipped item keeps its row, as every stored one keeps its copy:
a first import of 100,000 messages keeps about 15,000. Before, each folder kept its newest 200,
and an item pruned and listed again was counted again: a count too high, which could hide a
missing copy in the reconciliation. A folder read again from scratch drops its rows (the new
listing skips and lists them again). Items that could not be read are kept the same way, in
`syncissue` with why (`record_unreadable`), and counted as "unreadable".
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from sqlalchemy import delete, select

from app.db import bulk_insert_ignore_returning, db_time
from app.models import FolderState, SkippedItem, SyncIssue
from connectors.base import BadRecord
from connectors.ical import INVITATION_PART

ITEM = SkippedItem.__table__
ISSUE = SyncIssue.__table__
FOLDER = FolderState.__table__
COLUMNS = ("org_id", "mailbox_id", "folder", "remote_id", "reason", "created_at")  # of both tables


# An admin took the item off the timeline (a rule, an erasure) while the server still holds it. Its
# row counts in the folder's `removed`, not in its skipped counts; it keeps a later listing of the
# item (a changed message in a delta round, skipped by the rule) from counting it a second time, and
# the item leaving the server takes it off `removed` (sync/engine.py). Before, `removed` only grew.
REMOVED = "taken off the timeline by an admin"


def record_removed(conn, org_id: int, copies: list[tuple[int, str]], now: datetime) -> Counter:
    """Keep the (folder id, remote id) of the messages whose copies an admin deleted, and return
    folder id -> how many are new: what the folders' `removed` counts grow by."""
    if not copies:
        return Counter()
    folders = {
        fid: (mailbox_id, name)
        for fid, mailbox_id, name in conn.execute(
            select(FOLDER.c.id, FOLDER.c.mailbox_id, FOLDER.c.name).where(
                FOLDER.c.id.in_(sorted({fid for fid, _ in copies}))
            )
        )
    }
    created = db_time(conn, now)
    rows = {
        (fid, remote_id[:900]): (org_id, *folders[fid], remote_id[:900], REMOVED, created) for fid, remote_id in copies
    }
    folder_of = {place: fid for fid, place in folders.items()}
    inserted = bulk_insert_ignore_returning(conn, ITEM, COLUMNS, list(rows.values()), ("mailbox_id", "folder"))
    return Counter(folder_of[(mailbox_id, name)] for mailbox_id, name in inserted)


def counted(remote_id: str) -> bool:
    """Whether an item counts in the folder's skipped counts. The meetings an invitation brought
    (`uid#ics…`) keep their rows but are not counted: the reconciliation compares the counts with
    the server's messages, and one internal weekly invitation is dozens of skipped occurrences,
    which would hide as many missing copies."""
    return INVITATION_PART not in remote_id


def record(conn, org_id: int, mailbox_id: int | None, folder: str, items: list[tuple[str, str]], now) -> Counter:
    """Keep these (remote id, reason) pairs of one folder, and return what the new rows count,
    by reason (`counted`): an item already kept (its row written by an earlier batch) is counted
    no second time. Only the rows really inserted are counted, as copies are (sync/copies.py)."""
    created = db_time(conn, now)
    rows: dict[str, tuple] = {}
    for remote_id, reason in items:  # an id twice in one batch: its first reason
        rows.setdefault(remote_id[:900], (org_id, mailbox_id, folder, remote_id[:900], reason[:500], created))
    inserted = bulk_insert_ignore_returning(conn, ITEM, COLUMNS, list(rows.values()), ("remote_id", "reason"))
    return Counter(reason for remote_id, reason in inserted if counted(remote_id))


def record_unreadable(conn, org_id: int, mailbox_id: int | None, folder: str, bad: list[BadRecord], now) -> int:
    """Keep the items that could not be read (syncissue, with why) and return how many new rows
    count (`counted`): one already kept (an earlier batch wrote it) is counted no second time."""
    created = db_time(conn, now)
    rows: dict[str, tuple] = {}
    for b in bad:
        rows.setdefault(b.remote_id, (org_id, mailbox_id, folder, b.remote_id, b.reason[:500], created))
    inserted = bulk_insert_ignore_returning(conn, ISSUE, COLUMNS, list(rows.values()), ("remote_id",))
    return sum(1 for (remote_id,) in inserted if counted(remote_id))


def forget(conn, mailbox_id: int | None, folder: str, remote_ids: list[str]) -> Counter:
    """Items that left the folder on the server: their rows go (skipped with a reason, or
    unreadable), and what they counted is returned (reason -> how many, "unreadable" for
    the latter), to be taken off the folder's and the mailbox's skipped counts."""
    gone: Counter = Counter()
    listed = sorted(set(remote_ids))
    for i in range(0, len(listed), CHUNK):
        chunk = listed[i : i + CHUNK]
        items = _in_folder(ITEM, mailbox_id, folder, [r[:900] for r in chunk])
        deleted = conn.execute(delete(ITEM).where(*items).returning(ITEM.c.remote_id, ITEM.c.reason))
        gone.update(reason for remote_id, reason in deleted if counted(remote_id))
        issues = _in_folder(ISSUE, mailbox_id, folder, chunk)
        deleted = conn.execute(delete(ISSUE).where(*issues).returning(ISSUE.c.remote_id)).scalars()
        gone["unreadable"] += sum(1 for remote_id in deleted if counted(remote_id))
    return +gone  # without zero counts


def unlisted(conn, mailbox_id: int | None, folder: str, listed: frozenset[str]) -> list[str]:
    """The folder's skipped and unreadable items that the server's listing of it (Batch.listed)
    lacks: they left, to be `forget`-ten. Parts of a message (an invitation's, `uid#ics…`) are
    left out, as from the ids a server says left (sync/copies.py `unlisted`)."""
    found: list[str] = []
    for table in (ITEM, ISSUE):
        rows = conn.execute(
            select(table.c.remote_id).where(
                table.c.mailbox_id == mailbox_id,
                table.c.folder == folder,
                table.c.remote_id.not_like(f"%{INVITATION_PART}%"),
            )
        ).scalars()
        found.extend(remote_id for remote_id in rows if remote_id not in listed)
    return found


CHUNK = 500  # remote ids per IN (...) list


def _in_folder(table, mailbox_id: int | None, folder: str, remote_ids: list[str]) -> tuple:
    return (table.c.mailbox_id == mailbox_id, table.c.folder == folder, table.c.remote_id.in_(remote_ids))


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
