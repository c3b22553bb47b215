"""The CalDAV connector against a real Radicale: discovery, sync-token and
ctag modes, changes, moves, cancellations, deletions, recurring series, an
expired token, a moving window, errors."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from connectors.base import AuthError, CalendarWindow, Fix, TransientError
from connectors.caldav import CalDavConnector
from sync.fixes import explain_error
from tests.connectors.test_ical import event, stamp, vcalendar

NOW = datetime.now(timezone.utc).replace(microsecond=0, second=0, minute=0)
SOON = NOW + timedelta(days=3)
OWNER = "alice@ourco.com"


def connector(user, **kw) -> CalDavConnector:
    kw.setdefault("owner", OWNER)
    return CalDavConnector(user.url, user.username, kw.pop("password", user.password), **kw)


def calendar_folder(conn, name="calendar"):
    return next(f for f in conn.list_folders() if f.name.endswith(f"/{name}/"))


def sync(conn, folder, cursor):
    """All batches of one run: (records, removed, bad, cursor, batches)."""
    batches = list(conn.fetch_changes(folder, cursor))
    records = [r for b in batches for r in b.records]
    removed = [x for b in batches for x in b.removed]
    bad = [x for b in batches for x in b.bad]
    return records, removed, bad, (batches[-1].cursor if batches else cursor), batches


def weekly(uid, start, count=None, extra="", **kw):
    rule = "RRULE:FREQ=WEEKLY" + (f";COUNT={count}" if count else "")
    return event(
        uid, stamp(start), end=stamp(start + timedelta(hours=1)), extra=rule + ("\r\n" + extra if extra else ""), **kw
    )


def test_discovery_lists_event_calendars_only(caldav_user):
    caldav_user.make_calendar("tasks", components=("VTODO",))
    caldav_user.make_calendar("team", display_name="Team meetings")
    conn = connector(caldav_user)
    folders = conn.list_folders()
    assert sorted(f.name for f in folders) == [f"/{caldav_user.username}/calendar/", f"/{caldav_user.username}/team/"]
    assert {f.role for f in folders} == {"calendar"}
    assert ("displayname=Team meetings",) in [f.flags for f in folders]
    # Each calendar carries its URL, so fetching never has to rebuild it from the name.
    assert all(f.remote_id and f.remote_id.startswith("http") and f.remote_id.endswith(f.name) for f in folders)
    conn.close()


@pytest.mark.parametrize("sync_token", [True, False], ids=["sync-token", "ctag"])
def test_incremental_changes_moves_cancellations_and_deletions(caldav_user, sync_token):
    caldav_user.put("a.ics", vcalendar(event("a@x", stamp(SOON), end=stamp(SOON + timedelta(hours=1)), summary="Demo")))
    caldav_user.put("b@x.ics", vcalendar(event("b@x", stamp(SOON + timedelta(days=1)), summary="Pricing")))
    caldav_user.put("own.ics", vcalendar(event("own@x", stamp(SOON), attendees=())))  # only the owner
    conn = connector(caldav_user, use_sync_token=sync_token)
    cal = calendar_folder(conn)

    records, removed, bad, cursor, batches = sync(conn, cal, {})
    assert sorted((r.remote_id, r.uid, r.subject) for r in records) == [
        ("a.ics", "a@x", "Demo"),
        ("b@x.ics", "b@x", "Pricing"),
    ]
    assert removed == [] and bad == [] and batches[-1].backfill_done
    assert cursor["mode"] == ("sync" if sync_token else "ctag")

    # Nothing changed: no batch, one request.
    before = conn.requests
    assert list(conn.fetch_changes(cal, cursor)) == []
    assert conn.requests - before == 1

    # Moved (new time, SEQUENCE up), cancelled, and a new one.
    later = SOON + timedelta(days=2, hours=3)
    caldav_user.put(
        "a.ics",
        vcalendar(event("a@x", stamp(later), end=stamp(later + timedelta(hours=1)), summary="Demo", sequence=1)),
    )
    caldav_user.put(
        "b@x.ics",
        vcalendar(
            event("b@x", stamp(SOON + timedelta(days=1)), summary="Pricing", sequence=1, extra="STATUS:CANCELLED")
        ),
    )
    caldav_user.put("c.ics", vcalendar(event("c@x", stamp(SOON), attendees=(("dan@ext.com", "TENTATIVE"),))))
    records, removed, bad, cursor, _ = sync(conn, cal, cursor)
    got = {r.uid: (r.start, r.status, r.sequence) for r in records}
    assert got == {
        "a@x": (later, "confirmed", 1),
        "b@x": (SOON + timedelta(days=1), "cancelled", 1),
        "c@x": (SOON, "confirmed", 0),
    }
    assert removed == []
    assert [a.response for r in records if r.uid == "c@x" for a in r.attendees] == ["tentative"]

    # Deleted: its remote id leaves.
    caldav_user.delete("b@x.ics")
    records, removed, bad, cursor, _ = sync(conn, cal, cursor)
    assert records == [] and removed == ["b@x.ics"]
    # An event that loses its only external attendee leaves the timeline too.
    caldav_user.put("c.ics", vcalendar(event("c@x", stamp(SOON), attendees=())))
    records, removed, _, cursor, _ = sync(conn, cal, cursor)
    assert records == [] and removed == ["c.ics"]
    assert list(conn.fetch_changes(cal, cursor)) == []
    conn.close()


@pytest.mark.parametrize("sync_token", [True, False], ids=["sync-token", "ctag"])
def test_recurring_series_changes_report_dropped_occurrences(caldav_user, sync_token):
    start = NOW.replace(hour=9) + timedelta(days=1)
    caldav_user.put("s.ics", vcalendar(weekly("s@x", start, count=4, summary="Standup")))
    conn = connector(caldav_user, use_sync_token=sync_token)
    cal = calendar_folder(conn)
    records, _, _, cursor, _ = sync(conn, cal, {})
    rids = [r.recurrence_id for r in records]
    assert rids == [(start + timedelta(weeks=i)).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(4)]
    assert {r.remote_id for r in records} == {f"s.ics#{rid}" for rid in rids}

    # Shortened to 2 occurrences, and the second moved by an hour: the dropped ones are removed.
    moved = event(
        "s@x",
        stamp(start + timedelta(weeks=1, hours=1)),
        extra=f"RECURRENCE-ID:{stamp(start + timedelta(weeks=1))}",
        summary="Standup (late)",
        sequence=1,
    )
    caldav_user.put("s.ics", vcalendar(weekly("s@x", start, count=2, summary="Standup"), moved))
    records, removed, _, cursor, _ = sync(conn, cal, cursor)
    assert [r.recurrence_id for r in records] == rids[:2]
    assert records[1].start == start + timedelta(weeks=1, hours=1) and records[1].subject == "Standup (late)"
    assert sorted(removed) == sorted(f"s.ics#{rid}" for rid in rids[2:])

    # EXDATE one occurrence.
    caldav_user.put("s.ics", vcalendar(weekly("s@x", start, count=2, extra=f"EXDATE:{stamp(start)}")))
    records, removed, _, cursor, _ = sync(conn, cal, cursor)
    assert [r.recurrence_id for r in records] == rids[1:2] and removed == [f"s.ics#{rids[0]}"]

    # Deleting the series removes every occurrence left.
    caldav_user.delete("s.ics")
    records, removed, _, cursor, _ = sync(conn, cal, cursor)
    assert records == [] and removed == [f"s.ics#{rids[1]}"]
    conn.close()


def test_time_zones_through_the_server(caldav_user):
    caldav_user.put(
        "tz.ics",
        vcalendar(
            event("tz@x", ";TZID=America/New_York:20300710T100000", end=";TZID=America/New_York:20300710T110000")
        ),
    )
    caldav_user.put("win.ics", vcalendar(event("win@x", ";TZID=W. Europe Standard Time:20300110T100000")))
    conn = connector(caldav_user, window=CalendarWindow(30, 365 * 6))
    records, _, bad, _, _ = sync(conn, calendar_folder(conn), {})
    assert bad == []
    assert {r.uid: r.start for r in records} == {
        "tz@x": datetime(2030, 7, 10, 14, 0, tzinfo=timezone.utc),
        "win@x": datetime(2030, 1, 10, 9, 0, tzinfo=timezone.utc),
    }
    conn.close()


def test_endless_series_bounded_by_the_window_and_window_moves(caldav_user):
    start = NOW.replace(hour=9) - timedelta(days=20)
    caldav_user.put("w.ics", vcalendar(weekly("w@x", start)))  # no end
    window = CalendarWindow(30, 30)
    conn = connector(caldav_user, window=window)
    cal = calendar_folder(conn)
    records, _, _, cursor, _ = sync(conn, cal, {})
    first = sorted(r.recurrence_id for r in records)
    assert len(first) in (7, 8, 9) and all(r.start >= start for r in records)

    # 15 days later the window has moved: occurrences behind it stay (history), new ones come.
    later = connector(caldav_user, window=window, now=datetime.now(timezone.utc) + timedelta(days=15))
    records, removed, _, cursor2, _ = sync(later, cal, cursor)
    assert removed == []
    new = sorted(r.recurrence_id for r in records)
    assert new[-1] > first[-1] and len(new) >= 7
    assert set(first) <= set(cursor2["items"]["w.ics"][2])  # still known, so a delete removes them
    later.close()
    conn.close()


def test_expired_sync_token_reconciles_with_a_full_listing(caldav_user):
    caldav_user.put("a.ics", vcalendar(event("a@x", stamp(SOON))))
    caldav_user.put("b.ics", vcalendar(event("b@x", stamp(SOON))))
    conn = connector(caldav_user)
    cal = calendar_folder(conn)
    _, _, _, cursor, _ = sync(conn, cal, {})
    caldav_user.delete("b.ics")
    stale = {**cursor, "token": "http://radicale.org/ns/sync/" + "0" * 64}
    records, removed, _, cursor, _ = sync(conn, cal, stale)
    assert [r.uid for r in records] == ["a@x"] and removed == ["b.ics"]
    assert cursor["token"].startswith("http://radicale.org/ns/sync/") and cursor["token"] != stale["token"]
    conn.close()


def test_large_calendar_comes_in_chunks_and_the_token_only_at_the_end(caldav_user):
    for i in range(5):
        caldav_user.put(f"e{i}.ics", vcalendar(event(f"e{i}@x", stamp(SOON + timedelta(hours=i)))))
    conn = connector(caldav_user, chunk=2)
    cal = calendar_folder(conn)
    batches = list(conn.fetch_changes(cal, {}))
    assert [len(b.records) for b in batches] == [2, 2, 1]
    assert [b.backfill_done for b in batches] == [False, False, True]
    assert [b.cursor["token"] for b in batches[:2]] == [None, None] and batches[-1].cursor["token"]
    # A run cut after the first batch starts again from its cursor without duplicating removals.
    records, removed, _, _, _ = sync(conn, cal, batches[0].cursor)
    assert len(records) == 5 and removed == []
    conn.close()


def test_wrong_password_is_an_auth_error(caldav_user):
    with pytest.raises(AuthError) as info:
        connector(caldav_user, password="wrong").list_folders()
    assert info.value.fix == Fix.PASSWORD and "username and password" in explain_error(info.value, "caldav")


def test_closed_port_is_transient():
    from tests.servers import free_port

    with pytest.raises(TransientError):
        CalDavConnector(f"http://127.0.0.1:{free_port()}/", "x", "y", timeout=5).list_folders()


@pytest.mark.parametrize("sync_token", [True, False], ids=["sync-token", "ctag"])
def test_addresses_with_characters_that_need_escaping(radicale, sync_token):
    """Google, iCloud and Radicale put the account's address (and calendar names with
    spaces) in calendar URLs: percent-encoded by the server, read back as they are."""
    import secrets

    from tests.conftest import CalDavUser

    username, password = f"rep.{secrets.token_hex(3)}@ourco.com", secrets.token_urlsafe(12)
    radicale.add_user(username, password)
    radicale.make_calendar(username, password, "calendar", display_name="Work")
    try:
        user = CalDavUser(username, password, "calendar", radicale)
        user.put("a%20b.ics", vcalendar(event("a@x", stamp(SOON), summary="Demo")))
        conn = connector(user, use_sync_token=sync_token)
        records, removed, bad, cursor, _ = sync(conn, calendar_folder(conn), {})
        assert [(r.uid, r.subject) for r in records] == [("a@x", "Demo")] and bad == [] and removed == []
    finally:
        radicale.remove_user(username)


def test_rate_limits_give_a_number_of_seconds_however_the_server_wrote_it():
    from email.utils import format_datetime

    from caldav.lib.error import RateLimitError

    from connectors.base import ThrottledError, retry_after_seconds
    from connectors.caldav import translate

    assert retry_after_seconds("120") == 120.0 and retry_after_seconds(7) == 7.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
    in_a_minute = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=60), usegmt=True)
    assert 50 <= retry_after_seconds(in_a_minute) <= 61
    err = translate(
        RateLimitError(url="https://dav.example/", reason="Too Many Requests", retry_after="120"), "listing events"
    )
    assert isinstance(err, ThrottledError) and err.retry_after == 120.0


@pytest.mark.parametrize("refusal", ["403", "501"])
def test_a_server_refusing_sync_collection_is_read_in_ctag_mode(caldav_user, refusal):
    """SabreDAV-style servers without RFC 6578 answer the REPORT with 403
    (DAV:supported-report) or 501: the calendar is read by ctag and etags instead.
    Radicale does support it, so the refusal is put in front of the real server."""
    from connectors.base import AuthError, BadDataError

    caldav_user.put("a.ics", vcalendar(event("a@x", stamp(SOON), summary="Demo")))
    conn = connector(caldav_user, use_sync_token=True)
    real = conn._request

    def refusing(method, url, body="", headers=None, what=""):
        if "sync-collection" in what:
            if refusal == "403":
                raise AuthError("the CalDAV server refused the login while listing changes (403 Forbidden)")
            raise BadDataError("the CalDAV server does not implement REPORT here (501)")
        return real(method, url, body, headers, what)

    conn._request = refusing
    records, removed, bad, cursor, _ = sync(conn, calendar_folder(conn), {})
    assert [r.uid for r in records] == ["a@x"] and cursor["mode"] == "ctag"
    caldav_user.put("b.ics", vcalendar(event("b@x", stamp(SOON), summary="More")))
    records, *_ = sync(conn, calendar_folder(conn), cursor)
    assert [r.uid for r in records] == ["b@x"]


@pytest.mark.parametrize("sync_token", [True, False], ids=["sync-token", "ctag"])
def test_a_meeting_booked_beyond_the_window_arrives_when_the_window_reaches_it(caldav_user, sync_token):
    window = CalendarWindow(30, 30)
    far = (NOW + timedelta(days=40)).replace(hour=10)
    caldav_user.put("far.ics", vcalendar(event("far@x", stamp(far), summary="Renewal talk")))
    conn = connector(caldav_user, window=window, use_sync_token=sync_token)
    cal = calendar_folder(conn)
    records, _, _, cursor, _ = sync(conn, cal, {})
    assert records == []  # 40 days ahead, the window ends at 30
    # Nothing changes on the server; 15 days later the event is inside the window.
    later = connector(
        caldav_user, window=window, use_sync_token=sync_token, now=datetime.now(timezone.utc) + timedelta(days=15)
    )
    records, removed, bad, _, _ = sync(later, cal, cursor)
    assert [(r.uid, r.subject) for r in records] == [("far@x", "Renewal talk")] and removed == [] and bad == []
    later.close()
    conn.close()
