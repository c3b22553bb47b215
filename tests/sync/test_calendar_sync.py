"""Meetings end to end through sync.engine.sync_mailbox: a real Radicale for
CalDAV accounts, a real Dovecot for invitations in mail; the timeline is
checked after every incremental sync."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from app.db import session
from app.services import calendars, orgs
from app.services.actor import Actor
from tests import factories
from tests.connectors.test_ical import event, stamp, vcalendar
from tests.connectors.test_imip import invitation
from tests.world import NOW, json_value, make_world, message

SOON = NOW.replace(minute=0, second=0) + timedelta(days=4)
RID = "%Y-%m-%dT%H:%M:%SZ"


@pytest.fixture
def world(tmp_path):
    return make_world(tmp_path)


def add_caldav(world, owner: str, user, password: str | None = None, **kw) -> int:
    kw.setdefault("check", False)
    return calendars.add_caldav(
        world.rt,
        Actor.operator(world.org_id),
        owner=owner,
        url=user.url,
        username=user.username,
        password=password or user.password,
        **kw,
    )["id"]


def meetings(world) -> dict[str, tuple]:
    rows = world.sql(
        "SELECT message_key, occurred_at, status, subject, sequence FROM interaction "
        "WHERE kind = 'meeting' ORDER BY message_key"
    )
    return {r[0]: tuple(r[1:]) for r in rows}


def people(world, key: str) -> list[tuple]:
    return [
        tuple(r)
        for r in world.sql(
            "SELECT p.address, p.role, p.response FROM participant p JOIN interaction i ON i.id = p.interaction_id "
            "WHERE i.message_key = :k ORDER BY p.address",
            k=key,
        )
    ]


def at(dt) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S")


@pytest.mark.parametrize("sync_mode", ["auto", "ctag"])
def test_caldav_account_timeline_follows_every_change(world, caldav_user, sync_mode):
    caldav_user.put(
        "demo.ics",
        vcalendar(
            event(
                "demo@ourco.com",
                stamp(SOON),
                end=stamp(SOON + timedelta(hours=1)),
                summary="Demo",
                attendees=(("carla@acme.com", "ACCEPTED"),),
            )
        ),
    )
    start = SOON.replace(hour=16)
    series = event(
        "weekly@ourco.com",
        ";TZID=America/New_York:" + start.strftime("%Y%m%dT120000"),
        summary="Weekly",
        attendees=(("dan@client.io", "TENTATIVE"),),
        extra="RRULE:FREQ=WEEKLY;COUNT=3",
    )
    caldav_user.put("weekly.ics", vcalendar(series))
    caldav_user.put(
        "internal.ics", vcalendar(event("int@ourco.com", stamp(SOON), attendees=(("bob@ourco.com", "ACCEPTED"),)))
    )
    mid = add_caldav(world, "alice@ourco.com", caldav_user, sync=sync_mode)

    report = world.sync(mid)
    assert report.ok and report.error is None
    m = meetings(world)
    weekly_keys = sorted(k for k in m if k.startswith("ical:weekly@ourco.com/"))
    assert sorted(m) == ["ical:demo@ourco.com"] + weekly_keys and len(weekly_keys) == 3
    assert (str(m["ical:demo@ourco.com"][0])[:19],) + m["ical:demo@ourco.com"][1:] == (at(SOON), "confirmed", "Demo", 0)
    # 12:00 in New York, in UTC for that date (16:00 or 17:00 by daylight saving time);
    # the recurrence id is the original start in UTC
    first = weekly_keys[0].split("/", 1)[1]
    local = datetime.strptime(first[:10], "%Y-%m-%d").replace(hour=12, tzinfo=ZoneInfo("America/New_York"))
    assert first == local.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert people(world, "ical:demo@ourco.com") == [
        ("alice@ourco.com", "organizer", "accepted"),
        ("carla@acme.com", "attendee", "accepted"),
    ]
    assert world.sql("SELECT status, last_error FROM mailbox WHERE id = :m", m=mid) == [("active", None)]
    assert [r[0] for r in world.sql("SELECT role FROM folderstate WHERE mailbox_id = :m", m=mid)] == ["calendar"]
    assert json_value(world.sql("SELECT skipped FROM mailbox")[0][0]) == {"internal meeting": 1}

    again = world.sync(mid)  # nothing changed
    assert again.ok and again.imported == 0 and meetings(world) == m

    # Moved an hour later (new SEQUENCE), one occurrence cancelled, the series shortened to 2.
    later = SOON + timedelta(hours=1)
    caldav_user.put(
        "demo.ics",
        vcalendar(
            event(
                "demo@ourco.com",
                stamp(later),
                summary="Demo (moved)",
                sequence=1,
                attendees=(("carla@acme.com", "DECLINED"),),
            )
        ),
    )
    cancelled = event(
        "weekly@ourco.com",
        ";TZID=America/New_York:" + start.strftime("%Y%m%dT120000"),
        summary="Weekly",
        attendees=(("dan@client.io", "TENTATIVE"),),
        sequence=1,
        extra="RECURRENCE-ID;TZID=America/New_York:" + start.strftime("%Y%m%dT120000") + "\r\nSTATUS:CANCELLED",
    )
    caldav_user.put("weekly.ics", vcalendar(series.replace("COUNT=3", "COUNT=2"), cancelled))
    assert world.sync(mid).ok
    m2 = meetings(world)
    assert str(m2["ical:demo@ourco.com"][0])[:19] == at(later)
    assert m2["ical:demo@ourco.com"][1:] == ("confirmed", "Demo (moved)", 1)
    assert people(world, "ical:demo@ourco.com")[1] == ("carla@acme.com", "attendee", "declined")
    assert sorted(k for k in m2 if k.startswith("ical:weekly")) == weekly_keys[:2]
    assert m2[weekly_keys[0]][1] == "cancelled"

    # Deleted events leave the timeline.
    caldav_user.delete("demo.ics")
    caldav_user.delete("weekly.ics")
    assert world.sync(mid).ok
    assert meetings(world) == {}
    assert world.scalar("SELECT count(*) FROM interactionsource") == 0


def test_one_meeting_from_two_calendars_and_an_invitation_is_one_interaction(world, radicale, imap_user):
    alice_cal = _user(radicale, "alice")
    bob_cal = _user(radicale, "bob")
    start = SOON.replace(hour=9)
    series = event(
        "shared@acme.com",
        stamp(start),
        organizer="carla@acme.com",
        summary="Acme sync",
        attendees=(("alice@ourco.com", "ACCEPTED"), ("bob@ourco.com", "TENTATIVE")),
        extra="RRULE:FREQ=WEEKLY;COUNT=2",
    )
    alice_cal.put("x1.ics", vcalendar(series))
    bob_cal.put("other-name.ics", vcalendar(series))
    # Carol only has IMAP: the invitation in her inbox.
    with session(world.rt.engine) as s:
        factories.add_user(s, orgs.the_org(s, world.org_id), "carol@ourco.com", name="Carol")
    imap_user.deliver(
        invitation(
            vcalendar(series, method="REQUEST"), msgid="inv-shared@acme.com", frm="carla@acme.com", to="carol@ourco.com"
        )
    )
    ids = [
        add_caldav(world, "alice@ourco.com", alice_cal),
        add_caldav(world, "bob@ourco.com", bob_cal),
        world.add_imap("carol@ourco.com", imap_user),
    ]
    for mid in ids:
        assert world.sync(mid).ok
    keys = sorted(k for k in meetings(world))
    assert keys == [f"ical:shared@acme.com/{(start + timedelta(weeks=i)).strftime(RID)}" for i in range(2)]
    for key in keys:
        sources = world.sql(
            "SELECT s.mailbox_id FROM interactionsource s JOIN interaction i "
            "ON i.id = s.interaction_id WHERE i.message_key = :k ORDER BY 1",
            k=key,
        )
        assert [r[0] for r in sources] == ids
    assert people(world, keys[0]) == [
        ("alice@ourco.com", "attendee", "accepted"),
        ("bob@ourco.com", "attendee", "tentative"),
        ("carla@acme.com", "organizer", "accepted"),
        ("carol@ourco.com", "attendee", None),
    ]
    # Alice deletes it from her calendar: Bob's and Carol's copies keep it on the timeline.
    alice_cal.delete("x1.ics")
    assert world.sync(ids[0]).ok
    assert sorted(meetings(world)) == keys


def _user(radicale, prefix: str):
    import secrets

    from tests.conftest import CalDavUser

    name, password = f"{prefix}{secrets.token_hex(4)}", secrets.token_urlsafe(10)
    radicale.add_user(name, password)
    radicale.make_calendar(name, password, "calendar")
    return CalDavUser(name, password, "calendar", radicale)


def test_imap_only_rep_gets_meetings_from_invitations(world, imap_user):
    req = event(
        "call@acme.com",
        stamp(SOON),
        end=stamp(SOON + timedelta(minutes=30)),
        organizer="carla@acme.com",
        summary="Intro call",
        attendees=(("alice@ourco.com", "NEEDS-ACTION"), ("ed@acme.com", "NEEDS-ACTION")),
        extra="LOCATION:Zoom",
    )
    imap_user.deliver(invitation(vcalendar(req, method="REQUEST"), msgid="inv1@acme.com", frm="carla@acme.com"))
    mid = world.add_imap("alice@ourco.com", imap_user)
    assert world.sync(mid).ok
    ((key, (when, status, subject, sequence)),) = meetings(world).items()
    assert (key, str(when)[:19], status, subject, sequence) == (
        "ical:call@acme.com",
        at(SOON),
        "confirmed",
        "Intro call",
        0,
    )
    assert world.scalar("SELECT location FROM interaction WHERE message_key = 'ical:call@acme.com'") == "Zoom"
    # the invitation email itself is on the timeline too
    assert world.scalar("SELECT kind FROM interaction WHERE message_key = 'inv1@acme.com'") == "email"

    # Ed's REPLY (in Alice's inbox, as the organiser's copy would be) changes his answer only.
    reply = event("call@acme.com", stamp(SOON), organizer="carla@acme.com", attendees=(("ed@acme.com", "ACCEPTED"),))
    imap_user.deliver(
        invitation(vcalendar(reply, method="REPLY"), method="REPLY", msgid="rep1@acme.com", frm="ed@acme.com")
    )
    assert world.sync(mid).ok
    assert dict((a, r) for a, _, r in people(world, "ical:call@acme.com"))["ed@acme.com"] == "accepted"
    assert world.scalar("SELECT subject FROM interaction WHERE message_key = 'ical:call@acme.com'") == "Intro call"

    # Moved (REQUEST with a higher SEQUENCE), then cancelled.
    moved = req.replace(stamp(SOON), stamp(SOON + timedelta(days=1))).replace("SEQUENCE:0", "SEQUENCE:1")
    imap_user.deliver(invitation(vcalendar(moved, method="REQUEST"), msgid="inv2@acme.com", frm="carla@acme.com"))
    assert world.sync(mid).ok
    assert str(world.scalar("SELECT occurred_at FROM interaction WHERE message_key = 'ical:call@acme.com'"))[:19] == at(
        SOON + timedelta(days=1)
    )
    cancel = moved.replace("SEQUENCE:1", "SEQUENCE:2")
    imap_user.deliver(
        invitation(vcalendar(cancel, method="CANCEL"), method="CANCEL", msgid="can1@acme.com", frm="carla@acme.com")
    )
    assert world.sync(mid).ok
    assert world.scalar("SELECT status FROM interaction WHERE message_key = 'ical:call@acme.com'") == "cancelled"
    assert world.scalar("SELECT count(*) FROM interaction WHERE kind = 'meeting'") == 1


def test_an_invitation_sent_in_a_colleagues_name_counts_only_when_something_vouches_for_it(world, imap_user):
    # Bob is Alice's colleague. A forger mails Alice an invitation "organised" by Bob with a
    # stranger on it, under Bob's From, over SMTP (a Received field) and with nothing
    # that vouches for the From: it must not become Bob's meeting with the stranger.
    def bobs_call(uid: str) -> str:
        return vcalendar(
            event(
                uid,
                stamp(SOON),
                organizer="bob@ourco.com",
                summary="Pricing",
                attendees=(("alice@ourco.com", "NEEDS-ACTION"), ("stranger@evil.example", "ACCEPTED")),
            ),
            method="REQUEST",
        )

    hop = b"Received: from mx.evil.example by mx.ourco.com; Mon, 1 Jun 2026 10:00:00 +0000\r\n"
    imap_user.deliver(hop + invitation(bobs_call("forged@x"), msgid="forged@evil.example", frm="bob@ourco.com"))
    # An outside organiser's invitation over SMTP is taken as before.
    outside = event("outside@acme.com", stamp(SOON), organizer="carla@acme.com", attendees=(("alice@ourco.com", ""),))
    imap_user.deliver(
        hop + invitation(vcalendar(outside, method="REQUEST"), msgid="out@acme.com", frm="carla@acme.com")
    )
    mid = world.add_imap("alice@ourco.com", imap_user)
    assert world.sync(mid).ok
    assert sorted(meetings(world)) == ["ical:outside@acme.com"]
    assert world.scalar("SELECT count(*) FROM participant WHERE address = 'stranger@evil.example'") == 0
    from sync.meetings import UNVOUCHED_INVITATION

    assert [
        tuple(r)
        for r in world.sql("SELECT remote_id, reason FROM skippeditem WHERE reason = :r", r=UNVOUCHED_INVITATION)
    ]
    skipped = json_value(world.scalar("SELECT skipped FROM mailbox WHERE id = :m", m=mid))
    # counted as messages of the server: Bob's email (internal); its meeting is listed above, not counted
    assert skipped == {"internal": 1}

    # The same invitation that never crossed SMTP (no Received field: put there by a client
    # of the mailbox, as a Sent copy is) is vouched for, and is Bob's meeting.
    imap_user.deliver(invitation(bobs_call("genuine@x"), msgid="genuine@ourco.com", frm="bob@ourco.com"))
    assert world.sync(mid).ok
    assert sorted(meetings(world)) == ["ical:genuine@x", "ical:outside@acme.com"]
    organiser = world.sql(
        "SELECT p.address, p.user_id IS NOT NULL FROM participant p JOIN interaction i ON i.id = p.interaction_id "
        "WHERE i.message_key = 'ical:genuine@x' AND p.role = 'organizer'"
    )
    assert [tuple(r) for r in organiser] == [("bob@ourco.com", True)]
    assert world.scalar("SELECT direction FROM interaction WHERE message_key = 'ical:genuine@x'") == "out"


def test_bad_calendar_data_is_recorded_and_never_stops_the_sync(world, caldav_user):
    caldav_user.put("mars.ics", vcalendar(event("mars@x", ";TZID=Mars/Olympus:20300101T100000")))
    caldav_user.put("dense.ics", vcalendar(event("dense@x", stamp(SOON), extra="RRULE:FREQ=MINUTELY")))
    crowd = tuple((f"p{i}@crowd.com", "NEEDS-ACTION") for i in range(600))
    caldav_user.put("crowd.ics", vcalendar(event("crowd@x", stamp(SOON), attendees=crowd)))
    caldav_user.put("fine.ics", vcalendar(event("fine@x", stamp(SOON), attendees=(("f@ext.com", "ACCEPTED"),))))
    mid = add_caldav(world, "alice@ourco.com", caldav_user)
    report = world.sync(mid)
    assert report.ok and report.bad == 3
    reasons = sorted(r[0] for r in world.sql("SELECT reason FROM syncissue"))
    assert any("unknown time zone 'Mars/Olympus'" in r for r in reasons)
    assert any("too dense" in r for r in reasons)
    assert any("attendee list cut to 500 of 600" in r for r in reasons)
    assert sorted(meetings(world)) == ["ical:crowd@x", "ical:fine@x"]
    assert (
        world.scalar(
            "SELECT count(*) FROM participant p JOIN interaction i ON i.id = p.interaction_id "
            "WHERE i.message_key = 'ical:crowd@x'"
        )
        == 501
    )  # 500 + the organiser (the owner)


def test_wrong_caldav_password_fails_the_account_with_auth(world, caldav_user):
    mid = add_caldav(world, "alice@ourco.com", caldav_user, password="not-it")
    report = world.sync(mid)
    assert not report.ok and report.error_kind == "auth"
    status, kind, error = world.sql("SELECT status, last_error_kind, last_error FROM mailbox WHERE id = :m", m=mid)[0]
    from app.services.mailboxes import fix_for

    assert (status, kind) == ("failed", "auth") and "password" in fix_for(kind, "caldav")


def test_mail_without_invitations_is_unchanged(world, imap_user):
    imap_user.deliver(message("x@ext.com", "alice@ourco.com", "Plain", msgid="p@x"))
    mid = world.add_imap("alice@ourco.com", imap_user)
    assert world.sync(mid).ok
    assert world.sql("SELECT kind, message_key FROM interaction") == [("email", "p@x")]


def _weekly(start, hour: int, rule: str, sequence: int, method: str = "REQUEST") -> str:
    """Carla's weekly call with Alice, an invitation to its whole series from `start` at `hour`."""
    series = event(
        "weekly@acme.com",
        stamp(start.replace(hour=hour)),
        end=stamp(start.replace(hour=hour) + timedelta(minutes=30)),
        organizer="carla@acme.com",
        summary="Weekly",
        attendees=(("alice@ourco.com", "NEEDS-ACTION"),),
        extra=f"RRULE:FREQ=WEEKLY;{rule}",
        sequence=sequence,
    )
    return vcalendar(series, method=method)


def test_a_newer_invitation_to_a_series_replaces_the_occurrences_it_moved_or_cut(world, imap_user):
    # Carla's weekly call with Alice, by invitation: four weeks at 10:00.
    start = SOON.replace(hour=10)

    def weekly(hour: int, rule: str, sequence: int, method: str = "REQUEST") -> str:
        return _weekly(start, hour, rule, sequence, method)

    def deliver(ics: str, msgid: str, method: str = "REQUEST") -> None:
        imap_user.deliver(invitation(ics, method=method, msgid=msgid, frm="carla@acme.com"))

    def live(world) -> list[str]:
        return sorted(str(when)[:16] for when, status, *_ in meetings(world).values() if status != "cancelled")

    def weeks(hour: int, n: int) -> list[str]:
        return [(start.replace(hour=hour) + timedelta(weeks=i)).strftime("%Y-%m-%d %H:%M") for i in range(n)]

    deliver(weekly(10, "COUNT=4", 0), "w0@acme.com")
    mid = world.add_imap("alice@ourco.com", imap_user)
    assert world.sync(mid).ok
    assert live(world) == weeks(10, 4)

    # The whole series moved to 11:00 (SEQUENCE 1): four calls at 11:00, not eight calls.
    deliver(weekly(11, "COUNT=4", 1), "w1@acme.com")
    assert world.sync(mid).ok
    assert live(world) == weeks(11, 4)

    # "This and all following" from the third week: the series ends after two (Outlook and
    # Google send the old series cut short with UNTIL; the rest comes as a new series).
    until = stamp(start.replace(hour=11) + timedelta(weeks=1, hours=1))
    deliver(weekly(11, f"UNTIL={until}", 2), "w2@acme.com")
    assert world.sync(mid).ok
    assert live(world) == weeks(11, 2)

    # Re-reading the old invitations (still in the inbox) never brings the old times back.
    assert world.sync(mid).ok
    assert live(world) == weeks(11, 2)

    # The series cancelled: nothing of it is left live.
    deliver(weekly(11, f"UNTIL={until}", 3, method="CANCEL"), "w3@acme.com", method="CANCEL")
    assert world.sync(mid).ok
    assert live(world) == []


@pytest.mark.parametrize("batch_size", [1, 1000], ids=["one invitation a batch", "all in one batch"])
def test_a_first_import_reading_the_newest_invitation_first_ends_as_reading_them_in_order(world, imap_user, batch_size):
    # A first import reads mail newest first: the series cut short (SEQUENCE 2) came before the
    # older invitations, which brought back the calls it had moved or cut.
    start = SOON.replace(hour=10)
    until = stamp(start.replace(hour=11) + timedelta(weeks=1, hours=1))
    copies = (
        _weekly(start, 10, "COUNT=4", 0),
        _weekly(start, 11, "COUNT=4", 1),
        _weekly(start, 11, f"UNTIL={until}", 2),
    )
    for n, ics in enumerate(copies):
        imap_user.deliver(invitation(ics, msgid=f"w{n}@acme.com", frm="carla@acme.com"))
    mid = world.add_imap("alice@ourco.com", imap_user)
    world.set_batch_size(mid, batch_size)
    assert world.sync(mid).ok
    live = sorted(str(when)[:16] for when, status, *_ in meetings(world).values() if status != "cancelled")
    assert live == [(start.replace(hour=11) + timedelta(weeks=i)).strftime("%Y-%m-%d %H:%M") for i in range(2)]
    # Read again, and the series' newest copy as it was kept: the same.
    assert world.sync(mid).ok
    assert world.sql("SELECT series_key, sequence FROM meetingseries") == [("ical:weekly@acme.com", 2)]


def test_a_calendar_copy_of_a_moved_series_outranks_the_old_invitation_in_mail(world, radicale, imap_user):
    # Alice has both: the first invitation in her inbox and the meeting in her CalDAV calendar.
    # The organiser moves the series; her calendar has the new times, her inbox still the old mail.
    cal = _user(radicale, "alice")
    start = SOON.replace(hour=10)

    def weekly(hour: int, sequence: int) -> str:
        return event(
            "moved@acme.com",
            stamp(start.replace(hour=hour)),
            organizer="carla@acme.com",
            attendees=(("alice@ourco.com", "ACCEPTED"),),
            extra="RRULE:FREQ=WEEKLY;COUNT=3",
            sequence=sequence,
        )

    imap_user.deliver(invitation(vcalendar(weekly(10, 0), method="REQUEST"), msgid="m0@acme.com", frm="carla@acme.com"))
    cal.put("moved.ics", vcalendar(weekly(10, 0)))
    ids = [world.add_imap("alice@ourco.com", imap_user), add_caldav(world, "alice@ourco.com", cal)]
    for mid in ids:
        assert world.sync(mid).ok
    cal.put("moved.ics", vcalendar(weekly(14, 1)))
    for mid in ids:
        assert world.sync(mid).ok
    live = sorted(str(when)[11:16] for when, status, *_ in meetings(world).values() if status != "cancelled")
    assert live == ["14:00"] * 3


def test_people_written_without_mailto_are_on_the_meeting(world, caldav_user):
    # Some booking tools and older clients write a bare address where RFC 5545 wants a mailto: URI.
    bare = event(
        "bare@booking.example",
        stamp(SOON),
        organizer=None,
        attendees=(),
        extra="ORGANIZER;CN=Carla:Carla@Acme.com\r\n"
        "ATTENDEE;PARTSTAT=ACCEPTED:alice@ourco.com\r\n"
        "ATTENDEE;CN=Dan;PARTSTAT=TENTATIVE:dan@acme.com\r\n"
        "ATTENDEE;PARTSTAT=ACCEPTED:MAILTO:Ed@Acme.com\r\n"
        "ATTENDEE;CN=Nobody;PARTSTAT=ACCEPTED:invalid:nomail",
    )
    caldav_user.put("bare.ics", vcalendar(bare))
    mid = add_caldav(world, "alice@ourco.com", caldav_user)
    assert world.sync(mid).ok
    assert people(world, "ical:bare@booking.example") == [
        ("alice@ourco.com", "attendee", "accepted"),
        ("carla@acme.com", "organizer", "accepted"),
        ("dan@acme.com", "attendee", "tentative"),
        ("ed@acme.com", "attendee", "accepted"),
    ]


def test_an_unreadable_calendar_object_is_counted_and_leaves_with_its_deletion_or_repair(world, caldav_user):
    """It used to be counted unreadable but not on the server's side (stored + skipped then
    exceeded the count, hiding a lost copy), and once deleted or fixed its unreadable row and
    count stayed for good."""
    from tests.app.test_reconciliation import api

    carla = (("carla@acme.com", "ACCEPTED"),)
    caldav_user.put("mars.ics", vcalendar(event("mars@x", ";TZID=Mars/Olympus:20300101T100000", attendees=carla)))
    caldav_user.put("venus.ics", vcalendar(event("venus@x", ";TZID=Venus/Maxwell:20300101T100000", attendees=carla)))
    caldav_user.put("fine.ics", vcalendar(event("fine@x", stamp(SOON), attendees=carla)))
    mid = add_caldav(world, "alice@ourco.com", caldav_user)
    assert world.sync(mid).ok
    client = api(world)

    def calendar() -> tuple:
        (cal,) = client.get(f"/api/mailboxes/{mid}").json()["folders"]
        issues = world.scalar("SELECT count(*) FROM syncissue WHERE mailbox_id = :m", m=mid)
        return cal["server_count"], cal["stored"], cal["skipped"], issues, cal["reconciliation"]

    assert calendar() == (3, 1, 2, 2, "reconciled")
    caldav_user.delete("mars.ics")
    assert world.sync(mid).ok
    assert calendar() == (2, 1, 1, 1, "reconciled")
    caldav_user.put("venus.ics", vcalendar(event("venus@x", stamp(SOON), attendees=carla, sequence=1)))  # repaired
    assert world.sync(mid).ok
    assert calendar() == (2, 2, 0, 0, "reconciled")


@pytest.mark.parametrize("sync_mode", ["auto", "ctag"])
def test_an_admins_re_read_of_a_calendar_drops_a_meeting_deleted_since_and_keeps_the_history(
    world, caldav_user, sync_mode
):
    """A re-read (resync, a rule removed) forgets the calendar's cursor, which alone would have told
    of a meeting deleted since the last run: its copy stayed on the timeline for good."""
    from app.services import mailboxes
    from tests.app.test_reconciliation import api

    carla = (("carla@acme.com", "ACCEPTED"),)
    past = NOW.replace(minute=0, second=0) - timedelta(days=100)
    caldav_user.put("kickoff.ics", vcalendar(event("kickoff@x", stamp(past), attendees=carla)))
    caldav_user.put("review.ics", vcalendar(event("review@x", stamp(SOON), attendees=carla)))
    caldav_user.put("demo.ics", vcalendar(event("demo@x", stamp(SOON + timedelta(days=1)), attendees=carla)))
    mid = add_caldav(world, "alice@ourco.com", caldav_user, sync=sync_mode)
    assert world.sync(mid).ok
    world.set_org(calendar_past_days=30)  # the window moves past the kick-off: history now
    assert world.sync(mid).ok
    assert sorted(meetings(world)) == ["ical:demo@x", "ical:kickoff@x", "ical:review@x"]
    caldav_user.delete("demo.ics")
    mailboxes.resync(world.rt, Actor.operator(world.org_id), mid)
    assert world.sync(mid).ok
    assert sorted(meetings(world)) == ["ical:kickoff@x", "ical:review@x"]
    (cal,) = api(world).get(f"/api/mailboxes/{mid}").json()["folders"]
    # the history stays tracked through the re-read: counted, and its deletion still takes it off
    assert (cal["server_count"], cal["stored"], cal["reconciliation"]) == (2, 2, "reconciled")
    caldav_user.delete("kickoff.ics")
    assert world.sync(mid).ok
    assert sorted(meetings(world)) == ["ical:review@x"]


def test_a_new_uidvalidity_keeps_the_meetings_of_invitations_older_than_the_backfill_window(world, imap_user):
    """A folder read again from scratch (a server migration gives every folder a new UIDVALIDITY)
    re-reads the backfill window only, by the emails' dates. An invitation older than it, read when
    it came in, keeps its email on the timeline; its meeting (past or to come) left with the
    listing's end. They stay now, as when an invitation's email is expunged."""
    past = NOW.replace(minute=0, second=0) - timedelta(days=95)
    alice = (("alice@ourco.com", "ACCEPTED"),)
    kickoff = event("kickoff@acme.com", stamp(past), organizer="carla@acme.com", attendees=alice)
    old = invitation(vcalendar(kickoff, method="REQUEST"), msgid="old-inv@acme.com", frm="carla@acme.com")
    booked = event("renewal@acme.com", stamp(SOON), organizer="carla@acme.com", attendees=alice)
    early = invitation(vcalendar(booked, method="REQUEST"), msgid="early-inv@acme.com", frm="carla@acme.com")
    recent = message("carla@acme.com", "alice@ourco.com", "Next steps", msgid="recent@acme.com")
    imap_user.create_folder("Archive")
    imap_user.deliver(old, folder="Archive", internaldate=NOW - timedelta(days=100))
    imap_user.deliver(early, folder="Archive", internaldate=NOW - timedelta(days=40))
    imap_user.deliver(recent, folder="Archive", internaldate=NOW - timedelta(days=2))
    mid = world.add_imap("alice@ourco.com", imap_user)
    assert world.sync(mid).ok
    assert sorted(meetings(world)) == ["ical:kickoff@acme.com", "ical:renewal@acme.com"]
    world.set_org(backfill_days=30)
    imap_user.recreate_folder("Archive")  # the same mail under new UIDs
    imap_user.deliver(old, folder="Archive", internaldate=NOW - timedelta(days=100))
    imap_user.deliver(early, folder="Archive", internaldate=NOW - timedelta(days=40))
    imap_user.deliver(recent, folder="Archive", internaldate=NOW - timedelta(days=2))
    assert world.sync(mid).ok
    assert sorted(meetings(world)) == ["ical:kickoff@acme.com", "ical:renewal@acme.com"]
    assert world.scalar("SELECT kind FROM interaction WHERE message_key = 'old-inv@acme.com'") == "email"
