"""Data-subject requests: export everything stored about one address, or erase the person.

Erasing removes their contact, every address of it, their participations, the
interactions that involve no other external person, their company if nothing
else is left in it, the "never log" rules naming their addresses, and their
addresses from the audit log; it writes a tombstone (a keyed hash of each
address, see sync/exclusions.py) so no later sync brings them back.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import String, cast, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from app.crypto import SecretBox
from app.models import (
    AuditEvent,
    Company,
    Contact,
    ContactAddress,
    ContactStats,
    ErasedPerson,
    ExclusionRule,
    FollowUp,
    Interaction,
    InteractionSource,
    Mailbox,
    Participant,
    User,
)
from app.services import audit
from app.services.actor import Actor, changing
from app.services.admin import chunks, remove_from_timeline
from app.services.errors import Invalid
from app.services.orgs import clean_address
from sync import exclusions, reportsums
from sync.exclusions import erased_hash, erasure_key, tombstone_hashes

C, CA, CO, I, P = (
    Contact.__table__,
    ContactAddress.__table__,
    Company.__table__,
    Interaction.__table__,
    Participant.__table__,
)
S, M, U, E, R = (
    InteractionSource.__table__,
    Mailbox.__table__,
    User.__table__,
    ErasedPerson.__table__,
    ExclusionRule.__table__,
)
STATS, FU = ContactStats.__table__, FollowUp.__table__


def _iso(value):
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.isoformat()
    return value


def _addresses(conn: Connection, org_id: int, address: str) -> tuple[int | None, list[str]]:
    """The contact owning this address (if any) and all its addresses (or just this one)."""
    contact_id = conn.execute(select(CA.c.contact_id).where(CA.c.org_id == org_id, CA.c.address == address)).scalar()
    if contact_id is None:
        return None, [address]
    found = list(
        conn.execute(
            select(CA.c.address).where(CA.c.org_id == org_id, CA.c.contact_id == contact_id).order_by(CA.c.id)
        ).scalars()
    )
    return contact_id, sorted(set(found) | {address})


def export_person(rt, actor: Actor, email: str, fmt: str = "json") -> dict:
    """A data-subject access request: everything stored about one person. Reading personal
    data is itself audited (the entry names the person only by their keyed hash)."""
    from sync.exclusions import person_tag

    if fmt not in ("json", "vcard"):
        raise Invalid("format must be json or vcard", field="format")
    with changing(rt.engine, actor) as conn:
        data = collect_person(conn, actor.org_id, email, rt.box)
        audit.record(
            conn,
            actor.org_id,
            actor.user_id,
            "person.export",
            f"person {person_tag(conn, rt.box, actor.org_id, data['address'])}",
            {"format": fmt},
        )
        return data


def collect_person(conn: Connection, org_id: int, email: str, box: SecretBox) -> dict:
    """Everything Threadline stores about one person, as plain JSON-able data."""
    address = clean_address(email)
    contact_id, addresses = _addresses(conn, org_id, address)
    contact = None
    if contact_id is not None:
        row = (
            conn.execute(
                select(C, CO.c.name.label("company_record_name"), CO.c.domain.label("company_domain"))
                .outerjoin(CO, CO.c.id == C.c.company_id)
                .where(C.c.id == contact_id, C.c.org_id == org_id)
            )
            .mappings()
            .one()
        )
        stats = (
            conn.execute(select(STATS).where(STATS.c.contact_id == contact_id, STATS.c.org_id == org_id))
            .mappings()
            .first()
        )
        contact = {
            "id": row["id"],
            "name": row["name"],
            "primary_email": row["primary_email"],
            "addresses": addresses,
            "title": row["title"],
            "phone": row["phone"],
            # what signatures taught us about them is theirs to see too
            "mobile": row["mobile"],
            "website": row["website"],
            "company_as_signed": row["company_name"],
            "honorific": row["honorific"],
            "name_suffix": row["name_suffix"],
            "stage": row["stage"],
            "tags": list(row["tags"] or []),
            "created_at": _iso(row["created_at"]),
            "company": (
                {"name": row["company_record_name"], "domain": row["company_domain"]} if row["company_id"] else None
            ),
            "summary": (
                {k: _iso(stats[k]) for k in ("emails_in", "emails_out", "meetings", "first_email_at", "last_email_at")}
                if stats
                else None
            ),
        }
    part_rows = conn.execute(
        select(P.c.interaction_id, P.c.address, P.c.name, P.c.role, P.c.response)
        .where(P.c.org_id == org_id, P.c.address.in_(addresses))
        .order_by(P.c.occurred_at, P.c.interaction_id)
    ).all()
    own = {}
    for r in part_rows:
        own.setdefault(r.interaction_id, []).append(
            {"address": r.address, "name": r.name, "role": r.role, "response": r.response}
        )
    interactions = []
    ids = list(own)
    for part in chunks(ids):
        people: dict[int, list[dict]] = {}
        for r in conn.execute(
            select(P.c.interaction_id, P.c.address, P.c.name, P.c.role)
            .where(P.c.org_id == org_id, P.c.interaction_id.in_(part))
            .order_by(P.c.interaction_id, P.c.id)
        ):
            people.setdefault(r.interaction_id, []).append({"address": r.address, "name": r.name, "role": r.role})
        for r in conn.execute(select(I).where(I.c.org_id == org_id, I.c.id.in_(part))).mappings():
            interactions.append(
                {
                    "id": r["id"],
                    "kind": r["kind"],
                    "occurred_at": _iso(r["occurred_at"]),
                    "direction": r["direction"],
                    "subject": r["subject"],
                    "snippet": r["snippet"],
                    "from": r["from_address"],
                    "location": r["location"],
                    "ends_at": _iso(r["ends_at"]),
                    "status": r["status"],
                    "body": r["body"],
                    "as": own[r["id"]],
                    "participants": people.get(r["id"], []),
                }
            )
    interactions.sort(key=lambda x: (x["occurred_at"] or "", x["id"]))
    rules = [
        {"id": r.id, "kind": r.kind, "value": r.value, "scope": "organisation" if r.user_id is None else "rep"}
        for r in conn.execute(select(R).where(R.c.org_id == org_id, R.c.kind == "address", R.c.value.in_(addresses)))
    ]
    forms = tombstone_hashes(erasure_key(conn, box, org_id), org_id, address)
    erased = conn.execute(
        select(func.min(E.c.erased_at)).where(E.c.org_id == org_id, E.c.address_hash.in_(forms))
    ).scalar()
    return {
        "address": address,
        "exported_at": _iso(datetime.now(timezone.utc)),
        "contact": contact,
        "interactions": interactions,
        "exclusion_rules": rules,
        "erased_at": _iso(erased) if erased else None,
    }


def _vtext(value: str) -> str:
    return (
        str(value).replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "").replace(",", "\\,").replace(";", "\\;")
    )


def _fold(line: str) -> str:
    """RFC 6350 3.2: lines of at most 75 octets, continued with a leading space."""
    data = line.encode("utf-8")
    if len(data) <= 75:
        return line
    parts, current = [], b""
    for ch in line:
        b = ch.encode("utf-8")
        if len(current) + len(b) > (75 if not parts else 74):
            parts.append(current.decode("utf-8"))
            current = b""
        current += b
    parts.append(current.decode("utf-8"))
    return "\r\n ".join(parts)


def to_vcard(export: dict) -> str:
    """The person as a vCard 4.0 (RFC 6350)."""
    contact = export.get("contact") or {}
    addresses = contact.get("addresses") or [export["address"]]
    name = contact.get("name") or ""
    if not name:
        for item in export.get("interactions", []):
            for who in item["as"]:
                if who.get("name"):
                    name = who["name"]
                    break
            if name:
                break
    lines = ["BEGIN:VCARD", "VERSION:4.0", f"FN:{_vtext(name or export['address'])}"]
    if name:
        bits = name.split()
        family = bits[-1] if len(bits) > 1 else ""
        given = " ".join(bits[:-1]) if len(bits) > 1 else name
        lines.append(f"N:{_vtext(family)};{_vtext(given)};;;")
    primary = contact.get("primary_email") or export["address"]
    for addr in [primary] + [a for a in addresses if a != primary]:
        lines.append(f"EMAIL{';PREF=1' if addr == primary else ''}:{_vtext(addr)}")
    if contact.get("company"):
        lines.append(f"ORG:{_vtext(contact['company']['name'])}")
    if contact.get("title"):
        lines.append(f"TITLE:{_vtext(contact['title'])}")
    if contact.get("phone"):
        lines.append(f"TEL;VALUE=uri:tel:{_vtext(contact['phone'])}")
    if contact.get("tags"):
        lines.append("CATEGORIES:" + ",".join(_vtext(t) for t in contact["tags"]))
    count = len(export.get("interactions", []))
    note = f"{count} interactions stored by Threadline (exported {export['exported_at']})"
    lines.append(f"NOTE:{_vtext(note)}")
    lines.append("PRODID:-//Threadline//Privacy export//EN")
    lines.append("END:VCARD")
    return "\r\n".join(_fold(line) for line in lines) + "\r\n"


def erase_person(rt, actor: Actor, email: str, *, confirm: bool = False) -> dict:
    """Erase one person (all addresses of their contact) and leave a tombstone, in one transaction."""
    if not confirm:
        raise Invalid("erasing cannot be undone: confirm it", field="confirm")
    with changing(rt.engine, actor) as conn:
        return _erase(conn, actor.org_id, email, actor_id=actor.user_id, box=rt.box)


def _erase(conn: Connection, org_id: int, email: str, *, actor_id: int | None, box: SecretBox) -> dict:
    exclusions.hold_to_change(conn, org_id)  # no batch in flight writes their mail back afterwards
    address = clean_address(email)
    contact_id, addresses = _addresses(conn, org_id, address)
    # Interactions they took part in; those with no other external person go entirely.
    theirs = set(
        conn.execute(
            select(P.c.interaction_id).distinct().where(P.c.org_id == org_id, P.c.address.in_(addresses))
        ).scalars()
    )
    only_them: list[int] = []
    # Another external person keeps the mail, as the sync judges it (sync/ingest.py): not a
    # colleague's address on a row with no user (mail claiming their From that nothing vouched for).
    from sync.engine import org_context

    org = org_context(conn, org_id, box)
    for part in chunks(sorted(theirs)):
        others = P.alias("others")
        shared = {
            interaction_id
            for interaction_id, other in conn.execute(
                select(others.c.interaction_id, others.c.address)
                .distinct()
                .where(
                    others.c.org_id == org_id,
                    others.c.interaction_id.in_(part),
                    others.c.user_id.is_(None),
                    others.c.address.not_in(addresses),
                )
            ).all()
            if not org.owns(other)
        }
        only_them.extend(i for i in part if i not in shared)
    from app.services.admin import delete_contacts, drop_empty_companies

    erased_contacts = set(
        conn.execute(
            select(CA.c.contact_id).distinct().where(CA.c.org_id == org_id, CA.c.address.in_(addresses))
        ).scalars()
    )
    companies = set(
        conn.execute(
            select(C.c.company_id)
            .distinct()
            .where(C.c.org_id == org_id, C.c.id.in_(erased_contacts), C.c.company_id.is_not(None))
        ).scalars()
    )
    companies |= set(
        conn.execute(
            select(P.c.company_id)
            .distinct()
            .where(P.c.org_id == org_id, P.c.address.in_(addresses), P.c.company_id.is_not(None))
        ).scalars()
    )
    outcome = remove_from_timeline(conn, org_id, only_them)
    # What the mail they stay on gives the reports (a colleague's row, an answer credited by their
    # From address) changes with their rows and address going: recounted below.
    kept_mail = sorted(theirs - set(only_them))
    report_change = reportsums.changing(conn, org_id, kept_mail)
    # Their remaining participations (in interactions shared with other people), and any trace in headers.
    for part in chunks(sorted(theirs)):
        conn.execute(delete(P).where(P.c.org_id == org_id, P.c.interaction_id.in_(part), P.c.address.in_(addresses)))
    headers = set(
        conn.execute(
            select(I.c.thread_key).distinct().where(I.c.org_id == org_id, I.c.from_address.in_(addresses))
        ).scalars()
    )
    conn.execute(update(I).where(I.c.org_id == org_id, I.c.from_address.in_(addresses)).values(from_address=None))
    # A follow-up names the other side by address, a contact or not: one naming them would keep
    # the address in clear (and, with their From row gone, a new reading opens none for them).
    conn.execute(delete(FU).where(FU.c.org_id == org_id, FU.c.address.in_(addresses)))
    reportsums.changed(conn, org_id, [report_change], new_threads=headers)
    companies |= delete_contacts(conn, org_id, erased_contacts)
    removed_companies = drop_empty_companies(conn, org_id, companies) + outcome["removed_companies"]
    key = erasure_key(conn, box, org_id, create=True)
    hashes = [erased_hash(key, org_id, a) for a in addresses]
    known = set(
        conn.execute(select(E.c.address_hash).where(E.c.org_id == org_id, E.c.address_hash.in_(hashes))).scalars()
    )
    new = [h for h in hashes if h not in known]
    if new:
        conn.execute(
            insert(E), [{"org_id": org_id, "address_hash": h, "erased_at": datetime.now(timezone.utc)} for h in new]
        )
    # A "never log" rule for them would keep their address in clear; the tombstone does its job now.
    rules = conn.execute(delete(R).where(R.c.org_id == org_id, R.c.kind == "address", R.c.value.in_(addresses)))
    tag = f"erased person {hashes[0][len('k1:') :][:16]}"
    scrubbed = _scrub_audit(conn, org_id, addresses, tag)
    result = {
        "addresses": len(addresses),
        "removed_interactions": outcome["removed_interactions"],
        "removed_participations": len(theirs),
        "removed_contacts": len(erased_contacts),
        "removed_companies": removed_companies,
        "removed_rules": rules.rowcount or 0,
        "scrubbed_audit_events": scrubbed,
    }
    # The audit log keeps no address of the erased person: only the start of the keyed hash.
    audit.record(conn, org_id, actor_id, "person.erase", tag, result)
    return result


def _replace_all(value, addresses: list[str], tag: str):
    if isinstance(value, str):
        lowered = value.lower()
        for a in addresses:
            start = lowered.find(a)
            while start >= 0:
                value = value[:start] + tag + value[start + len(a) :]
                lowered = value.lower()
                start = lowered.find(a, start + len(tag))
        return value
    if isinstance(value, list):
        return [_replace_all(v, addresses, tag) for v in value]
    if isinstance(value, dict):
        return {k: _replace_all(v, addresses, tag) for k, v in value.items()}
    return value


def _scrub_audit(conn: Connection, org_id: int, addresses: list[str], tag: str) -> int:
    """Earlier audit events naming one of these addresses name the tag instead."""
    A = AuditEvent.__table__

    def like(column, a: str):
        escaped = a.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return func.lower(column).like(f"%{escaped}%", escape="\\")

    found = conn.execute(
        select(A.c.id, A.c.target, A.c.detail).where(
            A.c.org_id == org_id,
            or_(*[like(A.c.target, a) for a in addresses], *[like(cast(A.c.detail, String), a) for a in addresses]),
        )
    ).all()
    for row in found:
        conn.execute(
            update(A)
            .where(A.c.id == row.id)
            .values(
                target=_replace_all(row.target or "", addresses, tag)[:500],
                detail=_replace_all(dict(row.detail or {}), addresses, tag),
            )
        )
    return len(found)
