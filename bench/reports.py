#!/usr/bin/env python
"""Every report rendered on the large data set of bench/api_lookup.py, beside the 300 ms target.

    .venv/bin/python bench/reports.py [--interactions 1000000] [--rounds 5] [--budget 25] [--db PATH]

1. The data set is bench/api_lookup.py's (build_db: 1 organisation, 20 users, contacts/10
   companies, interactions/10 contacts, skewed activity over a year, 2-3 participants each),
   plus a pipeline with --deals deals (open, won and lost, close dates over the next months).
   Building it is not measured. It is cached: --db PATH (default /tmp/tlbench-reports/<n>.db)
   is reused when it exists, so a second run starts measuring at once.
2. Each report is rendered in-process as the SVG route does it (the service's SQL, then every
   table drawn as SVG and written as CSV), for the whole team (what a manager sees first, the
   largest) and for one rep, --rounds times each with the default filters (the last 12 weeks),
   stopping a report early once it has spent --budget seconds. No HTTP: the route adds
   FastAPI's overhead, about a millisecond.
3. Activity and response times read the summaries kept at ingest (sync/reportsums.py). Beside
   them, the baseline: the same reports computed from the raw rows over the range, as they were
   before the summaries (the summaries' own definitions, restricted to the range). When the
   cached database has no summaries yet they are built first (timed, not part of a render).
4. New contacts and cold accounts read only what their range needs (the indexes of migration
   0020; one index seek per company). Beside them, the baseline: the full scans they ran before
   (every contact numbered per company; every participant row grouped by company). Their
   tables must be equal to the baseline's.

Target (issue 13): every report p99 < 300 ms on 1,000,000 interactions.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, REPO)

from bench._util import machine_summary, percentile, table, uptime_line, verdict  # noqa: E402

TARGET_MS = 300.0
FMT = "%Y-%m-%d %H:%M:%S.%f"


def add_deals(db_path: Path, n_deals: int, n_users: int, n_companies: int, seed: int) -> None:
    """A pipeline with the usual six stages and n_deals deals in it, written in bulk."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    con = sqlite3.connect(db_path, isolation_level=None)
    con.execute("BEGIN")
    con.execute(
        "INSERT INTO pipeline (id, org_id, name, position, created_at) VALUES (1, 1, 'Sales', 0, ?)",
        (now.strftime(FMT),),
    )
    stages = [
        ("Qualified", "open", 10),
        ("Meeting booked", "open", 25),
        ("Proposal sent", "open", 50),
        ("Negotiation", "open", 75),
        ("Won", "won", 100),
        ("Lost", "lost", 0),
    ]
    con.executemany(
        "INSERT INTO pipelinestage (id, org_id, pipeline_id, name, position, kind, probability) "
        "VALUES (?, 1, 1, ?, ?, ?, ?)",
        [(i + 1, name, i, kind, p) for i, (name, kind, p) in enumerate(stages)],
    )
    rows = []
    for d in range(1, n_deals + 1):
        stage = rng.choices(range(1, 7), weights=(30, 20, 15, 10, 15, 10))[0]
        opened = now - timedelta(days=rng.uniform(1, 300))
        closed = opened + timedelta(days=rng.uniform(1, 90)) if stage >= 5 else None
        close_date = (now + timedelta(days=rng.uniform(-30, 200))).date().isoformat()
        rows.append(
            (
                d,
                stage,
                f"Deal {d}",
                rng.randint(1, n_companies),
                rng.randint(1, n_users),
                rng.randint(1, 500) * 10_000,
                close_date,
                opened.strftime(FMT),
                closed.strftime(FMT) if closed else None,
                now.strftime(FMT),
            )
        )
    con.executemany(
        "INSERT INTO deal (id, org_id, pipeline_id, stage_id, name, company_id, owner_id, amount_minor, currency, "
        "close_date, shared, opened_at, stage_changed_at, closed_at, updated_at) "
        "VALUES (?, 1, 1, ?, ?, ?, ?, ?, 'EUR', ?, 0, ?, ?, ?, ?)",
        [(*r[:7], r[7], r[7], r[8], r[9]) for r in rows],
    )
    con.execute("COMMIT")
    con.close()


def build(db_path: Path, args) -> None:
    from bench.api_lookup import build_db

    t0 = time.perf_counter()
    info = build_db(db_path, args.contacts, args.interactions, args.users, args.seed)
    add_deals(db_path, args.deals, args.users, info["companies"], args.seed)
    print(
        f"built {db_path} in {time.perf_counter() - t0:.0f} s (not measured): {args.interactions:,} interactions, "
        f"{info['participants']:,} participants, {args.contacts:,} contacts, {args.deals:,} deals",
        flush=True,
    )


def render(conn, actor, name: str, rep_id):
    from app.api import charts
    from app.api.reports import table_csv
    from app.services import reports

    data = reports.run(conn, actor, name, rep_id=rep_id)
    for t in data["tables"]:
        charts.render(t, 720)
        table_csv(t)
    return data


def raw_activity_counts(conn, s):
    """The baseline: activity from the range's participant rows (the report before the summaries)."""
    from datetime import date as _date

    from sqlalchemy import text

    from app.db import db_time
    from sync import reportsums

    rep = "p.user_id = :rep" if s.rep_id is not None else "p.user_id IN (SELECT id FROM app_user WHERE org_id = :org)"
    sql = reportsums._activity_sql(conn, f"{rep} AND p.occurred_at >= :since AND p.occurred_at < :until")
    counts: dict = {}
    for user_id, d, *c in conn.execute(
        text(sql), {"org": s.org_id, "rep": s.rep_id, "since": db_time(conn, s.since), "until": db_time(conn, s.until)}
    ):
        day = _date.fromisoformat(d)
        k = counts.setdefault((user_id, (day - timedelta(days=day.weekday())).isoformat()), [0, 0, 0])
        for n in range(3):
            k[n] += int(c[n])
    return counts


def raw_answer_figures(conn, s):
    """The baseline: the range's emails walked into turns at every render, the samples fetched and
    sorted in Python (the report before the summaries)."""
    from sqlalchemy import text

    from app.db import db_time
    from app.services import reports
    from sync import reportsums

    where = "i.occurred_at >= :since AND i.occurred_at < :until"
    if s.rep_id is not None:  # one rep: their threads only, as the report did
        where += """ AND i.thread_key IN (SELECT r.thread_key FROM participant q JOIN interaction r
          ON r.id = q.interaction_id WHERE q.org_id = :org AND q.user_id = :rep AND q.role = 'from'
          AND q.occurred_at >= :since AND q.occurred_at < :until)"""
    params = {
        "org": s.org_id,
        "rep": s.rep_id,
        "since": db_time(conn, s.since),
        "until": db_time(conn, s.until),
        "no": False,
    }
    users = {
        a: u
        for a, u in conn.execute(
            text(
                "SELECT lower(email), id FROM app_user WHERE org_id = :o "
                "UNION ALL SELECT lower(address), user_id FROM useralias WHERE org_id = :o"
            ),
            {"o": s.org_id},
        )
    }
    by: dict = {}
    for r in conn.execute(text(reportsums._samples_sql(conn, where)), params):
        rep = users.get(r[5] or "")
        if rep is None or (s.rep_id is not None and rep != s.rep_id):
            continue
        by.setdefault((rep, "rep" if r[4] == "out" else "customer"), []).append(float(r[3]))
    return {k: reports.figures_of(v) for k, v in by.items()}


def raw_new_contact_counts(conn, s):
    """The baseline: every contact joined to its summary and numbered within its company by a
    window, the range applied after, the rows counted in Python (the report before migration 0020)."""
    from sqlalchemy import text

    from app.services import reports

    first = (
        "CASE WHEN cs.first_email_at IS NOT NULL AND cs.first_email_at < c.created_at "
        "THEN cs.first_email_at ELSE c.created_at END"
    )
    rep = (
        "AND (c.owner_id = :rep OR EXISTS (SELECT 1 FROM contactcolleague cc "
        "WHERE cc.contact_id = c.id AND cc.user_id = :rep))"
        if s.rep_id is not None
        else ""
    )
    base = f"""SELECT c.id, c.company_id, {first} AS first_at, cs.first_email_at IS NOT NULL AS emailed,
                 COALESCE(cs.meetings, 0) AS meetings
               FROM contact c LEFT JOIN contactstats cs ON cs.contact_id = c.id
               WHERE c.org_id = :org {rep}"""
    found = conn.execute(
        text(
            f"""WITH f AS ({base}),
            r AS (SELECT f.*, ROW_NUMBER() OVER (PARTITION BY company_id ORDER BY first_at, id) AS n FROM f)
            SELECT id, company_id, {reports._week(conn, "first_at")} AS wk, emailed, meetings, n FROM r
            WHERE first_at >= :since AND first_at < :until"""
        ),
        reports._params(conn, s),
    ).all()
    targets = conn.execute(
        text("SELECT target FROM auditevent WHERE org_id = :o AND action = 'contact.create'"), {"o": s.org_id}
    ).scalars()
    manual = {int(t[8:]) for t in targets if t and t.startswith("contact:") and t[8:].isdigit()}
    out: dict = {"contacts": {}, "companies": {}}
    for r in found:
        src = "manual" if r.id in manual else "email" if r.emailed else "meeting" if r.meetings else "other"
        for key in ("contacts", "companies") if r.company_id is not None and r.n == 1 else ("contacts",):
            out[key][(r.wk, src)] = out[key].get((r.wk, src), 0) + 1
    return out


def raw_quiet_companies(conn, s, cutoff):
    """The baseline: every participant row with a company grouped by company for its last activity
    (the report before one index seek per company)."""
    from sqlalchemy import text

    from app.db import db_time
    from app.services import reports, strength

    rep = (
        "AND p.company_id IN (SELECT c.company_id FROM contactcolleague cc JOIN contact c ON c.id = cc.contact_id "
        "WHERE cc.org_id = :org AND cc.user_id = :rep AND c.company_id IS NOT NULL)"
        if s.rep_id is not None
        else ""
    )
    window = reports._minus_days(conn, "l.last_at", strength.WINDOW_DAYS)
    return conn.execute(
        text(
            f"""WITH l AS (
              SELECT p.company_id, MAX(p.occurred_at) AS last_at FROM participant p
              WHERE p.org_id = :org AND p.company_id IS NOT NULL {rep}
              GROUP BY p.company_id HAVING MAX(p.occurred_at) < :cutoff AND MAX(p.occurred_at) >= :since
            )
            SELECT l.company_id, l.last_at, k.name, k.domain, i.kind, i.direction, COUNT(DISTINCT i.id) AS n
            FROM l JOIN company k ON k.id = l.company_id
            LEFT JOIN participant p ON p.org_id = :org AND p.company_id = l.company_id AND p.occurred_at >= {window}
            LEFT JOIN interaction i ON i.id = p.interaction_id AND i.kind IN ('email', 'meeting')
            GROUP BY l.company_id, l.last_at, k.name, k.domain, i.kind, i.direction"""
        ),
        reports._params(conn, s, cutoff=db_time(conn, cutoff)),
    ).all()


def measure(engine, manager, name: str, rep, args) -> tuple[list[float], dict]:
    from app.db import read_only

    times: list[float] = []
    spent = 0.0
    data: dict = {}
    for _ in range(args.rounds + 1):  # the first round warms the caches and is not counted
        with read_only(engine) as conn:
            t0 = time.perf_counter()
            data = render(conn, manager, name, rep)
            took = time.perf_counter() - t0
        times.append(took * 1000)
        spent += took
        if spent > args.budget:
            break
    return sorted(times[1:]) or times, data


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--interactions", type=int, default=1_000_000)
    ap.add_argument("--contacts", type=int, default=None, help="default: interactions / 10")
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--deals", type=int, default=2_000)
    ap.add_argument("--rounds", type=int, default=5, help="renders per report and scope (default 5)")
    ap.add_argument("--budget", type=float, default=25.0, help="seconds one report may take in all (default 25)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--db", type=Path, default=None, help="the cached database (built when missing)")
    args = ap.parse_args()
    args.contacts = args.contacts or max(100, args.interactions // 10)
    db_path = args.db or Path(f"/tmp/tlbench-reports/{args.interactions}.db")

    print("== Reports on a large data set ==")
    print(machine_summary())
    print(f"uptime: {uptime_line()}", flush=True)
    if not db_path.exists():
        db_path.parent.mkdir(parents=True, exist_ok=True)
        build(db_path, args)
    else:
        print(f"reusing {db_path} ({db_path.stat().st_size / 2**20:.0f} MiB)")

    from app.db import make_engine, read_only, upgrade, write_transaction
    from app.services import reports
    from app.services.actor import Actor
    from sync import reportsums

    url = f"sqlite:///{db_path}"
    upgrade(url)  # the indexes the reports rely on (0015, 0020) and the summaries (0019)
    engine = make_engine(url)
    manager = Actor.operator(1)  # sees every rep, like a manager or an admin
    with read_only(engine) as conn:
        n = conn.exec_driver_sql("SELECT count(*) FROM interaction").scalar()
        busiest = conn.exec_driver_sql(
            "SELECT user_id FROM participant WHERE user_id IS NOT NULL GROUP BY user_id ORDER BY count(*) DESC LIMIT 1"
        ).scalar()
        kept = conn.exec_driver_sql("SELECT count(*) FROM repday").scalar()
    if not kept:
        t0 = time.perf_counter()
        with write_transaction(engine) as conn:
            reportsums.rebuild(conn, 1)
        print(f"built the report summaries in {time.perf_counter() - t0:.0f} s (not measured)")
    with read_only(engine) as conn:
        days, samples = (conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar() for t in ("repday", "answersample"))
    print(
        f"{n:,} interactions; one rep = user {busiest} (the busiest); {days:,} repday rows, {samples:,} answer samples\n"
    )

    rows = []
    summarised = {
        "activity": ("activity_counts", raw_activity_counts),
        "response-times": ("answer_figures", raw_answer_figures),
        "new-contacts": ("new_contact_counts", raw_new_contact_counts),
        "cold-accounts": ("quiet_companies", raw_quiet_companies),
    }
    for name in reports.REPORTS:
        for scope, rep in (("team", None), ("one rep", busiest)):
            base = "same code"
            if name in summarised:
                attr, raw = summarised[name]
                kept_fn = getattr(reports, attr)
                setattr(reports, attr, raw)
                try:
                    before, before_data = measure(engine, manager, name, rep, args)
                finally:
                    setattr(reports, attr, kept_fn)
                base = f"{percentile(before, 50):.0f} / {percentile(before, 99):.0f}"
            counted, data = measure(engine, manager, name, rep, args)
            if name in ("activity", "new-contacts", "cold-accounts"):
                # the summaries (activity) and the range reads give the figures the full scans give
                assert data["tables"] == before_data["tables"], f"{name} ({scope}): differs from the baseline"
                assert data["notes"] == before_data["notes"], f"{name} ({scope}): differs from the baseline"
            elif name == "response-times":
                # The same but at the range's start: the baseline walked turns from the first email
                # in the range, so a turn begun before it (a reminder inside it) counted from the reminder.
                answers = [sum(r[1] + r[4] for r in d["tables"][0]["rows"]) for d in (before_data, data)]
                print(f"  response-times ({scope}): answers counted, baseline {answers[0]:,}, now {answers[1]:,}")
            size = sum(len(t["rows"]) for t in data["tables"])
            p50, p99 = percentile(counted, 50), percentile(counted, 99)
            rows.append(
                [
                    name,
                    scope,
                    len(counted),
                    size,
                    base,
                    f"{p50:.0f}",
                    f"{p99:.0f}",
                    f"{TARGET_MS:.0f}",
                    verdict(p99 < TARGET_MS),
                ]
            )
            print(f"  {name} ({scope}): baseline p50/p99 {base} ms; now p50 {p50:.0f} ms, p99 {p99:.0f} ms", flush=True)
    print()
    print(
        table(
            [
                "report",
                "scope",
                "renders",
                "rows",
                "baseline p50/p99 ms",
                "p50 ms",
                "p99 ms",
                "target ms",
                "p99 < target",
            ],
            rows,
        )
    )
    print(f"\nuptime at the end: {uptime_line()}")
    engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
