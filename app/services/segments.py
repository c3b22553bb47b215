"""Saved segments: a filter over contacts or companies, saved by name, private to its author or
shared with the organisation, and the list queries that apply a filter (the console list, the API,
CSV and vCard exports).

A filter is cleaned once (`clean_filters`, Invalid naming the field at fault) and stored cleaned.
A page of results is one statement (the filter, the company and the last interaction as columns)
plus, when the page shows relationship strength, one grouped statement for the whole page: never a
query per row. Every statement is scoped to the caller's organisation.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import String, and_, cast, delete, exists, func, insert, or_, select, true, update
from sqlalchemy.engine import Connection

from app.models import (
    Company,
    Contact,
    ContactAddress,
    Deal,
    DealContact,
    Interaction,
    Participant,
    PipelineStage,
    Segment,
    User,
)
from app.models.base import utcnow
from app.services import audit, deals, strength
from app.services.actor import Actor, authorise, changing
from app.services.errors import Forbidden, Invalid, NotFound
from app.services.people import STAGES, clean_tags

C, CA, K, P, I = (
    Contact.__table__,
    ContactAddress.__table__,
    Company.__table__,
    Participant.__table__,
    Interaction.__table__,
)
D, DC, PS, SEG, U = Deal.__table__, DealContact.__table__, PipelineStage.__table__, Segment.__table__, User.__table__

ENTITIES = ("contacts", "companies")
FILTER_KEYS = (
    "tags",  # every one of these tags (a company: one of its contacts has them all)
    "stage",  # one of these lifecycle stages
    "owner_id",  # this owner (user id), or 0 for contacts nobody owns
    "domain",  # the company's domain, or the address's domain (subdomains count)
    "last_before",  # last email or meeting before this day (never: counts as before)
    "last_after",  # last email or meeting on or after this day
    "min_strength",  # relationship strength 0-100 (app/services/strength.py), inclusive
    "max_strength",
    "has_open_deal",  # true: in a deal of an open stage; false: in none
    "q",  # name or address prefix
)
MAX_NAME = 100
PAGE_MAX = 500


# -- filters ----------------------------------------------------------------------------------------


def _day(field: str, value) -> str:
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return value.isoformat()
    try:
        return date.fromisoformat(str(value).strip()).isoformat()
    except ValueError:
        raise Invalid(f"{field} must be a day written YYYY-MM-DD", field=field) from None


def _int_in(field: str, value, low: int, high: int) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise Invalid(f"{field} must be a whole number", field=field) from None
    if not low <= number <= high:
        raise Invalid(f"{field} must be between {low} and {high}", field=field)
    return number


def _bool(field: str, value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise Invalid(f"{field} must be true or false", field=field)


def _list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in (p.strip() for p in value.replace(";", ",").split(",")) if v]
    return [str(v).strip() for v in value if str(v).strip()]


def clean_filters(raw: dict | None) -> dict:
    """The filter as stored: unknown keys, bad days, strengths out of range and unknown stages are
    refused with the field named; empty values are dropped."""
    out: dict = {}
    for key, value in (raw or {}).items():
        if key not in FILTER_KEYS:
            raise Invalid(f"unknown filter {key!r}; filters are {', '.join(FILTER_KEYS)}", field=key)
        if value is None or value == "" or value == []:
            continue
        if key == "tags":
            tags = clean_tags(_list(value))
            if tags:
                out["tags"] = tags
        elif key == "stage":
            stages = [s.lower() for s in _list(value)]
            bad = [s for s in stages if s not in STAGES]
            if bad:
                raise Invalid(f"stage must be among {', '.join(STAGES)}", field="stage")
            out["stage"] = sorted(set(stages), key=STAGES.index)
        elif key == "owner_id":
            out["owner_id"] = _int_in("owner_id", value, 0, 2**31 - 1)
        elif key == "domain":
            domain = str(value).strip().lower().lstrip("@").rstrip(".")
            if not domain or len(domain) > 253 or any(ch in domain for ch in " /@%_\\"):
                raise Invalid("domain must be a domain name such as example.com", field="domain")
            out["domain"] = domain
        elif key in ("last_before", "last_after"):
            out[key] = _day(key, value)
        elif key in ("min_strength", "max_strength"):
            out[key] = _int_in(key, value, 0, 100)
        elif key == "has_open_deal":
            out["has_open_deal"] = _bool(key, value)
        elif key == "q":
            q = " ".join(str(value).split()).lower()[:200]
            if q:
                out["q"] = q
    if "min_strength" in out and "max_strength" in out and out["min_strength"] > out["max_strength"]:
        raise Invalid("min_strength is above max_strength", field="min_strength")
    if "last_before" in out and "last_after" in out and out["last_after"] >= out["last_before"]:
        raise Invalid("last_after must be before last_before", field="last_after")
    return out


def _clean_entity(entity: str) -> str:
    if entity not in ENTITIES:
        raise Invalid("entity must be contacts or companies", field="entity")
    return entity


def _start_of(day: str) -> datetime:
    return datetime.combine(date.fromisoformat(day), time.min, tzinfo=timezone.utc)


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# -- the list queries -------------------------------------------------------------------------------


def _last_contact(org_id: int, now: datetime):
    """The contact's latest email or meeting up to now (notes and tasks are `about` rows), read from
    the (org_id, contact_id, occurred_at) index as a correlated scalar."""
    return (
        select(func.max(P.c.occurred_at))
        .where(P.c.org_id == org_id, P.c.contact_id == C.c.id, P.c.role != "about", P.c.occurred_at <= now)
        .scalar_subquery()
    )


def _last_company(org_id: int, now: datetime):
    return (
        select(func.max(P.c.occurred_at))
        .where(P.c.org_id == org_id, P.c.company_id == K.c.id, P.c.role != "about", P.c.occurred_at <= now)
        .scalar_subquery()
    )


def _open_deal_of_contact(org_id: int, contact_col, seen):
    return exists(
        select(DC.c.deal_id)
        .select_from(DC.join(D, D.c.id == DC.c.deal_id).join(PS, PS.c.id == D.c.stage_id))
        .where(DC.c.org_id == org_id, DC.c.contact_id == contact_col, D.c.org_id == org_id, PS.c.kind == "open", seen)
    )


def _open_deal_of_company(org_id: int, seen):
    by_company = exists(
        select(D.c.id)
        .select_from(D.join(PS, PS.c.id == D.c.stage_id))
        .where(D.c.org_id == org_id, D.c.company_id == K.c.id, PS.c.kind == "open", seen)
    )
    c2 = C.alias("c2")
    by_contact = exists(
        select(c2.c.id).where(
            c2.c.org_id == org_id, c2.c.company_id == K.c.id, _open_deal_of_contact(org_id, c2.c.id, seen)
        )
    )
    return or_(by_company, by_contact)


def _tags_match(column, tags: list[str]):
    """Every tag present. Tags are a JSON list: matched as the quoted string inside its text, which
    is exact for a whole tag: a quote inside a tag is escaped in both the needle and the stored text."""
    conds = []
    for tag in tags:
        needle = json.dumps(tag)  # "tag" with JSON escapes, as stored
        conds.append(func.lower(cast(column, String)).like("%" + _like_prefix(needle.lower())[:-1] + "%", escape="\\"))
    return and_(*conds)


def _domain_match(column, domain: str):
    return or_(column == domain, column.like("%." + _like_prefix(domain)[:-1], escape="\\"))


def _contact_where(org_id: int, f: dict, last, now: datetime, seen) -> list:
    where = [C.c.org_id == org_id]
    if "tags" in f:
        where.append(_tags_match(C.c.tags, f["tags"]))
    if "stage" in f:
        where.append(C.c.stage.in_(f["stage"]))
    if "owner_id" in f:
        where.append(C.c.owner_id.is_(None) if f["owner_id"] == 0 else C.c.owner_id == f["owner_id"])
    if "domain" in f:
        k = K.alias("k_d")  # the page's own company join must not correlate this
        by_company = exists(
            select(k.c.id).where(k.c.id == C.c.company_id, k.c.org_id == org_id, _domain_match(k.c.domain, f["domain"]))
        )
        ca = CA.alias("ca_d")
        by_address = exists(
            select(ca.c.id).where(
                ca.c.org_id == org_id,
                ca.c.contact_id == C.c.id,
                or_(
                    ca.c.address.like("%@" + _like_prefix(f["domain"])[:-1], escape="\\"),
                    ca.c.address.like("%." + _like_prefix(f["domain"])[:-1], escape="\\"),
                ),
            )
        )
        where.append(or_(by_company, by_address))
    if "last_before" in f:
        where.append(or_(last.is_(None), last < _start_of(f["last_before"])))
    if "last_after" in f:
        where.append(last >= _start_of(f["last_after"]))
    if "has_open_deal" in f:
        deal = _open_deal_of_contact(org_id, C.c.id, seen)
        where.append(deal if f["has_open_deal"] else ~deal)
    if "q" in f:
        pattern = _like_prefix(f["q"])
        where.append(or_(C.c.search_name.like(pattern, escape="\\"), C.c.primary_email.like(pattern, escape="\\")))
    return where


def _company_where(org_id: int, f: dict, last, now: datetime, seen) -> list:
    where = [K.c.org_id == org_id]
    people = [C.c.org_id == org_id, C.c.company_id == K.c.id]
    if "tags" in f:
        people.append(_tags_match(C.c.tags, f["tags"]))
    if "stage" in f:
        people.append(C.c.stage.in_(f["stage"]))
    if "owner_id" in f:
        people.append(C.c.owner_id.is_(None) if f["owner_id"] == 0 else C.c.owner_id == f["owner_id"])
    if len(people) > 2:
        where.append(exists(select(C.c.id).where(*people)))
    if "domain" in f:
        where.append(_domain_match(K.c.domain, f["domain"]))
    if "last_before" in f:
        where.append(or_(last.is_(None), last < _start_of(f["last_before"])))
    if "last_after" in f:
        where.append(last >= _start_of(f["last_after"]))
    if "has_open_deal" in f:
        deal = _open_deal_of_company(org_id, seen)
        where.append(deal if f["has_open_deal"] else ~deal)
    if "q" in f:
        pattern = _like_prefix(f["q"])
        where.append(or_(func.lower(K.c.name).like(pattern, escape="\\"), K.c.domain.like(pattern, escape="\\")))
    return where


def contact_strengths(conn: Connection, org_id: int, contact_ids: list[int], now: datetime) -> dict[int, dict]:
    """contact id -> strength (strength.py's score over everyone of ours), one grouped statement per
    500 contacts."""
    out: dict[int, dict] = {}
    since = now - timedelta(days=strength.WINDOW_DAYS)
    for i in range(0, len(contact_ids), 500):
        rows = conn.execute(
            select(
                P.c.contact_id, I.c.kind, I.c.direction, func.count(func.distinct(I.c.id)), func.max(I.c.occurred_at)
            )
            .select_from(P.join(I, I.c.id == P.c.interaction_id))
            .where(
                P.c.org_id == org_id,
                P.c.contact_id.in_(contact_ids[i : i + 500]),
                P.c.occurred_at >= since,
                P.c.occurred_at <= now,
                I.c.kind.in_(("email", "meeting")),
            )
            .group_by(P.c.contact_id, I.c.kind, I.c.direction)
        ).all()
        out.update(strength._fold(rows, now))
    return out


def _aware(value):
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def _contact_page(conn: Connection, org_id: int, f: dict, after_id: int, size: int, now: datetime, seen) -> list[dict]:
    last = _last_contact(org_id, now).label("last_at")
    rows = conn.execute(
        select(
            C.c.id,
            C.c.name,
            C.c.primary_email,
            C.c.title,
            C.c.honorific,
            C.c.name_suffix,
            C.c.phone,
            C.c.stage,
            C.c.tags,
            C.c.owner_id,
            C.c.company_id,
            K.c.name.label("company_name"),
            K.c.domain.label("company_domain"),
            U.c.email.label("owner_email"),
            last,
        )
        .select_from(C.outerjoin(K, K.c.id == C.c.company_id).outerjoin(U, U.c.id == C.c.owner_id))
        .where(*_contact_where(org_id, f, _last_contact(org_id, now), now, seen), C.c.id > after_id)
        .order_by(C.c.id)
        .limit(size)
    ).all()
    return [
        {
            "id": r.id,
            "name": r.name,
            "email": r.primary_email,
            "title": r.title,
            "honorific": r.honorific or "",
            "name_suffix": r.name_suffix or "",
            "phone": r.phone,
            "stage": r.stage,
            "tags": list(r.tags or []),
            "owner_id": r.owner_id,
            "owner_email": r.owner_email,
            "company": (
                {"id": r.company_id, "name": r.company_name, "domain": r.company_domain} if r.company_id else None
            ),
            "last_interaction_at": _aware(r.last_at),
        }
        for r in rows
    ]


def _company_page(conn: Connection, org_id: int, f: dict, after_id: int, size: int, now: datetime, seen) -> list[dict]:
    last = _last_company(org_id, now).label("last_at")
    people = select(func.count(C.c.id)).where(C.c.org_id == org_id, C.c.company_id == K.c.id).scalar_subquery()
    rows = conn.execute(
        select(K.c.id, K.c.name, K.c.domain, K.c.key_account, people.label("contacts"), last)
        .where(*_company_where(org_id, f, _last_company(org_id, now), now, seen), K.c.id > after_id)
        .order_by(K.c.id)
        .limit(size)
    ).all()
    return [
        {
            "id": r.id,
            "name": r.name,
            "domain": r.domain,
            "key_account": bool(r.key_account),
            "contacts": int(r.contacts or 0),
            "last_interaction_at": _aware(r.last_at),
        }
        for r in rows
    ]


def query(
    conn: Connection,
    org_id: int,
    entity: str,
    filters: dict,
    *,
    after_id: int = 0,
    limit: int = 50,
    now: datetime | None = None,
    viewer: Actor | None = None,
) -> dict:
    """One page of the contacts (or companies) matching a cleaned filter, by id, each with its
    strength. `next_after` is the id to continue after, None at the end.

    `viewer`: whose deals "has an open deal" looks at (None: every deal, the operator's view).
    Threat: where reps see only their own deals, the filter would otherwise tell a rep which
    contacts are in a colleague's open deal."""
    entity = _clean_entity(entity)
    seen = deals.visible_deals(conn, viewer) if viewer is not None else true()
    limit = _int_in("limit", limit, 1, PAGE_MAX)
    now = now or utcnow()
    page_of = _contact_page if entity == "contacts" else _company_page
    score_of = contact_strengths if entity == "contacts" else strength.companies
    wants_strength = "min_strength" in filters or "max_strength" in filters
    low, high = filters.get("min_strength", 0), filters.get("max_strength", 100)
    items: list[dict] = []
    cursor, more = after_id, True
    # A strength filter is applied to each fetched page in Python (strength is a score over the last
    # 90 days, not a column); pages are fetched until this one is full, each with its one grouped query.
    while more and len(items) < limit:
        size = limit if not wants_strength else max(limit * 2, 100)
        rows = page_of(conn, org_id, filters, cursor, size, now, seen)
        more = len(rows) == size
        if not rows:
            break
        scores = score_of(conn, org_id, [r["id"] for r in rows], now)
        for r in rows:
            cursor = r["id"]
            s = scores.get(r["id"]) or strength.score(0, 0, 0, None, now)
            r["strength"] = s["score"]
            r["strength_explanation"] = s["explanation"]
            if low <= s["score"] <= high:
                items.append(r)
                if len(items) == limit:
                    more = more or r is not rows[-1]
                    break
    next_after = items[-1]["id"] if items and more else None
    return {"entity": entity, "filters": filters, "items": items, "next_after": next_after}


# -- saved segments ---------------------------------------------------------------------------------


def _visible(actor: Actor):
    """Shared segments and the actor's own; the CLI operator's own are those it made (no owner)."""
    mine = SEG.c.owner_id.is_(None) if actor.user_id is None else SEG.c.owner_id == actor.user_id
    return or_(SEG.c.shared.is_(True), mine)


def _as_dict(row) -> dict:
    return {
        "id": row.id,
        "name": row.name,
        "entity": row.entity,
        "filters": dict(row.filters or {}),
        "shared": bool(row.shared),
        "owner_id": row.owner_id,
        "owner_email": getattr(row, "owner_email", None),
        "created_at": _aware(row.created_at),
        "updated_at": _aware(row.updated_at),
    }


def _select_visible(actor: Actor):
    return (
        select(SEG, U.c.email.label("owner_email"))
        .outerjoin(U, U.c.id == SEG.c.owner_id)
        .where(SEG.c.org_id == actor.org_id, _visible(actor))
    )


def list_segments(conn: Connection, actor: Actor, entity: str | None = None) -> list[dict]:
    query_ = _select_visible(actor).order_by(func.lower(SEG.c.name), SEG.c.id)
    if entity:
        query_ = query_.where(SEG.c.entity == _clean_entity(entity))
    return [_as_dict(r) for r in conn.execute(query_)]


def get_segment(conn: Connection, actor: Actor, segment_id: int) -> dict:
    row = conn.execute(_select_visible(actor).where(SEG.c.id == segment_id)).first()
    if row is None:  # another organisation's, or someone else's private one: the same answer
        raise NotFound("no such segment")
    return _as_dict(row)


def find_segment(conn: Connection, actor: Actor, ref: str) -> dict:
    """By id or by exact name (the CLI's argument)."""
    if str(ref).isdigit():
        return get_segment(conn, actor, int(ref))
    rows = conn.execute(_select_visible(actor).where(SEG.c.name == str(ref))).all()
    if not rows:
        raise NotFound(f"no segment named {ref!r}")
    if len(rows) > 1:
        raise Invalid(f"several segments are named {ref!r}: give its id", field="segment")
    return _as_dict(rows[0])


def _clean_name(name: str) -> str:
    name = " ".join(str(name or "").split())
    if not name:
        raise Invalid("a segment needs a name", field="name")
    if len(name) > MAX_NAME:
        raise Invalid(f"a segment name has at most {MAX_NAME} characters", field="name")
    return name


def create_segment(
    rt, actor: Actor, *, name: str, entity: str = "contacts", filters: dict, shared: bool = False
) -> dict:
    """Save a filter by name: private to its author unless shared (the operator's are always shared,
    there being no one to keep them private for)."""
    name, entity, filters = _clean_name(name), _clean_entity(entity), clean_filters(filters)
    shared = bool(shared) or actor.user_id is None
    with changing(rt.engine, actor, admin=False) as conn:
        now = utcnow()
        segment_id = conn.execute(
            insert(SEG).values(
                org_id=actor.org_id,
                owner_id=actor.user_id,
                name=name,
                entity=entity,
                filters=filters,
                shared=shared,
                created_at=now,
                updated_at=now,
            )
        ).inserted_primary_key[0]
        audit.record(
            conn,
            actor.org_id,
            actor.user_id,
            "segment.create",
            f"segment:{segment_id}",
            {"name": name, "shared": shared},
        )
        return get_segment(conn, actor, segment_id)


def _editable(conn: Connection, actor: Actor, segment_id: int) -> dict:
    seg = get_segment(conn, actor, segment_id)
    if seg["owner_id"] != actor.user_id and actor.role != "admin":
        raise Forbidden("only its author or an admin may change a shared segment")
    return seg


def update_segment(rt, actor: Actor, segment_id: int, changes: dict) -> dict:
    values: dict = {}
    for key, value in changes.items():
        if key == "name":
            values["name"] = _clean_name(value)
        elif key == "filters":
            values["filters"] = clean_filters(value)
        elif key == "shared":
            values["shared"] = _bool("shared", value)
        else:
            raise Invalid(f"{key} cannot be changed", field=key)
    with changing(rt.engine, actor, admin=False) as conn:
        seg = _editable(conn, actor, segment_id)
        if values.get("shared") is False and seg["owner_id"] != actor.user_id:
            raise Forbidden("only its author may make a segment private again", field="shared")
        if values:
            conn.execute(
                update(SEG)
                .where(SEG.c.id == segment_id, SEG.c.org_id == actor.org_id)
                .values(**values, updated_at=utcnow())
            )
            audit.record(
                conn, actor.org_id, actor.user_id, "segment.update", f"segment:{segment_id}", {"fields": sorted(values)}
            )
        return get_segment(conn, actor, segment_id)


def delete_segment(rt, actor: Actor, segment_id: int) -> None:
    with changing(rt.engine, actor, admin=False) as conn:
        seg = _editable(conn, actor, segment_id)
        conn.execute(delete(SEG).where(SEG.c.id == segment_id, SEG.c.org_id == actor.org_id))
        audit.record(
            conn, actor.org_id, actor.user_id, "segment.delete", f"segment:{segment_id}", {"name": seg["name"]}
        )


def run_segment(
    conn: Connection, actor: Actor, segment_id: int, *, after_id: int = 0, limit: int = 50, now: datetime | None = None
) -> dict:
    """A saved segment's page, checked visible to the actor (who must still be active)."""
    authorise(conn, actor, admin=False)
    seg = get_segment(conn, actor, segment_id)
    page = query(
        conn, actor.org_id, seg["entity"], seg["filters"], after_id=after_id, limit=limit, now=now, viewer=actor
    )
    return {**page, "segment": seg}


__all__ = [
    "ENTITIES",
    "FILTER_KEYS",
    "clean_filters",
    "contact_strengths",
    "create_segment",
    "delete_segment",
    "find_segment",
    "get_segment",
    "list_segments",
    "query",
    "run_segment",
    "update_segment",
]
