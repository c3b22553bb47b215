#!/usr/bin/env python
"""Many mailboxes, several workers: `threadline worker` processes on PostgreSQL.

    .venv/bin/python bench/fleet.py [--mailboxes 200] [--messages 2000] [--companies N] [--workers 1,2,4]
                                    [--idle-mailboxes 1000] [--idle-samples 60] [--skip-import] [--skip-idle]

1. Import: a generated company of N reps, each rep's mailbox of exactly M messages
   (demodata: INBOX, Sent, Archive; threads shared between reps; bench/_util.py's
   deliver_exact, as bench/imap_sync.py fills its one mailbox) on one Dovecot, which
   must see all N x M before anything is measured.
   For each worker count W: a fresh PostgreSQL database, the organisation and N
   IMAP mailboxes added through the services, then W `threadline worker`
   processes (IDLE off) started together. Measured: the wall time until every
   mailbox is active, the schedule lag of each mailbox (its first claim,
   mailbox.last_attempt_at, minus the moment the workers started: every mailbox is
   due from the start), and each worker's peak RSS (its own process and with its
   fetch children).
2. IDLE hold: K empty mailboxes (K users on the same Dovecot) synced once, then
   ONE worker (IDLE on) holds them all. Measured: the worker's RSS and threads
   once all K are held, its CPU over a quiet minute (heartbeats, leases, ticks),
   then new-mail latency: a message appended to a random mailbox, one at a time,
   until it is on the timeline (polled every 10 ms), and the CPU per pushed sync.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, REPO)

from bench._util import (  # noqa: E402
    PYTHON,
    _rss_pss_kb,
    code_fingerprint,
    cpu_seconds,
    deliver_exact,
    descendants,
    machine_summary,
    percentile,
    stream_counts,
    table,
    tree_cpu_seconds,
    uptime_line,
)
from tests import factories  # noqa: E402

CODE = ["app/*.py", "app/models/*.py", "app/services/*.py", "sync/*.py", "connectors/*.py"]
PASSWORD = "bench-secret"


def log(msg: str = "") -> None:
    print(msg, flush=True)


def runtime(data_dir: Path, url: str):
    from app.runtime import open_runtime
    from app.settings import load_settings

    return open_runtime(load_settings({"THREADLINE_DATA_DIR": str(data_dir), "THREADLINE_DATABASE_URL": url}))


def add_mailboxes(rt, org_name: str, domains, owners: list[tuple[str, str]], host: str, port: int) -> list[int]:
    """owners: (owner address, IMAP user). Returns the mailbox ids."""
    from app.db import session
    from app.services import mailboxes
    from app.services.actor import Actor

    with session(rt.engine) as s:
        org = factories.create_org(s, org_name, list(domains))
        for email in sorted({o for o, _ in owners}):
            factories.add_user(s, org, email)
        org_id = org.id
    actor = Actor.operator(org_id)
    return [
        mailboxes.add_imap(
            rt, actor, owner=owner, host=host, port=port, security="none", username=user, password=PASSWORD
        )["id"]
        for owner, user in owners
    ]


def worker_env(data_dir: Path, url: str, idle: bool) -> dict:
    return dict(
        os.environ,
        THREADLINE_DATA_DIR=str(data_dir),
        THREADLINE_DATABASE_URL=url,
        THREADLINE_IDLE="1" if idle else "0",
        THREADLINE_SCHEDULER_TICK="1",
        PYTHONPATH=REPO,
    )


def start_worker(env: dict, log_path: Path) -> subprocess.Popen:
    out = open(log_path, "ab")
    return subprocess.Popen(
        [PYTHON, "-m", "app.cli", "worker"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
    )


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Peaks(threading.Thread):
    """Peak RSS of each worker: its own process, and with its children (fetch processes)."""

    def __init__(self, pids: list[int]):
        super().__init__(daemon=True)
        self.pids, self.own, self.tree = pids, defaultdict(int), defaultdict(int)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            for pid in self.pids:
                own = _rss_pss_kb(pid)[0]
                tree = sum(_rss_pss_kb(p)[0] for p in descendants(pid))
                self.own[pid] = max(self.own[pid], own)
                self.tree[pid] = max(self.tree[pid], tree)


# -- 1. import ------------------------------------------------------------------------


def build_company(dv, reps: int, per_mailbox: int, seed: int, companies: int):
    """Deliver a generated company's mail, exactly per_mailbox messages into each rep's own
    Dovecot user (bench/_util.py's deliver_exact: each mailbox gets the first per_mailbox of
    its copies in the stream's time order, threads between reps stay shared). The stream is
    sized by the rep with the smallest share of it in a probe (the manager, who owns no
    customer, gets the least mail), so busier reps' mailboxes fill earlier in the year.
    Returns (corpus, users: rep address -> Dovecot user, folders: user -> Counter, bytes,
    copies generated)."""
    corpus, per, probe = stream_counts(seed, reps, companies, min(max(reps * per_mailbox, 5000), 100_000))
    users = {r.email: f"rep{i:04d}" for i, r in enumerate(corpus.reps)}
    share = max(min(per[rep] for rep in users), 1) / probe
    corpus, folders, size, generated = deliver_exact(
        dv, users, PASSWORD, per_mailbox, share, seed=seed, reps=reps, companies=companies, log=log
    )
    return corpus, users, folders, size, generated


def dovecot_counts(dv, users) -> dict[str, int]:
    """Messages Dovecot itself sees in each user's mailbox, every folder (doveadm)."""

    def count(user: str) -> int:
        out = dv.doveadm("mailbox", "status", "-u", user, "messages", "*").stdout
        return sum(int(tok.split("=", 1)[1]) for tok in out.split() if tok.startswith("messages="))

    with ThreadPoolExecutor(4) as pool:
        return dict(zip(users, pool.map(count, users), strict=True))


def import_run(pg, dv, corpus, users: dict, workers: int, work: Path) -> dict:
    from sqlalchemy import text

    dbname = f"fleet_{workers}w_{int(time.time())}"
    url = pg.create_database(dbname)
    data_dir = work / f"data-{workers}w"
    data_dir.mkdir()
    rt = runtime(data_dir, url)
    ids = add_mailboxes(
        rt, corpus.org_name, corpus.internal_domains, [(e, u) for e, u in users.items()], dv.host, dv.port
    )
    env = worker_env(data_dir, url, idle=False)
    servers_cpu0 = (tree_cpu_seconds(pg.postmaster_pid), tree_cpu_seconds(dv._read_master_pid()))
    started = time.time()
    procs = [start_worker(env, work / f"worker-{workers}w-{n}.log") for n in range(workers)]
    peaks = Peaks([p.pid for p in procs])
    peaks.start()
    first_claim: dict[int, float] = {}
    done_at = None
    try:
        while time.time() - started < 4 * 3600:
            with rt.engine.connect() as conn:
                rows = conn.execute(text("SELECT id, status, last_attempt_at FROM mailbox")).all()
            for mid, _, attempt in rows:
                if attempt is not None and mid not in first_claim:
                    first_claim[mid] = attempt.timestamp()
            failed = [mid for mid, status, _ in rows if status == "failed"]
            if failed:
                raise SystemExit(f"mailboxes failed: {failed[:5]} (see {work}/worker-*.log)")
            if all(status == "active" for _, status, _ in rows):
                done_at = time.time()
                break
            time.sleep(0.25)
    finally:
        peaks.done.set()
        workers_cpu = sum(tree_cpu_seconds(p.pid) for p in procs)
        pg_cpu = tree_cpu_seconds(pg.postmaster_pid) - servers_cpu0[0]
        dovecot_cpu = tree_cpu_seconds(dv._read_master_pid()) - servers_cpu0[1]
        for p in procs:
            stop(p)
    with rt.engine.connect() as conn:
        interactions = conn.execute(text("SELECT count(*) FROM interaction")).scalar()
        copies = conn.execute(text("SELECT count(*) FROM interactionsource")).scalar()
    rt.engine.dispose()
    pg.drop_database(dbname)  # the cluster lives in memory: the next run starts from a fresh one anyway
    lags = sorted(max(0.0, first_claim.get(mid, done_at) - started) for mid in ids)
    return {
        "workers": workers,
        "seconds": done_at - started,
        "lag_p50": percentile(lags, 50),
        "lag_p99": percentile(lags, 99),
        "own_mb": [peaks.own[p.pid] / 1024 for p in procs],
        "tree_mb": [peaks.tree[p.pid] / 1024 for p in procs],
        "interactions": interactions,
        "copies": copies,
        "cpu": (workers_cpu, pg_cpu, dovecot_cpu),
    }


# -- 2. IDLE hold ---------------------------------------------------------------------------


def sockets_of(pid: int) -> int:
    n = 0
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                    n += 1
            except OSError:
                pass
    except OSError:
        pass
    return n


def threads_of(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def idle_run(pg, dv, count: int, samples: int, work: Path, quiet: float = 60.0) -> dict:
    from sqlalchemy import text

    from sync.engine import sync_mailbox
    from tests.world import message

    url = pg.create_database(f"fleet_idle_{int(time.time())}")
    data_dir = work / "data-idle"
    data_dir.mkdir()
    users = [f"idle{i:05d}" for i in range(count)]
    for user in users:
        dv.add_user(user, PASSWORD)
    rt = runtime(data_dir, url)
    owners = [(f"rep{i % 50}@ourco.com", user) for i, user in enumerate(users)]
    ids = add_mailboxes(rt, "OurCo", ["ourco.com"], owners, dv.host, dv.port)
    user_of = dict(zip(ids, users, strict=True))
    owner_of = dict(zip(ids, (o for o, _ in owners), strict=True))
    t0 = time.time()
    with ThreadPoolExecutor(8) as pool:  # the first (empty) sync, so the worker only has to hold them
        reports = list(pool.map(lambda m: sync_mailbox(rt.engine, rt.box, m, fetch_in_child=False), ids))
    assert all(r and r.ok for r in reports), [r for r in reports if not (r and r.ok)][:3]
    log(f"  {count} empty mailboxes synced once in {time.time() - t0:.1f} s")
    proc = start_worker(worker_env(data_dir, url, idle=True), work / "worker-idle.log")
    try:
        t0 = time.time()
        while time.time() - t0 < 600:
            with rt.engine.connect() as conn:
                held = conn.execute(text("SELECT count(*) FROM mailbox WHERE watch_owner IS NOT NULL")).scalar()
            if held == count and sockets_of(proc.pid) >= count:
                break
            time.sleep(0.5)
        hold_seconds = time.time() - t0
        time.sleep(3)  # the last ones in IDLE
        rss_held = _rss_pss_kb(proc.pid)[0] / 1024
        threads = threads_of(proc.pid)
        socks = sockets_of(proc.pid)
        cpu0, quiet0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(quiet)  # holding only: heartbeats, lease renewals, ticks
        quiet_cpu = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - quiet0)
        cpu0 = cpu_seconds(proc.pid)
        rng = random.Random(15)
        latencies = []
        for i in range(-1, samples):  # -1: the first push of the process, reported apart (see below)
            mid = rng.choice(ids)
            key = f"idle-bench-{i + 1}@cust"
            dv.deliver(user_of[mid], message(f"c{i}@cust{i % 9}.com", owner_of[mid], msgid=key))
            sent = time.monotonic()
            while time.monotonic() - sent < 30:
                with rt.engine.connect() as conn:
                    if conn.execute(text("SELECT 1 FROM interaction WHERE message_key = :k"), {"k": key}).first():
                        break
                time.sleep(0.01)
            latencies.append(time.monotonic() - sent)
            time.sleep(0.2)
        # The process's first ingest compiles its SQL statements and fills caches:
        # a one-off after start, not part of the steady state that p99 describes.
        first = latencies.pop(0)
        rss_after = _rss_pss_kb(proc.pid)[0] / 1024
        cpu_per_push = (cpu_seconds(proc.pid) - cpu0 - quiet_cpu * (samples + 1) * 0.2) / (samples + 1)
    finally:
        stop(proc)
    rt.engine.dispose()
    log(f"  baseline: the same {count} mailboxes, a thread and an imapclient each in idle_check...")
    baseline = thread_baseline(dv, count)
    latencies.sort()
    return {
        "mailboxes": count,
        "hold_seconds": hold_seconds,
        "rss_held": rss_held,
        "rss_after": rss_after,
        "threads": threads,
        "sockets": socks,
        "quiet_cpu": quiet_cpu,
        "cpu_per_push": cpu_per_push,
        "lat_p50": percentile(latencies, 50),
        "lat_p99": percentile(latencies, 99),
        "lat_max": latencies[-1],
        "first": first,
        "baseline": baseline,
    }


def thread_per_mailbox_child(host: str, port: int, users: list[str]) -> None:
    """The first design, as a baseline: a thread per mailbox, each an imapclient in
    idle_check (what sync/scheduler.py's IdleWatcher did). Prints its RSS and threads
    once every connection is in IDLE."""
    from imapclient import IMAPClient

    ready = threading.Semaphore(0)
    before = _rss_pss_kb(os.getpid())[0] / 1024

    def hold(user: str) -> None:
        client = IMAPClient(host, port=port, ssl=False, timeout=60)
        client.login(user, PASSWORD)
        client.select_folder("INBOX", readonly=True)
        client.idle()
        ready.release()
        while True:
            client.idle_check(timeout=30)

    for user in users:
        threading.Thread(target=hold, args=(user,), daemon=True).start()
    for _ in users:
        ready.acquire()
    time.sleep(2)
    print(f"{_rss_pss_kb(os.getpid())[0] / 1024:.1f} {threads_of(os.getpid())} {before:.1f}", flush=True)


def thread_baseline(dv, count: int) -> tuple[float, int, float]:
    users = [f"idle{i:05d}" for i in range(count)]
    proc = subprocess.Popen(
        [PYTHON, __file__, "--baseline-child", dv.host, str(dv.port), ",".join(users)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        rss, threads, before = proc.stdout.readline().split()
    finally:
        proc.kill()
        proc.wait()
    return float(rss), int(threads), float(before)


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--baseline-child":
        thread_per_mailbox_child(sys.argv[2], int(sys.argv[3]), sys.argv[4].split(","))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mailboxes", type=int, default=200, help="reps' mailboxes to import (default 200)")
    ap.add_argument("--messages", type=int, default=2000, help="messages in every mailbox, exactly (default 2000)")
    ap.add_argument(
        "--companies",
        type=int,
        default=None,
        help="customer companies in the corpus (default max(40, all messages/1000))",
    )
    ap.add_argument("--workers", default="1,2,4", help="worker counts to compare (default 1,2,4)")
    ap.add_argument("--idle-mailboxes", type=int, default=1000, help="mailboxes one worker holds in IDLE")
    ap.add_argument("--idle-samples", type=int, default=60, help="new messages timed in the IDLE part")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--skip-import", action="store_true")
    ap.add_argument("--skip-idle", action="store_true")
    args = ap.parse_args()

    from tests.servers import Dovecot, Postgres

    log(f"# bench/fleet.py  {machine_summary()}")
    log(f"# code {code_fingerprint(CODE)}")
    work = Path(tempfile.mkdtemp(prefix="fleet-"))
    # One imap process per IDLE connection (Dovecot's default) would be 1,000 processes
    # on the server; client_limit lets each hold many, as a large installation would.
    dv = Dovecot(
        work / "dovecot",
        in_memory=True,
        max_userip_connections=10,
        imap_client_limit=50,
    ).start()
    pg = Postgres(work / "pg", in_memory=True).start()
    try:
        if not args.skip_import:
            t0 = time.time()
            companies = args.companies or max(40, args.mailboxes * args.messages // 1000)
            corpus, users, folders, size, generated = build_company(
                dv, args.mailboxes, args.messages, args.seed, companies
            )
            counts = {user: sum(f.values()) for user, f in folders.items()}
            total = sum(counts.values())
            seen = dovecot_counts(dv, list(users.values()))
            log(
                f"\n## Import: {len(users)} mailboxes, {total:,} messages "
                f"({min(counts.values())}-{max(counts.values())} per mailbox; Dovecot sees {sum(seen.values()):,}, "
                f"{min(seen.values())}-{max(seen.values())} per mailbox), {size / total / 1024:.1f} KiB mean; "
                f"corpus: {len(corpus.reps)} reps, {companies} companies, {generated:,} copies generated to fill "
                f"every mailbox; built in {time.time() - t0:.0f} s"
            )
            if seen != counts:
                bad = [u for u in counts if seen[u] != counts[u]][:5]
                log(f"error: Dovecot does not see every delivered message: {[(u, counts[u], seen[u]) for u in bad]}")
                return 1
            rows = []
            for w in [int(x) for x in args.workers.split(",")]:
                log(f"  {w} worker(s)... {uptime_line()}")
                r = import_run(pg, dv, corpus, users, w, work)
                rows.append(
                    [
                        r["workers"],
                        f"{r['seconds']:.1f}",
                        f"{total / r['seconds']:,.0f}",
                        f"{r['lag_p50']:.1f}",
                        f"{r['lag_p99']:.1f}",
                        " / ".join(f"{x:.0f}" for x in r["own_mb"]),
                        " / ".join(f"{x:.0f}" for x in r["tree_mb"]),
                        f"{r['interactions']:,} / {r['copies']:,}",
                        " / ".join(f"{1e6 * c / total:.0f}" for c in r["cpu"]),
                    ]
                )
                log(f"    {rows[-1]}  {uptime_line()}")
            log(
                table(
                    [
                        "workers",
                        "import s",
                        "msg/s",
                        "lag p50 s",
                        "lag p99 s",
                        "worker RSS MB",
                        "with fetch children MB",
                        "interactions / copies",
                        "CPU µs/msg workers / PostgreSQL / Dovecot",
                    ],
                    rows,
                )
            )
        if not args.skip_idle:
            log(f"\n## IDLE hold: {args.idle_mailboxes} mailboxes, one worker  {uptime_line()}")
            r = idle_run(pg, dv, args.idle_mailboxes, args.idle_samples, work)
            log(
                table(
                    ["mailboxes", "all held after s", "RSS MB held", "RSS MB after", "threads", "sockets"]
                    + ["CPU holding %", "CPU per pushed sync ms", "first push s", "new mail p50 s", "p99 s", "max s"],
                    [
                        [
                            r["mailboxes"],
                            f"{r['hold_seconds']:.1f}",
                            f"{r['rss_held']:.0f}",
                            f"{r['rss_after']:.0f}",
                            r["threads"],
                            r["sockets"],
                            f"{100 * r['quiet_cpu']:.1f}",
                            f"{1000 * r['cpu_per_push']:.0f}",
                            f"{r['first']:.2f}",
                            f"{r['lat_p50']:.2f}",
                            f"{r['lat_p99']:.2f}",
                            f"{r['lat_max']:.2f}",
                        ]
                    ],
                )
            )
            log(
                f"baseline, a thread per mailbox (imapclient idle_check): RSS {r['baseline'][0]:.0f} MB, "
                f"{r['baseline'][1]} threads"
            )
    finally:
        pg.stop()
        dv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
