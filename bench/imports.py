#!/usr/bin/env python
"""Contact import at scale: 100,000 CSV rows in one transaction, on SQLite.

    .venv/bin/python bench/imports.py [--rows 100000] [--dry-run] [--postgresql | --database-url URL]

Each step runs in a fresh child process, so its peak memory (ru_maxrss) is its own:

  parse     baseline: the csv module alone reading the same file (no database)
  dry run   (--dry-run) every row validated and written, then rolled back
  import    the first import: 100,000 new contacts (and their companies)
  re-import the same file again: every row found by address, nothing changed

The file is 100,000 distinct people at 2,000 company domains with a name, title, stage and tags.
Memory must stay flat in the number of rows (the file is streamed; one batch of 500 is held);
time is printed beside the parse baseline.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, REPO)

from bench._util import machine_summary, table  # noqa: E402

STAGES = ("lead", "qualified", "opportunity", "customer", "churned")


def make_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write("Email,Full name,Job title,Stage,Tags\r\n")
        for i in range(rows):
            fh.write(
                f"person{i}@company{i % 2000}.com,Person {i} Example,Buyer {i % 7},{STAGES[i % 5]},batch{i % 3};bench\r\n"
            )


def child(step: str, data_dir: str, csv_path: str, url: str | None) -> None:
    started = time.perf_counter()
    if step == "parse":
        import csv

        with open(csv_path, encoding="utf-8", newline="") as fh:
            n = sum(1 for _ in csv.reader(fh)) - 1
        result = {"rows": n}
    else:
        from app.runtime import open_runtime
        from app.services import imports
        from app.services.actor import Actor
        from app.settings import load_settings

        env = {"THREADLINE_DATA_DIR": data_dir, "THREADLINE_IDLE": "0"}
        if url:
            env["THREADLINE_DATABASE_URL"] = url
        rt = open_runtime(load_settings(env))
        from app.db import read_only

        with read_only(rt.engine) as conn:
            org_id = conn.exec_driver_sql("SELECT min(id) FROM organisation").scalar()
        started = time.perf_counter()  # the import itself, not the app's start
        profile_to = os.environ.get("BENCH_PROFILE")
        profiler = cProfile.Profile() if profile_to and step == "import" else None
        if profiler:
            profiler.enable()
        with open(csv_path, "rb") as fh:
            r = imports.run_import(rt, Actor.operator(org_id), fh, dry_run=step == "dry run", source_name="bench.csv")
        if profiler:
            profiler.disable()
            profiler.dump_stats(profile_to)
        result = {k: r[k] for k in ("rows", "created", "updated", "unchanged", "error_count")}
    result["seconds"] = time.perf_counter() - started
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--database-url", default=None)
    ap.add_argument(
        "--postgresql",
        action="store_true",
        help="run on a private PostgreSQL cluster with production settings (fsync, synchronous_commit on)",
    )
    ap.add_argument("--dry-run", action="store_true", help="also time a dry run (as long as an import)")
    ap.add_argument("--profile", default=None, help="write a cProfile of the import step to this file")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        step, data_dir, csv_path, url = args.child
        child(step, data_dir, csv_path, url or None)
        return
    if args.profile:
        os.environ["BENCH_PROFILE"] = str(Path(args.profile).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        pg = None
        if args.postgresql:
            from tests.servers.postgres import Postgres

            (Path(tmp) / "postgres").mkdir()
            pg = Postgres(Path(tmp) / "postgres", settings={"fsync": "on", "synchronous_commit": "on"}).start()
            args.database_url = pg.create_database("bench_imports")
        try:
            run_all(args, tmp)
        finally:
            if pg is not None:
                pg.stop()


def run_all(args, tmp: str) -> None:
    if True:
        data_dir = str(Path(tmp) / "data")
        csv_path = Path(tmp) / "people.csv"
        make_csv(csv_path, args.rows)
        from app.runtime import open_runtime
        from app.services import orgs
        from app.settings import load_settings

        env = {"THREADLINE_DATA_DIR": data_dir, "THREADLINE_IDLE": "0"}
        if args.database_url:
            env["THREADLINE_DATABASE_URL"] = args.database_url
        rt = open_runtime(load_settings(env))
        orgs.create_org(rt, "Bench", ["ourco.com"])
        rt.engine.dispose()
        print(machine_summary())
        print(f"{args.rows} rows, {csv_path.stat().st_size / 1e6:.1f} MB of CSV, database {rt.engine.dialect.name}")
        out = []
        for step in ("parse", *(("dry run",) if args.dry_run else ()), "import", "re-import"):
            proc = subprocess.run(
                [sys.executable, __file__, "--child", step, data_dir, str(csv_path), args.database_url or ""],
                capture_output=True,
                text=True,
            )
            if proc.returncode:
                sys.exit(f"{step} failed:\n{proc.stderr[-3000:]}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            out.append(
                [
                    step,
                    r["rows"],
                    r.get("created", "-"),
                    r.get("unchanged", "-"),
                    f"{r['seconds']:.1f}",
                    f"{r['rows'] / r['seconds']:,.0f}",
                    f"{r['peak_mb']:.0f}",
                ]
            )
        print(table(["step", "rows", "created", "unchanged", "seconds", "rows/s", "peak MB"], out))


if __name__ == "__main__":
    main()
