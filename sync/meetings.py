"""Meetings onto the timeline: one interaction per meeting however it was seen.

A meeting arrives from a calendar (CalDAV, Microsoft Graph) or from an
invitation in mail (iMIP). Its key is the iCalendar UID plus the occurrence's
recurrence id, so every copy lands on the same interaction. A copy with a
lower SEQUENCE than the stored one never overwrites the newer details; a
REPLY only changes the replying attendee's answer. Removing the last copy of
a meeting removes it from the timeline.
"""
from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection

from app.db import insert_ignore
from app.models import Interaction, InteractionSource, Participant
from app.models.base import utcnow
from connectors.base import Attendee, MeetingRecord, meeting_key
from sync import addresses as addr
from sync import stats
from sync.ingest import (IngestResult, MailboxContext, OrgContext, _internal, _utc, create_contacts,
                         existing_contacts)

I, P, S = Interaction.__table__, Participant.__table__, InteractionSource.__table__
MAX_ATTENDEES = 500


def _people(org: OrgContext, mbx: MailboxContext, rec: MeetingRecord) -> dict[str, tuple[str, str, str | None]]:
    """address -> (name, role, response), organiser first."""
    people: dict[str, tuple[str, str, str | None]] = {}
    listed: list[Attendee] = ([rec.organizer] if rec.organizer else []) + list(rec.attendees)
    for a in listed:
        address = addr.normalise(a.address or "")
        if not address:
            continue
        role = "organizer" if a is rec.organizer else ("optional" if a.role == "optional" else "attendee")
        if address in people:
            if role != "organizer" and a.response:
                name, old_role, _ = people[address]
                people[address] = (name, old_role, a.response)  # the organiser also attends
            continue
        people[address] = (addr.display_name(a.name, address), role, a.response if role != "organizer" else
                           (a.response or "accepted"))
    return people


def prepare(org: OrgContext, mbx: MailboxContext, rec: MeetingRecord) -> dict | str:
    if len(rec.attendees) > MAX_ATTENDEES:
        return f"more than {MAX_ATTENDEES} attendees"
    people = _people(org, mbx, rec)
    external = [a for a in people if not _internal(org, a)]
    ex = org.exclusions
    if ex.erased:
        for a in [a for a in external if ex.is_erased(org.org_id, a)]:
            del people[a]
            external.remove(a)
    if not external:
        return "internal meeting"
    if (ex.org or ex.by_user) and any(ex.excluded(a, mbx.owner_id) for a in external):
        return "excluded by rule"
    if rec.method != "REPLY" and mbx.owner_address not in people:
        people[mbx.owner_address] = ("", "attendee", None)
    organizer = next((a for a, (_, role, _) in people.items() if role == "organizer"), None)
    direction = "out" if organizer is None or _internal(org, organizer) else "in"
    status = "cancelled" if rec.method == "CANCEL" else (rec.status or "confirmed")
    return {"people": people, "external": external, "direction": direction, "status": status}


def ingest_meetings(conn: Connection, org: OrgContext, mbx: MailboxContext, records: list[MeetingRecord]
                    ) -> IngestResult:
    result = IngestResult()
    touched_contacts: set[int] = set()
    prepared = []
    for rec in records:
        p = prepare(org, mbx, rec)
        if isinstance(p, str):
            result.skipped[p] += 1
        else:
            prepared.append((rec, p))
    if not prepared:
        return result
    all_external = sorted({a for _, p in prepared for a in p["external"]})
    contacts, _ = existing_contacts(conn, org.org_id, all_external)
    if org.contact_policy != "none":
        wanted: dict[str, str] = {}
        for _, p in prepared:
            for a in p["external"]:
                if a not in contacts and not wanted.get(a):
                    wanted[a] = p["people"][a][0]
        made = create_contacts(conn, org, wanted)
        contacts.update(made)
        result.new_contacts = len(made)
        touched_contacts.update(c for c, _ in made.values())
    now = utcnow()
    for rec, p in prepared:
        key = meeting_key(rec.uid, rec.recurrence_id)[:900]
        start = _utc(rec.start)
        row = conn.execute(select(I.c.id, I.c.sequence, I.c.occurred_at).where(I.c.org_id == org.org_id,
                                                                               I.c.message_key == key)).first()
        details = {
            "occurred_at": start, "ends_at": _utc(rec.end) if rec.end else None, "direction": p["direction"],
            "subject": rec.subject if org.visibility in ("subject", "snippet") else None,
            "location": (rec.location or None) if org.visibility in ("subject", "snippet") else None,
            "status": p["status"], "sequence": rec.sequence,
        }
        newer = False
        if row is None:
            insert_ignore(conn, I, [{"org_id": org.org_id, "kind": "meeting", "message_key": key,
                                     "thread_key": key, "from_address": None, "created_at": now, **details}])
            iid = conn.execute(select(I.c.id).where(I.c.org_id == org.org_id, I.c.message_key == key)).scalar_one()
            result.new_interactions += 1
            newer = True
        else:
            iid = row.id
            if rec.method != "REPLY" and rec.sequence >= row.sequence:
                newer = True
                conn.execute(update(I).where(I.c.id == iid).values(**details))
                conn.execute(update(P).where(P.c.interaction_id == iid).values(occurred_at=start))
            elif rec.method == "CANCEL" and rec.sequence >= row.sequence:
                conn.execute(update(I).where(I.c.id == iid).values(status="cancelled"))
        at = conn.execute(select(I.c.occurred_at).where(I.c.id == iid)).scalar_one()
        stored = {r.address: r for r in conn.execute(select(P.c.address, P.c.response, P.c.contact_id)
                                                      .where(P.c.interaction_id == iid))}
        rows = []
        for address, (name, role, response) in p["people"].items():
            user_id = org.users_by_address.get(address)
            if user_id is None and _internal(org, address):
                continue  # a room or a shared address, not a person
            contact = contacts.get(address)
            if contact:
                touched_contacts.add(contact[0])
            if address in stored:
                if response and (newer or rec.method == "REPLY") and stored[address].response != response:
                    conn.execute(update(P).where(P.c.interaction_id == iid, P.c.address == address)
                                 .values(response=response))
                continue
            rows.append({"org_id": org.org_id, "interaction_id": iid, "occurred_at": at, "address": address,
                         "name": name or None, "role": role, "response": response, "user_id": user_id,
                         "contact_id": contact[0] if contact else None,
                         "company_id": contact[1] if contact else None})
        insert_ignore(conn, P, rows)
        if newer and rec.method in (None, "REQUEST") and row is not None:
            # A newer full copy is the attendee list: people taken off it leave.
            gone = [a for a, r in stored.items() if a not in p["people"] and a != mbx.owner_address]
            if gone:
                touched_contacts.update(r.contact_id for a, r in stored.items() if a in gone and r.contact_id)
                conn.execute(delete(P).where(P.c.interaction_id == iid, P.c.address.in_(gone)))
        insert_ignore(conn, S, [{"org_id": org.org_id, "interaction_id": iid, "mailbox_id": mbx.mailbox_id,
                                 "folder_id": mbx.folder_id, "remote_id": rec.remote_id[:900]}])
        result.imported += 1
    stats.recompute(conn, org.org_id, touched_contacts)
    return result


def remove_copies(conn: Connection, org_id: int, mbx: MailboxContext, remote_ids: list[str]) -> int:
    """Copies that left a folder or calendar. A meeting with no copy left leaves
    the timeline; an email stays (the company keeps what it learnt) unless an
    admin purges it."""
    if not remote_ids:
        return 0
    affected: set[int] = set()
    for i in range(0, len(remote_ids), 500):
        part = remote_ids[i:i + 500]
        affected.update(conn.execute(select(S.c.interaction_id).where(
            S.c.mailbox_id == mbx.mailbox_id, S.c.folder_id == mbx.folder_id, S.c.remote_id.in_(part))).scalars())
        conn.execute(delete(S).where(S.c.mailbox_id == mbx.mailbox_id, S.c.folder_id == mbx.folder_id,
                                     S.c.remote_id.in_(part)))
    if not affected:
        return 0
    orphans = [iid for iid in sorted(affected)
               if conn.execute(select(I.c.kind).where(I.c.id == iid, I.c.org_id == org_id)).scalar() == "meeting"
               and conn.execute(select(S.c.id).where(S.c.interaction_id == iid).limit(1)).first() is None]
    if orphans:
        contacts = set(conn.execute(select(P.c.contact_id).where(P.c.interaction_id.in_(orphans),
                                                                 P.c.contact_id.is_not(None))).scalars())
        conn.execute(delete(P).where(P.c.interaction_id.in_(orphans)))
        conn.execute(delete(I).where(I.c.id.in_(orphans)))
        stats.recompute(conn, org_id, contacts)
    return len(orphans)
