"""iCalendar -> MeetingRecords (connectors/ical.py), no servers: recurrence ids,
expansion in the window, overrides, time zones, bad data.

`event()` / `vcalendar()` build the iCalendar text the CalDAV and iMIP tests use too.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from connectors.base import CalendarWindow, meeting_key
from connectors.ical import (
    MAX_ATTENDEES,
    MAX_OCCURRENCES,
    Window,
    meetings_from_ics,
    recurrence_id_utc,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
WINDOW = Window.of(now=NOW)  # 2024-06-01 .. 2025-11-29


def stamp(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def event(
    uid: str,
    start: str,
    *,
    end: str | None = None,
    summary: str = "Call",
    organizer: str | None = "alice@ourco.com",
    attendees=(("bob@ext.com", "ACCEPTED"),),
    extra: str = "",
    sequence: int = 0,
) -> str:
    """One VEVENT. start/end are full property lines' values, e.g. "20250310T100000Z" or
    ";TZID=Europe/Berlin:20250310T100000" (a leading ';' means parameters are included)."""

    def prop(name, value):
        return f"{name}{value}" if value.startswith(";") else f"{name}:{value}"

    lines = ["BEGIN:VEVENT", f"UID:{uid}", "DTSTAMP:20250101T000000Z", prop("DTSTART", start)]
    if end:
        lines.append(prop("DTEND", end))
    lines += [f"SUMMARY:{summary}", f"SEQUENCE:{sequence}"]
    if organizer:
        lines.append(f"ORGANIZER;CN=Organiser:mailto:{organizer}")
    for addr, partstat in attendees:
        lines.append(f"ATTENDEE;CN={addr.split('@')[0].title()};PARTSTAT={partstat};ROLE=REQ-PARTICIPANT:mailto:{addr}")
    if extra:
        lines += [ln for ln in extra.replace("\r\n", "\n").split("\n") if ln]
    lines.append("END:VEVENT")
    return "\r\n".join(lines) + "\r\n"


def vcalendar(*events: str, method: str | None = None, extra: str = "") -> str:
    head = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Threadline tests//EN\r\n"
    if method:
        head += f"METHOD:{method}\r\n"
    return head + extra + "".join(events) + "END:VCALENDAR\r\n"


def parse(ics: str, **kw):
    kw.setdefault("base_id", "ev.ics")
    kw.setdefault("window", WINDOW)
    return meetings_from_ics(ics, **kw)


def test_recurrence_id_format_is_the_graph_one():
    berlin = datetime(2025, 3, 10, 10, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    assert recurrence_id_utc(berlin) == berlin.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert recurrence_id_utc(berlin) == "2025-03-10T09:00:00Z"
    assert recurrence_id_utc(datetime(2025, 3, 10, 10, 0)) == "2025-03-10T10:00:00Z"  # floating: UTC
    assert recurrence_id_utc(date(2025, 3, 10)) == "2025-03-10T00:00:00Z"  # all-day: midnight UTC


def test_single_event_in_utc():
    p = parse(
        vcalendar(
            event(
                "one@x",
                "20250310T100000Z",
                end="20250310T113000Z",
                summary="Pricing",
                extra="LOCATION:Room 1\r\nSTATUS:TENTATIVE",
            )
        ),
        owner="alice@ourco.com",
    )
    assert p.bad == [] and not p.recurring and p.ids == [""]
    (r,) = p.records
    assert (r.remote_id, r.uid, r.recurrence_id, r.subject, r.location, r.status) == (
        "ev.ics",
        "one@x",
        None,
        "Pricing",
        "Room 1",
        "tentative",
    )
    assert r.start == datetime(2025, 3, 10, 10, 0, tzinfo=timezone.utc)
    assert r.end == datetime(2025, 3, 10, 11, 30, tzinfo=timezone.utc)
    assert (r.organizer.address, r.organizer.role) == ("alice@ourco.com", "organizer")
    assert [(a.address, a.role, a.response) for a in r.attendees] == [("bob@ext.com", "attendee", "accepted")]
    assert meeting_key(r.uid, r.recurrence_id) == "ical:one@x"


def test_attendee_roles_responses_rooms_and_organizer_listed_twice():
    extra = (
        "ATTENDEE;PARTSTAT=ACCEPTED:mailto:alice@ourco.com\r\n"
        "ATTENDEE;ROLE=OPT-PARTICIPANT;PARTSTAT=TENTATIVE:mailto:opt@ext.com\r\n"
        "ATTENDEE;PARTSTAT=DECLINED:MAILTO:No@Ext.com\r\n"
        "ATTENDEE;CUTYPE=ROOM:mailto:room-1@ourco.com\r\n"
        "ATTENDEE;ROLE=NON-PARTICIPANT:mailto:fyi@ext.com\r\n"
        "ATTENDEE;EMAIL=urn@ext.com:urn:uuid:1234\r\n"
    )
    (r,) = parse(vcalendar(event("p@x", "20250310T100000Z", attendees=(), extra=extra))).records
    assert r.organizer.address == "alice@ourco.com"
    assert [(a.address, a.role, a.response) for a in r.attendees] == [
        ("opt@ext.com", "optional", "tentative"),
        ("No@Ext.com", "attendee", "declined"),
        ("urn@ext.com", "attendee", "needs-action"),
    ]


def test_meetings_with_nobody_but_the_owner_are_skipped():
    own = vcalendar(event("solo@x", "20250310T100000Z", attendees=()))
    assert parse(own, owner="alice@ourco.com").records == []
    assert parse(vcalendar(event("nobody@x", "20250310T100000Z", organizer=None, attendees=()))).records == []


def test_time_zones_olson_windows_vtimezone_and_floating():
    cases = {
        ";TZID=Europe/Berlin:20250310T100000": datetime(2025, 3, 10, 9, 0, tzinfo=timezone.utc),
        ";TZID=W. Europe Standard Time:20250710T100000": datetime(2025, 7, 10, 8, 0, tzinfo=timezone.utc),
        ";TZID=America/New_York:20250710T100000": datetime(2025, 7, 10, 14, 0, tzinfo=timezone.utc),
        "20250310T100000": datetime(2025, 3, 10, 10, 0, tzinfo=timezone.utc),  # floating -> UTC
        ";VALUE=DATE:20250310": datetime(2025, 3, 10, 0, 0, tzinfo=timezone.utc),
    }
    for start, expected in cases.items():
        p = parse(vcalendar(event("tz@x", start)))
        assert p.bad == [] and p.records[0].start == expected, start
    vtz = (
        "BEGIN:VTIMEZONE\r\nTZID:Our Office Time\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\n"
        "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nTZOFFSETFROM:+0300\r\nTZOFFSETTO:+0200\r\nEND:STANDARD\r\n"
        "BEGIN:DAYLIGHT\r\nDTSTART:19700329T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\n"
        "TZOFFSETFROM:+0200\r\nTZOFFSETTO:+0300\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n"
    )
    p = parse(vcalendar(event("vtz@x", ";TZID=Our Office Time:20250710T100000"), extra=vtz))
    assert p.records[0].start == datetime(2025, 7, 10, 7, 0, tzinfo=timezone.utc)
    # Google's X-WR-TIMEZONE gives floating times a zone.
    p = parse(vcalendar(event("wr@x", "20250710T100000"), extra="X-WR-TIMEZONE:Asia/Tokyo\r\n"))
    assert p.records[0].start == datetime(2025, 7, 10, 1, 0, tzinfo=timezone.utc)


def test_unknown_time_zone_is_a_bad_record():
    p = parse(vcalendar(event("mars@x", ";TZID=Mars/Olympus Mons:20250310T100000")))
    assert p.records == [] and len(p.bad) == 1
    assert p.bad[0].remote_id == "ev.ics" and "unknown time zone 'Mars/Olympus Mons'" in p.bad[0].reason


def test_weekly_series_with_exdate_moved_and_cancelled_occurrences():
    tz = ";TZID=Europe/Berlin:"
    master = event(
        "series@x",
        tz + "20250303T100000",
        end=tz + "20250303T110000",
        summary="Weekly",
        extra=f"RRULE:FREQ=WEEKLY;COUNT=6\r\nEXDATE{tz}20250310T100000",
    )
    moved = event(
        "series@x",
        tz + "20250318T150000",
        end=tz + "20250318T160000",
        summary="Moved",
        extra=f"RECURRENCE-ID{tz}20250317T100000",
        sequence=2,
    )
    cancelled = event(
        "series@x",
        tz + "20250324T100000",
        end=tz + "20250324T110000",
        extra=f"RECURRENCE-ID{tz}20250324T100000\r\nSTATUS:CANCELLED",
    )
    p = parse(vcalendar(master, moved, cancelled))
    assert p.bad == [] and p.recurring
    got = [(r.recurrence_id, r.start.strftime("%m-%d %H:%M"), r.subject, r.status, r.sequence) for r in p.records]
    assert got == [
        ("2025-03-03T09:00:00Z", "03-03 09:00", "Weekly", "confirmed", 0),
        ("2025-03-17T09:00:00Z", "03-18 14:00", "Moved", "confirmed", 2),
        ("2025-03-24T09:00:00Z", "03-24 09:00", "Call", "cancelled", 0),
        # daylight saving time began on 30 March: same local hour, one hour earlier in UTC
        ("2025-03-31T08:00:00Z", "03-31 08:00", "Weekly", "confirmed", 0),
        ("2025-04-07T08:00:00Z", "04-07 08:00", "Weekly", "confirmed", 0),
    ]
    assert [r.remote_id for r in p.records][0] == "ev.ics#2025-03-03T09:00:00Z"
    assert p.ids == [r.recurrence_id for r in p.records]
    assert {meeting_key(r.uid, r.recurrence_id) for r in p.records} == {
        f"ical:series@x/{r.recurrence_id}" for r in p.records
    }


def test_endless_series_is_bounded_by_the_window():
    p = parse(vcalendar(event("daily@x", "20200101T090000Z", extra="RRULE:FREQ=DAILY")))
    assert p.bad == []
    starts = [r.start for r in p.records]
    assert min(starts) >= WINDOW.start and max(starts) < WINDOW.end
    assert len(starts) == (WINDOW.end - WINDOW.start).days


def test_too_dense_series_and_huge_attendee_lists_are_recorded():
    p = parse(vcalendar(event("dense@x", "20250101T000000Z", extra="RRULE:FREQ=MINUTELY")))
    assert p.records == [] and "too dense" in p.bad[0].reason
    p = parse(vcalendar(event("hourly@x", "20250101T000000Z", extra="RRULE:FREQ=HOURLY;INTERVAL=3")))
    assert len(p.records) == MAX_OCCURRENCES and "cut at" in p.bad[0].reason
    many = tuple((f"p{i}@ext.com", "NEEDS-ACTION") for i in range(MAX_ATTENDEES + 100))
    p = parse(vcalendar(event("big@x", "20250310T100000Z", attendees=many)))
    assert len(p.records[0].attendees) == MAX_ATTENDEES
    assert p.bad[0].reason == f"attendee list cut to {MAX_ATTENDEES} of {MAX_ATTENDEES + 100} attendees"


def test_invalid_icalendar_is_a_bad_record():
    for text, reason in (
        ("hello", "not an iCalendar object"),
        (
            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nDTSTART:2025031\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
            "unreadable event",
        ),
        (vcalendar(event("", "20250310T100000Z")), "event without UID"),
    ):
        p = parse(text)
        assert p.records == [] and reason in p.bad[0].reason, (text, p.bad)


def test_window_filters_single_events_but_imip_keeps_them():
    old = vcalendar(event("old@x", "20230101T100000Z"))
    p = parse(old)
    assert p.records == [] and p.before_window
    assert len(parse(old, window_singles=False, method="REQUEST").records) == 1


def test_imip_methods():
    req = parse(vcalendar(event("m@x", "20250310T100000Z", sequence=1), method="REQUEST"), method="")
    assert [(r.method, r.status, r.sequence) for r in req.records] == [("REQUEST", "confirmed", 1)]
    cancel = parse(vcalendar(event("m@x", "20250310T100000Z", sequence=2), method="CANCEL"), method="")
    assert [(r.method, r.status) for r in cancel.records] == [("CANCEL", "cancelled")]
    reply = parse(
        vcalendar(event("m@x", "20250310T100000Z", attendees=(("bob@ext.com", "DECLINED"),)), method="REPLY"), method=""
    )
    assert [(r.method, [(a.address, a.response) for a in r.attendees]) for r in reply.records] == [
        ("REPLY", [("bob@ext.com", "declined")])
    ]
    # METHOD from the MIME part when the object has none; PUBLISH and plain files give nothing
    assert parse(vcalendar(event("m@x", "20250310T100000Z")), method="REQUEST").records[0].method == "REQUEST"
    assert parse(vcalendar(event("m@x", "20250310T100000Z"), method="PUBLISH"), method="").records == []
    assert parse(vcalendar(event("m@x", "20250310T100000Z")), method="").records == []


def test_invitation_to_one_occurrence_has_its_recurrence_id():
    one = event("s@x", ";TZID=Europe/Berlin:20250318T150000", extra="RECURRENCE-ID;TZID=Europe/Berlin:20250317T100000")
    (r,) = parse(vcalendar(one, method="REQUEST"), method="").records
    assert r.recurrence_id == "2025-03-17T09:00:00Z" and r.remote_id == "ev.ics#2025-03-17T09:00:00Z"
    assert r.start == datetime(2025, 3, 18, 14, 0, tzinfo=timezone.utc)


def test_window_moves_a_day_at_a_time():
    a = Window.of(now=datetime(2025, 6, 1, 0, 5, tzinfo=timezone.utc))
    b = Window.of(now=datetime(2025, 6, 1, 23, 55, tzinfo=timezone.utc))
    c = Window.of(now=datetime(2025, 6, 2, 0, 5, tzinfo=timezone.utc))
    assert a == b and a.key() != c.key()
    assert a.end - a.start == timedelta(days=365 + 180 + 1)  # the one default: CalendarWindow()
    w = Window.of(CalendarWindow(past_days=10, future_days=5), NOW)
    assert (w.start.date().isoformat(), w.end.date().isoformat()) == ("2025-05-22", "2025-06-07")


def test_every_occurrence_of_an_expanded_series_carries_the_series_own_sequence():
    # The whole series was edited (SEQUENCE 2); an override kept the SEQUENCE of its own edit (0),
    # as Google leaves it. The copy is the series at 2, whatever its lowest occurrence says.
    master = event("s@x", "20250303T100000Z", extra="RRULE:FREQ=WEEKLY;COUNT=3", sequence=2)
    moved = event("s@x", "20250310T150000Z", extra="RECURRENCE-ID:20250310T100000Z", sequence=0)
    records = parse(vcalendar(master + moved)).records
    assert sorted(r.sequence for r in records) == [0, 2, 2]
    assert {r.series_sequence for r in records} == {2}


def test_an_expanded_series_says_from_where_it_lists_every_occurrence():
    series = parse(vcalendar(event("s@x", "20250303T100000Z", extra="RRULE:FREQ=WEEKLY;COUNT=3")))
    assert {(r.series_from, r.series_to) for r in series.records} == {
        (recurrence_id_utc(WINDOW.start), recurrence_id_utc(WINDOW.end))
    }
    # an invitation to one occurrence, or a single event, lists nothing else
    one = event("s@x", "20250318T150000Z", extra="RECURRENCE-ID:20250317T100000Z")
    assert parse(vcalendar(one, method="REQUEST"), method="").records[0].series_from is None
    assert parse(vcalendar(event("one@x", "20250310T100000Z"))).records[0].series_from is None
    # a series cut at MAX_OCCURRENCES did not list what lies past the cut
    cut = parse(vcalendar(event("hourly@x", "20250101T000000Z", extra="RRULE:FREQ=HOURLY;INTERVAL=3")))
    assert {r.series_from for r in cut.records} == {None}
    # an occurrence of the window moved out of it by its override is still the series': the
    # copy does not list the whole window then
    first = datetime(2025, 3, 3, 10, tzinfo=timezone.utc)
    last = first + timedelta(weeks=(WINDOW.end - first).days // 7)  # the series' last Monday in the window
    assert last < WINDOW.end
    weekly = event("w@x", "20250303T100000Z", extra="RRULE:FREQ=WEEKLY;COUNT=200")
    moved_out = event(
        "w@x", (WINDOW.end + timedelta(days=2)).strftime("%Y%m%dT100000Z"), extra=f"RECURRENCE-ID:{last:%Y%m%dT%H%M%SZ}"
    )
    kept = parse(vcalendar(weekly))
    assert recurrence_id_utc(last) in {r.recurrence_id for r in kept.records}
    assert {r.series_from for r in kept.records} == {recurrence_id_utc(WINDOW.start)}
    moved = parse(vcalendar(weekly, moved_out))
    assert recurrence_id_utc(last) not in {r.recurrence_id for r in moved.records}
    assert moved.records and {(r.series_from, r.series_to) for r in moved.records} == {(None, None)}
