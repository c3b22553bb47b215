"""The follow-up queue, computed from mail as it is ingested (no typing).

One row per thread (`followup(org_id, thread_key)` is unique), describing the thread's
latest meaningful message:
- a rep's outbound email to a contact: *waiting on them*, due after N business days;
- a contact's inbound email: *you owe a reply*, due after N business hours.
A newer message in the thread rewrites the row (a reply closes "waiting" by turning it into
"owe", and the other way round); an older one (a backfill, a re-sync, another mailbox's
copy) changes nothing, so the result is the same whatever order mail arrives in.

Across threads (a reply that started a new thread), the same people close it: an inbound
email from anyone at the contact's company closes that company's open "waiting" rows sent
before it (within WINDOW), an outbound one to a contact closes what we owed them. A meeting
with them closes "waiting" too (sweep()). Auto-replies and machine mail never open or close
anything, calendar messages (an invitation, its acceptance) close and never open (mail_role); internal-only and bulk mail never reach the timeline at all.

`sweep()` is the scheduled part (sync/scheduler.py): broken-thread replies and meetings that
arrived before the message they answer (backfill runs newest first), and "going quiet".
"""

from __future__ import annotations

import os
from bisect import bisect_left, bisect_right, insort
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from functools import lru_cache
from typing import Any, Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.engine import Connection

from app.db import bulk_insert_ignore_returning, db_time, insert_ignore
from app.models import Company, Contact, ContactColleague, FollowUp, Interaction, Organisation, Participant, User
from app.models.base import utcnow
from app.models.deals import Deal, DealContact, PipelineStage, StageKind
from app.models.followup import FollowUpKind, FollowUpStatus
from connectors.graph import AUTO_REPLY_PREFIXES

# bench/imap_sync.py --followups-compare switches the ingest step off to measure its cost; nothing else does.
AT_INGEST = os.environ.get("THREADLINE_FOLLOWUPS_AT_INGEST", "1") != "0"
F = FollowUp.__table__
I = Interaction.__table__  # noqa: E741 - the usual alias in this package's queries
P = Participant.__table__
WINDOW = timedelta(days=30)  # a reply in another thread counts when it comes within this
MAX_AGE = timedelta(days=30)  # older mail (a first import's history) is recorded closed, never shown


@dataclass(frozen=True)
class Calendar:
    """A rep's working calendar (app_user.timezone, working_days, work hours)."""

    tz: str = "UTC"
    days: tuple[int, ...] = (0, 1, 2, 3, 4)
    start_hour: int = 9
    end_hour: int = 17

    def zone(self):
        return _zone(self.tz)


@lru_cache(maxsize=256)
def _zone(name: str):
    """A time zone by name, looked up once per process (every recent email's due date needs one)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def add_business_days(since: datetime, n: int, cal: Calendar) -> datetime:
    """The same local time of day n working days later (a weekend message counts from the next working day)."""
    local = since.astimezone(cal.zone())
    days = set(cal.days) or {0, 1, 2, 3, 4}
    if local.weekday() not in days:  # sent on a day off: the clock starts at the next working morning
        while local.weekday() not in days:
            local = (local + timedelta(days=1)).replace(hour=cal.start_hour, minute=0, second=0, microsecond=0)
    left = n
    while left > 0:
        local += timedelta(days=1)
        if local.weekday() in days:
            left -= 1
    return local.astimezone(timezone.utc)


def add_business_hours(since: datetime, n: int, cal: Calendar) -> datetime:
    """n working hours after since, counting only the rep's working hours on working days."""
    zone, days = cal.zone(), set(cal.days) or {0, 1, 2, 3, 4}
    start, end = cal.start_hour, max(cal.end_hour, cal.start_hour + 1)
    local = since.astimezone(zone)
    left = timedelta(hours=n)
    for _ in range(400):  # at most a year of days; a calendar without working hours cannot loop forever
        day_start = datetime.combine(local.date(), time(start), zone)
        day_end = datetime.combine(local.date(), time(end), zone)
        if local.weekday() in days and local < day_end:
            local = max(local, day_start)
            if local + left <= day_end:
                return (local + left).astimezone(timezone.utc)
            left -= day_end - local
        local = datetime.combine(local.date() + timedelta(days=1), time(start), zone)
    return (since + timedelta(hours=n)).astimezone(timezone.utc)


@dataclass(frozen=True)
class MailEvent:
    """One new, meaningful email as ingest stored it."""

    interaction_id: int
    thread_key: str
    at: datetime
    direction: str  # out: a rep wrote; in: a contact wrote
    user_id: int  # the rep: the sender (out) or the first colleague it was addressed to (in)
    address: str  # the other side's first address
    contact_id: int | None
    company_id: int | None
    opens: bool = True  # False: a calendar message, which closes (mail_role "close")


@dataclass(frozen=True)
class Settings:
    wait_days: int
    reply_hours: int
    calendars: dict[int, Calendar]


def load_settings(conn: Connection, org_id: int, user_ids: Iterable[int] | None = None) -> Settings:
    """The organisation's follow-up settings and its reps' calendars (user_ids None: every user's)."""
    o = Organisation.__table__
    wait, reply = conn.execute(select(o.c.followup_wait_days, o.c.followup_reply_hours).where(o.c.id == org_id)).one()
    u = User.__table__
    query = select(u.c.id, u.c.timezone, u.c.working_days, u.c.work_start_hour, u.c.work_end_hour).where(
        u.c.org_id == org_id
    )
    if user_ids is not None:
        query = query.where(u.c.id.in_(sorted(set(user_ids))))
    cals = {
        uid: Calendar(tz or "UTC", tuple(days or ()), start, end) for uid, tz, days, start, end in conn.execute(query)
    }
    return Settings(wait, reply, cals)


def _naive(value: datetime) -> datetime:
    return value if value.tzinfo is None else value.astimezone(timezone.utc).replace(tzinfo=None)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


# An open "waiting" or "owe" row as the run knows it: (id, kind, thread key, since (aware),
# company id, contact id, address).
OpenRow = tuple[int, str, str, datetime, Any, Any, Any]
_CROSS_KINDS = (FollowUpKind.WAITING, FollowUpKind.OWE)
_MARK = "followups.last_record"  # the token of the RunCache whose record() used this connection last
_ROW_COLUMNS = (F.c.id, F.c.kind, F.c.thread_key, F.c.since, F.c.company_id, F.c.contact_id, F.c.address)


class RunCache:
    """The organisation's follow-up context for one sync run, instead of reading it again in
    every batch: the settings and reps' calendars, and the open "waiting"/"owe" rows of the
    `since` range the run's batches have needed so far, indexed by address, contact and company.

    Under cProfile at 30,000 messages, re-reading these in every batch was half of what the
    step still cost; measured without the profiler, the cache alone saved less (the per-event
    and per-row Python and the upsert were the rest: docs/performance.md section 10). It stays
    what the database holds:
    - this run's own writes update it (the batch's upsert returns the rows it wrote; the rows
      the batch closes are taken out);
    - on SQLite, a batch first asks `PRAGMA data_version`, which changes when another connection
      (another worker syncing another mailbox of the organisation, the web app) committed
      anything since the run's previous batch on this connection; then the rows are forgotten
      and read again for the `since` range the batch needs, as without the cache. One small
      statement per batch, and nothing another writer did goes unseen, rewrites included;
    - on PostgreSQL, where there is no such cheap signal, every batch reads its range again
      (as before the cache); the settings, and the rest below, are still kept for the run;
    - a batch whose transaction did not commit (a retry after a collision, a broken folder) is
      not confirmed (`confirm()`, called by the engine after each commit), and the next batch
      starts from nothing.
    The settings are those at the run's start (a run lasts minutes)."""

    def __init__(self) -> None:
        self._token = object()  # this cache's mark on a connection (not the cache: it would outlive the run)
        self.reset()

    def reset(self) -> None:
        self.settings: Settings | None = None
        self.forget_rows()
        self.unconfirmed = False
        self._dbapi: Any = None  # the SQLite connection, and its data_version, at the last batch
        self._version: Any = None

    def forget_rows(self) -> None:
        self.rows: dict[int, OpenRow] = {}
        self.index: dict[tuple[str, str, Any], set[int]] = {}  # (kind, "address"|"contact"|"company", value)
        self.by_since: list[tuple[datetime, int]] = []  # (since, id) of the rows, sorted
        self.lo: datetime | None = None  # every open row with lo <= since < hi is in rows
        self.hi: datetime | None = None
        # thread key -> a time its row's `since` is at least (the row describes a message that
        # new): what this run wrote or read. `since` only ever grows (a row is rewritten only
        # by a newer message), so an older message of such a thread would change nothing and
        # is not sent to the database at all. Replaying a 60,000-message first import (folder
        # after folder, each newest first), 16,466 rows went to the upsert without this and
        # 8,887 with it (docs/performance.md section 10).
        self.since_at_least: dict[str, datetime] = {}

    def confirm(self) -> None:
        """The transaction of the last record() committed: what it wrote stands."""
        self.unconfirmed = False

    def start(self, conn: Connection, org_id: int) -> None:
        """At the start of a batch: drop what an uncommitted batch wrote, and the rows if another
        writer may have changed them."""
        if self.unconfirmed:
            self.reset()
        self.unconfirmed = True
        if self.settings is None:
            self.settings = load_settings(conn, org_id)
        if not self._nobody_else_wrote(conn):
            self.forget_rows()

    def _nobody_else_wrote(self, conn: Connection) -> bool:
        """Whether the rows held are still what the database holds (SQLite only).

        data_version shows other connections' commits, not this connection's own: another run
        in this process (the worker's threads share the pool) may have used this connection
        since, so record() also leaves its mark on the connection (pool info, kept with it)."""
        if conn.dialect.name != "sqlite":
            return False
        dbapi, info = conn.connection.dbapi_connection, conn.connection.info
        version = conn.exec_driver_sql("PRAGMA data_version").scalar()
        same = dbapi is self._dbapi and version == self._version and info.get(_MARK) is self._token
        self._dbapi, self._version, info[_MARK] = dbapi, version, self._token
        return same

    # -- the rows ------------------------------------------------------------------------

    def _keys(self, row: OpenRow):
        _, kind, _, _, company, contact, address = row
        if address is not None:
            yield (kind, "address", address)
        if contact is not None:
            yield (kind, "contact", contact)
        if company is not None:
            yield (kind, "company", company)

    def drop(self, fid: int) -> None:
        row = self.rows.pop(fid, None)
        if row is not None:
            i = bisect_left(self.by_since, (row[3], fid))
            if i < len(self.by_since) and self.by_since[i] == (row[3], fid):
                del self.by_since[i]
            for key in self._keys(row):
                ids = self.index.get(key)
                if ids is not None:
                    ids.discard(fid)

    def _put(self, row: OpenRow) -> None:
        self.rows[row[0]] = row
        insort(self.by_since, (row[3], row[0]))
        for key in self._keys(row):
            self.index.setdefault(key, set()).add(row[0])

    def apply(self, fid: int, kind: str, status: str, thread_key: str, since, company, contact, address) -> None:
        """A row as this run's batch wrote it."""
        self.drop(fid)
        since = _aware(since)
        if (
            status == FollowUpStatus.OPEN
            and kind in _CROSS_KINDS
            and self.lo is not None
            and self.hi is not None
            and self.lo <= since < self.hi
        ):
            self._put((fid, kind, thread_key, since, company, contact, address))

    def _load(self, conn: Connection, org_id: int, lo: datetime, hi: datetime) -> None:
        for row in conn.execute(
            select(*_ROW_COLUMNS).where(
                F.c.org_id == org_id,
                F.c.kind.in_(_CROSS_KINDS),
                F.c.status == FollowUpStatus.OPEN,
                F.c.since >= lo,
                F.c.since < hi,
            )
        ):
            self.drop(row.id)
            since = _aware(row.since)
            self._put((row.id, row.kind, row.thread_key, since, row.company_id, row.contact_id, row.address))
            self.at_least(row.thread_key, since)

    def any_between(self, lo: datetime, hi: datetime) -> bool:
        """Whether an open row held has lo <= since < hi."""
        i = bisect_left(self.by_since, (lo, -1))
        return i < len(self.by_since) and self.by_since[i][0] < hi

    def at_least(self, thread_key: str, since: datetime) -> None:
        held = self.since_at_least.get(thread_key)
        if held is None or held < since:
            self.since_at_least[thread_key] = since

    def cover(self, conn: Connection, org_id: int, lo: datetime, hi: datetime) -> None:
        """Hold every open row with lo <= since < hi, reading only the part not held yet
        (a first import goes newest first: each batch reads the slice below the last)."""
        if self.lo is None or self.hi is None or hi < self.lo or lo > self.hi:
            if self.lo is not None and self.hi is not None:  # apart from what is held: start again
                self.rows.clear()
                self.index.clear()
                self.by_since.clear()
            self._load(conn, org_id, lo, hi)
            self.lo, self.hi = lo, hi
            return
        if lo < self.lo:
            self._load(conn, org_id, lo, self.lo)
            self.lo = lo
        if hi > self.hi:
            self._load(conn, org_id, self.hi, hi)
            self.hi = hi


def record(
    conn: Connection,
    org_id: int,
    events: list[MailEvent],
    now: datetime | None = None,
    cache: RunCache | None = None,
) -> None:
    """Apply a batch's new emails to the queue, inside the ingest transaction.

    cache: the run's RunCache (sync/engine.py keeps one per run and confirms it after each
    commit); None reads what it needs for this call only.

    A few statements per batch: one insert-or-rewrite of the threads with recent mail (those
    another email of the same batch already answered are written closed), one read (and rarely
    an update) of the threads with old mail, and the rows other threads' replies close: one
    read by id of those, one update per direction."""
    if not events:
        return
    cache = cache if cache is not None else RunCache()
    cache.start(conn, org_id)
    now = _aware(now or utcnow())
    latest: dict[str, tuple[MailEvent, datetime]] = {}  # thread key -> its newest email, sent at (aware)
    for e in events:
        at = _aware(e.at)
        held = latest.get(e.thread_key)
        if held is None or at > held[1]:
            latest[e.thread_key] = (e, at)
    cfg = cache.settings
    assert cfg is not None  # start() loaded them
    newest = list(latest.values())
    # The open rows this batch may close lie within WINDOW before one of its emails; with them
    # held, the upsert's returned rows land in the cache too.
    times = [at for _, at in newest]
    earliest, last = min(times), max(times)
    cache.cover(conn, org_id, earliest - WINDOW, last)
    # Counted in whole days (from midnight UTC), as the calendar window is: mail a few seconds
    # either side of "30 days ago" opened a row in one import and none in another a minute later
    # (two reps' mailboxes, a run killed and resumed), so the same mail gave different queues.
    n = now.astimezone(timezone.utc)
    cutoff = datetime.combine(n.date(), time(0), tzinfo=timezone.utc) - MAX_AGE
    # The batch's emails as answers by company, contact and address: needed when it has recent
    # mail (its rows may be answered within the batch) or open rows lie in its window. Most of a
    # first import is old mail with no open row anywhere near it (old mail opens nothing).
    if last >= cutoff or cache.any_between(earliest - WINDOW, last):
        replies: dict[str, Replies] = {kind: _replies(newest, kind) for kind in _CROSS_KINDS}
    else:
        replies = {kind: {} for kind in _CROSS_KINDS}
    rows: list[dict[str, Any]] = []
    old_events: list[tuple[MailEvent, datetime, str]] = []
    default = Calendar()
    floors = cache.since_at_least
    for e, at in newest:
        floor = floors.get(e.thread_key)
        if floor is not None and floor >= at:
            continue  # the thread's row already describes a message this new: nothing to write
        kind = FollowUpKind.WAITING if e.direction == "out" else FollowUpKind.OWE
        if at < cutoff:
            old_events.append((e, at, kind))
            continue
        cal = cfg.calendars.get(e.user_id, default)
        if kind == FollowUpKind.WAITING:
            due = add_business_days(at, cfg.wait_days, cal)
        else:
            due = add_business_hours(at, cfg.reply_hours, cal)
        # Another email of this batch, in another thread, may already answer it: then it is
        # written closed at once rather than inserted open and updated by the cross-thread step
        # below (the same end state, one statement fewer per such row).
        if not e.opens:  # the thread's newest message arranged a meeting: nobody waits
            rows.append(_row(org_id, e, kind, at, due, "meeting", now))
            continue
        answered = _is_answered(replies[kind], at, e.thread_key, e.address, e.contact_id, e.company_id)
        rows.append(_row(org_id, e, kind, at, due, "reply" if answered else None, now))
    rows.sort(key=lambda r: r["thread_key"])  # one key order for every writer (PostgreSQL)
    recent = rows
    # Recent mail, one statement for the batch: a new thread is inserted; a thread that has a
    # row is rewritten only by a newer message ("since < excluded.since": an older copy, a
    # backfill or a replay changes nothing, also against a concurrent writer). It returns the
    # rows it wrote, so the run's cache follows without reading them back.
    if recent:
        by_thread = {r["thread_key"]: r for r in recent}
        for fid, thread_key, status in _upsert(conn, recent):
            r = by_thread[thread_key]
            cache.apply(fid, r["kind"], status, thread_key, r["since"], r["company_id"], r["contact_id"], r["address"])
        for r in recent:  # written, or the row there is newer still
            cache.at_least(r["thread_key"], r["since"])
    # Mail older than MAX_AGE (most of a first import) opens nothing, so it gets no row of its
    # own: it only closes a thread's row that an older message opened (a backfilled reply).
    # Writing a closed row per old thread was most of this step's cost (docs/performance.md
    # section 10); without it a later message in the thread inserts the row just the same.
    older: dict[str, tuple[int, datetime]] = {}
    keys = sorted(e.thread_key for e, _, _ in old_events)
    for i in range(0, len(keys), 500):
        for fid, key, since in conn.execute(
            select(F.c.id, F.c.thread_key, F.c.since).where(F.c.org_id == org_id, F.c.thread_key.in_(keys[i : i + 500]))
        ):
            older[key] = (fid, _aware(since))
            cache.at_least(key, older[key][1])
    rewrite = sorted(
        (
            _row(org_id, e, kind, at, at, "old", now)
            for e, at, kind in old_events
            if e.thread_key in older and older[e.thread_key][1] < at
        ),
        key=lambda r: r["thread_key"],
    )
    if rewrite:
        conn.execute(
            update(F)
            .where(F.c.org_id == org_id, F.c.thread_key == _b("k"), F.c.since < _b("since"))
            .values({c: _b(c) for c in _REWRITTEN}),
            [{**{c: r[c] for c in _REWRITTEN}, "k": r["thread_key"]} for r in rewrite],
        )
        for r in rewrite:  # closed now ("old")
            cache.drop(older[r["thread_key"]][0])
            cache.at_least(r["thread_key"], r["since"])
    _close_across_threads(conn, org_id, replies, cache, now)


def _row(
    org_id: int, e: MailEvent, kind: str, at: datetime, due: datetime, reason: str | None, now: datetime
) -> dict[str, Any]:
    """The follow-up row of a thread whose newest email is e; reason: None (open), reply or old."""
    return {
        "org_id": org_id,
        "thread_key": e.thread_key,
        "kind": kind,
        "user_id": e.user_id,
        "interaction_id": e.interaction_id,
        "contact_id": e.contact_id,
        "company_id": e.company_id,
        "address": e.address,
        "since": at,
        "due_at": due,
        "status": FollowUpStatus.CLOSED if reason else FollowUpStatus.OPEN,
        "closed_reason": reason,
        "closed_at": now if reason else None,
        "snoozed_until": None,
        "updated_at": now,
    }


_UPSERT_COLUMNS = (
    "org_id",
    "thread_key",
    "kind",
    "user_id",
    "interaction_id",
    "contact_id",
    "company_id",
    "address",
    "since",
    "due_at",
    "status",
    "closed_reason",
    "closed_at",
    "snoozed_until",
    "updated_at",
)


def _upsert(conn: Connection, rows: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    """Insert or rewrite (only by a newer message) the rows; (id, thread key, status) of those written.

    On SQLite as plain multi-row statements with the values already in the database's form
    (app.db.db_time), one tuple per row and the batch's `now` formatted once, like ingest's other
    bulk writes: under cProfile, replaying a 60,000-message import, building the values column
    by column was 0.95 s of record()'s 2.39 s (docs/performance.md section 10)."""
    if conn.dialect.name != "sqlite":
        # Staged by COPY, then one INSERT ... SELECT (app.db.bulk_insert_ignore_returning): as
        # multi-row VALUES through SQLAlchemy the 11 upserts of a 20,000-message import waited
        # 1.01 s on the server (load ~8), parsing 15 parameters a row.
        written = bulk_insert_ignore_returning(
            conn,
            F,
            _UPSERT_COLUMNS,
            [tuple(r[c] for c in _UPSERT_COLUMNS) for r in rows],
            ("id", "thread_key", "status"),
            on_conflict=_ON_CONFLICT,
        )
        return [(fid, key, status) for fid, key, status in written]
    one = "(" + ", ".join("?" * len(_UPSERT_COLUMNS)) + ")"
    head = f"INSERT INTO {F.name} ({', '.join(_UPSERT_COLUMNS)}) VALUES "
    tail = f" {_ON_CONFLICT} RETURNING id, thread_key, status"
    out: list[tuple[int, str, str]] = []
    now = {r["updated_at"] for r in rows}  # one value per batch: formatted once
    text = {t: db_time(conn, t) for t in now}
    for i in range(0, len(rows), 500):  # 15 x 500 values, within SQLite's 32,766
        part = rows[i : i + 500]
        values: list[Any] = []
        for r in part:
            closed = r["closed_at"]
            values += (
                r["org_id"],
                r["thread_key"],
                str(r["kind"]),
                r["user_id"],
                r["interaction_id"],
                r["contact_id"],
                r["company_id"],
                r["address"],
                db_time(conn, r["since"]),
                db_time(conn, r["due_at"]),
                str(r["status"]),
                r["closed_reason"],
                None if closed is None else text.get(closed) or db_time(conn, closed),
                db_time(conn, r["snoozed_until"]),
                text[r["updated_at"]],
            )
        out.extend(tuple(x) for x in conn.exec_driver_sql(head + ", ".join([one] * len(part)) + tail, tuple(values)))
    return out


_REWRITTEN = _UPSERT_COLUMNS[2:]  # all but the conflict key (org_id, thread_key)
_ON_CONFLICT = (
    "ON CONFLICT (org_id, thread_key) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _REWRITTEN)
    + f" WHERE {F.name}.since < excluded.since"
)


def _b(name: str):
    from sqlalchemy import bindparam

    return bindparam(name)


Replies = dict[tuple[str, Any], list[tuple[datetime, str]]]


def _replies(events: list[tuple[MailEvent, datetime]], kind: str) -> Replies:
    """The batch's emails that answer rows of `kind`, by company, contact and address, sorted
    by time: "waiting" rows are answered by inbound mail (anyone at the company), "owe" rows by
    outbound mail to the contact or address."""
    direction = "in" if kind == FollowUpKind.WAITING else "out"
    by_key: Replies = {}
    for e, at in events:
        if e.direction != direction:
            continue
        by_key.setdefault(("address", e.address), []).append((at, e.thread_key))
        if e.contact_id:
            by_key.setdefault(("contact", e.contact_id), []).append((at, e.thread_key))
        if e.company_id and kind == FollowUpKind.WAITING:  # anyone at the company answers us
            by_key.setdefault(("company", e.company_id), []).append((at, e.thread_key))
    for found in by_key.values():
        found.sort()
    return by_key


def _is_answered(by_key: Replies, since: datetime, thread_key: str, address, contact, company) -> bool:
    if not by_key:
        return False
    keys = (("address", address), ("contact", contact), ("company", company))
    return any(_answered(by_key.get(key, ()), since, thread_key) for key in keys if key[1] is not None)


def _close_across_threads(
    conn: Connection, org_id: int, replies: dict[str, Replies], cache: RunCache, now: datetime
) -> None:
    """Replies that arrived in another thread: the same company answered us, or we answered them.

    The open rows come from the run's cache (RunCache.cover() holds those within WINDOW before
    the batch's emails), looked up by the batch's companies, contacts and addresses and kept
    when their `since` lies within WINDOW before one of that key's emails; each then looks up
    the batch's emails by the same keys, sorted by time. Walking all rows against all emails
    (rows x emails per batch) was two thirds of the step's cost in a first import
    (docs/performance.md section 10). Then one UPDATE per direction, ids sorted (one lock order for every writer on PostgreSQL)."""
    rows, index = cache.rows, cache.index
    for kind in _CROSS_KINDS:
        by_key = replies[kind]
        seen: set[int] = set()
        closing: list[int] = []
        for (key_kind, value), found in by_key.items():
            ids = index.get((kind, key_kind, value))
            if not ids:
                continue
            lo, hi = found[0][0] - WINDOW, found[-1][0]
            for fid in ids:
                if fid in seen:
                    continue
                _, _, thread_key, since, company, contact, address = rows[fid]
                if lo <= since < hi:
                    seen.add(fid)
                    if _is_answered(by_key, since, thread_key, address, contact, company):
                        closing.append(fid)
        closing.sort()
        for i in range(0, len(closing), 500):
            conn.execute(
                update(F)
                .where(F.c.id.in_(closing[i : i + 500]), F.c.status == FollowUpStatus.OPEN)
                .values(status=FollowUpStatus.CLOSED, closed_reason="reply", closed_at=now)
            )
        for fid in closing:
            cache.drop(fid)


def _answered(found, since: datetime, thread_key: str) -> bool:
    """Whether an email of `found` (sorted (at, thread key)) came in another thread within WINDOW after since."""
    i = bisect_right(found, since, key=lambda f: f[0])  # the first one strictly after since
    while i < len(found) and found[i][0] <= since + WINDOW:
        if found[i][1] != thread_key:
            return True
        i += 1
    return False


def mail_role(record) -> str:
    """What an email can do to the queue. "none": auto-replies (Auto-Submitted: auto-replied,
    X-Autoreply, the usual subject prefixes) and bulk or machine mail kept on the timeline (bulk
    detection off), and calendar messages that answer nothing (a cancellation). "close": an
    invitation or an answer to one ("Accepted: ..."): they answer a thread (a rep replying with
    a meeting, the customer accepting) but wait on no one, so they close and never open.
    "open": every other email."""
    subject = (record.subject or "").lower()
    if record.auto_reply or record.bulk or subject.startswith(AUTO_REPLY_PREFIXES):
        return "none"
    if not record.invitation:
        return "open"
    # An invitation or an answer to one is someone taking part; a cancellation (or a counter-
    # proposal, a refresh) answers nothing, and closing what waits on them would hide it.
    return "close" if record.invitation in ("REQUEST", "REPLY") else "none"


def is_automated(record) -> bool:
    """interaction.automated: mail that opens no follow-up, and that reply-time reports leave out."""
    return mail_role(record) != "open"


def events_from_ingest(
    interactions: dict[int, tuple[str, datetime, str, bool, bool]],
    people: Iterable[tuple],
    fallback_user: int | None,
) -> list[MailEvent]:
    """MailEvents for the new emails of an ingest batch that count (mail_role).

    interactions: id -> (thread key, occurred at, direction, counts for nothing (mail_role "none",
    or an unverified sender), closes only (mail_role "close"));
    people: participant rows (org, interaction id, at, address, name, role, user, contact, company).

    One pass over the rows keeping, per email, its first sender and its first colleague and
    first outsider among the recipients (To before Cc before Bcc, then in the order given),
    instead of grouping every email's rows and sorting its recipients (a first import passes
    every participant of every email through here)."""
    rank = {"to": 0, "cc": 1, "bcc": 2}
    order: list[int] = []
    senders: dict[int, tuple] = {}
    outsiders: dict[int, tuple[int, tuple]] = {}  # first recipient who is no colleague: (rank, row)
    colleagues: dict[int, tuple[int, tuple]] = {}  # first recipient who is a colleague
    seen: set[int] = set()
    for row in people:
        iid = row[1]
        if iid not in interactions:
            continue
        if iid not in seen:
            seen.add(iid)
            order.append(iid)
        role = row[5]
        if role == "from":
            senders.setdefault(iid, row)
            continue
        r = rank.get(role)
        if r is None:
            continue
        best = outsiders if row[6] is None else colleagues
        held = best.get(iid)
        if held is None or r < held[0]:
            best[iid] = (r, row)
    events = []
    for iid in order:
        thread, at, direction, skip, closes_only = interactions[iid]
        if skip:
            continue
        sender = senders.get(iid)
        if sender is None:
            continue
        if direction == "out":
            other = outsiders.get(iid)
            if sender[6] is None or other is None:
                continue
            user, side = sender[6], other[1]
        else:
            if sender[6] is not None:
                continue
            colleague = colleagues.get(iid)
            user = colleague[1][6] if colleague is not None else fallback_user
            if user is None:
                continue
            side = sender
        events.append(MailEvent(iid, thread, at, direction, user, side[3], side[7], side[8], not closes_only))
    return events


def sweep(conn: Connection, org_id: int, now: datetime | None = None) -> dict[str, int]:
    """The time-based rules, run by the scheduler: close what later replies (in any thread)
    or meetings answered, and open or close "going quiet". Returns counts per change."""
    now = _aware(now or utcnow())
    done = {"reply": 0, "meeting": 0, "quiet_opened": 0, "quiet_closed": 0}
    same_side = or_(
        and_(F.c.company_id.is_not(None), P.c.company_id == F.c.company_id),
        and_(F.c.contact_id.is_not(None), P.c.contact_id == F.c.contact_id),
        P.c.address == F.c.address,
    )
    base = (
        select(1)
        .select_from(P.join(I, I.c.id == P.c.interaction_id))
        .where(P.c.org_id == org_id, I.c.thread_key != F.c.thread_key, P.c.occurred_at > F.c.since)
    )
    answered = exists(
        base.where(
            same_side,
            P.c.role == "from",
            I.c.kind == "email",
            I.c.direction == "in",
            I.c.automated.is_(False),
            P.c.occurred_at <= _plus_window(conn, F.c.since),
        )
    )
    open_waiting = and_(F.c.org_id == org_id, F.c.kind == FollowUpKind.WAITING, F.c.status == FollowUpStatus.OPEN)
    done["reply"] += conn.execute(
        update(F).where(open_waiting, answered).values(status="closed", closed_reason="reply", closed_at=now)
    ).rowcount
    met = exists(base.where(same_side, I.c.kind == "meeting", P.c.occurred_at <= now, _not_cancelled()))
    done["meeting"] = conn.execute(
        update(F).where(open_waiting, met).values(status="closed", closed_reason="meeting", closed_at=now)
    ).rowcount
    we_answered = exists(
        base.where(
            or_(and_(F.c.contact_id.is_not(None), P.c.contact_id == F.c.contact_id), P.c.address == F.c.address),
            P.c.role.in_(("to", "cc", "bcc")),
            I.c.kind == "email",
            I.c.direction == "out",
            I.c.automated.is_(False),
        )
    )
    done["reply"] += conn.execute(
        update(F)
        .where(F.c.org_id == org_id, F.c.kind == FollowUpKind.OWE, F.c.status == FollowUpStatus.OPEN, we_answered)
        .values(status="closed", closed_reason="reply", closed_at=now)
    ).rowcount
    q = _sweep_quiet(conn, org_id, now)
    done["quiet_opened"], done["quiet_closed"] = q
    return done


def _not_cancelled():
    """A meeting called off (an iMIP CANCEL, a calendar's cancelled event) is no meeting with
    them: as in the contacts' summaries (sync/stats.py), it neither closes nor keeps anything."""
    return func.coalesce(I.c.status, "confirmed") != "cancelled"


def _plus_window(conn: Connection, column):
    if conn.dialect.name == "postgresql":
        return column + WINDOW
    return func.datetime(column, f"+{WINDOW.days} days")  # SQLite stores text; whole seconds are enough here


def open_deal_targets(conn: Connection, org_id: int) -> tuple[set[int], set[int]]:
    """(contact ids, company ids) with an open deal: they join "going quiet" like key accounts."""
    d, dc, st = Deal.__table__, DealContact.__table__, PipelineStage.__table__
    open_deals = (
        select(d.c.id).join(st, st.c.id == d.c.stage_id).where(d.c.org_id == org_id, st.c.kind == StageKind.OPEN)
    )
    contacts = set(
        conn.execute(select(dc.c.contact_id).where(dc.c.org_id == org_id, dc.c.deal_id.in_(open_deals))).scalars()
    )
    companies = set(
        conn.execute(
            select(d.c.company_id).where(d.c.id.in_(open_deals), d.c.company_id.is_not(None)).distinct()
        ).scalars()
    )
    return contacts, companies


def _last_touch(conn: Connection, org_id: int, column, ids: list[int]) -> dict[int, datetime]:
    out: dict[int, datetime] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        for key, last in conn.execute(
            select(column, func.max(P.c.occurred_at))
            .select_from(P.join(I, I.c.id == P.c.interaction_id))
            .where(P.c.org_id == org_id, column.in_(chunk), I.c.automated.is_(False), _not_cancelled())
            .group_by(column)
        ):
            out[key] = _aware(last)
    return out


def _sweep_quiet(conn: Connection, org_id: int, now: datetime) -> tuple[int, int]:
    o = Organisation.__table__
    days = conn.execute(select(o.c.followup_quiet_days).where(o.c.id == org_id)).scalar_one()
    deal_contacts, deal_companies = open_deal_targets(conn, org_id)
    c, k = Contact.__table__, Company.__table__
    contacts = set(conn.execute(select(c.c.id).where(c.c.org_id == org_id, c.c.key_account.is_(True))).scalars())
    companies = set(conn.execute(select(k.c.id).where(k.c.org_id == org_id, k.c.key_account.is_(True))).scalars())
    contacts |= deal_contacts
    companies |= deal_companies
    wanted: dict[str, dict] = {}
    cc = ContactColleague.__table__
    for kind, ids, column in (("contact", contacts, P.c.contact_id), ("company", companies, P.c.company_id)):
        last = _last_touch(conn, org_id, column, sorted(ids))
        for target in sorted(ids):
            at = last.get(target)
            if at is None or at > now - timedelta(days=days):
                continue
            who = select(cc.c.user_id).where(cc.c.org_id == org_id)
            if kind == "contact":
                who = who.where(cc.c.contact_id == target)
            else:
                who = who.where(cc.c.contact_id.in_(select(c.c.id).where(c.c.company_id == target)))
            user = conn.execute(who.order_by(cc.c.interactions.desc(), cc.c.user_id).limit(1)).scalar()
            wanted[f"quiet:{kind}:{target}"] = {
                "org_id": org_id,
                "thread_key": f"quiet:{kind}:{target}",
                "kind": FollowUpKind.QUIET,
                "user_id": user,
                "contact_id": target if kind == "contact" else None,
                "company_id": target if kind == "company" else None,
                "since": at,
                "due_at": at + timedelta(days=days),
                "status": FollowUpStatus.OPEN,
                "updated_at": now,
            }
    existing = {
        r.thread_key: r
        for r in conn.execute(
            select(F.c.id, F.c.thread_key, F.c.since, F.c.status).where(
                F.c.org_id == org_id, F.c.kind == FollowUpKind.QUIET
            )
        )
    }
    opened = closed = 0
    fresh = [row for key, row in sorted(wanted.items()) if key not in existing]
    insert_ignore(conn, F, fresh)
    opened += len(fresh)
    for key, row in existing.items():
        if key in wanted and _aware(row.since) < wanted[key]["since"]:
            # quiet again after activity: a new episode
            conn.execute(
                update(F)
                .where(F.c.id == row.id)
                .values(
                    status="open",
                    since=wanted[key]["since"],
                    due_at=wanted[key]["due_at"],
                    closed_reason=None,
                    closed_at=None,
                    snoozed_until=None,
                    user_id=wanted[key]["user_id"],
                    updated_at=now,
                )
            )
            opened += 1
        elif key not in wanted and row.status == FollowUpStatus.OPEN:
            conn.execute(
                update(F).where(F.c.id == row.id).values(status="closed", closed_reason="activity", closed_at=now)
            )
            closed += 1
    return opened, closed
