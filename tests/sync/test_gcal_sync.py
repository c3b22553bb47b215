"""Google Calendar end to end: reps' Gmail mailboxes of a connected Workspace read
their primary calendars through the fake Calendar API (tokens from the fake
Google's token endpoint) into a real database, one meeting one interaction."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from app.services import google as google_service
from app.services.actor import Actor
from connectors.gcal import CALENDAR_FOLDER
from connectors.googleauth import SCOPES
from tests.world import NOW, make_world

ALICE, BOB = "alice@ourco.com", "bob@ourco.com"
CARLA = "carla@acme.com"


def as_utc(value) -> datetime:
    """SQLite hands raw SQL datetimes back as text."""
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(str(value))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def stamp(when) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def connect(world, google, dovecot_gmail, key: str | None = None, imap=None) -> dict[str, int]:
    """The Workspace connected with every scope delegated (through this service account key,
    or a new one); Alice and Bob have Gmail, read at `imap` (host, port: Gmail's extensions in
    front of Dovecot, tests/fakes/google/imapshim.py) or at the Dovecot itself."""
    imap = imap or dovecot_gmail
    key = key or google.service_account()
    google.delegate(json.loads(key)["client_id"], SCOPES)
    for rep in (ALICE, BOB):
        google.add_user(rep)
        dovecot_gmail.add_user(rep, "not-the-way-in")
    google_service.add_workspace(
        world.rt,
        Actor.operator(world.org_id),
        key_json=key,
        domain="ourco.com",
        check_user=ALICE,
        imap_host=imap.host,
        imap_port=imap.port,
        imap_security="none",
        calendar_url=google.calendar_url,
    )
    added = google_service.add_workspace_mailboxes(world.rt, Actor.operator(world.org_id), all_reps=True)["added"]
    return {row["user"]: row["id"] for row in added}


@pytest.fixture
def world(tmp_path):
    return make_world(tmp_path)


@pytest.fixture
def boxes(world, google, dovecot_gmail):
    yield connect(world, google, dovecot_gmail)
    for rep in (ALICE, BOB):
        dovecot_gmail.remove_user(rep)


def meetings(world) -> list[tuple]:
    return [
        tuple(r)
        for r in world.sql(
            "SELECT message_key, subject, occurred_at, status FROM interaction WHERE kind = 'meeting' "
            "ORDER BY message_key"
        )
    ]


def sync_all(world, boxes) -> None:
    for rep in (ALICE, BOB):
        report = world.sync(boxes[rep])
        assert report.ok, report


def test_a_meeting_with_a_rep_and_a_colleague_read_from_both_their_google_calendars_is_one_interaction(
    world, boxes, google
):
    google.calendar.add_event(
        [ALICE, BOB],
        subject="Pricing review",
        start=NOW + timedelta(days=2),
        organizer=ALICE,
        attendees=[(BOB, "tentative"), (CARLA, "accepted"), ("dana@acme.com", "declined", "optional")],
        uid="pricing-review@google.com",
    )
    sync_all(world, boxes)
    assert [m[0] for m in meetings(world)] == ["ical:pricing-review@google.com"]
    sources = world.sql(
        "SELECT s.mailbox_id, f.name FROM interactionsource s JOIN folderstate f ON f.id = s.folder_id "
        "JOIN interaction i ON i.id = s.interaction_id WHERE i.kind = 'meeting' ORDER BY s.mailbox_id"
    )
    assert [tuple(r) for r in sources] == [(boxes[ALICE], CALENDAR_FOLDER), (boxes[BOB], CALENDAR_FOLDER)]
    people = {
        r.address: (r.role, r.response)
        for r in world.sql("SELECT address, role, response FROM participant ORDER BY address")
    }
    assert people == {
        ALICE: ("organizer", "accepted"),
        BOB: ("attendee", "tentative"),
        CARLA: ("attendee", "accepted"),
        "dana@acme.com": ("optional", "declined"),
    }
    # Carla answers later: the next run carries her answer, still one interaction.
    first = world.snapshot()
    eid = google.calendar.calendars[ALICE][next(iter(google.calendar.calendars[ALICE]))].body["id"]
    google.calendar.respond(ALICE, eid, CARLA, "declined")
    sync_all(world, boxes)
    assert world.snapshot()["interactions"] == first["interactions"]
    assert world.scalar("SELECT response FROM participant WHERE address = :a", a=CARLA) == "declined"


def test_a_recurring_series_keeps_a_moved_occurrence_and_drops_a_cancelled_one(world, boxes, google):
    starts = [NOW.replace(hour=9, minute=0, second=0) + timedelta(days=7 * w + 1) for w in range(4)]
    sid = google.calendar.add_series(
        [ALICE, BOB],
        subject="Weekly sync",
        starts=starts,
        organizer=CARLA,
        attendees=[(ALICE, "accepted"), (BOB, "needsAction")],
        uid="weekly@acme.com",
    )
    sync_all(world, boxes)
    assert [m[0] for m in meetings(world)] == [f"ical:weekly@acme.com/{stamp(s)}" for s in starts]
    moved_to = starts[1] + timedelta(hours=3)
    google.calendar.move_occurrence(sid, starts[1], moved_to)
    google.calendar.cancel_occurrence(sid, starts[2])
    sync_all(world, boxes)  # incremental: sync tokens
    rows = {m[0]: m for m in meetings(world)}
    keys = [f"ical:weekly@acme.com/{stamp(s)}" for s in (starts[0], starts[1], starts[3])]
    assert sorted(rows) == keys  # the cancelled occurrence is gone from the timeline
    moved = rows[f"ical:weekly@acme.com/{stamp(starts[1])}"]  # keyed by its original start
    assert as_utc(moved[2]) == moved_to  # at its new time
    assert world.scalar("SELECT COUNT(*) FROM interactionsource") == 6  # 3 occurrences x 2 calendars
    requests = [q for _, q, _ in google.calendar.requests]
    assert any("syncToken" in q for q in requests) and all(q.get("singleEvents") == "true" for q in requests)


def test_an_expired_sync_token_converges_to_exactly_the_timeline_of_a_clean_run(
    world, boxes, google, dovecot_gmail, tmp_path
):
    start = NOW.replace(minute=0, second=0) + timedelta(days=1)
    sid = google.calendar.add_series(
        [ALICE, BOB],
        subject="Standup",
        starts=[start + timedelta(days=d) for d in range(3)],
        organizer=ALICE,
        attendees=[(CARLA, "accepted")],
    )
    gone = google.calendar.add_event(
        [ALICE], subject="Demo", start=start + timedelta(hours=4), organizer=ALICE, attendees=[CARLA]
    )
    sync_all(world, boxes)
    # While the tokens are gone, things change that only a full listing can notice.
    google.calendar.expire_sync_tokens()
    google.calendar.delete_event(gone)
    google.calendar.move_occurrence(sid, start + timedelta(days=1), start + timedelta(days=1, hours=2))
    google.calendar.add_event(
        [BOB], subject="Intro", start=start + timedelta(days=5), organizer=BOB, attendees=["eve@acme.com"]
    )
    sync_all(world, boxes)
    statuses = [status for _, _, status in google.calendar.requests]
    assert 410 in statuses  # the expired token was met and answered GONE
    after = world.snapshot()
    assert not any(key == f"ical:{gone}@google.com" for key, *_ in after["interactions"])
    assert len([1 for row in after["interactions"] if row[1] == "meeting"]) == 4
    # A clean run over the same calendars, in a database of its own.
    for rep in (ALICE, BOB):
        dovecot_gmail.remove_user(rep)
    clean = make_world(tmp_path / "clean")
    clean_boxes = connect(clean, google, dovecot_gmail)
    assert clean_boxes == boxes  # the same mailbox ids, so sources compare as they are
    sync_all(clean, clean_boxes)
    for part in ("interactions", "participants", "sources", "contacts", "companies"):
        assert clean.snapshot()[part] == after[part], part


def test_an_expired_sync_token_keeps_the_meetings_behind_the_window_on_the_timeline(world, boxes, google):
    """The full listing after an expired token covers the calendar's window only: a meeting
    behind it (history, kept as the window moved past it) left the timeline at the listing's end."""
    past = google.calendar.add_event(
        [ALICE], subject="Kick-off", start=NOW - timedelta(days=100), organizer=ALICE, attendees=[CARLA]
    )
    google.calendar.add_event(
        [ALICE], subject="Review", start=NOW + timedelta(days=2), organizer=ALICE, attendees=[CARLA]
    )
    assert world.sync(boxes[ALICE]).ok
    assert sorted(m[1] for m in meetings(world)) == ["Kick-off", "Review"]
    world.set_org(calendar_past_days=30)  # the window moves past the kick-off: history now
    assert world.sync(boxes[ALICE]).ok
    google.calendar.expire_sync_tokens()
    assert world.sync(boxes[ALICE]).ok
    assert 410 in [status for _, _, status in google.calendar.requests]
    assert sorted(m[1] for m in meetings(world)) == ["Kick-off", "Review"]
    assert (
        world.scalar(
            "SELECT COUNT(*) FROM interactionsource s JOIN interaction i ON i.id = s.interaction_id "
            "WHERE i.message_key = :k",
            k=f"ical:{past}@google.com",
        )
        == 1
    )


def test_a_429_storm_ends_with_the_same_timeline(world, boxes, google):
    google.calendar.add_series(
        [ALICE],
        subject="Weekly",
        starts=[NOW + timedelta(days=d) for d in (1, 8, 15)],
        organizer=ALICE,
        attendees=[CARLA],
    )
    google.calendar.add_event(
        [ALICE], subject="Call", start=NOW + timedelta(days=3), organizer=ALICE, attendees=[CARLA]
    )
    # A storm longer than the connector's patience: the run backs off (throttled) ...
    google.calendar.storm(20, 429, retry_after=1)
    report = world.sync(boxes[ALICE])
    assert not report.ok and report.error_kind == "throttled"
    assert world.scalar("SELECT last_error_kind FROM mailbox WHERE id = :m", m=boxes[ALICE]) == "throttled"
    google.calendar.faults.clear()
    # ... and a short one, in both of Google's forms, is ridden out with backoff.
    google.calendar.storm(1, 429, retry_after=0)
    google.calendar.storm(1, 403, "userRateLimitExceeded", retry_after=0)
    google.calendar.storm(1, 403, "rateLimitExceeded", retry_after=0)
    assert world.sync(boxes[ALICE]).ok
    stormy = world.snapshot()
    assert len([1 for row in stormy["interactions"] if row[1] == "meeting"]) == 4
    assert world.sync(boxes[ALICE]).ok  # and again: nothing new, nothing doubled
    assert world.snapshot() == stormy


def test_re_syncs_never_duplicate_a_meeting(world, boxes, google):
    google.calendar.add_event(
        [ALICE, BOB], subject="Kickoff", start=NOW + timedelta(days=1), organizer=CARLA, attendees=[ALICE, BOB]
    )
    sync_all(world, boxes)
    first = world.snapshot()
    for _ in range(3):
        sync_all(world, boxes)
    assert world.snapshot() == first
    assert world.scalar("SELECT COUNT(*) FROM interaction WHERE kind = 'meeting'") == 1
    assert world.scalar("SELECT COUNT(*) FROM interactionsource") == 2


def test_a_withdrawn_calendar_scope_says_reconnect_with_the_scopes_to_grant(world, boxes, google):
    from app.services.mailboxes import fix_for
    from connectors.googleauth import CALENDAR_SCOPE, MAIL_SCOPE

    client_id = next(iter(google.delegation))
    google.delegate(client_id, [MAIL_SCOPE])  # the admin kept only the Gmail scope
    report = world.sync(boxes[ALICE])
    row = world.sql("SELECT last_error_kind, last_error_fix FROM mailbox WHERE id = :m", m=boxes[ALICE])[0]
    assert not report.ok and (row.last_error_kind, row.last_error_fix) == ("auth", "delegation")
    assert CALENDAR_SCOPE in fix_for("auth", "gmail", "delegation")
