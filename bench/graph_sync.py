#!/usr/bin/env python
"""Initial Microsoft Graph sync: Threadline against a plain paging loop, same fake Graph.

    .venv/bin/python bench/graph_sync.py [--messages 50000] [--events 5000] [--page-size 1000]

1. A child process serves the fake Graph + Entra authority (tests/fakes/graph)
   holding one rep's mailbox of N messages (Inbox, Sent Items, Archive) and M
   calendar events (singles and weekly series), every page pre-serialised so
   the fake costs little. Not measured.
2. Baseline, its own process: a plain httpx loop that takes an app token and
   pages through the same deltas (every folder, then calendarView/delta) with
   the same page size, parsing each page's JSON and nothing else.
3. Threadline, its own process: the tenant and mailbox added through
   app.services.m365, then sync.engine.sync_mailbox into a fresh SQLite database,
   in one process with an instrumented connector. The connector reports the
   time the engine actually waited for Graph (blocked on a page; prefetching
   hides the rest) and the time inside HTTP calls.
4. Threadline as shipped, its own process: the same, but sync_mailbox picks the
   fetch child for the first import as in production; the benchmark times how
   long the engine was blocked reading the child's pipe.
Both children report their own peak RSS (ru_maxrss).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, REPO)

from bench._util import PYTHON, code_fingerprint, machine_summary, table  # noqa: E402
from tests import factories  # noqa: E402

USER = "alice@ourco.com"
CODE = ["connectors/graph.py", "connectors/m365auth.py", "sync/*.py", "app/services/m365.py", "app/db.py"]
FIRST = ["Anna", "Ben", "Carla", "Dev", "Erin", "Femi", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea", "Max", "Nia"]
LAST = ["Meyer", "Okafor", "Rossi", "Tanaka", "Novak", "Silva", "Berg", "Khan", "Lopez", "Dubois"]


def log(msg: str = "") -> None:
    print(msg, flush=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- 1. the fake, in its own process ------------------------------------------------------


def serve_fake(n_messages: int, n_events: int, tmp: str) -> None:
    from tests.fakes.graph.server import FakeGraph

    rnd = random.Random(7)
    fake = FakeGraph(Path(tmp) / "fake").start()
    client_id, secret = fake.register_app()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    people = [(f"{rnd.choice(FIRST)} {rnd.choice(LAST)}", f"p{i}@customer{i % 400}.com") for i in range(3000)]
    colleagues = [("Bob Rep", "bob@ourco.com"), ("Cleo Rep", "cleo@ourco.com")]
    me = ("Alice Rep", USER)
    for i in range(n_messages):
        other = people[rnd.randrange(len(people))]
        when = now - timedelta(minutes=rnd.randrange(300 * 24 * 60))
        r = rnd.random()
        folder = "inbox" if r < 0.6 else ("sentitems" if r < 0.9 else "archive")
        sender, to = (me, [other]) if folder == "sentitems" else (other, [me])
        cc = [people[rnd.randrange(len(people))]] if rnd.random() < 0.3 else []
        if rnd.random() < 0.2:
            cc.append(colleagues[rnd.randrange(2)])
        fake.add_message(
            USER,
            folder,
            internet_message_id=f"<m{i}.{rnd.getrandbits(40):x}@{sender[1].split('@')[1]}>",
            subject=f"Re: proposal {i % 5000} for {other[0]}",
            sender=sender,
            to=to,
            cc=cc,
            sent=when,
            preview="Thanks for the call yesterday, here is the revised proposal with the numbers we "
            "discussed. Let me know what you think.",
        )
    made = 0
    while made < n_events:
        start = (now + timedelta(days=rnd.randrange(-150, 150), hours=rnd.randrange(8, 17))).replace(minute=0, second=0)
        guests = [
            (
                *people[rnd.randrange(len(people))],
                rnd.choice(["required", "optional"]),
                rnd.choice(["accepted", "declined", "tentativelyAccepted", "none"]),
            )
            for _ in range(rnd.randrange(1, 4))
        ]
        if rnd.random() < 0.1 and n_events - made >= 10:
            fake.add_series(
                USER,
                subject="Weekly check-in",
                starts=[start + timedelta(days=7 * k) for k in range(10)],
                organizer=me,
                attendees=guests,
                time_zone="W. Europe Standard Time",
            )
            made += 10
        else:
            fake.add_event(
                USER,
                subject="Demo call",
                start=start,
                organizer=me,
                attendees=guests,
                time_zone=rnd.choice(["UTC", "Pacific Standard Time", "Europe/Berlin"]),
                location="Teams",
            )
            made += 1
    from connectors.graph import MESSAGE_FIELDS

    for want_snippet in (False, True):
        fake.prewarm(USER, ",".join(MESSAGE_FIELDS + (("bodyPreview",) if want_snippet else ())))
    print(
        json.dumps(
            {
                "authority": fake.authority,
                "graph_url": fake.graph_url,
                "tenant": fake.tenant,
                "client_id": client_id,
                "secret": secret,
                "ca_bundle": str(fake.ca_bundle),
                "token_url": f"{fake.authority}/oauth2/v2.0/token",
            }
        ),
        flush=True,
    )
    sys.stdin.readline()  # until the parent is done
    fake.stop()


# -- 2. the baseline --------------------------------------------------------------------------


def baseline(info: dict, page_size: int) -> None:
    import httpx

    from connectors.graph import MESSAGE_FIELDS

    started = time.perf_counter()
    with httpx.Client(verify=info["ca_bundle"], timeout=60) as http:
        token = http.post(
            info["token_url"],
            data={
                "grant_type": "client_credentials",
                "client_id": info["client_id"],
                "client_secret": info["secret"],
                "scope": "https://graph.microsoft.com/.default",
            },
        ).json()
        auth = {
            "Authorization": f"Bearer {token['access_token']}",
            "Prefer": f'odata.maxpagesize={page_size}, IdType="ImmutableId"',
        }
        base = f"{info['graph_url']}/users/{USER}"
        select = ",".join(MESSAGE_FIELDS + ("bodyPreview",))
        items = pages = 0
        urls = [f"{base}/mailFolders/{wk}/messages/delta?$select={select}" for wk in ("inbox", "sentitems", "archive")]
        now = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        urls.append(
            f"{base}/calendarView/delta?startDateTime={(now - timedelta(days=365)):%Y-%m-%dT%H:%M:%SZ}"
            f"&endDateTime={(now + timedelta(days=181)):%Y-%m-%dT%H:%M:%SZ}"
        )
        for url in urls:
            while url:
                page = json.loads(http.get(url, headers=auth).content)
                items += len(page["value"])
                pages += 1
                url = page.get("@odata.nextLink")
    print(
        json.dumps({"seconds": time.perf_counter() - started, "items": items, "pages": pages, "rss_mb": peak_rss_mb()}),
        flush=True,
    )


# -- 3. Threadline ------------------------------------------------------------------------------


def threadline(info: dict, page_size: int, tmp: str, shipped: bool = False) -> None:
    """shipped: sync_mailbox as the product runs a first import (connector in the
    fetch child, sync/pipeline.py); otherwise in one process with an
    instrumented connector, for the breakdown."""
    from app.db import session
    from app.models import Mailbox
    from app.runtime import open_runtime
    from app.services import m365
    from app.services.actor import Actor
    from app.settings import load_settings
    from connectors.factory import build_connector
    from sync import engine

    data = Path(tmp) / ("data-shipped" if shipped else "data-in-process")
    rt = open_runtime(load_settings({"THREADLINE_DATA_DIR": str(data), "THREADLINE_IDLE": "0"}))
    with session(rt.engine) as s:
        org = factories.create_org(s, "OurCo", ["ourco.com"])
        for email in (USER, "bob@ourco.com", "cleo@ourco.com"):
            factories.add_user(s, org, email)
        org_id = org.id
    actor = Actor.operator(org_id)
    tenant = m365.add_tenant(
        rt,
        actor,
        tenant_id=info["tenant"],
        client_id=info["client_id"],
        secret=info["secret"],
        authority=info["authority"],
        graph_url=info["graph_url"],
        check=False,
    )
    added = m365.add_tenant_mailboxes(rt, actor, tenant=tenant["tenant_id"], owner=USER)[0]
    with session(rt.engine) as s:
        mailbox = s.get(Mailbox, added["id"])
        mailbox.config = {**mailbox.config, "page_size": page_size}
        s.add(mailbox)
        s.commit()
        mailbox_id = mailbox.id
    seen, per_folder = [], {}

    def factory(spec):
        connector = build_connector(spec)
        seen.append(connector)
        fetch = connector.fetch_changes

        def timed(folder, cursor, since):
            # The engine ingests each batch between two next() calls, so this is
            # the folder's whole wall time: fetching and storing.
            started = time.perf_counter()
            try:
                yield from fetch(folder, cursor, since)
            finally:
                per_folder[folder.role] = per_folder.get(folder.role, 0.0) + time.perf_counter() - started

        connector.fetch_changes = timed
        return connector

    blocked = [0.0]
    if shipped:
        from sync import pipeline

        read = pipeline._read

        def timed_read(stream):
            t0 = time.perf_counter()
            try:
                return read(stream)
            finally:
                blocked[0] += time.perf_counter() - t0

        pipeline._read = timed_read
    sampler = None
    if shipped:
        from bench._util import TreeSampler

        sampler = TreeSampler(os.getpid())
        sampler.start()
    started = time.perf_counter()
    report = engine.sync_mailbox(rt.engine, rt.box, mailbox_id, connector_factory=None if shipped else factory)
    seconds = time.perf_counter() - started
    if shipped:
        sampler.stop()
        with rt.engine.connect() as conn:
            from sqlalchemy import text

            n = conn.execute(text("SELECT count(*) FROM interaction")).scalar()
        print(
            json.dumps(
                {
                    "seconds": seconds,
                    "ok": report.ok,
                    "error": report.error,
                    "interactions": n,
                    "blocked": blocked[0],
                    "rss_mb": peak_rss_mb(),
                    "tree_pss_mb": sampler.peak_pss_mb,
                    "tree_rss_mb": sampler.peak_rss_mb,
                    "child_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                }
            ),
            flush=True,
        )
        return
    c = seen[0]
    with rt.engine.connect() as conn:
        from sqlalchemy import text

        counts = {
            k: conn.execute(text(q)).scalar()
            for k, q in (
                ("interactions", "SELECT count(*) FROM interaction"),
                ("meetings", "SELECT count(*) FROM interaction WHERE kind = 'meeting'"),
                ("sources", "SELECT count(*) FROM interactionsource"),
            )
        }
    print(
        json.dumps(
            {
                "seconds": seconds,
                "ok": report.ok,
                "error": report.error,
                "imported": report.imported,
                "skipped": report.skipped,
                "bad": report.bad,
                "folders_failed": report.folders_failed,
                "wait": c.wait_seconds,
                "http": c.http_seconds,
                "per_folder": per_folder,
                "requests": c.requests,
                "rss_mb": peak_rss_mb(),
                **counts,
            }
        ),
        flush=True,
    )


# -- driver ---------------------------------------------------------------------------------------


def child(mode: str, info: dict, args, tmp: str) -> dict:
    env = dict(os.environ, REQUESTS_CA_BUNDLE=info["ca_bundle"])
    proc = subprocess.run(
        [PYTHON, __file__, f"--{mode}", json.dumps(info), "--page-size", str(args.page_size), "--tmp", tmp],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if proc.returncode:
        raise SystemExit(f"{mode} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=50_000)
    ap.add_argument("--events", type=int, default=5_000)
    ap.add_argument("--page-size", type=int, default=1000)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--baseline", help=argparse.SUPPRESS)
    ap.add_argument("--threadline", help=argparse.SUPPRESS)
    ap.add_argument("--shipped", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve_fake(args.messages, args.events, args.tmp)
    if args.baseline:
        return baseline(json.loads(args.baseline), args.page_size)
    if args.threadline:
        return threadline(json.loads(args.threadline), args.page_size, args.tmp)
    if args.shipped:
        return threadline(json.loads(args.shipped), args.page_size, args.tmp, shipped=True)

    log(f"# Graph initial sync: {args.messages:,} messages + {args.events:,} events, page size {args.page_size:,}")
    log(machine_summary())
    log(f"code {code_fingerprint(CODE)}")
    with tempfile.TemporaryDirectory(prefix="graph-bench-") as tmp:
        built = time.perf_counter()
        server = subprocess.Popen(
            [PYTHON, __file__, "--serve", "--messages", str(args.messages), "--events", str(args.events), "--tmp", tmp],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            info = json.loads(server.stdout.readline())
            log(f"fake Graph ready in {time.perf_counter() - built:.1f} s (not measured)")
            base = child("baseline", info, args, tmp)
            tl = child("threadline", info, args, tmp)
            shipped = child("shipped", info, args, tmp)
        finally:
            server.stdin.write("\n")
            server.stdin.flush()
            server.wait(timeout=30)
    if not tl["ok"] or not shipped["ok"]:
        raise SystemExit(f"Threadline's sync failed: {tl} / {shipped}")
    if shipped["interactions"] != tl["interactions"]:
        raise SystemExit(f"the two runs stored different timelines: {shipped['interactions']} / {tl['interactions']}")
    total = args.messages + args.events
    mail_s = sum(v for k, v in tl["per_folder"].items() if k != "calendar")
    cal_s = tl["per_folder"].get("calendar", 0.0)
    rows = [
        ["wall time (s)", base["seconds"], tl["seconds"]],
        ["items / s (messages + events over wall time)", total / base["seconds"], total / tl["seconds"]],
        ["mail folders: s, messages / s", "", f"{mail_s:.1f} s, {args.messages / mail_s:,.0f}/s"],
        ["calendar: s, events / s", "", f"{cal_s:.1f} s, {args.events / cal_s:,.0f}/s" if cal_s else "-"],
        ["waiting on the fake Graph (s)", base["seconds"], tl["wait"]],
        ["share of wall time waiting on Graph", "~100%", f"{100 * tl['wait'] / tl['seconds']:.0f}%"],
        ["share of wall time inside Threadline", "~0%", f"{100 * (1 - tl['wait'] / tl['seconds']):.0f}%"],
        ["time inside HTTP calls, incl. prefetch (s)", base["seconds"], tl["http"]],
        ["HTTP requests", base["pages"] + 1, tl["requests"]],
        ["peak RSS (MB)", base["rss_mb"], tl["rss_mb"]],
    ]
    log(table(["", "baseline (httpx paging only)", "Threadline initial sync"], rows))
    log("")
    log(
        table(
            ["Threadline as shipped (first import: connector in the fetch child)", ""],
            [
                ["wall time (s)", shipped["seconds"]],
                ["items / s (messages + events over wall time)", total / shipped["seconds"]],
                [
                    "engine blocked on the fetch child (s, share of wall)",
                    f"{shipped['blocked']:.1f} s, {100 * shipped['blocked'] / shipped['seconds']:.0f}%",
                ],
                [
                    "peak memory (MB): PSS of both processes (RSS sum)",
                    f"{shipped['tree_pss_mb']:.0f} ({shipped['tree_rss_mb']:.0f})",
                ],
                [
                    "peak RSS (MB) of each: engine, fetch child",
                    f"{shipped['rss_mb']:.0f}, {shipped['child_rss_mb']:.0f}",
                ],
            ],
        )
    )
    log(
        f"Threadline stored {tl['interactions']:,} interactions ({tl['meetings']:,} meetings), {tl['sources']:,} "
        f"copies; {tl['imported']:,} copies imported, {tl['skipped']:,} skipped by policy, {tl['bad']} unreadable; "
        f"baseline paged {base['items']:,} items in {base['pages']} pages"
    )


if __name__ == "__main__":
    main()
