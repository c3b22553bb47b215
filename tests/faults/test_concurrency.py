"""Several writers at once: what two reps' batches do when their transactions
overlap must equal what they do one after the other, on SQLite and on
PostgreSQL (where writers really run at the same time)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import text

from app.db import read_only, write_transaction
from connectors.base import MessageRecord
from sync import reportsums, stats
from sync.engine import org_context
from sync.ingest import MailboxContext, ingest
from tests.faults.timeline import assert_same_timeline, timeline
from tests.world import NOW, make_world, migrated_database


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request):
    return request.getfixturevalue("postgres_migrated_url") if request.param == "postgresql" else None


def _record(key: str, frm: str, to: list[str], cc: list[str] = (), days: int = 1) -> MessageRecord:
    return MessageRecord(
        remote_id=f"1/{key}",
        message_key=key,
        date=NOW - timedelta(days=days),
        from_=[("", frm)],
        to=[("", a) for a in to],
        cc=[("", a) for a in cc],
        bcc=[],
        subject=key,
        in_reply_to=None,
        references=[],
    )


def _rep(world, email: str) -> MailboxContext:
    uid = world.scalar("SELECT id FROM app_user WHERE email = :e", e=email)
    return MailboxContext(None, None, uid, email)  # logged without a mailbox copy: no IMAP needed


def _wait_until_blocked_or_done(world, thread: threading.Thread, timeout: float = 20.0) -> None:
    """Let the other writer run as far as it can while the first transaction is open."""
    deadline = time.monotonic() + timeout
    while thread.is_alive() and time.monotonic() < deadline:
        if world.rt.engine.dialect.name == "sqlite":
            time.sleep(0.5)  # one writer at a time: it can only be waiting for the lock
            return
        if world.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        ):
            return
        time.sleep(0.02)


def _batch(world, rep: MailboxContext, records: list[MessageRecord]) -> None:
    with write_transaction(world.rt.engine) as conn:
        ingest(conn, org_context(conn, world.org_id, world.rt.box), rep, records)


def _second_while_first_is_open(world, first: tuple, second: tuple) -> None:
    """The first (rep, records) batch is written and its transaction held open while
    the second runs as far as it can; then the first commits and the second ends."""
    other = threading.Thread(target=_batch, args=(world, *second))
    with write_transaction(world.rt.engine) as conn:
        ingest(conn, org_context(conn, world.org_id, world.rt.box), *first)
        other.start()
        _wait_until_blocked_or_done(world, other)
    other.join(60)
    assert not other.is_alive()


def _report_summaries_agree(world) -> None:
    """The reports' summaries (sync/reportsums.py) equal their recount too, and are not empty."""
    with read_only(world.rt.engine) as conn:
        assert reportsums.check(conn, world.org_id) == []
        assert reportsums.kept(conn, world.org_id)[0]


def _kept_and_recounted(world):
    def tables():
        return (
            world.sql(
                "SELECT c.primary_email, s.emails_in, s.emails_out, s.first_email_at, s.last_email_at "
                "FROM contactstats s JOIN contact c ON c.id = s.contact_id ORDER BY 1"
            ),
            world.sql(
                "SELECT c.primary_email, u.email, k.interactions, k.last_at FROM contactcolleague k "
                "JOIN contact c ON c.id = k.contact_id JOIN app_user u ON u.id = k.user_id ORDER BY 1, 2"
            ),
        )

    kept = tables()
    with write_transaction(world.rt.engine) as conn:
        ids = [r[0] for r in conn.execute(text("SELECT id FROM contact WHERE org_id = :o"), {"o": world.org_id})]
        stats.recompute(conn, world.org_id, ids)
    return kept, tables()


def test_a_contact_made_by_another_rep_while_a_batch_is_open_gets_that_batch_s_mail(tmp_path, db_url):
    world = make_world(tmp_path, url=db_url)
    # Alice's batch: Carol writes, Dave is only in Cc (not a contact yet).
    cc_dave = _record("cc-dave@beta.org", "carol@acme.com", ["alice@ourco.com"], cc=["dave@beta.org"], days=2)
    # Bob's batch: Bob writes to Dave, which makes Dave a contact.
    to_dave = _record("to-dave@ourco.com", "bob@ourco.com", ["dave@beta.org"])
    alice, bob = _rep(world, "alice@ourco.com"), _rep(world, "bob@ourco.com")

    _second_while_first_is_open(world, (alice, [cc_dave]), (bob, [to_dave]))

    dave = world.scalar("SELECT contact_id FROM contactaddress WHERE address = 'dave@beta.org'")
    daves = world.sql(
        "SELECT i.message_key FROM participant p JOIN interaction i ON i.id = p.interaction_id "
        "WHERE p.contact_id = :c ORDER BY 1",
        c=dave,
    )
    assert daves == [("cc-dave@beta.org",), ("to-dave@ourco.com",)]
    assert not world.sql(
        "SELECT p.address FROM participant p JOIN contactaddress a ON a.address = p.address WHERE p.contact_id IS NULL"
    )
    kept, recounted = _kept_and_recounted(world)
    assert kept == recounted
    assert [r[:3] for r in kept[0]] == [("carol@acme.com", 1, 0), ("dave@beta.org", 1, 1)]


def test_two_reps_adding_people_to_the_same_stored_message_at_once_keep_every_colleague_pair(tmp_path, db_url):
    world = make_world(tmp_path, url=db_url)
    alice, bob = _rep(world, "alice@ourco.com"), _rep(world, "bob@ourco.com")
    _batch(world, alice, [_record("dave-1@beta.org", "dave@beta.org", ["alice@ourco.com"], days=3)])  # a contact
    _batch(world, alice, [_record("m@acme.com", "carol@acme.com", ["alice@ourco.com"])])  # stored: Carol, Alice
    with_dave = _record("m@acme.com", "carol@acme.com", ["alice@ourco.com"])
    with_dave.bcc = [("", "dave@beta.org")]  # a copy that shows Dave in Bcc
    bobs_copy = _record("m@acme.com", "carol@acme.com", ["alice@ourco.com"])  # Bob got it without being named

    _second_while_first_is_open(world, (alice, [with_dave]), (bob, [bobs_copy]))

    kept, recounted = _kept_and_recounted(world)
    assert kept == recounted
    _report_summaries_agree(world)
    assert [r[:3] for r in kept[1]] == [
        ("carol@acme.com", "alice@ourco.com", 1),
        ("carol@acme.com", "bob@ourco.com", 1),
        ("dave@beta.org", "alice@ourco.com", 2),
        ("dave@beta.org", "bob@ourco.com", 1),
    ]


class UniqueViolation(Exception):
    """Stands for the driver's error (its text names the key and the address)."""


class DataError(Exception):
    pass


def _failing_ingest(monkeypatch, times: int, error):
    import sync.engine as engine

    real, calls = engine.ingest, []

    def ingest_or_fail(conn, *args, **kw):
        calls.append(1)
        if len(calls) <= times:
            raise error()
        return real(conn, *args, **kw)

    monkeypatch.setattr(engine, "ingest", ingest_or_fail)
    return calls


def _collision():
    from sqlalchemy.exc import IntegrityError

    return IntegrityError(
        "INSERT INTO contactaddress (org_id, contact_id, address) VALUES (%(org_id)s, %(contact_id)s, %(address)s)",
        {"org_id": 1, "contact_id": 7, "address": "dave@beta.org"},
        UniqueViolation('duplicate key value violates unique constraint "contactaddress_org_id_address_key"'),
    )


def test_a_batch_that_collides_with_another_writer_again_and_again_is_retried_not_failed(
    tmp_path, db_url, imap_user, monkeypatch
):
    from tests.world import message

    world = make_world(tmp_path, url=db_url)
    imap_user.deliver(message("Dave <dave@beta.org>", "alice@ourco.com", "Hello", msgid="coll@beta.org"))
    mid = world.add_imap("alice@ourco.com", imap_user)
    calls = _failing_ingest(monkeypatch, 6, _collision)

    report = world.sync(mid, fetch_in_child=False)

    assert report.ok and not report.folders_failed and len(calls) > 6
    assert world.sql("SELECT status, last_error FROM mailbox") == [("active", None)]
    assert world.sql("SELECT status, last_error FROM folderstate WHERE name = 'INBOX'") == [("ok", None)]
    assert world.sql("SELECT message_key FROM interaction") == [("coll@beta.org",)]


def test_a_database_error_shows_the_admin_no_sql_and_no_parameters(tmp_path, db_url, imap_user, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from tests.world import message

    world = make_world(tmp_path, url=db_url)
    imap_user.deliver(message("Dave <dave@beta.org>", "alice@ourco.com", "Hello", msgid="sql@beta.org"))
    mid = world.add_imap("alice@ourco.com", imap_user)
    _failing_ingest(
        monkeypatch,
        100,
        lambda: OperationalError(
            "INSERT INTO participant (address) VALUES (%(address)s)",
            {"address": "dave@beta.org"},
            DataError("value too long for type character varying"),
        ),
    )

    report = world.sync(mid, fetch_in_child=False)

    assert report.folders_failed
    folder_error = world.scalar("SELECT last_error FROM folderstate WHERE name = 'INBOX'")
    mailbox_error = world.scalar("SELECT last_error FROM mailbox")
    for shown in (folder_error, mailbox_error, *report.folders_failed):
        assert "database error" in shown
        assert "INSERT" not in shown and "dave@beta.org" not in shown and "%(" not in shown


# -- several `threadline worker` processes, killed at random, against one serial run ------------


def _rep_mailboxes(imap_user_factory, messages) -> dict:
    boxes, per_box, folders = {}, {}, {}
    for m in messages:
        if m.mailbox not in boxes:
            boxes[m.mailbox], per_box[m.mailbox], folders[m.mailbox] = imap_user_factory(), [], {"INBOX"}
        if m.folder not in folders[m.mailbox]:
            boxes[m.mailbox].create_folder(m.folder)
            folders[m.mailbox].add(m.folder)
        per_box[m.mailbox].append((m.raw, m.folder, m.internaldate))
    for email, box in boxes.items():
        box.deliver_many(per_box[email])
    return dict(sorted(boxes.items()))


def _corpus_world(tmp_path, name, url, corpus, boxes, batch_size):
    world = make_world(tmp_path / name, url=url, domains=corpus.internal_domains, reps=[(e, n) for n, e in corpus.reps])
    ids = [world.add_imap(email, box) for email, box in boxes.items()]
    for mid in ids:
        world.set_batch_size(mid, batch_size)
    return world, ids


def test_several_workers_killed_at_random_on_postgresql_import_exactly_what_one_process_does(
    tmp_path, postgres, imap_user_factory
):
    import os
    import random
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from demodata import generate

    corpus, messages = generate(seed=21, n_messages=2000, reps=3)  # long enough for three kills on an idle machine
    boxes = _rep_mailboxes(imap_user_factory, list(messages))
    serial, serial_ids = _corpus_world(tmp_path, "serial", migrated_database(postgres), corpus, boxes, 25)
    for mid in serial_ids:
        assert serial.sync(mid, fetch_in_child=False).ok
    expected = timeline(serial)
    assert len(expected["contactcolleague"]) > len(expected["contacts"]) > 20  # reps share contacts

    world, ids = _corpus_world(tmp_path, "workers", migrated_database(postgres), corpus, boxes, 25)
    env = dict(
        os.environ,
        THREADLINE_DATA_DIR=str(world.rt.settings.data_dir),
        THREADLINE_DATABASE_URL=world.rt.settings.database_url,
        THREADLINE_IDLE="0",
        THREADLINE_SCHEDULER_TICK="0.2",
        THREADLINE_SYNC_LEASE_SECONDS="300",
    )
    root = Path(__file__).resolve().parents[2]
    workers, logs = [], []

    def start_worker():
        log = open(tmp_path / f"worker{len(logs)}.log", "w+")
        logs.append(log)
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker"],
                cwd=root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    def imported():
        return world.scalar("SELECT coalesce(sum(messages_imported), 0) FROM mailbox")

    def done():
        return world.sql("SELECT status, sync_stage FROM mailbox") == [("active", "idle")] * len(ids)

    chance = random.Random(21)
    total = sum(row[3] for row in expected["mailboxes"])
    kills = 0
    try:
        for _ in range(3):
            start_worker()
        deadline = time.monotonic() + 150
        for share in (0.2, 0.45, 0.7):  # kill a worker that holds a mailbox while batches are being written
            while imported() < share * total and not done() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(chance.uniform(0, 0.05))
            if done():
                break
            holders = {
                o.split(":")[1] for (o,) in world.sql("SELECT lease_owner FROM mailbox WHERE lease_owner IS NOT NULL")
            }
            alive = [w for w in workers if w.poll() is None]
            victim = chance.choice([w for w in alive if str(w.pid) in holders] or alive)
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait()
            kills += 1
            start_worker()
        while not done() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert done(), world.sql("SELECT id, status, sync_stage, lease_owner, last_error FROM mailbox")
    finally:
        for w in workers:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGTERM)
        for w in workers:
            try:
                w.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(w.pid, signal.SIGKILL)
    assert kills == 3
    output = ""
    for log in logs:
        log.seek(0)
        output += log.read()
    assert "Traceback" not in output and "UniqueViolation" not in output, output[-3000:]
    assert "met another writer" not in output, output[-3000:]

    assert_same_timeline(timeline(world), expected, seed=21, what="three workers, one killed three times")
    kept, recounted = _kept_and_recounted(world)
    assert kept == recounted
    _report_summaries_agree(world)
