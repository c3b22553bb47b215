"""Reconciliation for every source, not only IMAP: per folder, the server's count of what
the sync is meant to read (Graph's $count on the same filter, a calendar's listing in the
window) against the copies stored plus the items skipped with a reason. A clean sync adds
up, a copy that was not stored shows `missing` and the mailbox is not healthy, a skipped
item keeps the folder reconciled, and the count is taken again at most hourly, or at once
after something left the folder. The fake Graph and Google servers, SQLite and PostgreSQL."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from app.api import create_app
from app.db import session, write_transaction
from app.models import FolderState
from app.services import orgs
from sync import copies
from tests import factories
from tests.sync.test_graph_sync import add_tenant_mailbox
from tests.world import NOW, make_world

ALICE, BOB = "alice@ourco.com", "bob@ourco.com"
CARLA = ("Carla Buyer", "carla@acme.com")
FS = FolderState.__table__


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


def folder(detail: dict, name: str) -> dict:
    return next(f for f in detail["folders"] if f["name"] == name)


def count_requests(graph) -> int:
    return sum(1 for _, target in graph.requests if "$count=true" in target)


def lose_a_copy(world, mailbox_id: int, remote_id: str) -> None:
    """A copy gone as a batch that lost rows would leave it: the folder's count moves with it."""
    with write_transaction(world.rt.engine) as conn:
        gone = copies.delete(conn, copies.S.c.mailbox_id == mailbox_id, copies.S.c.remote_id == remote_id)
        copies.count_changed(conn, {fid: -n for fid, n in gone.items()})


def count_taken_long_ago(world, mailbox_id: int, name: str) -> None:
    """As if the folder's last count were two hours old."""
    with write_transaction(world.rt.engine) as conn:
        cursor = conn.execute(select(FS.c.cursor).where(FS.c.mailbox_id == mailbox_id, FS.c.name == name)).scalar_one()
        when = (datetime.now(timezone.utc) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        conn.execute(
            update(FS)
            .where(FS.c.mailbox_id == mailbox_id, FS.c.name == name)
            .values(cursor={**cursor, "counted_at": when})
        )


def test_a_graph_mail_folder_is_counted_with_the_syncs_own_filter_and_adds_up(world, graph):
    mid = add_tenant_mailbox(world, graph)
    kept = [
        graph.add_message(ALICE, internet_message_id=f"<deal-{i}@acme.com>", sender=CARLA, to=[("Alice", ALICE)])
        for i in range(3)
    ]
    lunch = graph.add_message(
        ALICE, internet_message_id="<lunch@ourco.com>", sender=("Bob", BOB), to=[("Alice", ALICE)]
    )
    graph.add_message(ALICE, internet_message_id="<draft@ourco.com>", sender=("Alice", ALICE), extra={"isDraft": True})
    old = NOW - timedelta(days=800)
    graph.add_message(ALICE, internet_message_id="<old@acme.com>", sender=CARLA, sent=old, received=old)
    assert world.sync(mid).ok
    client = api(world)
    detail = client.get(f"/api/mailboxes/{mid}").json()
    inbox = folder(detail, "Inbox")
    # 6 on the server: the draft and the mail older than the window are not the sync's to read
    assert (inbox["server_count"], inbox["stored"], inbox["skipped"]) == (4, 3, 1)
    assert (inbox["difference"], inbox["reconciliation"]) == (0, "reconciled")
    assert (detail["reconciled"], detail["missing"], detail["healthy"]) == (True, 0, True)
    cursor = inbox["cursor"]
    assert cursor["since"] and cursor["counted_at"] and cursor["delta_link"]
    asked = unquote(next(t for _, t in graph.requests if "$count=true" in t))
    # the skipped one keeps the folder reconciled, and shows with its reason
    (item,) = detail["skipped_items"]
    assert (item["folder"], item["remote_id"], item["reason"]) == ("Inbox", lunch, "internal")
    assert item["skipped_at"]
    assert f"receivedDateTime ge {cursor['since']}" in asked and "isDraft eq false" in asked

    # The skipped one changed on the server (read): listed again by the next delta round, counted once.
    graph.update_message(ALICE, lunch, isRead=True)
    assert world.sync(mid).ok
    detail = client.get(f"/api/mailboxes/{mid}").json()
    assert (folder(detail, "Inbox")["skipped"], detail["skipped"], len(detail["skipped_items"])) == (
        1,
        {"internal": 1},
        1,
    )

    # A copy that was not stored: missing, and the mailbox is not healthy.
    lose_a_copy(world, mid, kept[1])
    detail = client.get(f"/api/mailboxes/{mid}").json()
    inbox = folder(detail, "Inbox")
    assert (inbox["difference"], inbox["reconciliation"]) == (1, "missing")
    assert (detail["healthy"], detail["missing"]) == (False, 1)
    assert detail["attention"] == "1 message on the server is not on the timeline"


def test_a_graph_count_is_taken_again_at_most_hourly_and_at_once_after_a_removal(world, graph):
    mid = add_tenant_mailbox(world, graph)
    first = graph.add_message(ALICE, internet_message_id="<a@acme.com>", sender=CARLA, to=[("Alice", ALICE)])
    assert world.sync(mid).ok
    client = api(world)
    assert folder(client.get(f"/api/mailboxes/{mid}").json(), "Inbox")["server_count"] == 1
    counts = count_requests(graph)

    # New mail is read, but not counted at every run: more stored than counted shows, and is no alarm.
    graph.add_message(ALICE, internet_message_id="<b@acme.com>", sender=CARLA, to=[("Alice", ALICE)])
    assert world.sync(mid).ok
    assert count_requests(graph) == counts
    inbox = folder(client.get(f"/api/mailboxes/{mid}").json(), "Inbox")
    assert (inbox["server_count"], inbox["stored"], inbox["reconciliation"]) == (1, 2, "kept more")
    assert client.get(f"/api/mailboxes/{mid}").json()["healthy"] is True

    # A deletion on the server: the copy goes and the folder is counted again at once.
    graph.delete_message(ALICE, first)
    assert world.sync(mid).ok
    assert count_requests(graph) == counts + 1
    inbox = folder(client.get(f"/api/mailboxes/{mid}").json(), "Inbox")
    assert (inbox["server_count"], inbox["stored"], inbox["reconciliation"]) == (1, 1, "reconciled")

    # An hour after the last count, the next run counts again.
    graph.add_message(ALICE, internet_message_id="<c@acme.com>", sender=CARLA, to=[("Alice", ALICE)])
    count_taken_long_ago(world, mid, "Inbox")
    assert world.sync(mid).ok
    assert count_requests(graph) == counts + 2
    inbox = folder(client.get(f"/api/mailboxes/{mid}").json(), "Inbox")
    assert (inbox["server_count"], inbox["stored"], inbox["reconciliation"]) == (2, 2, "reconciled")


def test_a_graph_calendar_counts_the_meetings_in_its_window_and_recounts_after_a_deletion(world, graph):
    mid = add_tenant_mailbox(world, graph)
    soon = NOW + timedelta(days=2)
    carla = [(*CARLA, "required", "accepted")]
    demo = graph.add_event(ALICE, subject="Demo", start=soon, organizer=("Alice", ALICE), attendees=carla)
    graph.add_event(ALICE, subject="Dentist", start=soon + timedelta(hours=3), organizer=("Alice", ALICE))
    graph.add_event(
        ALICE, subject="1:1", start=soon, organizer=("Alice", ALICE), attendees=[("Bob", BOB, "required", "none")]
    )
    graph.add_series(ALICE, subject="Weekly", starts=[soon + timedelta(days=7 * w) for w in range(3)], attendees=carla)
    assert world.sync(mid).ok
    client = api(world)
    detail = client.get(f"/api/mailboxes/{mid}").json()
    calendar = folder(detail, "calendar:Calendar")
    # the dentist is nobody else's business: not counted; the 1:1 is skipped as internal
    assert (calendar["server_count"], calendar["stored"], calendar["skipped"]) == (5, 4, 1)
    assert calendar["reconciliation"] == "reconciled" and detail["healthy"] is True

    counts = count_requests(graph)
    graph.delete_event(ALICE, demo)
    assert world.sync(mid).ok
    assert count_requests(graph) > counts  # counted again at once after the removal
    calendar = folder(client.get(f"/api/mailboxes/{mid}").json(), "calendar:Calendar")
    assert (calendar["server_count"], calendar["stored"], calendar["reconciliation"]) == (4, 3, "reconciled")

    lose_a_copy(world, mid, world.scalar("SELECT remote_id FROM interactionsource ORDER BY id DESC LIMIT 1"))
    detail = client.get(f"/api/mailboxes/{mid}").json()
    assert folder(detail, "calendar:Calendar")["reconciliation"] == "missing"
    assert (detail["healthy"], detail["missing"]) == (False, 1)


def test_a_caldav_calendar_counts_the_occurrences_it_read_and_a_lost_copy_is_missing(world, caldav_user):
    from tests.connectors.test_ical import event, stamp, vcalendar
    from tests.sync.test_calendar_sync import SOON, add_caldav

    carla = (("carla@acme.com", "ACCEPTED"),)
    caldav_user.put("demo.ics", vcalendar(event("demo@ourco.com", stamp(SOON), summary="Demo", attendees=carla)))
    caldav_user.put(
        "weekly.ics",
        vcalendar(event("weekly@ourco.com", stamp(SOON), attendees=carla, extra="RRULE:FREQ=WEEKLY;COUNT=3")),
    )
    caldav_user.put("int.ics", vcalendar(event("int@ourco.com", stamp(SOON), attendees=(("bob@ourco.com", "X"),))))
    caldav_user.put("own.ics", vcalendar(event("own@ourco.com", stamp(SOON), attendees=())))
    mid = add_caldav(world, ALICE, caldav_user)
    assert world.sync(mid).ok
    client = api(world)
    detail = client.get(f"/api/mailboxes/{mid}").json()
    (calendar,) = detail["folders"]
    assert (calendar["server_count"], calendar["stored"], calendar["skipped"]) == (5, 4, 1)
    assert [(i["remote_id"], i["reason"]) for i in detail["skipped_items"]] == [("int.ics", "internal meeting")]
    assert calendar["reconciliation"] == "reconciled" and detail["healthy"] is True

    caldav_user.delete("demo.ics")
    assert world.sync(mid).ok
    (calendar,) = client.get(f"/api/mailboxes/{mid}").json()["folders"]
    assert (calendar["server_count"], calendar["stored"], calendar["reconciliation"]) == (4, 3, "reconciled")

    lose_a_copy(world, mid, world.scalar("SELECT remote_id FROM interactionsource ORDER BY id DESC LIMIT 1"))
    detail = client.get(f"/api/mailboxes/{mid}").json()
    assert detail["folders"][0]["reconciliation"] == "missing" and detail["healthy"] is False


def test_a_meeting_that_gains_or_loses_its_customers_is_counted_once_as_a_clean_sync_would(world, caldav_user):
    """Skipped as internal, then a customer invited: stored, and skipped no more. Before, its
    skipped row and count stayed, so the folder showed one more kept than the server holds.
    The customer taken off again: skipped, and the meeting leaves the timeline."""
    from tests.connectors.test_ical import event, stamp, vcalendar
    from tests.sync.test_calendar_sync import SOON, add_caldav

    bob, carla = ("bob@ourco.com", "ACCEPTED"), ("carla@acme.com", "ACCEPTED")

    def plan(sequence: int, *attendees) -> str:
        return vcalendar(event("plan@ourco.com", stamp(SOON), summary="Plan", sequence=sequence, attendees=attendees))

    caldav_user.put("plan.ics", plan(0, bob))
    caldav_user.put("demo.ics", vcalendar(event("demo@ourco.com", stamp(SOON), summary="Demo", attendees=(carla,))))
    mid = add_caldav(world, ALICE, caldav_user)
    assert world.sync(mid).ok
    client = api(world)

    def calendar() -> tuple:
        detail = client.get(f"/api/mailboxes/{mid}").json()
        (cal,) = detail["folders"]
        skipped = sorted((i["remote_id"], i["reason"]) for i in detail["skipped_items"])
        return cal["server_count"], cal["stored"], cal["skipped"], cal["reconciliation"], skipped

    assert calendar() == (2, 1, 1, "reconciled", [("plan.ics", "internal meeting")])
    meetings = "SELECT subject FROM interaction WHERE kind = 'meeting' ORDER BY subject"

    caldav_user.put("plan.ics", plan(1, bob, carla))
    assert world.sync(mid).ok
    assert calendar() == (2, 2, 0, "reconciled", [])
    assert [r[0] for r in world.sql(meetings)] == ["Demo", "Plan"]

    caldav_user.put("plan.ics", plan(2, bob))
    assert world.sync(mid).ok
    assert calendar() == (2, 1, 1, "reconciled", [("plan.ics", "internal meeting")])
    assert [r[0] for r in world.sql(meetings)] == ["Demo"]


def test_a_google_calendar_counts_its_listed_meetings_and_recounts_after_a_cancellation(world, google, dovecot_gmail):
    from connectors.gcal import CALENDAR_FOLDER
    from tests.sync.test_gcal_sync import connect

    boxes = connect(world, google, dovecot_gmail)
    try:
        soon = NOW.replace(minute=0, second=0) + timedelta(days=2)
        cal = google.calendar
        cal.add_event([ALICE], subject="Demo", start=soon, organizer=ALICE, attendees=[CARLA[1]])
        cal.add_event([ALICE], subject="Dentist", start=soon + timedelta(hours=3), organizer=ALICE, attendees=[])
        cal.add_event([ALICE], subject="1:1", start=soon, organizer=ALICE, attendees=[BOB])
        starts = [soon + timedelta(days=7 * w) for w in range(3)]
        sid = cal.add_series([ALICE], subject="Weekly", starts=starts, organizer=CARLA[1], attendees=[ALICE])
        assert world.sync(boxes[ALICE]).ok
        client = api(world)
        detail = client.get(f"/api/mailboxes/{boxes[ALICE]}").json()
        calendar = folder(detail, CALENDAR_FOLDER)
        # the dentist has no guests: not a meeting, not counted; the 1:1 is skipped as internal
        assert (calendar["server_count"], calendar["stored"], calendar["skipped"]) == (5, 4, 1)
        assert calendar["reconciliation"] == "reconciled" and detail["healthy"] is True
        assert "listed" not in calendar["cursor"] and calendar["cursor"]["counted_at"]

        cal.cancel_occurrence(sid, starts[1])
        assert world.sync(boxes[ALICE]).ok  # a removal: listed again and counted at once
        calendar = folder(client.get(f"/api/mailboxes/{boxes[ALICE]}").json(), CALENDAR_FOLDER)
        assert (calendar["server_count"], calendar["stored"], calendar["reconciliation"]) == (4, 3, "reconciled")

        lose_a_copy(world, boxes[ALICE], f"{sid}_" + starts[0].strftime("%Y%m%dT%H%M%SZ"))
        detail = client.get(f"/api/mailboxes/{boxes[ALICE]}").json()
        assert folder(detail, CALENDAR_FOLDER)["reconciliation"] == "missing" and detail["healthy"] is False
    finally:
        for rep in (ALICE, BOB):
            dovecot_gmail.remove_user(rep)


def test_an_imap_folder_is_counted_again_at_most_hourly_and_at_once_after_an_expunge(world, imap_user):
    from tests.world import message

    for i in range(3):
        imap_user.deliver(message("Jane <jane@acme.com>", ALICE, f"Deal {i}", msgid=f"deal-{i}@acme.com"))
    mid = world.add_imap(ALICE, imap_user)
    assert world.sync(mid).ok
    client = api(world)
    inbox = folder(client.get(f"/api/mailboxes/{mid}").json(), "INBOX")
    assert (inbox["server_count"], inbox["stored"], inbox["reconciliation"]) == (3, 3, "reconciled")
    counted_at = inbox["cursor"]["counted_at"]

    # New mail is read, not counted: the copies outnumbering the count show as such, and are no alarm.
    imap_user.deliver(message("Jane <jane@acme.com>", ALICE, "Deal 3", msgid="deal-3@acme.com"))
    assert world.sync(mid).ok
    inbox = folder(client.get(f"/api/mailboxes/{mid}").json(), "INBOX")
    assert (inbox["server_count"], inbox["stored"], inbox["reconciliation"]) == (3, 4, "kept more")
    assert client.get(f"/api/mailboxes/{mid}").json()["healthy"] is True
    assert inbox["cursor"]["counted_at"] == counted_at

    # An expunge: the copy goes and the folder is counted again at once.
    c = imap_user.connect()
    c.select_folder("INBOX")
    c.delete_messages(c.search(["HEADER", "Message-ID", "deal-0@acme.com"]))
    c.expunge()
    c.logout()
    assert world.sync(mid).ok
    inbox = folder(client.get(f"/api/mailboxes/{mid}").json(), "INBOX")
    assert (inbox["server_count"], inbox["stored"], inbox["reconciliation"]) == (3, 3, "reconciled")

    # An hour after the last count, the next run that finds the folder changed counts again.
    imap_user.deliver(message("Jane <jane@acme.com>", ALICE, "Deal 4", msgid="deal-4@acme.com"))
    count_taken_long_ago(world, mid, "INBOX")
    assert world.sync(mid).ok
    inbox = folder(client.get(f"/api/mailboxes/{mid}").json(), "INBOX")
    assert (inbox["server_count"], inbox["stored"], inbox["reconciliation"]) == (4, 4, "reconciled")


@pytest.mark.parametrize("batch_size", [2, 10])
def test_every_skipped_item_is_kept_with_its_reason_and_goes_with_a_re_read(world, imap_user, batch_size):
    from tests.world import message

    for i in range(5):
        imap_user.deliver(message(f"Bob <{BOB}>", ALICE, f"Lunch {i}", msgid=f"lunch-{i}@ourco.com"))
    imap_user.deliver(message("Jane <jane@acme.com>", ALICE, "Deal", msgid="deal@acme.com"))
    mid = world.add_imap(ALICE, imap_user)
    world.set_batch_size(mid, batch_size)
    assert world.sync(mid).ok
    client = api(world)
    detail = client.get(f"/api/mailboxes/{mid}").json()
    inbox = folder(detail, "INBOX")
    assert (inbox["server_count"], inbox["stored"], inbox["skipped"], inbox["reconciliation"]) == (
        6,
        1,
        5,
        "reconciled",
    )
    items = detail["skipped_items"]
    assert len(items) == 5 and {i["reason"] for i in items} == {"internal"}
    assert world.scalar("SELECT count(*) FROM skippeditem") == 5

    assert client.post(f"/api/admin/mailboxes/{mid}/resync").status_code == 200
    assert client.get(f"/api/mailboxes/{mid}").json()["skipped_items"] == []
    assert world.sync(mid).ok
    detail = client.get(f"/api/mailboxes/{mid}").json()
    assert len(detail["skipped_items"]) == 5 and folder(detail, "INBOX")["skipped"] == 5


def test_the_console_mailbox_page_shows_what_was_skipped_and_why(tmp_path, imap_user, live_app, page):
    from tests.world import message

    w = make_world(tmp_path)
    boss = w.add_user("boss@ourco.com", "Boss", admin=True)
    with session(w.rt.engine) as s:
        token = factories.issue_token(s, s.get(orgs.User, boss))
    imap_user.deliver(message("Jane <jane@acme.com>", ALICE, "Deal", msgid="deal@acme.com"))
    imap_user.deliver(message(f"Bob <{BOB}>", ALICE, "Lunch", msgid="lunch@ourco.com"))
    mid = w.add_imap(ALICE, imap_user)
    assert w.sync(mid).ok
    base = live_app(w)
    page.goto(base + "/admin")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/admin")
    page.goto(f"{base}/admin/mailboxes/{mid}")
    assert page.inner_text("#health") == "healthy"
    inbox = page.locator("#folders tr.folder").first
    assert inbox.locator(".server-count").inner_text() == "2"
    assert inbox.locator(".reconciliation").inner_text() == "adds up"
    rows = page.locator("#skipped-items tr.skipped-item")
    assert rows.count() == 1
    assert rows.first.locator(".reason").inner_text() == "internal"
    assert "INBOX" in rows.first.inner_text()


def test_the_demo_companys_mailboxes_and_calendars_reconcile_after_their_first_sync(tmp_path, monkeypatch):
    from app.runtime import open_runtime
    from app.services import demo, reconcile
    from app.settings import load_settings
    from tests.world import runtime_env

    monkeypatch.setattr(demo, "DEMO_MESSAGES", 600)
    rt = open_runtime(load_settings(runtime_env(tmp_path, THREADLINE_IDLE="0")))
    demo.seed_demo(rt)
    with session(rt.engine) as s:
        conn = s.connection()
        boxes = list(conn.exec_driver_sql("SELECT id FROM mailbox").scalars())
        folders = [f for fs in reconcile.folders_of(conn, boxes).values() for f in fs]
    numbers = [reconcile.folder_numbers(f) for f in folders]
    assert numbers and {n["reconciliation"] for n in numbers} == {"reconciled"}, numbers
    assert all(n["difference"] == 0 for n in numbers), numbers
