"""Engine rules around calendar sources: a re-listed calendar drops meetings
deleted meanwhile, the advice for an auth failure follows the connector's fix
code, and calendars are read over the organisation's window."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from app.services import mailboxes
from app.services.actor import Actor
from app.services.mailboxes import fix_for
from connectors.base import AuthError, Batch, CalendarWindow, ConnectorSpec, Fix, TransientError
from tests.sync.test_meetings import START, ScriptedCalendar, _calendar, _meetings, batch, meeting
from tests.world import make_world


def test_relisting_after_an_expired_cursor_drops_meetings_deleted_meanwhile(tmp_path):
    world = make_world(tmp_path)
    box = _calendar(world, "alice@ourco.com")
    script = [batch(meeting("a", uid="keep@acme.com"), meeting("b", uid="gone@acme.com"))]
    assert world.sync(box, connector_factory=lambda *a: ScriptedCalendar(script)).ok
    assert len(_meetings(world)) == 2
    # The sync state expired; "gone" was deleted while we could not see changes.
    relisted = Batch(
        records=[meeting("a", uid="keep@acme.com")], bad=[], cursor={"fresh": 1}, backfill_done=True, reset=True
    )
    report = world.sync(box, connector_factory=lambda *a: ScriptedCalendar([relisted]))
    assert report.ok, report.error
    assert [m[0] for m in _meetings(world)] == ["ical:keep@acme.com"]
    assert world.scalar("SELECT COUNT(*) FROM interactionsource") == 1
    assert (
        world.scalar(
            "SELECT COUNT(*) FROM participant p JOIN interaction i ON i.id = p.interaction_id "
            "WHERE i.message_key = 'ical:gone@acme.com'"
        )
        == 0
    )


def test_relisting_a_calendar_keeps_the_history_behind_its_window(tmp_path):
    """A calendar's listing covers its window only (a year back by default). After an expired
    state the re-listing dropped every meeting behind the window that this calendar alone held:
    a rep's past meetings left the contacts' timelines at each expiry. The listing says where it
    starts (Batch.relists_from); what is older stays as history, as it does when the window slides."""
    world = make_world(tmp_path)
    box = _calendar(world, "alice@ourco.com")
    window_start = START - timedelta(days=365)
    old = meeting("old", uid="old@acme.com", start=window_start - timedelta(days=30))
    script = [batch(old, meeting("a", uid="keep@acme.com"), meeting("b", uid="gone@acme.com"))]
    assert world.sync(box, connector_factory=lambda *a: ScriptedCalendar(script)).ok
    relisted = Batch(
        records=[meeting("a", uid="keep@acme.com")],
        bad=[],
        cursor={"fresh": 1},
        backfill_done=True,
        reset=True,
        relists_from=window_start,
    )
    report = world.sync(box, connector_factory=lambda *a: ScriptedCalendar([relisted]))
    assert report.ok, report.error
    assert sorted(m[0] for m in _meetings(world)) == ["ical:keep@acme.com", "ical:old@acme.com"]
    # the history keeps its copy (a later deletion of it, told by the source, still takes it off)
    assert world.scalar("SELECT COUNT(*) FROM interactionsource") == 2
    assert world.scalar("SELECT messages FROM folderstate WHERE mailbox_id = :m", m=box) == 2
    assert world.scalar("SELECT relisted FROM folderstate WHERE mailbox_id = :m", m=box) in ("[]", [])
    deleted = Batch(records=[], bad=[], cursor={"delta": 2}, backfill_done=True, removed=["old"])
    assert world.sync(box, connector_factory=lambda *a: ScriptedCalendar([deleted])).ok
    assert [m[0] for m in _meetings(world)] == ["ical:keep@acme.com"]


def test_an_admins_re_read_of_a_calendar_drops_the_meetings_deleted_since_the_last_run(tmp_path):
    """A re-read (resync, a rule removed) forgets the calendar's cursor, and with it what would
    tell of a meeting deleted since the last run: its copy stayed for good. The copies inside the
    window are set aside and their meetings kept with the folder; the reading's end drops those it
    did not list. The history behind the window keeps its copies: the reading will not see it."""
    world = make_world(tmp_path)
    box = _calendar(world, "alice@ourco.com")
    soon = datetime.now(timezone.utc) + timedelta(days=3)  # reset_folders reads the window off the clock
    old = meeting("old", uid="old@acme.com", start=soon - timedelta(days=400))
    script = [batch(old, meeting("a", uid="keep@acme.com", start=soon), meeting("b", uid="gone@acme.com", start=soon))]
    assert world.sync(box, connector_factory=lambda *a: ScriptedCalendar(script)).ok
    mailboxes.resync(world.rt, Actor.operator(world.org_id), box)
    first_page = Batch(records=[meeting("a", uid="keep@acme.com", start=soon)], bad=[], cursor={"page": 2})
    assert not world.sync(box, connector_factory=lambda *a: CutOff([first_page])).ok
    assert len(_meetings(world)) == 3  # the reading has not ended: nothing is decided yet
    # A second re-read before the first ended: "a" is stored again beside its set-aside twin.
    mailboxes.resync(world.rt, Actor.operator(world.org_id), box)
    assert sorted(r[0] for r in world.sql("SELECT remote_id FROM interactionsource")) == ["old", "stale:a", "stale:b"]
    assert world.scalar("SELECT messages FROM folderstate WHERE mailbox_id = :m", m=box) == 3
    assert not world.sync(box, connector_factory=lambda *a: CutOff([first_page])).ok
    last_page = Batch(records=[], bad=[], cursor={"delta": 1}, backfill_done=True)
    assert world.sync(box, connector_factory=lambda *a: ScriptedCalendar([last_page])).ok
    assert sorted(m[0] for m in _meetings(world)) == ["ical:keep@acme.com", "ical:old@acme.com"]
    assert sorted(r[0] for r in world.sql("SELECT remote_id FROM interactionsource")) == ["a", "old"]
    assert world.scalar("SELECT messages FROM folderstate WHERE mailbox_id = :m", m=box) == 2
    assert world.scalar("SELECT relisted FROM folderstate WHERE mailbox_id = :m", m=box) in ("[]", [])


def test_a_re_read_that_lists_a_narrower_window_gives_back_what_it_did_not_cover(tmp_path):
    """The copies are set aside over the window of the day of the re-read; the reading may run
    weeks later (a paused mailbox) or over fewer days (the setting lowered). Its end says where
    its listing started, and the meetings before that stay, with their copies."""
    world = make_world(tmp_path)
    box = _calendar(world, "alice@ourco.com")
    now = datetime.now(timezone.utc)
    spring = meeting("spring", uid="spring@acme.com", start=now - timedelta(days=200))
    summer = meeting("summer", uid="summer@acme.com", start=now - timedelta(days=150))
    script = [batch(spring, summer, meeting("a", uid="keep@acme.com", start=now + timedelta(days=3)))]
    assert world.sync(box, connector_factory=lambda *a: ScriptedCalendar(script)).ok
    mailboxes.resync(world.rt, Actor.operator(world.org_id), box)
    narrower = Batch(
        records=[meeting("a", uid="keep@acme.com", start=now + timedelta(days=3))],
        bad=[],
        cursor={"delta": 1},
        backfill_done=True,
        relists_from=now - timedelta(days=30),
        removed=["summer"],  # told by the source (CalDAV's kept members) while its copy was set aside
    )
    assert world.sync(box, connector_factory=lambda *a: ScriptedCalendar([narrower])).ok
    assert sorted(m[0] for m in _meetings(world)) == ["ical:keep@acme.com", "ical:spring@acme.com"]
    assert sorted(r[0] for r in world.sql("SELECT remote_id FROM interactionsource")) == ["a", "spring"]
    assert world.scalar("SELECT messages FROM folderstate WHERE mailbox_id = :m", m=box) == 2


class CutOff(ScriptedCalendar):
    """Plays its batches back, then the link drops."""

    def fetch_changes(self, folder, cursor, since):
        yield from self.script
        raise TransientError("the connection dropped")


def test_a_relisting_interrupted_and_resumed_still_drops_meetings_deleted_meanwhile(tmp_path):
    """The meetings to check at the listing's end were kept in the run: a relisting that spanned
    two runs forgot them, and a meeting deleted while the cursor had expired stayed on the
    timeline with no copy."""
    world = make_world(tmp_path)
    box = _calendar(world, "alice@ourco.com")
    script = [batch(meeting("a", uid="keep@acme.com"), meeting("b", uid="gone@acme.com"))]
    assert world.sync(box, connector_factory=lambda *a: ScriptedCalendar(script)).ok
    first_page = Batch(records=[meeting("a", uid="keep@acme.com")], bad=[], cursor={"page": 2}, reset=True)
    report = world.sync(box, connector_factory=lambda *a: CutOff([first_page]))
    assert not report.ok
    assert len(_meetings(world)) == 2  # the listing has not ended: nothing is decided yet
    last_page = Batch(records=[], bad=[], cursor={"delta": 1}, backfill_done=True)
    assert world.sync(box, connector_factory=lambda *a: ScriptedCalendar([last_page])).ok
    assert [m[0] for m in _meetings(world)] == ["ical:keep@acme.com"]
    assert world.scalar("SELECT relisted FROM folderstate WHERE mailbox_id = :m", m=box) in ("[]", [])


class Refused(ScriptedCalendar):
    fix: Fix | None = None

    def list_folders(self):
        raise AuthError("the calendar server refused us", fix=self.fix)


class Revoked(Refused):
    fix = Fix.SIGN_IN


def test_the_connectors_fix_code_chooses_the_advice_not_words_in_its_message(tmp_path):
    world = make_world(tmp_path)
    box = _calendar(world, "alice@ourco.com")
    report = world.sync(box, connector_factory=lambda *a: Revoked([]))
    assert not report.ok and report.error_kind == "auth"
    status, error, code = world.sql("SELECT status, last_error, last_error_fix FROM mailbox WHERE id = :i", i=box)[0]
    # The error says what happened; the fix code is kept as a value and chooses the advice.
    assert status == "failed" and error == "the calendar server refused us." and code == "sign_in"
    todo = fix_for("auth", "caldav", code)
    assert "reconnect" in todo and "add-m365" in todo and "set-password" not in todo
    # The same words without a fix code: a refused login, for a calendar account as for IMAP.
    assert not world.sync(box, connector_factory=lambda *a: Refused([])).ok
    error, code = world.sql("SELECT last_error, last_error_fix FROM mailbox WHERE id = :i", i=box)[0]
    assert error == "the calendar server refused us." and code is None
    todo = fix_for("auth", "caldav", code)
    assert "username and password" in todo and "set-password" in todo and "add-m365" not in todo


def test_relisting_one_calendar_never_touches_meetings_kept_from_a_removed_mailbox(tmp_path):
    world = make_world(tmp_path)
    alice, bob = _calendar(world, "alice@ourco.com"), _calendar(world, "bob@ourco.com")
    assert world.sync(
        alice, connector_factory=lambda *a: ScriptedCalendar([batch(meeting("a", uid="kept@acme.com"))])
    ).ok
    # Alice left; her mailbox was removed without purge: the meeting stays, with no copy.
    with world.rt.engine.begin() as conn:
        from sqlalchemy import text

        conn.execute(text("DELETE FROM interactionsource WHERE mailbox_id = :m"), {"m": alice})
    relisted = Batch(records=[meeting("b", uid="bobs@acme.com")], bad=[], cursor={}, backfill_done=True, reset=True)
    assert world.sync(bob, connector_factory=lambda *a: ScriptedCalendar([relisted])).ok
    assert sorted(m[0] for m in _meetings(world)) == ["ical:bobs@acme.com", "ical:kept@acme.com"]


def test_invitations_in_mail_use_the_organisations_calendar_window(tmp_path):
    from types import SimpleNamespace

    from connectors.factory import build_connector
    from sync.engine import load_mailbox

    world = make_world(tmp_path)
    world.set_org(calendar_past_days=30, calendar_future_days=7)
    server = SimpleNamespace(host="imap.example.com", port=993, username="alice", password="secret")
    box = world.add_imap("alice@ourco.com", server)
    with world.rt.engine.connect() as conn:
        _, spec, _, _ = load_mailbox(conn, world.rt.box, box)
    assert spec.window == CalendarWindow(past_days=30, future_days=7) and spec.secret == "secret"
    assert "secret" not in repr(spec)
    assert build_connector(spec).calendar_window == CalendarWindow(30, 7)
    default = ConnectorSpec("imap", {"host": "imap.example.com", "port": 993, "username": "u"})
    assert build_connector(default).calendar_window == CalendarWindow(365, 180)
