#!/usr/bin/env python
"""What an expunge costs the next sync, with QRESYNC and without (connectors/imap.py `_listing`).

    .venv/bin/python bench/imap_expunge.py [--messages 20000] [--rounds 5]

A server with QRESYNC says which UIDs left (VANISHED). One without it (Gmail, Exchange's IMAP,
many hosted servers) does not: STATUS shows that MESSAGES fell, and the connector lists the
folder's UIDs (one UID SEARCH) while the engine reads the folder's stored ids to find what is
gone. This benchmark builds the same rep's mailbox (as bench/imap_sync.py does, not measured)
on two private Dovecots, one as shipped (QRESYNC) and one advertising neither CONDSTORE nor
QRESYNC, imports each with `threadline sync --once` into a fresh SQLite database, then times
in-process runs side by side: a run with nothing new (the baseline), and a run after one
INBOX message was expunged. Every expunge is listed at once here (LISTING_SECONDS set to 0:
the product lists a folder at most every 15 minutes, so this is what one listing costs).
After each expunge it checks that exactly that message went
(its copy, or its skipped or unreadable row).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import imap_sync as bench  # noqa: E402  (the mailbox builder and Threadline's set-up)

from tests.servers import Dovecot  # noqa: E402

# What the "plain" Dovecot advertises after login: its default list without CONDSTORE and QRESYNC.
WITHOUT = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT LITERAL+ UIDPLUS NAMESPACE UNSELECT CHILDREN MOVE"


def held(data: Path) -> int:
    """Messages the database holds for the mailbox: copies stored plus items skipped or unreadable
    (an invitation's meeting copies, `uid#ics…`, are not messages)."""
    import sqlite3

    con = sqlite3.connect(data / "threadline.db")
    try:
        return sum(
            con.execute(f"SELECT count(*) FROM {table} WHERE remote_id NOT LIKE '%#ics%'").fetchone()[0]
            for table in ("interactionsource", "skippeditem", "syncissue")
        )
    finally:
        con.close()


def expunge_one(dv, user: str, rng: random.Random) -> None:
    from imapclient import IMAPClient

    client = IMAPClient(dv.host, port=dv.port, ssl=False)
    client.login(user, bench.PASSWORD)
    client.select_folder("INBOX")
    uids = client.search(["ALL"])
    client.delete_messages([rng.choice(uids)])
    client.expunge()
    client.logout()


def timed_run(rt, mailbox_id: int) -> float:
    from sync.engine import sync_mailbox

    t0 = time.perf_counter()
    report = sync_mailbox(rt.engine, rt.box, mailbox_id, worker="bench", fetch_in_child=False)
    wall = time.perf_counter() - t0
    if not report.ok:
        raise SystemExit(f"sync failed: {report.error}")
    return wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    from app.runtime import open_runtime
    from app.settings import load_settings
    from connectors import imap

    imap.LISTING_SECONDS = 0  # each expunge listed at once: what one listing costs (module docstring)

    work = Path(tempfile.mkdtemp(prefix="tlbench-expunge-"))
    os.chmod(work, 0o755)
    servers = {
        "QRESYNC": Dovecot(work / "qresync", special_use=True),
        "no QRESYNC": Dovecot(work / "plain", special_use=True, extra_config=f"imap_capability = {WITHOUT}"),
    }
    rng = random.Random(args.seed)
    n = args.messages
    results: dict[str, dict[str, list[float]]] = {}
    try:
        boxes = {}
        for name, dv in servers.items():
            dv.start()
            corpus, rep, folders, *_ = bench.build_mailbox(dv, "rep", args.seed, 6, max(40, n // 1000), n)
            data = work / f"threadline-{name.replace(' ', '-')}"
            mailbox_id = bench.setup_threadline(data, corpus, rep, dv.host, dv.port, "rep")
            argv = [bench.PYTHON, "-m", "app.cli", "sync", "--once", "--mailbox", str(mailbox_id)]
            run = subprocess.run(argv, env=bench.threadline_env(data), capture_output=True, text=True)
            if run.returncode != 0:
                raise SystemExit(f"first import failed: {run.stderr[-2000:]}")
            boxes[name] = (dv, data, mailbox_id, folders.get("INBOX", 0))
        print(f"{n:,} messages per mailbox (INBOX {boxes['QRESYNC'][3]:,}); load {os.getloadavg()[0]:.2f}", flush=True)
        for name in servers:
            results[name] = {"nothing new": [], "one expunged": []}
        for r in range(args.rounds):
            order = list(servers) if r % 2 == 0 else list(reversed(servers))
            for name in order:
                dv, data, mailbox_id, _ = boxes[name]
                rt = open_runtime(load_settings({"THREADLINE_DATA_DIR": str(data), "THREADLINE_IDLE": "0"}))
                try:
                    results[name]["nothing new"].append(timed_run(rt, mailbox_id))
                    before = held(data)
                    expunge_one(dv, "rep", rng)
                    results[name]["one expunged"].append(timed_run(rt, mailbox_id))
                    after = held(data)
                    if after != before - 1:
                        raise SystemExit(f"{name}: messages held {before} -> {after} after one expunge")
                finally:
                    rt.engine.dispose()
                print(
                    f"  round {r + 1} {name}: nothing new {results[name]['nothing new'][-1] * 1000:.1f} ms, "
                    f"one expunged {results[name]['one expunged'][-1] * 1000:.1f} ms",
                    flush=True,
                )
        print()
        print(f"{'server':<12} {'nothing new (median)':>22} {'one expunged (median)':>23} {'the expunge costs':>18}")
        for name, runs in results.items():
            quiet, gone = statistics.median(runs["nothing new"]), statistics.median(runs["one expunged"])
            print(f"{name:<12} {quiet * 1000:>19.1f} ms {gone * 1000:>20.1f} ms {(gone - quiet) * 1000:>15.1f} ms")
        print(f"load {os.getloadavg()[0]:.2f}")
    finally:
        for dv in servers.values():
            dv.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
