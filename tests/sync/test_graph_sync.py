"""Microsoft 365 mailboxes end to end: services add them, sync.engine syncs them
from the fake Graph into a real database, push notifications make them due."""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from app.models.base import utcnow
from app.services import m365
from app.services.actor import Actor
from sync import graph_push
from tests.world import NOW, json_value, make_world, message

ALICE, BOB = "alice@ourco.com", "bob@ourco.com"
CARLA = ("Carla Buyer", "carla@acme.com")


@pytest.fixture
def world(tmp_path):
    return make_world(tmp_path)


def add_tenant(world, graph, **kw):
    client_id, secret = graph.register_app()
    tenant = m365.add_tenant(
        world.rt,
        Actor.operator(world.org_id),
        tenant_id=graph.tenant,
        client_id=client_id,
        secret=secret,
        authority=graph.authority,
        graph_url=graph.graph_url,
        **kw,
    )
    return tenant["id"]


def add_tenant_mailbox(world, graph, owner=ALICE, tenant_id=None):
    graph.mailbox(owner)
    tenant_id = tenant_id or add_tenant(world, graph)
    return m365.add_tenant_mailboxes(world.rt, Actor.operator(world.org_id), tenant=str(tenant_id), owner=owner)[0][
        "id"
    ]


def add_delegated_mailbox(world, graph, owner=ALICE):
    graph.mailbox(owner)
    graph.device_user = owner
    client_id = graph.register_public_client()
    username, cache = m365.device_sign_in(client_id, graph.tenant, lambda _: None, authority=graph.authority)
    return m365.add_delegated_mailbox(
        world.rt,
        Actor.operator(world.org_id),
        owner=owner,
        client_id=client_id,
        tenant_id=graph.tenant,
        username=username,
        token_cache=cache,
        authority=graph.authority,
        graph_url=graph.graph_url,
    )["id"]


def as_utc(value) -> datetime:
    """SQLite hands raw SQL datetimes back as text."""
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(str(value))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def mailbox_row(world, mailbox_id):
    return world.sql(
        "SELECT status, last_error, last_error_kind, last_error_fix, next_sync_at, secret_enc, messages_imported "
        "FROM mailbox WHERE id = :i",
        i=mailbox_id,
    )[0]


def test_tenant_mailbox_syncs_mail_and_meetings(world, graph):
    mid = add_tenant_mailbox(world, graph)
    inbound = graph.add_message(
        ALICE,
        internet_message_id="<deal-1@acme.com>",
        subject="Pricing",
        sender=CARLA,
        to=[("Alice Rep", ALICE)],
        preview="Can we talk about the price?",
    )
    graph.add_message(
        ALICE,
        "sentitems",
        internet_message_id="<re-deal-1@ourco.com>",
        subject="Re: Pricing",
        sender=("Alice Rep", ALICE),
        to=[CARLA],
    )
    graph.add_message(ALICE, "junkemail", internet_message_id="<spam@x.com>", subject="Win", sender=("X", "x@x.com"))
    graph.add_event(
        ALICE,
        subject="Demo",
        start=NOW + timedelta(days=2),
        organizer=("Alice Rep", ALICE),
        attendees=[(*CARLA, "required", "accepted")],
        ical_uid="UID-DEMO",
    )
    report = world.sync(mid)
    assert report.ok and report.error is None, report
    row = mailbox_row(world, mid)
    assert row.status == "active" and row.last_error is None
    inter = world.sql("SELECT kind, message_key, direction, subject, snippet FROM interaction ORDER BY message_key")
    assert [(i.kind, i.message_key, i.direction, i.subject) for i in inter] == [
        ("email", "deal-1@acme.com", "in", "Pricing"),
        ("meeting", "ical:UID-DEMO", inter[1].direction, "Demo"),
        ("email", "re-deal-1@ourco.com", "out", "Re: Pricing"),
    ]
    assert inter[0].snippet == "Can we talk about the price?"
    assert world.scalar("SELECT count(*) FROM contactaddress WHERE address = 'carla@acme.com'") == 1
    folders = {
        r.name: (r.role, r.selected, r.backfill_done)
        for r in world.sql("SELECT name, role, selected, backfill_done FROM folderstate WHERE mailbox_id = :m", m=mid)
    }
    assert folders["Junk Email"] == ("skip", False, False) and folders["calendar:Calendar"][0] == "calendar"
    assert folders["Inbox"] == ("inbox", True, True)

    # Second run: a new message and a deleted one; the deleted copy's source row goes.
    graph.add_message(
        ALICE, internet_message_id="<deal-2@acme.com>", subject="Contract", sender=CARLA, to=[("Alice Rep", ALICE)]
    )
    graph.delete_message(ALICE, inbound)
    before = len(graph.requests)
    report = world.sync(mid)
    assert report.ok and report.new_interactions == 1
    assert world.scalar("SELECT count(*) FROM interactionsource WHERE remote_id = :r", r=inbound) == 0
    assert world.scalar("SELECT count(*) FROM interaction WHERE message_key = 'deal-1@acme.com'") == 1  # mail stays
    delta_calls = [p for _, p in graph.requests[before:] if "delta" in p]
    assert delta_calls and all("$deltatoken=" in p for p in delta_calls)


def test_same_message_over_imap_and_graph_is_one_interaction(world, graph, imap_user):
    raw = message(
        '"Carla Buyer" <carla@acme.com>', "Alice Rep <alice@ourco.com>", "Both ways", msgid="Both.Ways-42@acme.com"
    )
    imap_user.deliver(raw)
    imap_box = world.add_imap(BOB, imap_user)
    graph_box = add_tenant_mailbox(world, graph, owner=ALICE)
    graph.add_message(
        ALICE,
        internet_message_id="<Both.Ways-42@acme.com>",
        subject="Both ways",
        sender=CARLA,
        to=[("Alice Rep", ALICE)],
        sent=NOW - timedelta(days=1),
    )
    assert world.sync(imap_box, fetch_in_child=False).ok
    assert world.sync(graph_box).ok
    rows = world.sql(
        "SELECT i.id, s.mailbox_id FROM interaction i JOIN interactionsource s ON s.interaction_id = i.id "
        "WHERE i.message_key = 'Both.Ways-42@acme.com'"
    )
    assert len({r.id for r in rows}) == 1 and sorted(r.mailbox_id for r in rows) == sorted([imap_box, graph_box])
    assert world.scalar("SELECT count(*) FROM interaction") == 1


def test_recurring_meeting_in_two_reps_calendars_is_one_interaction_per_occurrence(world, graph):
    tenant = add_tenant(world, graph)
    boxes = [add_tenant_mailbox(world, graph, owner=o, tenant_id=tenant) for o in (ALICE, BOB)]
    starts = [NOW + timedelta(days=d) for d in (1, 8)]
    for owner in (ALICE, BOB):
        graph.add_series(
            owner,
            subject="Weekly sync",
            starts=starts,
            ical_uid="UID-WEEKLY",
            organizer=("Carla Buyer", "carla@acme.com"),
            attendees=[("Alice", ALICE, "required", "accepted"), ("Bob", BOB, "required", "declined")],
        )
    for mid in boxes:
        assert world.sync(mid).ok
    keys = [
        r.message_key
        for r in world.sql("SELECT message_key FROM interaction WHERE kind = 'meeting' ORDER BY message_key")
    ]
    assert keys == [f"ical:UID-WEEKLY/{s.strftime('%Y-%m-%dT%H:%M:%SZ')}" for s in starts]
    assert world.scalar("SELECT count(*) FROM interactionsource") == 4


def test_expired_delta_state_resyncs_without_duplicates(world, graph):
    mid = add_tenant_mailbox(world, graph)
    ids = [
        graph.add_message(
            ALICE, internet_message_id=f"<m{i}@acme.com>", subject=f"S{i}", sender=CARLA, to=[("Alice", ALICE)]
        )
        for i in range(5)
    ]
    assert world.sync(mid).ok
    first = world.snapshot()
    graph.delete_message(ALICE, ids[0])  # while the state is gone: only a full re-listing notices
    graph.expire_delta_tokens(ALICE)
    report = world.sync(mid)
    assert report.ok and report.new_interactions == 0
    after = world.snapshot()
    assert after["interactions"] == first["interactions"]
    gone = [s for s in first["sources"] if s[3] == ids[0]]
    assert after["sources"] == sorted(set(first["sources"]) - set(gone)) and len(gone) == 1
    assert any("$deltatoken" in p for _, p in graph.requests)


def test_a_message_moved_out_and_back_between_rounds_keeps_its_copy(world, graph):
    """Its immutable id is the same; Graph's next round of the folder names it twice, its
    removal and then the message: the later entry is what the folder holds now."""
    mid = add_tenant_mailbox(world, graph)
    ids = [
        graph.add_message(
            ALICE, internet_message_id=f"<b{i}@acme.com>", subject=f"S{i}", sender=CARLA, to=[("Alice", ALICE)]
        )
        for i in range(3)
    ]
    assert world.sync(mid).ok
    first = world.snapshot()
    graph.move_message(ALICE, ids[1], "junkemail")  # filed by mistake, then put back
    graph.move_message(ALICE, ids[1], "inbox")
    assert world.sync(mid).ok
    assert world.snapshot()["sources"] == first["sources"]


def test_throttling_beyond_patience_backs_off_with_retry_after(world, graph):
    mid = add_tenant_mailbox(world, graph)
    graph.add_message(ALICE, sender=CARLA)
    graph.inject(
        "/mailFolders",
        429,
        {"error": {"code": "ApplicationThrottled", "message": "Application is over its MailboxConcurrency limit."}},
        headers={"Retry-After": "300"},
    )
    report = world.sync(mid)
    assert not report.ok and report.error_kind == "throttled"
    row = mailbox_row(world, mid)
    assert row.status == "failed" and row.last_error_kind == "throttled"
    wait = as_utc(row.next_sync_at) - utcnow()
    assert timedelta(seconds=280) < wait <= timedelta(seconds=300)
    assert world.sync(mid).ok  # next time it goes through


def test_unreadable_folder_page_is_isolated(world, graph):
    mid = add_tenant_mailbox(world, graph)
    graph.add_message(ALICE, internet_message_id="<ok@acme.com>", sender=CARLA, to=[("Alice", ALICE)])
    graph.add_message(ALICE, "sentitems", internet_message_id="<sent@ourco.com>", sender=("Alice", ALICE), to=[CARLA])
    sent_id = graph.folder_id(ALICE, "sentitems")
    graph.inject(f"/mailFolders/{sent_id}/messages/delta", 200, "<html>proxy error</html>", times=1)
    report = world.sync(mid)
    assert report.ok and any("Sent Items" in f for f in report.folders_failed)
    assert world.scalar("SELECT count(*) FROM interaction WHERE message_key = 'ok@acme.com'") == 1
    status = world.sql(
        "SELECT status, last_error FROM folderstate WHERE mailbox_id = :m AND name = 'Sent Items'", m=mid
    )[0]
    assert status.status == "error" and "invalid JSON" in status.last_error
    assert world.sync(mid).ok
    assert world.scalar("SELECT count(*) FROM interaction WHERE message_key = 'sent@ourco.com'") == 1


def test_delegated_mailbox_rotated_token_is_kept_and_revocation_says_reconnect(world, graph):
    mid = add_delegated_mailbox(world, graph)
    graph.add_message(ALICE, internet_message_id="<d1@acme.com>", sender=CARLA, to=[("Alice", ALICE)])
    assert world.sync(mid).ok
    stored = mailbox_row(world, mid).secret_enc
    graph.expire_access_tokens()
    assert world.sync(mid).ok
    rotated = mailbox_row(world, mid).secret_enc
    assert rotated != stored
    assert world.rt.box.decrypt(rotated) != world.rt.box.decrypt(stored)
    assert "RefreshToken" in world.rt.box.decrypt(rotated)
    graph.expire_access_tokens()
    graph.revoke_refresh_tokens(ALICE)
    report = world.sync(mid)
    row = mailbox_row(world, mid)
    assert not report.ok and row.status == "failed" and row.last_error_kind == "auth"
    # The connector's fix code travels as a value and words the advice beside the error, once.
    from app.services.mailboxes import fix_for

    advice = fix_for(row.last_error_kind, "m365", row.last_error_fix)
    assert row.last_error_fix == "sign_in" and "reconnect" in advice and "add-m365" in advice
    assert "add-m365" not in row.last_error


def test_application_access_policy_fails_the_mailbox_with_its_name(world, graph):
    mid = add_tenant_mailbox(world, graph)
    graph.block_user(ALICE)
    report = world.sync(mid)
    row = mailbox_row(world, mid)
    assert not report.ok and row.last_error_kind == "auth" and "application access policy" in row.last_error


# -- push --------------------------------------------------------------------------------

PUBLIC = "https://crm.ourco.example"


def wait_until(check, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def test_push_subscriptions_are_kept_only_by_the_worker_holding_the_mailboxs_watch_lease(world, graph, live_app):
    from sync.scheduler import claim_watches

    mid = add_tenant_mailbox(world, graph)
    with world.rt.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE mailbox SET status = 'active'")
    world.rt.settings = dataclasses.replace(world.rt.settings, public_url=PUBLIC)
    graph.notification_rewrite = (PUBLIC, live_app(world))
    first = claim_watches(world.rt.engine, "host-a:1:x", 60, limit=10)
    second = claim_watches(world.rt.engine, "host-b:1:x", 60, limit=10)
    assert first == {mid: "m365"} and second == {}
    assert graph_push.ensure_subscriptions(world.rt, mailbox_ids=set(second))["created"] == 0
    assert graph_push.ensure_subscriptions(world.rt, mailbox_ids=set(first))["created"] == 2
    assert len(graph.subscriptions) == 2


def test_push_subscriptions_notifications_and_lifecycle(world, graph, live_app):
    mid = add_tenant_mailbox(world, graph)
    assert graph_push.ensure_subscriptions(world.rt)["created"] == 0  # http public URL: polling only
    world.rt.settings = dataclasses.replace(world.rt.settings, public_url=PUBLIC)
    app_url = live_app(world)
    graph.notification_rewrite = (PUBLIC, app_url)
    summary = graph_push.ensure_subscriptions(world.rt)
    assert summary == {"created": 2, "renewed": 0, "deleted": 0, "failed": {}}
    subs = world.sql(
        "SELECT subscription_id, resource, expires_at, client_state_enc FROM graphsubscription ORDER BY resource"
    )
    assert [s.resource for s in subs] == [f"users/{ALICE}/events", f"users/{ALICE}/mailFolders('inbox')/messages"]
    for s in subs:  # Graph holds the plain clientState; we hold it encrypted
        assert graph.subscriptions[s.subscription_id]["clientState"] == world.rt.box.decrypt(s.client_state_enc)
        assert graph.subscriptions[s.subscription_id]["notificationUrl"] == f"{PUBLIC}/graph/notifications"
    assert graph_push.ensure_subscriptions(world.rt)["created"] == 0  # idempotent

    far = utcnow() + timedelta(hours=5)

    def park():
        with world.rt.engine.begin() as conn:
            conn.execute(text("UPDATE mailbox SET next_sync_at = :t WHERE id = :m"), {"t": far, "m": mid})

    def due():
        return as_utc(mailbox_row(world, mid).next_sync_at) < utcnow() + timedelta(minutes=1)

    inbox_sub = subs[1].subscription_id
    park()
    forged = graph.notify(inbox_sub, client_state="guessed")
    assert forged.status_code == 202
    time.sleep(0.3)
    assert not due()
    # The same decision without the timing: a guessed clientState matches nothing.
    real_state = world.rt.box.decrypt(
        world.scalar("SELECT client_state_enc FROM graphsubscription WHERE subscription_id = :s", s=inbox_sub)
    )
    assert graph_push.verified(world.rt, [{"subscriptionId": inbox_sub, "clientState": "guessed"}]) == []
    assert [
        m for _, m in graph_push.verified(world.rt, [{"subscriptionId": inbox_sub, "clientState": real_state}])
    ] == [mid]
    answer = graph.notify(inbox_sub)
    assert answer.status_code == 202 and wait_until(due)

    # Renewal before expiry.
    later = utcnow() + timedelta(days=1, hours=12)
    summary = graph_push.ensure_subscriptions(world.rt, now=later)
    assert summary["renewed"] == 2 and summary["created"] == 0
    assert graph.subscriptions[inbox_sub]["expirationDateTime"] > (utcnow() + timedelta(days=3)).strftime("%Y-%m-%dT")

    # Lifecycle: reauthorizationRequired -> renewed now; missed -> sync; subscriptionRemoved -> a new one.
    events_sub = subs[0].subscription_id
    graph.subscriptions[events_sub]["expirationDateTime"] = "2000-01-01T00:00:00Z"
    assert graph.notify(events_sub, lifecycle_event="reauthorizationRequired").status_code == 202
    assert wait_until(lambda: graph.subscriptions[events_sub]["expirationDateTime"] > "2001")

    park()
    assert graph.notify(inbox_sub, lifecycle_event="missed").status_code == 202
    assert wait_until(due)
    graph.notify(inbox_sub, lifecycle_event="subscriptionRemoved")
    assert wait_until(
        lambda: world.scalar("SELECT count(*) FROM graphsubscription WHERE subscription_id = :s", s=inbox_sub) == 0
    )
    assert world.scalar("SELECT count(*) FROM graphsubscription") == 2

    # A subscription Graph dropped without telling us: the renewal's 404 makes a new one.
    gone = world.sql("SELECT subscription_id FROM graphsubscription ORDER BY id")[0][0]
    with graph.lock:
        del graph.subscriptions[gone]
    summary = graph_push.ensure_subscriptions(world.rt, now=utcnow() + timedelta(days=3))
    assert summary["renewed"] == 2 and not summary["failed"]
    now_ids = {r[0] for r in world.sql("SELECT subscription_id FROM graphsubscription")}
    assert gone not in now_ids and len(now_ids) == 2 and now_ids <= set(graph.subscriptions)

    # A paused mailbox gives its subscriptions up, on our side and on Graph's.
    with world.rt.engine.begin() as conn:
        conn.execute(text("UPDATE mailbox SET status = 'paused' WHERE id = :m"), {"m": mid})
    assert graph_push.ensure_subscriptions(world.rt)["deleted"] == 2
    assert world.scalar("SELECT count(*) FROM graphsubscription") == 0
    assert not (now_ids & set(graph.subscriptions))

    # The validation handshake itself: the token echoed as text/plain.
    import httpx

    echo = httpx.post(app_url + "/graph/notifications?validationToken=Validation%3A%20Testing%20123")
    assert echo.status_code == 200 and echo.text == "Validation: Testing 123"
    assert echo.headers["content-type"].startswith("text/plain")


def test_first_import_fetches_in_a_child_process_and_keeps_its_rotated_token(world, graph, monkeypatch):
    """A first Graph import runs its connector in the fetch child (sync/pipeline.py);
    a refresh token rotated there still reaches the database."""
    from sync import pipeline

    started = []
    real = pipeline.ChildFetcher

    class Counting(real):
        def __init__(self, spec, **kw):
            started.append(spec.kind)
            super().__init__(spec, **kw)

    monkeypatch.setattr(pipeline, "ChildFetcher", Counting)
    mid = add_delegated_mailbox(world, graph)
    for n in range(3):
        graph.add_message(ALICE, internet_message_id=f"<c{n}@acme.com>", sender=CARLA, to=[("Alice", ALICE)])
    stored = mailbox_row(world, mid).secret_enc
    graph.expire_access_tokens()
    report = world.sync(mid)
    assert report.ok and report.new_interactions == 3
    assert started == ["m365"]
    rotated = mailbox_row(world, mid).secret_enc
    assert world.rt.box.decrypt(rotated) != world.rt.box.decrypt(stored)
    assert "RefreshToken" in world.rt.box.decrypt(rotated)
    # Incremental runs stay in this process.
    graph.add_message(ALICE, internet_message_id="<c9@acme.com>", sender=CARLA, to=[("Alice", ALICE)])
    assert world.sync(mid).new_interactions == 1
    assert started == ["m365"]


def test_meeting_organised_outside_exchange_is_one_meeting_from_graph_and_from_the_invitation(world, graph, imap_user):
    """A customer on Google invites Alice (Microsoft 365) and Bob (IMAP): Graph shows
    Alice's copy under an Exchange-wrapped iCalUId, Bob's mail carries the invitation
    with the organiser's own UID. Both are the same meeting."""
    from tests.connectors.test_ical import event, stamp, vcalendar
    from tests.connectors.test_imip import invitation

    google_uid = "7kq3m2v9ab0cd1ef2gh3@google.com"
    data = b"vCal-Uid" + (1).to_bytes(4, "little") + google_uid.encode() + b"\x00"
    wrapped = (
        (bytes.fromhex("040000008200E00074C5B7101A82E008") + bytes(20) + len(data).to_bytes(4, "little") + data)
        .hex()
        .upper()
    )
    start = (NOW + timedelta(days=3)).replace(minute=0, second=0)
    people = [("Alice", ALICE, "required", "accepted"), ("Bob", BOB, "required", "none")]
    graph.add_event(ALICE, subject="Renewal", start=start, organizer=CARLA, attendees=people, ical_uid=wrapped)
    req = event(
        google_uid,
        stamp(start),
        end=stamp(start + timedelta(minutes=30)),
        organizer="carla@acme.com",
        summary="Renewal",
        attendees=((ALICE, "ACCEPTED"), (BOB, "NEEDS-ACTION")),
    )
    imap_user.deliver(
        invitation(vcalendar(req, method="REQUEST"), msgid="renewal@google.com", frm="carla@acme.com", to=BOB)
    )
    graph_box = add_tenant_mailbox(world, graph, owner=ALICE)
    imap_box = world.add_imap(BOB, imap_user)
    assert world.sync(graph_box).ok and world.sync(imap_box, fetch_in_child=False).ok
    meetings = world.sql("SELECT message_key FROM interaction WHERE kind = 'meeting'")
    assert [m.message_key for m in meetings] == [f"ical:{google_uid}"]
    assert (
        world.scalar(
            "SELECT count(*) FROM interactionsource s JOIN interaction i ON i.id = s.interaction_id "
            "WHERE i.kind = 'meeting'"
        )
        == 2
    )


def test_reused_message_ids_keep_different_mail_apart_and_copies_together(world, graph, imap_user):
    """Printers and scripts reuse IDs like <1@localhost>: two different messages with
    it stay two interactions; one such message in an IMAP and a Graph mailbox is one."""
    when = (NOW - timedelta(days=2)).replace(second=0)
    imap_user.deliver(message("Scanner <scan@acme.com>", "bob@ourco.com", "Scan 1", msgid="1@localhost", when=when))
    imap_user.deliver(
        message(
            "Printer <print@other.com>", "bob@ourco.com", "Job done", msgid="1@localhost", when=when - timedelta(days=1)
        )
    )
    imap_box = world.add_imap(BOB, imap_user)
    graph_box = add_tenant_mailbox(world, graph, owner=ALICE)
    graph.add_message(
        ALICE,
        internet_message_id="<1@localhost>",
        subject="Scan 1",
        sender=("Scanner", "scan@acme.com"),
        to=[("Bob", BOB), ("Alice", ALICE)],
        sent=when,
    )
    assert world.sync(imap_box, fetch_in_child=False).ok and world.sync(graph_box).ok
    rows = world.sql(
        "SELECT i.subject, count(s.id) FROM interaction i JOIN interactionsource s "
        "ON s.interaction_id = i.id GROUP BY i.id, i.subject ORDER BY i.subject"
    )
    assert [tuple(r) for r in rows] == [("Job done", 1), ("Scan 1", 2)]


def test_a_reply_read_through_graph_joins_its_thread_by_conversation_id(world, graph):
    # Graph's delta gives no References: the conversationId is the thread, so Carla's answer
    # turns Alice's "waiting on them" into one "you owe a reply" row for the same thread.
    mid = add_tenant_mailbox(world, graph)
    sent = NOW - timedelta(days=6)
    graph.add_message(
        ALICE,
        "sentitems",
        internet_message_id="<quote-1@ourco.com>",
        subject="Quote",
        sender=("Alice Rep", ALICE),
        to=[CARLA],
        sent=sent,
        conversation_id="AAQkConvQuote",
    )
    graph.add_message(
        ALICE,
        internet_message_id="<re-quote-1@acme.com>",
        subject="RE: Quote",
        sender=CARLA,
        to=[("Alice Rep", ALICE)],
        sent=sent + timedelta(days=1),
        conversation_id="AAQkConvQuote",
    )
    graph.add_message(ALICE, internet_message_id="<other@acme.com>", subject="Lunch?", sender=CARLA, to=[("A", ALICE)])
    assert world.sync(mid).ok
    threads = dict(world.sql("SELECT message_key, thread_key FROM interaction"))
    assert threads["quote-1@ourco.com"] == threads["re-quote-1@acme.com"] == "conversation:AAQkConvQuote"
    assert threads["other@acme.com"] not in (threads["quote-1@ourco.com"], None)
    rows = world.sql("SELECT thread_key, kind, status FROM followup ORDER BY thread_key")
    quote = [(r.kind, r.status) for r in rows if r.thread_key == "conversation:AAQkConvQuote"]
    assert quote == [("owe", "open")]


def test_a_wider_backfill_window_reads_the_older_mail_and_keeps_the_delta_state(world, graph, tmp_path):
    """backfill_days raised after the first round: that round had passed over the older mail and
    delta rounds list only changes, so nothing read it. The mail between is listed by date (page by
    page) and read; the folder is counted against the wider window; the delta state goes on."""
    now = datetime.now(timezone.utc)
    for days in (2, 50, 60, 70, 400):
        graph.add_message(
            ALICE,
            internet_message_id=f"<d{days}@acme.com>",
            subject=f"{days} days",
            sender=CARLA,
            to=[("Alice", ALICE)],
            received=now - timedelta(days=days),
        )
    world.set_org(backfill_days=30)
    mid = add_tenant_mailbox(world, graph)
    assert world.sync(mid).ok
    subjects = "SELECT subject FROM interaction ORDER BY subject"
    assert [r[0] for r in world.sql(subjects)] == ["2 days"]
    world.set_org(backfill_days=365)
    assert world.sync(mid).ok
    assert [r[0] for r in world.sql(subjects)] == ["2 days", "50 days", "60 days", "70 days"]
    listed = [p for _, p in graph.requests if "/messages?" in p and "receivedDateTime" in p and "$count" not in p]
    assert len(listed) == 3 and any("$deltatoken" in p for _, p in graph.requests)  # one per mail folder
    (inbox,) = [
        f for f in world.sql("SELECT name, cursor FROM folderstate WHERE mailbox_id = :m", m=mid) if f[0] == "Inbox"
    ]
    cursor = json_value(inbox[1])
    assert cursor["server_count"] == 4 and "widen_to" not in cursor and cursor.get("delta_link")
    graph.add_message(
        ALICE, internet_message_id="<later@acme.com>", subject="later", sender=CARLA, to=[("Alice", ALICE)]
    )
    assert world.sync(mid).ok
    assert world.scalar("SELECT COUNT(*) FROM interaction") == 5
