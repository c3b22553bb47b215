"""The ingest pipeline: normalised records in, timeline rows out.

One call handles one batch inside the caller's transaction, with bulk
statements (a few queries per batch, none per message). Every write is
idempotent: interactions are unique per (organisation, message key), copies
per (mailbox, folder, remote id), participants per (interaction, address), so
replaying a batch after a crash changes nothing.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable

from sqlalchemy import bindparam, case, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from app.db import (
    advisory_locks,
    bulk_insert_ignore,
    bulk_insert_ignore_returning,
    bulk_insert_new,
    db_time,
)
from app.models import Company, Contact, ContactAddress, Interaction, InteractionSource, Participant
from app.models.base import utcnow
from app.models.timeline import InteractionKind
from connectors.base import MessageRecord
from connectors.normalise import person_name
from sync import addresses as addr, copies, enrichment, followups, reportsums, senders, stats
from sync.exclusions import Exclusions

INTERACTION = Interaction.__table__
PARTICIPANT = Participant.__table__
CONTACT = Contact.__table__
CONTACT_ADDRESS = ContactAddress.__table__
COMPANY = Company.__table__
SOURCE = InteractionSource.__table__
INTERACTION_COLUMNS = (
    "org_id",
    "kind",
    "message_key",
    "occurred_at",
    "direction",
    "subject",
    "snippet",
    "thread_key",
    "from_address",
    "created_at",
    "unverified_sender",
    "automated",
    "recipients_not_kept",
)
PARTICIPANT_COLUMNS = (
    "org_id",
    "interaction_id",
    "occurred_at",
    "address",
    "name",
    "role",
    "user_id",
    "contact_id",
    "company_id",
)
IN_CHUNK = 500  # bound IN (...) lists for both databases
INSERT_CHUNK = 1000  # rows per multi-row INSERT ... RETURNING (10 columns: 10,000 parameters)
# PostgreSQL keeps every lock in one shared table of max_locks_per_transaction (64)
# x max_connections (100) entries: a batch naming more strangers than this locks the
# whole organisation instead of each address.
ADDRESS_LOCKS_MAX = 500


@dataclass(frozen=True)
class OrgContext:
    org_id: int
    internal_domains: frozenset[str]
    users_by_address: dict[str, int]  # users' emails and aliases -> user id
    contact_policy: str = "exchanged"
    visibility: str = "snippet"
    bulk_detection: bool = True
    free_mail: frozenset[str] = addr.FREE_MAIL_DOMAINS
    exclusions: Exclusions = Exclusions()
    phone_region: str | None = None  # default region of signature phones (sync/enrichment.py)
    # The follow-up queue's context held for one sync run (sync/engine.py sets one per run and
    # confirms it after each commit); None: read per batch.
    followups: followups.RunCache | None = field(default=None, compare=False, repr=False)

    def owns(self, address: str) -> bool:
        """Whether an address is the organisation's own: a user's, an alias, an internal domain's."""
        return address in self.users_by_address or addr.is_internal(address, self.internal_domains)


@dataclass(frozen=True)
class MailboxContext:
    mailbox_id: int | None  # None when a rep logs a message by hand
    folder_id: int | None
    owner_id: int
    owner_address: str
    folder_role: str | None = None  # inbox | sent | archive | other; None when logged by hand


@dataclass
class IngestResult:
    imported: int = 0  # copies recorded (new interactions or new copies of known ones)
    new_interactions: int = 0
    new_contacts: int = 0
    skipped: Counter = field(default_factory=Counter)
    skipped_items: list[tuple[str, str]] = field(default_factory=list)  # (remote id, reason), sync/skipped.py
    copies: Counter = field(default_factory=Counter)  # folder id -> copy rows this batch inserted
    enriched: int = 0  # contacts whose fields a signature changed
    enrichment_failed: int = 0  # batches whose signatures could not be applied (the mail is kept)


@dataclass
class _Prepared:
    record: MessageRecord
    direction: str
    people: list[tuple[str, str, str]]  # (address, name, role), internal and external
    external: list[str]
    auto_reply: bool  # kept on the timeline, but never creates contacts
    unverified: bool = False  # claims an internal sender nothing vouched for (sync/senders.py): kept as received


def thread_key(r: MessageRecord) -> str:
    """The thread a message belongs to: the first Message-ID of its References (the thread's
    first message, the same in every copy from any source), else the one it replies to, else
    the source's conversation id (Graph gives no References), else the message itself.
    (Gmail mail with neither References nor In-Reply-To may join a thread of its mailbox
    instead: see _gmail_threads.)"""
    if r.references:
        key = r.references[0]
    elif r.in_reply_to:
        key = r.in_reply_to
    elif r.conversation:
        key = "conversation:" + r.conversation
    else:
        key = r.message_key
    return key[:500]


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _internal(org: OrgContext, address: str) -> bool:
    return org.owns(address)


# Per organisation of the last call: address -> internal?, and the classification
# of each distinct set of addresses. A sync asks about the same few hundred
# addresses, and the same participant lists, tens of thousands of times.
_memo: tuple = (None, {}, {})


def _memos(org: OrgContext) -> tuple[dict[str, bool], dict[tuple, tuple | str]]:
    global _memo
    memo_org, internal, classified = _memo
    if memo_org is not org or len(internal) > 100_000 or len(classified) > 50_000:
        internal, classified = {}, {}
        _memo = (org, internal, classified)
    return internal, classified


def _internal_map(org: OrgContext) -> dict[str, bool]:
    return _memos(org)[0]


def prepare(org: OrgContext, mbx: MailboxContext, record: MessageRecord) -> _Prepared | str:
    """Classify one record, or return the reason it is not kept."""
    _, classified = _memos(org)
    key = (
        mbx.owner_id,
        mbx.owner_address,
        tuple(record.from_),
        tuple(record.to),
        tuple(record.cc),
        tuple(record.bcc),
        tuple(record.reply_to),
    )
    found = classified.get(key)
    if found is None:
        found = classified[key] = _classify(org, mbx, record)
    if isinstance(found, str):
        return found
    people, external, direction, automated = found
    unverified = False
    if direction == "out":
        sender = next(a for a, _, role in people if role == "from")
        if not senders.vouched(
            record, sender, org.users_by_address.get(sender) == mbx.owner_id, mbx.folder_role, org.internal_domains
        ):
            direction, unverified, automated = "in", True, addr.is_automated_sender(sender)
    # Decided from the message alone, never from what is already stored, so any
    # order of import (batches, crashes, several mailboxes) gives the same timeline.
    if org.bulk_detection and (automated or (record.bulk and _bulk(org, record, direction))):
        return "bulk or automated"
    return _Prepared(record, direction, people, external, record.auto_reply, unverified)


def _bulk(org: OrgContext, record: MessageRecord, direction: str) -> bool:
    """Whether the list headers really mean list mail. Not when the list is the
    organisation's own (a customer writing to a sales@ group), and not
    List-Unsubscribe alone on mail a rep sent (sales sequence tools add it)."""
    signals = set(record.bulk_signals) or {"unspecified"}
    if record.list_id and _internal_list(org, record.list_id):
        signals -= {"list-id", "list-unsubscribe", "precedence"}
    if direction == "out":
        signals.discard("list-unsubscribe")
    return bool(signals)


def _internal_list(org: OrgContext, list_id: str) -> bool:
    return any(list_id == d or list_id.endswith("." + d) for d in org.internal_domains)


def _classify(org: OrgContext, mbx: MailboxContext, record: MessageRecord) -> tuple | str:
    """What prepare() decides from the addresses alone: the reason to drop the
    message, or (people, external, direction, automated sender)."""
    people: dict[str, tuple[str, str]] = {}
    normalise, display_name = addr.normalise, addr.display_name
    for role, pairs in (("from", record.from_), ("to", record.to), ("cc", record.cc), ("bcc", record.bcc)):
        for name, raw in pairs:
            address = normalise(raw)
            if address and address not in people:
                people[address] = (display_name(name, address) if name else "", role)
    sender = next((a for a, (_, role) in people.items() if role == "from"), None)
    if sender is None:
        return "invalid sender address"
    internal = _internal_map(org)
    if record.reply_to and sender not in org.users_by_address and _is_internal(org, internal, sender):
        # A group (sales@) that rewrote the From of a customer whose domain has a
        # strict DMARC policy: "'Jane' via Sales <sales@ourco.com>", Jane in Reply-To.
        people = _unwrap_group_sender(org, internal, people, sender, record.reply_to)
        sender = next(a for a, (_, role) in people.items() if role == "from")
    external = [a for a in people if not _is_internal(org, internal, a)]
    if not external:
        return "internal"
    ex = org.exclusions
    if ex.erased:
        gone = [a for a in external if ex.is_erased(org.org_id, a)]
        if gone:
            # An erased person never comes back, not even as a bare address.
            for a in gone:
                del people[a]
            external = [a for a in external if a not in gone]
            if not external:
                return "erased person"
    if (ex.org or ex.by_user) and any(ex.excluded(a, mbx.owner_id) for a in external):
        return "excluded by rule"
    direction = "out" if internal[sender] else "in"
    automated = direction == "in" and addr.is_automated_sender(sender)
    users, owner_id = org.users_by_address, mbx.owner_id
    for a in people:
        if users.get(a) == owner_id:
            break
    else:
        # The owner got it without being named (Bcc, a list): still their copy.
        people[mbx.owner_address] = ("", "bcc")
    return [(a, n, r) for a, (n, r) in people.items()], external, direction, automated


def _is_internal(org: OrgContext, internal: dict[str, bool], address: str) -> bool:
    known = internal.get(address)
    if known is None:
        known = internal[address] = _internal(org, address)
    return known


def _unwrap_group_sender(org, internal, people: dict, group: str, reply_to) -> dict:
    for name, raw in reply_to:
        address = addr.normalise(raw)
        if address and not _is_internal(org, internal, address):
            group_name = people[group][0]
            if not name and " via " in group_name:
                name = group_name.rsplit(" via ", 1)[0].strip().strip("'\"")
            rest = {a: v for a, v in people.items() if a not in (address, group)}
            return {address: (addr.display_name(name, address) if name else "", "from"), group: ("", "to"), **rest}
    return people


def _wanted_contacts(org: OrgContext, p: _Prepared) -> Iterable[str]:
    """External addresses the organisation's policy turns into contacts."""
    if p.auto_reply or org.contact_policy == "none":
        return ()
    roles = {a: r for a, _, r in p.people}
    if org.contact_policy == "all":
        return p.external
    if p.direction == "out":
        return [a for a in p.external if roles[a] in ("to", "cc", "bcc")]
    if org.contact_policy == "exchanged":
        return [a for a in p.external if roles[a] == "from"]
    return ()


def _chunked(items: list, size: int = IN_CHUNK):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def existing_contacts(
    conn: Connection, org_id: int, addresses: list[str]
) -> tuple[dict[str, tuple[int, int | None]], set[str]]:
    """Known contacts by address, and the addresses whose contact has no name yet."""
    found: dict[str, tuple[int, int | None]] = {}
    unnamed: set[str] = set()
    for chunk in _chunked(addresses):
        rows = conn.execute(
            select(CONTACT_ADDRESS.c.address, CONTACT.c.id, CONTACT.c.company_id, CONTACT.c.name)
            .join(CONTACT, CONTACT.c.id == CONTACT_ADDRESS.c.contact_id)
            .where(CONTACT_ADDRESS.c.org_id == org_id, CONTACT_ADDRESS.c.address.in_(chunk))
        )
        for address, contact_id, company_id, name in rows:
            found[address] = (contact_id, company_id)
            if not name:
                unnamed.add(address)
    return found, unnamed


def _lock_key(*parts) -> int:
    digest = hashlib.blake2b("\0".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_addresses(conn: Connection, org_id: int, exclusive, shared=()) -> None:
    """On PostgreSQL, serialise per organisation and address the writers that make
    an address a contact (exclusive) with those that record it without a contact
    (shared), until each commits. Without this, a contact made by one worker links
    only the committed participant rows: those another worker has written but not
    yet committed would keep contact_id NULL for good. SQLite has one writer."""
    if conn.dialect.name != "postgresql":
        return
    keys = {_lock_key(org_id, a): True for a in exclusive}
    for a in shared:
        keys.setdefault(_lock_key(org_id, a), False)
    org_key = _lock_key("org", org_id)
    if len(keys) > ADDRESS_LOCKS_MAX:
        advisory_locks(conn, [(org_key, True)])
    elif keys:
        # The organisation's key first, then addresses in key order: one order for everyone.
        advisory_locks(conn, [(org_key, False), *sorted(keys.items())])


def lock_organisation(conn: Connection, org_id: int) -> None:
    """On PostgreSQL, the organisation's key exclusively until commit: every writer that makes or
    records contacts waits (they take it shared first). For a bulk import, whose per-address
    locks would otherwise pile up in one transaction past the server's lock table."""
    if conn.dialect.name == "postgresql":
        advisory_locks(conn, [(_lock_key("org", org_id), True)])


def _companies(conn: Connection, org: OrgContext, domains: set[str]) -> dict[str, int]:
    if not domains:
        return {}
    out = {}
    for chunk in _chunked(sorted(domains)):
        rows = conn.execute(
            select(COMPANY.c.domain, COMPANY.c.id).where(COMPANY.c.org_id == org.org_id, COMPANY.c.domain.in_(chunk))
        )
        out.update(dict(rows.all()))
    # Only the domains not there yet: an INSERT ... ON CONFLICT DO NOTHING of a batch's every
    # domain is one round trip per row on PostgreSQL (psycopg2's executemany), 3.5 s of a
    # 20,000-row import whose 2,000 domains all exist after the first batches (bench/imports.py).
    missing = sorted(domains - set(out))
    if missing:
        now = db_time(conn, utcnow())
        bulk_insert_ignore(
            conn,
            COMPANY,
            ("org_id", "domain", "name", "created_at"),
            [(org.org_id, d, addr.company_name(d), now) for d in missing],
        )
        for chunk in _chunked(missing):
            rows = conn.execute(
                select(COMPANY.c.domain, COMPANY.c.id).where(
                    COMPANY.c.org_id == org.org_id, COMPANY.c.domain.in_(chunk)
                )
            )
            out.update(dict(rows.all()))
    return out


def create_contacts(
    conn: Connection,
    org: OrgContext,
    wanted: dict[str, str],
    *,
    created: set[str] | None = None,
    org_locked: bool = False,
    columns: dict[str, dict] | None = None,
) -> dict[str, tuple[int, int | None]]:
    """Create contacts (and their companies) for address -> display name; returns their ids.
    `created` receives the addresses this call made: one another writer made
    first is not made again, its contact's ids are returned.

    Participants recorded before the contact existed are linked to it, so a
    person who becomes a contact later brings their whole history along.
    """
    if not wanted:
        return {}
    if not org_locked:  # the caller holds lock_organisation() otherwise
        lock_addresses(conn, org.org_id, wanted)
    domains = {d for d in (addr.company_domain(a, org.free_mail) for a in wanted) if d}
    company_ids = _companies(conn, org, domains)
    now = utcnow()
    made: dict[str, tuple[int, int | None]] = {}
    ordered = sorted(wanted)
    rows: list[dict] = []
    for address in ordered:
        person = person_name(wanted[address])  # "Adams, Rory" -> Rory Adams; "Dr." apart
        name = person.name
        domain = addr.company_domain(address, org.free_mail)
        rows.append(
            {
                "org_id": org.org_id,
                "name": name,
                "search_name": name.lower(),
                "honorific": person.honorific,
                "name_suffix": person.suffix,
                "primary_email": address,
                "company_id": company_ids.get(domain) if domain else None,
                "tags": [],
                "created_at": now,
                # the caller's own values for the new row (an import's name, title, stage...):
                # written by the INSERT instead of an UPDATE after it
                **(columns or {}).get(address, {}),
            }
        )
    # RETURNING without an order guarantee lets both databases batch the rows
    # into multi-row INSERTs; each row carries its own key back.
    by_email = {row["primary_email"]: row for row in rows}
    for contact_id, email in conn.execute(CONTACT.insert().returning(CONTACT.c.id, CONTACT.c.primary_email), rows):
        made[email] = (contact_id, by_email[email]["company_id"])
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    won = set(
        conn.execute(
            dialect.insert(CONTACT_ADDRESS).on_conflict_do_nothing().returning(CONTACT_ADDRESS.c.address),
            [{"org_id": org.org_id, "contact_id": made[a][0], "address": a} for a in ordered],
        ).scalars()
    )
    lost = [a for a in ordered if a not in won]
    if lost:
        # Another writer made these first (the locks above leave only writers that
        # take none, none of which exists today): keep theirs, drop ours.
        conn.execute(delete(CONTACT).where(CONTACT.c.id.in_([made.pop(a)[0] for a in lost])))
        made.update(existing_contacts(conn, org.org_id, lost)[0])
    # Only the addresses that have unlinked mail: one UPDATE per address is one round trip per
    # row on PostgreSQL, 3.5 s of a 20,000-row import that has no mail at all (bench/imports.py);
    # a new sender in a sync batch usually has none either (its own mail is recorded after).
    waiting: set[str] = set()
    for chunk in _chunked(sorted(won)):
        waiting.update(
            conn.execute(
                select(PARTICIPANT.c.address)
                .distinct()
                .where(
                    PARTICIPANT.c.org_id == org.org_id,
                    PARTICIPANT.c.address.in_(chunk),
                    PARTICIPANT.c.contact_id.is_(None),
                )
            ).scalars()
        )
    if waiting:
        conn.execute(
            update(PARTICIPANT)
            .where(
                PARTICIPANT.c.org_id == org.org_id,
                PARTICIPANT.c.address == _bind("b_address"),
                PARTICIPANT.c.contact_id.is_(None),
            )
            .values(contact_id=_bind("b_contact"), company_id=_bind("b_company")),
            [{"b_address": a, "b_contact": made[a][0], "b_company": made[a][1]} for a in ordered if a in waiting],
        )
    if created is not None:
        created.update(won)
    return made


def _bind(name: str):
    return bindparam(name)


def _stored_people(
    conn: Connection, interaction_ids: list[int]
) -> tuple[dict[int, list[tuple[int | None, int | None]]], set[tuple[int, str]]]:
    """Committed participants of these interactions: iid -> [(contact, user)], and (iid, address) pairs."""
    people: dict[int, list[tuple[int | None, int | None]]] = {}
    keys: set[tuple[int, str]] = set()
    for chunk in _chunked(interaction_ids):
        for iid, address, contact_id, user_id in conn.execute(
            select(
                PARTICIPANT.c.interaction_id, PARTICIPANT.c.address, PARTICIPANT.c.contact_id, PARTICIPANT.c.user_id
            ).where(PARTICIPANT.c.interaction_id.in_(chunk))
        ):
            people.setdefault(iid, []).append((contact_id, user_id))
            keys.add((iid, address))
    return people, keys


def _drop_nul(record: MessageRecord) -> None:
    """PostgreSQL refuses NUL in text (SQLite keeps it) and parsing can leave one: an
    encoded-word such as =?utf-8?q?=00?=, a body's first bytes. Dropped, like the
    parser drops raw NULs, so one message never fails its folder."""
    if "\x00" in record.message_key:
        record.message_key = record.message_key.replace("\x00", "")
    if record.in_reply_to and "\x00" in record.in_reply_to:
        record.in_reply_to = record.in_reply_to.replace("\x00", "")
    if any("\x00" in r for r in record.references):
        record.references = [r.replace("\x00", "") for r in record.references]
    if record.subject and "\x00" in record.subject:
        record.subject = record.subject.replace("\x00", "")
    if record.snippet and "\x00" in record.snippet:
        record.snippet = record.snippet.replace("\x00", "")
    for pairs in (record.from_, record.to, record.cc, record.bcc, record.reply_to):
        for i, (name, address) in enumerate(pairs):
            if "\x00" in name or "\x00" in address:
                pairs[i] = (name.replace("\x00", ""), address.replace("\x00", ""))


def _recognise_copies(conn: Connection, mbx: MailboxContext, prepared: list[_Prepared]) -> list[tuple[int, str]]:
    """Gmail: a message is recognised within its mailbox by its X-GM-MSGID (provider_id),
    the same in every label and across a change of UIDVALIDITY. A record whose id a stored
    copy of this mailbox carries takes that copy's interaction (its message key), whatever
    key its headers would give now; its copy in this folder, stored under another UID (the
    folder was read again from scratch), is moved to the new one rather than added again.
    Returns those moves: (copy row id, new remote id). The ids are per mailbox (a colleague's
    Gmail numbers the same message otherwise): across mailboxes the message key unites copies."""
    wanted = sorted({p.record.provider_id for p in prepared if p.record.provider_id})
    key_of: dict[str, str] = {}
    here: dict[str, tuple[int, str]] = {}
    I = INTERACTION
    for chunk in _chunked(wanted):
        rows = conn.execute(
            select(SOURCE.c.provider_id, SOURCE.c.folder_id, SOURCE.c.id, SOURCE.c.remote_id, I.c.message_key)
            .join(I, I.c.id == SOURCE.c.interaction_id)
            .where(SOURCE.c.mailbox_id == mbx.mailbox_id, SOURCE.c.provider_id.in_(chunk))
            .order_by(SOURCE.c.id)
        )
        for pid, folder_id, copy_id, remote_id, key in rows:
            if folder_id == mbx.folder_id:
                here[pid] = (copy_id, remote_id)
                key_of[pid] = key  # this folder's own copy says best what the message is
            else:
                key_of.setdefault(pid, key)
    moves: dict[int, str] = {}
    for p in prepared:
        pid = p.record.provider_id
        if not pid or pid not in key_of:
            continue
        p.record.message_key = key_of[pid]
        if pid in here and here[pid][1] != p.record.remote_id:
            moves.setdefault(here[pid][0], p.record.remote_id)
    return list(moves.items())


def _gmail_threads(conn: Connection, mbx: MailboxContext, prepared: list[_Prepared]) -> dict[str, str]:
    """Gmail: message key -> thread key for mail with neither References nor In-Reply-To that
    Gmail put in a thread (X-GM-THRID, provider_thread) holding other mail of this mailbox.

    Thread keys are company-wide (two colleagues' copies of one thread share one, from the
    headers), while Gmail's thread ids differ per account; so the Gmail thread only decides
    where the headers say nothing: such a message joins the thread key of the thread's earliest
    message stored from this mailbox, else of its earliest message in this batch. Mail whose
    headers link it keeps its own (References first, as everywhere)."""
    loose = [
        p.record for p in prepared if p.record.provider_thread and not p.record.references and not p.record.in_reply_to
    ]
    if not loose:
        return {}
    wanted = {r.provider_thread for r in loose if r.provider_thread}
    found: dict[str, tuple[datetime, str]] = {}
    I = INTERACTION
    for chunk in _chunked(sorted(wanted)):
        rows = conn.execute(
            select(SOURCE.c.provider_thread, I.c.occurred_at, I.c.thread_key)
            .join(I, I.c.id == SOURCE.c.interaction_id)
            .where(SOURCE.c.mailbox_id == mbx.mailbox_id, SOURCE.c.provider_thread.in_(chunk))
        )
        for thread, at, key in rows:
            if thread not in found or (at, key) < found[thread]:
                found[thread] = (at, key)
    first_here: dict[str, tuple[datetime, str]] = {}
    for p in prepared:
        r, thread = p.record, p.record.provider_thread
        if thread in wanted and thread not in found:
            candidate = (_utc(r.date), thread_key(r))
            if thread not in first_here or candidate < first_here[thread]:
                first_here[thread] = candidate
    found.update(first_here)
    return {r.message_key: found[r.provider_thread][1] for r in loose if r.provider_thread in found}


def ingest(conn: Connection, org: OrgContext, mbx: MailboxContext, records: list[MessageRecord]) -> IngestResult:
    result = IngestResult()
    prepared: list[_Prepared] = []
    for record in records:
        _drop_nul(record)
        p = prepare(org, mbx, record)
        if isinstance(p, str):
            result.skipped[p] += 1
            result.skipped_items.append((record.remote_id, p))
        else:
            prepared.append(p)
    if not prepared:
        return result
    if any(p.unverified for p in prepared):
        # Two copies of one message in a batch: the vouched-for one makes the row.
        prepared.sort(key=lambda p: p.unverified)
    # Gmail's own ids (X-GM-MSGID, X-GM-THRID), where the connector gave them: the copy recognised
    # by its message id, and mail without References threaded as Gmail threads it.
    moves: list[tuple[int, str]] = []
    gmail_threads: dict[str, str] = {}
    if mbx.mailbox_id is not None:
        if any(p.record.provider_id for p in prepared):
            moves = _recognise_copies(conn, mbx, prepared)
        if any(p.record.provider_thread for p in prepared):
            gmail_threads = _gmail_threads(conn, mbx, prepared)

    # Contacts: known ones, plus the ones the policy creates now.
    all_external = sorted({a for p in prepared for a in p.external})
    contacts, unnamed = existing_contacts(conn, org.org_id, all_external)
    strangers = [a for a in all_external if a not in contacts]
    if strangers and conn.dialect.name == "postgresql":
        # Lock who this batch may make a contact, and who it records without one
        # (see lock_addresses), then read again what others committed meanwhile.
        candidates = {a for p in prepared for a in _wanted_contacts(org, p)}
        lock_addresses(
            conn, org.org_id, [a for a in strangers if a in candidates], [a for a in strangers if a not in candidates]
        )
        found, found_unnamed = existing_contacts(conn, org.org_id, strangers)
        contacts.update(found)
        unnamed |= found_unnamed
    wanted: dict[str, str] = {}
    named: dict[str, str] = {}
    for p in prepared:
        names = {a: n for a, n, _ in p.people}
        for a in _wanted_contacts(org, p):
            if a not in contacts and (a not in wanted or (not wanted[a] and names[a])):
                wanted[a] = names[a]
            elif a in unnamed and names[a] and a not in named:
                named[a] = person_name(names[a]).name
    created: set[str] = set()
    contacts.update(create_contacts(conn, org, wanted, created=created))
    result.new_contacts = len(created)
    if named:
        # The first name seen wins, whichever batch it arrives in (rows in id order:
        # two writers naming the same contacts never wait for each other in a cycle).
        conn.execute(
            update(CONTACT)
            .where(CONTACT.c.id == _bind("b_id"), CONTACT.c.name == "")
            .values(name=_bind("b_name"), search_name=_bind("b_search")),
            sorted(
                ({"b_id": contacts[a][0], "b_name": n, "b_search": n.lower()} for a, n in named.items()),
                key=lambda r: int(r["b_id"]),  # type: ignore[call-overload]
            ),
        )

    # Interactions: one per message key per organisation. Insert-or-ignore with
    # RETURNING tells exactly which are new (also with other writers at once);
    # only keys that were already stored are read back.
    now = db_time(conn, utcnow())
    occurred = [db_time(conn, p.record.date) for p in prepared]
    rows, seen = [], {}  # seen: message key -> the direction its row gets
    want_subject, want_snippet = org.visibility in ("subject", "snippet"), org.visibility == "snippet"
    for p, at in zip(prepared, occurred, strict=True):
        r = p.record
        if r.message_key in seen:
            continue
        seen[r.message_key] = p.direction
        rows.append(
            (
                org.org_id,
                InteractionKind.EMAIL,
                r.message_key,
                at,
                p.direction,
                r.subject if want_subject else None,
                r.snippet if want_snippet else None,
                gmail_threads.get(r.message_key) or thread_key(r),
                p.people[0][0] if p.people and p.people[0][2] == "from" else None,
                now,
                p.unverified,
                followups.is_automated(r),
                r.recipients_not_kept,
            )
        )
    if conn.dialect.name == "postgresql":
        # Keys in one order for every writer: two batches sharing messages then
        # never wait for each other's uncommitted rows in a cycle (a deadlock).
        rows.sort(key=lambda r: r[2])
    existing: dict[str, int] = dict(
        bulk_insert_ignore_returning(
            conn, INTERACTION, INTERACTION_COLUMNS, rows, ("message_key", "id"), chunk=INSERT_CHUNK
        )
    )
    result.new_interactions = len(existing)
    new_ids = set(existing.values())
    direction_of = {iid: seen[key] for key, iid in existing.items()}  # as stored, for the summaries
    unverified_ids: set[int] = set()
    missing = sorted(seen.keys() - existing.keys())
    for chunk in _chunked(missing):
        stored_rows = conn.execute(
            select(
                INTERACTION.c.message_key, INTERACTION.c.id, INTERACTION.c.direction, INTERACTION.c.unverified_sender
            ).where(INTERACTION.c.org_id == org.org_id, INTERACTION.c.message_key.in_(chunk))
        )
        for key, iid, direction, unverified in stored_rows:
            existing[key], direction_of[iid] = iid, direction
            if unverified:
                unverified_ids.add(iid)
    wider = _recipients_to_widen(prepared, existing, new_ids)
    report_changes: list[reportsums.Change] = []
    upgraded = _vouch_for_stored(conn, org, prepared, existing, unverified_ids, direction_of, report_changes, wider)

    # Participants (new interactions: everyone; known ones: this copy's colleagues
    # and anyone new) and the copy itself. A new interaction has no participant
    # rows yet (they reference it), so what is inserted for it is known here
    # without reading anything back; rows for known interactions use RETURNING.
    fresh, fresh_keys, participants, sources = [], set(), [], []
    inserted: list[tuple] = []
    users, org_id, internal = org.users_by_address, org.org_id, _internal_map(org)
    for p, at in zip(prepared, occurred, strict=True):
        iid = existing[p.record.message_key]
        is_new = iid in new_ids
        for address, name, role in p.people:
            user_id = users.get(address)
            if p.unverified and role == "from":
                if direction_of[iid] == "out":
                    continue  # another copy vouched for the sender: that copy's From row stands
                user_id = None  # who the mail claims, shown as such; never credited to a colleague
            elif user_id is None and _is_internal(org, internal, address):
                continue  # internal but not a user (a shared alias): not a person to track
            contact = contacts.get(address)
            row = (
                org_id,
                iid,
                at,
                address,
                name or None,
                role,
                user_id,
                contact[0] if contact else None,
                contact[1] if contact else None,
            )
            if is_new:
                if (iid, address) in fresh_keys:
                    continue
                fresh_keys.add((iid, address))
                fresh.append(row)
                inserted.append((iid, row[7], user_id))
            else:
                participants.append(row)
        if mbx.mailbox_id is not None:  # None: logged by hand from the sidebar, no mailbox copy
            r = p.record
            sources.append((org_id, iid, mbx.mailbox_id, mbx.folder_id, r.remote_id, r.provider_id, r.provider_thread))
    known = sorted({iid for iid in existing.values() if iid not in new_ids})
    before, stored = _stored_people(conn, known)
    adding = sorted({row[1] for row in participants if (row[1], row[3]) not in stored})
    if adding and conn.dialect.name == "postgresql":
        # Another worker may be adding people to the same stored messages (its copy
        # names its own rep): neither would see the other's rows and both would miss
        # the pairs between them. One at a time per message, then read again.
        for chunk in _chunked(adding):
            conn.execute(
                select(INTERACTION.c.id)
                .where(INTERACTION.c.id.in_(chunk))
                .order_by(INTERACTION.c.id)
                .with_for_update(key_share=True)
            ).all()
        before.update(_stored_people(conn, adding)[0])
    if adding:
        # Stored mail gaining people (another rep's copy names them): what it gave the report
        # summaries before, read after the locks above so no other writer adds to it meanwhile.
        report_changes.append(reportsums.changing(conn, org_id, [i for i in adding if i not in upgraded]))
    bulk_insert_new(conn, PARTICIPANT, PARTICIPANT_COLUMNS, fresh)
    inserted += bulk_insert_ignore_returning(
        conn, PARTICIPANT, PARTICIPANT_COLUMNS, participants, ("interaction_id", "contact_id", "user_id")
    )
    copies.relink(conn, moves)  # before the insert: a moved copy is then already there
    result.copies = copies.insert(conn, sources)
    facts = {
        existing[p.record.message_key]: (direction_of[existing[p.record.message_key]], at)
        for p, at in zip(prepared, occurred, strict=True)
    }
    stats.add_email_deltas(conn, org.org_id, inserted, facts, before)
    # New contacts may have brought older participations along, and received mail that turned out
    # to be a colleague's sent mail changes its people's summaries: count those from scratch.
    recount = [contacts[a][0] for a in created]
    for chunk in _chunked(sorted(upgraded)):
        recount += (
            conn.execute(
                select(PARTICIPANT.c.contact_id).where(
                    PARTICIPANT.c.interaction_id.in_(chunk), PARTICIPANT.c.contact_id.is_not(None)
                )
            )
            .scalars()
            .all()
        )
    if recount:
        stats.recompute(conn, org.org_id, recount)
    if (new_ids or upgraded) and followups.AT_INGEST:
        # The follow-up queue sees each email once: only rows this batch created (a re-sync or
        # another mailbox's copy of a stored message is not new), with the people just inserted.
        sent = {p.record.message_key: (p.record.date, followups.mail_role(p.record)) for p in prepared}
        facts_new = {
            iid: (row[7], sent[row[2]][0], row[4], row[10] or sent[row[2]][1] == "none", sent[row[2]][1] == "close")
            for row in rows
            if (iid := existing[row[2]]) in new_ids
        }
        fallback = users.get(mbx.owner_address)
        events = followups.events_from_ingest(facts_new, fresh, fallback)
        # Stored mail from an unverified sender that this batch vouched for (a colleague's answer
        # seen first in someone else's inbox, then in their own Sent folder) was never an event:
        # as received mail it neither opened nor closed anything. Now it is their sent mail.
        events += _vouched_events(conn, sorted(upgraded - new_ids))
        followups.record(conn, org.org_id, events, cache=org.followups)
    _enrich(conn, org, prepared, contacts, existing, result)
    # Last: the report summaries take their thread locks after every other lock of the batch.
    new_threads = {row[7] for row in rows if existing[row[2]] in new_ids}
    # What the new emails give the activity counts: their participant rows are all in `fresh`.
    given = reportsums.given_by_new_emails(((r[1], r[2], r[5], r[6]) for r in fresh), direction_of)
    reportsums.changed(conn, org_id, report_changes, new_ids, new_threads, new_given=given)
    result.imported = len(sources) if mbx.mailbox_id is not None else len(prepared)
    return result


def _enrich(
    conn: Connection,
    org: OrgContext,
    prepared: list[_Prepared],
    contacts: dict[str, tuple[int, int | None]],
    existing: dict[str, int],
    result: IngestResult,
) -> None:
    """Signatures of inbound mail from contacts onto their contacts (sync/enrichment.py).
    Only mail the contact sent themselves counts: not a colleague's, not an unverified
    sender's, not an auto-reply. A failure rolls back to the savepoint and is counted;
    the batch's messages are kept."""
    candidates = []
    for p in prepared:
        sig = p.record.signature
        if not sig or p.direction != "in" or p.unverified or p.auto_reply or not p.people:
            continue
        address, _, role = p.people[0]
        contact = contacts.get(address)
        if role != "from" or contact is None:
            continue
        candidates.append(
            enrichment.Candidate(
                contact[0],
                contact[1],
                _utc(p.record.date),
                existing[p.record.message_key],
                address,
                sig,
                p.record.message_key,
            )
        )
    if not candidates:
        return
    try:
        with conn.begin_nested():
            result.enriched = enrichment.apply(conn, org.org_id, candidates, org.phone_region)
    except Exception as exc:  # noqa: BLE001 - enrichment never costs a message
        # The type only: the error's text may quote values taken from the mail.
        enrichment.log.warning("signature enrichment skipped for %d messages: %s", len(candidates), type(exc).__name__)
        result.enrichment_failed += 1


def _recipients_to_widen(prepared: list[_Prepared], existing: dict[str, int], new_ids: set[int]) -> dict[int, int]:
    """Stored rows a copy of this batch names more recipients for than the row counts (the
    sender's Sent copy, with its Bcc, read after a recipient's copy; or a row stored before the
    count was kept): interaction id -> the count. A row this batch inserted is left out unless
    another of its copies here names more than the one it was inserted from."""
    first: dict[str, int] = {}
    most: dict[int, int] = {}
    for p in prepared:
        key, n = p.record.message_key, p.record.recipients_not_kept
        first.setdefault(key, n)
        iid = existing[key]
        if n > 0 and (iid not in new_ids or n > first[key]):
            most[iid] = max(most.get(iid, 0), n)
    return most


def _vouched_events(conn: Connection, interaction_ids: list[int]) -> list[followups.MailEvent]:
    """The follow-up events of stored emails just turned into a colleague's sent mail, from
    their stored rows (every copy's people, the From row now credited)."""
    if not interaction_ids:
        return []
    facts: dict[int, tuple[str, datetime, str, bool, bool]] = {}
    people: list[tuple] = []
    for chunk in _chunked(interaction_ids):
        for iid, key, at, direction, automated, unverified in conn.execute(
            select(
                INTERACTION.c.id,
                INTERACTION.c.thread_key,
                INTERACTION.c.occurred_at,
                INTERACTION.c.direction,
                INTERACTION.c.automated,
                INTERACTION.c.unverified_sender,
            ).where(INTERACTION.c.id.in_(chunk))
        ):
            # (a stored calendar message is automated too: it stays out, as before it was vouched for)
            facts[iid] = (key, _utc(at), direction, bool(automated or unverified), False)
        people += conn.execute(
            select(*(PARTICIPANT.c[c] for c in PARTICIPANT_COLUMNS))
            .where(PARTICIPANT.c.interaction_id.in_(chunk))
            .order_by(PARTICIPANT.c.interaction_id, PARTICIPANT.c.id)
        ).all()
    return followups.events_from_ingest(facts, people, None)


def _vouch_for_stored(
    conn: Connection,
    org: OrgContext,
    prepared: list[_Prepared],
    existing: dict[str, int],
    unverified_ids: set[int],
    direction_of: dict[int, str],
    report_changes: list,
    wider: dict[int, int],
) -> set[int]:
    """Stored mail from an unverified sender that a copy in this batch vouches for
    (the colleague's own Sent copy, say) becomes that colleague's sent mail: the
    same interaction, direction out, the From row credited to them. Returns the
    interactions changed (their contacts' summaries are recounted).

    `wider`: rows whose count of recipients not kept grows (_recipients_to_widen). Both
    changes are one UPDATE per row, in id order: two passes each in order would not be one
    order, and two batches could each lock a row the other waits for (a deadlock)."""
    changed: dict[int, str] = {}
    for p in prepared:
        iid = existing[p.record.message_key]
        if iid in unverified_ids and not p.unverified and p.direction == "out" and iid not in changed:
            changed[iid] = next(a for a, _, role in p.people if role == "from")
    if changed:
        report_changes.append(reportsums.changing(conn, org.org_id, changed))
    if changed or wider:
        conn.execute(
            update(INTERACTION)
            .where(INTERACTION.c.id == _bind("b_id"))
            .values(
                direction=case((_bind("b_vouch"), "out"), else_=INTERACTION.c.direction),
                unverified_sender=case((_bind("b_vouch"), False), else_=INTERACTION.c.unverified_sender),
                recipients_not_kept=case(
                    (INTERACTION.c.recipients_not_kept < _bind("b_n"), _bind("b_n")),
                    else_=INTERACTION.c.recipients_not_kept,
                ),
            ),
            [
                {"b_id": i, "b_vouch": i in changed, "b_n": wider.get(i, 0)}
                for i in sorted(changed.keys() | wider.keys())
            ],
        )
    if not changed:
        return set()
    credited = [
        {"b_id": i, "b_address": a, "b_user": org.users_by_address[a]}
        for i, a in sorted(changed.items())
        if a in org.users_by_address
    ]
    if credited:
        conn.execute(
            update(PARTICIPANT)
            .where(
                PARTICIPANT.c.interaction_id == _bind("b_id"),
                PARTICIPANT.c.address == _bind("b_address"),
                PARTICIPANT.c.role == "from",
            )
            .values(user_id=_bind("b_user")),
            credited,
        )
    shared = [{"b_id": i, "b_address": a} for i, a in sorted(changed.items()) if a not in org.users_by_address]
    if shared:
        # A vouched-for mail from an internal address that is nobody's (a shared alias) has no From row.
        conn.execute(
            PARTICIPANT.delete().where(
                PARTICIPANT.c.interaction_id == _bind("b_id"),
                PARTICIPANT.c.address == _bind("b_address"),
                PARTICIPANT.c.role == "from",
            ),
            shared,
        )
    for iid in changed:
        direction_of[iid] = "out"
    return set(changed)
