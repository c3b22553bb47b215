"""Meeting records onto the timeline through the real engine: one meeting,
one interaction, whoever's calendar (or inbox) it came from."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from app.db import session, write_transaction
from app.models import Mailbox
from connectors.base import Attendee, Batch, Folder, MeetingRecord
from sync import stats
from tests.world import make_world

START = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)


class ScriptedCalendar:
    """Plays back batches a test writes; stands in for a calendar source so the
    engine-side rules can be checked one by one (the real CalDAV and Graph
    connectors are tested against Radicale and the Graph fake)."""

    def __init__(self, script: list[Batch]):
        self.script = script

    def list_folders(self):
        return [Folder("calendar:Work", "calendar")]

    def fetch_changes(self, folder, cursor, since):
        yield from self.script

    def close(self):
        pass


def meeting(remote_id="e1", uid="m-1@acme.com", *, seq=0, start=START, method=None, status="confirmed",
            attendees=None, subject="Quarterly review"):
    return MeetingRecord(
        remote_id=remote_id, uid=uid, recurrence_id=None, start=start, end=start + timedelta(hours=1),
        subject=subject, organizer=Attendee("carol@acme.com", "Carol Buyer", "organizer", "accepted"),
        attendees=attendees if attendees is not None else [
            Attendee("alice@ourco.com", "Alice", "attendee", "accepted"),
            Attendee("bob@ourco.com", "Bob", "attendee", "tentative"),
            Attendee("dan@acme.com", "Dan", "optional", "needs-action"),
        ],
        status=status, location="Room 1", sequence=seq, method=method)


def _calendar(world, owner: str) -> int:
    with session(world.rt.engine) as s:
        uid = world.scalar("SELECT id FROM app_user WHERE email = :e", e=owner)
        box = Mailbox(org_id=world.org_id, owner_id=uid, kind="caldav", config={"url": "scripted"})
        s.add(box)
        s.commit()
        return box.id


def _run(world, box_id, *batches):
    script = list(batches)
    report = world.sync(box_id, connector_factory=lambda *a: ScriptedCalendar(script))
    assert report.ok, report.error
    return report


def batch(*records, removed=()):
    return Batch(records=list(records), bad=[], cursor={"n": len(records)}, backfill_done=True, removed=list(removed))


def _meetings(world):
    return world.sql("SELECT message_key, occurred_at, status, sequence, subject FROM interaction "
                     "WHERE kind = 'meeting'")


def _people(world):
    return {r[0]: r[1:] for r in world.sql(
        "SELECT address, role, response, user_id IS NOT NULL, contact_id IS NOT NULL FROM participant")}


def test_one_meeting_in_two_calendars_is_one_interaction(tmp_path):
    world = make_world(tmp_path)
    a, b = _calendar(world, "alice@ourco.com"), _calendar(world, "bob@ourco.com")
    _run(world, a, batch(meeting("alice-copy")))
    _run(world, b, batch(meeting("bob-copy")))
    assert [m[0] for m in _meetings(world)] == ["ical:m-1@acme.com"]
    people = _people(world)
    assert people["carol@acme.com"] == ("organizer", "accepted", False, True)
    assert people["dan@acme.com"] == ("optional", "needs-action", False, True)
    assert people["alice@ourco.com"][:3] == ("attendee", "accepted", True)
    assert people["bob@ourco.com"][:3] == ("attendee", "tentative", True)
    assert world.scalar("SELECT COUNT(*) FROM interactionsource") == 2
    assert world.scalar("SELECT meetings FROM contactstats s JOIN contact c ON c.id = s.contact_id "
                        "WHERE c.primary_email = 'carol@acme.com'") == 1
    # The company came from the attendees' domain.
    assert world.scalar("SELECT domain FROM company") == "acme.com"


def test_newer_sequence_wins_and_older_copies_never_overwrite(tmp_path):
    world = make_world(tmp_path)
    a, b = _calendar(world, "alice@ourco.com"), _calendar(world, "bob@ourco.com")
    moved = START + timedelta(days=2)
    _run(world, a, batch(meeting(seq=2, start=moved, subject="Review (moved)")))
    _run(world, b, batch(meeting("bob-copy", seq=1)))  # Bob's calendar has not caught up yet
    [(key, at, status, seq, subject)] = _meetings(world)
    assert (seq, subject) == (2, "Review (moved)")
    assert str(at).startswith("2026-11-22 08:00")
    # Every participant row moved with the meeting (the timeline index uses it).
    assert {str(r[0])[:16] for r in world.sql("SELECT occurred_at FROM participant")} == {"2026-11-22 08:00"}


def test_reply_changes_only_that_attendee_and_cancel_marks_cancelled(tmp_path):
    world = make_world(tmp_path)
    a = _calendar(world, "alice@ourco.com")
    _run(world, a, batch(meeting()))
    reply = meeting("mail#ics", method="REPLY", attendees=[Attendee("dan@acme.com", "Dan", "attendee", "declined")])
    _run(world, a, batch(reply))
    people = _people(world)
    assert people["dan@acme.com"][1] == "declined"
    assert people["bob@ourco.com"][1] == "tentative"
    _run(world, a, batch(meeting("cancel#ics", seq=1, method="CANCEL")))
    assert _meetings(world)[0][2] == "cancelled"
    # A cancelled meeting is not counted as a meeting had with the contact.
    assert world.scalar("SELECT meetings FROM contactstats s JOIN contact c ON c.id = s.contact_id "
                        "WHERE c.primary_email = 'carol@acme.com'") == 0


def test_removing_the_last_copy_removes_the_meeting(tmp_path):
    world = make_world(tmp_path)
    a, b = _calendar(world, "alice@ourco.com"), _calendar(world, "bob@ourco.com")
    _run(world, a, batch(meeting("alice-copy")))
    _run(world, b, batch(meeting("bob-copy")))
    _run(world, a, batch(removed=["alice-copy"]))
    assert len(_meetings(world)) == 1
    _run(world, b, batch(removed=["bob-copy"]))
    assert _meetings(world) == []
    assert world.scalar("SELECT COUNT(*) FROM participant") == 0
    assert world.scalar("SELECT COALESCE(SUM(meetings), 0) FROM contactstats") == 0


def test_internal_meetings_and_attendee_lists_too_large_are_skipped_with_reasons(tmp_path):
    world = make_world(tmp_path)
    a = _calendar(world, "alice@ourco.com")
    internal = MeetingRecord("i1", "int@ourco.com", None, START, None, "Standup",
                             Attendee("bob@ourco.com", "Bob", "organizer"), [Attendee("alice@ourco.com")])
    huge = meeting("h1", uid="huge@acme.com",
                   attendees=[Attendee(f"p{i}@acme.com") for i in range(600)])
    report = _run(world, a, batch(internal, huge, meeting()))
    assert report.skipped == 2
    skipped = world.scalar("SELECT skipped FROM mailbox WHERE id = :i", i=a)
    assert "internal meeting" in skipped and "more than 500 attendees" in skipped
    assert [m[0] for m in _meetings(world)] == ["ical:m-1@acme.com"]


def test_summaries_after_meeting_changes_equal_a_recount(tmp_path):
    world = make_world(tmp_path)
    a, b = _calendar(world, "alice@ourco.com"), _calendar(world, "bob@ourco.com")
    _run(world, a, batch(meeting(), meeting("e2", uid="m-2@acme.com", start=START - timedelta(days=3))))
    _run(world, b, batch(meeting("bob-copy", seq=1, attendees=[Attendee("bob@ourco.com")])))
    before = world.sql("SELECT contact_id, emails_in, emails_out, meetings FROM contactstats ORDER BY 1")
    colleagues = world.sql("SELECT contact_id, user_id, interactions, last_at FROM contactcolleague ORDER BY 1, 2")
    with write_transaction(world.rt.engine) as conn:
        stats.recompute(conn, world.org_id, [r[0] for r in conn.execute(text("SELECT id FROM contact"))])
    assert world.sql("SELECT contact_id, emails_in, emails_out, meetings FROM contactstats ORDER BY 1") == before
    assert world.sql("SELECT contact_id, user_id, interactions, last_at FROM contactcolleague ORDER BY 1, 2") \
        == colleagues
    # Dan was taken off the newer copy of m-1: he keeps only m-2.
    dan = world.scalar("SELECT s.meetings FROM contactstats s JOIN contact c ON c.id = s.contact_id "
                       "WHERE c.primary_email = 'dan@acme.com'")
    assert dan == 1
