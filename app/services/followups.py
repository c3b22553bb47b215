"""The follow-up queue a rep works through (computed by sync/followups.py), key accounts,
and the rep's working calendar that due dates are counted in."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from app.db import write_transaction
from app.models import Company, Contact, FollowUp, Interaction, User
from app.models.base import utcnow
from app.services import audit
from app.services.actor import Actor, changing
from app.services.errors import Forbidden, Invalid, NotFound
from sync import followups as engine_rules

F, I, C, K, U = FollowUp.__table__, Interaction.__table__, Contact.__table__, Company.__table__, User.__table__
SNOOZES = {"1d": timedelta(days=1), "1w": timedelta(days=7)}
KIND_WORDS = {"waiting": "Waiting on them", "owe": "You owe a reply", "quiet": "Going quiet"}


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def calendar_of(conn: Connection, org_id: int, user_id: int) -> engine_rules.Calendar:
    return engine_rules.load_settings(conn, org_id, [user_id]).calendars.get(user_id, engine_rules.Calendar())


def end_of_local_day(now: datetime, cal: engine_rules.Calendar, days: int = 0) -> datetime:
    local = now.astimezone(cal.zone())
    end = datetime.combine(local.date() + timedelta(days=days + 1), datetime.min.time(), cal.zone())
    return end.astimezone(timezone.utc)


def due(conn: Connection, org_id: int, user_id: int, now: datetime | None = None, *, limit: int = 200) -> list[dict]:
    """Open follow-ups of one rep due by the end of their day (overdue first)."""
    now = _aware(now) or utcnow()
    horizon = end_of_local_day(now, calendar_of(conn, org_id, user_id))
    rows = conn.execute(
        select(
            F.c.id,
            F.c.kind,
            F.c.thread_key,
            F.c.since,
            F.c.due_at,
            F.c.address,
            F.c.contact_id,
            F.c.company_id,
            F.c.interaction_id,
            I.c.subject,
            C.c.name.label("contact_name"),
            K.c.name.label("company_name"),
        )
        .outerjoin(I, I.c.id == F.c.interaction_id)
        .outerjoin(C, C.c.id == F.c.contact_id)
        .outerjoin(K, K.c.id == F.c.company_id)
        .where(F.c.org_id == org_id, F.c.user_id == user_id, F.c.status == "open", F.c.due_at < horizon)
        .order_by(F.c.due_at, F.c.id)
        .limit(limit)
    ).all()
    return [
        {
            "id": r.id,
            "kind": r.kind,
            "label": KIND_WORDS.get(r.kind, r.kind),
            "subject": r.subject,
            "who": r.contact_name or r.company_name or r.address or "",
            "address": r.address,
            "contact_id": r.contact_id,
            "company_id": r.company_id,
            "interaction_id": r.interaction_id,
            "since": _aware(r.since),
            "due_at": _aware(r.due_at),
            "overdue": _aware(r.due_at) < now,
        }
        for r in rows
    ]


def sweep_now(rt, org_id: int) -> dict[str, int]:
    """Run the scheduler's time-based rules once (what the 5-minute job does), e.g. after the
    demo's import, so "going quiet" shows before the job's first run."""
    with write_transaction(rt.engine) as conn:
        return engine_rules.sweep(conn, org_id)


def user_id_by_email(conn: Connection, org_id: int, email: str) -> int:
    uid = conn.execute(select(U.c.id).where(U.c.org_id == org_id, U.c.email == email.strip().lower())).scalar()
    if uid is None:
        raise NotFound(f"no user {email!r} in this organisation", field="rep")
    return uid


def _own(conn: Connection, actor: Actor, followup_id: int):
    row = conn.execute(
        select(F.c.id, F.c.user_id, F.c.status).where(F.c.id == followup_id, F.c.org_id == actor.org_id)
    ).first()
    if row is None:
        raise NotFound("no such follow-up", field="followup_id")
    if actor.role != "admin" and row.user_id != actor.user_id:
        raise Forbidden("this follow-up is another rep's")
    return row


def snooze(rt, actor: Actor, followup_id: int, *, span: str = "1d", now: datetime | None = None) -> dict:
    """Hide a follow-up for a day or a week; it comes back due then (unless a reply closes it)."""
    if span not in SNOOZES:
        raise Invalid(f"snooze must be one of {', '.join(SNOOZES)}", field="span")
    until = (_aware(now) or utcnow()) + SNOOZES[span]
    with changing(rt.engine, actor, admin=False) as conn:
        _own(conn, actor, followup_id)
        conn.execute(
            update(F)
            .where(F.c.id == followup_id)
            .values(status="open", snoozed_until=until, due_at=until, updated_at=utcnow())
        )
        audit.record(conn, actor.org_id, actor.user_id, "followup.snooze", str(followup_id), {"span": span})
    return {"id": followup_id, "status": "open", "due_at": until}


def dismiss(rt, actor: Actor, followup_id: int) -> dict:
    """Done: the follow-up closes until a newer message in its thread opens it again."""
    with changing(rt.engine, actor, admin=False) as conn:
        _own(conn, actor, followup_id)
        conn.execute(
            update(F)
            .where(F.c.id == followup_id)
            .values(status="dismissed", closed_reason="done", closed_at=utcnow(), updated_at=utcnow())
        )
        audit.record(conn, actor.org_id, actor.user_id, "followup.dismiss", str(followup_id))
    return {"id": followup_id, "status": "dismissed", "due_at": None}


def set_key_account(rt, actor: Actor, *, kind: str, target_id: int, key_account: bool = True) -> dict:
    """Mark a contact or a company a key account: it is "going quiet" after the organisation's quiet days."""
    table = {"contact": C, "company": K}.get(kind)
    if table is None:
        raise Invalid("kind must be contact or company", field="kind")
    with changing(rt.engine, actor, admin=False) as conn:
        found = conn.execute(
            update(table).where(table.c.id == target_id, table.c.org_id == actor.org_id).values(key_account=key_account)
        ).rowcount
        if not found:
            raise NotFound(f"no such {kind}", field="target_id")
        audit.record(conn, actor.org_id, actor.user_id, "key_account.set", f"{kind}:{target_id}", {"on": key_account})
    return {"kind": kind, "id": target_id, "key_account": key_account}


def set_calendar(
    rt,
    actor: Actor,
    user_id: int,
    *,
    tz: str | None = None,
    working_days: list[int] | None = None,
    start_hour: int | None = None,
    end_hour: int | None = None,
    digest: bool | None = None,
    digest_hour: int | None = None,
) -> dict:
    """A rep's time zone, working days and hours (and the daily digest): their own, or anyone's for an admin."""
    values: dict = {}
    if tz is not None:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise Invalid(f"unknown time zone {tz!r}", field="timezone") from None
        values["timezone"] = tz
    if working_days is not None:
        if not working_days or any(not isinstance(d, int) or not 0 <= d <= 6 for d in working_days):
            raise Invalid("working days are weekday numbers 0 (Monday) to 6, at least one", field="working_days")
        values["working_days"] = sorted(set(working_days))
    for name, value in (("work_start_hour", start_hour), ("work_end_hour", end_hour)):
        if value is not None:
            if not 0 <= value <= 24:
                raise Invalid("hours are 0 to 24", field=name)
            values[name] = value
    if digest is not None:
        values["digest_enabled"] = bool(digest)
    if digest_hour is not None:
        if not 0 <= digest_hour <= 23:
            raise Invalid("the digest hour is 0 to 23 (the rep's local time)", field="digest_hour")
        values["digest_hour"] = digest_hour
    with changing(rt.engine, actor, admin=False) as conn:
        if actor.role != "admin" and user_id != actor.user_id:
            raise Forbidden("a rep sets only their own calendar")
        row = conn.execute(
            select(U.c.work_start_hour, U.c.work_end_hour).where(U.c.id == user_id, U.c.org_id == actor.org_id)
        ).first()
        if row is None:
            raise NotFound("no such user", field="user_id")
        start, end = values.get("work_start_hour", row[0]), values.get("work_end_hour", row[1])
        if start >= end:
            raise Invalid("the working day must end after it starts", field="work_end_hour")
        if values:
            conn.execute(update(U).where(U.c.id == user_id).values(**values))
        audit.record(
            conn, actor.org_id, actor.user_id, "user.calendar", str(user_id), {k: str(v) for k, v in values.items()}
        )
        out = conn.execute(
            select(
                U.c.timezone,
                U.c.working_days,
                U.c.work_start_hour,
                U.c.work_end_hour,
                U.c.digest_enabled,
                U.c.digest_hour,
            ).where(U.c.id == user_id)
        ).one()
    return {
        "user_id": user_id,
        "timezone": out[0],
        "working_days": list(out[1]),
        "work_start_hour": out[2],
        "work_end_hour": out[3],
        "digest_enabled": bool(out[4]),
        "digest_hour": out[5],
    }
