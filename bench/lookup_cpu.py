#!/usr/bin/env python
"""CPU per lookup in process, with no HTTP: the client's (driver and service) and, on
PostgreSQL, the server backend's, with the statements each lookup sends; for one or more
versions of the code against the same database, run in turn.

    .venv/bin/python bench/lookup_cpu.py [--contacts 20000] [--interactions 200000]
        [--database postgresql|sqlite|both] [--lookups 1000] [--rounds 5] [--code DIR ...]

Builds the database of bench/api_lookup.py (and its PostgreSQL copy), issues a token, then
for each round and each --code directory (a checkout of Threadline, this one by default;
the order alternates between rounds, as the machine is shared) runs a child process with
that directory's code. The child does what the API does for one lookup (app/api/deps.py
run_db_as and app/api/contacts.py): the token check and the lookup in one call on the
plain reader (PostgresReaders / SqliteReader), for random contacts, after a warm-up.
It reports the process's CPU per lookup (time.process_time), the PostgreSQL backend's
(/proc/PID/stat of pg_backend_pid(), the server on this machine) and the statements per
lookup. The figures printed are medians over the rounds, per version and database.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = str(Path(__file__).resolve().parent.parent)


def _backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child(args) -> None:
    """Runs with the code of the directory it was started in (cwd and sys.path)."""
    sys.path.insert(0, os.getcwd())
    from app.api import contacts as api_contacts
    from app.api.deps import Caller, _token_owner
    from app.db import PostgresReaders, SqliteReader, make_engine
    from app.services.orgs import hash_token

    emails = Path(args.emails).read_text().split()
    rng = random.Random(args.seed)
    token_hash = hash_token(args.token)
    counted = [0]

    def wrap(reader):
        rows = reader.rows

        def counting(sql, params=()):
            counted[0] += 1
            return rows(sql, params)

        reader.rows = counting
        return reader

    def one(conn, email):
        row = _token_owner(conn, token_hash)
        return api_contacts._lookup_or_unknown(conn, Caller(*row), email, 20)

    backend = None
    if args.url.startswith("postgresql"):
        readers = PostgresReaders(make_engine(args.url))
        reader = wrap(readers._take())
        backend = reader.rows("SELECT pg_backend_pid()")[0][0]
        readers._give(reader)

        def run(email):
            return readers.run(one, email)

    else:
        reader = wrap(SqliteReader(args.url.split("///", 1)[1]))

        def run(email):
            with reader.snapshot():
                return one(reader, email)

    for _ in range(200):
        run(rng.choice(emails))
    pool = [rng.choice(emails) for _ in range(args.lookups)]
    counted[0] = 0
    s0 = _backend_cpu(backend) if backend else 0.0
    c0, w0 = time.process_time(), time.perf_counter()
    for e in pool:
        run(e)
    c1, w1 = time.process_time(), time.perf_counter()
    s1 = _backend_cpu(backend) if backend else 0.0
    n = len(pool)
    print(
        json.dumps(
            {
                "client_ms": (c1 - c0) * 1000 / n,
                "server_ms": (s1 - s0) * 1000 / n,
                "wall_ms": (w1 - w0) * 1000 / n,
                "statements": counted[0] / n,
            }
        )
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--contacts", type=int, default=20_000)
    ap.add_argument("--interactions", type=int, default=200_000)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="postgresql")
    ap.add_argument("--lookups", type=int, default=1000, help="lookups per child run (default 1000)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--code", action="append", help="a Threadline checkout to measure (repeatable; default this one)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--token", help=argparse.SUPPRESS)
    ap.add_argument("--emails", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return 0

    sys.path.insert(0, REPO)
    from bench._util import PYTHON, machine_summary, median, table, uptime_line
    from bench.api_lookup import build_db, copy_to_postgres, issue_bench_token

    codes = [str(Path(c).resolve()) for c in (args.code or [REPO])]
    print(machine_summary())
    for c in codes:
        head = subprocess.run(["git", "-C", c, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", c, "status", "--porcelain", "app"], capture_output=True, text=True)
        print(
            f"code {c}: commit {head.stdout.strip()}{' + uncommitted changes in app/' if dirty.stdout.strip() else ''}"
        )
    work = Path(tempfile.mkdtemp(prefix="tlbench-lookupcpu-"))
    pg = None
    try:
        data_dir = work / "data"
        data_dir.mkdir()
        db_path = data_dir / "threadline.db"
        t0 = time.perf_counter()
        info = build_db(db_path, args.contacts, args.interactions, args.users, args.seed)
        print(
            f"built {args.contacts:,} contacts, {args.interactions:,} interactions in {time.perf_counter() - t0:.0f}s"
        )
        emails_file = work / "emails.txt"
        emails_file.write_text("\n".join(info["contact_email"][1:]) + "\n")
        urls = {}
        if args.database in ("sqlite", "both"):
            urls["sqlite"] = f"sqlite:///{db_path}"
        if args.database in ("postgresql", "both"):
            from tests.servers import Postgres

            (work / "postgres").mkdir()
            pg = Postgres(work / "postgres").start()
            urls["postgresql"] = copy_to_postgres(db_path, pg)
        tokens = {
            db: issue_bench_token(data_dir, info, url=u if db == "postgresql" else None) for db, u in urls.items()
        }
        results: dict = {}
        for r in range(args.rounds):
            order = codes if r % 2 == 0 else codes[::-1]
            for db, url in urls.items():
                for c in order:
                    out = subprocess.run(
                        [PYTHON, str(Path(REPO) / "bench" / "lookup_cpu.py"), "--child", "--url", url]
                        + ["--token", tokens[db], "--emails", str(emails_file), "--lookups", str(args.lookups)]
                        + ["--seed", str(args.seed + r)],
                        cwd=c,
                        env=dict(os.environ, PYTHONPATH=c),
                        capture_output=True,
                        text=True,
                    )
                    if out.returncode:
                        print(out.stderr)
                        return 1
                    got = json.loads(out.stdout.strip().splitlines()[-1])
                    results.setdefault((db, c), []).append(got)
                    print(
                        f"round {r + 1} {db:10} {c}: client {got['client_ms']:.3f} ms, server {got['server_ms']:.3f} ms, "
                        f"{got['statements']:.2f} statements per lookup; {uptime_line()}",
                        flush=True,
                    )
        rows = []
        for (db, c), runs in results.items():
            rows.append(
                [
                    db,
                    c,
                    f"{median([x['client_ms'] for x in runs]):.3f}",
                    f"{median([x['server_ms'] for x in runs]):.3f}" if db == "postgresql" else "-",
                    f"{median([x['wall_ms'] for x in runs]):.3f}",
                    f"{median([x['statements'] for x in runs]):.2f}",
                ]
            )
        print(f"\nmedians of {args.rounds} rounds x {args.lookups} lookups; {uptime_line()}")
        print(table(["database", "code", "client CPU ms", "server CPU ms", "wall ms", "statements"], rows))
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
