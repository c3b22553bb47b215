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
with them closes "waiting" too (sweep()). Auto-replies and machine mail (interaction.automated)
never open or close anything; internal-only and bulk mail never reach the timeline at all.

`sweep()` is the scheduled part (sync/scheduler.py): broken-thread replies and meetings that
arrived before the message they answer (backfill runs newest first), and "going quiet".
"""

from __future__ import annotations

import os
from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from typing import Any, Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from app.db import insert_ignore, insert_values
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
        try:
            return ZoneInfo(self.tz)
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


@dataclass(frozen=True)
class Settings:
    wait_days: int
    reply_hours: int
    calendars: dict[int, Calendar]


def load_settings(conn: Connection, org_id: int, user_ids: Iterable[int]) -> Settings:
    o = Organisation.__table__
    wait, reply = conn.execute(select(o.c.followup_wait_days, o.c.followup_reply_hours).where(o.c.id == org_id)).one()
    u = User.__table__
    ids = sorted(set(user_ids))
    cals = {
        uid: Calendar(tz or "UTC", tuple(days or ()), start, end)
        for uid, tz, days, start, end in conn.execute(
            select(u.c.id, u.c.timezone, u.c.working_days, u.c.work_start_hour, u.c.work_end_hour).where(
                u.c.org_id == org_id, u.c.id.in_(ids)
            )
        )
    }
    return Settings(wait, reply, cals)


def _naive(value: datetime) -> datetime:
    return value if value.tzinfo is None else value.astimezone(timezone.utc).replace(tzinfo=None)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def record(conn: Connection, org_id: int, events: list[MailEvent], now: datetime | None = None) -> None:
    """Apply a batch's new emails to the queue, inside the ingest transaction.

    A few statements per batch: one insert-or-rewrite of the threads with recent mail, one
    read (and rarely an update) of the threads with old mail, and per direction one read plus
    one update for the rows other threads' replies close."""
    if not events:
        return
    now = _aware(now or utcnow())
    latest: dict[str, MailEvent] = {}
    for e in events:
        if e.thread_key not in latest or _aware(e.at) > _aware(latest[e.thread_key].at):
            latest[e.thread_key] = e
    cfg = load_settings(conn, org_id, {e.user_id for e in latest.values()})
    rows: list[dict[str, Any]] = []
    for e in latest.values():
        at = _aware(e.at)
        cal = cfg.calendars.get(e.user_id, Calendar())
        old = at < now - MAX_AGE
        if e.direction == "out":
            kind, due = FollowUpKind.WAITING, at if old else add_business_days(at, cfg.wait_days, cal)
        else:
            kind, due = FollowUpKind.OWE, at if old else add_business_hours(at, cfg.reply_hours, cal)
        rows.append(
            {
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
                "status": FollowUpStatus.CLOSED if old else FollowUpStatus.OPEN,
                "closed_reason": "old" if old else None,
                "closed_at": now if old else None,
                "snoozed_until": None,
                "updated_at": now,
            }
        )
    rows.sort(key=lambda r: r["thread_key"])  # one key order for every writer (PostgreSQL)
    recent = [r for r in rows if r["closed_reason"] is None]
    old_rows = [r for r in rows if r["closed_reason"] == "old"]
    # Recent mail, one statement for the batch: a new thread is inserted; a thread that has a
    # row is rewritten only by a newer message ("since < excluded.since": an older copy, a
    # backfill or a replay changes nothing, also against a concurrent writer).
    if recent and conn.dialect.name == "postgresql":
        _upsert_postgresql(conn, recent)
    elif recent:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        upsert = dialect.insert(F)
        conn.execute(
            upsert.on_conflict_do_update(
                index_elements=[F.c.org_id, F.c.thread_key],
                set_={c: upsert.excluded[c] for c in _REWRITTEN},
                where=F.c.since < upsert.excluded.since,
            ),
            recent,
        )
    # Mail older than MAX_AGE (most of a first import) opens nothing, so it gets no row of its
    # own: it only closes a thread's row that an older message opened (a backfilled reply).
    # Writing a closed row per old thread was most of this step's cost (docs/performance.md
    # section 10); without it a later message in the thread inserts the row just the same.
    known: set[str] = set()
    keys = [r["thread_key"] for r in old_rows]
    for i in range(0, len(keys), 500):
        known.update(
            conn.execute(select(F.c.thread_key).where(F.c.org_id == org_id, F.c.thread_key.in_(keys[i : i + 500])))
            .scalars()
            .all()
        )
    if known:
        conn.execute(
            update(F)
            .where(F.c.org_id == org_id, F.c.thread_key == _b("k"), F.c.since < _b("since"))
            .values({c: _b(c) for c in _REWRITTEN}),
            [{**{c: r[c] for c in _REWRITTEN}, "k": r["thread_key"]} for r in old_rows if r["thread_key"] in known],
        )
    _close_across_threads(conn, org_id, list(latest.values()), now)


_REWRITTEN = (
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


_INSERTED = ("org_id", "thread_key", *_REWRITTEN)


def _upsert_postgresql(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """The batch's upsert as one multi-row statement. The executemany above is one
    statement per thread, which PostgreSQL parses and plans each time: about 2,300 of the
    4,300 statements of a 10,000-message first import (docs/performance.md section 6).
    The rows have distinct thread keys (one per thread), as one ON CONFLICT DO UPDATE needs."""
    assigns = ", ".join(f"{c} = EXCLUDED.{c}" for c in _REWRITTEN)
    insert_values(
        conn,
        f"INSERT INTO {F.name} ({', '.join(_INSERTED)})",
        [tuple(r[c] for c in _INSERTED) for r in rows],
        f"ON CONFLICT (org_id, thread_key) DO UPDATE SET {assigns} WHERE {F.name}.since < EXCLUDED.since",
    )


def _b(name: str):
    from sqlalchemy import bindparam

    return bindparam(name)


def _close_across_threads(conn: Connection, org_id: int, events: list[MailEvent], now: datetime) -> None:
    """Replies that arrived in another thread: the same company answered us, or we answered them.

    One read per direction, limited to open rows whose `since` lies within WINDOW before one
    of the batch's emails (ix_followup_open_since), then each row looks up the batch's
    emails by company, contact and address, sorted by time, instead of walking all of them:
    that walk (rows x emails per batch) was two thirds of the follow-up step's cost in a
    first import (docs/performance.md section 10)."""
    for kind, direction in ((FollowUpKind.WAITING, "in"), (FollowUpKind.OWE, "out")):
        evs = [e for e in events if e.direction == direction]
        if not evs:
            continue
        by_key: dict[tuple[str, Any], list[tuple[datetime, str]]] = {}
        for e in evs:
            at = _aware(e.at)
            keys: list[tuple[str, Any]] = [("address", e.address)]
            if e.contact_id:
                keys.append(("contact", e.contact_id))
            if e.company_id and kind == FollowUpKind.WAITING:  # anyone at the company answers us
                keys.append(("company", e.company_id))
            for key in keys:
                by_key.setdefault(key, []).append((at, e.thread_key))
        for found in by_key.values():
            found.sort()
        times = [at for found in by_key.values() for at, _ in found]
        earliest, latest = min(times), max(times)
        companies = sorted(k for t, k in by_key if t == "company")
        contacts = sorted(k for t, k in by_key if t == "contact")
        addresses = sorted(k for t, k in by_key if t == "address")
        same_side = [F.c.address.in_(addresses)]
        if contacts:
            same_side.append(F.c.contact_id.in_(contacts))
        if companies:
            same_side.append(F.c.company_id.in_(companies))
        closing = []
        for row in conn.execute(
            select(F.c.id, F.c.thread_key, F.c.since, F.c.company_id, F.c.contact_id, F.c.address).where(
                F.c.org_id == org_id,
                F.c.kind == kind,
                F.c.status == FollowUpStatus.OPEN,
                F.c.since >= earliest - WINDOW,
                F.c.since < latest,
                or_(*same_side),
            )
        ):
            since = _aware(row.since)
            keys = [("address", row.address), ("contact", row.contact_id), ("company", row.company_id)]
            if any(_answered(by_key.get(key, ()), since, row.thread_key) for key in keys if key[1] is not None):
                closing.append(row.id)
        if closing:  # one statement, not one per row (on PostgreSQL each is parsed and planned)
            conn.execute(
                update(F)
                .where(F.c.id.in_(closing))
                .values(status=FollowUpStatus.CLOSED, closed_reason="reply", closed_at=now)
            )


def _answered(found, since: datetime, thread_key: str) -> bool:
    """Whether an email of `found` (sorted (at, thread key)) came in another thread within WINDOW after since."""
    i = bisect_right(found, since, key=lambda f: f[0])  # the first one strictly after since
    while i < len(found) and found[i][0] <= since + WINDOW:
        if found[i][1] != thread_key:
            return True
        i += 1
    return False


def is_automated(record) -> bool:
    """Auto-replies (Auto-Submitted: auto-replied, X-Autoreply, the usual subject prefixes) and
    bulk or machine mail kept on the timeline (bulk detection off) never open or close a follow-up."""
    subject = (record.subject or "").lower()
    return bool(record.auto_reply or record.bulk or subject.startswith(AUTO_REPLY_PREFIXES))


def events_from_ingest(
    interactions: dict[int, tuple[str, datetime, str, bool]],
    people: Iterable[tuple],
    fallback_user: int | None,
) -> list[MailEvent]:
    """MailEvents for the new, non-automated emails of an ingest batch.

    interactions: id -> (thread key, occurred at, direction, automated or unverified);
    people: participant rows (org, interaction id, at, address, name, role, user, contact, company)."""
    by_iid: dict[int, list[tuple]] = {}
    for row in people:
        if row[1] in interactions:
            by_iid.setdefault(row[1], []).append(row)
    events = []
    for iid, rows in by_iid.items():
        thread, at, direction, skip = interactions[iid]
        if skip:
            continue
        sender = next((r for r in rows if r[5] == "from"), None)
        if sender is None:
            continue
        recipients = sorted(
            (r for r in rows if r[5] in ("to", "cc", "bcc")), key=lambda r: ("to", "cc", "bcc").index(r[5])
        )
        if direction == "out":
            other = next((r for r in recipients if r[6] is None), None)
            if sender[6] is None or other is None:
                continue
            user, side = sender[6], other
        else:
            if sender[6] is not None:
                continue
            user = next((r[6] for r in recipients if r[6] is not None), fallback_user)
            if user is None:
                continue
            side = sender
        events.append(MailEvent(iid, thread, at, direction, user, side[3], side[7], side[8]))
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
    met = exists(base.where(same_side, I.c.kind == "meeting", P.c.occurred_at <= now))
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
            .where(P.c.org_id == org_id, column.in_(chunk), I.c.automated.is_(False))
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
