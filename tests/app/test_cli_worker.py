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

from tests.world import message

pytestmark = pytest.mark.servers  # real servers or the CLI in subprocesses

ROOT = Path(__file__).resolve().parents[2]


def _cli(env, *args, check=True):
    proc = subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_worker_syncs_and_set_password_repairs(tmp_path, imap_user):
    env = dict(os.environ, THREADLINE_DATA_DIR=str(tmp_path), THREADLINE_IDLE="0", THREADLINE_SCHEDULER_TICK="0.5")
    _cli(env, "org", "init", "--name", "OurCo", "--domain", "ourco.com")
    _cli(env, "user", "add", "alice@ourco.com")
    imap_user.deliver(message("Client <client@cust.com>", "alice@ourco.com", "Hello", msgid="w1@cust"))
    _cli({**env, "THREADLINE_IMAP_PASSWORD": "wrong-password"}, "mailbox", "add-imap", "--owner", "alice@ourco.com",
         "--host", imap_user.host, "--port", str(imap_user.port), "--security", "none", "--username", imap_user.username)

    worker = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def status():
            rows = json.loads(_cli(env, "mailbox", "list", "--json").stdout)
            return rows[0]

        deadline = time.time() + 60
        while time.time() < deadline and status()["status"] != "failed":
            time.sleep(0.5)
        failed = status()
        assert failed["status"] == "failed" and "password" in failed["last_error"]

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
