#!/usr/bin/env python
"""Initial IMAP sync: Threadline against the fetch-only ceiling and mbsync on the same Dovecot mailbox.

    .venv/bin/python bench/imap_sync.py [--messages 100000] [--reps 6] [--keep]
    .venv/bin/python bench/imap_sync.py --database postgresql   # + the same import on PostgreSQL

1. Builds ONE rep's mailbox of exactly N messages (INBOX, Sent, Archive) with
   demodata and writes it into a private Dovecot's Maildir
   (tests.servers.Dovecot). Not measured.
2. Measures, one after the other on the same warm server, in interleaved rounds:
   a) the fetch-only ceiling (bench/_fetch_ceiling.py): Threadline's own FETCH
      items on one connection, the answer thrown away;
   b) mbsync (isync) pulling every folder into a fresh local Maildir (FSync no);
   c) Threadline's first sync into a fresh SQLite database, run as its own
      process (`python -m app.cli sync --once --mailbox ID`);
   all under /usr/bin/time -v, with the whole process tree's memory sampled;
   then mbsync once more in isync's default configuration (FSync yes).
   With --database postgresql, each round also runs Threadline's first sync
   into a fresh PostgreSQL database (a private cluster started like the tests'
   one, but with PostgreSQL's durable defaults), so SQLite's and PostgreSQL's
   messages/s print side by side with their ratio (issue 18).
3. A no-change re-sync: once as a process (wall time incl. interpreter start)
   and several times in-process with a timing wrapper around the connector,
   so the IMAP part (connect+login, LIST, STATUS per folder) is timed alone.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, REPO)

from bench._util import (  # noqa: E402
    PYTHON,
    code_fingerprint,
    deliver_exact,
    machine_summary,
    median,
    run_measured,
    stream_counts,
    table,
    tree_cpu_seconds,
    uptime_line,
    verdict,
)
from tests import factories  # noqa: E402

MBSYNC = "/usr/bin/mbsync"
CODE = ["app/*.py", "app/models/*.py", "app/services/*.py", "sync/*.py", "connectors/*.py", "migrations/versions/*.py"]
PASSWORD = "bench-secret"
TARGET_RSS_MB, TARGET_NOCHANGE_MS = 300.0, 50.0
# Issue 15 item 6: Threadline's share of the fetch-only ceiling, and its speed against
# mbsync in isync's default configuration (FSync yes) and with FSync no.
TARGET_CEILING_SHARE, MUST_CEILING_SHARE = 0.50, 0.35
TARGET_VS_MBSYNC_DEFAULT, TARGET_VS_MBSYNC_NOFSYNC = 3.0, 1.0
CEILING = str(Path(__file__).resolve().parent / "_fetch_ceiling.py")
OWN_CPU = str(Path(__file__).resolve().parent / "_own_cpu.py")
TARGET_FOLLOWUPS = 0.15  # issue 12: the follow-up step adds at most 15% to the first import
COUNTER = str(Path(__file__).resolve().parent / "_count_statements.py")


def log(msg: str = "") -> None:
    print(msg, flush=True)


# -- corpus ------------------------------------------------------------------------


def pick_mailbox(seed: int, reps: int, companies: int, n: int) -> tuple[str, float]:
    """The rep whose mailbox gets the biggest share of the stream, and that share."""
    _, per, probe = stream_counts(seed, reps, companies, min(max(n, 5000), 30000))
    rep, count = per.most_common(1)[0]
    return rep, count / probe


def build_mailbox(dv, user: str, seed: int, reps: int, companies: int, n: int):
    """Deliver exactly n messages of one rep's mailbox; returns (corpus, rep, per-folder counts, bytes)."""
    rep, share = pick_mailbox(seed, reps, companies, n)
    corpus, folders, size, total = deliver_exact(
        dv, {rep: user}, PASSWORD, n, share, seed=seed, reps=reps, companies=companies, log=log
    )
    return corpus, rep, dict(folders[user]), size, total


def dovecot_cpu(dv) -> float:
    pid = dv._read_master_pid()
    return tree_cpu_seconds(pid) if pid else 0.0


def measured_with_server(dv, argv, **kw):
    before = dovecot_cpu(dv)
    m = run_measured(argv, **kw)
    m.extra["dovecot_cpu"] = dovecot_cpu(dv) - before
    return m


def cpu_line(m) -> str:
    parts = [f"{name} {cpu:.2f}s" for name, cpu in m.extra.get("cpu_by_process", []) if cpu >= 0.01]
    return f"CPU: {'; '.join(parts) or 'n/a'}; Dovecot {m.extra.get('dovecot_cpu', 0):.2f}s"


def profile_in_process(data_dir: Path, corpus, rep: str, host: str, port: int, user: str, top: int = 30) -> None:
    """One more first sync, single process (fetch_in_child=False) under cProfile."""
    import cProfile
    import io
    import pstats

    from app.runtime import open_runtime
    from app.settings import load_settings
    from sync.engine import sync_mailbox

    mailbox_id = setup_threadline(data_dir, corpus, rep, host, port, user)
    rt = open_runtime(load_settings({"THREADLINE_DATA_DIR": str(data_dir), "THREADLINE_IDLE": "0"}))
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    report = sync_mailbox(rt.engine, rt.box, mailbox_id, worker="bench-profile", fetch_in_child=False)
    prof.disable()
    wall = time.perf_counter() - t0
    rt.engine.dispose()
    log(f"    single-process sync under cProfile: {wall:.1f}s, imported {report.imported}, ok={report.ok}")
    for key in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(key).print_stats(top)
        text = buf.getvalue()
        start = text.find("   ncalls")
        log(f"    -- top {top} by {key} --")
        log("    " + text[start:].strip().replace("\n", "\n    "))


# -- mbsync ------------------------------------------------------------------------------


def mbsync_rc(work: Path, host: str, port: int, user: str, fsync: str = "no", name: str = "mbsync") -> Path:
    near = work / f"{name}-maildir"
    near.mkdir()
    rc = work / f"{name}rc"
    rc.write_text(f"""\
# FSync yes (isync's default) fsyncs every message file: ~16 ms each on this disk.
FSync {fsync}

IMAPAccount bench
Host {host}
Port {port}
User {user}
Pass {PASSWORD}
SSLType None
AuthMechs LOGIN PLAIN

IMAPStore bench-far
Account bench

MaildirStore bench-near
Path {near}/
Inbox {near}/INBOX
SubFolders Verbatim

Channel bench
Far :bench-far:
Near :bench-near:
Patterns *
Create Near
Sync Pull
Expunge None
CopyArrivalDate yes
SyncState *
""")
    return rc


def count_maildir_files(root: Path) -> int:
    n = 0
    for dirpath, _dirnames, filenames in os.walk(root):
        if os.path.basename(dirpath) in ("cur", "new"):
            n += len(filenames)
    return n


# -- Threadline -------------------------------------------------------------------------------


def setup_threadline(data_dir: Path, corpus, rep: str, host: str, port: int, user: str, url: str | None = None) -> int:
    from app.db import session
    from app.runtime import open_runtime
    from app.services import mailboxes
    from app.services.actor import Actor
    from app.settings import load_settings

    rt = open_runtime(load_settings(threadline_env(data_dir, url, base={})))
    with session(rt.engine) as s:
        org = factories.create_org(s, corpus.org_name, list(corpus.internal_domains))
        for r in corpus.reps:
            factories.add_user(s, org, r.email, name=r.name, admin=r.email in corpus.admins)
        org_id = org.id
    mailbox_id = mailboxes.add_imap(
        rt, Actor.operator(org_id), owner=rep, host=host, port=port, security="none", username=user, password=PASSWORD
    )["id"]
    rt.engine.dispose()
    return mailbox_id


def threadline_env(data_dir: Path, url: str | None = None, base: dict | None = None) -> dict:
    env = dict(os.environ if base is None else base)
    env.update(THREADLINE_DATA_DIR=str(data_dir), THREADLINE_IDLE="0", PYTHONPATH=REPO, COLUMNS="200", TERM="dumb")
    if url:
        env["THREADLINE_DATABASE_URL"] = url
    return env


class _PgCounts:
    """sqlite3's con.execute(sql).fetchone() on a PostgreSQL database (the queries are plain SQL)."""

    def __init__(self, url: str):
        import psycopg2

        self._con = psycopg2.connect(url.replace("+psycopg2", ""))

    def execute(self, sql: str):
        cur = self._con.cursor()
        cur.execute(sql)
        return cur

    def close(self) -> None:
        self._con.close()


def db_counts(db_path: Path, url: str | None = None) -> dict:
    con = _PgCounts(url) if url else sqlite3.connect(db_path)
    try:
        out = {}
        for t in (
            "interaction",
            "participant",
            "contact",
            "contactaddress",
            "company",
            "interactionsource",
            "syncissue",
            "followup",
        ):
            out[t] = con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        # the queue's result, to compare builds: (kind, status, closed reason) -> rows
        out["followups"] = sorted(
            con.execute(
                "SELECT kind, status, coalesce(closed_reason, ''), count(*) FROM followup "
                "GROUP BY kind, status, closed_reason"
            ).fetchall()
        )
        row = con.execute("SELECT status, messages_imported, skipped, last_error FROM mailbox").fetchone()
        out["mailbox"] = {"status": row[0], "messages_imported": row[1], "skipped": row[2], "last_error": row[3]}
        out["folders"] = con.execute(
            "SELECT name, role, messages, backfill_done, status FROM folderstate ORDER BY name"
        ).fetchall()
        out["participants_linked"] = con.execute(
            "SELECT count(*) FROM participant WHERE contact_id IS NOT NULL"
        ).fetchone()[0]
        return out
    finally:
        con.close()


class TimedConnector:
    """Wraps a connector and adds up the time spent in its IMAP calls."""

    def __init__(self, inner):
        self.inner = inner
        self.t: Counter = Counter()

    def list_folders(self):
        t0 = time.perf_counter()
        self.inner.connect()
        t1 = time.perf_counter()
        folders = self.inner.list_folders()
        t2 = time.perf_counter()
        self.t["connect+login"] += t1 - t0
        self.t["LIST"] += t2 - t1
        return folders

    def fetch_changes(self, folder, cursor, since):
        gen = self.inner.fetch_changes(folder, cursor, since)
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(gen)
            except StopIteration:
                self.t["fetch_changes (STATUS...)"] += time.perf_counter() - t0
                return
            self.t["fetch_changes (STATUS...)"] += time.perf_counter() - t0
            self.t["batches"] += 1
            yield batch

    def close(self):
        t0 = time.perf_counter()
        self.inner.close()
        self.t["LOGOUT"] += time.perf_counter() - t0

    @property
    def imap_seconds(self) -> float:
        return self.t["connect+login"] + self.t["LIST"] + self.t["fetch_changes (STATUS...)"]


def nochange_in_process(data_dir: Path, mailbox_id: int, runs: int) -> list[dict]:
    from app.runtime import open_runtime
    from app.settings import load_settings
    from connectors.factory import build_connector
    from sync.engine import sync_mailbox

    rt = open_runtime(load_settings({"THREADLINE_DATA_DIR": str(data_dir), "THREADLINE_IDLE": "0"}))
    results = []
    for _ in range(runs):
        made: list[TimedConnector] = []

        def factory(spec, made=made):
            c = TimedConnector(build_connector(spec))
            made.append(c)
            return c

        t0 = time.perf_counter()
        report = sync_mailbox(rt.engine, rt.box, mailbox_id, worker="bench", connector_factory=factory)
        wall = time.perf_counter() - t0
        tc = made[0]
        results.append(
            {
                "wall": wall,
                "imap": tc.imap_seconds,
                "parts": dict(tc.t),
                "ok": report.ok,
                "imported": report.imported,
                "error": report.error,
            }
        )
    rt.engine.dispose()
    return results


# -- main ---------------------------------------------------------------------------------


def run_mbsync(dv, work: Path, user: str, fsync: str, name: str, n: int):
    rc = mbsync_rc(work, dv.host, dv.port, user, fsync, name=name)
    m = measured_with_server(dv, [MBSYNC, "-c", str(rc), "-a"], cwd=str(work))
    pulled = count_maildir_files(work / f"{name}-maildir")
    log(
        f"    mbsync FSync {fsync}: rc={m.returncode} {m.seconds:.2f}s = {n / m.seconds:,.0f} msg/s, "
        f"max RSS {m.maxrss_mb:.1f} MB, {pulled:,} messages in the local Maildir; "
        f"load {m.load_before} -> {m.load_after}; CPU user {m.user_s:.2f}s + system {m.sys_s:.2f}s; {cpu_line(m)}"
    )
    if m.returncode != 0 or pulled != n:
        log(f"    mbsync stderr: {m.stderr.strip()[-2000:]}")
        raise SystemExit("error: mbsync did not pull the whole mailbox")
    # removed only at the end: deleting 100k files now would load the disk during the next run
    return m


def run_ceiling(dv, user: str, n: int):
    m = measured_with_server(dv, [PYTHON, CEILING, dv.host, str(dv.port), user, PASSWORD], cwd=REPO)
    if m.returncode != 0:
        log(f"    ceiling stderr: {m.stderr.strip()[-2000:]}")
        raise SystemExit("error: the fetch-only client failed")
    out = json.loads(m.stdout.strip().splitlines()[-1])
    log(
        f"    fetch-only ceiling: {m.seconds:.2f}s = {n / m.seconds:,.0f} msg/s ({out['messages']:,} messages, "
        f"{out['bytes'] / 2**20:.0f} MiB read and discarded, FETCH alone {out['fetch_seconds']:.2f}s), "
        f"max RSS {m.maxrss_mb:.1f} MB; load {m.load_before} -> {m.load_after}; {cpu_line(m)}"
    )
    if out["messages"] != n:
        raise SystemExit(f"error: the fetch-only client saw {out['messages']} messages, not {n}")
    m.extra["items"] = m.stderr.strip().splitlines()[-1]
    return m


def run_threadline(
    dv,
    work: Path,
    corpus,
    rep: str,
    user: str,
    name: str,
    n: int,
    *,
    verbose: bool,
    pg=None,
    followups: bool = True,
    own_cpu: bool = False,
    statements: bool = False,
):
    """Threadline's first sync as its own process, into SQLite or (pg: a started
    tests.servers.Postgres) a fresh PostgreSQL database, whose server CPU is added;
    followups=False turns the follow-up queue off at ingest (--followups-compare);
    own_cpu: run it through bench/_own_cpu.py, which records the ingesting process's
    own CPU seconds (m.extra["own_cpu"]), the fetch child's left out; statements counts its
    SQL statements and round trips (bench/_count_statements.py). One wrapper at a time."""
    data_dir = work / name
    url = pg.create_database() if pg is not None else None
    mailbox_id = setup_threadline(data_dir, corpus, rep, dv.host, dv.port, user, url)
    argv = [PYTHON, "-m", "app.cli", "sync", "--once", "--mailbox", str(mailbox_id)]
    counts_file = work / f"{name}-statements.json"
    run_argv = [PYTHON, COUNTER, str(counts_file), *argv[3:]] if statements else argv
    pg_before = tree_cpu_seconds(pg.postmaster_pid) if pg is not None else 0.0
    env = threadline_env(data_dir, url)
    if not followups:
        env["THREADLINE_FOLLOWUPS_AT_INGEST"] = "0"
    cpu_file = data_dir / "own_cpu.json"
    if own_cpu:
        env["TLBENCH_OWN_CPU"] = str(cpu_file)
        m = measured_with_server(dv, [PYTHON, OWN_CPU, *argv[3:]], env=env, cwd=REPO)
        try:
            usage = json.loads(cpu_file.read_text())
            m.extra["own_cpu"] = usage["user"] + usage["sys"]
        except (OSError, ValueError, KeyError):
            m.extra["own_cpu"] = float("nan")
    else:
        m = measured_with_server(dv, run_argv, env=env, cwd=REPO)
    if pg is not None:
        m.extra["postgres_cpu"] = tree_cpu_seconds(pg.postmaster_pid) - pg_before
    if statements and counts_file.exists():
        db = "postgresql" if pg is not None else "sqlite"
        got = json.loads(counts_file.read_text())
        m.extra["statements"] = got.get(f"{db}.statements", 0)
        m.extra["round_trips"] = got.get(f"{db}.round_trips") if pg is not None else None
        m.extra["commits"] = got.get(f"{db}.commits")
        log(
            f"    statements sent: {m.extra['statements']:,}"
            + (
                f", round trips to the server: {m.extra['round_trips']:,} (commits {m.extra['commits']:,})"
                if pg is not None
                else " (in-process: no round trips)"
            )
            + f"; per 10,000 messages: {m.extra['statements'] * 10_000 / n:,.0f}"
            + (f" / {m.extra['round_trips'] * 10_000 / n:,.0f}" if pg is not None else "")
        )
        if pg is not None and verbose:
            top = list(got.get("postgresql.round_trips_by_statement", {}).items())[:12]
            log("      round trips by statement: " + "; ".join(f"{k!r} {v:,}" for k, v in top))
    log(
        f"    Threadline{' on PostgreSQL' if pg is not None else ''}: rc={m.returncode} {m.seconds:.2f}s = {n / m.seconds:,.0f} msg/s, "
        f"peak PSS {m.tree_pss_mb:.0f} MB (RSS sum {m.tree_rss_mb:.0f} MB, {m.tree_procs} processes, largest "
        f"{m.tree_single_mb:.0f} MB); load {m.load_before} -> {m.load_after}; {cpu_line(m)}"
        + (f"; PostgreSQL {m.extra['postgres_cpu']:.2f}s" if pg is not None else "")
        + (f"; ingesting process's own CPU {m.extra['own_cpu']:.2f}s" if own_cpu else "")
    )
    log("      " + m.stdout.strip().replace("\n", "\n      "))
    if m.returncode != 0:
        log(f"    stderr: {m.stderr.strip()[-3000:]}")
        raise SystemExit("error: Threadline's sync failed")
    em = re.search(r"([\d.]+)s \(([\d,]+) msg/s\)", m.stdout)
    m.extra["engine_s"] = float(em.group(1)) if em else float("nan")
    counts = db_counts(data_dir / "threadline.db", url)
    mbx = counts["mailbox"]
    try:
        skipped_json = mbx["skipped"] or "{}"  # text on SQLite, already a dict on PostgreSQL
        skipped = sum((json.loads(skipped_json) if isinstance(skipped_json, str) else skipped_json).values())
    except ValueError:
        skipped = 0
    seen = mbx["messages_imported"] + skipped
    ok = (
        counts["interaction"] > 0
        and counts["contact"] > 0
        and counts["company"] > 0
        and counts["participant"] > 0
        and seen == n
        and mbx["status"] == "active"
    )
    m.extra.update(counts=counts, ok=ok, data_dir=data_dir, mailbox_id=mailbox_id, argv=argv)
    if verbose or not ok:
        log(
            f"      database: {counts['interaction']:,} interactions, {counts['participant']:,} participants "
            f"({counts['participants_linked']:,} linked to contacts), {counts['contact']:,} contacts "
            f"({counts['contactaddress']:,} addresses), {counts['company']:,} companies, "
            f"{counts['interactionsource']:,} mailbox copies, {counts['syncissue']} unreadable"
        )
        log(
            f"      mailbox: status={mbx['status']} imported={mbx['messages_imported']:,} skipped={mbx['skipped']} "
            f"error={mbx['last_error']}; folders (name, role, messages, backfill_done, status): {counts['folders']}"
        )
        log(
            f"      check: imported + skipped = {seen:,} of {n:,} messages; interactions, contacts, companies and "
            f"participants built: {'yes' if ok else 'NO'}"
        )
    return m


PG_DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
TARGET_PG_RATIO = 0.8


def log_postgresql_comparison(n: int, tls: list, pgs: list) -> None:
    """SQLite's and PostgreSQL's first import of the same mailbox, measured in the same rounds."""
    sq_s, pg_s = median([m.seconds for m in tls]), median([m.seconds for m in pgs])
    sq_e, pg_e = median([m.extra["engine_s"] for m in tls]), median([m.extra["engine_s"] for m in pgs])
    ratios = [t.seconds / p.seconds for t, p in zip(tls, pgs, strict=True)]
    ratio = sq_s / pg_s
    per_round = median(ratios)
    log("\n== SQLite vs PostgreSQL, first import of the same mailbox (issue 18) ==")
    log(
        table(
            ["database", "messages", "seconds", "messages/s", "engine s", "engine msg/s", "client CPU s", "note"],
            [
                ["SQLite", n, sq_s, n / sq_s, sq_e, n / sq_e, median([m.cpu_s for m in tls]), "-"],
                [
                    "PostgreSQL",
                    n,
                    pg_s,
                    n / pg_s,
                    pg_e,
                    n / pg_e,
                    median([m.cpu_s for m in pgs]),
                    f"server CPU {median([m.extra['postgres_cpu'] for m in pgs]):.1f}s",
                ],
            ],
            align="lrrrrrrl",
        )
    )
    log(
        table(
            ["figure", "measured", "target", "verdict"],
            [
                [
                    "PostgreSQL / SQLite messages/s (whole processes)",
                    f"{ratio:.2f}x (rounds: " + ", ".join(f"{x:.2f}" for x in ratios) + ")",
                    f">= {TARGET_PG_RATIO}x",
                    verdict(ratio >= TARGET_PG_RATIO),
                ],
                [
                    "PostgreSQL / SQLite messages/s, median of the rounds' ratios",
                    f"{per_round:.2f}x",
                    f">= {TARGET_PG_RATIO}x",
                    verdict(per_round >= TARGET_PG_RATIO),
                ],
                ["PostgreSQL / SQLite messages/s (engine, without start-up)", f"{sq_e / pg_e:.2f}x", "-", "-"],
                [
                    "PostgreSQL database built like SQLite's (every message seen)",
                    "yes" if all(m.extra["ok"] for m in pgs) else "NO",
                    "yes",
                    verdict(all(m.extra["ok"] for m in pgs)),
                ],
            ],
            align="lrll",
        )
    )
    if all("statements" in m.extra for m in (*tls, *pgs)):
        rows = []
        for db, ms in (("SQLite", tls), ("PostgreSQL", pgs)):
            st = median([m.extra["statements"] for m in ms])
            trips = median([m.extra["round_trips"] for m in ms]) if db == "PostgreSQL" else None
            rows.append(
                [
                    db,
                    f"{st:,.0f}",
                    f"{st * 10_000 / n:,.0f}",
                    "-" if trips is None else f"{trips:,.0f}",
                    "-" if trips is None else f"{trips * 10_000 / n:,.0f}",
                ]
            )
        log(
            table(
                ["database", "statements", "per 10,000 messages", "round trips", "per 10,000 messages"],
                rows,
                align="lrrrr",
            )
        )


def run_followups_pair(dv, local: Path, corpus, rep: str, user: str, n: int, r: int, *, verbose: bool):
    """One round of --followups-compare: the first import with the follow-up step off and on.

    The order alternates per round (odd rounds off first, even rounds on first), so a machine
    getting busier or quieter during a round does not favour one side; the figure compared is
    the ingesting process's own CPU (bench/_own_cpu.py), not wall time, which swings by 3x
    between rounds on this shared machine (docs/performance.md section 10)."""
    order = (False, True) if r % 2 else (True, False)
    got = {}
    for on in order:
        got[on] = run_threadline(
            dv,
            local,
            corpus,
            rep,
            user,
            f"{'threadline' if on else 'nofollow'}{r}",
            n,
            verbose=verbose and on,
            followups=on,
            own_cpu=True,
        )
        log(f"    (above: follow-ups at ingest {'ON' if on else 'off'})")
    off, on = got[False], got[True]
    log(
        f"    round {r} ({'off, on' if order[0] is False else 'on, off'}): own CPU off {off.extra['own_cpu']:.2f}s, "
        f"on {on.extra['own_cpu']:.2f}s ({100 * (on.extra['own_cpu'] / off.extra['own_cpu'] - 1):+.1f}%); "
        f"wall {off.seconds:.2f}s, {on.seconds:.2f}s ({100 * (on.seconds / off.seconds - 1):+.1f}%)"
    )
    return off, on, order


def log_followups_comparison(n: int, pairs: list) -> None:
    """Off and on side by side per round, then the medians against issue 12's 15%."""
    rows = []
    for r, (off, on, order) in enumerate(pairs, 1):
        rows.append(
            [
                r,
                "off, on" if order[0] is False else "on, off",
                off.extra["own_cpu"],
                on.extra["own_cpu"],
                f"{100 * (on.extra['own_cpu'] / off.extra['own_cpu'] - 1):+.1f}%",
                off.seconds,
                on.seconds,
                f"{100 * (on.seconds / off.seconds - 1):+.1f}%",
                f"{off.load_before} -> {on.load_after}"
                if order[0] is False
                else f"{on.load_before} -> {off.load_after}",
            ]
        )
    log(f"\n== follow-up queue at ingest: {n:,} messages, {len(pairs)} round(s) ==")
    log(
        table(
            ["round", "order", "off CPU s", "on CPU s", "CPU diff", "off wall s", "on wall s", "wall diff", "load"],
            rows,
            align="llrrrrrrl",
        )
    )
    off_cpu = median([p[0].extra["own_cpu"] for p in pairs])
    on_cpu = median([p[1].extra["own_cpu"] for p in pairs])
    diffs = [p[1].extra["own_cpu"] / p[0].extra["own_cpu"] - 1 for p in pairs]
    walls = [p[1].seconds / p[0].seconds - 1 for p in pairs]
    log(
        f"ingesting process's own CPU, medians: off {off_cpu:.2f}s, on {on_cpu:.2f}s: "
        f"{100 * (on_cpu / off_cpu - 1):+.1f}% (median of the rounds' differences {100 * median(diffs):+.1f}%; "
        f"wall {100 * median(walls):+.1f}%); target <= +{100 * TARGET_FOLLOWUPS:.0f}%: "
        f"{verdict(on_cpu / off_cpu - 1 <= TARGET_FOLLOWUPS)}"
    )
    ok = all(p[0].extra["ok"] and p[1].extra["ok"] for p in pairs)
    follow = {tuple(tuple(r) for r in p[1].extra["counts"]["followups"]) for p in pairs}
    log(
        f"every import complete: {'yes' if ok else 'NO'}; follow-up rows with the step on, "
        f"(kind, status, reason, rows): {' / '.join(str(list(f)) for f in sorted(follow))}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=100_000, help="messages in the mailbox (default 100000)")
    ap.add_argument("--reps", type=int, default=6, help="sales reps in the generated company (default 6)")
    ap.add_argument(
        "--companies", type=int, default=None, help="customer companies in the corpus (default max(40, messages/1000))"
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--rounds", type=int, default=3, help="interleaved mbsync/Threadline rounds; medians are reported (default 3)"
    )
    ap.add_argument("--nochange-runs", type=int, default=5, help="in-process no-change re-syncs (default 5)")
    ap.add_argument(
        "--fsync-baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run mbsync once with isync's default FSync yes, an fsync per message (default: on)",
    )
    ap.add_argument(
        "--profile", action="store_true", help="afterwards, profile one more first sync in a single process (cProfile)"
    )
    ap.add_argument(
        "--local-dir",
        default=None,
        help="where mbsync's Maildirs and Threadline's databases go (default: a temp dir under $TMPDIR, "
        "next to Dovecot's data; e.g. /dev/shm to take the disk out of the comparison)",
    )
    ap.add_argument(
        "--database",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="postgresql: each round also imports into PostgreSQL (a private cluster) and the report gives "
        "PostgreSQL's messages/s beside SQLite's, with the ratio (issue 18: target >= 0.8x)",
    )
    ap.add_argument(
        "--statements",
        action="store_true",
        help="count the SQL statements each Threadline import sends and, on PostgreSQL, its round trips to the "
        "server (SQLAlchemy's event hooks and a counting driver cursor), printed per database",
    )
    ap.add_argument("--keep", action="store_true", help="keep Dovecot's data and the temp dirs")
    ap.add_argument(
        "--followups-compare",
        action="store_true",
        help="also run each Threadline import with the follow-up queue off at ingest (the order alternating "
        "per round), and print the ingesting process's own CPU off and on, with the difference",
    )
    ap.add_argument(
        "--followups-only",
        action="store_true",
        help="only --followups-compare's imports: no fetch-only ceiling, mbsync or no-change runs (fast)",
    )
    args = ap.parse_args()
    if args.followups_only:
        args.followups_compare = True
    n = args.messages
    companies = args.companies or max(40, n // 1000)

    from tests.servers import Dovecot

    if not os.access(MBSYNC, os.X_OK):
        log(f"error: {MBSYNC} not found (Debian: apt-get install isync)")
        return 2

    log("== IMAP initial sync: Threadline vs the fetch-only ceiling and mbsync ==")
    log(machine_summary())
    log(f"uptime: {uptime_line()}")
    log(
        f"mbsync: {os.popen(MBSYNC + ' --version').read().strip()}; "
        f"dovecot: {os.popen('dovecot --version').read().strip()}"
    )
    code_at_start = code_fingerprint(CODE)
    log("code measured: " + code_at_start)

    work = Path(tempfile.mkdtemp(prefix="tlbench-imap-"))
    os.chmod(work, 0o755)
    local = Path(tempfile.mkdtemp(prefix="tlbench-local-", dir=args.local_dir)) if args.local_dir else work
    dv = Dovecot(work, special_use=True, keep_data=args.keep)
    pg = None
    if args.database == "postgresql":
        from tests.servers.postgres import Postgres

        # The tests' cluster runs with fsync and synchronous_commit off; production does
        # not, so the comparison uses PostgreSQL's defaults (every commit flushed).
        (work / "postgres").mkdir()
        pg = Postgres(work / "postgres", settings=PG_DURABLE)
    try:
        # -- build (not measured) ---------------------------------------------------------
        t0 = time.perf_counter()
        dv.start()
        if pg is not None:
            pg.start()
            log(f"PostgreSQL: {pg.psql('SELECT version()').strip()}; settings {PG_DURABLE}")
        user = "rep"
        corpus, rep, folders, size, generated = build_mailbox(dv, user, args.seed, args.reps, companies, n)
        status = {f: dv.mailbox_status(user, f, "messages")["messages"] for f in sorted(folders)}
        build_s = time.perf_counter() - t0
        log(
            f"\nbuilt the mailbox of {rep} (IMAP user {user!r} on {dv.host}:{dv.port}): {n:,} messages, "
            f"{size / n / 1024:.1f} KiB mean, {size / 2**20:.0f} MiB total; delivered {folders}, "
            f"Dovecot sees {status}; corpus: {args.reps} reps, {companies} companies, {len(corpus.contacts)} "
            f"contacts ({generated:,} copies generated to fill one mailbox); took {build_s:.1f}s (not measured)"
        )
        if sum(status.values()) != n:
            log("error: Dovecot does not see every delivered message")
            return 1
        # One unmeasured pass first, so no measured run pays for Dovecot building
        # its indexes or for reading the files from disk.
        log(
            f"local side (mbsync's Maildir, Threadline's SQLite): {local} "
            f"({os.popen('df -T ' + str(local) + ' | tail -1').read().split()[1]})"
        )
        log("\nwarm-up (not measured):")
        run_mbsync(dv, local, user, "no", "warmup", n)
        if args.followups_only:
            pairs = []
            for r in range(1, args.rounds + 1):
                log(f"\nround {r}/{args.rounds} ... uptime: {uptime_line()}")
                pairs.append(run_followups_pair(dv, local, corpus, rep, user, n, r, verbose=r == args.rounds))
            log_followups_comparison(n, pairs)
            log(f"uptime at the end: {uptime_line()}")
            if code_fingerprint(CODE) != code_at_start:
                log("WARNING: the application code changed during the run; later rounds measured the newer code")
            return 0

        # -- a) + b) + c) interleaved rounds: the ratios compare runs made minutes apart on a
        # machine shared with other jobs, so each round runs all three and the order rotates.
        mbs, tls, cls, pgs, pairs = [], [], [], [], []
        orders = [
            ("ceiling", "mbsync", "threadline"),
            ("threadline", "ceiling", "mbsync"),
            ("mbsync", "threadline", "ceiling"),
        ]
        for r in range(1, args.rounds + 1):
            log(f"\nround {r}/{args.rounds} ... uptime: {uptime_line()}")
            order = orders[(r - 1) % len(orders)]
            if pg is not None:
                # PostgreSQL and SQLite back to back, PostgreSQL first in even rounds: whichever runs
                # second finds the page cache warmed by the first (and the machine's load may drift).
                pair = ("postgresql", "threadline") if r % 2 == 0 else ("threadline", "postgresql")
                order = tuple(t for tool in order for t in (pair if tool == "threadline" else (tool,)))
            for tool in order:
                if tool == "ceiling":
                    cls.append(run_ceiling(dv, user, n))
                elif tool == "mbsync":
                    mbs.append(run_mbsync(dv, local, user, "no", f"mbsync{r}", n))
                elif tool == "postgresql":
                    pgs.append(
                        run_threadline(
                            dv,
                            local,
                            corpus,
                            rep,
                            user,
                            f"pg{r}",
                            n,
                            verbose=r == args.rounds,
                            pg=pg,
                            statements=args.statements,
                        )
                    )
                elif args.followups_compare:  # the follow-up queue's share of the first import
                    pair = run_followups_pair(dv, local, corpus, rep, user, n, r, verbose=r == args.rounds)
                    pairs.append(pair)
                    tls.append(pair[1])
                else:
                    tls.append(
                        run_threadline(
                            dv,
                            local,
                            corpus,
                            rep,
                            user,
                            f"threadline{r}",
                            n,
                            verbose=r == args.rounds,
                            statements=args.statements,
                        )
                    )
        fs = None
        if args.fsync_baseline:
            log(f"\nmbsync with isync's default FSync yes ... uptime: {uptime_line()}")
            fs = run_mbsync(dv, local, user, "yes", "mbsync-fsync", n)

        # -- c) no-change re-sync ------------------------------------------------------
        last = tls[-1]
        log(f"\nno-change re-sync ... uptime: {uptime_line()}")
        again = run_measured(last.extra["argv"], env=threadline_env(last.extra["data_dir"]), cwd=REPO)
        log(
            f"    as a process: rc={again.returncode} {again.seconds * 1000:.0f} ms wall (interpreter start and "
            f"imports included), max RSS {again.maxrss_mb:.1f} MB; {again.stdout.strip()}"
        )
        runs = nochange_in_process(last.extra["data_dir"], last.extra["mailbox_id"], args.nochange_runs)
        for i, r in enumerate(runs, 1):
            parts = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in r["parts"].items() if k != "batches")
            log(
                f"    in-process run {i}: sync_mailbox {r['wall'] * 1000:.1f} ms, IMAP {r['imap'] * 1000:.1f} ms "
                f"({parts}; {r['parts'].get('batches', 0)} batches), imported {r['imported']}, ok={r['ok']}"
                + (f", error {r['error']}" if r["error"] else "")
            )
        nc_wall = median([r["wall"] for r in runs])
        nc_imap = median([r["imap"] for r in runs])
        nc_ok = all(r["ok"] and r["imported"] == 0 for r in runs)

        # -- report ----------------------------------------------------------------------
        mb_s = median([m.seconds for m in mbs])
        tl_s = median([m.seconds for m in tls])
        cl_s = median([m.seconds for m in cls])
        ratios = [(n / t.seconds) / (n / m.seconds) for m, t in zip(mbs, tls, strict=True)]
        ratio = (n / tl_s) / (n / mb_s)
        shares = [c.seconds / t.seconds for c, t in zip(cls, tls, strict=True)]
        share = cl_s / tl_s
        tl_mem = max(m.tree_pss_mb for m in tls)
        counts = last.extra["counts"]
        ok_counts = all(t.extra["ok"] for t in tls)
        engine_s = median([t.extra["engine_s"] for t in tls])
        log("\n== results ==")
        log(
            f"{n:,} messages ({size / 2**20:.0f} MiB) in one mailbox, {args.rounds} interleaved round(s), "
            f"medians; {machine_summary()}"
        )
        rows = [
            [
                "fetch-only ceiling (Threadline's FETCH items, answer discarded)",
                n,
                cl_s,
                n / cl_s,
                median([m.cpu_s for m in cls]),
                median([m.extra["dovecot_cpu"] for m in cls]),
                max(m.maxrss_mb for m in cls),
                "runs: " + ", ".join(f"{m.seconds:.1f}s" for m in cls),
            ],
            [
                "mbsync (full messages, FSync no)",
                n,
                mb_s,
                n / mb_s,
                median([m.cpu_s for m in mbs]),
                median([m.extra["dovecot_cpu"] for m in mbs]),
                max(m.maxrss_mb for m in mbs),
                "runs: " + ", ".join(f"{m.seconds:.1f}s" for m in mbs),
            ],
            [
                "Threadline first sync",
                n,
                tl_s,
                n / tl_s,
                median([m.cpu_s for m in tls]),
                median([m.extra["dovecot_cpu"] for m in tls]),
                tl_mem,
                "runs: "
                + ", ".join(f"{m.seconds:.1f}s" for m in tls)
                + f"; memory = PSS sum of its {max(m.tree_procs for m in tls)} processes",
            ],
        ]
        if fs is not None:
            rows.insert(
                2,
                [
                    "mbsync (isync default FSync yes)",
                    n,
                    fs.seconds,
                    n / fs.seconds,
                    fs.cpu_s,
                    fs.extra["dovecot_cpu"],
                    fs.maxrss_mb,
                    "1 run",
                ],
            )
        log(
            table(
                ["tool", "messages", "seconds", "messages/s", "CPU s", "Dovecot CPU s", "peak RSS MB", "note"],
                rows,
                align="lrrrrrrl",
            )
        )
        log(
            f"(Threadline's own report, without interpreter start-up, median: {engine_s:.1f}s = "
            f"{n / engine_s:,.0f} msg/s)"
        )
        log("")
        log(f"(fetch items of the ceiling, Threadline's own: {cls[-1].extra['items']})")
        fig = [
            [
                "Threadline / fetch-only ceiling messages/s",
                f"{share:.0%} (rounds: " + ", ".join(f"{x:.0%}" for x in shares) + ")",
                f">= {TARGET_CEILING_SHARE:.0%} (must >= {MUST_CEILING_SHARE:.0%})",
                "MET"
                if share >= TARGET_CEILING_SHARE
                else ("must-level only" if share >= MUST_CEILING_SHARE else "MISSED"),
            ],
            [
                "Threadline / mbsync (FSync no) messages/s",
                f"{ratio:.2f}x (rounds: " + ", ".join(f"{x:.2f}" for x in ratios) + ")",
                f">= {TARGET_VS_MBSYNC_NOFSYNC:.0f}x",
                verdict(ratio >= TARGET_VS_MBSYNC_NOFSYNC),
            ],
        ]
        if fs is not None:
            r2 = (n / tl_s) / (n / fs.seconds)
            fig.append(
                [
                    "Threadline / mbsync (isync default, FSync yes) messages/s",
                    f"{r2:.2f}x",
                    f">= {TARGET_VS_MBSYNC_DEFAULT:.0f}x",
                    verdict(r2 >= TARGET_VS_MBSYNC_DEFAULT),
                ]
            )
        fig += [
            [
                "Threadline peak memory (PSS, all processes, max)",
                f"{tl_mem:.0f} MB",
                f"< {TARGET_RSS_MB:.0f} MB",
                verdict(tl_mem < TARGET_RSS_MB),
            ],
            [
                "no-change re-sync: IMAP work (median)",
                f"{nc_imap * 1000:.1f} ms",
                f"< {TARGET_NOCHANGE_MS:.0f} ms",
                verdict(nc_imap * 1000 < TARGET_NOCHANGE_MS and nc_ok),
            ],
            ["no-change re-sync: sync_mailbox wall (median)", f"{nc_wall * 1000:.1f} ms", "-", "-"],
            ["no-change re-sync: whole `threadline sync` process", f"{again.seconds * 1000:.0f} ms", "-", "-"],
            [
                "database built (interactions/participants/contacts/companies)",
                f"{counts['interaction']:,}/{counts['participant']:,}/{counts['contact']:,}/{counts['company']:,}",
                "> 0 each, every message seen",
                verdict(ok_counts),
            ],
        ]
        log(table(["figure", "measured", "target", "verdict"], fig, align="lrll"))
        if pgs:
            log_postgresql_comparison(n, tls, pgs)
        if pairs:
            log_followups_comparison(n, pairs)
        log(f"uptime at the end: {uptime_line()}")
        code_at_end = code_fingerprint(CODE)
        if code_at_end != code_at_start:
            log(
                f"WARNING: the application code changed during the run ({code_at_start} -> {code_at_end}); "
                f"later phases measured the newer code"
            )
        if args.profile:
            log("\n[profile] where a first sync spends its time")
            profile_in_process(local / "threadline-profile", corpus, rep, dv.host, dv.port, user)
        return 0
    finally:
        dv.stop()
        if pg is not None:
            pg.stop()
        if args.keep:
            log(f"\nkept: {work} {local if local != work else ''}")
        else:
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(local, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
