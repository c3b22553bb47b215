"""Shared building blocks of the admin operations (rules, privacy, mailbox removal):
removing interactions from the timeline and whatever is left orphaned by that."""

from __future__ import annotations

from collections import Counter
from typing import Iterable

from sqlalchemy import and_, delete, exists, or_, select, update
from sqlalchemy.engine import Connection

from app.models import (
    Company,
    Contact,
    ContactAddress,
    ContactMerge,
    Deal,
    DealContact,
    DuplicateCandidate,
    FollowUp,
    Interaction,
    InteractionSource,
    Participant,
)
from app.models.base import utcnow
from sync import copies, reportsums, skipped, stats

I, P, S = Interaction.__table__, Participant.__table__, InteractionSource.__table__
C, CA, CO = Contact.__table__, ContactAddress.__table__, Company.__table__
FU = FollowUp.__table__  # the follow-up queue points at interactions, contacts and companies
MERGE = ContactMerge.__table__
DEAL, DEAL_CONTACT = Deal.__table__, DealContact.__table__  # people put contacts and companies on deals
CANDIDATE = DuplicateCandidate.__table__  # stored duplicate pairs (app/services/duplicates.py)
CHUNK = 500


def chunks(items: list, size: int = CHUNK):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def address_matches(column, kind: str, value: str):
    """SQL condition: an address column equals the address, or is in the domain or one of its subdomains."""
    if kind == "address":
        return column == value
    esc = like_escape(value)
    return column.like(f"%@{esc}", escape="\\") | column.like(f"%@%.{esc}", escape="\\")


def delete_interactions(
    conn: Connection, org_id: int, interaction_ids: Iterable[int]
) -> tuple[int, set[int], Counter, list[tuple[int, str]]]:
    """Delete these interactions with their participants and copies.

    Returns how many were deleted, the contacts that took part in them (so the
    caller can drop the orphans and refresh the summaries of the others),
    folder id -> copies deleted and the (folder id, remote id) of those that are the
    server's messages (for the folders' counts: copies.delete_by_admin)."""
    ids = sorted(set(interaction_ids))
    contacts: set[int] = set()
    removed = 0
    gone: Counter = Counter()
    messages: list[tuple[int, str]] = []
    report_change = reportsums.changing(conn, org_id, ids)
    for part in chunks(ids):
        contacts.update(
            c
            for c in conn.execute(
                select(P.c.contact_id)
                .distinct()
                .where(P.c.org_id == org_id, P.c.interaction_id.in_(part), P.c.contact_id.is_not(None))
            ).scalars()
        )
        deleted, of_messages = copies.delete_by_admin(conn, S.c.org_id == org_id, S.c.interaction_id.in_(part))
        gone.update(deleted)
        messages.extend(of_messages)
        conn.execute(delete(P).where(P.c.org_id == org_id, P.c.interaction_id.in_(part)))
        conn.execute(delete(FU).where(FU.c.org_id == org_id, FU.c.interaction_id.in_(part)))
        removed += conn.execute(delete(I).where(I.c.org_id == org_id, I.c.id.in_(part))).rowcount
    reportsums.changed(conn, org_id, [report_change])
    return removed, contacts, gone, messages


def delete_contacts(conn: Connection, org_id: int, contact_ids: Iterable[int]) -> set[int]:
    """Delete contacts with their addresses and summaries; participants pointing at them are unlinked.
    Returns the companies they belonged to."""
    ids = sorted(set(contact_ids))
    companies: set[int] = set()
    for part in chunks(ids):
        companies.update(
            c
            for c in conn.execute(
                select(C.c.company_id)
                .distinct()
                .where(C.c.org_id == org_id, C.c.id.in_(part), C.c.company_id.is_not(None))
            ).scalars()
        )
        conn.execute(
            update(P).where(P.c.org_id == org_id, P.c.contact_id.in_(part)).values(contact_id=None, company_id=None)
        )
        stats.forget(conn, org_id, part)
        conn.execute(delete(FU).where(FU.c.org_id == org_id, FU.c.contact_id.in_(part)))
        conn.execute(delete(CA).where(CA.c.org_id == org_id, CA.c.contact_id.in_(part)))
        # An erased person comes off their deals; the deal (a business fact) stays.
        conn.execute(delete(DEAL_CONTACT).where(DEAL_CONTACT.c.org_id == org_id, DEAL_CONTACT.c.contact_id.in_(part)))
        conn.execute(
            delete(CANDIDATE).where(
                CANDIDATE.c.org_id == org_id,
                or_(CANDIDATE.c.contact_a.in_(part), CANDIDATE.c.contact_b.in_(part)),
            )
        )
        conn.execute(delete(C).where(C.c.org_id == org_id, C.c.id.in_(part)))
        # A merge record keeps the merged contact's row for its undo: once either side is gone
        # (erased, or left with no mail) it cannot be undone, and must not keep their data.
        conn.execute(
            update(MERGE)
            .where(
                MERGE.c.org_id == org_id,
                or_(MERGE.c.survivor_id.in_(part), and_(MERGE.c.loser_id.in_(part), MERGE.c.state == "undone")),
            )
            .values(state="void", record={})
        )
    return companies


def drop_empty_companies(conn: Connection, org_id: int, company_ids: Iterable[int]) -> int:
    """Delete those of these companies that no contact, participant, follow-up or deal refers to any
    more and that no rep worked on (a key account, a typed field: kept as `orphaned` keeps contacts)."""
    removed = 0
    for part in chunks(sorted(set(company_ids))):
        empty = conn.execute(
            select(CO.c.id, CO.c.key_account, CO.c.provenance).where(
                CO.c.org_id == org_id,
                CO.c.id.in_(part),
                ~exists().where(C.c.company_id == CO.c.id),
                ~exists().where(P.c.company_id == CO.c.id),
                ~exists().where(FU.c.company_id == CO.c.id),
                ~exists().where(DEAL.c.company_id == CO.c.id),
            )
        ).all()
        gone = [company_id for company_id, key_account, provenance in empty if not (key_account or _typed(provenance))]
        if gone:
            removed += conn.execute(delete(CO).where(CO.c.org_id == org_id, CO.c.id.in_(gone))).rowcount
    return removed


def orphaned(conn: Connection, org_id: int, contact_ids: Iterable[int]) -> set[int]:
    """Those of these contacts that take part in no interaction any more and that no rep worked
    on: on no deal, no stage, owner, key account, tag or typed field. That work is the reps' own,
    as notes and tasks are: a rule (which can be removed again) or a mailbox removed must not take
    it, and the mail it comes back with finds the contact as it was."""
    found: set[int] = set()
    for part in chunks(sorted(set(contact_ids))):
        rows = conn.execute(
            select(C.c.id, C.c.stage, C.c.owner_id, C.c.key_account, C.c.tags, C.c.provenance).where(
                C.c.org_id == org_id,
                C.c.id.in_(part),
                ~exists().where(and_(P.c.contact_id == C.c.id, P.c.org_id == org_id)),
                ~exists().where(and_(DEAL_CONTACT.c.contact_id == C.c.id, DEAL_CONTACT.c.org_id == org_id)),
            )
        )
        found.update(
            contact_id
            for contact_id, stage, owner_id, key_account, tags, provenance in rows
            if not (stage or owner_id or key_account or tags or _typed(provenance))
        )
    return found


def _typed(provenance) -> bool:
    return any(isinstance(v, dict) and v.get("source") == "typed" for v in (provenance or {}).values())


def refresh_stats(conn: Connection, org_id: int, contact_ids: Iterable[int]) -> None:
    ids = sorted(set(contact_ids))
    if not ids:
        return
    from sync.stats import recompute

    recompute(conn, org_id, ids)


def remove_copies_of(conn: Connection, org_id: int, interactions, mailbox_ids) -> int:
    """Take these mailboxes' copies of these interactions (ids, or a query of them) off while the
    interactions stay on the timeline through other mailboxes' copies: a rep's rule over mail a
    colleague holds too. A clean sync of the rep's mailboxes under the rule would have skipped
    them; their folders count them as taken off (`removed`), so each still reconciles. Returns
    the copies deleted."""
    folders, messages = copies.delete_by_admin(
        conn, S.c.org_id == org_id, S.c.interaction_id.in_(interactions), S.c.mailbox_id.in_(mailbox_ids)
    )
    _count_taken_off(conn, org_id, folders, messages)
    return sum(folders.values())


def _count_taken_off(conn: Connection, org_id: int, folders: Counter, messages: list[tuple[int, str]]) -> None:
    """The folders' counts after an admin deleted copies (`copies.delete_by_admin`): fewer copies,
    and the server's messages among them kept as taken off (`removed`), so each still reconciles."""
    taken = skipped.record_removed(conn, org_id, messages, utcnow())
    copies.count_changed(conn, {fid: -n for fid, n in folders.items()}, removed=taken)


def remove_from_timeline(conn: Connection, org_id: int, interaction_ids: Iterable[int]) -> dict:
    """Delete interactions, then the contacts left with no participation and their emptied companies,
    and refresh the summaries of the contacts that remain. One transaction: the caller's."""
    removed, touched, folders, messages = delete_interactions(conn, org_id, interaction_ids)
    gone = orphaned(conn, org_id, touched)
    companies = delete_contacts(conn, org_id, gone)
    dropped = drop_empty_companies(conn, org_id, companies)
    refresh_stats(conn, org_id, touched - gone)
    from app.services import duplicates  # it uses this module's helpers

    # The duplicate candidates of those left: their mail (the evidence) changed.
    duplicates.refresh(conn, org_id, touched - gone)
    # Last, as a sync batch writes its folder's row last: neither then holds a folder
    # row while it waits for rows the other holds.
    _count_taken_off(conn, org_id, folders, messages)
    return {"removed_interactions": removed, "removed_contacts": len(gone), "removed_companies": dropped}
