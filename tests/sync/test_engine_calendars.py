"""Engine rules around calendar sources: a re-listed calendar drops meetings
deleted meanwhile, and reconnect advice is not replaced by password advice."""
from __future__ import annotations

from connectors.base import AuthError, Batch
from tests.sync.test_meetings import ScriptedCalendar, _calendar, _meetings, batch, meeting
from tests.world import make_world


def test_relisting_after_an_expired_cursor_drops_meetings_deleted_meanwhile(tmp_path):
    world = make_world(tmp_path)
    box = _calendar(world, "alice@ourco.com")
    script = [batch(meeting("a", uid="keep@acme.com"), meeting("b", uid="gone@acme.com"))]
    assert world.sync(box, connector_factory=lambda *a: ScriptedCalendar(script)).ok
    assert len(_meetings(world)) == 2
    # The sync state expired; "gone" was deleted while we could not see changes.
    relisted = Batch(records=[meeting("a", uid="keep@acme.com")], bad=[], cursor={"fresh": 1},
                     backfill_done=True, reset=True)
    report = world.sync(box, connector_factory=lambda *a: ScriptedCalendar([relisted]))
    assert report.ok, report.error
    assert [m[0] for m in _meetings(world)] == ["ical:keep@acme.com"]
    assert world.scalar("SELECT COUNT(*) FROM interactionsource") == 1
    assert world.scalar("SELECT COUNT(*) FROM participant p JOIN interaction i ON i.id = p.interaction_id "
                        "WHERE i.message_key = 'ical:gone@acme.com'") == 0


class Revoked(ScriptedCalendar):
    def list_folders(self):
        raise AuthError("the calendar sign-in was revoked: reconnect with `threadline calendar add-caldav`")


def test_reconnect_advice_is_kept_for_calendar_accounts(tmp_path):
    world = make_world(tmp_path)
    box = _calendar(world, "alice@ourco.com")
    report = world.sync(box, connector_factory=lambda *a: Revoked([]))
    assert not report.ok and report.error_kind == "auth"
    status, error = world.sql("SELECT status, last_error FROM mailbox WHERE id = :i", i=box)[0]
    assert status == "failed"
    assert "reconnect" in error and "set-password" not in error


def test_relisting_one_calendar_never_touches_meetings_kept_from_a_removed_mailbox(tmp_path):
    world = make_world(tmp_path)
    alice, bob = _calendar(world, "alice@ourco.com"), _calendar(world, "bob@ourco.com")
    assert world.sync(alice, connector_factory=lambda *a: ScriptedCalendar([batch(meeting("a", uid="kept@acme.com"))])).ok
    # Alice left; her mailbox was removed without purge: the meeting stays, with no copy.
    with world.rt.engine.begin() as conn:
        from sqlalchemy import text

        conn.execute(text("DELETE FROM interactionsource WHERE mailbox_id = :m"), {"m": alice})
    relisted = Batch(records=[meeting("b", uid="bobs@acme.com")], bad=[], cursor={}, backfill_done=True, reset=True)
    assert world.sync(bob, connector_factory=lambda *a: ScriptedCalendar([relisted])).ok
    assert sorted(m[0] for m in _meetings(world)) == ["ical:bobs@acme.com", "ical:kept@acme.com"]


def test_invitations_in_mail_use_the_organisations_calendar_window():
    from connectors.factory import build_connector

    window = {"past_days": 30, "future_days": 7}
    mailbox = {"kind": "imap", "config": {"host": "imap.example.com", "port": 993, "username": "u"},
               "window": window}
    assert build_connector(mailbox, "secret", want_snippet=False).calendar_window == window
