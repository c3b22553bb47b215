"""What reps add to a contact's timeline from the sidebar: notes, follow-up
tasks (and marking them done), and an email logged by hand when its mailbox is
not synced.

Notes and tasks are interactions (kind note/task, message key "note:" + a
random id) with one participant row, role "about", carrying the contact, its
company and occurred_at, so they sit on the contact's and the company's
timeline like any email. Everything is scoped to the caller's organisation.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from app.models import Contact, Interaction, Participant, User
from app.models.base import utcnow
from app.services import audit, timeline
from app.services.actor import Actor, changing
from app.services.errors import Invalid, NotFound
from connectors.base import MessageRecord
from connectors.mailparse import MAX_ADDRESSES, message_ids
from sync import addresses as addr, exclusions

C, I, P, U = Contact.__table__, Interaction.__table__, Participant.__table__, User.__table__
MAX_BODY = 20_000
MAX_SUBJECT = 500
SNIPPET_CHARS = 200


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1] + "…"


def item(conn: Connection, org_id: int, interaction_id: int) -> dict | None:
    """One timeline item in the lookup's item shape (timeline.interactions plus the
    note/task/meeting fields, whichever of them the timeline service does not fill yet)."""
    found = timeline.interactions(conn, org_id, [interaction_id])
    if not found:
        return None
    out = dict(found[0])
    row = conn.execute(
        select(
            I.c.body,
            I.c.due_at,
            I.c.done_at,
            I.c.author_id,
            I.c.ends_at,
            I.c.location,
            I.c.status,
            U.c.name.label("author_name"),
            U.c.email.label("author_email"),
        )
        .outerjoin(U, U.c.id == I.c.author_id)
        .where(I.c.id == interaction_id, I.c.org_id == org_id)
    ).first()
    out.setdefault("body", row.body)
    out.setdefault("due_at", _aware(row.due_at))
    out.setdefault("done_at", _aware(row.done_at))
    out.setdefault("ends_at", _aware(row.ends_at))
    out.setdefault("location", row.location)
    out.setdefault("status", row.status)
    out.setdefault(
        "author", {"id": row.author_id, "name": row.author_name, "email": row.author_email} if row.author_id else None
    )
    return out


def _contact(conn: Connection, org_id: int, contact_id: int):
    row = conn.execute(
        select(C.c.id, C.c.name, C.c.primary_email, C.c.company_id).where(C.c.id == contact_id, C.c.org_id == org_id)
    ).first()
    if row is None:
        raise NotFound("no such contact")
    return row


def _add(
    conn: Connection,
    org_id: int,
    author_id: int,
    contact_id: int,
    *,
    kind: str,
    subject: str | None,
    body: str | None,
    due_at: datetime | None = None,
) -> dict:
    contact = _contact(conn, org_id, contact_id)
    now = utcnow()
    key = f"note:{uuid.uuid4().hex}"
    text = body or subject or ""
    iid = conn.execute(
        insert(I)
        .values(
            org_id=org_id,
            kind=kind,
            message_key=key,
            occurred_at=now,
            direction="out",
            subject=subject,
            snippet=_snippet(text) if text else None,
            thread_key=key,
            from_address=None,
            body=body,
            author_id=author_id,
            due_at=_aware(due_at),
            created_at=now,
        )
        .returning(I.c.id)
    ).scalar_one()
    conn.execute(
        insert(P).values(
            org_id=org_id,
            interaction_id=iid,
            occurred_at=now,
            address=contact.primary_email,
            name=contact.name or None,
            role="about",
            contact_id=contact.id,
            company_id=contact.company_id,
            user_id=None,
        )
    )
    return item(conn, org_id, iid)


def add_note(rt, actor: Actor, contact_id: int, body: str) -> dict:
    body = (body or "").strip()
    if not body:
        raise Invalid("the note is empty", field="body")
    if len(body) > MAX_BODY:
        raise Invalid(f"a note holds at most {MAX_BODY} characters", field="body")
    with changing(rt.engine, actor, admin=False) as conn:
        out = _add(conn, actor.org_id, actor.user_id, contact_id, kind="note", subject=None, body=body)
        audit.record(conn, actor.org_id, actor.user_id, "note.add", f"contact:{contact_id}", {"note_id": out["id"]})
        return out


def add_task(rt, actor: Actor, contact_id: int, title: str, due_at: datetime | None, body: str | None = None) -> dict:
    title = " ".join((title or "").split())
    if not title:
        raise Invalid("the task needs a title", field="title")
    if len(title) > MAX_SUBJECT:
        raise Invalid(f"a task title holds at most {MAX_SUBJECT} characters", field="title")
    body = (body or "").strip() or None
    if body and len(body) > MAX_BODY:
        raise Invalid(f"a task description holds at most {MAX_BODY} characters", field="body")
    with changing(rt.engine, actor, admin=False) as conn:
        out = _add(conn, actor.org_id, actor.user_id, contact_id, kind="task", subject=title, body=body, due_at=due_at)
        audit.record(conn, actor.org_id, actor.user_id, "task.add", f"contact:{contact_id}", {"task_id": out["id"]})
        return out


def update_task(
    rt,
    actor: Actor,
    task_id: int,
    *,
    done: bool | None = None,
    title: str | None = None,
    due_at: datetime | None = None,
    clear_due: bool = False,
) -> dict:
    with changing(rt.engine, actor, admin=False) as conn:
        org_id = actor.org_id
        row = conn.execute(
            select(I.c.id, I.c.done_at).where(I.c.id == task_id, I.c.org_id == org_id, I.c.kind == "task")
        ).first()
        if row is None:
            raise NotFound("no such task")
        values: dict = {}
        if done is not None:
            values["done_at"] = (row.done_at or utcnow()) if done else None
        if title is not None:
            title = " ".join(title.split())
            if not title:
                raise Invalid("the task needs a title", field="title")
            values["subject"] = title[:MAX_SUBJECT]
            values["snippet"] = _snippet(title)
        if due_at is not None or clear_due:
            values["due_at"] = _aware(due_at)
        if values:
            conn.execute(update(I).where(I.c.id == task_id, I.c.org_id == org_id).values(**values))
            audit.record(conn, org_id, actor.user_id, "task.update", f"task:{task_id}", {"fields": sorted(values)})
        return item(conn, org_id, task_id)


# -- logging an email by hand -----------------------------------------------------------


def message_key(internet_message_id: str) -> str:
    """The key a sync of the same message would give it (connectors/mailparse.py):
    the first <id> inside the header value, without the brackets."""
    value = (internet_message_id or "").strip()
    ids = message_ids(value)
    if ids:
        return ids[0][:500]
    if value and not any(c.isspace() or c in "<>" for c in value):
        return value[:500]  # some clients hand the id over without its brackets
    raise Invalid("the message has no usable Internet message id", field="internet_message_id")


def _pairs(people: list[dict] | None) -> list[tuple[str, str]]:
    return [(str(p.get("name") or ""), str(p.get("email") or "")) for p in (people or []) if p.get("email")]


def _not_kept(fields: list[list[tuple[str, str]]], kept: list[tuple[str, str]]) -> int:
    """Distinct valid addresses of the fields not among `kept` (what ingest would have dropped
    as no address is not counted either)."""
    everyone = {n for field in fields for _, a in field if (n := addr.normalise(a))}
    return len(everyone - {addr.normalise(a) for _, a in kept})


def log_email(
    rt,
    actor: Actor,
    *,
    internet_message_id: str,
    subject: str,
    sender: dict,
    to: list[dict],
    cc: list[dict],
    date: datetime,
    snippet: str | None = None,
) -> dict:
    """Put one email the rep is reading on the timeline, through the sync's own ingest,
    keyed by its Message-ID so a later sync of the same mail links to it instead of
    duplicating it. Returns {"interaction_id", "created", "reason"}."""
    from sync.engine import org_context
    from sync.ingest import MailboxContext, ingest

    key = message_key(internet_message_id)
    if not sender or not addr.normalise(str(sender.get("email") or "")):
        raise Invalid("the message has no valid sender", field="sender")
    to_all, cc_all = _pairs(to), _pairs(cc)
    kept_to, kept_cc = to_all[:MAX_ADDRESSES], cc_all[:MAX_ADDRESSES]  # as for synced mail
    record = MessageRecord(
        remote_id=f"manual:{key}"[:500],
        message_key=key,
        date=_aware(date) or utcnow(),
        from_=_pairs([sender]),
        to=kept_to,
        cc=kept_cc,
        bcc=[],
        subject=(subject or "")[:998],
        in_reply_to=None,
        references=[],
        snippet=_snippet(snippet) if snippet else None,
        recipients_not_kept=_not_kept([to_all, cc_all], _pairs([sender]) + kept_to + kept_cc),
    )
    with changing(rt.engine, actor, admin=False) as conn:
        org_id = actor.org_id
        exclusions.hold_to_apply(conn, org_id)  # first: see sync/exclusions.py
        user_email = conn.execute(select(U.c.email).where(U.c.id == actor.user_id)).scalar()
        existing = conn.execute(select(I.c.id).where(I.c.org_id == org_id, I.c.message_key == key)).scalar()
        org = org_context(conn, org_id, rt.box)
        # No mailbox and no folder: the rep logs it by hand, so no copy row is written.
        # The rep is the "owner" (named on the mail, or recorded as Bcc like a synced copy).
        mbx = MailboxContext(mailbox_id=None, folder_id=None, owner_id=actor.user_id, owner_address=user_email)
        result = ingest(conn, org, mbx, [record])
        iid = conn.execute(select(I.c.id).where(I.c.org_id == org_id, I.c.message_key == key)).scalar()
        reason = next(iter(result.skipped), None) if iid is None else None
        created = existing is None and iid is not None
        audit.record(
            conn,
            org_id,
            actor.user_id,
            "email.log",
            f"interaction:{iid}" if iid else "skipped",
            {"created": created, "reason": reason},
        )
        return {"interaction_id": iid, "created": created, "reason": reason}
