"""The rep's day: follow-ups due, tasks due, today's and tomorrow's meetings, deals needing attention."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from app.models import ContactColleague, ContactStats, Interaction, Organisation, Participant, User
from app.models.base import utcnow
from app.services import deals, followups

I, P, S, CC = Interaction.__table__, Participant.__table__, ContactStats.__table__, ContactColleague.__table__


def _aware(value):
    return None if value is None else value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def deals_needing_attention(conn: Connection, org_id: int, user_id: int, now: datetime) -> list[dict]:
    """This rep's open deals whose expected close date has passed, or with no email or
    meeting with their contacts (nor a stage change) for the organisation's "going quiet"
    days; as {"id", "name", "reason"}, close date first."""
    o = Organisation.__table__
    quiet_days = conn.execute(select(o.c.followup_quiet_days).where(o.c.id == org_id)).scalar_one()
    today = now.date()
    found = deals.open_deals_for(conn, org_id, owner_id=user_id)
    contact_ids = sorted({c for d in found for c in d["contact_ids"]})
    last: dict[int, datetime] = {}
    # The kept per-colleague summaries (sync/stats.py: emails, and meetings that took place),
    # a few rows per contact: the participant rows themselves are thousands for a busy
    # contact, and reading them made this the slowest part of the day (bench/day.py).
    for i in range(0, len(contact_ids), 500):
        rows = conn.execute(
            select(CC.c.contact_id, func.max(CC.c.last_at))
            # By the contacts' key alone: they are this organisation's (its deals'), and naming
            # org_id let SQLite walk the whole organisation through ix_contactcolleague_org_user
            # (bench/day.py at 700,000 interactions: 33 ms a day, against about 1 ms by key).
            .where(CC.c.contact_id.in_(contact_ids[i : i + 500]))
            .group_by(CC.c.contact_id)
        )
        last.update((c, _aware(at)) for c, at in rows if at is not None)
    quiet_since = now - timedelta(days=quiet_days)
    out = []
    for d in found:
        if d["close_date"] is not None and d["close_date"] < today:
            out.append({"id": d["id"], "name": d["name"], "reason": f"close date {d['close_date'].isoformat()} passed"})
            continue
        touches = [last[c] for c in d["contact_ids"] if c in last]
        touches.append(_aware(d["stage_changed_at"]))
        latest = max(touches)
        if latest < quiet_since:
            out.append({"id": d["id"], "name": d["name"], "reason": f"no activity for {(now - latest).days} days"})
    return out


def tasks_due(conn: Connection, org_id: int, user_id: int, until: datetime, limit: int = 50) -> list[dict]:
    rows = conn.execute(
        select(I.c.id, I.c.subject, I.c.due_at, P.c.contact_id, P.c.name, P.c.address)
        .join(P, (P.c.interaction_id == I.c.id) & (P.c.role == "about"))
        .where(
            I.c.org_id == org_id,
            I.c.kind == "task",
            I.c.author_id == user_id,
            I.c.done_at.is_(None),
            I.c.due_at < until,
        )
        .order_by(I.c.due_at, I.c.id)
        .limit(limit)
    ).all()
    return [
        {
            "id": r.id,
            "title": r.subject or "",
            "due_at": _aware(r.due_at),
            "contact_id": r.contact_id,
            "who": r.name or r.address,
        }
        for r in rows
    ]


def meetings(conn: Connection, org_id: int, user_id: int, start: datetime, end: datetime) -> list[dict]:
    """The rep's meetings between start and end, each with who is coming and their last interaction."""
    # The day's meetings of the whole organisation come from ix_interaction_meeting_time; whether
    # the rep is on one is a look-up by the meeting's id. A join on the rep's participant rows
    # instead read all of a busy rep's rows once per meeting (bench/day.py, 70,000 rows: 57 ms).
    on_it = (
        select(P.c.id)
        # No org_id here on purpose: the meeting is already the organisation's, and naming it
        # lets SQLite pick the rep's index (org_id, user_id, ...) over the meeting's few rows.
        .where(P.c.interaction_id == I.c.id, P.c.user_id == user_id)
        .exists()
    )
    mine = (
        select(I.c.id, I.c.subject, I.c.occurred_at, I.c.ends_at, I.c.location)
        .where(
            on_it,
            I.c.org_id == org_id,  # leads ix_interaction_meeting_time
            I.c.kind == "meeting",
            I.c.occurred_at >= start,
            I.c.occurred_at < end,
            func.coalesce(I.c.status, "confirmed") != "cancelled",
        )
        .order_by(I.c.occurred_at, I.c.id)
        .limit(50)
    )
    found = conn.execute(mine).all()
    ids = [m.id for m in found]
    people: dict[int, list[dict]] = {}
    if ids:
        for r in conn.execute(
            select(P.c.interaction_id, P.c.name, P.c.address, P.c.contact_id, P.c.user_id, S.c.last_email_at)
            .outerjoin(S, S.c.contact_id == P.c.contact_id)
            .where(P.c.interaction_id.in_(ids))
            .order_by(P.c.interaction_id, P.c.id)
        ):
            if r.user_id is not None:
                continue
            people.setdefault(r.interaction_id, []).append(
                {
                    "name": r.name or r.address,
                    "address": r.address,
                    "contact_id": r.contact_id,
                    "last_interaction_at": _aware(r.last_email_at),
                }
            )
    return [
        {
            "id": m.id,
            "subject": m.subject or "",
            "starts_at": _aware(m.occurred_at),
            "ends_at": _aware(m.ends_at),
            "location": m.location,
            "attendees": people.get(m.id, []),
        }
        for m in found
    ]


def my_day(conn: Connection, org_id: int, user_id: int, now: datetime | None = None) -> dict:
    now = now or utcnow()
    cal = followups.calendar_of(conn, org_id, user_id)
    today_end = followups.end_of_local_day(now, cal)
    tomorrow_end = followups.end_of_local_day(now, cal, days=1)
    today_start = followups.end_of_local_day(now, cal, days=-1)
    u = User.__table__
    digest = conn.execute(select(u.c.digest_enabled, u.c.digest_hour).where(u.c.id == user_id)).first()
    return {
        "now": now,
        "timezone": cal.tz,
        "digest_hour": digest.digest_hour if digest is not None and digest.digest_enabled else None,
        "followups": followups.due(conn, org_id, user_id, now),
        "tasks": tasks_due(conn, org_id, user_id, today_end),
        "meetings_today": meetings(conn, org_id, user_id, today_start, today_end),
        "meetings_tomorrow": meetings(conn, org_id, user_id, today_end, tomorrow_end),
        "deals": deals_needing_attention(conn, org_id, user_id, now),
    }
