"""Duplicate contacts: find the same person under several addresses, dismiss a candidate,
merge two contacts and undo a merge from the audit log.

Candidates come from what the timeline already holds (headers and participants, never
signatures), each with its evidence and a confidence:
- the same display name at the same company (or at two companies of the same name, such as
  acme.com and acme.de);
- the same display name under two addresses on one message, or writing from both in one
  thread (a personal and a work address of one person);
- an address change announced in mail: an inbound message whose snippet says "my new
  address is X" (several languages), X being another contact.

A merge moves every row of the merged contact ("loser") to the one kept ("survivor") in one
transaction: its addresses (so later mail to them lands on the survivor), participations
(mail, meetings, notes, tasks), follow-ups, deal memberships, tags and key-account flag; the
survivor's summaries are recounted from the rows. A `contactmerge` row keeps the loser's
contact row and the id of every row moved or changed, which is what the undo puts back.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from datetime import datetime, timezone
from itertools import combinations

from sqlalchemy import and_, delete, desc, exists, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from app.db import advisory_locks
from app.models import (
    AuditEvent,
    Company,
    Contact,
    ContactAddress,
    ContactMerge,
    ContactStats,
    Deal,
    DealContact,
    DuplicateCandidate,
    DuplicateDismissal,
    DuplicateScan,
    FollowUp,
    FollowUpKind,
    Interaction,
    MergeState,
    Participant,
)
from app.models.base import utcnow
from app.services import audit
from app.services.actor import Actor, changing
from app.services.admin import chunks
from app.services.duplicate_signals import announced_addresses, name_key
from app.services.errors import Conflict, Invalid, NotFound
from sync import exclusions, stats

C, CA, CO, I, P = (
    Contact.__table__,
    ContactAddress.__table__,
    Company.__table__,
    Interaction.__table__,
    Participant.__table__,
)
FU, DC, DEAL, STATS = FollowUp.__table__, DealContact.__table__, Deal.__table__, ContactStats.__table__
M, D, A = ContactMerge.__table__, DuplicateDismissal.__table__, AuditEvent.__table__
SC, SCAN = DuplicateCandidate.__table__, DuplicateScan.__table__

# How much one piece of evidence alone says; several kinds combine (1 - product of doubts).
CONFIDENCE = {
    "address_change": 0.95,
    "same_name_same_company": 0.8,
    "same_name_in_thread": 0.75,
    "same_name_on_message": 0.7,
    "same_name_linked_companies": 0.6,
}
EVIDENCE_PER_KIND = 3  # examples kept per kind and pair; the count says how many there were
MERGE_ACTION, UNMERGE_ACTION = "contact.merge", "contact.unmerge"

# The contact's own columns a merge may fill in on the survivor (blanks only) and an undo puts back.
_SURVIVOR_FIELDS = ("name", "search_name", "title", "phone", "stage", "tags", "owner_id", "key_account", "company_id")


# -- candidates -----------------------------------------------------------------------------


def _pair(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


def _when(value) -> str | None:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()
    return value


class _Found:
    """Evidence gathered per contact pair."""

    def __init__(self, only: set[int] | None = None) -> None:
        self.by_pair: dict[tuple[int, int], dict[str, dict]] = defaultdict(dict)
        self.keep_hint: dict[tuple[int, int], int] = {}
        self.only = only  # when set, only pairs with one of these contacts are kept
        # a whole search's announced address changes ([interaction, from, to]) and the last
        # interaction it read: kept with the list for the searches of a few contacts
        self.announcements: list[list] = []
        self.interaction_mark = 0

    def wants(self, a: int, b: int) -> bool:
        return a != b and (self.only is None or a in self.only or b in self.only)

    def add(self, a: int, b: int, kind: str, text: str, **facts) -> None:
        if not self.wants(a, b):
            return
        slot = self.by_pair[_pair(a, b)].setdefault(kind, {"kind": kind, "count": 0, "examples": []})
        slot["count"] += 1
        if len(slot["examples"]) < EVIDENCE_PER_KIND:
            example = {"text": text, "interaction_id": None, "subject": None, "at": None}
            slot["examples"].append({**example, **facts})


def _same_name(conn: Connection, org_id: int, found: _Found) -> None:
    """The same display name at one company, or at companies of the same name."""
    companies = {
        cid: (domain, name)
        for cid, domain, name in conn.execute(select(CO.c.id, CO.c.domain, CO.c.name).where(CO.c.org_id == org_id))
    }
    group_of: dict[int, str] = {cid: (name or domain).strip().casefold() for cid, (domain, name) in companies.items()}
    query = select(C.c.id, C.c.name, C.c.company_id).where(C.c.org_id == org_id, C.c.company_id.is_not(None))
    if found.only is None:
        rows = conn.execute(query.order_by(C.c.id)).all()
    else:  # the contacts at the companies (of the same name) of those asked about
        groups = set()
        for part in chunks(sorted(found.only)):
            for company_id in conn.execute(select(C.c.company_id).where(C.c.id.in_(part))).scalars():
                if company_id is not None:
                    groups.add(group_of.get(company_id, str(company_id)))
        rows = []
        for part in chunks(sorted(c for c, g in group_of.items() if g in groups)):
            rows.extend(conn.execute(query.where(C.c.company_id.in_(part))).all())
        rows.sort(key=lambda r: r[0])
    people: dict[tuple[str, str], list[tuple[int, int, str]]] = defaultdict(list)
    for cid, name, company_id in rows:
        key = name_key(name)
        if key:
            people[(group_of.get(company_id, str(company_id)), key)].append((cid, company_id, name))
    for members in people.values():
        for (a, ca, name), (b, cb, _) in combinations(members, 2):
            if ca == cb:
                found.add(a, b, "same_name_same_company", f"both are named {name} at {companies[ca][0]}")
            else:
                found.add(
                    a,
                    b,
                    "same_name_linked_companies",
                    f"both are named {name} at {companies[ca][0]} and {companies[cb][0]}, companies of the same name",
                )


def _together(conn: Connection, org_id: int, found: _Found) -> None:
    """The same name under two contacts' addresses on one message, or writing from both in one thread."""
    lname = func.lower(P.c.name)
    named_any = and_(P.c.contact_id.is_not(None), P.c.name.is_not(None), P.c.name != "")
    named = and_(P.c.org_id == org_id, named_any)

    def on_message(where):
        return (
            select(P.c.interaction_id)
            .where(where)
            .group_by(P.c.interaction_id, lname)
            .having(func.count(func.distinct(P.c.contact_id)) > 1)
        )

    def message_rows(where):
        return (
            select(P.c.interaction_id, P.c.contact_id, P.c.name, I.c.subject, I.c.occurred_at)
            .join(I, I.c.id == P.c.interaction_id)
            .where(where)
            .order_by(I.c.occurred_at, P.c.interaction_id)
        )

    if found.only is None:
        rows = conn.execute(message_rows(and_(named, P.c.interaction_id.in_(on_message(named))))).all()
    else:
        # The messages those asked about are on, by id. Without org_id in the condition (the
        # ids are the organisation's) SQLite reads them by the (interaction_id, address) index;
        # with it, it read every participant with a contact (40 ms of 20,000 emails, bench/duplicates.py).
        mine = sorted(
            set(
                conn.execute(
                    select(P.c.interaction_id).where(P.c.org_id == org_id, P.c.contact_id.in_(sorted(found.only)))
                ).scalars()
            )
        )
        rows = []
        for part in chunks(mine):
            these = and_(named_any, P.c.interaction_id.in_(part))
            rows.extend(conn.execute(message_rows(and_(these, P.c.interaction_id.in_(on_message(these))))))
        rows.sort(key=lambda r: (r[4], r[0]))  # stable: as the one query orders them
    groups: dict[tuple[int, str], set[int]] = defaultdict(set)
    names: dict[tuple[int, int], set[str]] = defaultdict(set)
    info: dict[int, tuple] = {}
    for iid, contact_id, name, subject, at in rows:
        key = name_key(name)
        if key:
            groups[(iid, key)].add(contact_id)
            names[(iid, contact_id)].add(name)
            info[iid] = (subject, at)
    for (iid, _), members in groups.items():
        subject, at = info[iid]
        for a, b in combinations(sorted(members), 2):
            # one of the pair's own spellings, whatever order the rows came in and whoever
            # else is on the message (the stored list must not change when they go)
            name = min(names[(iid, a)] | names[(iid, b)])
            found.add(
                a,
                b,
                "same_name_on_message",
                f"{name} appears under both addresses on one message",
                interaction_id=iid,
                subject=subject,
                at=_when(at),
            )

    # Threads: the same name wrote from both addresses (replies from a phone, a home account).
    def in_thread(where):
        return (
            select(I.c.thread_key)
            .select_from(P.join(I, I.c.id == P.c.interaction_id))
            .where(where)
            .group_by(I.c.thread_key, lname)
            .having(func.count(func.distinct(P.c.contact_id)) > 1)
        )

    def thread_rows(where):
        return (
            select(I.c.thread_key, P.c.contact_id, P.c.name, I.c.id, I.c.subject, I.c.occurred_at)
            .join(I, I.c.id == P.c.interaction_id)
            .where(where)
            .order_by(I.c.occurred_at, I.c.id)
        )

    senders = and_(named, P.c.role == "from")
    if found.only is None:
        rows = conn.execute(
            thread_rows(and_(senders, I.c.org_id == org_id, I.c.thread_key.in_(in_thread(senders))))
        ).all()
    else:  # the threads those asked about wrote in, read from the thread index as above
        wrote_in = sorted(
            {
                t
                for t in conn.execute(
                    select(I.c.thread_key)
                    .select_from(P.join(I, I.c.id == P.c.interaction_id))
                    .where(P.c.org_id == org_id, P.c.role == "from", P.c.contact_id.in_(sorted(found.only)))
                ).scalars()
                if t is not None
            }
        )
        rows = []
        for part in chunks(wrote_in):
            these = and_(named_any, P.c.role == "from", I.c.org_id == org_id, I.c.thread_key.in_(part))
            rows.extend(conn.execute(thread_rows(and_(these, I.c.thread_key.in_(in_thread(these))))))
        rows.sort(key=lambda r: (r[5], r[3]))
    threads: dict[tuple[str, str], dict[int, tuple]] = defaultdict(dict)
    for thread, contact_id, name, iid, subject, at in rows:
        key = name_key(name)
        if key:  # rows come oldest first: each contact's first message in the thread
            threads[(thread, key)].setdefault(contact_id, (iid, subject, at, name))
    for members in threads.values():
        for a, b in combinations(sorted(members), 2):
            # the example is the message where the second address joined the thread
            iid, subject, at, name = max(members[a], members[b], key=lambda m: (m[2], m[0]))
            found.add(
                a,
                b,
                "same_name_in_thread",
                f"{name} wrote from both addresses in one thread",
                interaction_id=iid,
                subject=subject,
                at=_when(at),
            )


def _address_changes(conn: Connection, org_id: int, found: _Found) -> None:
    """Inbound mail whose text announces the sender's new address, which is another contact."""
    inbound = (I.c.kind == "email", I.c.direction == "in", I.c.from_address.is_not(None), I.c.snippet.like("%@%"))
    query = select(I.c.id, I.c.from_address, I.c.snippet, I.c.subject, I.c.occurred_at).where(
        I.c.org_id == org_id, *inbound
    )
    wanted: list[tuple] = []
    if found.only is None:
        found.interaction_mark = conn.execute(select(func.max(I.c.id))).scalar() or 0
        for iid, sender, snippet, subject, at in conn.execute(
            query.where(I.c.id <= found.interaction_mark).order_by(I.c.occurred_at, I.c.id)
        ):
            wanted.extend((iid, sender, new, subject, at) for new in announced_addresses(snippet) if new != sender)
        # kept with the list: a search for a few contacts reads these, not every snippet again
        found.announcements = [list(w[:3]) for w in wanted]
    else:
        wanted = _announcements_of(conn, org_id, inbound, found.only)
    if not wanted:
        return
    addresses = sorted({w[1] for w in wanted} | {w[2] for w in wanted})
    owner: dict[str, int] = {}
    for part in chunks(addresses):
        owner.update(
            conn.execute(
                select(CA.c.address, CA.c.contact_id).where(CA.c.org_id == org_id, CA.c.address.in_(part))
            ).all()
        )
    for iid, sender, new, subject, at in wanted:
        old_id, new_id = owner.get(sender), owner.get(new)
        if old_id is None or new_id is None or old_id == new_id:
            continue
        found.add(
            old_id,
            new_id,
            "address_change",
            f"{sender} wrote that their new address is {new}",
            interaction_id=iid,
            subject=subject,
            at=_when(at),
        )
        found.keep_hint[_pair(old_id, new_id)] = new_id  # keep the address they moved to


def _announcements_of(conn: Connection, org_id: int, inbound: tuple, only: set[int]) -> list[tuple]:
    """The announced address changes from or to an address of these contacts, oldest first:
    those the last whole search found (still on the timeline) and those in mail that arrived
    since. Reading every snippet again instead cost 370 ms for two contacts and 14 s for 500 at
    200,000 emails (bench/duplicates.py, one LIKE scan per 50 addresses)."""
    scan = conn.execute(select(SCAN.c.announcements, SCAN.c.interaction_mark).where(SCAN.c.org_id == org_id)).first()
    known, mark = (list(scan[0] or []), scan[1] or 0) if scan else ([], 0)
    mine: set[str] = set()
    for part in chunks(sorted(only)):
        mine.update(
            conn.execute(select(CA.c.address).where(CA.c.org_id == org_id, CA.c.contact_id.in_(part))).scalars()
        )
    picked = [(iid, sender, new) for iid, sender, new in known if sender in mine or new in mine]
    facts: dict[int, tuple] = {}
    for part in chunks(sorted({p[0] for p in picked})):
        for iid, subject, at in conn.execute(
            select(I.c.id, I.c.subject, I.c.occurred_at).where(I.c.org_id == org_id, I.c.id.in_(part))
        ):
            facts[iid] = (subject, at)
    wanted = [(iid, sender, new, *facts[iid]) for iid, sender, new in picked if iid in facts]
    # Mail since, by the primary key alone: with org_id in the condition SQLite read the
    # organisation's whole index range instead (15 ms of 20,000 emails); other organisations'
    # rows are dropped here.
    newer = select(I.c.org_id, I.c.id, I.c.from_address, I.c.snippet, I.c.subject, I.c.occurred_at).where(
        I.c.id > mark, *inbound
    )
    for org, iid, sender, snippet, subject, at in conn.execute(newer):
        if org != org_id:
            continue
        for new in announced_addresses(snippet):
            if new != sender and (sender in mine or new in mine):
                wanted.append((iid, sender, new, subject, at))
    wanted.sort(key=lambda w: (w[4], w[0]))  # stable: each message's addresses in their order
    return wanted


def _contacts(conn: Connection, org_id: int, ids: list[int]) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for part in chunks(ids):
        for r in conn.execute(
            select(
                C.c.id,
                C.c.name,
                C.c.primary_email,
                CO.c.domain,
                STATS.c.emails_in,
                STATS.c.emails_out,
                STATS.c.last_email_at,
            )
            .outerjoin(CO, CO.c.id == C.c.company_id)
            .outerjoin(STATS, STATS.c.contact_id == C.c.id)
            .where(C.c.org_id == org_id, C.c.id.in_(part))
        ).mappings():
            out[r["id"]] = {
                "id": r["id"],
                "name": r["name"],
                "email": r["primary_email"],
                "addresses": [],
                "company": r["domain"],
                "emails": (r["emails_in"] or 0) + (r["emails_out"] or 0),
                "last_email_at": r["last_email_at"],
            }
        for cid, address in conn.execute(
            select(CA.c.contact_id, CA.c.address)
            .where(CA.c.org_id == org_id, CA.c.contact_id.in_(part))
            .order_by(CA.c.id)
        ):
            out[cid]["addresses"].append(address)
    return out


def _gather(conn: Connection, org_id: int, only: set[int] | None = None) -> _Found:
    found = _Found(only)
    _same_name(conn, org_id, found)
    _together(conn, org_id, found)
    _address_changes(conn, org_id, found)
    return found


def _scored(found: _Found) -> list[dict]:
    """Each pair found with its evidence (strongest kind first), confidence and keep hint."""
    out = []
    for (a, b), kinds in found.by_pair.items():
        evidence = sorted(kinds.values(), key=lambda e: -CONFIDENCE[e["kind"]])
        doubt = 1.0
        for e in evidence:
            doubt *= 1 - CONFIDENCE[e["kind"]]
        out.append(
            {
                "contact_a": a,
                "contact_b": b,
                "confidence": round(1 - doubt, 3),
                "keep_hint": found.keep_hint.get((a, b)),
                "evidence": evidence,
            }
        )
    return out


def _shown(conn: Connection, org_id: int, rows: list[dict], limit: int) -> list[dict]:
    """Scored pairs as the console and the API show them: most likely first, with both
    contacts as they are now (their mail counts decide which to keep, unless the evidence does)."""
    rows = sorted(rows, key=lambda r: (-r["confidence"], r["contact_a"], r["contact_b"]))
    people = _contacts(conn, org_id, sorted({r[k] for r in rows for k in ("contact_a", "contact_b")}))
    out = []
    for r in rows:
        a, b = r["contact_a"], r["contact_b"]
        if a not in people or b not in people:
            continue  # merged or erased while we read
        first, second = people[a], people[b]
        keep = r["keep_hint"]
        if keep is None:  # the one with more mail, then the one at a company (work), then the older
            rank = {c["id"]: (c["emails"], c["company"] is not None, -c["id"]) for c in (first, second)}
            keep = a if rank[a] >= rank[b] else b
        out.append(
            {
                "key": f"{a}-{b}",
                "contacts": [first, second],
                "keep_id": keep,
                "merge_id": b if keep == a else a,
                "confidence": r["confidence"],
                "evidence": r["evidence"],
            }
        )
    return out[: _bounded(limit)]


def _bounded(limit: int) -> int:
    return max(1, min(int(limit), 1000))


def find_candidates(conn: Connection, org_id: int, *, limit: int = 200) -> list[dict]:
    """Pairs of contacts that look like one person, most likely first, without those an admin
    dismissed. Each has the evidence (kind, how often, a few examples) and a confidence in [0, 1].
    This searches the whole organisation (seconds on a large one): pages read the stored list
    (`candidates`), which `refresh` keeps equal to this."""
    dismissed = set(conn.execute(select(D.c.contact_a, D.c.contact_b).where(D.c.org_id == org_id)).tuples().all())
    rows = [r for r in _scored(_gather(conn, org_id)) if (r["contact_a"], r["contact_b"]) not in dismissed]
    return _shown(conn, org_id, rows, limit)


# -- the stored list ------------------------------------------------------------------------

# Above this many contacts to look at again, searching the whole organisation is cheaper than
# the per-contact queries (each of which reads those contacts' mail and scans the snippets).
FULL_REFRESH_ABOVE = 1000
# The whole organisation is searched again this often, whatever changed: edits of a contact's
# name or company, and rows the incremental check cannot see (see refresh_due).
FULL_REFRESH_SECONDS = 6 * 3600
# How often the scheduler looks at the mail that arrived since (sync/scheduler.py housekeeping).
REFRESH_SECONDS = 300


def _marks(conn: Connection, org_id: int) -> tuple[int, int]:
    # The tables' last ids, every organisation's: one primary-key lookup each, where the
    # organisation's own maximum read its index (46 ms of 400,000 participants).
    return (
        conn.execute(select(func.max(P.c.id))).scalar() or 0,
        conn.execute(select(func.max(C.c.id))).scalar() or 0,
    )


def _stamp(conn: Connection, org_id: int) -> int:
    """The organisation's latest audit event: every change that refreshes the list itself (a
    merge, an undo, a removal, an erasure, a rename) writes one."""
    return conn.execute(select(func.max(A.c.id)).where(A.c.org_id == org_id)).scalar() or 0


def _hold_list(conn: Connection, org_id: int) -> None:
    """On PostgreSQL, the organisation's stored list exclusively until commit: a scheduler
    refresh that searched outside it and a merge that refreshes inside its own transaction
    never write their rows over each other (SQLite has one writer anyway)."""
    digest = hashlib.sha256(f"duplicates:{org_id}".encode()).digest()
    advisory_locks(conn, [(int.from_bytes(digest[:8], "big", signed=True), True)])


def refresh(conn: Connection, org_id: int, contact_ids=None) -> dict:
    """Bring the stored candidates up to date, in the caller's transaction: for the pairs with
    one of `contact_ids` (merged, restored, whose mail was removed or arrived), or all of them
    (None, or too many to look at one by one)."""
    only = None if contact_ids is None else {int(c) for c in contact_ids}
    if only is not None and not only:
        return {"contacts": 0, "candidates": 0, "full": False}
    full = only is None or len(only) > FULL_REFRESH_ABOVE
    _hold_list(conn, org_id)
    if not full and conn.execute(select(SCAN.c.org_id).where(SCAN.c.org_id == org_id)).first() is None:
        return {"contacts": 0, "candidates": 0, "full": False}  # never searched: the first search does all
    marks = _marks(conn, org_id)
    found = _gather(conn, org_id, None if full else only)
    return _store(conn, org_id, found, None if full else only, marks)


def _store(conn: Connection, org_id: int, found: _Found, only: set[int] | None, marks: tuple[int, int]) -> dict:
    rows = _scored(found)
    if only is None:
        conn.execute(delete(SC).where(SC.c.org_id == org_id))
    else:
        for part in chunks(sorted(only)):
            conn.execute(
                delete(SC).where(SC.c.org_id == org_id, or_(SC.c.contact_a.in_(part), SC.c.contact_b.in_(part)))
            )
    for part in chunks(rows):
        conn.execute(insert(SC), [{"org_id": org_id, **r} for r in part])
    now = utcnow()
    if only is None:
        values = {
            "refreshed_at": now,
            "full_at": now,
            "participant_mark": marks[0],
            "contact_mark": marks[1],
            "interaction_mark": found.interaction_mark,
            "announcements": found.announcements,
        }
        if conn.execute(update(SCAN).where(SCAN.c.org_id == org_id).values(**values)).rowcount == 0:
            conn.execute(insert(SCAN).values(org_id=org_id, **values))
    else:
        conn.execute(update(SCAN).where(SCAN.c.org_id == org_id).values(refreshed_at=now))
    return {"contacts": None if only is None else len(only), "candidates": len(rows), "full": only is None}


def refresh_due(engine, *, now: datetime | None = None) -> list[dict]:
    """The scheduler's job, per organisation: the contacts of the participant rows and the
    contacts created since the last look are checked again; every FULL_REFRESH_SECONDS (or if
    never searched) the whole organisation is. Ids are the marks: on PostgreSQL a row whose
    transaction committed after a later id was read is caught by the next full search.

    The search reads outside the write transaction (on SQLite a write transaction stops every
    sync for as long as it lasts: seconds, for a whole organisation); its rows are written only
    if nothing that refreshes the list itself happened meanwhile, else searched again inside."""
    from app.db import read_only, write_transaction
    from app.models import Organisation

    now = now or utcnow()
    with read_only(engine) as conn:
        orgs = list(conn.execute(select(Organisation.__table__.c.id)).scalars())
    done = []
    for org_id in orgs:
        with read_only(engine) as conn:
            scan = conn.execute(select(SCAN).where(SCAN.c.org_id == org_id)).mappings().first()
            full_at = scan["full_at"] if scan else None
            if full_at is not None and full_at.tzinfo is None:
                full_at = full_at.replace(tzinfo=timezone.utc)
            stamp = _stamp(conn, org_id)
            # The marks first: rows written while this runs are looked at next time.
            marks = _marks(conn, org_id)
            only: set[int] | None = None
            if scan is not None and full_at is not None and (now - full_at).total_seconds() < FULL_REFRESH_SECONDS:
                only = set(
                    conn.execute(
                        select(P.c.contact_id)
                        .distinct()
                        .where(
                            P.c.org_id == org_id,
                            P.c.id > scan["participant_mark"],
                            P.c.id <= marks[0],
                            P.c.contact_id.is_not(None),
                        )
                    ).scalars()
                )
                only.update(
                    conn.execute(
                        select(C.c.id).where(C.c.org_id == org_id, C.c.id > scan["contact_mark"], C.c.id <= marks[1])
                    ).scalars()
                )
                if len(only) > FULL_REFRESH_ABOVE:
                    only = None
            found = _gather(conn, org_id, only) if only is None or only else _Found(set())
        with write_transaction(engine) as conn:
            _hold_list(conn, org_id)
            if _stamp(conn, org_id) != stamp:
                result = refresh(conn, org_id, only)  # changed meanwhile: search again, inside
            else:
                result = _store(conn, org_id, found, only, marks)
            if only is not None:
                conn.execute(
                    update(SCAN)
                    .where(SCAN.c.org_id == org_id)
                    .values(refreshed_at=utcnow(), participant_mark=marks[0], contact_mark=marks[1])
                )
            done.append({"org_id": org_id, **result})
    return done


def scheduled_jobs(rt) -> list[tuple[str, object, float]]:
    """What the scheduler runs for duplicates (sync/scheduler.py SyncService jobs)."""
    return [("duplicate-candidates", lambda: refresh_due(rt.engine), REFRESH_SECONDS)]


def freshness(conn: Connection, org_id: int) -> dict:
    """How fresh the stored list is, for the console: when it was brought up to date, when the
    whole organisation was last searched, and the participant rows that arrived since."""
    scan = conn.execute(select(SCAN).where(SCAN.c.org_id == org_id)).mappings().first()
    if scan is None:
        return {"refreshed_at": None, "full_at": None, "waiting": None, "every_seconds": REFRESH_SECONDS}
    waiting = conn.execute(
        select(func.count()).select_from(P).where(P.c.org_id == org_id, P.c.id > scan["participant_mark"])
    ).scalar()
    return {
        "refreshed_at": scan["refreshed_at"],
        "full_at": scan["full_at"],
        "waiting": waiting,
        "every_seconds": REFRESH_SECONDS,
    }


def candidates(rt, org_id: int, *, limit: int = 200) -> list[dict]:
    """The stored candidates (what `find_candidates` would say, as of the last refresh),
    most likely first, without those dismissed. The first view of an organisation never
    searched searches it once."""
    from app.db import read_only, write_transaction

    with read_only(rt.engine) as conn:
        searched = conn.execute(select(SCAN.c.org_id).where(SCAN.c.org_id == org_id)).first() is not None
    if not searched:
        with write_transaction(rt.engine) as conn:
            if conn.execute(select(SCAN.c.org_id).where(SCAN.c.org_id == org_id)).first() is None:
                refresh(conn, org_id)
    with read_only(rt.engine) as conn:
        return stored_candidates(conn, org_id, limit=limit)


def stored_candidates(conn: Connection, org_id: int, *, limit: int = 200) -> list[dict]:
    dismissed = exists().where(D.c.org_id == org_id, D.c.contact_a == SC.c.contact_a, D.c.contact_b == SC.c.contact_b)
    rows = [
        dict(r)
        for r in conn.execute(
            select(SC.c.contact_a, SC.c.contact_b, SC.c.confidence, SC.c.keep_hint, SC.c.evidence)
            .where(SC.c.org_id == org_id, ~dismissed)
            .order_by(desc(SC.c.confidence), SC.c.contact_a, SC.c.contact_b)
            .limit(_bounded(limit))
        ).mappings()
    ]
    return _shown(conn, org_id, rows, limit)


def dismiss(rt, actor: Actor, contact_id: int, other_id: int) -> dict:
    """Remember that these two contacts are different people: never proposed again."""
    if contact_id == other_id:
        raise Invalid("a contact cannot be a duplicate of itself", field="other_id")
    a, b = _pair(int(contact_id), int(other_id))
    with changing(rt.engine, actor) as conn:
        _existing(conn, actor.org_id, [a, b])
        known = conn.execute(
            select(D.c.contact_a).where(D.c.org_id == actor.org_id, D.c.contact_a == a, D.c.contact_b == b)
        ).first()
        if known is None:
            conn.execute(
                insert(D).values(
                    org_id=actor.org_id, contact_a=a, contact_b=b, dismissed_by=actor.user_id, dismissed_at=utcnow()
                )
            )
            audit.record(
                conn,
                actor.org_id,
                actor.user_id,
                "contact.duplicate_dismiss",
                f"contacts {a} and {b}",
                {"contact_ids": [a, b]},
            )
    return {"contact_ids": [a, b], "dismissed": True}


def _existing(conn: Connection, org_id: int, ids: list[int], *, lock: bool = False) -> dict[int, dict]:
    query = select(C).where(C.c.org_id == org_id, C.c.id.in_(ids)).order_by(C.c.id)
    if lock and conn.dialect.name == "postgresql":
        # Row locks, in id order: an ingest batch that is writing mail for either contact
        # (its participant rows' foreign keys share-lock the contact) finishes first, and one
        # that starts now waits for the merge and then retries with the contact it finds.
        query = query.with_for_update()
    rows = {r["id"]: dict(r) for r in conn.execute(query).mappings()}
    for cid in ids:
        if cid not in rows:
            raise NotFound(f"no contact {cid} in this organisation", field="contact_id")
    return rows


# -- merge ----------------------------------------------------------------------------------


def _jsonable(row: dict) -> dict:
    return {k: _when(v) for k, v in row.items()}


def merge(rt, actor: Actor, keep_id: int, merge_id: int) -> dict:
    """Merge contact `merge_id` into `keep_id`, in one transaction, audited; undo with `unmerge`."""
    keep_id, merge_id = int(keep_id), int(merge_id)
    if keep_id == merge_id:
        raise Invalid("choose two different contacts", field="merge_id")
    with changing(rt.engine, actor) as conn:
        org_id = actor.org_id
        rows = _existing(conn, org_id, [keep_id, merge_id], lock=True)
        survivor, loser = rows[keep_id], rows[merge_id]
        record = _move(conn, org_id, survivor, loser)
        refresh(conn, org_id, [keep_id, merge_id])
        merge_row = conn.execute(
            insert(M)
            .values(
                org_id=org_id,
                survivor_id=keep_id,
                loser_id=merge_id,
                state=MergeState.MERGED,
                record=record,
                merged_at=utcnow(),
                merged_by=actor.user_id,
            )
            .returning(M.c.id)
        ).scalar_one()
        counts = {k: len(record[k]) for k in ("addresses", "participants", "followups", "deals_moved", "deals_dropped")}
        audit.record(
            conn,
            org_id,
            actor.user_id,
            MERGE_ACTION,
            f"contact {merge_id} into {keep_id}",
            {"merge_id": merge_row, "survivor_id": keep_id, "loser_id": merge_id, **counts},
        )
        # The event just written in this transaction (another merge's is not visible until it commits).
        audit_id = conn.execute(
            select(A.c.id).where(A.c.org_id == org_id, A.c.action == MERGE_ACTION).order_by(desc(A.c.id)).limit(1)
        ).scalar_one()
        conn.execute(update(M).where(M.c.id == merge_row).values(audit_id=audit_id))
    return {"merge_id": merge_row, "audit_id": audit_id, "survivor_id": keep_id, "loser_id": merge_id, "moved": counts}


def _move(conn: Connection, org_id: int, survivor: dict, loser: dict) -> dict:
    keep, gone = survivor["id"], loser["id"]
    before = {f: survivor[f] for f in _SURVIVOR_FIELDS}
    after = dict(before)
    for f in ("name", "title", "phone", "stage", "owner_id", "company_id"):
        if not after[f] and loser[f]:
            after[f] = loser[f]
    if not before["name"] and after["name"]:
        after["search_name"] = loser["search_name"] or after["name"].lower()
    after["tags"] = list(dict.fromkeys(list(before["tags"] or []) + list(loser["tags"] or [])))
    after["key_account"] = bool(before["key_account"] or loser["key_account"])

    addresses = list(
        conn.execute(select(CA.c.id).where(CA.c.org_id == org_id, CA.c.contact_id == gone).order_by(CA.c.id)).scalars()
    )
    participants = list(
        conn.execute(select(P.c.id).where(P.c.org_id == org_id, P.c.contact_id == gone).order_by(P.c.id)).scalars()
    )
    # Participant rows carry their contact's company (for company timelines): both contacts'
    # rows take the survivor's; each changed row keeps its former company for the undo.
    companies = [
        [pid, company]
        for pid, company in conn.execute(
            select(P.c.id, P.c.company_id)
            .where(P.c.org_id == org_id, P.c.contact_id.in_([keep, gone]))
            .order_by(P.c.id)
        )
        if company != after["company_id"]
    ]
    followups = list(
        conn.execute(select(FU.c.id).where(FU.c.org_id == org_id, FU.c.contact_id == gone).order_by(FU.c.id)).scalars()
    )
    # A follow-up of mail carries its message's company, as the participant row does: both
    # contacts' take the survivor's, each keeping its former company for the undo.
    followup_companies = [
        [fid, company]
        for fid, company in conn.execute(
            select(FU.c.id, FU.c.company_id).where(_mail_followups(org_id, [keep, gone])).order_by(FU.c.id)
        )
        if company != after["company_id"]
    ]
    deals = list(conn.execute(select(DC.c.deal_id).where(DC.c.org_id == org_id, DC.c.contact_id == gone)).scalars())
    on_both = set(
        conn.execute(
            select(DC.c.deal_id).where(DC.c.org_id == org_id, DC.c.contact_id == keep, DC.c.deal_id.in_(deals or [-1]))
        ).scalars()
    )
    deals_moved = sorted(d for d in deals if d not in on_both)
    deals_dropped = sorted(on_both)

    conn.execute(update(CA).where(CA.c.org_id == org_id, CA.c.contact_id == gone).values(contact_id=keep))
    for part in chunks(participants):
        conn.execute(update(P).where(P.c.id.in_(part)).values(contact_id=keep))
    conn.execute(update(P).where(P.c.org_id == org_id, P.c.contact_id == keep).values(company_id=after["company_id"]))
    conn.execute(update(FU).where(FU.c.org_id == org_id, FU.c.contact_id == gone).values(contact_id=keep))
    conn.execute(update(FU).where(_mail_followups(org_id, [keep])).values(company_id=after["company_id"]))
    if deals_moved:
        conn.execute(update(DC).where(DC.c.contact_id == gone, DC.c.deal_id.in_(deals_moved)).values(contact_id=keep))
    if deals_dropped:
        conn.execute(delete(DC).where(DC.c.contact_id == gone, DC.c.deal_id.in_(deals_dropped)))
    changed = {f: after[f] for f in _SURVIVOR_FIELDS if after[f] != before[f]}
    if changed:
        conn.execute(update(C).where(C.c.id == keep).values(**changed))
    # The loser's summaries go with it; the survivor's are counted again from its rows.
    stats.recompute(conn, org_id, [gone])  # deletes them: it has no participant rows left
    conn.execute(delete(C).where(C.c.id == gone))
    stats.recompute(conn, org_id, [keep])
    return {
        "loser": _jsonable(loser),
        "survivor_before": before,
        "survivor_after": after,
        "addresses": addresses,
        "participants": participants,
        "participant_companies": companies,
        "followups": followups,
        "followup_companies": followup_companies,
        "deals_moved": deals_moved,
        "deals_dropped": deals_dropped,
    }


def _mail_followups(org_id: int, contact_ids: list[int]):
    """The follow-ups these contacts have for mail (a quiet key account's row has no company of its own)."""
    return and_(FU.c.org_id == org_id, FU.c.contact_id.in_(contact_ids), FU.c.kind != FollowUpKind.QUIET)


# -- undo -----------------------------------------------------------------------------------


def merges_of(conn: Connection, org_id: int, *, limit: int = 50) -> list[dict]:
    """The latest merges, for the console: who, when, what state, and the audit id to undo."""
    out = []
    for r in conn.execute(
        select(M.c.id, M.c.survivor_id, M.c.loser_id, M.c.audit_id, M.c.state, M.c.merged_at, M.c.record)
        .where(M.c.org_id == org_id)
        .order_by(desc(M.c.id))
        .limit(limit)
    ).mappings():
        loser = (r["record"] or {}).get("loser") or {}
        out.append(
            {
                "merge_id": r["id"],
                "audit_id": r["audit_id"],
                "survivor_id": r["survivor_id"],
                "loser_id": r["loser_id"],
                "loser_email": loser.get("primary_email"),
                "loser_name": loser.get("name"),
                "state": r["state"],
                "merged_at": r["merged_at"],
            }
        )
    return out


def unmerge(rt, actor: Actor, audit_id: int) -> dict:
    """Undo the merge recorded by this audit event: the merged contact comes back with exactly
    the rows the merge moved (those still there), and the survivor's own fields as they were."""
    with changing(rt.engine, actor) as conn:
        org_id = actor.org_id
        exclusions.hold_to_apply(conn, org_id)  # first: the rules it re-applies stay (sync/exclusions.py)
        event = conn.execute(
            select(A.c.action, A.c.detail).where(A.c.org_id == org_id, A.c.id == int(audit_id))
        ).first()
        if event is None or event.action != MERGE_ACTION:
            raise NotFound(f"no merge recorded as audit event {audit_id}", field="audit_id")
        merge_id = (event.detail or {}).get("merge_id")
        row = conn.execute(select(M).where(M.c.org_id == org_id, M.c.id == merge_id)).mappings().first()
        if row is None:
            raise NotFound(f"no merge recorded as audit event {audit_id}", field="audit_id")
        if row["state"] == MergeState.UNDONE:
            raise Conflict("this merge was already undone")
        if row["state"] == MergeState.VOID:
            raise Conflict("this merge cannot be undone: the merged contact was erased or removed since")
        keep, gone, record = row["survivor_id"], row["loser_id"], dict(row["record"])
        found = conn.execute(select(C.c.id).where(C.c.org_id == org_id, C.c.id == keep))
        if conn.dialect.name == "postgresql":
            found = conn.execute(select(C.c.id).where(C.c.org_id == org_id, C.c.id == keep).with_for_update())
        if found.first() is None:
            later = conn.execute(
                select(M.c.audit_id).where(M.c.org_id == org_id, M.c.loser_id == keep, M.c.state == MergeState.MERGED)
            ).scalar()
            hint = f": undo audit event {later} (its later merge) first" if later else ""
            raise Conflict(f"this merge cannot be undone: contact {keep} no longer exists{hint}")
        result = _restore(conn, org_id, rt.box, keep, gone, record)
        refresh(conn, org_id, [keep, gone, result["contact_id"]])
        conn.execute(
            update(M)
            .where(M.c.id == merge_id)
            .values(state=MergeState.UNDONE, undone_at=utcnow(), loser_id=result["contact_id"])
        )
        audit.record(
            conn,
            org_id,
            actor.user_id,
            UNMERGE_ACTION,
            f"contact {result['contact_id']} out of {keep}",
            {
                "merge_id": merge_id,
                "merge_audit_id": int(audit_id),
                **{k: v for k, v in result.items() if k != "contact_id"},
            },
        )
    return {"merge_id": merge_id, "survivor_id": keep, **result}


def _restore(conn: Connection, org_id: int, box, keep: int, gone: int, record: dict) -> dict:
    # Addresses the organisation stopped logging since (a "never log" rule, an erasure) stay
    # out: the undo must not make them a contact again.
    rules = exclusions.load(conn, org_id, box)
    addresses = dict(
        conn.execute(
            select(CA.c.id, CA.c.address).where(
                CA.c.org_id == org_id, CA.c.contact_id == keep, CA.c.id.in_(record["addresses"] or [-1])
            )
        )
        .tuples()
        .all()
    )
    banned = {i for i, a in addresses.items() if rules.org.matches(a) or rules.is_erased(org_id, a)}
    returning = {i: a for i, a in addresses.items() if i not in banned}
    if not returning:
        raise Conflict(
            "this merge cannot be undone: none of the merged contact's addresses is still logged "
            "(erased or excluded by a rule since)"
        )
    loser = dict(record["loser"])
    taken = conn.execute(select(C.c.id).where(C.c.id == loser["id"])).first() is not None
    values = {k: v for k, v in loser.items() if k != "id" or not taken}
    values["created_at"] = datetime.fromisoformat(loser["created_at"]) if loser.get("created_at") else utcnow()
    values["primary_email"] = (
        loser["primary_email"] if loser["primary_email"] in returning.values() else sorted(returning.values())[0]
    )
    company = loser.get("company_id")
    if company is not None and company not in _companies_still_there(conn, org_id, [company]):
        values["company_id"] = None  # its company was removed since
    restored = conn.execute(insert(C).values(**values).returning(C.c.id)).scalar_one()

    conn.execute(update(CA).where(CA.c.id.in_(list(returning))).values(contact_id=restored))
    if banned:
        conn.execute(delete(CA).where(CA.c.id.in_(sorted(banned))))
    moved = 0
    for part in chunks(record["participants"]):
        moved += conn.execute(
            update(P).where(P.c.org_id == org_id, P.c.id.in_(part), P.c.contact_id == keep).values(contact_id=restored)
        ).rowcount
    # Mail that reached the merged addresses after the merge was filed under the survivor; it
    # follows its address back, as if the merge had never been.
    later = 0
    for part in chunks(sorted(returning.values())):
        later += conn.execute(
            update(P)
            .where(P.c.org_id == org_id, P.c.contact_id == keep, P.c.address.in_(part))
            .values(contact_id=restored)
        ).rowcount
    before, after = record["survivor_before"], record["survivor_after"]
    by_company: dict = defaultdict(list)
    alive = _companies_still_there(conn, org_id, [c for _, c in record["participant_companies"]])
    for pid, company in record["participant_companies"]:
        by_company[company if company in alive else None].append(pid)  # a company gone since: none
    for company, pids in by_company.items():
        for part in chunks(pids):
            conn.execute(
                update(P)
                .where(P.c.org_id == org_id, P.c.id.in_(part), P.c.company_id == after["company_id"])
                .values(company_id=company)
            )
    loser_company = values.get("company_id")
    if loser_company != after["company_id"] and later:
        # Mail that reached the loser's addresses since the merge carries the survivor's company.
        recorded = {pid for pid, _ in record["participant_companies"]}
        newer = [
            pid
            for pid in conn.execute(
                select(P.c.id).where(
                    P.c.org_id == org_id, P.c.contact_id == restored, P.c.company_id == after["company_id"]
                )
            ).scalars()
            if pid not in recorded
        ]
        for part in chunks(newer):
            conn.execute(update(P).where(P.c.id.in_(part)).values(company_id=loser_company))
    conn.execute(
        update(FU)
        .where(FU.c.org_id == org_id, FU.c.contact_id == keep, FU.c.id.in_(record["followups"] or [-1]))
        .values(contact_id=restored)
    )
    _restore_followups(conn, org_id, keep, restored, record, returning.values(), loser_company)
    if record["deals_moved"]:
        conn.execute(
            update(DC)
            .where(DC.c.contact_id == keep, DC.c.deal_id.in_(record["deals_moved"]))
            .values(contact_id=restored)
        )
    existing_deals = set(
        conn.execute(
            select(DEAL.c.id).where(DEAL.c.org_id == org_id, DEAL.c.id.in_(record["deals_dropped"] or [-1]))
        ).scalars()
    )
    for deal_id in record["deals_dropped"]:
        if deal_id in existing_deals:  # the deal still exists: the loser was on it too
            conn.execute(insert(DC).values(deal_id=deal_id, contact_id=restored, org_id=org_id))
    # The survivor's own fields as they were, where nobody changed them since the merge.
    current = conn.execute(select(C).where(C.c.id == keep)).mappings().one()
    reverted = {f: before[f] for f in _SURVIVOR_FIELDS if before[f] != after[f] and _same(current[f], after[f])}
    if reverted:
        conn.execute(update(C).where(C.c.id == keep).values(**reverted))
    stats.recompute(conn, org_id, [keep, restored])
    return {
        "contact_id": restored,
        "addresses": len(returning),
        "addresses_not_restored": len(banned),
        "participants": moved,
        "later_participants": later,
    }


def _companies_still_there(conn: Connection, org_id: int, company_ids) -> set[int]:
    """Which of the companies a merge recorded are still the organisation's. By id within the
    organisation: SQLite gives a deleted row's id to the next row made, which may be another
    organisation's company."""
    wanted = sorted({c for c in company_ids if c is not None})
    if not wanted:
        return set()
    return set(conn.execute(select(CO.c.id).where(CO.c.org_id == org_id, CO.c.id.in_(wanted))).scalars())


def _restore_followups(conn: Connection, org_id: int, keep: int, restored: int, record: dict, addresses, company):
    """Follow-ups as their mail is after the undo: the companies the merge changed back, and those
    opened since the merge by mail from the merged addresses on the merged contact, at its company."""
    after = record["survivor_after"]["company_id"]
    recorded_followups = record.get("followup_companies", [])  # merges recorded before kept none
    alive = _companies_still_there(conn, org_id, [c for _, c in recorded_followups])
    by_company: dict = defaultdict(list)
    for fid, former in recorded_followups:
        by_company[former if former in alive else None].append(fid)  # a company gone since: none
    for former, fids in by_company.items():
        for part in chunks(fids):
            conn.execute(
                update(FU)
                .where(FU.c.org_id == org_id, FU.c.id.in_(part), FU.c.company_id == after)
                .values(company_id=former)
            )
    recorded = set(record["followups"])
    for part in chunks(sorted(addresses)):
        later = [
            fid
            for fid in conn.execute(
                select(FU.c.id).where(_mail_followups(org_id, [keep]), FU.c.address.in_(part))
            ).scalars()
            if fid not in recorded
        ]
        if later:
            conn.execute(update(FU).where(FU.c.id.in_(later)).values(contact_id=restored, company_id=company))


def _same(a, b) -> bool:
    if isinstance(a, list) or isinstance(b, list):
        return list(a or []) == list(b or [])
    return a == b


def contact_ref(conn: Connection, org_id: int, ref: str) -> int:
    """A contact named by its id or by any of its addresses (for the CLI)."""
    ref = ref.strip()
    if ref.isdigit():
        found = conn.execute(select(C.c.id).where(C.c.org_id == org_id, C.c.id == int(ref))).scalar()
    else:
        found = conn.execute(select(CA.c.contact_id).where(CA.c.org_id == org_id, CA.c.address == ref.lower())).scalar()
    if found is None:
        raise NotFound(f"no contact {ref!r} in this organisation", field="contact")
    return int(found)
