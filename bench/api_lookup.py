#!/usr/bin/env python
"""The sidebar's lookup API under load: GET /api/lookup?email=... on a big database.

    .venv/bin/python bench/api_lookup.py [--contacts 100000] [--interactions 1000000] [--duration 20]
                                         [--database sqlite|postgresql]

1. Builds a SQLite database with the app's schema (alembic, app.db.upgrade) and
   fills it with bulk SQL straight through sqlite3: 1 organisation, 20 users,
   contacts with their addresses, ~contacts/10 companies, interactions with
   2-3 participants each (the contact and one or two colleagues). Activity is
   skewed: contact k (in a random order) gets a share ~ 1/(k+30), so most
   contacts have a handful of interactions and the busiest thousands.
   Timed separately, not part of the measurement. With --database postgresql the
   same rows are then copied (COPY) into a database with the app's migrations on a
   private PostgreSQL cluster (tests/servers), which the server reads instead.
2. Issues a personal access token, starts the app under uvicorn in its own
   process (no sync scheduler) and drives it from a load generator in another
   process (bench/_loadgen.py: raw asyncio keep-alive HTTP/1.1, its CPU use is
   reported):
   a) open loop: a fixed arrival rate (500/s) of lookups of random contacts,
      latency counted from each request's scheduled send time;
   b) closed loop: 32 clients back to back, on the lookup and on the trivial /livez.
3. Also times the lookup's SQL in-process for typical and for the busiest
   contacts, with SQLite's query plans, so slow statements are easy to name.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, REPO)

from bench._api_server import FIRST_ROUTE  # noqa: E402
from bench._util import (  # noqa: E402
    PYTHON,
    TreeSampler,
    code_fingerprint,
    machine_summary,
    percentile,
    table,
    tree_cpu_seconds,
    uptime_line,
    verdict,
)

TARGET_P99_MS, TARGET_RATIO = 20.0, 0.5
CODE = ["app/*.py", "app/api/*.py", "app/models/*.py", "app/services/*.py", "migrations/versions/*.py"]
ORG_DOMAIN = "northwind.io"
FMT = "%Y-%m-%d %H:%M:%S.%f"

# The exact column lists of the tables (app/models/*.py); checked against the
# migrated schema before anything is written.
COLUMNS = {
    "organisation": (
        "id",
        "name",
        "internal_domains",
        "contact_policy",
        "visibility",
        "backfill_days",
        "sync_interval_seconds",
        "bulk_detection",
        "created_at",
    ),
    "app_user": ("id", "org_id", "email", "name", "role", "active", "created_at"),
    "company": ("id", "org_id", "domain", "name", "created_at"),
    "contact": (
        "id",
        "org_id",
        "name",
        "search_name",
        "primary_email",
        "company_id",
        "title",
        "phone",
        "stage",
        "tags",
        "owner_id",
        "created_at",
    ),
    "contactaddress": ("id", "org_id", "contact_id", "address"),
    "interaction": (
        "id",
        "org_id",
        "kind",
        "message_key",
        "occurred_at",
        "direction",
        "subject",
        "snippet",
        "thread_key",
        "from_address",
        "created_at",
    ),
    "participant": (
        "id",
        "org_id",
        "interaction_id",
        "occurred_at",
        "address",
        "name",
        "role",
        "contact_id",
        "company_id",
        "user_id",
    ),
}

FIRST = (
    "james emma olivia noah sophie lucas mia ethan amelia jack isla oliver grace henry ava leo nora felix "
    "lena jonas anna mateo lucia sofia francois amelie bjorn asa lukasz anais renee niamh raj aisha wei mei "
    "yuki hiroshi omar layla tomas ines dmitri katarzyna eero maelle david sarah michael laura daniel rachel "
    "tom kate sam priyanka arjun chen kwame ngozi lars ingrid pablo carmen jurgen eleanor rory zara"
).split()
LAST = (
    "smith johnson williams brown taylor wilson davies evans thomas roberts muller schneider fischer weber "
    "becker alvarez garcia martinez fernandez nunez ostergaard jorgensen lindqvist akesson dubois lefevre "
    "moreau rossi bianchi kowalski dvorak novak oconnor osullivan macleod patel sharma wang tanaka sato kim "
    "nguyen okafor mensah vandenberg devries jansen costa silva santos ivanova petrov cohen haddad murphy "
    "kelly walsh anderson clark lewis walker hall young king"
).split()
WORDS = (
    "acme globex initech umbrella hooli vandelay soylent stark wayne wonka tyrell cyberdyne nakatomi "
    "oscorp gringotts monarch aperture black mesa blue sun buy more dunder vance pied piper prestige "
    "sterling cooper bluth strickland massive dynamic gekko kramerica duff krusty"
).split()
TITLES = (
    "CTO",
    "Head of Data",
    "VP Engineering",
    "Procurement Manager",
    "Analyst",
    "Director of Operations",
    "CFO",
    "Data Engineer",
    "IT Manager",
    None,
    None,
)
FREEMAIL = ("gmail.com", "outlook.com", "yahoo.com", "icloud.com", "gmx.de", "proton.me")
SUBJECTS = (
    "Quick question about the renewal",
    "Re: Pilot results",
    "Pricing for the enterprise tier",
    "Follow-up from our call",
    "Re: Data export issue",
    "Invoice {n}",
    "Meeting next week?",
    "Re: Onboarding plan",
    "Security questionnaire",
    "Re: Re: Contract redlines",
    "Intro: {n}",
    "Your trial ends soon",
    "Re: Dashboard feedback",
    "Q{q} business review",
)
SNIPPETS = (
    "Hi, thanks for the call yesterday. As promised, here is a short summary of what we discussed and the next "
    "steps on our side. Let me know if anything is missing.",
    "Following up on the proposal: legal has a few comments on section 4, mostly about the data retention "
    "terms. Could we set up 30 minutes this week?",
    "Great to hear the pilot went well! I have attached the numbers for the last quarter and a draft of the "
    "rollout plan for the remaining teams.",
    "Quick one: the export to the warehouse failed again last night with a timeout. Is there a workaround "
    "until the fix ships?",
    "Please find the invoice attached. Payment terms are net 30 as agreed; reach out if the PO number needs to change.",
)


def log(msg: str = "") -> None:
    print(msg, flush=True)


def ts(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime(FMT)


# -- database ----------------------------------------------------------------------


def check_columns(con: sqlite3.Connection) -> None:
    for tbl, cols in COLUMNS.items():
        actual = tuple(r[1] for r in con.execute(f"PRAGMA table_info({tbl})"))
        if not set(cols) <= set(actual):
            raise SystemExit(f"schema changed: {tbl} has {actual}, the benchmark writes {cols}")


def insert(con: sqlite3.Connection, tbl: str, rows) -> None:
    cols = COLUMNS[tbl]
    con.executemany(f"INSERT INTO {tbl} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)


def build_db(db_path: Path, n_contacts: int, n_interactions: int, n_users: int, seed: int) -> dict:
    from app.db import upgrade

    rng = random.Random(seed)
    upgrade(f"sqlite:///{db_path}")
    con = sqlite3.connect(db_path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA cache_size=-1000000")
    con.execute("PRAGMA temp_store=MEMORY")
    check_columns(con)
    # Secondary indexes are dropped for the load and built again afterwards
    # (one sort each instead of millions of random B-tree inserts).
    indexes = con.execute(
        "SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL "
        "AND tbl_name IN ('participant', 'interaction', 'contact', 'contactaddress')"
    ).fetchall()
    for name, _ in indexes:
        con.execute(f"DROP INDEX {name}")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    created = ts(now - timedelta(days=400))
    con.execute("BEGIN")
    insert(
        con,
        "organisation",
        [(1, "Northwind Analytics", json.dumps([ORG_DOMAIN]), "exchanged", "snippet", 365, 300, 1, created)],
    )
    users = []
    for u in range(1, n_users + 1):
        first, last = FIRST[u % len(FIRST)], LAST[(u * 7) % len(LAST)]
        users.append(
            (
                u,
                1,
                f"{first}.{last}@{ORG_DOMAIN}",
                f"{first.title()} {last.title()}",
                "admin" if u == 1 else "rep",
                1,
                created,
            )
        )
    insert(con, "app_user", users)

    n_companies = max(1, n_contacts // 10)
    companies = []
    for c in range(1, n_companies + 1):
        word = WORDS[c % len(WORDS)]
        companies.append((c, 1, f"{word}-{c}.com", f"{word.title()} {c}", created))
    insert(con, "company", companies)
    company_domain = {c[0]: c[2] for c in companies}

    contacts, addresses = [], []
    contact_email, contact_name, contact_company, contact_owner = [None], [None], [None], [None]
    addr_id = 0
    for k in range(1, n_contacts + 1):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        name = f"{first.title()} {last.title()}"
        # companies are skewed too: a few big customers, many small ones
        company = 1 + int(n_companies * rng.random() ** 2)
        if rng.random() < 0.1:
            email, company_id = f"{first}{last}{k}@{rng.choice(FREEMAIL)}", None
        else:
            email, company_id = f"{first}.{last}.{k}@{company_domain[company]}", company
        owner = rng.randint(1, n_users) if rng.random() < 0.7 else None
        contacts.append(
            (
                k,
                1,
                name,
                name.lower(),
                email,
                company_id,
                rng.choice(TITLES),
                f"+1 555 {k % 10000:04d}" if rng.random() < 0.3 else None,
                None,
                "[]",
                owner,
                created,
            )
        )
        addr_id += 1
        addresses.append((addr_id, 1, k, email))
        if rng.random() < 0.05:
            addr_id += 1
            addresses.append((addr_id, 1, k, f"{first[0]}{last}{k}@{company_domain[company]}"))
        contact_email.append(email)
        contact_name.append(name)
        contact_company.append(company_id)
        contact_owner.append(owner)
    insert(con, "contact", contacts)
    insert(con, "contactaddress", addresses)
    del contacts, addresses

    # Activity: the contact at rank r (random order) has weight 1/(r+30).
    order = list(range(1, n_contacts + 1))
    rng.shuffle(order)
    cum, acc = [], 0.0
    for r in range(n_contacts):
        acc += 1.0 / (r + 30)
        cum.append(acc)
    picks = rng.choices(order, cum_weights=cum, k=n_interactions)
    span = 365 * 86400
    times = sorted(now.timestamp() - span * rng.random() ** 1.5 for _ in range(n_interactions))
    per_contact = [0] * (n_contacts + 1)
    last_thread: dict[int, str] = {}
    pid = 0
    chunk = 100_000
    for start in range(0, n_interactions, chunk):
        inter, parts = [], []
        for i in range(start, min(start + chunk, n_interactions)):
            iid = i + 1
            c = picks[i]
            per_contact[c] += 1
            occurred = datetime.fromtimestamp(times[i], timezone.utc).strftime(FMT)
            rep = contact_owner[c] if contact_owner[c] and rng.random() < 0.8 else rng.randint(1, n_users)
            rep_email, rep_name = users[rep - 1][2], users[rep - 1][3]
            direction = "in" if rng.random() < 0.55 else "out"
            domain = contact_email[c].rpartition("@")[2] if direction == "in" else ORG_DOMAIN
            key = f"<{iid:x}.{rng.getrandbits(40):x}@{domain}>"
            thread = last_thread.get(c) if rng.random() < 0.6 else None
            if thread is None:
                thread = last_thread[c] = key
            subject = rng.choice(SUBJECTS).format(n=iid, q=1 + iid % 4)
            sender = contact_email[c] if direction == "in" else rep_email
            inter.append(
                (iid, 1, "email", key, occurred, direction, subject, rng.choice(SNIPPETS), thread, sender, occurred)
            )
            pid += 1
            parts.append(
                (
                    pid,
                    1,
                    iid,
                    occurred,
                    contact_email[c],
                    contact_name[c],
                    "from" if direction == "in" else "to",
                    c,
                    contact_company[c],
                    None,
                )
            )
            pid += 1
            parts.append(
                (pid, 1, iid, occurred, rep_email, rep_name, "to" if direction == "in" else "from", None, None, rep)
            )
            if rng.random() < 0.3:
                other = rng.randint(1, n_users)
                if other != rep:
                    pid += 1
                    parts.append(
                        (pid, 1, iid, occurred, users[other - 1][2], users[other - 1][3], "cc", None, None, other)
                    )
        insert(con, "interaction", inter)
        insert(con, "participant", parts)
    con.execute("COMMIT")
    for _, sql in indexes:
        con.execute(sql)
    # The per-contact summaries ingest keeps (sync/stats.py), computed here in
    # one pass with the same definition.
    from sync import stats

    con.execute(stats._STATS_SQL.format(contacts="p.contact_id IS NOT NULL").replace(":org", "1"))
    con.execute(
        stats._COLLEAGUE_SQL.format(contacts="c.contact_id IS NOT NULL")
        .replace(":org", "1")
        .replace(":now", f"'{ts(now)}'")
    )
    if hasattr(stats, "_DAY_SELECT"):  # relationship strength's per-day summary, where the code has it
        day = "substr(c.occurred_at, 1, 10)"
        con.execute(
            (stats._DAY_INSERT + stats._DAY_SELECT.format(day=day, contacts="c.contact_id IS NOT NULL")).replace(
                ":org", "1"
            )
        )
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    counts = sorted(per_contact[1:])
    return {
        "users": users,
        "contact_email": contact_email,
        "per_contact": per_contact,
        "participants": pid,
        "companies": n_companies,
        "addresses": addr_id,
        "activity": {
            "max": counts[-1],
            "p50": percentile(counts, 50),
            "p90": percentile(counts, 90),
            "p99": percentile(counts, 99),
            "p99.9": percentile(counts, 99.9),
            "with_100_plus": sum(1 for x in counts if x >= 100),
            "with_1000_plus": sum(1 for x in counts if x >= 1000),
            "with_none": sum(1 for x in counts if x == 0),
        },
    }


def copy_to_postgres(db_path: Path, pg) -> str:
    """A database on the cluster `pg` with the app's migrations and every row of the SQLite
    database build_db made (COPY, the secondary indexes dropped for the load and built again);
    its sequences moved past the copied ids and ANALYZE run, as autovacuum would after a load
    this size. Returns its URL."""
    import psycopg2
    from sqlalchemy.engine import make_url

    from app.db import _copy_text, upgrade

    url = pg.create_database("bench")
    upgrade(url)
    u = make_url(url)
    src = sqlite3.connect(db_path)
    dst = psycopg2.connect(host=u.host, port=u.port, user=u.username, dbname=u.database)
    try:
        cur = dst.cursor()
        cur.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND indexname NOT IN "
            "(SELECT conname FROM pg_constraint)"
        )
        indexes = cur.fetchall()
        for name, _ in indexes:
            cur.execute(f'DROP INDEX "{name}"')
        tables = [
            r[0]
            for r in src.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                "AND name <> 'alembic_version'"
            )
        ]
        # Parents first: the foreign keys are checked row by row.
        order = ["organisation", "app_user", "company", "contact", "contactaddress", "interaction", "participant"]
        tables.sort(key=lambda t: order.index(t) if t in order else len(order))
        for tbl in tables:
            cols = [r[1] for r in src.execute(f"PRAGMA table_info({tbl})")]
            cur.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s", (tbl,))
            types = dict(cur.fetchall())
            cols = [c for c in cols if c in types]
            booleans = {i for i, c in enumerate(cols) if types[c] == "boolean"}
            rows = src.execute(f"SELECT {', '.join(cols)} FROM {tbl}")
            while chunk := rows.fetchmany(100_000):
                if booleans:  # SQLite keeps 0/1
                    chunk = [
                        tuple(bool(v) if i in booleans and v is not None else v for i, v in enumerate(r)) for r in chunk
                    ]
                cur.copy_expert(f"COPY {tbl} ({', '.join(cols)}) FROM STDIN", io.StringIO(_copy_text(chunk)))
            if "id" in cols:
                cur.execute(
                    f"SELECT setval(pg_get_serial_sequence('{tbl}', 'id'), (SELECT max(id) FROM {tbl})) "
                    f"WHERE EXISTS (SELECT 1 FROM {tbl}) AND pg_get_serial_sequence('{tbl}', 'id') IS NOT NULL"
                )
        for _, sql in indexes:
            cur.execute(sql)
        dst.commit()
        dst.autocommit = True
        cur.execute("VACUUM ANALYZE")
    finally:
        dst.close()
        src.close()
    return url


# -- in-process SQL look ------------------------------------------------------------------


def sql_profile(
    url: str, emails: list[str], typical: str, busiest: list[str], samples: int, seed: int, budget_s: float = 30.0
) -> dict:
    """Service time of timeline.lookup in-process (no HTTP), and per statement with
    the database's query plan for a typical and for the busiest contact."""
    from sqlalchemy import event

    from app.db import make_engine
    from app.services import timeline

    engine = make_engine(url)
    on_sqlite = engine.dialect.name == "sqlite"
    statements: list[list] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        conn.info["t0"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        statements.append([statement, parameters, time.perf_counter() - conn.info["t0"]])

    rng = random.Random(seed)
    out: dict = {}
    try:
        from app.db import read_only  # the API's own way to get a connection, where the app has it

        connect = lambda: read_only(engine)  # noqa: E731
    except ImportError:
        connect = engine.connect
    with connect() as conn:
        raw = conn.connection.driver_connection

        def statements_of(email: str) -> list[dict]:
            conn.rollback()  # each lookup in its own read transaction, like a request
            statements.clear()
            timeline.lookup(conn, 1, email)
            got = []
            for stmt, params, secs in list(statements):
                if stmt.strip().upper() == "BEGIN":
                    continue
                if on_sqlite:
                    try:
                        plan = [r[3] for r in raw.execute("EXPLAIN QUERY PLAN " + stmt, params).fetchall()]
                    except sqlite3.Error as exc:
                        plan = [f"(no plan: {exc})"]
                else:
                    cur = raw.cursor()
                    cur.execute("EXPLAIN " + stmt, params)
                    plan = [r[0] for r in cur.fetchall()]
                    cur.close()
                got.append({"ms": secs * 1000, "sql": " ".join(stmt.split()), "plan": plan})
            return got

        out["typical_statements"] = statements_of(typical)  # also warms the caches
        out["busiest_statements"] = statements_of(busiest[0])
        for label, pool in (
            ("random contacts", [rng.choice(emails) for _ in range(samples)]),
            ("10 busiest contacts", busiest),
        ):
            times = []
            deadline = time.perf_counter() + budget_s
            for e in pool:
                t0 = time.perf_counter()
                timeline.lookup(conn, 1, e)
                times.append(time.perf_counter() - t0)
                if time.perf_counter() > deadline:
                    break
            times.sort()
            out[label] = {
                "n": len(times),
                "p50_ms": percentile(times, 50) * 1000,
                "p99_ms": percentile(times, 99) * 1000,
                "max_ms": times[-1] * 1000,
            }
        # An address that is no contact, at the company of a random or of the busiest contact:
        # the pane's 404 asks timeline.unknown_address what is known around it.
        unknown = {
            "new addresses at random companies": [rng.choice(emails) for _ in range(samples)],
            "new addresses at the busiest contacts' companies": busiest,
        }
        timeline.unknown_address(conn, 1, "warm.up@" + typical.partition("@")[2])  # loads the public-suffix list
        for label, pool in unknown.items():
            times = []
            for e in pool:
                t0 = time.perf_counter()
                timeline.unknown_address(conn, 1, "new.person" + rng.choice("abcdefgh") + "@" + e.partition("@")[2])
                times.append(time.perf_counter() - t0)
            times.sort()
            out[label] = {
                "n": len(times),
                "p50_ms": percentile(times, 50) * 1000,
                "p99_ms": percentile(times, 99) * 1000,
                "max_ms": times[-1] * 1000,
            }
    engine.dispose()
    return out


def print_sql_profile(prof: dict, typical_n: int, busiest_n: int) -> None:
    for label in (
        "random contacts",
        "10 busiest contacts",
        "new addresses at random companies",
        "new addresses at the busiest contacts' companies",
    ):
        if label not in prof:
            continue
        p = prof[label]
        log(
            f"    {label} ({p['n']} lookups): p50 {p['p50_ms']:.2f} ms, p99 {p['p99_ms']:.2f} ms, "
            f"max {p['max_ms']:.2f} ms"
        )
    log(
        f"    the statements of one lookup: ms for a typical contact ({typical_n} interactions) | ms for the "
        f"busiest ({busiest_n}), SQL, the database's plan"
    )
    for t, b in zip(prof["typical_statements"], prof["busiest_statements"], strict=False):
        log(f"      {t['ms']:9.2f} | {b['ms']:9.2f} ms  {t['sql'][:150]}")
        for line in t["plan"]:
            log(f"                              plan: {line}")
        if b["plan"] != t["plan"]:
            for line in b["plan"]:
                log(f"                              plan for the busiest contact: {line}")


def profile_requests(settings_env: dict, token: str, emails: list[str], n: int, seed: int) -> None:
    """Where one lookup request's CPU goes: n sequential requests through the ASGI app
    in this process (FastAPI's thread hand-offs run inline so cProfile sees them),
    time grouped by library."""
    import asyncio
    import cProfile
    import pstats
    from collections import Counter
    from contextlib import asynccontextmanager

    import fastapi.dependencies.utils as fdu
    import fastapi.routing as froute
    import httpx

    from app.api import create_app
    from app.runtime import open_runtime
    from app.settings import load_settings

    async def inline(func, *a, **kw):
        return func(*a, **kw)

    @asynccontextmanager
    async def inline_cm(cm):
        with cm as value:
            yield value

    froute.run_in_threadpool = inline
    fdu.run_in_threadpool = inline
    fdu.contextmanager_in_threadpool = inline_cm
    app = create_app(open_runtime(load_settings(settings_env), migrate=False))
    rng = random.Random(seed)
    picks = [rng.choice(emails) for _ in range(n)]

    async def drive(prof=None) -> float:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as c:
            headers = {"Authorization": f"Bearer {token}"}
            t0 = time.perf_counter()
            if prof:
                prof.enable()
            for e in picks:
                r = await c.get("/api/lookup", params={"email": e}, headers=headers)
                if r.status_code != 200:
                    raise SystemExit(f"lookup failed: {r.status_code} {r.text[:200]}")
            if prof:
                prof.disable()
            return (time.perf_counter() - t0) / len(picks)

    asyncio.run(drive())  # warm
    plain = asyncio.run(drive())
    prof = cProfile.Profile()
    asyncio.run(drive(prof))
    groups: Counter = Counter()
    total = 0.0
    for (fn, _line, name), (_cc, _nc, tt, _ct, _callers) in pstats.Stats(prof).stats.items():
        total += tt
        if "sqlalchemy" in fn:
            g = "SQLAlchemy (building, compiling, executing statements; rows)"
        elif "sqlite3" in name:
            g = "sqlite3 (SQLite itself: execute/fetch)"
        elif "psycopg2" in fn or "psycopg2" in name or "cursor" in name:
            g = "psycopg2 (PostgreSQL: execute/fetch, waiting on the server)"
        elif "pydantic" in fn or "pydantic" in name:
            g = "pydantic"
        elif "fastapi" in fn or "starlette" in fn:
            g = "FastAPI / Starlette"
        elif "httpx" in fn or "httpcore" in fn:
            g = "httpx test client (not in the server)"
        elif str(Path(REPO) / "app") in fn:
            g = "app code (app/)"
        else:
            g = "other (stdlib, builtins)"
        groups[g] += tt
    log(
        f"    {len(picks)} sequential lookups through the ASGI app: {plain * 1000:.2f} ms each without the "
        f"profiler; CPU time by library under cProfile (which inflates Python code more than C code):"
    )
    for g, t in groups.most_common():
        log(f"      {100 * t / total:5.1f}%  {g}")


# -- server and load ------------------------------------------------------------------------


def issue_bench_token(
    data_dir: Path, info: dict | None = None, *, email: str | None = None, url: str | None = None
) -> str:
    """A personal access token for a user of the database build_db made (or its PostgreSQL
    copy at url): the one with this email, else the first rep of info["users"]."""
    from app.db import session
    from app.runtime import open_runtime
    from app.services.orgs import find_user
    from app.settings import load_settings
    from tests.factories import issue_token

    rt = open_runtime(load_settings(settings_env(data_dir, url)))
    try:
        with session(rt.engine) as s:
            return issue_token(s, find_user(s, 1, email or info["users"][1][2]), name="bench")
    finally:
        rt.engine.dispose()


def settings_env(data_dir: Path, url: str | None) -> dict:
    """The app's settings for the bench database: SQLite in data_dir, or the PostgreSQL copy."""
    env = {"THREADLINE_DATA_DIR": str(data_dir)}
    if url:
        env["THREADLINE_DATABASE_URL"] = url
    return env


def start_database(args, work: Path, db_path: Path):
    """--database postgresql: a private cluster with a copy of the SQLite database build_db
    made. Returns (url or None, the cluster to stop or None)."""
    if getattr(args, "database", "sqlite") != "postgresql":
        return None, None
    from tests.servers import Postgres

    (work / "postgres").mkdir()
    pg = Postgres(work / "postgres").start()
    t0 = time.perf_counter()
    url = copy_to_postgres(db_path, pg)
    log(f"copied into PostgreSQL (COPY, indexes, VACUUM ANALYZE) in {time.perf_counter() - t0:.1f}s (not measured)")
    return url, pg


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the API server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the API server did not answer /healthz in time")


def start_server(work: Path, env: dict, workers: int) -> tuple[subprocess.Popen, int]:
    from tests.servers import free_port

    port = free_port()
    server_log = open(work / "server.log", "a")
    proc = subprocess.Popen(
        [PYTHON, str(Path(REPO) / "bench" / "_api_server.py"), "--port", str(port), "--workers", str(workers)],
        env=env,
        cwd=REPO,
        stdout=server_log,
        stderr=subprocess.STDOUT,
    )
    server_log.close()
    wait_healthy(port, proc)
    return proc, port


def stop_server(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_load(
    server_pid: int,
    port: int,
    token: str,
    emails_file: Path,
    mode: str,
    path: str,
    duration: float,
    rate: float = 500.0,
    concurrency: int = 32,
    seed: int = 7,
) -> dict:
    argv = [
        PYTHON,
        str(Path(REPO) / "bench" / "_loadgen.py"),
        "--port",
        str(port),
        "--token",
        token,
        "--path",
        path,
        "--emails",
        str(emails_file),
        "--mode",
        mode,
        "--duration",
        str(duration),
        "--rate",
        str(rate),
        "--concurrency",
        str(concurrency),
        "--seed",
        str(seed),
    ]
    cpu0 = tree_cpu_seconds(server_pid)
    sampler = TreeSampler(server_pid, interval=0.25)
    sampler.start()
    load0 = os.getloadavg()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=duration * 3 + 120)
    sampler.stop()
    if r.returncode != 0:
        raise SystemExit(f"load generator failed: {r.stderr[-3000:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["server_cpu_s"] = tree_cpu_seconds(server_pid) - cpu0
    out["server_cpu_util"] = out["server_cpu_s"] / out["seconds"]
    out["server_rss_mb"] = sampler.peak_rss_mb
    out["load"] = f"{load0[0]:.2f} -> {os.getloadavg()[0]:.2f}"
    return out


def ms(value: float) -> str:
    if value != value:
        return "n/a"
    if value == float("inf"):
        return "timeout"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def ms_unit(value: float) -> str:
    text = ms(value)
    return "timeout (> 10 s)" if text == "timeout" else f"{text} ms"


def describe(name: str, r: dict) -> str:
    errs = sum(r["errors"].values()) + sum(r["non_200"].values())
    extra = ""
    if r["mode"] == "open":
        extra = (
            f", offered {r['offered_rate_achieved']:.0f}/s, send lag p99 {r['send_lag_p99_ms']:.2f} ms, "
            f"{r['connections_opened_max']} connections"
        )
    return (
        f"    {name}: {r['ok']:,} ok, {errs} errors {r['errors'] or ''}{r['non_200'] or ''} in {r['seconds']:.1f}s = "
        f"{r['throughput']:,.1f}/s; latency p50 {ms(r['p50_ms'])} / p90 {ms(r['p90_ms'])} / p99 {ms(r['p99_ms'])}"
        f" / max {ms(r['max_ms'])} ms{extra}; server CPU {r['server_cpu_util'] * 100:.0f}%, load generator "
        f"CPU {r['client_cpu_util'] * 100:.0f}%, server RSS {r['server_rss_mb']:.0f} MB, load {r['load']}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--contacts", type=int, default=100_000)
    ap.add_argument("--interactions", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per measured phase (default 20)")
    ap.add_argument("--rate", type=float, default=500.0, help="open-loop arrival rate per second (default 500)")
    ap.add_argument("--concurrency", type=int, default=32, help="closed-loop clients (default 32)")
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--also-analyzed",
        action="store_true",
        help="diagnostic: run ANALYZE on the database afterwards and measure the lookup again",
    )
    ap.add_argument(
        "--profile-request",
        action="store_true",
        help="at the end, profile sequential lookups in-process and group the CPU time by library",
    )
    ap.add_argument("--keep", action="store_true", help="keep the database directory")
    ap.add_argument(
        "--database",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="the database the server reads: SQLite (default) or a PostgreSQL copy of it",
    )
    args = ap.parse_args()
    if args.also_analyzed and args.database != "sqlite":
        ap.error("--also-analyzed is about SQLite's plans (the PostgreSQL copy is analyzed already)")

    log(f"== API lookup under load ({args.database}) ==")
    log(machine_summary())
    log(f"uptime: {uptime_line()}")
    code_at_start = code_fingerprint(CODE)
    log("code measured: " + code_at_start)
    work = Path(tempfile.mkdtemp(prefix="tlbench-api-"))
    data_dir = work / "data"
    data_dir.mkdir()
    db_path = data_dir / "threadline.db"
    server = pg = None
    try:
        # -- build (not measured) ---------------------------------------------------------
        t0 = time.perf_counter()
        info = build_db(db_path, args.contacts, args.interactions, args.users, args.seed)
        build_s = time.perf_counter() - t0
        a = info["activity"]
        log(
            f"\nbuilt {db_path} in {build_s:.1f}s (not measured): {args.users} users, {info['companies']:,} "
            f"companies, {args.contacts:,} contacts ({info['addresses']:,} addresses), {args.interactions:,} "
            f"interactions, {info['participants']:,} participants; {db_path.stat().st_size / 2**20:.0f} MiB"
        )
        log(
            f"interactions per contact: median {a['p50']}, p90 {a['p90']}, p99 {a['p99']}, p99.9 {a['p99.9']}, "
            f"max {a['max']}; {a['with_100_plus']:,} contacts with >= 100, {a['with_1000_plus']:,} with >= 1000, "
            f"{a['with_none']:,} with none"
        )

        pg_url, pg = start_database(args, work, db_path)
        url = pg_url or f"sqlite:///{db_path}"
        token = issue_bench_token(data_dir, info, url=pg_url)
        emails = info["contact_email"][1:]
        emails_file = work / "emails.txt"
        emails_file.write_text("\n".join(emails) + "\n")
        per = info["per_contact"]
        busiest = [info["contact_email"][c] for c in sorted(range(1, len(per)), key=lambda c: -per[c])[:10]]

        typical = min(range(1, len(per)), key=lambda c: (abs(per[c] - info["activity"]["p50"]), c))

        # -- in-process SQL ----------------------------------------------------------------
        log(f"\n[sql] timeline.lookup in-process, no HTTP (each list bounded to ~30 s) ... uptime: {uptime_line()}")
        prof = sql_profile(url, emails, info["contact_email"][typical], busiest, 500, args.seed)
        print_sql_profile(prof, per[typical], max(per))

        env = dict(os.environ, THREADLINE_IDLE="0", PYTHONPATH=REPO, **settings_env(data_dir, pg_url))
        try:
            import uvloop  # noqa: F401

            loop = "uvloop"
        except ImportError:
            loop = "asyncio"
        try:
            import httptools  # noqa: F401

            http = "httptools"
        except ImportError:
            http = "h11"
        log(
            f"\nserver: uvicorn, {args.workers} worker(s), loop {loop}, http {http}; a fresh server process for "
            f"every phase (a slow phase must not leave its backlog to the next), each warmed up first"
        )

        def phase(mode: str, path: str, **kw) -> dict:
            nonlocal server
            log_file = work / "server.log"
            start = log_file.stat().st_size if log_file.exists() else 0
            server, port = start_server(work, env, args.workers)
            try:
                warm = run_load(
                    server.pid,
                    port,
                    token,
                    emails_file,
                    "closed",
                    "lookup",
                    min(3.0, args.duration),
                    concurrency=4,
                    seed=99,
                )
                log(f"    (warm-up: {warm['ok']} lookups, p50 {warm['p50_ms']:.1f} ms)")
                r = run_load(server.pid, port, token, emails_file, mode, path, args.duration, **kw)
                if r["errors"] and args.workers == 1:
                    # requests timed out: look at what the server's threads are doing right now
                    mark = log_file.stat().st_size
                    os.kill(server.pid, signal.SIGUSR1)
                    time.sleep(1.0)
                    with open(log_file, errors="replace") as fh:
                        fh.seek(mark)
                        dump = fh.read()
                    threads = dump.split("Thread 0x")[1:]
                    in_pool = sum(1 for t in threads if "sqlalchemy/pool/" in t)
                    r["thread_dump"] = {"threads": len(threads), "waiting_for_db_connection": in_pool}
                    log(
                        f"    server thread dump after the phase: {len(threads)} threads, {in_pool} of them blocked in "
                        f"SQLAlchemy's connection pool (QueuePool checkout), server CPU then ~"
                        f"{r['server_cpu_util'] * 100:.0f}% over the phase"
                    )
            finally:
                stop_server(server)
                server = None
            with open(log_file, errors="replace") as fh:
                fh.seek(start)
                text = fh.read()
            r["server_pool_timeouts"] = text.count("QueuePool limit")
            r["server_exceptions"] = text.count("Traceback (most recent call last)")
            if r["server_pool_timeouts"] or r["server_exceptions"]:
                last = [ln for ln in text.splitlines() if ln and not ln.startswith(" ")][-1:]
                log(
                    f"    server log: {r['server_exceptions']} tracebacks, {r['server_pool_timeouts']} of them "
                    f"'QueuePool limit ... connection timed out'; last: {last[0][:200] if last else ''}"
                )
            return r

        log(f"\n[a] open loop, {args.rate:.0f} lookups/s for {args.duration:.0f}s ... uptime: {uptime_line()}")
        open_r = phase("open", "lookup", rate=args.rate)
        log(describe("lookup, open loop", open_r))
        log(f"\n[b] closed loop, {args.concurrency} clients, {args.duration:.0f}s each ... uptime: {uptime_line()}")
        closed_lookup = phase("closed", "lookup", concurrency=args.concurrency)
        log(describe("lookup, closed loop", closed_lookup))
        closed_health = phase("closed", "/livez", concurrency=args.concurrency)
        log(describe("/livez, closed loop", closed_health))
        closed_first = phase("closed", FIRST_ROUTE, concurrency=args.concurrency)
        log(describe(f"{FIRST_ROUTE} (matched first), closed loop", closed_first))

        analyzed = None
        if args.also_analyzed:
            log(
                f"\n[diagnostic] the same after `ANALYZE` (the app never runs it; this shows what better query "
                f"plans would give) ... uptime: {uptime_line()}"
            )
            con = sqlite3.connect(db_path)
            t_an = time.perf_counter()
            con.execute("ANALYZE")
            con.commit()
            con.close()
            log(f"    ANALYZE took {time.perf_counter() - t_an:.1f}s")
            prof_an = sql_profile(url, emails, info["contact_email"][typical], busiest, 500, args.seed)
            print_sql_profile(prof_an, per[typical], max(per))
            analyzed = {"open": phase("open", "lookup", rate=args.rate)}
            log(describe("lookup, open loop, after ANALYZE", analyzed["open"]))
            analyzed["closed"] = phase("closed", "lookup", concurrency=args.concurrency)
            log(describe("lookup, closed loop, after ANALYZE", analyzed["closed"]))
            # and at an arrival rate the server can sustain: half its closed-loop throughput
            sustainable = max(5.0, round(analyzed["closed"]["throughput"] / 2 / 5) * 5)
            analyzed["open_sustainable"] = phase("open", "lookup", rate=sustainable)
            log(describe(f"lookup, open loop at {sustainable:.0f}/s, after ANALYZE", analyzed["open_sustainable"]))

        # -- report ----------------------------------------------------------------------------
        def errs(r: dict) -> int:
            return sum(r["errors"].values()) + sum(r["non_200"].values())

        ratio = closed_lookup["throughput"] / closed_health["throughput"] if closed_health["throughput"] else 0.0
        log("\n== results ==")
        log(
            f"{args.database}: {args.contacts:,} contacts, {args.interactions:,} interactions, "
            f"{info['participants']:,} participants; uvicorn {args.workers} worker(s); {machine_summary()}"
        )
        phases = [
            (f"lookup, open loop {args.rate:.0f}/s", open_r),
            ("lookup, closed loop", closed_lookup),
            ("/livez, closed loop", closed_health),
            (f"{FIRST_ROUTE}, closed loop", closed_first),
        ]
        if analyzed:
            phases += [
                (f"after ANALYZE: lookup, open loop {args.rate:.0f}/s", analyzed["open"]),
                ("after ANALYZE: lookup, closed loop", analyzed["closed"]),
                (
                    f"after ANALYZE: lookup, open loop {analyzed['open_sustainable']['rate']:.0f}/s",
                    analyzed["open_sustainable"],
                ),
            ]
        rows = [
            [
                name,
                r["ok"],
                errs(r),
                r["throughput"],
                ms(r["p50_ms"]),
                ms(r["p90_ms"]),
                ms(r["p99_ms"]),
                ms(r["max_ms"]),
                f"{r['server_cpu_util'] * 100:.0f}%",
                f"{r['client_cpu_util'] * 100:.0f}%",
            ]
            for name, r in phases
        ]
        log(
            table(
                ["phase", "ok", "errors", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "server CPU", "loadgen CPU"],
                rows,
            )
        )
        log(
            "(latency from the scheduled send time in the open loop; a request unanswered after 10 s counts as "
            "an error and as an infinitely slow sample)"
        )
        log("")
        figures = [
            [
                f"open loop {args.rate:.0f}/s: p99 latency",
                ms_unit(open_r["p99_ms"]),
                f"< {TARGET_P99_MS:.0f} ms",
                verdict(open_r["p99_ms"] < TARGET_P99_MS and errs(open_r) == 0),
            ],
            ["open loop: errors", f"{errs(open_r):,} of {open_r['requests']:,}", "0", verdict(errs(open_r) == 0)],
            [
                "closed loop: lookup / livez throughput",
                f"{closed_lookup['throughput']:,.1f} / {closed_health['throughput']:,.0f} = {ratio:.3f}",
                f">= {TARGET_RATIO}",
                verdict(ratio >= TARGET_RATIO),
            ],
            [
                f"closed loop: lookup / {FIRST_ROUTE} (routing excluded; not the target's baseline)",
                f"{closed_lookup['throughput']:,.1f} / {closed_first['throughput']:,.0f} = "
                f"{closed_lookup['throughput'] / max(closed_first['throughput'], 1e-9):.3f}",
                "-",
                "-",
            ],
            [
                "in-process lookup (no HTTP), random contacts p50 / p99",
                f"{prof['random contacts']['p50_ms']:.1f} / {prof['random contacts']['p99_ms']:.1f} ms",
                "-",
                "-",
            ],
        ]
        if analyzed:
            a_ratio = (
                analyzed["closed"]["throughput"] / closed_health["throughput"] if closed_health["throughput"] else 0
            )
            figures += [
                [
                    "after ANALYZE: open loop p99",
                    ms_unit(analyzed["open"]["p99_ms"]),
                    f"< {TARGET_P99_MS:.0f} ms",
                    verdict(analyzed["open"]["p99_ms"] < TARGET_P99_MS and errs(analyzed["open"]) == 0),
                ],
                [
                    "after ANALYZE: lookup / livez throughput",
                    f"{a_ratio:.3f}",
                    f">= {TARGET_RATIO}",
                    verdict(a_ratio >= TARGET_RATIO),
                ],
            ]
        log(table(["figure", "measured", "target", "verdict"], figures, align="lrll"))
        gen_max = max(r["client_cpu_util"] for _, r in phases)
        log(
            f"load generator CPU peaked at {gen_max * 100:.0f}% of one core"
            + (
                " -- close to saturation, the throughput figures may be the generator's limit"
                if gen_max > 0.85
                else " (not the bottleneck)"
            )
        )
        log(f"uptime at the end: {uptime_line()}")
        code_at_end = code_fingerprint(CODE)
        if code_at_end != code_at_start:
            log(
                f"WARNING: the application code changed during the run ({code_at_start} -> {code_at_end}); "
                f"later phases measured the newer code"
            )
        if args.profile_request:
            log(f"\n[profile] one lookup request's CPU, {'after ANALYZE' if analyzed else 'database as built'}")
            profile_requests(settings_env(data_dir, pg_url), token, emails, 300, args.seed)
        return 0
    finally:
        stop_server(server)
        if pg is not None:
            pg.stop()
        if args.keep:
            log(f"\nkept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
