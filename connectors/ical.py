"""iCalendar to MeetingRecords: shared by the CalDAV connector and by invitations
found in mail (iMIP).

What a record is:
- One record per meeting, or per occurrence of a recurring meeting inside the
  sync window. A series (RRULE/RDATE) is expanded with recurring-ical-events;
  overrides (RECURRENCE-ID components) replace their occurrence, EXDATEs drop
  theirs, a cancelled override becomes a record with status "cancelled".
- `recurrence_id` is the occurrence's original start in UTC,
  `recurrence_id_utc(dt)` = "YYYY-MM-DDTHH:MM:SSZ", the same string the Graph
  connector produces, so the same occurrence has the same meeting_key from
  every source. Single (non-recurring) events have recurrence_id None.
- An occurrence expanded from a series carries `series_from` and `series_to`, the window's
  start and end as recurrence ids: the object lists every occurrence between them, so one it
  lacks is no longer part of the series (moved or cut short; sync/meetings.py). Not when the
  expansion was cut, or an override moved an occurrence of the window outside it.
- remote_id is `base` for a single event and `base + "#" + recurrence_id` for
  an occurrence (base: the CalDAV member name, or the IMAP message id + "#ics").

Time zones: TZID with a VTIMEZONE in the object, Olson names and Windows names
("W. Europe Standard Time", mapped by icalendar's CLDR table) all work. A TZID
that is none of these is bad data (BadRecord), never guessed. Floating times
(no TZID, no "Z") are read in the calendar's X-WR-TIMEZONE when it has one,
else as UTC: the organiser's zone is not in the data, and UTC keeps the same
floating event at the same instant for every rep who syncs it. All-day events
start at midnight UTC of their date.

Bad data never stops a sync: an object that cannot be read, an unknown time
zone, a recurrence too dense to expand (more than MAX_OCCURRENCES in the
window) or an attendee list longer than MAX_ATTENDEES (cut, and recorded) give
a BadRecord with the reason. A series without an end is simply bounded by the
window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from connectors.base import Attendee, BadRecord, CalendarWindow, MeetingRecord

MAX_ATTENDEES = 500
# What an IMAP message's id gets after it for the meetings its invitation brought: they sit
# beside the email's copy, and are no message of the server's (app/services/reconcile.py,
# sync/copies.py `unlisted`).
INVITATION_PART = "#ics"
MAX_OCCURRENCES = 1000  # per series inside the window
MAX_ICS_BYTES = 2 * 1024 * 1024
METHODS = ("REQUEST", "REPLY", "CANCEL")
# RFC 5546's methods that schedule (all but PUBLISH, which only shares an event): a message
# carrying one is a calendar message, whether or not it gives a record.
SCHEDULING_METHODS = frozenset(("REQUEST", "REPLY", "ADD", "CANCEL", "REFRESH", "COUNTER", "DECLINECOUNTER"))
_RESPONSES = {
    "ACCEPTED": "accepted",
    "DECLINED": "declined",
    "TENTATIVE": "tentative",
    "NEEDS-ACTION": "needs-action",
    "DELEGATED": "declined",
}
_STATUSES = {"CONFIRMED": "confirmed", "TENTATIVE": "tentative", "CANCELLED": "cancelled"}
_FREQ_SECONDS = {
    "SECONDLY": 1,
    "MINUTELY": 60,
    "HOURLY": 3600,
    "DAILY": 86400,
    "WEEKLY": 7 * 86400,
    "MONTHLY": 28 * 86400,
    "YEARLY": 365 * 86400,
}
_TIME_PROPS = ("DTSTART", "DTEND", "RECURRENCE-ID", "EXDATE", "RDATE", "DUE")


def recurrence_id_utc(dt: datetime | date) -> str:
    """An occurrence's original start as the shared recurrence id: UTC, ISO 8601, seconds.

    Exactly `dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")` (what the
    Graph connector uses); a naive (floating) datetime is taken as UTC and a date
    (all-day) as midnight UTC, rather than as this machine's local time.
    """
    if not isinstance(dt, datetime):
        dt = datetime.combine(dt, time(0), tzinfo=timezone.utc)
    elif dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def remote_id(base: str, recurrence_id: str | None) -> str:
    return f"{base}#{recurrence_id}" if recurrence_id else base


def parse_rid(rid: str) -> datetime:
    return datetime.strptime(rid, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Window:
    """The dates a CalendarWindow covers at one moment: events are read in [start, end)."""

    start: datetime  # aware UTC
    end: datetime

    @classmethod
    def of(cls, setting: CalendarWindow | None = None, now: datetime | None = None) -> "Window":
        return cls(*(setting or CalendarWindow()).bounds(now))

    def key(self) -> list[str]:
        return [self.start.date().isoformat(), self.end.date().isoformat()]


@dataclass
class Parsed:
    """What one iCalendar object gave."""

    records: list[MeetingRecord] = field(default_factory=list)
    bad: list[BadRecord] = field(default_factory=list)
    # recurrence ids of the records ("" for a single event)
    ids: list[str] = field(default_factory=list)
    recurring: bool = False
    # a single event that lies wholly before the window: history, not a removal
    before_window: bool = False
    # a single event that starts after the window: read again when the window reaches it
    after_window: bool = False


class IcalError(ValueError):
    pass


def parse_calendar(data: bytes | str):
    """A VCALENDAR (icalendar.Calendar), or IcalError with the reason."""
    import icalendar

    if isinstance(data, bytes):
        if len(data) > MAX_ICS_BYTES:
            raise IcalError(f"calendar object too large ({len(data):,} bytes)")
        data = data.decode("utf-8", "replace")
    elif len(data) > MAX_ICS_BYTES:
        raise IcalError(f"calendar object too large ({len(data):,} characters)")
    if "BEGIN:VCALENDAR" not in data[:4096].upper():
        raise IcalError("not an iCalendar object (no BEGIN:VCALENDAR)")
    try:
        cals = icalendar.Calendar.from_ical(data, multiple=True)
    except Exception as exc:  # noqa: BLE001 - any parser failure is bad data
        raise IcalError(f"invalid iCalendar: {_short(exc)}") from exc
    if not cals:
        raise IcalError("invalid iCalendar: no VCALENDAR component")
    cal = cals[0]
    if getattr(cal, "name", "") != "VCALENDAR":
        raise IcalError("invalid iCalendar: top component is not VCALENDAR")
    return cal


def meetings_from_ics(
    data: bytes | str,
    *,
    base_id: str,
    window: Window,
    owner: str | None = None,
    method: str | None = None,
    window_singles: bool = True,
) -> Parsed:
    """Records for the VEVENTs of one iCalendar object (see the module docstring).

    method: None for a calendar copy (CalDAV); for iMIP the METHOD (from the part's
    Content-Type or the VCALENDAR) - only REQUEST, REPLY and CANCEL give records.
    owner: the rep's address; meetings with nobody but the owner are skipped.
    window_singles: drop single events outside the window (CalDAV); iMIP keeps them
    (the message was already chosen by the mail window).
    """
    out = Parsed()
    try:
        cal = parse_calendar(data)
    except IcalError as exc:
        out.bad.append(BadRecord(base_id, str(exc)))
        return out
    if method is not None:
        method = str(cal.get("METHOD") or method).upper().strip()
        if method not in METHODS:
            return out
    try:
        cal = _standard_floating(cal)
    except Exception:  # noqa: BLE001 - X-WR-TIMEZONE is a nicety
        pass
    groups: dict[str, list] = {}
    for comp in cal.walk("VEVENT"):
        uid = str(comp.get("UID") or "").strip()
        if not uid:
            out.bad.append(BadRecord(base_id, "event without UID"))
            continue
        groups.setdefault(uid, []).append(comp)
    for uid, comps in groups.items():
        bid = base_id if len(groups) == 1 else f"{base_id}#{uid}"
        try:
            _group(out, cal, uid, comps, bid, window, owner, method, window_singles)
        except _Bad as exc:
            out.bad.append(BadRecord(bid, str(exc)))
        except Exception as exc:  # noqa: BLE001 - one event never stops the sync
            out.bad.append(BadRecord(bid, f"unreadable event {uid[:80]!r}: {_short(exc)}"))
    return out


class _Bad(Exception):
    pass


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def _standard_floating(cal):
    """Calendars with X-WR-TIMEZONE (Google exports) mean their floating times in that zone."""
    if cal.get("X-WR-TIMEZONE") is None:
        return cal
    import x_wr_timezone

    return x_wr_timezone.to_standard(cal)


def _check_zones(comp) -> None:
    """icalendar leaves a time with an unknown TZID naive: that is bad data, not UTC."""
    for name in _TIME_PROPS:
        values = comp.get(name)
        if values is None:
            continue
        for value in values if isinstance(values, list) else [values]:
            tzid = value.params.get("TZID") if hasattr(value, "params") else None
            if not tzid:
                continue
            dts = getattr(value, "dts", None)
            items = [d.dt for d in dts] if dts is not None else [getattr(value, "dt", None)]
            for dt in items:
                if isinstance(dt, tuple):  # PERIOD
                    dt = dt[0]
                if isinstance(dt, datetime) and dt.tzinfo is None:
                    raise _Bad(f"unknown time zone {str(tzid)[:80]!r} (no VTIMEZONE, not an Olson or Windows name)")


def _utc(value) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    if isinstance(value, date):
        return datetime.combine(value, time(0), tzinfo=timezone.utc)
    raise _Bad(f"not a date or time: {value!r}"[:200])


def _address(value) -> tuple[str, str] | None:
    """(address, name) of a CAL-ADDRESS, or None when it is no email address.

    RFC 5545 wants a mailto: URI, but booking tools and older clients write the bare
    address: without a scheme it is taken as written (another URI, "invalid:nomail" or
    "urn:uuid:…", is no address)."""
    raw = str(value or "").strip()
    params = getattr(value, "params", {}) or {}
    if raw.lower().startswith("mailto:"):
        addr = raw[7:]
    else:
        addr = raw if ":" not in raw else ""
    if "@" not in addr:
        email = str(params.get("EMAIL") or "").strip()
        addr = email[7:] if email.lower().startswith("mailto:") else email
    addr = addr.strip()
    if "@" not in addr:
        return None
    return addr, str(params.get("CN") or "").strip().strip('"')


def _people(comp, bid: str, bad: list[BadRecord]) -> tuple[Attendee | None, list[Attendee]]:
    organizer = None
    org = comp.get("ORGANIZER")
    if org is not None:
        pair = _address(org)
        if pair:
            organizer = Attendee(pair[0], pair[1], role="organizer", response="accepted")
    raw = comp.get("ATTENDEE")
    raw = [] if raw is None else raw if isinstance(raw, list) else [raw]
    if len(raw) > MAX_ATTENDEES:
        bad.append(BadRecord(bid, f"attendee list cut to {MAX_ATTENDEES} of {len(raw):,} attendees"))
        raw = raw[:MAX_ATTENDEES]
    people: list[Attendee] = []
    seen = {organizer.address.lower()} if organizer else set()
    for value in raw:
        params = getattr(value, "params", {}) or {}
        cutype = str(params.get("CUTYPE") or "INDIVIDUAL").upper()
        if cutype in ("ROOM", "RESOURCE"):
            continue
        pair = _address(value)
        if not pair:
            continue
        role = str(params.get("ROLE") or "REQ-PARTICIPANT").upper()
        if role == "NON-PARTICIPANT":
            continue
        response = _RESPONSES.get(str(params.get("PARTSTAT") or "NEEDS-ACTION").upper(), "needs-action")
        key = pair[0].lower()
        if key in seen:
            if organizer and key == organizer.address.lower():
                organizer.response = response  # the organiser listed as attendee too: one participant
            continue
        seen.add(key)
        people.append(
            Attendee(pair[0], pair[1], role="optional" if role == "OPT-PARTICIPANT" else "attendee", response=response)
        )
    return organizer, people


def _text(comp, name: str, limit: int) -> str | None:
    value = comp.get(name)
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text[:limit] or None


def _record(
    comp, *, uid: str, rid: str | None, start, end, bid: str, method: str | None, bad: list[BadRecord]
) -> MeetingRecord:
    organizer, attendees = _people(comp, bid, bad)
    status = _STATUSES.get(str(comp.get("STATUS") or "CONFIRMED").upper(), "confirmed")
    if method == "CANCEL":
        status = "cancelled"
    try:
        sequence = int(str(comp.get("SEQUENCE") or 0))
    except ValueError:
        sequence = 0
    s = _utc(start)
    e = _utc(end) if end is not None else None
    if e is not None and e < s:
        e = s
    return MeetingRecord(
        remote_id=remote_id(bid, rid),
        uid=uid,
        recurrence_id=rid,
        start=s,
        end=e,
        subject=_text(comp, "SUMMARY", 998) or "",
        organizer=organizer,
        attendees=attendees,
        status=status,
        location=_text(comp, "LOCATION", 500),
        sequence=max(0, sequence),
        method=method,
    )


def _has_others(rec: MeetingRecord, owner: str | None) -> bool:
    owner = (owner or "").lower()
    people = ([rec.organizer] if rec.organizer else []) + rec.attendees
    return any(p.address.lower() != owner for p in people)


def _end_of(comp, start):
    """DTEND, or DTSTART + DURATION, or RFC 5545's default (a day for dates, else zero)."""
    if comp.get("DTEND") is not None:
        return comp.get("DTEND").dt
    if comp.get("DURATION") is not None:
        return start + comp.get("DURATION").dt
    if isinstance(start, datetime):
        return start
    return start + timedelta(days=1)


def _estimate(rule, span_seconds: float) -> float:
    """Rough upper bound of a RRULE's occurrences in a span (guards the expansion)."""
    freq = str((rule.get("FREQ") or ["DAILY"])[0]).upper()
    interval = int((rule.get("INTERVAL") or [1])[0] or 1)
    n = span_seconds / (_FREQ_SECONDS.get(freq, 86400) * max(1, interval))
    for part in ("BYSECOND", "BYMINUTE", "BYHOUR", "BYDAY", "BYMONTHDAY", "BYYEARDAY", "BYWEEKNO", "BYSETPOS"):
        values = rule.get(part)
        if values and part != "BYSETPOS":
            n *= len(values)
    count = rule.get("COUNT")
    if count:
        n = min(n, int(count[0]))
    return n


def _group(
    out: Parsed,
    cal,
    uid: str,
    comps: list,
    bid: str,
    window: Window,
    owner: str | None,
    method: str | None,
    window_singles: bool,
) -> None:
    for comp in comps:
        _check_zones(comp)
    master = next((c for c in comps if c.get("RECURRENCE-ID") is None), None)
    overrides = [c for c in comps if c.get("RECURRENCE-ID") is not None]
    recurring = bool(overrides) or (
        master is not None and (master.get("RRULE") is not None or master.get("RDATE") is not None)
    )
    out.recurring = out.recurring or recurring
    bad: list[BadRecord] = []
    records: list[MeetingRecord] = []
    if not recurring:
        if master is None or master.get("DTSTART") is None:  # no master: every component overrides, so recurring
            raise _Bad("event without DTSTART")
        start = master.get("DTSTART").dt
        end = _end_of(master, start)
        s, e = _utc(start), _utc(end)
        if window_singles and (max(s, e) < window.start or s >= window.end):
            out.before_window = out.before_window or max(s, e) < window.start
            out.after_window = out.after_window or s >= window.end
            return
        records.append(_record(master, uid=uid, rid=None, start=start, end=end, bid=bid, method=method, bad=bad))
    elif master is None or master.get("RRULE") is None and master.get("RDATE") is None:
        # Overrides only (an invitation to one occurrence), or a master without a rule.
        for comp in ([master] if master is not None else []) + overrides:
            if comp.get("DTSTART") is None:
                raise _Bad("event without DTSTART")
            start = comp.get("DTSTART").dt
            rid_value = comp.get("RECURRENCE-ID").dt if comp.get("RECURRENCE-ID") is not None else start
            records.append(
                _record(
                    comp,
                    uid=uid,
                    rid=recurrence_id_utc(_utc(rid_value)),
                    start=start,
                    end=_end_of(comp, start),
                    bid=bid,
                    method=method,
                    bad=bad,
                )
            )
    else:
        records.extend(_expand(cal, uid, master, overrides, bid, window, method, bad))
    out.bad.extend(bad)
    for rec in records:
        if _has_others(rec, owner):
            out.records.append(rec)
            out.ids.append(rec.recurrence_id or "")


def _expand(
    cal, uid: str, master, overrides: list, bid: str, window: Window, method: str | None, bad: list[BadRecord]
) -> list[MeetingRecord]:
    import icalendar
    import recurring_ical_events

    if master.get("DTSTART") is None:
        raise _Bad("recurring event without DTSTART")
    span = (window.end - window.start).total_seconds()
    rules = master.get("RRULE")
    for rule in rules if isinstance(rules, list) else [rules] if rules is not None else []:
        estimate = _estimate(rule, span)
        if estimate > MAX_OCCURRENCES * 10:
            raise _Bad(
                f"recurrence too dense to expand: about {estimate:,.0f} occurrences in the sync window "
                f"(RRULE {rule.to_ical().decode()[:80]})"
            )
    # Expand this UID alone (an iMIP object can carry several).
    one = icalendar.Calendar()
    for tz in cal.walk("VTIMEZONE"):
        one.add_component(tz)
    one.add_component(master)
    for comp in overrides:
        one.add_component(comp)
    by_rid = {}
    for comp in overrides:
        by_rid[recurrence_id_utc(_utc(comp.get("RECURRENCE-ID").dt))] = comp
    query = recurring_ical_events.of(one)
    records: list[MeetingRecord] = []
    since, until = recurrence_id_utc(window.start), recurrence_id_utc(window.end)
    try:
        own_sequence = max(0, int(str(master.get("SEQUENCE") or 0)))
    except ValueError:
        own_sequence = 0
    done = False
    for series in query.series:
        for occ in series.between(window.start, window.end):
            rid_value = occ.recurrence_ids[0] if occ.recurrence_ids else occ.start
            rid = recurrence_id_utc(_utc(rid_value))
            comp = by_rid.get(rid, master)
            rec = _record(comp, uid=uid, rid=rid, start=occ.start, end=occ.end, bid=bid, method=method, bad=bad)
            rec.series_from, rec.series_to, rec.series_sequence = since, until, own_sequence
            records.append(rec)
            if len(records) >= MAX_OCCURRENCES:
                bad.append(BadRecord(bid, f"recurrence cut at {MAX_OCCURRENCES} occurrences in the sync window"))
                done = True
                break
        if done:
            break
    listed = {r.recurrence_id for r in records}
    if done or any(since <= rid < until and rid not in listed for rid in by_rid):
        # What lies past a cut was not read; an occurrence its override moved out of the window
        # is still the series' (its recurrence id is in the window, its time is not). Either way
        # the copy does not list the whole window, and nothing it lacks may be taken as removed.
        for rec in records:
            rec.series_from = rec.series_to = None
    records.sort(key=lambda r: r.start)
    return records
