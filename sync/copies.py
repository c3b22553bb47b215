"""Mailbox copies (`interactionsource` rows) and each folder's count of them.

`folderstate.messages` is kept, not counted per page, so it must move by exactly
the copy rows written. Every insert and delete of copies goes through here and
reports what that statement itself changed (INSERT … RETURNING, DELETE …
RETURNING): a copy another writer inserted or removed at the same moment is
never counted twice, and the caller adds the change to the folder's count in the
same transaction as the rows.

Gmail's copies also carry the message's X-GM-MSGID (`provider_id`) and X-GM-THRID
(`provider_thread`): a copy is recognised by its message id within the mailbox
(sync/ingest.py), so a folder read again from scratch (UIDVALIDITY changed) keeps
those copies set aside (`set_aside`) for the new listing to re-link (`relink`),
and drops the ones it did not list when it ends (`drop_set_aside`).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Mapping

from sqlalchemy import bindparam, delete as _delete, func, literal, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased

from app.db import bulk_insert_ignore_returning
from app.models import FolderState, Interaction, InteractionSource
from connectors.ical import INVITATION_PART

S, FOLDER = InteractionSource.__table__, FolderState.__table__
COLUMNS = ("org_id", "interaction_id", "mailbox_id", "folder_id", "remote_id", "provider_id", "provider_thread")
# The remote id of a copy set aside: its folder's ids changed, the provider id will find it again.
SET_ASIDE = "stale:"


def insert(conn: Connection, rows: list[tuple]) -> Counter:
    """Insert copies (tuples in COLUMNS order), ignoring ones already stored; within
    the rows, the first of two with one remote id wins. Returns folder id -> copies inserted."""
    return Counter(r[0] for r in bulk_insert_ignore_returning(conn, S, COLUMNS, rows, ("folder_id",)))


def relink(conn: Connection, moves: list[tuple[int, str]]) -> None:
    """Give copies (by row id) the remote id their message has now: the same Gmail message
    (X-GM-MSGID) listed under a new UID of the same folder. The row, and so the folder's
    count, stays; a copy already stored under the new id keeps it (the move is left out)."""
    if not moves:
        return
    conn.execute(
        update(S)
        .where(S.c.id == bindparam("b_id"), ~_folder_holds(bindparam("b_remote")))
        .values(remote_id=bindparam("b_remote")),
        [{"b_id": copy_id, "b_remote": remote_id} for copy_id, remote_id in sorted(moves)],
    )


def _folder_holds(remote_id):
    """Whether the folder of the copy a statement changes holds a copy under this remote id
    (an expression over that copy's row, or a parameter)."""
    other = aliased(S)
    return (
        select(other.c.id)
        .where(other.c.mailbox_id == S.c.mailbox_id, other.c.folder_id == S.c.folder_id, other.c.remote_id == remote_id)
        .exists()
    )


def of_meeting_before(at: datetime):
    """Whether the copy a statement reads or changes is of a meeting dated before `at`: history
    behind a calendar's window, which a listing of the window does not see (Batch.relists_from)."""
    I = Interaction.__table__.alias("dated")
    return select(I.c.id).where(I.c.id == S.c.interaction_id, I.c.kind == "meeting", I.c.occurred_at < at).exists()


def set_aside(conn: Connection, mailbox_id: int, folder_id: int, *, every: bool = False) -> Counter:
    """The folder's ids changed (a new UIDVALIDITY): copies with a provider id are kept, their
    remote ids marked as no longer the server's, for the new listing to re-link them. every: the
    folder is read again from the start with its ids unchanged (an admin's re-read): every copy
    of a message is set aside, the new listing re-links (Gmail) or stores again what the server
    still holds, and its end drops the rest (`drop_set_aside`). An invitation's meeting copies
    (`uid#ics…`) stay as they are, as when their email is expunged. Returns folder id -> copies
    deleted (`_set_aside`)."""
    which = [S.c.remote_id.not_like(f"%{INVITATION_PART}%")] if every else [S.c.provider_id.is_not(None)]
    gone, _ = _set_aside(conn, mailbox_id, folder_id, *which)
    return gone


def set_aside_meetings(conn: Connection, mailbox_id: int, folder_id: int, since: datetime) -> tuple[Counter, list[int]]:
    """A calendar read again from the start with its ids unchanged (an admin's re-read): its copies
    of meetings from `since` on (what the reading lists) are set aside as `set_aside(every=True)`
    does a mail folder's, the history before stays. Returns folder id -> copies deleted, and the
    meetings set aside: those the reading does not list and no other copy holds leave the timeline
    when it ends (the engine's `relisted`), as they would have had their deletion been seen."""
    return _set_aside(conn, mailbox_id, folder_id, ~of_meeting_before(since))


def _set_aside(conn: Connection, mailbox_id: int, folder_id: int, *which) -> tuple[Counter, list[int]]:
    """Mark the folder's copies matching `which` as no longer the server's (SET_ASIDE + remote id).
    A copy the reading going on has stored again beside its set-aside twin (a second re-read before
    the first one ended) goes: the twin stands for it, and renaming it too would collide with it.
    Returns folder id -> copies deleted, and the interactions of the copies set aside or deleted."""
    has_twin = _folder_holds(literal(SET_ASIDE) + S.c.remote_id)
    mine = [S.c.mailbox_id == mailbox_id, S.c.folder_id == folder_id, *which, ~S.c.remote_id.startswith(SET_ASIDE)]
    gone: Counter = Counter()
    touched: list[int] = []
    for folder, interaction_id in conn.execute(
        _delete(S).where(*mine, has_twin).returning(S.c.folder_id, S.c.interaction_id)
    ):
        gone[folder] += 1
        touched.append(interaction_id)
    moved = conn.execute(
        update(S).where(*mine).values(remote_id=literal(SET_ASIDE) + S.c.remote_id).returning(S.c.interaction_id)
    ).scalars()
    return gone, touched + list(moved)


def restore_set_aside_meetings(conn: Connection, mailbox_id: int, folder_id: int, before: datetime) -> None:
    """A calendar's listing has ended, and it covered meetings from `before` on (Batch.relists_from).
    Copies set aside of meetings dated before that were not its to list again (history behind a
    window that moved on since they were set aside, or was made narrower): they get their remote
    ids back instead of leaving with `drop_set_aside`, unless the listing stored their item again
    (a meeting overlapping the window's start)."""
    bare = func.substr(S.c.remote_id, len(SET_ASIDE) + 1)
    conn.execute(
        update(S)
        .where(
            S.c.mailbox_id == mailbox_id,
            S.c.folder_id == folder_id,
            S.c.remote_id.startswith(SET_ASIDE),
            of_meeting_before(before),
            ~_folder_holds(bare),
        )
        .values(remote_id=bare)
    )


def drop_set_aside(conn: Connection, mailbox_id: int, folder_id: int) -> Counter:
    """The folder's new listing has ended: copies it did not re-link are gone from the server.
    Returns folder id -> copies deleted."""
    return delete(conn, S.c.mailbox_id == mailbox_id, S.c.folder_id == folder_id, S.c.remote_id.startswith(SET_ASIDE))


def unlisted(conn: Connection, mailbox_id: int, folder_id: int, listed: frozenset[str]) -> list[str]:
    """The remote ids of the folder's copies that the server's listing of it (Batch.listed) lacks:
    their messages left. As with the ids a server says left (QRESYNC's VANISHED), the meetings an
    invitation brought (`uid#ics…`) are not among them; and copies set aside for a re-listing
    wait for it (`drop_set_aside`)."""
    stored = conn.execute(
        select(S.c.remote_id).where(
            S.c.mailbox_id == mailbox_id,
            S.c.folder_id == folder_id,
            S.c.remote_id.not_like(f"%{INVITATION_PART}%"),
            S.c.remote_id.not_like(f"{SET_ASIDE}%"),
        )
    ).scalars()
    return [remote_id for remote_id in stored if remote_id not in listed]


def delete(conn: Connection, *where) -> Counter:
    """Delete the copies matching `where`. Returns folder id -> copies this statement deleted."""
    return Counter(conn.execute(_delete(S).where(*where).returning(S.c.folder_id)).scalars())


def delete_by_admin(conn: Connection, *where) -> tuple[Counter, list[tuple[int, str]]]:
    """Delete the copies matching `where` for an admin taking mail off the timeline (a rule, an
    erasure) while the server still holds it. Returns folder id -> copies deleted, and the
    (folder id, remote id) of those that are the server's messages: what the folder's `removed`
    keeps so its reconciliation adds up (sync/skipped.py `record_removed`; an invitation's meeting
    copy, `uid#ics…`, is no message of the server's count)."""
    gone: Counter = Counter()
    messages: list[tuple[int, str]] = []
    for folder_id, remote_id in conn.execute(_delete(S).where(*where).returning(S.c.folder_id, S.c.remote_id)):
        gone[folder_id] += 1
        # a copy set aside for a re-listing (`stale:`) is counted when the listing finds it again
        if INVITATION_PART not in remote_id and not remote_id.startswith(SET_ASIDE):
            messages.append((folder_id, remote_id))
    return gone, messages


def count_changed(conn: Connection, changes: Mapping[int, int], *, removed: Mapping[int, int] | None = None) -> None:
    """Add each folder's change to its count, in folder order (two writers lock rows alike).
    removed: messages an admin took off the timeline (`delete_by_admin`), added to the folder's
    `removed`."""
    removed = removed or {}
    rows = [
        {"b_id": fid, "b_n": changes.get(fid, 0), "b_r": removed.get(fid, 0)}
        for fid in sorted(set(changes) | set(removed))
        if changes.get(fid) or removed.get(fid)
    ]
    if rows:
        values = {"messages": FOLDER.c.messages + bindparam("b_n")}
        if removed:
            values["removed"] = FOLDER.c.removed + bindparam("b_r")
        conn.execute(update(FOLDER).where(FOLDER.c.id == bindparam("b_id")).values(**values), rows)
