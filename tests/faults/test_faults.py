"""Exactly once under faults: dropped connections, killed processes, bad
credentials, unreachable servers. Each run that recovers must converge to
exactly the timeline a clean run gives."""

from __future__ import annotations

import json
import time

import pytest

from tests.faults.backfill import cli_env, fill, world_for as _world_for
from tests.faults.timeline import assert_same_timeline, timeline
from tests.world import make_world, message


@pytest.fixture
def mailbox(imap_user, tmp_path, new_database):
    """The conftest's mailbox, its clean import made on each database (new_database): the cut
    and the kill below are compared with a clean import on the same database."""
    corpus = fill(imap_user, 1500)
    clean = _world_for(tmp_path, corpus, "clean", new_database())
    assert clean.sync(clean.add_imap(corpus.reps[0][1], imap_user)).ok
    return corpus, timeline(clean)


@pytest.mark.parametrize("in_child", [True, False], ids=["child-fetch", "inline-fetch"])
def test_connection_cut_mid_fetch_converges(mailbox, new_database, imap_user, fault_proxy, tmp_path, in_child):
    corpus, expected = mailbox
    proxy = fault_proxy(imap_user)
    world = _world_for(tmp_path, corpus, "faulty", new_database())
    mid = world.add_imap(corpus.reps[0][1], imap_user, port=proxy.port)
    world.set_batch_size(mid, 40)
    proxy.cut_after(120_000)

    first = world.sync(mid, fetch_in_child=in_child)
    assert not first.ok and first.error_kind == "transient"
    assert first.imported > 0  # some batches committed before the cut
    status, error, next_at = world.sql("SELECT status, last_error, next_sync_at FROM mailbox")[0]
    assert status == "failed" and "connection" in error.lower() and next_at is not None

    proxy.heal()
    second = world.sync(mid, fetch_in_child=in_child)
    assert second.ok
    assert_same_timeline(timeline(world), expected, what="a sync cut mid-fetch")
    assert world.sql("SELECT status, last_error FROM mailbox")[0] == ("active", None)


def test_killed_process_converges(mailbox, new_database, imap_user, tmp_path):
    corpus, expected = mailbox
    world = _world_for(tmp_path, corpus, "killed", new_database())
    mid = world.add_imap(corpus.reps[0][1], imap_user)
    world.set_batch_size(mid, 20)
    world.kill_cli_sync_midway(mid, cli_env(world))
    partial = world.scalar("SELECT count(*) FROM interactionsource")
    assert 0 < partial
    assert world.sql("SELECT sync_stage FROM mailbox") == [("running",)]  # the dead run still holds a lease

    report = world.sync(mid)  # its holder is gone from this host: taken over at once
    assert report is not None and report.ok
    assert_same_timeline(timeline(world), expected, what="a sync killed mid-import")


def test_wrong_password_fails_with_a_readable_reason_then_recovers(world_factory, imap_user):
    world = world_factory()
    imap_user.deliver(message("x@cust.com", "alice@ourco.com", msgid="pw@cust"))
    mid = world.add_imap("alice@ourco.com", imap_user, password="not-the-password")
    report = world.sync(mid)
    assert not report.ok and report.error_kind == "auth"
    status, kind, error, failures = world.sql("SELECT status, last_error_kind, last_error, failure_count FROM mailbox")[
        0
    ]
    assert (status, kind, failures) == ("failed", "auth", 1)
    from app.services.mailboxes import fix_for

    assert "login refused" in error and "password" in fix_for("auth", "imap").lower()
    assert imap_user.password not in error and "not-the-password" not in error

    again = world.sync(mid)
    assert world.sql("SELECT failure_count FROM mailbox")[0][0] == 2
    # backoff grows with each failure
    last, nxt = world.sql("SELECT last_error_at, next_sync_at FROM mailbox")[0]
    assert not again.ok and nxt > last

    from app.db import session
    from app.models import Mailbox

    with session(world.rt.engine) as s:
        mb = s.get(Mailbox, mid)
        mb.secret_enc = world.rt.box.encrypt(imap_user.password)
        s.add(mb)
        s.commit()
    assert world.sync(mid).ok
    assert world.sql("SELECT status, failure_count, last_error FROM mailbox")[0] == ("active", 0, None)


def test_unreachable_server_is_a_transient_failure(world_factory, fault_proxy, imap_user):
    world = world_factory()
    proxy = fault_proxy(imap_user)
    proxy.refuse(True)
    mid = world.add_imap("alice@ourco.com", imap_user, port=proxy.port)
    report = world.sync(mid)
    assert not report.ok and report.error_kind == "transient"
    assert world.sql("SELECT status FROM mailbox") == [("failed",)]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_login_cut_by_the_network_is_shown_as_transient_not_as_a_wrong_password(
    tmp_path, request, database, fault_proxy, imap_user
):
    url = request.getfixturevalue("postgres_migrated_url") if database == "postgresql" else None
    world = make_world(tmp_path, url=url)
    proxy = fault_proxy(imap_user)
    client = imap_user.connect(login=False, port=proxy.port)  # how many bytes come before the answer to LOGIN
    time.sleep(0.2)
    before_login = proxy.bytes_s2c
    client.shutdown()
    mid = world.add_imap("alice@ourco.com", imap_user, port=proxy.port)
    proxy.cut_after(before_login + 3)

    report = world.sync(mid, fetch_in_child=False)

    assert not report.ok and report.error_kind == "transient" and proxy.cuts == 1
    kind, error = world.sql("SELECT last_error_kind, last_error FROM mailbox")[0]
    from app.services.mailboxes import fix_for

    todo = fix_for(kind, "imap")
    assert kind == "transient" and "password" not in error.lower() + todo.lower() and "retries automatically" in todo


def test_backoff_grows_and_is_capped():
    from sync.engine import MAX_BACKOFF, backoff_seconds

    waits = [backoff_seconds(n) for n in range(1, 12)]
    assert waits == sorted(waits) and waits[0] == 30 and waits[-1] == MAX_BACKOFF


@pytest.fixture
def world_factory(tmp_path):
    return lambda: make_world(tmp_path)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_counters_and_unreadable_list_describe_the_mailbox_after_any_number_of_uidvalidity_resets(
    tmp_path, request, database, imap_user
):
    from demodata.hostile import malformed_messages

    url = request.getfixturevalue("postgres_migrated_url") if database == "postgresql" else None
    world = make_world(tmp_path, url=url)
    mail = [message(f"p{i}@ext.com", "alice@ourco.com", f"S{i}", msgid=f"r{i}@ext") for i in range(4)]
    mail.append(message("bob@ourco.com", "alice@ourco.com", "Lunch?", msgid="internal@ourco"))  # skipped: internal
    mail += [raw or b"\r\n" for _, raw in malformed_messages()]  # unreadable, or skipped with a reason

    def fill():
        for raw in mail:
            imap_user.deliver(raw, folder="Archive")

    def counters():
        imported, skipped = world.sql("SELECT messages_imported, skipped FROM mailbox")[0]
        skipped = json.loads(skipped) if isinstance(skipped, str) else skipped
        unreadable = sorted(r[0] for r in world.sql("SELECT reason FROM syncissue"))
        return imported, skipped, unreadable, world.scalar("SELECT messages FROM folderstate WHERE name = 'Archive'")

    imap_user.create_folder("Archive")
    fill()
    mid = world.add_imap("alice@ourco.com", imap_user)
    assert world.sync(mid).ok
    first = counters()
    assert first[0] >= 4 and first[1]["internal"] == 1 and first[2] and first[3] == first[0]
    for _ in range(3):
        imap_user.recreate_folder("Archive")  # a new UIDVALIDITY, the same mail
        fill()
        assert world.sync(mid).ok
        assert counters() == first
