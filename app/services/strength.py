"""Relationship strength: a 0-100 score per (colleague, contact) and per company from recency,
frequency, reciprocity (mail both ways) and meetings over the last 90 days, with the reason in words."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from app.db import db_time, raw_rows
from app.models import Company, Interaction, Participant, User

P, I, K, U = Participant.__table__, Interaction.__table__, Company.__table__, User.__table__
WINDOW_DAYS = 90


def _aware(value):
    if value is None or isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=timezone.utc) if value else None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def score(emails_in: int, emails_out: int, meetings: int, last_at: datetime | None, now: datetime) -> dict:
    """Weights: recency 35 (halves every 30 days), frequency 30 (log scale, full at 40 emails),
    reciprocity 20 (the smaller direction over the larger), meetings 15 (full at 3)."""
    emails = emails_in + emails_out
    if not emails and not meetings:
        return {"score": 0, "explanation": f"no emails or meetings in the last {WINDOW_DAYS} days"}
    age = max(0.0, (now - last_at).total_seconds() / 86400) if last_at else WINDOW_DAYS
    recency = 0.5 ** (age / 30)
    frequency = min(1.0, math.log1p(emails) / math.log1p(40))
    reciprocity = min(emails_in, emails_out) / max(emails_in, emails_out) if emails_in and emails_out else 0.0
    met = min(1.0, meetings / 3)
    value = round(100 * (0.35 * recency + 0.30 * frequency + 0.20 * reciprocity + 0.15 * met))
    return {"score": value, "explanation": explain(emails_in, emails_out, meetings)}


def explain(emails_in: int, emails_out: int, meetings: int) -> str:
    emails = emails_in + emails_out
    if emails_in and emails_out:
        mail = f"{emails} email{'s' if emails != 1 else ''} both ways"
    elif emails_out:
        mail = f"{emails_out} email{'s' if emails_out != 1 else ''} sent, none back"
    elif emails_in:
        mail = f"{emails_in} email{'s' if emails_in != 1 else ''} received, none sent"
    else:
        mail = "no emails"
    times = {0: None, 1: "once", 2: "twice"}.get(meetings, f"{meetings} times")
    met = f", met {times}" if times else ""
    return f"{mail} in the last {WINDOW_DAYS} days{met}"


def _since(now: datetime) -> datetime:
    return now - timedelta(days=WINDOW_DAYS)


# The definition, over the timeline itself: the colleagues' interactions with one contact
# since a time (and, in the second form, before another).
_RAW = """SELECT pu.user_id, i.kind, i.direction, count(DISTINCT i.id), max(i.occurred_at)
        FROM participant pc JOIN interaction i ON i.id = pc.interaction_id
        JOIN participant pu ON pu.interaction_id = pc.interaction_id AND pu.user_id IS NOT NULL
        WHERE pc.org_id = ? AND pc.contact_id = ? AND pc.occurred_at >= ?{before} AND i.kind IN ('email', 'meeting')
        GROUP BY pu.user_id, i.kind, i.direction"""
_SINCE, _BETWEEN = _RAW.format(before=""), _RAW.format(before=" AND pc.occurred_at < ?")
_DAYS = """SELECT user_id, sum(emails_in), sum(emails_out), sum(meetings), max(last_at) FROM contactcolleagueday
        WHERE contact_id = ? AND day >= ? AND org_id = ? GROUP BY user_id"""


def colleagues(conn, org_id: int, contact_id: int, now: datetime) -> dict[int, dict]:
    """user id -> score and words, for every colleague who dealt with this contact lately.

    The window's whole UTC days come from their summary (contactcolleagueday, kept by
    sync/stats.py), the rest of its first day from the timeline: the same counts as reading
    every interaction of the window (_SINCE; the tests compare the two), which for a contact
    with 5,645 emails in the window took 50-80 ms (docs/performance.md, section 8).
    Hand-written SQL: the lookup runs it on its plain driver readers too (app/db.py)."""
    since = _since(now).astimezone(timezone.utc)
    first_whole = datetime.combine(since.date() + timedelta(days=1), datetime.min.time(), timezone.utc)
    rows = list(raw_rows(conn, _BETWEEN, (org_id, contact_id, db_time(conn, since), db_time(conn, first_whole))))
    for uid, emails_in, emails_out, meetings, last in raw_rows(
        conn, _DAYS, (contact_id, first_whole.date().isoformat(), org_id)
    ):
        rows += [(uid, "email", "in", emails_in, last), (uid, "email", "out", emails_out, None)]
        rows.append((uid, "meeting", None, meetings, None))
    return _fold(rows, now)


def colleagues_from_timeline(conn, org_id: int, contact_id: int, now: datetime) -> dict[int, dict]:
    """colleagues() by its definition, reading every interaction of the window (for the tests)."""
    return _fold(raw_rows(conn, _SINCE, (org_id, contact_id, db_time(conn, _since(now)))), now)


def companies(conn: Connection, org_id: int, company_ids: list[int], now: datetime) -> dict[int, dict]:
    """company id -> score and words, from everyone of ours with anyone of theirs."""
    out: dict[int, dict] = {}
    for i in range(0, len(company_ids), 500):
        rows = conn.execute(
            select(
                P.c.company_id, I.c.kind, I.c.direction, func.count(func.distinct(I.c.id)), func.max(I.c.occurred_at)
            )
            .select_from(P.join(I, I.c.id == P.c.interaction_id))
            .where(
                P.c.org_id == org_id,
                P.c.company_id.in_(company_ids[i : i + 500]),
                P.c.occurred_at >= _since(now),
                I.c.kind.in_(("email", "meeting")),
            )
            .group_by(P.c.company_id, I.c.kind, I.c.direction)
        ).all()
        out.update(_fold(rows, now))
    return out


def _fold(rows, now: datetime) -> dict[int, dict]:
    acc: dict[int, list] = {}
    for key, kind, direction, n, last in rows:
        a = acc.setdefault(key, [0, 0, 0, None])
        if kind == "meeting":
            a[2] += n
        elif direction == "in":
            a[0] += n
        else:
            a[1] += n
        last = _aware(last)
        a[3] = max(a[3], last) if a[3] and last else (a[3] or last)
    return {key: score(a[0], a[1], a[2], a[3], now) for key, a in acc.items()}


def company_list(
    conn: Connection, org_id: int, now: datetime, *, sort: str = "strength", limit: int = 100
) -> list[dict]:
    """The organisation's companies with their strength, strongest first (or by name)."""
    rows = conn.execute(select(K.c.id, K.c.name, K.c.domain, K.c.key_account).where(K.c.org_id == org_id)).all()
    scores = companies(conn, org_id, [r.id for r in rows], now)
    items = [
        {
            "id": r.id,
            "name": r.name,
            "domain": r.domain,
            "key_account": bool(r.key_account),
            **scores.get(r.id, score(0, 0, 0, None, now)),
        }
        for r in rows
    ]
    if sort == "name":
        items.sort(key=lambda c: (c["name"].lower(), c["id"]))
    else:
        items.sort(key=lambda c: (-c["score"], c["name"].lower(), c["id"]))
    return items[:limit]
