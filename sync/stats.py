"""Per-contact relationship summaries, kept current as the timeline changes.

A lookup must not aggregate a contact's whole history (a busy contact has
thousands of interactions), so ContactStats, ContactColleague and, for
relationship strength's 90 days, ContactColleagueDay hold the counts. Ingest
adds exact deltas for the participant rows it really inserted; anything that removes or rewrites history (rules, erasure, meeting changes)
calls recompute() for the contacts it touched. recompute() is also the
definition the tests check the deltas against.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Iterable

from sqlalchemy import delete, insert, select, text
from sqlalchemy.engine import Connection

from app.db import db_time, insert_values, read_only, utc_day, utc_day_sql, write_transaction
from app.models import ContactColleague, ContactColleagueDay, ContactStats, Organisation, SummaryCheck
from app.models.base import utcnow

STATS = ContactStats.__table__
COLLEAGUE = ContactColleague.__table__
COLLEAGUE_DAY = ContactColleagueDay.__table__
CHECK = SummaryCheck.__table__
CHUNK = 500

# The definition of the summaries, as SELECTs over the timeline: recompute() inserts
# what they give, check() compares the kept rows with it.
_STATS_SELECT = """
SELECT p.contact_id, p.org_id,
       COUNT(DISTINCT CASE WHEN i.kind = 'email' AND i.direction = 'in' THEN i.id END),
       COUNT(DISTINCT CASE WHEN i.kind = 'email' AND i.direction = 'out' THEN i.id END),
       COUNT(DISTINCT CASE WHEN i.kind = 'meeting' AND COALESCE(i.status, '') <> 'cancelled' THEN i.id END),
       MIN(CASE WHEN i.kind = 'email' THEN i.occurred_at END),
       MAX(CASE WHEN i.kind = 'email' THEN i.occurred_at END)
FROM participant p JOIN interaction i ON i.id = p.interaction_id
WHERE p.org_id = :org AND {contacts}
GROUP BY p.contact_id, p.org_id
"""
_STATS_SQL = (
    "INSERT INTO contactstats (contact_id, org_id, emails_in, emails_out, meetings, first_email_at, last_email_at)"
    + _STATS_SELECT
)

# Colleagues: emails and meetings that took place (not cancelled, not in the future).
_COLLEAGUE_SELECT = """
SELECT c.contact_id, u.user_id, c.org_id, COUNT(DISTINCT c.interaction_id), MAX(c.occurred_at)
FROM participant c
JOIN participant u ON u.interaction_id = c.interaction_id AND u.user_id IS NOT NULL
JOIN interaction i ON i.id = c.interaction_id
WHERE c.org_id = :org AND {contacts}
  AND (i.kind = 'email' OR (i.kind = 'meeting' AND COALESCE(i.status, '') <> 'cancelled' AND i.occurred_at <= :now))
GROUP BY c.contact_id, u.user_id, c.org_id
"""
_COLLEAGUE_SQL = "INSERT INTO contactcolleague (contact_id, user_id, org_id, interactions, last_at)" + _COLLEAGUE_SELECT

# What relationship strength counts (app/services/strength.py), per contact, colleague and UTC
# day: emails in, emails out (any other direction) and meetings whatever their status or date.
_DAY_SELECT = """
SELECT c.contact_id, {day}, u.user_id, c.org_id,
       COUNT(DISTINCT CASE WHEN i.kind = 'email' AND i.direction = 'in' THEN i.id END),
       COUNT(DISTINCT CASE WHEN i.kind = 'email' AND COALESCE(i.direction, '') <> 'in' THEN i.id END),
       COUNT(DISTINCT CASE WHEN i.kind = 'meeting' THEN i.id END),
       MAX(i.occurred_at)
FROM participant c
JOIN participant u ON u.interaction_id = c.interaction_id AND u.user_id IS NOT NULL
JOIN interaction i ON i.id = c.interaction_id
WHERE c.org_id = :org AND {contacts} AND i.kind IN ('email', 'meeting')
GROUP BY c.contact_id, {day}, u.user_id, c.org_id
"""
_DAY_COLUMNS = ("contact_id", "day", "user_id", "org_id", "emails_in", "emails_out", "meetings", "last_at")
_DAY_INSERT = f"INSERT INTO contactcolleagueday ({', '.join(_DAY_COLUMNS)})"


def forget(conn: Connection, org_id: int, contact_ids: list[int]) -> None:
    """Drop these contacts' kept summaries, every table of them (at most CHUNK ids): before a
    recount, or when the contacts go (app/services/admin.py: delete_contacts)."""
    for table in (STATS, COLLEAGUE, COLLEAGUE_DAY):
        conn.execute(delete(table).where(table.c.org_id == org_id, table.c.contact_id.in_(contact_ids)))


def recompute(conn: Connection, org_id: int, contact_ids: Iterable[int]) -> None:
    """Rebuild the summaries of these contacts from the timeline itself."""
    ids = sorted({int(c) for c in contact_ids if c is not None})
    now = db_time(conn, utcnow())
    for i in range(0, len(ids), CHUNK):
        part = ids[i : i + CHUNK]
        forget(conn, org_id, part)
        id_list = ", ".join(str(c) for c in part)  # integers only: safe to inline
        conn.execute(text(_STATS_SQL.format(contacts=f"p.contact_id IN ({id_list})")), {"org": org_id})
        conn.execute(text(_COLLEAGUE_SQL.format(contacts=f"c.contact_id IN ({id_list})")), {"org": org_id, "now": now})
        day = utc_day_sql(conn, "c.occurred_at")
        conn.execute(
            text(_DAY_INSERT + _DAY_SELECT.format(day=day, contacts=f"c.contact_id IN ({id_list})")), {"org": org_id}
        )


def _earliest(conn: Connection, a: str, b: str) -> str:
    if conn.dialect.name == "postgresql":
        return f"LEAST({a}, {b})"
    return f"MIN(COALESCE({a}, {b}), COALESCE({b}, {a}))"


def _latest(conn: Connection, a: str, b: str) -> str:
    if conn.dialect.name == "postgresql":
        return f"GREATEST({a}, {b})"
    return f"MAX(COALESCE({a}, {b}), COALESCE({b}, {a}))"


def add_email_deltas(
    conn: Connection,
    org_id: int,
    new_rows: list[tuple],
    interactions: dict[int, tuple],
    existing_people: dict[int, list[tuple[int | None, int | None]]],
) -> None:
    """Add what newly inserted email participants change.

    new_rows: (interaction_id, contact_id, user_id) of participant rows just inserted.
    interactions: interaction_id -> (direction, occurred_at in database form).
    existing_people: interaction_id -> [(contact_id, user_id)] of rows that were
    already stored before this batch (only for interactions that had some).
    """
    stats: dict[int, list] = {}
    pairs: dict[tuple[int, int], list] = {}
    days: dict[tuple[int, str, int], list] = {}
    new_by_interaction: dict[int, tuple[list, list]] = {}
    for iid, contact_id, user_id in new_rows:
        entry = new_by_interaction.get(iid)
        if entry is None:
            entry = new_by_interaction[iid] = ([], [])
        if contact_id is not None:
            entry[0].append(contact_id)
        if user_id is not None:
            entry[1].append(user_id)
    for iid, (contacts_now, users_now) in new_by_interaction.items():
        direction, at = interactions[iid]
        old_people = existing_people.get(iid)
        fresh_pairs: list[tuple[int, int]] | set[tuple[int, int]]
        if not old_people:
            # The common case (a new interaction): every contact and every pair is new.
            added_contacts = set(contacts_now)
            users = set(users_now)
            fresh_pairs = [(c, u) for c in added_contacts for u in users]
        else:
            new_contacts, new_users = set(contacts_now), set(users_now)
            old_contacts = {c for c, _ in old_people if c is not None}
            old_users = {u for _, u in old_people if u is not None}
            added_contacts = new_contacts - old_contacts
            fresh_pairs = {(c, u) for c in new_contacts | old_contacts for u in new_users | old_users}
            fresh_pairs -= {(c, u) for c in old_contacts for u in old_users}
        slot = 0 if direction == "in" else 1
        for c in added_contacts:
            s = stats.get(c)
            if s is None:
                stats[c] = s = [0, 0, at, at]
            s[slot] += 1
            if at < s[2]:
                s[2] = at
            if at > s[3]:
                s[3] = at
        day = utc_day(at) if fresh_pairs else ""
        for pair in fresh_pairs:
            p = pairs.get(pair)
            if p is None:
                pairs[pair] = [1, at]
            else:
                p[0] += 1
                if at > p[1]:
                    p[1] = at
            key = (pair[0], day, pair[1])
            d = days.get(key)
            if d is None:
                days[key] = d = [0, 0, at]
            d[slot] += 1
            if at > d[2]:
                d[2] = at
    if stats:
        insert_values(
            conn,
            "contactstats",
            ("contact_id", "org_id", "emails_in", "emails_out", "meetings", "first_email_at", "last_email_at"),
            [(c, org_id, s[0], s[1], 0, s[2], s[3]) for c, s in sorted(stats.items())],
            "ON CONFLICT (contact_id) DO UPDATE SET "
            "emails_in = contactstats.emails_in + excluded.emails_in, "
            "emails_out = contactstats.emails_out + excluded.emails_out, "
            f"first_email_at = {_earliest(conn, 'contactstats.first_email_at', 'excluded.first_email_at')}, "
            f"last_email_at = {_latest(conn, 'contactstats.last_email_at', 'excluded.last_email_at')}",
        )
    if pairs:
        insert_values(
            conn,
            "contactcolleague",
            ("contact_id", "user_id", "org_id", "interactions", "last_at"),
            [(c, u, org_id, p[0], p[1]) for (c, u), p in sorted(pairs.items())],
            "ON CONFLICT (contact_id, user_id) DO UPDATE SET "
            "interactions = contactcolleague.interactions + excluded.interactions, "
            f"last_at = {_latest(conn, 'contactcolleague.last_at', 'excluded.last_at')}",
        )
    if days:
        insert_values(
            conn,
            "contactcolleagueday",
            _DAY_COLUMNS,
            [(c, d, u, org_id, n[0], n[1], 0, n[2]) for (c, d, u), n in sorted(days.items())],
            "ON CONFLICT (contact_id, day, user_id) DO UPDATE SET "
            "emails_in = contactcolleagueday.emails_in + excluded.emails_in, "
            "emails_out = contactcolleagueday.emails_out + excluded.emails_out, "
            f"last_at = {_latest(conn, 'contactcolleagueday.last_at', 'excluded.last_at')}",
        )


# -- the recount: do the kept rows agree with the definition? ------------------------------

ALL_CONTACTS = ("p.contact_id IS NOT NULL", "c.contact_id IS NOT NULL")
_NEVER = datetime(1970, 1, 1, tzinfo=timezone.utc)
SHOWN = 100  # contacts named in a stored check (the count is exact)


def _when(value):
    """A time as comparable values on both databases (SQLite hands back text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime) and value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def check(conn: Connection, org_id: int) -> tuple[int, list[int]]:
    """(contacts recounted, ids of those whose kept summaries disagree with a recount).

    One snapshot (REPEATABLE READ on PostgreSQL; SQLite's read transaction is one), so a
    batch committing meanwhile cannot make rows look wrong. contactstats and
    contactcolleagueday must equal the recount. A contactcolleague count must lie between
    the recount of its emails alone and the recount with every meeting that has taken place by now: a meeting counts from its
    last recompute on, so one that was ahead then and is past now may be in the recount only.
    """
    if conn.dialect.name == "postgresql" and not conn.in_transaction():
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    org = {"org": org_id}
    zero = (0, 0, 0, None, None)
    recount = {
        r[0]: (r[2], r[3], r[4], _when(r[5]), _when(r[6]))
        for r in conn.execute(text(_STATS_SELECT.format(contacts=ALL_CONTACTS[0])), org)
    }
    kept = {
        r[0]: (r[1], r[2], r[3], _when(r[4]), _when(r[5]))
        for r in conn.exec_driver_sql(
            "SELECT contact_id, emails_in, emails_out, meetings, first_email_at, last_email_at FROM contactstats "
            f"WHERE org_id = {int(org_id)}"
        )
    }
    wrong = {c for c in recount.keys() | kept.keys() if recount.get(c, zero) != kept.get(c, zero)}

    def colleagues(now) -> dict:
        sql = text(_COLLEAGUE_SELECT.format(contacts=ALL_CONTACTS[1]))
        return {(r[0], r[1]): (r[3], _when(r[4])) for r in conn.execute(sql, {**org, "now": db_time(conn, now)})}

    low, high = colleagues(_NEVER), colleagues(utcnow())
    pairs = {
        (r[0], r[1]): (r[2], _when(r[3]))
        for r in conn.exec_driver_sql(
            f"SELECT contact_id, user_id, interactions, last_at FROM contactcolleague WHERE org_id = {int(org_id)}"
        )
    }
    for pair in pairs.keys() | high.keys():
        k, lo, hi = pairs.get(pair, (0, None)), low.get(pair, (0, None)), high.get(pair, (0, None))
        if not lo[0] <= k[0] <= hi[0] or (lo == hi and k != lo):
            wrong.add(pair[0])
    day_sql = text(_DAY_SELECT.format(day=utc_day_sql(conn, "c.occurred_at"), contacts=ALL_CONTACTS[1]))
    days = {(r[0], r[1], r[2]): (r[4], r[5], r[6], _when(r[7])) for r in conn.execute(day_sql, org)}
    kept_days = {
        (r[0], r[1], r[2]): (r[3], r[4], r[5], _when(r[6]))
        for r in conn.exec_driver_sql(
            "SELECT contact_id, day, user_id, emails_in, emails_out, meetings, last_at FROM contactcolleagueday "
            f"WHERE org_id = {int(org_id)}"
        )
    }
    wrong.update(key[0] for key in days.keys() | kept_days.keys() if days.get(key) != kept_days.get(key))
    return len(recount.keys() | kept.keys()), sorted(wrong)


def mailboxes_of(conn: Connection, org_id: int, contact_ids: list[int]) -> list[int]:
    """The mailboxes holding a copy of these contacts' interactions."""
    found: set[int] = set()
    for i in range(0, len(contact_ids), CHUNK):
        ids = ", ".join(str(int(c)) for c in contact_ids[i : i + CHUNK])
        found.update(
            r[0]
            for r in conn.exec_driver_sql(
                "SELECT DISTINCT s.mailbox_id FROM interactionsource s "
                "JOIN participant p ON p.interaction_id = s.interaction_id "
                f"WHERE p.org_id = {int(org_id)} AND p.contact_id IN ({ids})"
            )
        )
    return sorted(found)


def record_check(engine, org_id: int) -> dict:
    """Recount an organisation's summaries (reading only) and store the result, which the
    health pages show: a mailbox holding mail of a disagreeing contact is not healthy."""
    with read_only(engine) as conn:
        contacts, wrong = check(conn, org_id)
        mailbox_ids = mailboxes_of(conn, org_id, wrong)
    row = {
        "org_id": org_id,
        "checked_at": utcnow(),
        "contacts": contacts,
        "disagreeing": len(wrong),
        "contact_ids": wrong[:SHOWN],
        "mailbox_ids": mailbox_ids,
    }
    with write_transaction(engine) as conn:
        conn.execute(delete(CHECK).where(CHECK.c.org_id == org_id))
        conn.execute(insert(CHECK).values(**row))
    return row


def check_due(engine, every_seconds: int) -> list[dict]:
    """record_check() for each organisation whose last check is older than every_seconds
    (several workers share the job this way: whoever comes first recounts)."""
    O = Organisation.__table__
    cutoff = utcnow() - timedelta(seconds=every_seconds)
    with read_only(engine) as conn:
        last = dict(conn.execute(select(CHECK.c.org_id, CHECK.c.checked_at)).all())
        orgs = list(conn.execute(select(O.c.id).order_by(O.c.id)).scalars())
    due = [o for o in orgs if last.get(o) is None or _aware(last[o]) < cutoff]
    return [record_check(engine, o) for o in due]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
