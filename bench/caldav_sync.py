#!/usr/bin/env python
"""CalDAV sync: Threadline's connector and engine against a plain caldav-library
listing of the same Radicale calendars.

    .venv/bin/python bench/caldav_sync.py [--events 5000] [--small 500] [--recurring 0.1]

1. Starts a private Radicale (tests.servers.Radicale) and fills two calendars,
   one of --events and one of --small events (10% weekly series without end,
   every event with external attendees, spread over the sync window), each with
   one whole-calendar PUT. Not measured.
2. For each calendar, measures:
   a) baseline: the caldav library listing every event with its data
      (`calendar.events()`), and its sync-token re-listing with nothing changed
      (`calendar.get_objects_by_sync_token(token)`);
   b) Threadline's connector alone: first sync (every batch) and a no-change re-sync;
   c) Threadline's whole first sync into a fresh SQLite database
      (`sync.engine.sync_mailbox`), a no-change re-sync, and a re-sync after one
      event was added;
   with HTTP requests and bytes received counted for every step.
A no-change re-sync must cost the same at 500 and at 5,000 events: one
sync-collection REPORT per calendar (plus discovery), whatever the size.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, REPO)

PASSWORD = "bench-secret"


def log(msg: str = "") -> None:
    print(msg, flush=True)


def build_calendar(n: int, recurring: float, seed: int) -> str:
    rnd = random.Random(seed)
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    out = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Threadline bench//EN"]
    for i in range(n):
        start = now + timedelta(days=rnd.randint(-360, 175), hours=rnd.randint(-6, 6))
        lines = [
            "BEGIN:VEVENT",
            f"UID:bench-{seed}-{i}@ourco.com",
            "DTSTAMP:20250101T000000Z",
            f"DTSTART:{start:%Y%m%dT%H%M%SZ}",
            f"DTEND:{start + timedelta(minutes=45):%Y%m%dT%H%M%SZ}",
            f"SUMMARY:Meeting {i} with customer {i % 97}",
            "ORGANIZER;CN=Rep:mailto:rep@ourco.com",
        ]
        for k in range(1 + i % 3):
            lines.append(f"ATTENDEE;CN=Person {k};PARTSTAT=ACCEPTED:mailto:p{(i + k) % 400}@customer{i % 97}.com")
        if rnd.random() < recurring:
            lines.append("RRULE:FREQ=WEEKLY")
        lines.append("END:VEVENT")
        out += lines
    out.append("END:VCALENDAR")
    return "\r\n".join(out) + "\r\n"


class Counter:
    """Counts requests and response bytes of a caldav DAVClient's HTTP session."""

    def __init__(self, client):
        self.requests = 0
        self.bytes = 0
        session = client.session
        inner = session.request

        def counted(*a, **kw):
            r = inner(*a, **kw)
            self.requests += 1
            self.bytes += len(r.content or b"")
            return r

        session.request = counted

    def reset(self) -> None:
        self.requests = self.bytes = 0


def timed(fn, runs: int = 1):
    times, result = [], None
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def measure(rad, user: str, n: int, tmp: Path) -> dict:
    import caldav

    from app.db import session
    from app.services import calendars, orgs
    from connectors.caldav import CalDavConnector
    from tests.world import make_world

    fig: dict = {"events": n}
    # a) baseline: the caldav library
    client = caldav.DAVClient(url=rad.url, username=user, password=PASSWORD, enable_rfc6764=False, require_tls=False)
    count = Counter(client)
    cal = client.principal().calendars()[0]
    count.reset()
    fig["lib_list_s"], events = timed(lambda: cal.events())
    fig["lib_list_req"], fig["lib_list_bytes"] = count.requests, count.bytes
    fig["lib_list_n"] = len(events)
    token = cal.get_objects_by_sync_token().sync_token
    count.reset()
    fig["lib_nochange_s"], objs = timed(lambda: cal.get_objects_by_sync_token(token), runs=3)
    fig["lib_nochange_req"], fig["lib_nochange_bytes"] = count.requests // 3, count.bytes // 3
    client.close()

    # b) the connector alone
    conn = CalDavConnector(rad.url, user, PASSWORD, owner="rep@ourco.com")
    folder = conn.list_folders()[0]
    conn.requests = conn.bytes_in = 0

    def first():
        return list(conn.fetch_changes(folder, {}))

    fig["conn_first_s"], batches = timed(first)
    fig["conn_first_req"], fig["conn_first_bytes"] = conn.requests, conn.bytes_in
    fig["records"] = sum(len(b.records) for b in batches)
    fig["bad"] = sum(len(b.bad) for b in batches)
    cursor = batches[-1].cursor
    import json

    fig["cursor_bytes"] = len(json.dumps(cursor))
    conn.requests = conn.bytes_in = 0
    fig["conn_nochange_s"], again = timed(lambda: list(conn.fetch_changes(folder, cursor)), runs=5)
    fig["conn_nochange_req"], fig["conn_nochange_bytes"] = conn.requests // 5, conn.bytes_in // 5
    assert again == [], "a no-change re-sync produced batches"
    conn.close()

    # c) the whole engine into SQLite
    world = make_world(tmp / f"w{n}", reps=(("rep@ourco.com", "Rep"),))
    with session(world.rt.engine) as s:
        mid = calendars.add_caldav(
            s,
            world.rt.box,
            orgs.the_org(s, world.org_id),
            owner="rep@ourco.com",
            url=rad.url,
            username=user,
            password=PASSWORD,
        ).id
    fig["engine_first_s"], report = timed(lambda: world.sync(mid))
    assert report.ok, report.error
    fig["engine_imported"], fig["engine_new"] = report.imported, report.new_interactions
    fig["engine_nochange_s"], report = timed(lambda: world.sync(mid), runs=5)
    assert report.ok and report.imported == 0
    # one new event, then re-sync
    rad.put_event(
        user,
        PASSWORD,
        "calendar",
        "one-more.ics",
        build_calendar(1, 0.0, seed=10_000 + n).replace(f"bench-{10_000 + n}-0", "one-more"),
    )
    fig["engine_onechange_s"], report = timed(lambda: world.sync(mid))
    assert report.ok
    fig["engine_onechange_imported"] = report.imported
    return fig


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--small", type=int, default=500)
    ap.add_argument("--recurring", type=float, default=0.1)
    args = ap.parse_args()

    from bench._util import machine_summary, uptime_line
    from tests.servers import Radicale

    log("== CalDAV sync: Threadline vs a plain caldav-library listing (Radicale on loopback) ==")
    log(machine_summary())
    tmp = Path(tempfile.mkdtemp(prefix="tlbench-caldav-"))
    figs = []
    with Radicale(tmp) as rad:
        for n in (args.small, args.events):
            user = f"rep{n}"
            rad.add_user(user, PASSWORD)
            rad.make_calendar(user, PASSWORD, "calendar")
            t = time.perf_counter()
            body = build_calendar(n, args.recurring, seed=n)
            status, _, text = rad.request(
                "PUT",
                f"/{user}/calendar/",
                user,
                PASSWORD,
                body,
                {"Content-Type": "text/calendar; charset=utf-8"},
                timeout=600,
            )
            if status not in (200, 201, 204):
                log(f"error: uploading the calendar failed: {status} {text[:300]!r}")
                return 1
            log(
                f"calendar of {n:,} events ({int(n * args.recurring):,} weekly series without end, "
                f"{len(body) / 1024:.0f} KiB) uploaded in {time.perf_counter() - t:.1f}s (not measured)"
            )
        for n in (args.small, args.events):
            log(f"\nmeasuring {n:,} events ... uptime: {uptime_line()}")
            figs.append(measure(rad, f"rep{n}", n, tmp))
    small, big = figs

    def row(name, key, unit="s"):
        a, b = small.get(key + "_s"), big.get(key + "_s")
        ra, rb = small.get(key + "_req"), big.get(key + "_req")
        ba, bb = small.get(key + "_bytes"), big.get(key + "_bytes")
        cells = [
            f"{name:<58}",
            f"{a * 1000:>9.1f} ms" if a is not None else "",
            f"{b * 1000:>10.1f} ms",
            f"{ra if ra is not None else '':>6}",
            f"{rb if rb is not None else '':>6}",
            f"{ba if ba is not None else '':>10}",
            f"{bb if bb is not None else '':>10}",
        ]
        log("  ".join(cells))

    log(f"\n== results: {small['events']:,} vs {big['events']:,} events; {machine_summary()}")
    log(
        f"{'':<58}  {'time ' + str(small['events']):>12}  {'time ' + str(big['events']):>13}  "
        f"{'req':>6}  {'req':>6}  {'bytes':>10}  {'bytes':>10}"
    )
    row("baseline: caldav lib calendar.events() (full listing)", "lib_list")
    row("baseline: caldav lib sync-token re-list, nothing changed", "lib_nochange")
    row("Threadline connector: first sync (all batches)", "conn_first")
    row("Threadline connector: no-change re-sync (median of 5)", "conn_nochange")
    row("Threadline engine: first sync into SQLite", "engine_first")
    row("Threadline engine: no-change re-sync incl. discovery (median 5)", "engine_nochange")
    row("Threadline engine: re-sync after one event added", "engine_onechange")
    for f in figs:
        log(
            f"  {f['events']:,} events: {f['records']:,} meeting records (occurrences expanded in the window), "
            f"{f['bad']} bad; engine imported {f['engine_imported']:,} copies, {f['engine_new']:,} new "
            f"interactions; after one new event imported {f['engine_onechange_imported']}; cursor "
            f"{f['cursor_bytes'] / 1024:.0f} KiB; the library listed {f['lib_list_n']:,} events"
        )
    ratio = big["conn_nochange_req"] / max(1, small["conn_nochange_req"])
    log(
        f"no-change re-sync requests {small['conn_nochange_req']} vs {big['conn_nochange_req']} "
        f"({ratio:.1f}x for {big['events'] / small['events']:.0f}x the events); bytes "
        f"{small['conn_nochange_bytes']} vs {big['conn_nochange_bytes']}: "
        f"{'O(changes), not O(events)' if ratio == 1 else 'GROWS WITH THE CALENDAR'}"
    )
    log(f"uptime at the end: {uptime_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
