#!/usr/bin/env python
"""The sidebar's lookup API while a big first import runs, on SQLite and on PostgreSQL.

    .venv/bin/python bench/lookup_during_import.py [--messages 100000] [--database both] [--rate 500]
                                                   [--import-nice 10] [--py-spy PATH --spy-dir DIR]

1. Builds ONE rep's mailbox of N messages on a private Dovecot (bench/imap_sync.py's
   builder, demodata). Not measured.
2. For each database (SQLite in the data dir; a database on a private PostgreSQL
   cluster): an organisation with the corpus's reps, the rep's IMAP mailbox, a token;
   the API under uvicorn in its own process (bench/_api_server.py, no scheduler).
3. Starts the first import (`python -m app.cli sync --once`, its own process, under
   `nice -n 10` as `threadline worker` runs by default; `--import-nice 0` for none) and at
   the same moment an open-loop load of GET /api/lookup at --rate requests/s for the
   corpus's contact addresses (bench/_loadgen.py), which stops when the import ends.
   Latency counts from each request's scheduled send time. 200 (known contact) and
   404 (not imported yet) are both answers; an error is any other status, a refused
   or cut connection, or no answer within 10 s.
4. Prints both databases side by side: import time and rate under the load, and the
   lookups' count, errors and latency percentiles.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, REPO)

from bench._util import PYTHON, code_fingerprint, machine_summary, table, tree_cpu_seconds, uptime_line  # noqa: E402
from bench.api_lookup import start_server, stop_server  # noqa: E402
from bench.imap_sync import PASSWORD, build_mailbox  # noqa: E402
from tests import factories  # noqa: E402

CODE = ["app/*.py", "app/api/*.py", "app/services/*.py", "sync/*.py", "connectors/*.py", "migrations/versions/*.py"]


def log(msg: str = "") -> None:
    print(msg, flush=True)


def prepare(data_dir: Path, url: str | None, corpus, rep: str, dv, user: str) -> tuple[dict, int, str]:
    """The organisation, the rep's mailbox and a token for that rep: (env, mailbox id, token)."""
    from app.db import session
    from app.runtime import open_runtime
    from app.services import mailboxes
    from app.services.actor import Actor
    from app.settings import load_settings

    env = dict(os.environ, THREADLINE_DATA_DIR=str(data_dir), THREADLINE_IDLE="0", PYTHONPATH=REPO, TERM="dumb")
    env.pop("THREADLINE_DATABASE_URL", None)
    if url:
        env["THREADLINE_DATABASE_URL"] = url
    rt = open_runtime(load_settings(env))
    try:
        with session(rt.engine) as s:
            org = factories.create_org(s, corpus.org_name, list(corpus.internal_domains))
            users = {r.email: factories.add_user(s, org, r.email, name=r.name) for r in corpus.reps}
            token = factories.issue_token(s, users[rep], name="bench")
            org_id = org.id
        mailbox_id = mailboxes.add_imap(
            rt,
            Actor.operator(org_id),
            owner=rep,
            host=dv.host,
            port=dv.port,
            security="none",
            username=user,
            password=PASSWORD,
        )["id"]
    finally:
        rt.engine.dispose()
    return env, mailbox_id, token


def imported(env: dict) -> tuple[int, int, str]:
    """(interactions, messages imported or skipped with a reason, mailbox status) after the import."""
    from sqlalchemy import text

    from app.db import make_engine
    from app.settings import load_settings

    engine = make_engine(load_settings(env).database_url)
    try:
        with engine.connect() as conn:
            inter = conn.execute(text("SELECT count(*) FROM interaction")).scalar()
            done, skipped, status = conn.execute(text("SELECT messages_imported, skipped, status FROM mailbox")).one()
            if conn.dialect.name == "postgresql":
                # How the tables were read during the run: rows read by sequential scans mean a plan
                # that did not use an index (on tables that grew from empty during the import).
                scans = conn.execute(
                    text(
                        "SELECT relname, seq_scan, seq_tup_read, idx_scan, n_live_tup, autoanalyze_count "
                        "FROM pg_stat_user_tables WHERE seq_tup_read > 100000 OR relname IN "
                        "('participant', 'interaction', 'contact', 'contactaddress', 'contactcolleagueday') "
                        "ORDER BY seq_tup_read DESC"
                    )
                ).all()
                log("  PostgreSQL tables (seq scans, rows they read, index scans, live rows, auto-analyzes):")
                for r in scans:
                    log(
                        f"    {r[0]}: {r[1]:,} seq scans reading {r[2]:,} rows, {r[3] or 0:,} index scans, "
                        f"{r[4]:,} rows, analyzed {r[5]}x"
                    )
    finally:
        engine.dispose()
    if isinstance(skipped, str):  # JSON: text on SQLite, decoded on PostgreSQL
        skipped = json.loads(skipped or "{}")
    return inter, done + sum((skipped or {}).values()), status


def run_one(name: str, url: str | None, work: Path, corpus, rep: str, dv, user: str, args) -> dict:
    data_dir = work / name
    env, mailbox_id, token = prepare(data_dir, url, corpus, rep, dv, user)
    emails = work / f"{name}-emails.txt"
    emails.write_text("\n".join(c.email for c in corpus.contacts) + "\n")
    stop_file = work / f"{name}-import-done"
    server, port = start_server(work, env, 1)
    spy = None
    try:
        cpu0 = tree_cpu_seconds(server.pid)
        if args.py_spy:
            # Where the API's time goes during the import: py-spy samples the server (all its
            # threads, idle ones left out) into collapsed stacks, one line per stack and its count.
            spy = subprocess.Popen(
                [args.py_spy, "record", "--pid", str(server.pid), "--format", "raw", "--rate", "200"]
                + ["--output", str(Path(args.spy_dir) / f"{name}-api.txt"), "--nonblocking"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        loadgen = subprocess.Popen(
            [PYTHON, str(Path(REPO) / "bench" / "_loadgen.py"), "--port", str(port), "--token", token]
            + ["--path", "lookup", "--emails", str(emails), "--mode", "open", "--rate", str(args.rate)]
            + ["--duration", "7200", "--stop-file", str(stop_file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out: dict = {}
        reader = threading.Thread(target=lambda: out.update(stdout=loadgen.communicate()))
        reader.start()
        t0 = time.perf_counter()
        sync = subprocess.run(
            (["nice", "-n", str(args.import_nice)] if args.import_nice else [])
            + [PYTHON, "-m", "app.cli", "sync", "--once", "--mailbox", str(mailbox_id)],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        import_s = time.perf_counter() - t0
        stop_file.touch()
        reader.join()
        server_cpu = tree_cpu_seconds(server.pid) - cpu0
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file when interrupted
            spy.wait(60)
        stop_server(server)
    stdout, stderr = out["stdout"]
    if loadgen.returncode != 0:
        raise SystemExit(f"load generator failed: {stderr[-3000:]}")
    load = json.loads(stdout.strip().splitlines()[-1])
    if sync.returncode != 0:
        log(f"  {name}: the import failed (rc={sync.returncode}): {sync.stdout[-1500:]}{sync.stderr[-1500:]}")
    interactions, copies, status = imported(env)
    answered = load["ok"] + load["non_200"].get("404", 0)
    errors = load["requests"] - answered
    log(
        f"  {name}: import rc={sync.returncode} {import_s:.1f}s, {copies:,} messages seen, {interactions:,} interactions, "
        f"mailbox {status}; lookups {load['requests']:,} ({load['ok']:,} found, "
        f"{load['non_200'].get('404', 0):,} not yet), errors {errors} {load['errors'] or ''}"
        f"{ {k: v for k, v in load['non_200'].items() if k != '404'} or '' }; "
        f"offered {load['offered_rate_achieved']:.0f}/s; API CPU {server_cpu:.1f}s; load average {uptime_line()}"
    )
    return {
        "name": name,
        "import_ok": sync.returncode == 0 and copies == args.messages,
        "import_s": import_s,
        "copies": copies,
        "errors": errors,
        "load": load,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=100_000, help="messages in the mailbox (default 100000)")
    ap.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--rate", type=float, default=500.0, help="lookups per second (default 500)")
    ap.add_argument("--reps", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs")
    ap.add_argument(
        "--py-spy", metavar="PATH", help="diagnostic: sample the API server with this py-spy binary during the import"
    )
    ap.add_argument("--spy-dir", default=".", help="where --py-spy writes <database>-api.txt (collapsed stacks)")
    ap.add_argument(
        "--import-nice",
        type=int,
        default=10,
        help="run the import under `nice -n N` (default 10, the nice value `threadline worker` runs at by default, "
        "THREADLINE_WORKER_NICE; 0 = normal priority)",
    )
    args = ap.parse_args()
    n = args.messages
    names = ("sqlite", "postgresql") if args.database == "both" else (args.database,)

    from tests.servers import Dovecot, Postgres

    niced = f", the import under nice -n {args.import_nice}" if args.import_nice else ""
    log(f"== /api/lookup at {args.rate:.0f}/s during a {n:,}-message first import{niced} ==")
    log(machine_summary())
    log("code measured: " + code_fingerprint(CODE))
    work = Path(tempfile.mkdtemp(prefix="tlbench-lookup-import-"))
    os.chmod(work, 0o755)
    dv = Dovecot(work / "dovecot", special_use=True, keep_data=args.keep)
    pg = Postgres(work / "postgres", keep_data=args.keep) if "postgresql" in names else None
    results = []
    try:
        t0 = time.perf_counter()
        (work / "dovecot").mkdir()
        dv.start()
        if pg:
            (work / "postgres").mkdir()
            pg.start()
        user = "rep"
        corpus, rep, folders, size, _ = build_mailbox(dv, user, args.seed, args.reps, max(40, n // 1000), n)
        log(
            f"built the mailbox of {rep}: {n:,} messages ({size / 2**20:.0f} MiB) in {folders}, "
            f"{len(corpus.contacts):,} contacts to look up; {time.perf_counter() - t0:.0f}s (not measured)"
        )
        for name in names:
            url = pg.create_database("bench") if name == "postgresql" else None
            results.append(run_one(name, url, work, corpus, rep, dv, user, args))
    finally:
        if pg:
            pg.stop()
        dv.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    def ms(v: float) -> str:
        return "inf" if v == float("inf") else f"{v:.1f}"

    log("")
    rows = [
        [
            r["name"],
            f"{r['copies']:,}",
            f"{r['import_s']:.1f}",
            f"{r['copies'] / r['import_s']:,.0f}",
            f"{r['load']['requests']:,}",
            r["errors"],
            ms(r["load"]["p50_ms"]),
            ms(r["load"]["p90_ms"]),
            ms(r["load"]["p99_ms"]),
            ms(r["load"]["max_ms"]),
        ]
        for r in results
    ]
    log(
        table(
            ["database", "imported", "import s", "msg/s", "lookups", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms"],
            rows,
        )
    )
    ok = all(r["errors"] == 0 and r["import_ok"] for r in results)
    log(f"\nzero errors and every message imported on each database: {'yes' if ok else 'NO'}")
    log(f"uptime at the end: {uptime_line()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
