"""Reconciliation the product shows: per folder, the server's count of what the sync should
have read against the copies stored plus the messages skipped with a reason (plus copies an
admin took off the timeline); and the kept contact summaries against a recount. A mailbox whose
numbers do not add up is never shown healthy: not in the API, the console, the health table nor
/metrics. Real Dovecot, the real app, real Chromium; SQLite and PostgreSQL."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update

from app.api import create_app
from app.db import session, write_transaction
from app.services import calendars, orgs, reconcile
from sync import copies, stats
from tests import factories
from tests.cli import cli_env, run_cli
from tests.sync.test_folder_counts import admin
from tests.world import NOW, make_world, message, runtime_env

ALICE, BOB = "alice@ourco.com", "bob@ourco.com"


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request, tmp_path):
    url = request.getfixturevalue("postgres_migrated_url") if request.param == "postgresql" else None
    return make_world(tmp_path, url=url)


def api(world) -> TestClient:
    boss = world.add_user(f"boss{os.urandom(3).hex()}@ourco.com", "Boss", admin=True)
    with session(world.rt.engine) as s:
        token = factories.issue_token(s, s.get(orgs.User, boss))
    client = TestClient(create_app(world.rt), client=("127.0.0.1", 50000))
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def admin_output(world, *args: str) -> str:
    """What `threadline ...` prints on the world's database."""
    env = cli_env(world.rt.settings.data_dir, COLUMNS="300", THREADLINE_DATABASE_URL=world.rt.settings.database_url)
    proc = run_cli(args, env)
    return proc.stdout + proc.stderr


def synced(world, imap_user, deals: int, tag: str) -> int:
    """A mailbox of Alice's holding `deals` mails from Jane, imported."""
    for i in range(deals):
        imap_user.deliver(message("Jane <jane@acme.com>", ALICE, f"Deal {i}", msgid=f"{tag}-{i}@acme.com"))
    mid = world.add_imap(ALICE, imap_user)
    assert world.sync(mid).ok
    return mid


def folder(detail: dict, name: str = "INBOX") -> dict:
    return next(f for f in detail["folders"] if f["name"] == name)


def attention_gauge(client, org_id: int) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "threadline_mailboxes_needing_attention" and sample.labels["org"] == str(org_id):
                return sample.value
    raise AssertionError("no threadline_mailboxes_needing_attention sample")


def deliver_mixed(imap_user) -> None:
    """3 customer emails, 1 internal (skipped), 1 automated (skipped), 1 draft (never read),
    1 outside the 365-day window (never read), 1 unreadable (skipped as such)."""
    for i in (1, 2, 3):
        imap_user.deliver(message("Jane <jane@acme.com>", ALICE, f"Deal {i}", msgid=f"deal-{i}@acme.com"))
    imap_user.deliver(message(f"Bob <{BOB}>", ALICE, "Lunch", msgid="lunch@ourco.com"))
    imap_user.deliver(message("Robot <no-reply@shop.example>", ALICE, "Your order", msgid="order@shop.example"))
    imap_user.deliver(message(ALICE, "jane@acme.com", "Unsent", msgid="draft@ourco.com"), flags="\\Draft")
    old = NOW - timedelta(days=800)
    imap_user.deliver(
        message("Jane <jane@acme.com>", ALICE, "Ancient", msgid="old@acme.com", when=old), internaldate=old
    )
    imap_user.deliver(b"From: \r\nTo: \r\nDate: not a date\r\n\r\n")


def test_a_synced_mailbox_adds_up_per_folder_and_says_so_in_the_api(world, imap_user):
    deliver_mixed(imap_user)
    mid = world.add_imap(ALICE, imap_user)
    assert world.sync(mid).ok
    client = api(world)
    detail = client.get(f"/api/mailboxes/{mid}").json()
    inbox = folder(detail)
    stored, skipped = inbox["stored"], inbox["skipped"]
    assert (stored, skipped) == (3, 3) and detail["skipped"] == {"internal": 1, "bulk or automated": 1, "unreadable": 1}
    # 8 on the server: the draft and the message older than the window are not the sync's to read
    assert inbox["server_count"] == 6 == stored + skipped
    assert (inbox["difference"], inbox["reconciliation"]) == (0, "reconciled")
    assert (detail["reconciled"], detail["missing"], detail["attention"], detail["healthy"]) == (True, 0, None, True)

    # New mail, and an expunge: counted again at the next run, still adding up.
    imap_user.deliver(message("Jane <jane@acme.com>", ALICE, "Deal 4", msgid="deal-4@acme.com"))
    c = imap_user.connect()
    c.select_folder("INBOX")
    c.delete_messages(c.search(["HEADER", "Message-ID", "deal-1@acme.com"]))
    c.expunge()
    c.logout()
    assert world.sync(mid).ok
    inbox = folder(client.get(f"/api/mailboxes/{mid}").json())
    assert inbox["server_count"] == inbox["stored"] + inbox["skipped"] and inbox["reconciliation"] == "reconciled"
    assert client.get("/api/admin/mailboxes").json()[0]["health"] == "healthy"
    assert attention_gauge(client, world.org_id) == 0


def test_a_lost_copy_shows_the_mailbox_needing_attention_everywhere_until_it_is_read_again(world, imap_user):
    mid = synced(world, imap_user, 5, "lost")
    client = api(world)
    assert client.get(f"/api/mailboxes/{mid}").json()["healthy"] is True

    # A copy lost (as a batch that lost rows would leave it): the count moves with it.
    with write_transaction(world.rt.engine) as conn:
        S = copies.S
        gone = copies.delete(conn, S.c.mailbox_id == mid, S.c.remote_id.like("%/2"))
        copies.count_changed(conn, {fid: -n for fid, n in gone.items()})
    detail = client.get(f"/api/mailboxes/{mid}").json()
    inbox = folder(detail)
    assert (inbox["server_count"], inbox["stored"], inbox["difference"]) == (5, 4, 1)
    assert inbox["reconciliation"] == "missing"
    assert (detail["healthy"], detail["reconciled"], detail["missing"]) == (False, False, 1)
    assert detail["attention"] == "1 message on the server is not on the timeline"
    assert "re-sync" in detail["attention_fix"] and detail["fix"] == detail["attention_fix"]
    row = client.get("/api/admin/mailboxes").json()[0]
    assert (row["health"], row["healthy"], row["missing"]) == ("attention", False, 1)
    assert client.get(f"/api/admin/mailboxes/{mid}").json()["health"] == "attention"
    assert attention_gauge(client, world.org_id) == 1
    # An incremental run with nothing new does not paper over it ...
    assert world.sync(mid).ok
    assert client.get(f"/api/mailboxes/{mid}").json()["missing"] == 1
    # ... reading the mailbox again (the fix) brings the copy back.
    assert client.post(f"/api/admin/mailboxes/{mid}/resync").status_code == 200
    assert client.get(f"/api/mailboxes/{mid}").json()["attention"] is None  # re-reading: importing
    assert world.sync(mid).ok
    detail = client.get(f"/api/mailboxes/{mid}").json()
    assert (detail["healthy"], detail["missing"], folder(detail)["stored"]) == (True, 0, 5)
    assert attention_gauge(client, world.org_id) == 0


def test_a_copy_lost_without_its_folder_count_moving_still_shows_missing(world, imap_user):
    # Reconciliation counts the copies stored: a fault that lost a copy row and left the folder's
    # running count alone must not leave the mailbox "adding up".
    mid = synced(world, imap_user, 5, "uncounted")
    client = api(world)
    with write_transaction(world.rt.engine) as conn:
        copies.delete(conn, copies.S.c.mailbox_id == mid, copies.S.c.remote_id.like("%/2"))
    detail = client.get(f"/api/mailboxes/{mid}").json()
    inbox = folder(detail)
    assert (inbox["messages"], inbox["stored"], inbox["difference"], inbox["reconciliation"]) == (5, 4, 1, "missing")
    assert (detail["healthy"], detail["missing"]) == (False, 1)
    assert client.get("/api/admin/mailboxes").json()[0]["health"] == "attention"
    assert attention_gauge(client, world.org_id) == 1


def test_an_invitations_meeting_beside_its_email_is_not_counted_as_a_stored_message(world, imap_user):
    # An invitation is one message on the server and two copies here (its email, `uid`, and its
    # meeting, `uid#ics…`): counted as two, it hid a lost copy of another message.
    from tests.connectors.test_imip import intro_call

    imap_user.deliver(intro_call(ALICE))
    imap_user.deliver(message("Jane <jane@acme.com>", ALICE, "Deal", msgid="deal@acme.com"))
    mid = world.add_imap(ALICE, imap_user)
    assert world.sync(mid).ok
    assert world.scalar("SELECT count(*) FROM interactionsource WHERE remote_id LIKE '%#ics%'") == 1
    inbox = folder(api(world).get(f"/api/mailboxes/{mid}").json())
    assert (inbox["server_count"], inbox["stored"], inbox["reconciliation"]) == (2, 2, "reconciled")
    with write_transaction(world.rt.engine) as conn:  # the plain email's copy lost: missing, not hidden
        copies.delete(
            conn,
            copies.S.c.mailbox_id == mid,
            copies.S.c.remote_id.not_like("%#ics%"),
            copies.S.c.interaction_id == world.scalar("SELECT id FROM interaction WHERE message_key = 'deal@acme.com'"),
        )
    inbox = folder(api(world).get(f"/api/mailboxes/{mid}").json())
    assert (inbox["stored"], inbox["difference"], inbox["reconciliation"]) == (1, 1, "missing")


def test_an_invitations_skipped_occurrences_and_removed_meeting_count_for_no_message_of_the_server(world, imap_user):
    """A colleague's weekly invitation is one message on the server; its occurrences, skipped as
    internal meetings, were counted as skipped too (dozens for one message), and a rule taking the
    email off counted its meeting's copy as a second removed message: either hid as many lost
    copies of other mail. The rows stay, listed with their reasons; the counts are of messages."""
    from tests.connectors.test_ical import event, stamp, vcalendar
    from tests.connectors.test_imip import intro_call, invitation

    soon = NOW + timedelta(days=2)
    weekly = event(
        "weekly@ourco.com",
        stamp(soon),
        end=stamp(soon + timedelta(minutes=30)),
        organizer=BOB,
        summary="Team weekly",
        attendees=((ALICE, "NEEDS-ACTION"),),
        extra="RRULE:FREQ=WEEKLY;COUNT=20",
    )
    imap_user.deliver(invitation(vcalendar(weekly, method="REQUEST"), msgid="weekly@ourco.com", frm=f"Bob <{BOB}>"))
    imap_user.deliver(intro_call(ALICE, msgid="call@acme.com"))
    imap_user.deliver(message("Jane <jane@acme.com>", ALICE, "Deal", msgid="deal@acme.com"))
    mid = world.add_imap(ALICE, imap_user)
    assert world.sync(mid).ok
    rows = "SELECT count(*) FROM skippeditem WHERE mailbox_id = :m AND reason = 'internal meeting'"
    assert world.scalar(rows, m=mid) == 20  # every occurrence listed with why
    client = api(world)
    inbox = folder(client.get(f"/api/mailboxes/{mid}").json())
    assert (inbox["server_count"], inbox["stored"], inbox["skipped"]) == (3, 2, 1)  # Bob's email: internal
    assert inbox["reconciliation"] == "reconciled"

    admin(world, "rule", "add", "acme.com")  # Carla's invitation and its meeting, Jane's deal
    inbox = folder(client.get(f"/api/mailboxes/{mid}").json())
    assert (inbox["stored"], inbox["skipped"], inbox["removed"], inbox["difference"]) == (0, 1, 2, 0)
    assert inbox["reconciliation"] == "reconciled"


def test_more_kept_than_the_server_holds_is_shown_as_such_never_as_adding_up(world, imap_user):
    # A count lower than the copies (mail read or deleted since it was taken): no alarm, but
    # the numbers do not add up and the folder says so.
    mid = synced(world, imap_user, 5, "kept")
    client = api(world)
    fs = reconcile.FS
    inbox_of = (fs.c.mailbox_id == mid) & (fs.c.name == "INBOX")
    with write_transaction(world.rt.engine) as conn:  # two of the five deleted on the server, as it would count
        cursor = conn.execute(select(fs.c.cursor).where(inbox_of)).scalar_one()
        conn.execute(update(fs).where(inbox_of).values(cursor={**cursor, "server_count": 3}))
    detail = client.get(f"/api/mailboxes/{mid}").json()
    inbox = folder(detail)
    assert (inbox["server_count"], inbox["stored"], inbox["difference"]) == (3, 5, -2)
    assert inbox["reconciliation"] == "kept more"
    assert (detail["reconciled"], detail["missing"], detail["kept_more"], detail["healthy"]) == (True, 0, 2, True)


def test_rules_and_erasures_taking_mail_off_the_timeline_are_no_false_alarm(world, imap_user):
    imap_user.deliver(message("Jane <jane@acme.com>", ALICE, "Keep", msgid="keep@acme.com"))
    imap_user.deliver(message("Erin <erin@third.com>", ALICE, "Erase", msgid="erase@third.com"))
    imap_user.deliver(message("Pat <pat@ruled.com>", ALICE, "Ruled", msgid="ruled@ruled.com"))
    mid = world.add_imap(ALICE, imap_user)
    assert world.sync(mid).ok
    admin(world, "rule", "add", "ruled.com")
    admin(world, "privacy", "erase", "erin@third.com", "--yes")
    client = api(world)
    detail = client.get(f"/api/mailboxes/{mid}").json()
    inbox = folder(detail)
    assert (inbox["server_count"], inbox["stored"], inbox["removed"], inbox["difference"]) == (3, 1, 2, 0)
    assert detail["healthy"] is True
    assert world.sync(mid).ok  # the server still holds them: still adds up
    assert client.get(f"/api/mailboxes/{mid}").json()["healthy"] is True


def test_a_mailbox_mid_import_is_importing_not_a_mismatch(world, imap_user):
    imap_user.deliver_many(
        [
            (message(f"c{i % 9}@cust{i % 4}.com", ALICE, f"S{i}", msgid=f"mid{i}@cust"), "INBOX", None)
            for i in range(300)
        ]
    )
    mid = world.add_imap(ALICE, imap_user)
    world.set_batch_size(mid, 10)
    env = dict(os.environ, **runtime_env(world.rt.settings.data_dir), THREADLINE_IDLE="0")
    env["THREADLINE_DATABASE_URL"] = world.rt.settings.database_url
    world.kill_cli_sync_midway(mid, env)
    client = api(world)
    detail = client.get(f"/api/mailboxes/{mid}").json()
    inbox = folder(detail)
    assert 0 < inbox["stored"] < 300 and inbox["reconciliation"] == "importing"
    assert (detail["reconciled"], detail["missing"], detail["attention"]) == (True, 0, None)
    assert client.get("/api/admin/mailboxes").json()[0]["health"] == "importing"
    assert attention_gauge(client, world.org_id) == 0


def test_summaries_that_disagree_with_a_recount_are_flagged_and_an_audited_repair_clears_them(world, imap_user):
    mid = synced(world, imap_user, 3, "sum")
    client = api(world)
    assert client.get("/api/admin/summaries").json()["checked_at"] is None  # never checked
    clean = client.post("/api/admin/summaries/check").json()
    assert (clean["contacts"], clean["disagreeing"]) == (1, 0)

    jane = world.scalar("SELECT contact_id FROM contactaddress WHERE address = 'jane@acme.com'")
    with write_transaction(world.rt.engine) as conn:
        conn.exec_driver_sql(f"UPDATE contactstats SET emails_in = emails_in + 5 WHERE contact_id = {jane}")
    # Not recounted per page view: the stored check still says all agree ...
    assert client.get(f"/api/mailboxes/{mid}").json()["healthy"] is True
    # ... nor by the scheduler's job while the last check is recent ...
    assert stats.check_due(world.rt.engine, 3600) == []
    # ... until it is due (every few hours), or `threadline doctor` recounts.
    assert stats.check_due(world.rt.engine, 0)[0]["disagreeing"] == 1
    found = client.get("/api/admin/summaries").json()
    assert (found["disagreeing"], found["contact_ids"], found["mailbox_ids"]) == (1, [jane], [mid])
    detail = client.get(f"/api/mailboxes/{mid}").json()
    assert detail["healthy"] is False and detail["reconciled"] is True
    assert detail["attention"] == "the summaries of 1 contact disagree with a recount of the timeline"
    assert "Recompute summaries" in detail["attention_fix"]
    assert client.get("/api/admin/mailboxes").json()[0]["health"] == "attention"
    assert attention_gauge(client, world.org_id) == 1

    repaired = client.post("/api/admin/summaries/repair").json()
    assert (repaired["disagreeing"], repaired["mailbox_ids"]) == (0, [])
    assert world.scalar(f"SELECT emails_in FROM contactstats WHERE contact_id = {jane}") == 3
    assert world.scalar("SELECT count(*) FROM auditevent WHERE action = 'summaries.repair'") == 1
    assert client.get(f"/api/mailboxes/{mid}").json()["healthy"] is True
    assert attention_gauge(client, world.org_id) == 0


def test_an_extra_colleague_row_is_a_disagreement_but_a_meeting_now_past_is_not(world):
    from tests.sync.test_meetings import _calendar, _run, batch, meeting

    box = _calendar(world, ALICE)
    _run(world, box, batch(meeting("e1")))  # a meeting that has taken place
    with write_transaction(world.rt.engine) as conn:
        assert stats.check(conn, world.org_id)[1] == []
    carol = world.scalar("SELECT contact_id FROM contactaddress WHERE address = 'carol@acme.com'")
    cleo = world.add_user("cleo@ourco.com", "Cleo")  # not in the meeting
    assert (
        world.scalar(
            f"SELECT interactions FROM contactcolleague WHERE contact_id = {carol} AND user_id != {cleo} LIMIT 1"
        )
        == 1
    )
    with write_transaction(world.rt.engine) as conn:
        conn.exec_driver_sql(
            "INSERT INTO contactcolleague (contact_id, user_id, org_id, interactions, last_at) "
            f"VALUES ({carol}, {cleo}, {world.org_id}, 1, NULL)"
        )
        assert stats.check(conn, world.org_id)[1] == [carol]
        conn.exec_driver_sql(f"DELETE FROM contactcolleague WHERE user_id = {cleo}")
        # Kept while the meeting was still ahead (0), recounted now that it took place (1): within bounds.
        conn.exec_driver_sql(f"UPDATE contactcolleague SET interactions = 0 WHERE contact_id = {carol}")
        assert stats.check(conn, world.org_id)[1] == []
        conn.exec_driver_sql(f"UPDATE contactcolleague SET interactions = 2 WHERE contact_id = {carol}")
        assert stats.check(conn, world.org_id)[1] == [carol]
    with session(world.rt.engine) as s:
        assert calendars.describe_all(s, world.org_id)[0]["healthy"] is True  # not checked yet
    assert stats.record_check(world.rt.engine, world.org_id)["mailbox_ids"] == [box]
    with session(world.rt.engine) as s:
        assert calendars.describe_all(s, world.org_id)[0]["healthy"] is False


def test_doctor_recounts_prints_and_repairs(world, imap_user):
    synced(world, imap_user, 1, "doc")
    with write_transaction(world.rt.engine) as conn:
        conn.exec_driver_sql("UPDATE contactstats SET emails_out = 7")
    with pytest.raises(AssertionError):  # exits 1 while something needs attention
        admin(world, "doctor")
    with session(world.rt.engine) as s:
        assert reconcile.summary_check(s.connection(), world.org_id)["disagreeing"] == 1
    listed = admin_output(world, "mailbox", "list")
    assert "needs attention: the summaries of 1 contact disagree" in listed and "threadline doctor --repair" in listed
    admin(world, "doctor", "--repair")
    with session(world.rt.engine) as s:
        assert reconcile.summary_check(s.connection(), world.org_id)["disagreeing"] == 0


def test_the_console_shows_a_mailbox_that_does_not_add_up_and_repairs_its_summaries(
    tmp_path, imap_user, live_app, page
):
    w = make_world(tmp_path)
    boss = w.add_user("boss@ourco.com", "Boss", admin=True)
    with session(w.rt.engine) as s:
        token = factories.issue_token(s, s.get(orgs.User, boss))
    mid = synced(w, imap_user, 4, "con")
    base = live_app(w)
    page.goto(base + "/admin")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/admin")
    row = page.locator(f"tr.mailbox[data-mailbox='{mid}']")
    assert row.locator(".badge").inner_text() == "healthy"
    assert "Not recounted yet" in page.inner_text("#summaries")

    with write_transaction(w.rt.engine) as conn:  # a copy lost, and a contact's summary wrong
        gone = copies.delete(conn, copies.S.c.mailbox_id == mid, copies.S.c.remote_id.like("%/3"))
        copies.count_changed(conn, {fid: -n for fid, n in gone.items()})
        conn.exec_driver_sql("UPDATE contactstats SET emails_in = 40")
    page.click("#summaries-check")
    page.wait_for_url(base + "/admin?ok=summaries_check")
    assert row.locator(".badge").inner_text() == "needs attention"
    cell = row.locator(".last-error").inner_text()
    assert "1 message on the server is not on the timeline" in cell
    assert "the summaries of 1 contact disagree with a recount" in cell and "Fix:" in cell
    assert "1 of 1 contacts disagree" in page.inner_text("#summaries")

    page.click(f"tr.mailbox[data-mailbox='{mid}'] a")
    assert page.inner_text("#health") == "needs attention"
    assert "no: 1 message on the server not on the timeline" in page.inner_text("#reconciled")
    inbox = page.locator("#folders tr.folder").first
    assert inbox.locator(".server-count").inner_text() == "4"
    assert inbox.locator(".reconciliation").inner_text() == "1 missing"
    assert "re-sync" in page.inner_text("#fix")

    page.goto(base + "/admin")
    page.click("#summaries-repair")
    page.wait_for_url(base + "/admin?ok=summaries_repair")
    assert "The summaries of all 1 contacts agree" in page.inner_text("#summaries")
    assert "summaries of" not in row.locator(".last-error").inner_text()
    assert w.scalar("SELECT emails_in FROM contactstats") == 4
    assert w.scalar("SELECT count(*) FROM auditevent WHERE action = 'summaries.repair' AND actor_id = :b", b=boss) == 1
    # the lost copy is still missing until the mailbox is read again
    assert row.locator(".badge").inner_text() == "needs attention"


def test_the_scheduler_recounts_the_summaries_every_few_hours_not_at_start(tmp_path):
    from sync.scheduler import SUMMARY_CHECK_SECONDS, SyncService

    w = make_world(tmp_path)
    service = SyncService(w.rt, idle=False)
    service.start()
    try:
        job = service.scheduler.get_job("summary-check")
        assert job.trigger.interval.total_seconds() == SUMMARY_CHECK_SECONDS
        assert (job.next_run_time - datetime.now(timezone.utc)).total_seconds() > 60
    finally:
        service.stop()
