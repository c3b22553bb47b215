"""Mailbox copies (`interactionsource` rows) and each folder's count of them.

`folderstate.messages` is kept, not counted per page, so it must move by exactly
the copy rows written. Every insert and delete of copies goes through here and
reports what that statement itself changed (INSERT … RETURNING, DELETE …
RETURNING): a copy another writer inserted or removed at the same moment is
never counted twice, and the caller adds the change to the folder's count in the
same transaction as the rows.
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping

from sqlalchemy import bindparam, delete as _delete, update
from sqlalchemy.engine import Connection

from app.db import bulk_insert_ignore_returning
from app.models import FolderState, InteractionSource

S, FOLDER = InteractionSource.__table__, FolderState.__table__
COLUMNS = ("org_id", "interaction_id", "mailbox_id", "folder_id", "remote_id")


def insert(conn: Connection, rows: list[tuple]) -> Counter:
    """Insert copies (tuples in COLUMNS order), ignoring ones already stored; within
    the rows, the first of two with one remote id wins. Returns folder id -> copies inserted."""
    return Counter(r[0] for r in bulk_insert_ignore_returning(conn, S, COLUMNS, rows, ("folder_id",)))


def delete(conn: Connection, *where) -> Counter:
    """Delete the copies matching `where`. Returns folder id -> copies this statement deleted."""
    return Counter(conn.execute(_delete(S).where(*where).returning(S.c.folder_id)).scalars())


def count_changed(conn: Connection, changes: Mapping[int, int], *, by_admin: bool = False) -> None:
    """Add each folder's change to its count, in folder order (two writers lock rows alike).
    by_admin: copies an admin took off the timeline (a rule, an erasure) while the server
    still holds the messages; the folder's `removed` keeps them so its reconciliation adds up."""
    rows = [{"b_id": fid, "b_n": n} for fid, n in sorted(changes.items()) if n]
    if rows:
        values = {"messages": FOLDER.c.messages + bindparam("b_n")}
        if by_admin:
            values["removed"] = FOLDER.c.removed - bindparam("b_n")
        conn.execute(update(FOLDER).where(FOLDER.c.id == bindparam("b_id")).values(**values), rows)
