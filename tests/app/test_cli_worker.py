"""`threadline worker` syncs due mailboxes on its own and stops cleanly;
`threadline mailbox set-password` repairs a failing mailbox."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app import settings as process
from connectors.base import Batch, Folder
from sync.engine import LeaseLost, _write_batch, claim, load_mailbox
from sync.ingest import MailboxContext
from tests.cli import run_cli
from tests.world import make_world, message, runtime_env

pytestmark = pytest.mark.servers  # real servers or the CLI in subprocesses

ROOT = Path(__file__).resolve().parents[2]


def _cli(env, *args, check=True):
    """A command in-process (tests/cli.py), with `env` as its whole environment."""
    proc = run_cli(args, env)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _cli_process(env, *args):
    """A command in a process of its own: a lease holder other than this test's process
    (in-process, the command's worker id would be this test's)."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_worker_syncs_and_set_password_repairs(tmp_path, imap_user):
    env = dict(os.environ, **runtime_env(tmp_path, THREADLINE_IDLE="0", THREADLINE_SCHEDULER_TICK="0.5"))
    _cli(env, "org", "init", "--name", "OurCo", "--domain", "ourco.com")
    _cli(env, "user", "add", "alice@ourco.com")
    imap_user.deliver(message("Client <client@cust.com>", "alice@ourco.com", "Hello", msgid="w1@cust"))
    _cli(
        {**env, "THREADLINE_IMAP_PASSWORD": "wrong-password"},
        "mailbox",
        "add-imap",
        "--owner",
        "alice@ourco.com",
        "--host",
        imap_user.host,
        "--port",
        str(imap_user.port),
        "--security",
        "none",
        "--username",
        imap_user.username,
        "--no-check",
    )  # a wrong password on purpose: the check would refuse it

    worker = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def status():
            rows = json.loads(_cli(env, "mailbox", "list", "--json").stdout)
            return rows[0]

        deadline = time.time() + 60
        while time.time() < deadline and status()["status"] != "failed":
            time.sleep(0.5)
        failed = status()
        assert (
            failed["status"] == "failed"
            and failed["last_error_kind"] == "auth"
            and "login refused" in failed["last_error"]
        )

        # It gives the CPU to the web app's requests first: the worker runs niced (setting default 10).
        assert os.getpriority(os.PRIO_PROCESS, worker.pid) == max(10, os.getpriority(os.PRIO_PROCESS, 0))

        _cli({**env, "THREADLINE_IMAP_PASSWORD": imap_user.password}, "mailbox", "set-password", str(failed["id"]))
        deadline = time.time() + 60
        while time.time() < deadline and status()["status"] != "active":
            time.sleep(0.5)
        assert status()["status"] == "active"
        timeline = json.loads(_cli(env, "timeline", "client@cust.com", "--json").stdout)
        assert timeline["contact"]["email"] == "client@cust.com"
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, output
    # The worker said so when the mailbox failed, with the time and the reason.
    assert "WARNING threadline.scheduler: sync of mailbox 1 failed (auth)" in output, output
    assert imap_user.password not in output and "wrong-password" not in output


def test_lowering_cpu_priority_never_raises_it_and_reaches_threads_and_children_made_after():
    script = (
        "import os, subprocess, sys, threading\n"
        "from app.runtime import lower_cpu_priority\n"
        "first = lower_cpu_priority(7)\n"
        "second = lower_cpu_priority(3)\n"
        "seen = []\n"
        "t = threading.Thread(target=lambda: seen.append(os.getpriority(os.PRIO_PROCESS, 0)))\n"
        "t.start(); t.join()\n"
        "child = subprocess.run([sys.executable, '-c', 'import os; print(os.getpriority(os.PRIO_PROCESS, 0))'],"
        " capture_output=True, text=True).stdout.strip()\n"
        "print(first, second, seen[0], child)\n"
    )
    base = os.getpriority(os.PRIO_PROCESS, 0)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    want = max(7, base)
    assert proc.stdout.split() == [str(want)] * 4


@pytest.fixture(params=["sqlite", "postgresql"])
def cli_world(request, tmp_path):
    """A world the CLI sees too: (world, env)."""
    url = request.getfixturevalue("postgres_migrated_url") if request.param == "postgresql" else None
    world = make_world(tmp_path, url=url)
    env = dict(
        os.environ,
        THREADLINE_DATA_DIR=str(world.rt.settings.data_dir),
        THREADLINE_IDLE="0",
        THREADLINE_SYNC_LEASE_SECONDS="300",
        THREADLINE_DATABASE_URL=world.rt.settings.database_url,
    )
    return world, env


def test_a_killed_sync_once_is_taken_over_at_once_by_the_next_run(cli_world, imap_user):
    world, env = cli_world
    imap_user.deliver_many(
        [
            (message(f"c{i % 40}@cust{i % 7}.com", "alice@ourco.com", f"S{i}", msgid=f"k{i}@cust"), "INBOX", None)
            for i in range(600)
        ]
    )
    mid = world.add_imap("alice@ourco.com", imap_user)
    world.set_batch_size(mid, 10)
    world.kill_cli_sync_midway(mid, env)
    assert world.sql("SELECT sync_stage FROM mailbox") == [("running",)]  # the dead run's lease: 300 s to go

    started = time.monotonic()
    rerun = _cli(env, "sync", "--once", "--mailbox", str(mid))
    assert f"mailbox {mid}: ok" in rerun.stdout, rerun.stdout
    assert time.monotonic() - started < 120
    assert world.sql("SELECT status, sync_stage FROM mailbox") == [("active", "idle")]
    assert world.scalar("SELECT count(*) FROM interaction") == 600


def test_sync_once_on_a_mailbox_a_live_worker_holds_is_not_a_success_until_forced(cli_world, imap_user):
    world, env = cli_world
    imap_user.deliver(message("Client <client@cust.com>", "alice@ourco.com", "Hello", msgid="held@cust"))
    mid = world.add_imap("alice@ourco.com", imap_user)
    live_holder = process.worker_id()  # this test's own process: alive
    assert claim(world.rt.engine, mid, live_holder, 300)

    busy = _cli_process(env, "sync", "--once", "--mailbox", str(mid))
    assert busy.returncode == 1, busy.stdout + busy.stderr
    assert "NOT synced" in busy.stdout and live_holder in busy.stdout and "--force" in busy.stdout
    assert world.scalar("SELECT count(*) FROM interaction") == 0

    forced = _cli_process(env, "sync", "--once", "--mailbox", str(mid), "--force")
    assert f"mailbox {mid}: ok" in forced.stdout, forced.stdout + forced.stderr
    assert world.sql("SELECT message_key FROM interaction") == [("held@cust",)]
    # The holder that was overruled can no longer write.
    with world.rt.engine.begin() as conn, pytest.raises(LeaseLost):
        org = load_mailbox(conn, world.rt.box, mid)[2]
        _write_batch(
            conn, org, MailboxContext(mid, 0, 0, ""), live_holder, 60, Folder("INBOX", "inbox"), Batch([], [], {})
        )
