"""Meetings onto the timeline: one interaction per meeting however it was seen.

A meeting arrives from a calendar (CalDAV, Microsoft Graph) or from an
invitation in mail (iMIP). Its key is the iCalendar UID plus the occurrence's
recurrence id, so every copy lands on the same interaction. A copy with a
lower SEQUENCE than the stored one never overwrites the newer details; a
REPLY only changes the replying attendee's answer. Removing the last copy of
a meeting removes it from the timeline.

A REPLY or CANCEL without a recurrence id (iMIP for the whole series, key
`ical:UID`) applies to every stored occurrence of that UID (`ical:UID/<rid>`)
as well as to a single event stored under `ical:UID`: a CANCEL marks each of
them cancelled unless it holds a newer SEQUENCE, a REPLY sets the replying
attendee's answer on each. Only when nothing of that UID is stored does it
become an interaction of its own, as before.

A copy of a whole series (MeetingRecord.series_from/series_to: a calendar's, or
a REQUEST whose rule was expanded) lists every occurrence of the sync window. A
stored occurrence of its UID in that window that it lacks and that has a lower
SEQUENCE than the series' own was moved or cut from the series (a new time,
"this and following" ending it early): it is marked cancelled with that
SEQUENCE, so the old invitation, read again later, does not bring it back. The
other order is a first import's (mail is read newest first): the newest copy
seen of each series is kept (meetingseries: its SEQUENCE, window and the
occurrences it listed), and an older invitation read after it creates none of the
occurrences that copy's window holds and it did not list. Either order ends with
the same timeline.

One call handles one batch with a constant number of statements (IN lists of
at most ingest.IN_CHUNK): the batch's records are grouped by key, each group is folded
in Python, in order, into the final state of its interaction and participants
(exactly what applying the records one after another would leave), and that
state is written with bulk statements.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, bindparam, delete, or_, select, update
from sqlalchemy.engine import Connection

from app.db import bulk_insert_ignore, bulk_insert_ignore_returning, db_time
from app.models import Interaction, InteractionKind, InteractionSource, MeetingSeries, Participant
from app.models.base import utcnow
from connectors.base import Attendee, MeetingRecord, meeting_key
from sync import addresses as addr, copies, reportsums, senders, stats
from sync.ingest import (
    IngestResult,
    MailboxContext,
    OrgContext,
    _chunked,
    _internal,
    _utc,
    create_contacts,
    existing_contacts,
)

I, P, S = Interaction.__table__, Participant.__table__, InteractionSource.__table__
SERIES = MeetingSeries.__table__
MAX_ATTENDEES = 500
_RID = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")  # connectors.ical.recurrence_id_utc's form
SERIES_CHUNK = 50  # series prefixes per statement (each is one OR branch)
DETAILS = ("occurred_at", "ends_at", "direction", "subject", "location", "status", "sequence")
STORED = (I.c.id, I.c.message_key) + tuple(I.c[c] for c in DETAILS)
INSERT_COLUMNS = ("org_id", "kind", "message_key", "thread_key", "from_address", "created_at") + DETAILS
PARTICIPANT_COLUMNS = (
    "org_id",
    "interaction_id",
    "occurred_at",
    "address",
    "name",
    "role",
    "response",
    "user_id",
    "contact_id",
    "company_id",
)


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
        people[address] = (
            addr.display_name(a.name, address),
            role,
            a.response if role != "organizer" else (a.response or "accepted"),
        )
    return people


# A skip reason shown to admins beside each invitation it kept off the timeline.
UNVOUCHED_INVITATION = "invitation from a colleague's address that nothing vouches for"


def _unvouched_colleague(org: OrgContext, mbx: MailboxContext, rec: MeetingRecord) -> bool:
    """Whether an invitation in mail claims to come from a colleague and nothing vouches for it.

    Threat: anyone can mail a rep an .ics whose ORGANIZER is another rep, sent under that
    rep's From: taken at its word it puts a meeting "organised" by the colleague with
    strangers of the forger's choosing on the timeline, and makes them contacts the colleague
    met. The connector already keeps only invitations whose author is the mail's From
    (connectors/imap.py: _from_its_author); a From naming the organisation is then believed
    on the same terms as mail (sync/senders.py: their Sent folder, no SMTP hop, the
    organisation's server passing the domain, Exchange's own stamp). The genuine meeting
    still arrives from a copy that is vouched for: the colleague's Sent folder or calendar."""
    mail = rec.via_mail
    if mail is None or not mail.from_:
        return False
    sender = addr.normalise(mail.from_[0][1] or "")
    if not sender or not _internal(org, sender):
        return False
    owner_is_sender = org.users_by_address.get(sender) == mbx.owner_id
    return not senders.vouched(mail, sender, owner_is_sender, mbx.folder_role, org.internal_domains)


def prepare(org: OrgContext, mbx: MailboxContext, rec: MeetingRecord) -> dict | str:
    if len(rec.attendees) > MAX_ATTENDEES:
        return f"more than {MAX_ATTENDEES} attendees"
    if _unvouched_colleague(org, mbx, rec):
        return UNVOUCHED_INVITATION
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


# -- the fold: a key's records, in order, into one final state ---------------------------------


@dataclass(slots=True)
class _Item:
    """One kept record of the batch."""

    index: int
    rec: MeetingRecord
    p: dict
    key: str
    series: bool  # a REPLY/CANCEL without recurrence id: also meant for the series' occurrences


@dataclass(slots=True)
class _Person:
    response: str | None
    contact_id: int | None
    new: tuple | None = None  # (name, role, user_id, contact_id, company_id): a row to insert
    changed: bool = False  # a stored row whose response changed


@dataclass
class _State:
    """What a key's interaction and participants become after the batch."""

    key: str
    stored: dict | None  # the stored interaction (id, message_key, DETAILS), None if new
    cols: dict = field(default_factory=dict)  # the interaction's columns after the batch
    create: bool = False
    people: dict[str, _Person] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)  # stored rows to delete
    sources: list[tuple[int, str]] = field(default_factory=list)  # (record index, remote id) of its copies


def _norm(value):
    return _utc(value) if isinstance(value, datetime) else value


def _details(org: OrgContext, rec: MeetingRecord, p: dict) -> dict:
    subject_ok = org.visibility in ("subject", "snippet")
    return {
        "occurred_at": _utc(rec.start),
        "ends_at": _utc(rec.end) if rec.end else None,
        "direction": p["direction"],
        "subject": rec.subject if subject_ok else None,
        "location": (rec.location or None) if subject_ok else None,
        "status": p["status"],
        "sequence": rec.sequence,
    }


def _fold(
    org: OrgContext,
    mbx: MailboxContext,
    contacts: dict,
    key: str,
    stored: dict | None,
    stored_people: dict[str, tuple[str | None, int | None]],
    steps: list[tuple[_Item, bool]],
    touched: set[int],
    known: dict,
) -> _State:
    """Apply a key's records in batch order, as one statement each would have.

    steps: (item, whole) where whole is False for a series REPLY/CANCEL applied
    to one of the series' occurrences. known: address -> (user id, contact) or
    False, filled as people are met (one batch's cache).
    """
    st = _State(key, stored)
    if stored is not None:
        st.cols = {c: _norm(stored[c]) for c in DETAILS}
        st.people = {a: _Person(resp, cid) for a, (resp, cid) in stored_people.items()}
    exists = stored is not None
    for item, whole in steps:
        rec, p = item.rec, item.p
        if not whole and rec.method != "REPLY":
            # Not this occurrence's own copy: the series is cancelled, or a newer copy of the
            # series no longer lists it (moved or cut short). Either way it is off, unless it
            # was changed later; a copy of the same SEQUENCE only cancels when it says so.
            seq = st.cols["sequence"]
            if rec.sequence > seq or (rec.method == "CANCEL" and rec.sequence == seq):
                st.cols["status"], st.cols["sequence"] = "cancelled", rec.sequence
            continue
        newer = existed = False
        if not exists:
            st.cols, st.create, exists, newer = _details(org, rec, p), True, True, True
        else:
            existed = True
            if whole and rec.method != "REPLY" and rec.sequence >= st.cols["sequence"]:
                newer = True
                st.cols.update(_details(org, rec, p))
        if whole:
            st.sources.append((item.index, rec.remote_id[:900]))
        people = p["people"]
        for address, (name, role, response) in people.items():
            who = known.get(address)
            if who is None:
                user_id = org.users_by_address.get(address)
                # A room or a shared address is not a person: False.
                who = known[address] = (user_id is not None or not _internal(org, address)) and (
                    user_id,
                    contacts.get(address),
                )
            if not who:
                continue
            user_id, contact = who
            if contact:
                touched.add(contact[0])
            cur = st.people.get(address)
            if cur is not None:
                if response and (newer or rec.method == "REPLY") and cur.response != response:
                    cur.response = response
                    cur.changed = cur.new is None
                continue
            if rec.method == "REPLY" and existed:
                continue  # a reply answers for someone invited; it never adds people to a known meeting
            st.people[address] = _Person(
                response,
                contact[0] if contact else None,
                new=(name or None, role, user_id, contact[0] if contact else None, contact[1] if contact else None),
            )
        if newer and existed and rec.method in (None, "REQUEST"):
            # A newer full copy is the attendee list: people taken off it leave.
            for a in [a for a in st.people if a not in people and a != mbx.owner_address]:
                gone = st.people.pop(a)
                if gone.contact_id:
                    touched.add(gone.contact_id)
                if gone.new is None:
                    st.gone.add(a)
    return st


# -- reading what is stored --------------------------------------------------------------------


def _load_keys(conn: Connection, org_id: int, keys: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for part in _chunked(sorted(keys)):
        for row in conn.execute(select(*STORED).where(I.c.org_id == org_id, I.c.message_key.in_(part))).mappings():
            out[row["message_key"]] = dict(row)
    return out


def _series_condition(conn: Connection, base: str):
    """message_key is an occurrence of the series whose key is base ('ical:UID')."""
    prefix = base + "/"
    if conn.dialect.name == "sqlite":
        # SQLite's LIKE ignores case (UIDs do not): a byte-wise range is exact, and uses the index.
        return and_(I.c.message_key >= prefix, I.c.message_key < base + "0")
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return I.c.message_key.like(escaped + "%", escape="\\")


def _load_series(conn: Connection, org_id: int, bases: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for part in _chunked(sorted(bases), SERIES_CHUNK):
        query = select(*STORED).where(
            I.c.org_id == org_id, I.c.kind == InteractionKind.MEETING, or_(*[_series_condition(conn, b) for b in part])
        )
        for row in conn.execute(query).mappings():
            out[row["message_key"]] = dict(row)
    return out


def _load_people(conn: Connection, ids: list[int]) -> dict[int, dict[str, tuple[str | None, int | None]]]:
    out: dict[int, dict[str, tuple[str | None, int | None]]] = {}
    for part in _chunked(sorted(ids)):
        for iid, address, response, contact_id in conn.execute(
            select(P.c.interaction_id, P.c.address, P.c.response, P.c.contact_id).where(P.c.interaction_id.in_(part))
        ):
            out.setdefault(iid, {})[address] = (response, contact_id)
    return out


def _copy_of(rec: MeetingRecord) -> tuple[str, str, str, str] | None:
    """(UID, the copy's remote id, series_from, series_to) when rec is an occurrence of a
    whole-series copy."""
    if rec.series_from is None or rec.series_to is None or rec.recurrence_id is None:
        return None
    if rec.method not in (None, "REQUEST"):
        return None
    return rec.uid, rec.remote_id[: -len(rec.recurrence_id) - 1], rec.series_from, rec.series_to


@dataclass
class _SeriesCopy:
    base: str  # the series key, 'ical:UID'
    since: str  # the recurrence ids it lists, from ...
    until: str  # ... up to (not including)
    listed: set[str]  # the occurrence keys it lists
    master: _Item  # its occurrence with the lowest SEQUENCE: the series' own (an override's may be higher)


def _series_copies(items: list[_Item], of_item: dict[int, _SeriesCopy] | None = None) -> dict[int, _SeriesCopy]:
    """The whole-series copies among the items (a calendar's or a REQUEST's expansion of a
    series, see MeetingRecord.series_from; a copy's occurrences come one after another), by
    the index of each one's last item; of_item receives each item's copy by its index."""
    ends: dict[int, _SeriesCopy] = {}
    run: tuple[str, str, str, str] | None = None
    current: _SeriesCopy | None = None
    for item in items:
        copy = _copy_of(item.rec)
        if copy is None:
            run = None
            continue
        if copy == run and current is not None:
            del ends[item.index - 1]  # the copy goes on: it ends here or later
            if item.rec.sequence < current.master.rec.sequence:
                current.master = item
        else:
            run = copy
            current = _SeriesCopy(meeting_key(item.rec.uid, None)[:900], copy[2], copy[3], set(), item)
        current.listed.add(item.key)
        ends[item.index] = current
        if of_item is not None:
            of_item[item.index] = current
    return ends


class SeriesChanged(Exception):
    """Another writer changed a series' newest copy while this batch read it: try the batch again
    (sync/engine.py counts it among the collisions it retries)."""


@dataclass
class _Newest:
    """The newest copy seen of a series (a meetingseries row): SEQUENCE, window, recurrence ids listed."""

    sequence: int
    since: str
    until: str
    listed: set[str]
    changed: bool = False
    stored: bool = True
    read_at: object = None  # the stored row's updated_at: written back only if it is still that

    def cut(self, copy: _SeriesCopy, rid: str) -> bool:
        """Whether an older copy's occurrence rid is one this newer copy moved or cut."""
        return self.sequence > _own_sequence(copy) and self.since <= rid < self.until and rid not in self.listed

    def take(self, copy: _SeriesCopy) -> None:
        """Fold a copy of the series in: a newer one replaces what is known; the same SEQUENCE read
        over an overlapping window (or from another source) adds to it, over a window apart from
        it replaces it (what lies between was read by neither); an older one changes nothing."""
        base = len(copy.base) + 1
        rids = {k[base:] for k in copy.listed}
        seq = _own_sequence(copy)
        if seq > self.sequence or (seq == self.sequence and (copy.since > self.until or copy.until < self.since)):
            self.sequence, self.since, self.until, self.listed = seq, copy.since, copy.until, rids
        elif seq == self.sequence and not (
            copy.since >= self.since and copy.until <= self.until and rids <= self.listed
        ):
            self.since, self.until = min(self.since, copy.since), max(self.until, copy.until)
            self.listed |= rids
        else:
            return
        self.changed = True


def _own_sequence(copy: _SeriesCopy) -> int:
    """The series' own SEQUENCE: its master component's where the source says (an override may
    keep an older one), else the lowest of the copy's occurrences."""
    own = copy.master.rec.series_sequence
    return own if own is not None else copy.master.rec.sequence


def _load_newest(conn: Connection, org_id: int, bases: set[str]) -> dict[str, _Newest]:
    out: dict[str, _Newest] = {}
    for part in _chunked(sorted(bases)):
        for key, seq, since, until, listed, at in conn.execute(
            select(
                SERIES.c.series_key,
                SERIES.c.sequence,
                SERIES.c.since,
                SERIES.c.until,
                SERIES.c.listed,
                SERIES.c.updated_at,
            ).where(SERIES.c.org_id == org_id, SERIES.c.series_key.in_(part))
        ):
            out[key] = _Newest(seq, since, until, set(listed or ()), read_at=at)
    return out


def _save_newest(conn: Connection, org_id: int, newest: dict[str, _Newest]) -> None:
    now = utcnow()
    for key in sorted(k for k, n in newest.items() if n.changed):  # one key order for every writer
        n = newest[key]
        values = {
            "sequence": n.sequence,
            "since": n.since,
            "until": n.until,
            "listed": sorted(n.listed),
            "updated_at": now,
        }
        if n.stored:
            # Only over the row as it was read: another writer's newer copy committed since (or
            # committing now: PostgreSQL re-checks the row once it is theirs no more) must not be
            # overwritten by this one. Then the batch is tried again, and reads theirs.
            done = conn.execute(
                update(SERIES)
                .where(SERIES.c.org_id == org_id, SERIES.c.series_key == key, SERIES.c.updated_at == n.read_at)
                .values(**values)
            ).rowcount
            if done != 1:
                raise SeriesChanged(key)
        else:  # another writer inserting it first meets the unique key: the batch is tried again
            conn.execute(SERIES.insert().values(org_id=org_id, series_key=key, **values))


def _plan(
    items: list[_Item], stored_keys: set[str], bases: set[str], newest: dict[str, _Newest] | None = None
) -> dict[str, list[tuple[_Item, bool]]]:
    """Each key's steps in batch order; a series REPLY/CANCEL goes to every
    occurrence of its UID known at that point (stored, or seen earlier in the
    batch) and to the series key itself if that is known or nothing else is.
    After the last item of a whole-series copy, every occurrence of its UID known
    at that point, from where the copy lists on, that the copy lacks gets a step
    from it (the fold cancels it if the copy is newer)."""
    present = set(stored_keys)
    copy_of_item: dict[int, _SeriesCopy] = {}
    copies_end = _series_copies(items, copy_of_item)
    newest = {} if newest is None else newest
    occurrences: dict[str, set[str]] = {b: set() for b in bases | {c.base for c in copies_end.values()}}

    def note(k: str) -> None:  # k is an occurrence of every series key that is a prefix of it up to a "/"
        at = k.find("/")
        while at != -1:
            if k[:at] in occurrences:
                occurrences[k[:at]].add(k)
            at = k.find("/", at + 1)

    for k in stored_keys:
        note(k)
    plan: dict[str, list[tuple[_Item, bool]]] = {}
    for item in items:
        if item.series:
            occ = sorted(occurrences.get(item.key, ()))
            for k in occ:
                plan.setdefault(k, []).append((item, False))
            if item.key in present or not occ:
                plan.setdefault(item.key, []).append((item, True))
                present.add(item.key)
            continue
        copy = copy_of_item.get(item.index)
        seen = newest.get(copy.base) if copy is not None else None
        # An invitation older than the newest copy seen of its series: an occurrence that copy
        # moved or cut is not made again (a calendar's copy is its current state: always read).
        cut = (
            copy is not None
            and seen is not None
            and item.key not in present
            and item.rec.method == "REQUEST"
            and seen.cut(copy, item.key[len(copy.base) + 1 :])
        )
        if not cut:
            plan.setdefault(item.key, []).append((item, True))
            present.add(item.key)
            if occurrences:
                note(item.key)
        if item.index in copies_end:
            copy = copies_end[item.index]
            seen = newest.get(copy.base)
            if seen is None:
                seen = newest[copy.base] = _Newest(-1, copy.since, copy.until, set(), stored=False)
            seen.take(copy)
            for k in sorted(occurrences[copy.base] - copy.listed):
                rid = k[len(copy.base) + 1 :]
                # Only inside the window the copy covers (an occurrence past it, stored when the
                # window reached further, is not the copy's to judge); _RID: not a longer UID
                # that starts with this one.
                if _RID.fullmatch(rid) and copy.since <= rid < copy.until:
                    plan.setdefault(k, []).append((copy.master, False))
    return plan


# -- the batch ---------------------------------------------------------------------------------


@dataclass
class _Batch:
    """What the phases of one ingest_meetings call share."""

    conn: Connection
    org: OrgContext
    mbx: MailboxContext
    result: IngestResult = field(default_factory=IngestResult)
    contacts: dict = field(default_factory=dict)  # address -> (contact id, company id)
    touched: set[int] = field(default_factory=set)  # contacts whose summaries are recounted
    known: dict = field(default_factory=dict)  # _fold's cache of the people met

    def fold(self, key: str, row: dict | None, people: dict, steps: list[tuple[_Item, bool]]) -> _State:
        return _fold(self.org, self.mbx, self.contacts, key, row, people, steps, self.touched, self.known)


def ingest_meetings(
    conn: Connection, org: OrgContext, mbx: MailboxContext, records: list[MeetingRecord]
) -> IngestResult:
    batch = _Batch(conn, org, mbx)
    items = _kept_items(batch, records)
    if not items:
        return batch.result
    _link_contacts(batch, items)
    plan, states = _fold_over_stored(batch, items)
    ids = _insert_new(batch, plan, states)
    # The report summaries: what these meetings gave before (nothing, for the new ones) and after.
    report_change = reportsums.changing(conn, org.org_id, ids.values())
    _update_changed(batch, states, ids)
    _write_participants_and_copies(batch, states, ids)
    batch.result.imported = len(items)
    stats.recompute(conn, org.org_id, batch.touched)
    reportsums.changed(conn, org.org_id, [report_change])
    return batch.result


def _drop_nul(rec: MeetingRecord) -> None:
    """PostgreSQL refuses NUL in text; a calendar's JSON or iCalendar can carry one (see ingest._drop_nul)."""
    if "\x00" in rec.uid:
        rec.uid = rec.uid.replace("\x00", "")
    if "\x00" in rec.subject:
        rec.subject = rec.subject.replace("\x00", "")
    if rec.location and "\x00" in rec.location:
        rec.location = rec.location.replace("\x00", "")
    for person in (rec.organizer, *rec.attendees):
        if person is not None and ("\x00" in person.name or "\x00" in person.address):
            person.name, person.address = person.name.replace("\x00", ""), person.address.replace("\x00", "")


def _kept_items(batch: _Batch, records: list[MeetingRecord]) -> list[_Item]:
    """The records worth keeping, each with its key; the others are counted as skipped with their reason."""
    items: list[_Item] = []
    for rec in records:
        _drop_nul(rec)
        p = prepare(batch.org, batch.mbx, rec)
        if isinstance(p, str):
            batch.result.skipped[p] += 1
            batch.result.skipped_items.append((rec.remote_id, p))
            continue
        series = rec.recurrence_id is None and rec.method in ("REPLY", "CANCEL")
        items.append(_Item(len(items), rec, p, meeting_key(rec.uid, rec.recurrence_id)[:900], series))
    return items


def _link_contacts(batch: _Batch, items: list[_Item]) -> None:
    """Contacts of the external people: the existing ones, and new ones as the organisation's policy says."""
    org = batch.org
    all_external = sorted({a for it in items for a in it.p["external"]})
    batch.contacts, _ = existing_contacts(batch.conn, org.org_id, all_external)
    if org.contact_policy != "none":
        wanted: dict[str, str] = {}
        for it in items:
            for a in it.p["external"]:
                if a not in batch.contacts and not wanted.get(a):
                    wanted[a] = it.p["people"][a][0]
        created: set[str] = set()
        made = create_contacts(batch.conn, org, wanted, created=created)
        batch.contacts.update(made)
        batch.result.new_contacts = len(created)
        batch.touched.update(made[a][0] for a in created)


def _fold_over_stored(batch: _Batch, items: list[_Item]) -> tuple[dict, dict[str, _State]]:
    """Each key's records folded over what is stored: the batch's keys, and every occurrence of a series a
    REPLY/CANCEL is for."""
    conn, org_id = batch.conn, batch.org.org_id
    bases = {it.key for it in items if it.series}
    # whole-series copies: their UID's other occurrences may be ones they moved or cut
    wholes = {meeting_key(it.rec.uid, None)[:900] for it in items if _copy_of(it.rec)}
    stored = _load_keys(conn, org_id, list({it.key for it in items}))
    if bases or wholes:
        stored.update(_load_series(conn, org_id, list(bases | wholes)))
    newest = _load_newest(conn, org_id, wholes) if wholes else {}
    plan = _plan(items, set(stored), bases, newest)
    _save_newest(conn, org_id, newest)
    people = _load_people(conn, [stored[k]["id"] for k in plan if k in stored])
    states: dict[str, _State] = {}
    for key, steps in plan.items():
        row = stored.get(key)
        states[key] = batch.fold(key, row, people.get(row["id"], {}) if row else {}, steps)
    return plan, states


def _insert_new(batch: _Batch, plan: dict, states: dict[str, _State]) -> dict[str, int]:
    """New interactions: insert-or-ignore, ids back for the rows really inserted. A key another writer
    inserted meanwhile is read and folded again over what it stored. Returns every key's interaction id."""
    conn, org_id = batch.conn, batch.org.org_id
    ids = {key: st.stored["id"] for key, st in states.items() if st.stored is not None}
    now = db_time(conn, utcnow())
    pending = [st for st in states.values() if st.create]
    for attempt in range(4):
        if not pending:
            break
        if attempt == 3:
            raise RuntimeError("meetings: interactions kept disappearing while being inserted")
        rows = [
            (
                org_id,
                InteractionKind.MEETING,
                st.key,
                st.key,
                None,
                now,
                *[db_time(conn, st.cols[c]) if c in ("occurred_at", "ends_at") else st.cols[c] for c in DETAILS],
            )
            for st in pending
        ]
        inserted = dict(
            (k, i) for i, k in bulk_insert_ignore_returning(conn, I, INSERT_COLUMNS, rows, ("id", "message_key"))
        )
        ids.update(inserted)
        batch.result.new_interactions += len(inserted)
        lost = [st.key for st in pending if st.key not in inserted]
        pending = []
        if not lost:
            break
        found = _load_keys(conn, org_id, lost)
        found_people = _load_people(conn, [r["id"] for r in found.values()])
        for key in lost:
            row = found.get(key)
            st = batch.fold(key, row, found_people.get(row["id"], {}) if row else {}, plan[key])
            states[key] = st
            if row is None:
                pending.append(st)
            else:
                ids[key] = row["id"]
    return ids


def _update_changed(batch: _Batch, states: dict[str, _State], ids: dict[str, int]) -> None:
    """Changed interactions, and participants moved with their meeting (the timeline index uses it)."""
    full, status_only, moved = [], [], []
    for key, st in states.items():
        if st.create or st.stored is None:
            continue
        before = {c: _norm(st.stored[c]) for c in DETAILS}
        changed = {c for c in DETAILS if st.cols[c] != before[c]}
        if not changed:
            continue
        iid = ids[key]
        if changed <= {"status", "sequence"}:
            status_only.append({"b_id": iid, "b_status": st.cols["status"], "b_sequence": st.cols["sequence"]})
        else:
            full.append({"b_id": iid, **{f"b_{c}": st.cols[c] for c in DETAILS}})
        if "occurred_at" in changed:
            moved.append({"b_iid": iid, "b_at": st.cols["occurred_at"]})
        if changed & {"occurred_at", "status"}:
            # Counts and colleagues depend on both: everyone on it is recounted.
            batch.touched.update(pp.contact_id for pp in st.people.values() if pp.contact_id and pp.new is None)
    conn = batch.conn
    if full:
        conn.execute(
            update(I).where(I.c.id == bindparam("b_id")).values(**{c: bindparam(f"b_{c}") for c in DETAILS}), full
        )
    if status_only:
        conn.execute(
            update(I)
            .where(I.c.id == bindparam("b_id"))
            .values(status=bindparam("b_status"), sequence=bindparam("b_sequence")),
            status_only,
        )
    if moved:
        conn.execute(
            update(P).where(P.c.interaction_id == bindparam("b_iid")).values(occurred_at=bindparam("b_at")), moved
        )


def _write_participants_and_copies(batch: _Batch, states: dict[str, _State], ids: dict[str, int]) -> None:
    """Participants: people taken off, answers changed, people added; then the copies."""
    conn, org_id, mbx = batch.conn, batch.org.org_id, batch.mbx
    gone: list[dict] = []
    answers: list[dict] = []
    new_rows: list[tuple] = []
    sources: list[tuple[int, tuple]] = []  # (record's position, copy row)
    for key, st in states.items():
        iid = ids[key]
        at = db_time(conn, st.cols["occurred_at"])
        gone.extend({"b_iid": iid, "b_address": a} for a in sorted(st.gone))
        for address, pp in st.people.items():
            if pp.new is not None:
                name, role, user_id, contact_id, company_id = pp.new
                new_rows.append((org_id, iid, at, address, name, role, pp.response, user_id, contact_id, company_id))
            elif pp.changed:
                answers.append({"b_iid": iid, "b_address": address, "b_response": pp.response})
        if mbx.mailbox_id is not None:
            sources.extend((n, (org_id, iid, mbx.mailbox_id, mbx.folder_id, r, None, None)) for n, r in st.sources)
    if gone:
        conn.execute(
            delete(P).where(P.c.interaction_id == bindparam("b_iid"), P.c.address == bindparam("b_address")), gone
        )
    if answers:
        conn.execute(
            update(P)
            .where(P.c.interaction_id == bindparam("b_iid"), P.c.address == bindparam("b_address"))
            .values(response=bindparam("b_response")),
            answers,
        )
    bulk_insert_ignore(conn, P, PARTICIPANT_COLUMNS, new_rows)
    # In record order: of two records with one remote id, the first one's copy is kept.
    batch.result.copies = copies.insert(conn, [row for _, row in sorted(sources, key=lambda s: s[0])])


def remove_copies(conn: Connection, org_id: int, mbx: MailboxContext, remote_ids: list[str]) -> Counter:
    """Copies that left a folder or calendar (set aside or not). A meeting with no copy left leaves
    the timeline; an email stays (the company keeps what it learnt) unless an
    admin purges it. Returns folder id -> copies deleted."""
    removed: Counter = Counter()
    affected: set[int] = set()
    for i in range(0, len(remote_ids), 500):
        part = remote_ids[i : i + 500]
        # a copy set aside for a re-read going on (copies.SET_ASIDE) left as well
        ids = part + [copies.SET_ASIDE + remote_id for remote_id in part]
        mine = (S.c.mailbox_id == mbx.mailbox_id, S.c.folder_id == mbx.folder_id, S.c.remote_id.in_(ids))
        affected.update(conn.execute(select(S.c.interaction_id).where(*mine)).scalars())
        removed.update(copies.delete(conn, *mine))
    drop_meetings_without_copies(conn, org_id, affected)
    return removed


def drop_meetings_without_copies(conn: Connection, org_id: int, candidates: set[int]) -> int:
    """Of these interactions, the meetings no calendar or mailbox holds any more
    leave the timeline (with their people, and the summaries are recounted)."""
    dropped = 0
    for part in _chunked(sorted(candidates)):
        orphans = (
            conn.execute(
                select(I.c.id).where(
                    I.c.id.in_(part),
                    I.c.org_id == org_id,
                    I.c.kind == InteractionKind.MEETING,
                    ~select(S.c.id).where(S.c.interaction_id == I.c.id).exists(),
                )
            )
            .scalars()
            .all()
        )
        if not orphans:
            continue
        contacts = set(
            conn.execute(
                select(P.c.contact_id).where(P.c.interaction_id.in_(orphans), P.c.contact_id.is_not(None))
            ).scalars()
        )
        report_change = reportsums.changing(conn, org_id, orphans)
        conn.execute(delete(P).where(P.c.interaction_id.in_(orphans)))
        conn.execute(delete(I).where(I.c.id.in_(orphans)))
        stats.recompute(conn, org_id, contacts)
        reportsums.changed(conn, org_id, [report_change])
        dropped += len(orphans)
    return dropped
