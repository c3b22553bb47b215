"""Contacts edited by reps from the sidebar: create, edit fields and tags, the
lifecycle stage, and "never log" for one rep.

Every function takes the caller's organisation id and touches nothing else;
an id from another organisation is simply "not found".
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from app.models import Contact, ContactAddress, User
from app.models.base import utcnow
from app.services import audit, timeline
from app.services.actor import Actor, changing
from app.services.errors import Conflict, Invalid, NotFound
from sync import addresses as addr, exclusions

C, CA, U = Contact.__table__, ContactAddress.__table__, User.__table__

# The lifecycle stages, in order: the one list the API, the sidebar and the docs use.
STAGES: tuple[str, ...] = ("lead", "qualified", "opportunity", "customer", "churned")
MAX_TAGS, MAX_TAG_CHARS = 20, 40
TEXT_LIMITS = {"name": 200, "title": 200, "phone": 50, "mobile": 50, "website": 200, "company_name": 200}
# Fields signatures fill in (sync/enrichment.py): a person's edit marks them typed, and a
# typed value is never replaced by a signature.
ENRICHED = ("title", "phone", "mobile", "website", "company_name")


def clean_stage(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    value = value.strip().lower()
    if value not in STAGES:
        raise Invalid(f"stage must be one of {', '.join(STAGES)}", field="stage")
    return value


def clean_tags(values: list[str]) -> list[str]:
    out: list[str] = []
    for raw in values:
        tag = " ".join(str(raw).split())[:MAX_TAG_CHARS]
        if tag and tag.lower() not in (t.lower() for t in out):
            out.append(tag)
    if len(out) > MAX_TAGS:
        raise Invalid(f"at most {MAX_TAGS} tags", field="tags")
    return out


def tags_cell(tags: list[str]) -> str:
    """The tags in one cell of a file: comma separated; a tag that holds a comma, a semicolon
    or a double quote is written in double quotes (a quote doubled), so that it comes back one."""

    def one(tag: str) -> str:
        return '"' + tag.replace('"', '""') + '"' if any(c in tag for c in ',;"') else tag

    return ", ".join(one(t) for t in tags)


def tags_from_cell(cell: str) -> list[str]:
    """A file's tags cell: separated by commas or semicolons (as spreadsheets and other CRMs
    write them), a tag in double quotes taken whole (as tags_cell writes one)."""
    tags, part, quoted, i = [], [], False, 0
    while i < len(cell):
        ch = cell[i]
        if quoted:
            if ch == '"' and cell[i + 1 : i + 2] == '"':
                part.append('"')
                i += 1
            elif ch == '"':
                quoted = False
            else:
                part.append(ch)
        elif ch == '"' and not "".join(part).strip():
            quoted, part = True, []
        elif ch in ",;":
            tags.append("".join(part))
            part = []
        else:
            part.append(ch)
        i += 1
    tags.append("".join(part))
    return [t.strip() for t in tags if t.strip()]


def _clean_text(field: str, value: str | None) -> str | None:
    if value is None:
        return None
    value = " ".join(value.split())
    return value[: TEXT_LIMITS[field]] or None


def _check_owner(conn: Connection, org_id: int, owner_id: int | None) -> None:
    if owner_id is None:
        return
    found = conn.execute(select(U.c.id).where(U.c.id == owner_id, U.c.org_id == org_id, U.c.active.is_(True))).first()
    if found is None:
        raise Invalid("the owner must be an active user of this organisation", field="owner_id")


def create_contact(
    rt,
    actor: Actor,
    *,
    email: str,
    name: str = "",
    title: str | None = None,
    phone: str | None = None,
    stage: str | None = None,
    tags: list[str] = (),
    owner_id: int | None = None,
) -> dict:
    """A new contact for an external address, with its company from the domain
    (as the sync makes them), linked to any mail already stored with that address.
    Returns its card."""
    with changing(rt.engine, actor, admin=False) as conn:
        exclusions.hold_to_apply(conn, actor.org_id)  # first: see sync/exclusions.py
        contact_id = _create_contact(
            conn,
            actor.org_id,
            actor.user_id,
            box=rt.box,
            email=email,
            name=name,
            title=title,
            phone=phone,
            stage=stage,
            tags=tags,
            owner_id=owner_id,
        )
        return timeline.contact_card(conn, actor.org_id, contact_id)


def _create_contact(
    conn: Connection,
    org_id: int,
    actor_id: int | None,
    *,
    box,
    email: str,
    name: str,
    title: str | None,
    phone: str | None,
    stage: str | None,
    tags: list[str],
    owner_id: int | None,
) -> int:
    from sync import stats
    from sync.engine import org_context
    from sync.ingest import create_contacts

    address = addr.normalise(email or "")
    if address is None:
        raise Invalid("not a valid email address", field="email")
    org = org_context(conn, org_id, box)
    if org.owns(address):
        raise Invalid("this address belongs to your organisation, not to a contact", field="email")
    if org.exclusions.is_erased(org_id, address):
        raise Invalid("this person asked to be erased; they cannot be added again", field="email")
    if org.exclusions.excluded(address, actor_id):
        # The mail of such an address is never logged; a contact made by hand would put the person
        # in search, segments and exports all the same (imports refuse them too).
        raise Invalid('a "never log" rule covers this address', field="email")
    existing = conn.execute(select(CA.c.contact_id).where(CA.c.org_id == org_id, CA.c.address == address)).scalar()
    if existing is not None:
        raise Conflict("this address is already a contact", field="email", facts={"contact_id": existing})
    stage = clean_stage(stage)
    tags = clean_tags(list(tags))
    _check_owner(conn, org_id, owner_id)
    created: set[str] = set()
    made = create_contacts(conn, org, {address: _clean_text("name", name) or ""}, created=created)
    contact_id = made[address][0]
    if address not in created:  # a sync or another admin made it a moment ago
        raise Conflict("this address is already a contact", contact_id)
    conn.execute(
        update(C)
        .where(C.c.id == contact_id, C.c.org_id == org_id)
        .values(
            title=_clean_text("title", title),
            phone=_clean_text("phone", phone),
            provenance=typed({}, [f for f, v in (("title", title), ("phone", phone)) if v], actor_id),
            stage=stage,
            tags=tags,
            owner_id=owner_id,
        )
    )
    # Mail stored before the address became a contact is now linked to it.
    stats.recompute(conn, org_id, [contact_id])
    audit.record(conn, org_id, actor_id, "contact.create", f"contact:{contact_id}", {"source": "sidebar"})
    return contact_id


EDITABLE = ("name", "title", "phone", "mobile", "website", "company_name", "stage", "tags", "owner_id")


def typed(provenance: dict | None, fields, actor_id: int | None) -> dict:
    """provenance with these fields marked as typed by the actor, now."""
    out = dict(provenance or {})
    at = utcnow().isoformat(timespec="seconds")
    for field in fields:
        out[field] = {"source": "typed", "at": at, "user_id": actor_id}
    return out


def update_contact(rt, actor: Actor, contact_id: int, changes: dict) -> dict:
    """Apply the given fields (only those present); returns the contact card."""
    with changing(rt.engine, actor, admin=False) as conn:
        return _update_contact(conn, actor.org_id, actor.user_id, contact_id, changes)


def _update_contact(conn: Connection, org_id: int, actor_id: int | None, contact_id: int, changes: dict) -> dict:
    if timeline.contact_card(conn, org_id, contact_id) is None:
        raise NotFound("no such contact")
    values: dict = {}
    for field, value in changes.items():
        if field not in EDITABLE:
            raise Invalid(f"{field} cannot be edited", field=field)
        if field == "name":
            values["name"] = _clean_text("name", value) or ""
            values["search_name"] = values["name"].lower()
        elif field in ENRICHED:
            values[field] = _clean_text(field, value)
        elif field == "stage":
            values["stage"] = clean_stage(value)
        elif field == "tags":
            values["tags"] = clean_tags(list(value or []))
        elif field == "owner_id":
            _check_owner(conn, org_id, value)
            values["owner_id"] = value
    marked = [f for f in ENRICHED if f in values]
    if marked:
        current = conn.execute(select(C.c.provenance).where(C.c.id == contact_id, C.c.org_id == org_id)).scalar()
        values["provenance"] = typed(current, marked, actor_id)
    if values:
        conn.execute(update(C).where(C.c.id == contact_id, C.c.org_id == org_id).values(**values))
        audit.record(
            conn,
            org_id,
            actor_id,
            "contact.update",
            f"contact:{contact_id}",
            {"fields": sorted(k for k in values if k not in ("search_name", "provenance"))},
        )
    if "name" in values:
        from app.services import duplicates

        # A name is evidence (the same name at one company): its pairs change with it.
        duplicates.refresh(conn, org_id, [contact_id])
    return timeline.contact_card(conn, org_id, contact_id)


def _never_log_value(email: str, scope: str) -> str:
    """The rule's value for a rep's "never log": the address, or its domain."""
    address = addr.normalise(email or "")
    if address is None:
        raise Invalid("not a valid email address", field="email")
    if scope not in ("address", "domain"):
        raise Invalid("scope must be address or domain", field="scope")
    return address if scope == "address" else addr.domain_of(address)


def never_log_consequence(conn, org_id: int, user_id: int, *, email: str, scope: str = "address") -> dict:
    """What a rep's "never log" would delete, to say so before they confirm it."""
    from app.services import rules

    value = _never_log_value(email, scope)
    try:
        return rules.rule_consequence(conn, org_id, kind=scope, value=value, user_id=user_id)
    except Invalid as exc:  # the rule's wording names its `value`; the rep typed an email
        raise Invalid(exc.reason, field="email") from None


def never_log(rt, actor: Actor, *, email: str, scope: str = "address") -> dict:
    """The rep's own "never log" rule for an address (or its whole domain): stored
    idempotently, matching stored mail removed and audited (app.services.rules)."""
    from app.services import rules

    value = _never_log_value(email, scope)
    with changing(rt.engine, actor, admin=False) as conn:
        try:
            rule = rules.store_rule(conn, actor, kind=scope, value=value, user_id=actor.user_id)
        except Invalid as exc:  # the rule's wording names its `value`; the rep typed an email
            raise Invalid(exc.reason, field="email") from None
    return {"kind": rule["kind"], "value": rule["value"], "removed_interactions": rule.get("removed_interactions", 0)}


def first_customer(conn: Connection, org_id: int) -> dict | None:
    """A customer worth opening first (the demo's links, the first-run page): at a company,
    with meetings, with the most mail; any contact when none is at a company yet."""
    from sqlalchemy import text

    row = conn.execute(
        text(
            "SELECT c.primary_email, c.name FROM contact c LEFT JOIN contactstats s ON s.contact_id = c.id "
            "WHERE c.org_id = :org ORDER BY c.company_id IS NOT NULL DESC, COALESCE(s.meetings, 0) > 0 DESC, "
            "COALESCE(s.emails_in + s.emails_out, 0) DESC, c.id LIMIT 1"
        ),
        {"org": org_id},
    ).first()
    return {"email": row.primary_email, "name": row.name} if row else None
