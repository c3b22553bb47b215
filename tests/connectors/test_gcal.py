"""The Google Calendar connector against the fake Calendar API (tokens from the fake
Google's token endpoint through google-auth): paging, sync tokens, 410, rate limits,
token refresh, and how an event becomes a MeetingRecord."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from connectors.base import AuthError, CalendarWindow, ThrottledError
from connectors.gcal import GoogleCalendar, event_record
from connectors.googleauth import CALENDAR_SCOPE, MAIL_SCOPE, SCOPES, ServiceAccountTokenSource

REP = "rep@ourco.com"
NOW = datetime.now(timezone.utc).replace(microsecond=0)


def calendar(google, *, scopes=(CALENDAR_SCOPE,), **kw) -> tuple[GoogleCalendar, list[float]]:
    key = google.service_account()
    google.delegate(json.loads(key)["client_id"], SCOPES)
    google.add_user(REP)
    slept: list[float] = []
    cal = GoogleCalendar(
        ServiceAccountTokenSource(key, REP, scopes), api_url=google.calendar_url, sleep=slept.append, **kw
    )
    return cal, slept


def meetings(n: int, google) -> list[str]:
    return [
        google.calendar.add_event(
            [REP], subject=f"M{i}", start=NOW + timedelta(days=i + 1), organizer=REP, attendees=["carla@acme.com"]
        )
        for i in range(n)
    ]


def test_a_full_round_follows_page_tokens_and_keeps_the_sync_token_of_the_last_page(google):
    cal, _ = calendar(google, page_size=2)
    ids = meetings(5, google)
    batches = list(cal.fetch_changes({}))
    assert [len(b.records) for b in batches] == [2, 2, 1]
    assert [r.remote_id for b in batches for r in b.records] == ids
    assert "page_token" in batches[0].cursor and not batches[0].backfill_done
    assert batches[-1].backfill_done and batches[-1].cursor["sync_token"].startswith("sync-")
    first = google.calendar.requests[0][1]
    assert first["singleEvents"] == "true" and "timeMin" in first and "timeMax" in first
    # A run that stopped after the first page goes on from there, not from the start.
    before = len(google.calendar.requests)
    resumed = list(cal.fetch_changes(batches[0].cursor))
    assert [r.remote_id for b in resumed for r in b.records] == ids[2:]
    assert len(google.calendar.requests) - before == 2
    # Nothing changed: one request with the sync token, no time range, nothing new.
    again = list(cal.fetch_changes(batches[-1].cursor))
    assert [(b.records, b.removed) for b in again] == [([], [])]
    last = google.calendar.requests[-1][1]
    assert "syncToken" in last and "timeMin" not in last
    cal.close()


def test_a_gone_sync_token_restarts_the_calendar_from_a_full_listing_marked_reset(google):
    cal, _ = calendar(google)
    ids = meetings(2, google)
    done = list(cal.fetch_changes({}))[-1].cursor
    google.calendar.expire_sync_tokens()
    google.calendar.delete_event(ids[0])
    batches = list(cal.fetch_changes(done))
    assert batches[0].reset and not batches[0].records
    # the full listing covers the window: the meetings behind it stay as history (the engine)
    assert batches[0].relists_from == datetime.fromisoformat(done["window"][0].replace("Z", "+00:00"))
    assert batches[-1].backfill_done and batches[-1].relists_from == batches[0].relists_from  # and its end
    assert [r.remote_id for b in batches for r in b.records] == ids[1:]  # the deletion shows by absence
    assert [s for _, _, s in google.calendar.requests][-2:] == [410, 200]
    cal.close()


def test_rate_limits_are_waited_out_with_retry_after_or_exponential_backoff(google):
    cal, slept = calendar(google)
    meetings(1, google)
    google.calendar.storm(2, 429, retry_after=3)
    google.calendar.storm(1, 403, "userRateLimitExceeded")
    google.calendar.storm(1, 403, "rateLimitExceeded")
    assert len([r for b in cal.fetch_changes({}) for r in b.records]) == 1
    assert slept[:2] == [3.0, 3.0]
    assert 4 <= slept[2] < 5 and 8 <= slept[3] < 9  # 2**attempt plus jitter
    cal.close()


def test_a_storm_beyond_patience_is_throttling_with_the_wait_to_keep(google):
    cal, slept = calendar(google, max_retries=2)
    meetings(1, google)
    google.calendar.storm(10, 429, retry_after=20)
    with pytest.raises(ThrottledError) as caught:
        list(cal.fetch_changes({}))
    assert caught.value.retry_after == 20 and slept == [20.0, 20.0]
    cal.close()


def test_an_expired_access_token_is_renewed_once_and_a_missing_scope_says_reconnect(google):
    cal, _ = calendar(google)
    meetings(1, google)
    assert len(list(cal.fetch_changes({}))) == 1
    google.expire_tokens()  # the token the connector holds is refused (401)
    assert len(list(cal.fetch_changes({}))) == 1
    assert [s for _, _, s in google.calendar.requests][-2:] == [401, 200]
    cal.close()
    gmail_only, _ = calendar(google, scopes=(MAIL_SCOPE,))  # a token without the calendar scope
    with pytest.raises(AuthError) as caught:
        list(gmail_only.fetch_changes({}))
    assert caught.value.fix == "delegation" and "insufficientPermissions" in str(caught.value)
    gmail_only.close()


def test_attendees_and_their_answers_map_to_roles_and_responses_and_rooms_are_left_out():
    item = {
        "id": "abc_20261210",
        "status": "tentative",
        "iCalUID": "abc@google.com",
        "recurringEventId": "abc",
        "originalStartTime": {"date": "2026-12-10"},
        "start": {"date": "2026-12-11"},
        "end": {"date": "2026-12-12"},
        "summary": "Offsite",
        "organizer": {"email": "carla@acme.com", "displayName": "Carla"},
        "attendees": [
            {"email": "carla@acme.com", "organizer": True, "responseStatus": "accepted"},
            {"email": "rep@ourco.com", "self": True, "responseStatus": "needsAction"},
            {"email": "dana@acme.com", "optional": True, "responseStatus": "declined"},
            {"email": "room-1@resource.calendar.google.com", "resource": True, "responseStatus": "accepted"},
        ],
        "sequence": 2,
    }
    record = event_record(item["id"], item)
    assert record is not None and record.uid == "abc@google.com"
    assert record.recurrence_id == "2026-12-10T00:00:00Z"  # an all-day occurrence: keyed by its date
    assert record.start == datetime(2026, 12, 11, tzinfo=timezone.utc) and record.status == "tentative"
    assert (record.organizer.address, record.organizer.role) == ("carla@acme.com", "organizer")
    assert [(a.address, a.role, a.response) for a in record.attendees] == [
        ("rep@ourco.com", "attendee", "needs-action"),
        ("dana@acme.com", "optional", "declined"),
    ]
    assert record.sequence == 2
    alone = {**item, "attendees": [{"email": "rep@ourco.com", "self": True, "organizer": True}]}
    assert event_record("x", alone) is None  # a rep's own appointment is no meeting with anyone
    timed = {
        **item,
        "originalStartTime": {"dateTime": "2026-12-10T09:00:00+01:00"},
        "start": {"dateTime": "2026-12-10T12:00:00+01:00"},
    }
    moved = event_record("y", timed)
    assert moved.recurrence_id == "2026-12-10T08:00:00Z" and moved.start.hour == 11


def test_a_change_outside_the_calendar_window_is_left_out_as_a_full_round_would(google):
    cal, _ = calendar(google, window=CalendarWindow(past_days=30, future_days=30))
    near = meetings(1, google)[0]
    done = list(cal.fetch_changes({}))[-1].cursor
    far = google.calendar.add_event(
        [REP], subject="Next year", start=NOW + timedelta(days=200), organizer=REP, attendees=["carla@acme.com"]
    )
    google.calendar.respond(REP, near, "carla@acme.com", "accepted")
    batches = list(cal.fetch_changes(done))
    assert [r.remote_id for b in batches for r in b.records] == [near]
    assert far in [rid for b in batches for rid in b.removed]  # never stored; removing it is a no-op
    cal.close()


def test_a_window_slide_first_finishes_the_old_rounds_changes_so_a_deletion_meanwhile_is_seen(google):
    """The window moves a week at a time, and the next run lists the new window afresh. A meeting
    deleted since the last round is told only by the sync token's changes: the full round just did
    not list it, and its copy stayed on the timeline for good."""
    cal, _ = calendar(google)
    ids = meetings(2, google)
    done = list(cal.fetch_changes({}))[-1].cursor
    google.calendar.delete_event(ids[0])
    slid = dict(done, window=["2020-01-01T00:00:00Z", "2020-09-01T00:00:00Z"])
    batches = list(cal.fetch_changes(slid))
    assert ids[0] in [x for b in batches for x in b.removed] and not any(b.reset for b in batches)
    assert [b.backfill_done for b in batches] == [False] * (len(batches) - 1) + [True]  # one listing: the new
    assert [r.remote_id for b in batches for r in b.records] == ids[1:]
    assert batches[-1].cursor["window"] == done["window"]
    # The old token expired meanwhile (a mailbox failing for weeks): what it would have told is
    # lost, so the new window's listing is a re-listing, as after any expired token.
    google.calendar.expire_sync_tokens()
    again = list(cal.fetch_changes(dict(batches[-1].cursor, window=slid["window"])))
    assert again[0].reset and not again[0].records and not any(b.reset for b in again[1:])
    assert [r.remote_id for b in again for r in b.records] == ids[1:]
    cal.close()
