"""Meeting records onto the timeline through the real engine: one meeting,
one interaction, whoever's calendar (or inbox) it came from."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event, text

from app.db import read_only, session, write_transaction
from app.models import Mailbox
from connectors.base import Attendee, Batch, Folder, MeetingRecord
from sync import stats
from tests.world import make_world

START = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request):
    return request.getfixturevalue("postgres_migrated_url") if request.param == "postgresql" else None


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


def meeting(
    remote_id="e1",
    uid="m-1@acme.com",
    *,
    seq=0,
    start=START,
    method=None,
    status="confirmed",
    attendees=None,
    subject="Quarterly review",
    rid=None,
):
    return MeetingRecord(
        remote_id=remote_id,
        uid=uid,
        recurrence_id=rid,
        start=start,
        end=start + timedelta(hours=1),
        subject=subject,
        organizer=Attendee("carol@acme.com", "Carol Buyer", "organizer", "accepted"),
        attendees=attendees
        if attendees is not None
        else [
            Attendee("alice@ourco.com", "Alice", "attendee", "accepted"),
            Attendee("bob@ourco.com", "Bob", "attendee", "tentative"),
            Attendee("dan@acme.com", "Dan", "optional", "needs-action"),
        ],
        status=status,
        location="Room 1",
        sequence=seq,
        method=method,
    )


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
    return world.sql(
        "SELECT message_key, occurred_at, status, sequence, subject FROM interaction WHERE kind = 'meeting'"
    )


def _people(world):
    return {
        r[0]: r[1:]
        for r in world.sql(
            "SELECT address, role, response, user_id IS NOT NULL, contact_id IS NOT NULL FROM participant"
        )
    }


def test_one_meeting_in_two_calendars_is_one_interaction(tmp_path, db_url):
    world = make_world(tmp_path, url=db_url)
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
    assert (
        world.scalar(
            "SELECT meetings FROM contactstats s JOIN contact c ON c.id = s.contact_id "
            "WHERE c.primary_email = 'carol@acme.com'"
        )
        == 1
    )
    # The company came from the attendees' domain.
    assert world.scalar("SELECT domain FROM company") == "acme.com"


def test_newer_sequence_wins_and_older_copies_never_overwrite(tmp_path, db_url):
    world = make_world(tmp_path, url=db_url)
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
    assert (
        world.scalar(
            "SELECT meetings FROM contactstats s JOIN contact c ON c.id = s.contact_id "
            "WHERE c.primary_email = 'carol@acme.com'"
        )
        == 0
    )


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
    internal = MeetingRecord(
        "i1",
        "int@ourco.com",
        None,
        START,
        None,
        "Standup",
        Attendee("bob@ourco.com", "Bob", "organizer"),
        [Attendee("alice@ourco.com")],
    )
    huge = meeting("h1", uid="huge@acme.com", attendees=[Attendee(f"p{i}@acme.com") for i in range(600)])
    report = _run(world, a, batch(internal, huge, meeting()))
    assert report.skipped == 2
    skipped = world.scalar("SELECT skipped FROM mailbox WHERE id = :i", i=a)
    assert "internal meeting" in skipped and "more than 500 attendees" in skipped
    assert [m[0] for m in _meetings(world)] == ["ical:m-1@acme.com"]


def _assert_summaries_equal_a_recount(world):
    before = world.sql("SELECT contact_id, emails_in, emails_out, meetings FROM contactstats ORDER BY 1")
    colleagues = world.sql("SELECT contact_id, user_id, interactions, last_at FROM contactcolleague ORDER BY 1, 2")
    with write_transaction(world.rt.engine) as conn:
        stats.recompute(conn, world.org_id, [r[0] for r in conn.execute(text("SELECT id FROM contact"))])
    assert world.sql("SELECT contact_id, emails_in, emails_out, meetings FROM contactstats ORDER BY 1") == before
    assert (
        world.sql("SELECT contact_id, user_id, interactions, last_at FROM contactcolleague ORDER BY 1, 2") == colleagues
    )


def test_summaries_after_meeting_changes_equal_a_recount(tmp_path):
    world = make_world(tmp_path)
    a, b = _calendar(world, "alice@ourco.com"), _calendar(world, "bob@ourco.com")
    _run(world, a, batch(meeting(), meeting("e2", uid="m-2@acme.com", start=START - timedelta(days=3))))
    _run(world, b, batch(meeting("bob-copy", seq=1, attendees=[Attendee("bob@ourco.com")])))
    _assert_summaries_equal_a_recount(world)
    # Dan was taken off the newer copy of m-1: he keeps only m-2.
    dan = world.scalar(
        "SELECT s.meetings FROM contactstats s JOIN contact c ON c.id = s.contact_id "
        "WHERE c.primary_email = 'dan@acme.com'"
    )
    assert dan == 1


# -- a REPLY or CANCEL for a whole series ------------------------------------------------------


def occurrence(week: int, uid="s-1@acme.com", **kw):
    """One occurrence of a weekly series, as a calendar lists it."""
    at = START + timedelta(weeks=week)
    rid = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return meeting(kw.pop("remote_id", f"series.ics#{rid}"), uid, rid=rid, start=kw.pop("start", at), **kw)


def _key(week: int, uid="s-1@acme.com") -> str:
    return f"ical:{uid}/{(START + timedelta(weeks=week)).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def _statuses(world):
    return {r[0]: (r[2], r[3]) for r in _meetings(world)}


def _responses(world, address):
    return dict(
        world.sql(
            "SELECT i.message_key, p.response FROM participant p JOIN interaction i "
            "ON i.id = p.interaction_id WHERE p.address = :a",
            a=address,
        )
    )


def _carol_meetings(world):
    return world.scalar(
        "SELECT meetings FROM contactstats s JOIN contact c ON c.id = s.contact_id "
        "WHERE c.primary_email = 'carol@acme.com'"
    )


def test_cancel_without_recurrence_id_cancels_every_occurrence(tmp_path, db_url):
    world = make_world(tmp_path, url=db_url)
    a, b = _calendar(world, "alice@ourco.com"), _calendar(world, "bob@ourco.com")
    _run(
        world,
        a,
        batch(
            occurrence(0),
            occurrence(1),
            occurrence(2, seq=3, subject="Review (moved)"),
            meeting("other", uid="m-2@acme.com"),
        ),
    )
    _run(world, b, batch(occurrence(0, remote_id="bob-0")))
    assert _carol_meetings(world) == 4
    # The organiser cancels the whole series (SEQUENCE 1, no RECURRENCE-ID, no RRULE).
    _run(world, a, batch(meeting("mail-7#ics", "s-1@acme.com", seq=1, method="CANCEL", start=START)))
    assert _statuses(world) == {
        _key(0): ("cancelled", 1),
        _key(1): ("cancelled", 1),
        _key(2): ("confirmed", 3),  # changed after the cancellation was sent: a newer SEQUENCE wins
        "ical:m-2@acme.com": ("confirmed", 0),
    }  # and no interaction of its own for the series key
    # Each occurrence stays where it was (the CANCEL's DTSTART is the series' first).
    at = {r[0]: str(r[1]) for r in _meetings(world)}
    assert at[_key(1)].startswith("2026-11-27 08:00")
    assert _carol_meetings(world) == 2
    _assert_summaries_equal_a_recount(world)
    # A calendar copy still at the older SEQUENCE does not bring it back.
    _run(world, b, batch(occurrence(1, remote_id="bob-1")))
    assert _statuses(world)[_key(1)] == ("cancelled", 1)


def test_reply_without_recurrence_id_answers_for_every_occurrence(tmp_path, db_url):
    world = make_world(tmp_path, url=db_url)
    a = _calendar(world, "alice@ourco.com")
    _run(world, a, batch(occurrence(0), occurrence(1), occurrence(2), meeting("other", uid="m-2@acme.com")))
    reply = meeting(
        "mail-9#ics",
        "s-1@acme.com",
        method="REPLY",
        attendees=[Attendee("dan@acme.com", "Dan", "attendee", "declined")],
    )
    _run(world, a, batch(reply))
    assert _responses(world, "dan@acme.com") == {
        _key(0): "declined",
        _key(1): "declined",
        _key(2): "declined",
        "ical:m-2@acme.com": "needs-action",
    }
    assert set(_responses(world, "bob@ourco.com").values()) == {"tentative"}
    assert "ical:s-1@acme.com" not in _statuses(world)
    # With nothing of that UID stored, a REPLY is a meeting of its own, as before.
    _run(
        world,
        a,
        batch(
            meeting(
                "mail-10#ics",
                "new@acme.com",
                method="REPLY",
                attendees=[Attendee("dan@acme.com", "Dan", "attendee", "accepted")],
            )
        ),
    )
    assert _responses(world, "dan@acme.com")["ical:new@acme.com"] == "accepted"


def test_series_cancel_matches_the_uid_exactly(tmp_path, db_url):
    """LIKE wildcards in a UID are literal, and UIDs are case-sensitive."""
    world = make_world(tmp_path, url=db_url)
    a = _calendar(world, "alice@ourco.com")
    uids = ["w_1%@acme.com", "wX1Z@acme.com", "W_1%@acme.com", "w_1%@acme.com.au"]
    _run(
        world,
        a,
        batch(
            *[occurrence(k, uid=u, remote_id=f"{u}#{k}") for u in uids for k in (0, 1)],
            meeting("single", uid="w_1%@acme.com/x"),
        ),
    )
    _run(world, a, batch(meeting("mail#ics", "w_1%@acme.com", seq=1, method="CANCEL")))
    cancelled = {k for k, (status, _) in _statuses(world).items() if status == "cancelled"}
    # "w_1%@acme.com/x" would be an occurrence's key too: a UID with a "/" is indistinguishable.
    assert cancelled == {_key(0, "w_1%@acme.com"), _key(1, "w_1%@acme.com"), "ical:w_1%@acme.com/x"}


def test_series_cancel_also_cancels_a_single_event_stored_under_the_uid(tmp_path):
    world = make_world(tmp_path)
    a = _calendar(world, "alice@ourco.com")
    _run(world, a, batch(meeting(), occurrence(0, uid="m-1@acme.com")))
    _run(world, a, batch(meeting("mail#ics", seq=1, method="CANCEL")))
    assert _statuses(world) == {"ical:m-1@acme.com": ("cancelled", 1), _key(0, "m-1@acme.com"): ("cancelled", 1)}


# -- several records of one key in one batch ---------------------------------------------------


def _snapshot(world):
    return {
        "meetings": sorted(
            world.sql(
                "SELECT message_key, occurred_at, ends_at, status, sequence, subject, location, direction FROM interaction "
                "WHERE kind = 'meeting'"
            )
        ),
        "people": sorted(
            world.sql(
                "SELECT i.message_key, p.address, p.role, p.response, p.name, p.occurred_at, p.user_id, "
                "p.contact_id IS NOT NULL FROM participant p JOIN interaction i ON i.id = p.interaction_id"
            )
        ),
        "copies": sorted(
            world.sql(
                "SELECT i.message_key, s.remote_id FROM interactionsource s "
                "JOIN interaction i ON i.id = s.interaction_id"
            )
        ),
        "stats": sorted(
            world.sql("SELECT c.primary_email, s.meetings FROM contactstats s JOIN contact c ON c.id = s.contact_id")
        ),
        "colleagues": sorted(
            world.sql(
                "SELECT c.primary_email, k.user_id, k.interactions, k.last_at "
                "FROM contactcolleague k JOIN contact c ON c.id = k.contact_id"
            )
        ),
    }


MOVED = START + timedelta(days=2)
DAN = Attendee("dan@acme.com", "Dan", "optional", "needs-action")
ALICE = Attendee("alice@ourco.com", "Alice", "attendee", "accepted")


def _reply(response, who=DAN):
    return meeting("mail#ics", method="REPLY", attendees=[Attendee(who.address, who.name, "attendee", response)])


SCENARIOS = {
    "request, cancel, reply": ([], [meeting(), meeting("cancel#ics", seq=1, method="CANCEL"), _reply("declined")]),
    "newer then older copy": ([], [meeting(seq=2, start=MOVED, subject="moved"), meeting("bob-copy", seq=1)]),
    "older then newer copy": ([], [meeting("bob-copy", seq=1), meeting(seq=2, start=MOVED, subject="moved")]),
    "taken off, then back from an older copy": (
        [meeting()],
        [meeting(seq=1, attendees=[ALICE]), _reply("accepted"), meeting("old", seq=0, start=MOVED)],
    ),
    "taken off and answers in between": (
        [meeting(), _reply("tentative")],
        [
            _reply("declined"),
            meeting(seq=1, start=MOVED, attendees=[ALICE, DAN]),
            meeting("new", seq=1, attendees=[ALICE]),
        ],
    ),
    "reply first, then the invitation": ([], [_reply("accepted"), meeting(), meeting("two", seq=1, start=MOVED)]),
    "series cancel between occurrences": (
        [occurrence(0)],
        [
            occurrence(1),
            meeting("mail#ics", "s-1@acme.com", method="CANCEL"),
            occurrence(2),
            meeting(
                "reply#ics",
                "s-1@acme.com",
                method="REPLY",
                attendees=[Attendee("dan@acme.com", "Dan", "attendee", "declined")],
            ),
            occurrence(1, remote_id="later", seq=1),
        ],
    ),
    "series reply, nothing stored yet": (
        [],
        [
            meeting("reply#ics", "s-1@acme.com", method="REPLY", attendees=[DAN]),
            occurrence(0),
            meeting("cancel#ics", "s-1@acme.com", method="CANCEL", seq=2),
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_records_of_one_key_in_one_batch_apply_in_order(tmp_path, name):
    setup, records = SCENARIOS[name]
    one_by_one, together = make_world(tmp_path / "a"), make_world(tmp_path / "b")
    reports = []
    for world, batches in ((one_by_one, [batch(r) for r in records]), (together, [batch(*records)])):
        box = _calendar(world, "alice@ourco.com")
        if setup:
            _run(world, box, batch(*setup))
        reports.append(_run(world, box, *batches))
    assert _snapshot(together) == _snapshot(one_by_one)
    assert (reports[1].imported, reports[1].new_interactions) == (reports[0].imported, reports[0].new_interactions)
    _assert_summaries_equal_a_recount(together)


def test_request_cancel_reply_in_one_batch(tmp_path, db_url):
    world = make_world(tmp_path, url=db_url)
    a = _calendar(world, "alice@ourco.com")
    _run(
        world,
        a,
        batch(
            meeting(),
            meeting("cancel#ics", seq=1, method="CANCEL"),
            _reply("declined"),
            meeting("bob-copy", seq=0, subject="stale"),
        ),
    )
    assert [(m[0], m[2], m[3], m[4]) for m in _meetings(world)] == [
        ("ical:m-1@acme.com", "cancelled", 1, "Quarterly review")
    ]
    assert _people(world)["dan@acme.com"][1] == "declined"
    assert world.scalar("SELECT COUNT(*) FROM interactionsource") == 4
    assert _carol_meetings(world) == 0


def _statements(world, box, records) -> int:
    count = [0]

    def counted(*_):
        count[0] += 1

    event.listen(world.rt.engine, "before_cursor_execute", counted)
    try:
        _run(world, box, batch(*records))
    finally:
        event.remove(world.rt.engine, "before_cursor_execute", counted)
    return count[0]


def test_statements_per_batch_do_not_grow_with_the_batch(tmp_path):
    counts = []
    for n in (5, 200):
        world = make_world(tmp_path / str(n))
        box = _calendar(world, "alice@ourco.com")
        first = [occurrence(k) for k in range(n)]
        newer = [occurrence(k, seq=1, start=MOVED + timedelta(weeks=k), attendees=[ALICE]) for k in range(n)]
        counts.append(
            (
                _statements(world, box, first),
                _statements(world, box, newer),
                _statements(
                    world,
                    box,
                    [
                        meeting("c#ics", "s-1@acme.com", method="CANCEL", seq=2),
                        meeting(
                            "r#ics",
                            "s-1@acme.com",
                            method="REPLY",
                            attendees=[Attendee("alice@ourco.com", "", "", "declined")],
                        ),
                    ],
                ),
            )
        )
        assert len(_meetings(world)) == n
        assert {r[2] for r in _meetings(world)} == {"cancelled"}
        assert set(_responses(world, "alice@ourco.com").values()) == {"declined"}
    assert counts[0] == counts[1]


def test_a_meeting_another_writer_inserted_meanwhile_is_folded_over_theirs(tmp_path, monkeypatch, db_url):
    """Read, then insert-or-ignore: a key another mailbox stored in between is
    read again, and this batch applies over it (a lower SEQUENCE changes nothing)."""
    from sync import meetings

    world = make_world(tmp_path, url=db_url)
    a = _calendar(world, "alice@ourco.com")
    real = meetings._load_people
    calls = []

    def meanwhile(conn, ids):
        if not calls:
            conn.execute(
                text(
                    "INSERT INTO interaction (org_id, kind, message_key, thread_key, occurred_at, direction, "
                    "subject, status, sequence, created_at) VALUES (:o, 'meeting', 'ical:m-1@acme.com', "
                    "'ical:m-1@acme.com', :at, 'in', 'theirs', 'confirmed', 5, :at)"
                ),
                {"o": world.org_id, "at": MOVED},
            )
        calls.append(ids)
        return real(conn, ids)

    monkeypatch.setattr(meetings, "_load_people", meanwhile)
    report = _run(world, a, batch(meeting(seq=1)))
    assert report.new_interactions == 0 and len(calls) == 2
    [(key, at, status, seq, subject)] = _meetings(world)
    assert (seq, subject) == (5, "theirs")
    assert str(at).startswith("2026-11-22 08:00")
    assert {str(r[0])[:16] for r in world.sql("SELECT occurred_at FROM participant")} == {"2026-11-22 08:00"}
    assert "dan@acme.com" in _people(world)


def test_a_reply_never_adds_someone_to_a_known_meeting(tmp_path):
    world = make_world(tmp_path)
    a = _calendar(world, "alice@ourco.com")
    _run(world, a, batch(meeting()))
    crasher = meeting("mail#ics", method="REPLY", attendees=[Attendee("mallory@evil.com", "M", "attendee", "accepted")])
    _run(world, a, batch(crasher))
    assert "mallory@evil.com" not in _people(world)


def test_a_series_newest_copy_another_writer_changed_meanwhile_is_never_written_back_over(tmp_path, db_url):
    # Two mailboxes' batches read the same row; the one holding the older copy wrote last and the
    # row went back to it, so the occurrences the newer copy had cut came back later.
    from sync.meetings import SeriesChanged, _load_newest, _save_newest

    w = make_world(tmp_path, url=db_url)
    key = "ical:weekly@acme.com"
    with write_transaction(w.rt.engine) as conn:
        conn.execute(
            text(
                "INSERT INTO meetingseries (org_id, series_key, sequence, since, until, listed, updated_at) "
                "VALUES (:org, :k, 1, '2026-01-01T00:00:00Z', '2027-01-01T00:00:00Z', '[]', :at)"
            ),
            {"org": w.org_id, "k": key, "at": datetime(2026, 12, 1, tzinfo=timezone.utc)},
        )
    with read_only(w.rt.engine) as conn:  # what this batch read ...
        mine = _load_newest(conn, w.org_id, {key})
    with write_transaction(w.rt.engine) as other:  # ... before another writer's newer copy committed
        other.execute(
            text("UPDATE meetingseries SET sequence = 3, updated_at = :at"), {"at": datetime.now(timezone.utc)}
        )
    mine[key].sequence, mine[key].changed = 2, True
    with pytest.raises(SeriesChanged), write_transaction(w.rt.engine) as conn:
        _save_newest(conn, w.org_id, mine)
    assert w.scalar("SELECT sequence FROM meetingseries") == 3


def test_a_series_copy_of_the_same_sequence_over_a_window_apart_replaces_the_one_kept():
    # Merged across the gap, the months between counted as read and listing nothing: an older
    # invitation's occurrence there was taken for one the newer copy had cut.
    from sync.meetings import _Item, _Newest, _SeriesCopy

    def copy(since: str, until: str, rids: list[str]) -> _SeriesCopy:
        start = datetime(2026, 1, 1, tzinfo=timezone.utc)
        rec = MeetingRecord("r", "weekly@acme.com", rids[0], start, None, "W", None, [], sequence=2)
        rec.series_sequence = 2
        item = _Item(0, rec, {}, f"ical:weekly@acme.com/{rids[0]}", False)
        return _SeriesCopy("ical:weekly@acme.com", since, until, {f"ical:weekly@acme.com/{r}" for r in rids}, item)

    kept = _Newest(2, "2026-01-01T00:00:00Z", "2026-01-15T00:00:00Z", {"2026-01-05T10:00:00Z"})
    kept.take(copy("2026-03-01T00:00:00Z", "2026-03-15T00:00:00Z", ["2026-03-02T10:00:00Z"]))
    assert (kept.since, kept.until, kept.listed) == (
        "2026-03-01T00:00:00Z",
        "2026-03-15T00:00:00Z",
        {"2026-03-02T10:00:00Z"},
    )
    older = copy("2026-01-01T00:00:00Z", "2026-12-31T00:00:00Z", ["2026-02-02T10:00:00Z"])
    older.master.rec.series_sequence = 1
    assert not kept.cut(older, "2026-02-02T10:00:00Z")  # read by neither copy: kept
    assert kept.cut(older, "2026-03-09T10:00:00Z")  # inside the newer window and not listed there: cut
    # Overlapping windows of the same copy are one: it lists what either read listed.
    kept.take(copy("2026-03-10T00:00:00Z", "2026-04-01T00:00:00Z", ["2026-03-16T10:00:00Z"]))
    assert (kept.since, kept.until) == ("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z")
    assert kept.listed == {"2026-03-02T10:00:00Z", "2026-03-16T10:00:00Z"}
