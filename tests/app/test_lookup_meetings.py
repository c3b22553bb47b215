"""The lookup knows the future: upcoming meetings apart from the timeline, the
next and the last meeting, cancelled ones left out."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from app.db import read_only
from app.services import timeline
from connectors.base import Attendee, MeetingRecord
from tests.sync.test_meetings import ScriptedCalendar, _calendar, batch
from tests.world import make_world, message

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _meeting(uid, start, *, status="confirmed", subject=None):
    return MeetingRecord(
        remote_id=uid,
        uid=uid,
        recurrence_id=None,
        start=start,
        end=start + timedelta(hours=1),
        subject=subject or uid,
        organizer=Attendee("alice@ourco.com", "Alice", "organizer"),
        attendees=[Attendee("carol@acme.com", "Carol", "attendee", "accepted")],
        status=status,
    )


def test_upcoming_meetings_are_listed_apart_from_the_timeline(tmp_path, imap_user):
    world = make_world(tmp_path)
    box = _calendar(world, "alice@ourco.com")
    day = timedelta(days=1)
    records = [
        _meeting("past-2", NOW - 20 * day),
        _meeting("past-1", NOW - 2 * day),
        _meeting("soon", NOW + day),
        _meeting("later", NOW + 9 * day),
        _meeting("off", NOW + 3 * day, status="cancelled"),
    ]
    assert world.sync(box, connector_factory=lambda *a: ScriptedCalendar([batch(*records)])).ok
    imap_user.deliver(
        message("Carol <carol@acme.com>", "alice@ourco.com", "Agenda", msgid="agenda@acme.com", when=NOW - day)
    )
    assert world.sync(world.add_imap("alice@ourco.com", imap_user)).ok

    with read_only(world.rt.engine) as conn:
        data = timeline.lookup(conn, world.org_id, "carol@acme.com")
    assert [m["subject"] for m in data["upcoming"]] == ["soon", "later"]
    assert data["next_meeting"]["subject"] == "soon"
    assert data["last_meeting"]["subject"] == "past-1"
    assert data["summary"]["meetings"] == 4  # the cancelled one is not a meeting had
    # The timeline is what happened, newest first: no future item in it.
    items = data["timeline"]["items"]
    assert [i["subject"] for i in items] == ["Agenda", "past-1", "past-2"]
    assert all(i["occurred_at"] <= datetime.now(timezone.utc) for i in items)
    attendee = {p["address"]: p["response"] for p in data["next_meeting"]["participants"]}
    assert attendee == {"carol@acme.com": "accepted"}
