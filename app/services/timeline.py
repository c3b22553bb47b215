"""Reading the timeline: a person's card, summary and pages of interactions.

Every query takes the caller's organisation id; nothing here reads across
organisations. Timelines page by (occurred_at, interaction id), newest first,
straight off the participant indexes.
"""
from __future__ import annotations

import base64
from datetime import datetime, timezone

from sqlalchemy import and_, func, or_, select, tuple_
from sqlalchemy.engine import Connection

from app.models import Company, Contact, ContactAddress, Interaction, Participant, User
from sync.addresses import normalise

C, CA, CO = Contact.__table__, ContactAddress.__table__, Company.__table__
I, P, U = Interaction.__table__, Participant.__table__, User.__table__
MAX_PAGE = 100


class BadCursor(ValueError):
    pass


def encode_cursor(occurred_at: datetime, interaction_id: int) -> str:
    raw = f"{occurred_at.astimezone(timezone.utc).isoformat()}|{interaction_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, iid = raw.split("|")
        return datetime.fromisoformat(stamp), int(iid)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadCursor("invalid page cursor") from exc


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value


def contact_card(conn: Connection, org_id: int, contact_id: int) -> dict | None:
    row = conn.execute(select(C, CO.c.name.label("company_name"), CO.c.domain.label("company_domain"))
                       .outerjoin(CO, CO.c.id == C.c.company_id)
                       .where(C.c.id == contact_id, C.c.org_id == org_id)).mappings().first()
    if row is None:
        return None
    emails = [r[0] for r in conn.execute(select(CA.c.address).where(CA.c.contact_id == contact_id,
                                                                     CA.c.org_id == org_id).order_by(CA.c.id))]
    return {
        "id": row["id"], "name": row["name"], "email": row["primary_email"], "emails": emails,
        "title": row["title"], "phone": row["phone"], "stage": row["stage"], "tags": list(row["tags"] or []),
        "owner_id": row["owner_id"],
        "company": ({"id": row["company_id"], "name": row["company_name"], "domain": row["company_domain"]}
                    if row["company_id"] else None),
    }


def find_contact_id(conn: Connection, org_id: int, email: str) -> int | None:
    address = normalise(email)
    if address is None:
        return None
    return conn.execute(select(CA.c.contact_id).where(CA.c.org_id == org_id, CA.c.address == address)).scalar()


def summary(conn: Connection, org_id: int, contact_id: int) -> dict:
    base = and_(P.c.contact_id == contact_id, P.c.org_id == org_id)
    counts = conn.execute(
        select(I.c.kind, I.c.direction, func.count(func.distinct(I.c.id)), func.min(I.c.occurred_at),
               func.max(I.c.occurred_at))
        .select_from(P.join(I, I.c.id == P.c.interaction_id))
        .where(base).group_by(I.c.kind, I.c.direction)
    ).all()
    out = {"emails_in": 0, "emails_out": 0, "meetings": 0, "first_interaction_at": None, "last_interaction_at": None}
    for kind, direction, n, first, last in counts:
        if kind == "email":
            out["emails_in" if direction == "in" else "emails_out"] += n
        elif kind == "meeting":
            out["meetings"] += n
        first, last = _aware(first), _aware(last)
        if first and (out["first_interaction_at"] is None or first < out["first_interaction_at"]):
            out["first_interaction_at"] = first
        if last and (out["last_interaction_at"] is None or last > out["last_interaction_at"]):
            out["last_interaction_at"] = last
    mine = P.alias("mine")
    colleagues = conn.execute(
        select(U.c.id, U.c.name, U.c.email, func.count(func.distinct(mine.c.interaction_id)),
               func.max(mine.c.occurred_at))
        .select_from(P.join(mine, mine.c.interaction_id == P.c.interaction_id).join(U, U.c.id == mine.c.user_id))
        .where(base, mine.c.user_id.is_not(None))
        .group_by(U.c.id, U.c.name, U.c.email)
        .order_by(func.max(mine.c.occurred_at).desc())
    ).all()
    out["colleagues"] = [{"id": uid, "name": name, "email": email, "interactions": n, "last_interaction_at": _aware(last)}
                         for uid, name, email, n, last in colleagues]
    return out


def _page(conn: Connection, org_id: int, where, cursor: str | None, limit: int) -> dict:
    limit = max(1, min(limit, MAX_PAGE))
    query = select(P.c.interaction_id, P.c.occurred_at).where(P.c.org_id == org_id, where)
    if cursor:
        at, iid = decode_cursor(cursor)
        query = query.where(tuple_(P.c.occurred_at, P.c.interaction_id) < tuple_(at, iid))
    rows = conn.execute(query.order_by(P.c.occurred_at.desc(), P.c.interaction_id.desc()).limit(limit * 2 + 1)).all()
    ids: list[int] = []
    last = None
    for iid, at in rows:
        if iid not in ids:
            ids.append(iid)
            last = (at, iid)
        if len(ids) == limit + 1:
            break
    more = len(ids) > limit
    ids = ids[:limit]
    items = interactions(conn, org_id, ids)
    next_cursor = None
    if more and items:
        tail = items[-1]
        next_cursor = encode_cursor(tail["occurred_at"], tail["id"])
    elif len(rows) == limit * 2 + 1 and last:
        next_cursor = encode_cursor(_aware(last[0]), last[1])
    return {"items": items, "next_cursor": next_cursor}


def interactions(conn: Connection, org_id: int, ids: list[int]) -> list[dict]:
    if not ids:
        return []
    # By primary key only (an org_id condition here lures SQLite onto an org-wide
    # index); the organisation is checked on each row.
    rows = [r for r in conn.execute(select(I).where(I.c.id.in_(ids))).mappings().all() if r["org_id"] == org_id]
    # Filtering on interaction_id alone keeps the planner on the (interaction_id,
    # address) index; the organisation is checked on each row instead.
    people = [p for p in conn.execute(
        select(P.c.interaction_id, P.c.org_id, P.c.address, P.c.name, P.c.role, P.c.contact_id, P.c.user_id,
               U.c.name.label("uname"))
        .outerjoin(U, U.c.id == P.c.user_id)
        .where(P.c.interaction_id.in_(ids)).order_by(P.c.id)
    ).all() if p.org_id == org_id]
    by_id: dict[int, list] = {i: [] for i in ids}
    for p in people:
        by_id[p.interaction_id].append(p)
    order = {iid: n for n, iid in enumerate(ids)}
    out = []
    for r in sorted(rows, key=lambda r: order[r["id"]]):
        ps = by_id[r["id"]]
        sender = next((p for p in ps if p.role == "from"), None)
        out.append({
            "id": r["id"], "kind": r["kind"], "occurred_at": _aware(r["occurred_at"]), "direction": r["direction"],
            "subject": r["subject"], "snippet": r["snippet"], "thread_key": r["thread_key"],
            "sender": ({"address": sender.address, "name": sender.uname or sender.name} if sender else None),
            "colleagues": [{"id": p.user_id, "name": p.uname, "address": p.address} for p in ps if p.user_id],
            "participants": [{"address": p.address, "name": p.uname or p.name, "role": p.role,
                              "contact_id": p.contact_id} for p in ps if not p.user_id],
        })
    return out


def contact_timeline(conn: Connection, org_id: int, contact_id: int, cursor: str | None = None,
                     limit: int = 20) -> dict:
    return _page(conn, org_id, P.c.contact_id == contact_id, cursor, limit)


def company_timeline(conn: Connection, org_id: int, company_id: int, cursor: str | None = None,
                     limit: int = 20) -> dict:
    return _page(conn, org_id, P.c.company_id == company_id, cursor, limit)


def company(conn: Connection, org_id: int, company_id: int) -> dict | None:
    row = conn.execute(select(CO).where(CO.c.id == company_id, CO.c.org_id == org_id)).mappings().first()
    if row is None:
        return None
    contacts = conn.execute(select(C.c.id, C.c.name, C.c.primary_email, C.c.title)
                            .where(C.c.company_id == company_id, C.c.org_id == org_id)
                            .order_by(C.c.name, C.c.id).limit(200)).all()
    return {"id": row["id"], "name": row["name"], "domain": row["domain"],
            "contacts": [{"id": c.id, "name": c.name, "email": c.primary_email, "title": c.title} for c in contacts]}


def lookup(conn: Connection, org_id: int, email: str, limit: int = 20) -> dict | None:
    """Everything the sidebar shows for one address, in one call."""
    contact_id = find_contact_id(conn, org_id, email)
    if contact_id is None:
        return None
    card = contact_card(conn, org_id, contact_id)
    return {"contact": card, "summary": summary(conn, org_id, contact_id),
            "timeline": contact_timeline(conn, org_id, contact_id, None, limit)}


def search_contacts(conn: Connection, org_id: int, q: str, limit: int = 20) -> list[dict]:
    q = q.strip().lower()
    if not q:
        return []
    limit = max(1, min(limit, MAX_PAGE))
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    by_name = select(C.c.id).where(C.c.org_id == org_id, C.c.search_name.like(escaped, escape="\\"))
    by_email = select(CA.c.contact_id).where(CA.c.org_id == org_id, CA.c.address.like(escaped, escape="\\"))
    rows = conn.execute(
        select(C.c.id, C.c.name, C.c.primary_email, CO.c.name.label("company"))
        .outerjoin(CO, CO.c.id == C.c.company_id)
        .where(C.c.org_id == org_id, or_(C.c.id.in_(by_name.limit(limit)), C.c.id.in_(by_email.limit(limit))))
        .order_by(C.c.search_name, C.c.id).limit(limit)
    ).all()
    return [{"id": r.id, "name": r.name, "email": r.primary_email, "company": r.company} for r in rows]
