"""Many mailboxes per worker: one worker holds IDLE on hundreds of mailboxes with a
fixed number of threads, new mail still reaches the timeline within two seconds, and
workers share the mailboxes by lease (a killed worker's are taken over)."""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from app.models.base import utcnow
from sync.scheduler import SyncService, claim_watches
from tests.sync.test_scheduling import PUSH_BOUND, _wait_for
from tests.world import make_world, message, runtime_env

pytestmark = pytest.mark.servers
ROOT = Path(__file__).resolve().parents[2]


def _mailboxes(world, imap_user_factory, n: int) -> dict[int, object]:
    """n IMAP mailboxes of alice on the shared Dovecot, each synced once (empty)."""
    users = [imap_user_factory() for _ in range(n)]
    ids = {world.add_imap("alice@ourco.com", user): user for user in users}
    with ThreadPoolExecutor(4) as pool:
        reports = list(pool.map(lambda m: world.sync(m, fetch_in_child=False), ids))
    assert all(r.ok for r in reports)
    # No poll for an hour: whatever reaches the timeline meanwhile was pushed (_pushed).
    with world.rt.engine.begin() as conn:
        conn.execute(text("UPDATE mailbox SET next_sync_at = :at"), {"at": utcnow() + timedelta(hours=1)})
    return ids


def _on_timeline(world, key: str) -> bool:
    return bool(world.scalar("SELECT count(*) FROM interaction WHERE message_key = :k", k=key))


def _pushed(world, mid: int, user, key: str) -> None:
    """Deliver a message and wait for it on the timeline, long before the mailbox's next poll
    (test_scheduling.PUSH_BOUND says why this is a bound and not a speed)."""
    assert world.seconds_to_next_poll(mid) > 10 * PUSH_BOUND
    user.deliver(message(f"{key.split('@')[0]}@cust.com", "alice@ourco.com", msgid=key))
    assert _wait_for(lambda: _on_timeline(world, key), PUSH_BOUND, 0.01), f"{key} was not pushed to the timeline"


def test_one_worker_holds_idle_on_200_mailboxes_with_a_few_threads_and_new_mail_is_pushed_to_the_timeline(
    tmp_path, imap_user_factory
):
    world = make_world(tmp_path)
    ids = _mailboxes(world, imap_user_factory, 200)
    threads_before = threading.active_count()
    service = SyncService(world.rt, idle=True)
    service.start()
    try:
        assert _wait_for(lambda: len(service.hub.live) == 200, 60), f"{len(service.hub.live)} of 200 in IDLE"
        # One selector thread, a few openers and the sync pool: not a thread per connection.
        assert threading.active_count() - threads_before < 20, threading.active_count()
        time.sleep(0.5)  # the last ones entered IDLE
        rng = random.Random(15)
        for i, mid in enumerate(rng.sample(sorted(ids), 8)):
            _pushed(world, mid, ids[mid], f"fleet{i}@cust")
    finally:
        service.stop()
    # Stopping hands the mailboxes back at once.
    assert world.scalar("SELECT count(*) FROM mailbox WHERE watch_owner IS NOT NULL") == 0


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request, tmp_path):
    url = request.getfixturevalue("postgres_migrated_url") if request.param == "postgresql" else None
    return make_world(tmp_path, url=url)


def test_racing_workers_share_the_mailboxes_to_watch_and_never_both_hold_one(world, imap_user):
    ids = [world.add_imap("alice@ourco.com", imap_user) for _ in range(30)]
    with world.rt.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE mailbox SET status = 'active'")
    barrier = threading.Barrier(3)
    held: dict[str, set[int]] = {}

    def race(name):
        barrier.wait()
        held[name] = set(claim_watches(world.rt.engine, name, 60, limit=12))

    threads = [threading.Thread(target=race, args=(f"host{n}:1:x",)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(len(h) <= 12 for h in held.values()), held
    assert sum(len(h) for h in held.values()) == 30 and set().union(*held.values()) == set(ids)
    # A paused mailbox is let go at the next renewal.
    someone, theirs = next((k, v) for k, v in held.items() if v)
    paused = min(theirs)
    with world.rt.engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE mailbox SET status = 'paused' WHERE id = {paused}")
    assert paused not in claim_watches(world.rt.engine, someone, 60, limit=12)


def _worker(env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.mark.parametrize("survivor", ["on the same host", "on another host"])
def test_a_killed_workers_mailboxes_are_watched_by_another_within_the_lease_time(tmp_path, imap_user_factory, survivor):
    # A lease is renewed when half of it is gone, so at the kill between half and all of it is
    # left. On the same host the survivor must beat half the lease (the dead pid is seen), which
    # a long lease makes unmistakable; on another host only the lease's end frees them.
    lease = 30 if survivor == "on the same host" else 8
    world = make_world(tmp_path)
    ids = _mailboxes(world, imap_user_factory, 20)
    env = dict(
        os.environ,
        **runtime_env(world.rt.settings.data_dir),
        THREADLINE_SCHEDULER_TICK="0.5",
        THREADLINE_IDLE_LEASE_SECONDS=str(lease),
    )
    first = _worker(env)
    try:
        owners = _wait_for(
            lambda: (lambda rows: rows if len(rows) == 1 and rows[0][1] == 20 else None)(
                world.sql("SELECT watch_owner, count(*) FROM mailbox WHERE watch_owner IS NOT NULL GROUP BY 1")
            ),
            60,
            0.2,
        )
        assert owners and f":{first.pid}:" in owners[0][0], owners
        time.sleep(1)  # in IDLE
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    killed = time.monotonic()
    if survivor == "on another host":  # as if the dead worker had run on another machine: no pid to check
        with world.rt.engine.begin() as conn:
            conn.exec_driver_sql(f"UPDATE mailbox SET watch_owner = 'far-away:{first.pid}:other-boot'")
    world.rt.settings = dataclasses.replace(world.rt.settings, idle_lease_seconds=lease, scheduler_tick_seconds=0.5)
    service = SyncService(world.rt, idle=True)
    service.start()
    try:
        assert _wait_for(lambda: len(service.hub.live) == 20, lease + 20), len(service.hub.live)
        taken = time.monotonic() - killed
        mid = random.Random(7).choice(sorted(ids))
        _pushed(world, mid, ids[mid], "after-kill@cust")
    finally:
        service.stop()
    if survivor == "on the same host":  # the dead process is seen as dead: no need to wait for the lease
        assert taken < lease / 2, taken
    else:  # only the lease's end frees them (10 s of slack for a loaded machine to open 20 sessions)
        assert lease / 2 - 1 < taken < lease + 10, taken
