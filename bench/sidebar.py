#!/usr/bin/env python
"""The sidebar under load: the exact lookup call the pane makes, and its static files.

    .venv/bin/python bench/sidebar.py [--contacts 100000] [--interactions 1000000] [--duration 20]
    .venv/bin/python bench/sidebar.py --smoke      # small data, a few seconds per phase
    .venv/bin/python bench/sidebar.py --database postgresql   # the server on a PostgreSQL copy of the data

Reuses bench/api_lookup.py (database builder, server launcher bench/_api_server.py,
load generator bench/_loadgen.py) and measures:

  a) open loop, 500 lookups/s: GET /api/lookup?email=<address> -- the pane's one
     call for card + summary + first timeline page, with the same query string
     (app/web/panel.js lookupPath: the address percent-encoded, "@" kept, no
     other parameter); target p99 < 20 ms;
  b) closed loop, 32 clients: that lookup against the trivial /livez;
  c) closed loop, 32 clients: the pane's own files (/panel/outlook,
     /panel/static/dates.js, /panel/static/panel.js, /panel/static/panel.css, /panel/config.json).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

REPO = str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, REPO)

from bench._api_server import FIRST_ROUTE  # noqa: E402
from bench._util import machine_summary, table, uptime_line, verdict  # noqa: E402
from bench.api_lookup import (  # noqa: E402
    build_db,
    describe,
    issue_bench_token,
    ms,
    ms_unit,
    run_load,
    settings_env,
    start_database,
    start_server,
    stop_server,
)

TARGET_P99_MS, TARGET_RATIO = 20.0, 0.5
ASSETS = (
    "/panel/outlook",
    "/panel/static/dates.js",
    "/panel/static/panel.js",
    "/panel/static/panel.css",
    "/panel/config.json",
)
PANEL_JS = Path(REPO) / "app" / "web" / "panel.js"


def log(msg: str = "") -> None:
    print(msg, flush=True)


def encode_uri_component(value: str) -> str:
    """JavaScript's encodeURIComponent (what the pane uses)."""
    return quote(value, safe="-_.!~*'()")


def pane_query(email: str) -> str:
    """The pane's lookup path for an address: encodeURIComponent, then "%40" back to "@"."""
    return "/api/lookup?email=" + encode_uri_component(email).replace("%40", "@")


def loadgen_query(email: str) -> str:
    """What bench/_loadgen.py sends for the 'lookup' path."""
    return f"/api/lookup?email={quote(email, safe='@')}"


def check_same_call(emails: list[str]) -> None:
    """The load generator must send byte-for-byte the pane's request."""
    source = PANEL_JS.read_text()
    if 'return "/api/lookup?email=" + encodeURIComponent(email).replace(/%40/g, "@");' not in source:
        raise SystemExit("app/web/panel.js builds the lookup URL differently now: update bench/sidebar.py")
    differ = [e for e in emails if pane_query(e) != loadgen_query(e)]
    if differ:
        raise SystemExit(f"{len(differ)} addresses would be encoded differently by the pane, e.g. {differ[0]!r}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--contacts", type=int, default=100_000)
    ap.add_argument("--interactions", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per measured phase")
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--smoke", action="store_true", help="2,000 contacts, 20,000 interactions, 3 s phases")
    ap.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    args = ap.parse_args()
    if args.smoke:
        args.contacts, args.interactions, args.duration = 2_000, 20_000, 3.0

    log(f"== sidebar under load ({args.database}) ==")
    log(machine_summary())
    log(f"uptime: {uptime_line()}")
    work = Path(tempfile.mkdtemp(prefix="tlbench-sidebar-"))
    data_dir = work / "data"
    data_dir.mkdir()
    db_path = data_dir / "threadline.db"
    pg = None
    try:
        t0 = time.perf_counter()
        info = build_db(db_path, args.contacts, args.interactions, args.users, args.seed)
        log(
            f"built {args.contacts:,} contacts / {args.interactions:,} interactions in "
            f"{time.perf_counter() - t0:.1f}s (not measured)"
        )
        pg_url, pg = start_database(args, work, db_path)
        token = issue_bench_token(data_dir, info, url=pg_url)
        emails = info["contact_email"][1:]
        check_same_call(emails)
        emails_file = work / "emails.txt"
        emails_file.write_text("\n".join(emails) + "\n")
        env = dict(os.environ, THREADLINE_IDLE="0", PYTHONPATH=REPO, **settings_env(data_dir, pg_url))

        def phase(mode: str, path: str, **kw) -> dict:
            server, port = start_server(work, env, 1)
            try:
                if path == "lookup":  # the pane's request answers, as the pane expects
                    req = urllib.request.Request(
                        f"http://127.0.0.1:{port}{pane_query(emails[0])}", headers={"Authorization": f"Bearer {token}"}
                    )
                    with urllib.request.urlopen(req, timeout=10) as r:
                        body = r.read()
                    if r.status != 200 or not re.search(rb'"timeline"\s*:', body):
                        raise SystemExit("the lookup did not answer with the sidebar's shape")
                run_load(
                    server.pid,
                    port,
                    token,
                    emails_file,
                    "closed",
                    path,
                    min(2.0, args.duration),
                    concurrency=4,
                    seed=99,
                )  # warm-up
                return run_load(server.pid, port, token, emails_file, mode, path, args.duration, **kw)
            finally:
                stop_server(server)

        log(f"\n[a] open loop, {args.rate:.0f} lookups/s (the pane's call) for {args.duration:.0f}s")
        open_r = phase("open", "lookup", rate=args.rate)
        log(describe("lookup, open loop", open_r))
        log(f"\n[b] closed loop, {args.concurrency} clients")
        closed_lookup = phase("closed", "lookup", concurrency=args.concurrency)
        log(describe("lookup, closed loop", closed_lookup))
        closed_health = phase("closed", "/livez", concurrency=args.concurrency)
        log(describe("/livez, closed loop", closed_health))
        closed_first = phase("closed", FIRST_ROUTE, concurrency=args.concurrency)
        log(describe(f"{FIRST_ROUTE} (matched first), closed loop", closed_first))
        log(f"\n[c] the pane's files, closed loop, {args.concurrency} clients")
        assets = {}
        for path in ASSETS:
            assets[path] = phase("closed", path, concurrency=args.concurrency)
            log(describe(path, assets[path]))

        def errs(r: dict) -> int:
            return sum(r["errors"].values()) + sum(r["non_200"].values())

        ratio = closed_lookup["throughput"] / closed_health["throughput"] if closed_health["throughput"] else 0.0
        rows = [
            [name, r["ok"], errs(r), r["throughput"], ms(r["p50_ms"]), ms(r["p99_ms"]), ms(r["max_ms"])]
            for name, r in [
                (f"lookup open {args.rate:.0f}/s", open_r),
                ("lookup closed", closed_lookup),
                ("/livez closed", closed_health),
                (f"{FIRST_ROUTE} closed", closed_first),
            ]
            + list(assets.items())
        ]
        log("\n== results ==")
        log(table(["phase", "ok", "errors", "req/s", "p50 ms", "p99 ms", "max ms"], rows))
        figures = [
            [
                f"pane lookup, open loop {args.rate:.0f}/s: p99",
                ms_unit(open_r["p99_ms"]),
                f"< {TARGET_P99_MS:.0f} ms",
                verdict(open_r["p99_ms"] < TARGET_P99_MS and errs(open_r) == 0),
            ],
            [
                "pane lookup / livez throughput (closed loop)",
                f"{ratio:.3f}",
                f">= {TARGET_RATIO}",
                verdict(ratio >= TARGET_RATIO),
            ],
            [
                f"pane lookup / {FIRST_ROUTE} (routing excluded; not the target's baseline)",
                f"{closed_lookup['throughput'] / max(closed_first['throughput'], 1e-9):.3f}",
                "-",
                "-",
            ],
            [
                "static files: errors",
                str(sum(errs(r) for r in assets.values())),
                "0",
                verdict(all(errs(r) == 0 for r in assets.values())),
            ],
        ]
        log(table(["figure", "measured", "target", "verdict"], figures, align="lrll"))
        if args.smoke:
            log("(smoke run: small data and short phases; the figures prove the harness, not the target)")
        return 0
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
