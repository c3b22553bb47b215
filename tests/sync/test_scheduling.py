"""Claims, leases and scheduling, on SQLite and on a real PostgreSQL; IDLE push."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from sync.engine import claim, due_mailboxes, request_sync, utcnow
from tests.world import make_world, message


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request, tmp_path):
    url = request.getfixturevalue("postgres_migrated_url") if request.param == "postgresql" else None
    return make_world(tmp_path, url=url)


def _mailbox(world, imap_user):
    return world.add_imap("alice@ourco.com", imap_user)


def test_only_one_of_many_racing_workers_claims(world, imap_user):
    mid = _mailbox(world, imap_user)
    barrier = threading.Barrier(8)
    wins = []

    def race(n):
        barrier.wait()
        if claim(world.rt.engine, mid, f"worker-{n}", 60):
            wins.append(n)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert world.sql("SELECT sync_stage, lease_owner FROM mailbox")[0] == ("running", f"worker-{wins[0]}")


def test_expired_lease_can_be_taken_over_and_fences_the_old_worker(world, imap_user):
    mid = _mailbox(world, imap_user)
    assert claim(world.rt.engine, mid, "old", 60)
    assert not claim(world.rt.engine, mid, "new", 60)
    assert claim(world.rt.engine, mid, "new", 60, now=utcnow() + timedelta(seconds=61))
    # "old" is refused at its next batch commit: it can no longer write.
    from connectors.base import Batch, Folder
    from sync.engine import LeaseLost, _write_batch, load_mailbox
    from sync.ingest import MailboxContext

    with world.rt.engine.begin() as conn:
        org = load_mailbox(conn, world.rt.box, mid)[2]
        with pytest.raises(LeaseLost):
            _write_batch(
                conn, org, MailboxContext(mid, 0, 0, ""), "old", 60, Folder("INBOX", "inbox"), Batch([], [], {})
            )


def test_a_mailbox_whose_holder_died_on_this_host_is_due_and_taken_over_at_once(world, imap_user):
    import os
    import subprocess

    from app import settings as process

    mid = _mailbox(world, imap_user)
    gone = subprocess.Popen(["true"])
    gone.wait()
    host, _, namespace = process.worker_id().split(":")
    assert claim(world.rt.engine, mid, f"{host}:{gone.pid}:{namespace}", 300)
    assert mid in due_mailboxes(world.rt.engine)
    assert claim(world.rt.engine, mid, "next", 300)
    # A live holder (this process) and one on another host keep their lease until it expires.
    for holder in (process.worker_id(), f"elsewhere:{os.getpid()}:{namespace}"):
        assert claim(world.rt.engine, mid, holder, 300, force=True)
        assert mid not in due_mailboxes(world.rt.engine)
        assert not claim(world.rt.engine, mid, "next", 300)


def test_due_mailboxes_and_request_sync(world, imap_user):
    mid = _mailbox(world, imap_user)
    assert mid in due_mailboxes(world.rt.engine)  # never synced: due
    imap_user.deliver(message("x@cust.com", "alice@ourco.com", msgid="due@cust"))
    assert world.sync(mid).ok
    assert mid not in due_mailboxes(world.rt.engine)  # next run is an interval away
    request_sync(world.rt.engine, mid)
    assert mid in due_mailboxes(world.rt.engine)
    with world.rt.engine.begin() as conn:
        from sqlalchemy import text

        conn.execute(text("UPDATE mailbox SET status = 'paused'"))
    assert mid not in due_mailboxes(world.rt.engine)


def test_full_sync_on_this_database(world, imap_user_factory):
    a, b = imap_user_factory(), imap_user_factory()
    from tests.world import NOW

    raw = message(
        "Eve <eve@cust.de>",
        "alice@ourco.com",
        "Grüße",
        cc="bob@ourco.com",
        msgid="pg@cust",
        when=NOW - timedelta(hours=5),
    )
    a.deliver(raw)
    b.deliver(raw)
    a.deliver(
        message(
            "alice@ourco.com",
            "eve@cust.de",
            "Re: Grüße",
            msgid="pg2@ourco",
            extra="In-Reply-To: <pg@cust>",
            when=NOW - timedelta(hours=1),
        )
    )
    ma, mb = world.add_imap("alice@ourco.com", a), world.add_imap("bob@ourco.com", b)
    assert world.sync(ma).ok and world.sync(mb).ok
    assert world.scalar("SELECT count(*) FROM interaction") == 2
    assert world.scalar("SELECT count(*) FROM interactionsource") == 3
    assert world.sql("SELECT subject FROM interaction ORDER BY occurred_at") == [("Grüße",), ("Re: Grüße",)]
    from app.services.timeline import lookup

    with world.rt.engine.connect() as conn:
        data = lookup(conn, world.org_id, "EVE@cust.de")
    assert data["summary"]["emails_in"] == 1 and data["summary"]["emails_out"] == 1
    assert {c["email"] for c in data["summary"]["colleagues"]} == {"alice@ourco.com", "bob@ourco.com"}


def test_two_mailboxes_syncing_at_once_never_duplicate(world, imap_user_factory):
    users = [imap_user_factory() for _ in range(2)]
    for i in range(60):
        raw = message(f"c{i % 7}@cust{i % 3}.com", "alice@ourco.com", f"S{i}", cc="bob@ourco.com", msgid=f"conc{i}@x")
        for u in users:
            u.deliver(raw)
    ids = [world.add_imap(owner, u) for owner, u in zip(("alice@ourco.com", "bob@ourco.com"), users, strict=True)]
    reports = []
    threads = [threading.Thread(target=lambda m=m: reports.append(world.sync(m, fetch_in_child=False))) for m in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.ok for r in reports)
    assert world.scalar("SELECT count(*) FROM interaction") == 60
    assert world.scalar("SELECT count(*) FROM interactionsource") == 120
    assert world.scalar("SELECT count(*) FROM contactaddress") == len({(i % 7, i % 3) for i in range(60)})


# A push test proves that the push brought the mail, not how fast: the mailbox's next poll is
# checked to be far beyond this bound, so only the push can beat it. The latency itself is a
# benchmark figure (bench/fleet.py, docs/performance.md), since a loaded CI machine stretches it.
PUSH_BOUND = 20.0


def test_idle_push_brings_new_mail_to_the_timeline_long_before_the_next_poll(tmp_path, imap_user):
    from sync.scheduler import SyncService

    world = make_world(tmp_path)
    imap_user.deliver(message("first@cust.com", "alice@ourco.com", msgid="idle0@cust"))
    mid = world.add_imap("alice@ourco.com", imap_user)
    assert world.sync(mid).ok
    service = SyncService(world.rt, idle=True)
    service.start()
    try:
        assert _wait_for(lambda: mid in service.hub.live, 10, 0.05), "the mailbox never entered IDLE"
        time.sleep(0.5)  # let the watcher enter IDLE
        assert world.seconds_to_next_poll(mid) > 10 * PUSH_BOUND
        imap_user.deliver(message("pushed@cust.com", "alice@ourco.com", msgid="idle1@cust"))
        arrived = _wait_for(
            lambda: world.scalar("SELECT count(*) FROM interaction WHERE message_key = 'idle1@cust'"), PUSH_BOUND, 0.02
        )
    finally:
        service.stop()
    assert arrived == 1, "the pushed mail did not reach the timeline before the bound"


@pytest.mark.parametrize("public_url, renews", [("https://crm.ourco.com", True), ("http://127.0.0.1:8000", False)])
def test_graph_subscriptions_are_renewed_only_with_a_public_https_url(tmp_path, public_url, renews):
    import dataclasses

    from sync.scheduler import SyncService

    world = make_world(tmp_path)
    world.rt.settings = dataclasses.replace(world.rt.settings, public_url=public_url)
    service = SyncService(world.rt, idle=False)
    service.start()
    try:
        assert (service.scheduler.get_job("graph-subscriptions") is not None) is renews
    finally:
        service.stop()


def _wait_for(condition, timeout: float, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    return None


def _health(world, mid):
    from app.db import session
    from app.services import mailboxes

    with session(world.rt.engine) as s:
        return mailboxes.health(s, world.org_id, mid)[0]


def _watching(service, mid) -> bool:
    return mid in service.hub.live


@pytest.mark.servers  # its own Dovecot, to stop it
def test_a_push_connection_lost_with_its_server_degrades_the_mailbox_within_a_minute_and_is_logged(tmp_path, caplog):
    from sync.scheduler import SyncService
    from tests.servers import Dovecot

    server = Dovecot(tmp_path / "dovecot").start()
    try:
        server.add_user("alice", "pw-alice")
        world = make_world(tmp_path)
        mid = world.add_imap(
            "alice@ourco.com",
            type("U", (), {"host": server.host, "port": server.port, "username": "alice", "password": "pw-alice"}),
        )
        assert world.sync(mid).ok and _health(world, mid)["health"] == "healthy"
        service = SyncService(world.rt, idle=True)
        service.start()
        try:
            assert _wait_for(lambda: _watching(service, mid), 15), "the IDLE watcher did not connect"
            time.sleep(0.5)  # in IDLE
            caplog.set_level("INFO", logger="threadline")
            server.stop()
            stopped = time.monotonic()
            row = _wait_for(lambda: (lambda r: r if r["health"] != "healthy" else None)(_health(world, mid)), 60)
            elapsed = time.monotonic() - stopped
        finally:
            service.stop()
    finally:
        server.stop()
    assert row is not None, "the mailbox stayed healthy for a minute with its server down"
    assert elapsed < 60 and row["health"] == "failing"
    assert "connection" in row["last_error"] and row["fix"] and "b'" not in row["last_error"]
    assert "retries" in row["fix"] and row["fix"] not in row["last_error"]
    lost = [r for r in caplog.records if r.levelname == "WARNING" and f"mailbox {mid} lost" in r.getMessage()]
    assert lost, [r.getMessage() for r in caplog.records]


def test_a_stalled_push_connection_is_noticed_by_the_heartbeat(tmp_path, imap_user, fault_proxy):
    from sync.scheduler import SyncService

    proxy = fault_proxy(imap_user)
    world = make_world(tmp_path)
    mid = world.add_imap("alice@ourco.com", imap_user, port=proxy.port)
    assert world.sync(mid).ok
    # Heartbeat and answer time shortened for the test (30 s + 20 s in production).
    service = SyncService(world.rt, idle=True, idle_timeout=2, idle_answer_seconds=3)
    service.start()
    try:
        assert _wait_for(lambda: _watching(service, mid), 15)
        time.sleep(0.5)
        proxy.stall(True)  # the server neither answers nor closes: only a heartbeat can tell
        row = _wait_for(lambda: (lambda r: r if r["health"] != "healthy" else None)(_health(world, mid)), 30)
        assert row is not None and row["health"] == "failing" and row["last_error"]
        proxy.heal()
        # Back: the next sync clears the error.
        assert _wait_for(lambda: _health(world, mid)["health"] == "healthy", 60), _health(world, mid)
    finally:
        proxy.heal()
        service.stop()


def test_a_reread_asked_for_as_a_run_ends_stays_due_and_the_next_run_reads_from_the_start(
    world, imap_user, monkeypatch
):
    # The run whose lease the reset had ended still finished the mailbox as synced: its
    # next_sync_at (the interval away) hid the re-read the admin had asked for.
    import sync.engine as engine_module
    from app.services import mailboxes
    from app.services.actor import Actor

    imap_user.deliver(message("carol@acme.com", "alice@ourco.com", msgid="only@acme"))
    mid = world.add_imap("alice@ourco.com", imap_user)
    real_finish = engine_module._finish

    def reread_then_finish(*args, **kw):
        mailboxes.resync(world.rt, Actor.operator(world.org_id), mid)  # after the last batch, before the end
        return real_finish(*args, **kw)

    monkeypatch.setattr(engine_module, "_finish", reread_then_finish)
    world.sync(mid, fetch_in_child=False)
    monkeypatch.setattr(engine_module, "_finish", real_finish)
    assert mid in due_mailboxes(world.rt.engine)
    assert world.scalar("SELECT count(*) FROM folderstate WHERE mailbox_id = :m AND backfill_done", m=mid) == 0
    assert world.sync(mid, fetch_in_child=False).ok
    assert world.scalar("SELECT count(*) FROM folderstate WHERE mailbox_id = :m AND backfill_done", m=mid) > 0
