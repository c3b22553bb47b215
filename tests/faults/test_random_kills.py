"""SIGKILL at random points of a first import, many times over: sometimes the
whole `threadline sync` process group, sometimes only its fetch child
(sync/pipeline.py runs connectors/imapfetch.py there), and first the group while it
starts (claim, login, folder listing), before anything is committed. Whatever was committed
stays, nothing is counted twice, and the import that finally completes leaves
the timeline a clean import leaves, row for row."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.faults.backfill import chance, cli_env, fault_seed, fetch_child, world_for
from tests.faults.timeline import assert_same_timeline, timeline

ROOT = Path(__file__).resolve().parents[2]
KILLS = 8


def test_a_backfill_killed_at_random_many_times_including_its_fetch_child_ends_as_a_clean_import(
    mailbox, imap_user, tmp_path
):
    seed = fault_seed(1503)
    rnd = chance(seed)
    corpus, expected = mailbox
    world = world_for(tmp_path, corpus, "killed")
    mid = world.add_imap(corpus.reps[0][1], imap_user)
    world.set_batch_size(mid, 20)
    env = cli_env(world)
    total = sum(row[3] for row in expected["mailboxes"])
    imported = lambda: world.scalar("SELECT messages_imported FROM mailbox WHERE id = :i", i=mid)  # noqa: E731
    log = []

    def start() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", "sync", "--once", "--mailbox", str(mid)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    # First, twice, the whole group while it starts (claim, login, folder listing), before any commit.
    early = chance(seed + 1)
    for round_ in range(2):
        proc = start()
        time.sleep(early.uniform(0.05, 0.6))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(60)
        log.append((f"early {round_}", "group", 0, imported(), proc.returncode))

    for round_ in range(KILLS):
        target = "child" if rnd.random() < 0.4 else "group"
        # Somewhere in what is left: the import moves on a little between kills.
        left = total - imported()
        when = imported() + int(left * rnd.uniform(0.01, 0.08))
        proc = start()
        deadline = time.monotonic() + 60
        victim = None
        while proc.poll() is None and time.monotonic() < deadline:
            child = fetch_child(proc.pid)
            if child and imported() >= when:
                victim = child if target == "child" else None
                break
            time.sleep(0.005)
        time.sleep(rnd.uniform(0, 0.03))  # not always right at a commit
        with contextlib.suppress(ProcessLookupError):  # it may have ended meanwhile
            if victim is not None:
                os.kill(victim, signal.SIGKILL)  # the parent sees the pipe end and fails the run
            else:
                os.killpg(proc.pid, signal.SIGKILL)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise AssertionError(f"seed {seed}: sync did not end after its fetch child was killed") from None
        log.append((round_, target, when, imported(), proc.returncode))
        if not world.scalar(
            "SELECT count(*) FROM folderstate WHERE mailbox_id = :i AND selected = :t AND backfill_done = :f",
            i=mid,
            t=True,
            f=False,
        ):
            break  # the import completed between two kills

    starts = [entry for entry in log if str(entry[0]).startswith("early")]
    assert all(entry[4] == -signal.SIGKILL for entry in starts), f"seed {seed}: a start ran to its end: {log}"
    kills = [
        entry
        for entry in log
        if entry not in starts and (entry[4] == -signal.SIGKILL or (entry[1] == "child" and entry[4] != 0))
    ]
    assert len(kills) >= 4, f"seed {seed}: too few kills landed during the import: {log}"
    report = world.sync(mid)  # a holder killed on this host is taken over at once
    assert report is not None and report.ok, (seed, report)
    assert_same_timeline(timeline(world), expected, seed=seed, what=f"an import killed {len(kills)} times ({log})")
