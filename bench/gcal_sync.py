#!/usr/bin/env python
"""Google Calendar: a first full round and a no-change round of connectors/gcal.py
against the fake Calendar API (tests/fakes/google), connector only (no database).

    .venv/bin/python bench/gcal_sync.py [--events 5000] [--page-size 250]

The fake serves from a thread of this process (it shares the GIL with the
connector, so the seconds are an upper bound of the connector's own cost); one
rep's calendar holds N events, a tenth of them occurrences of weekly series.
Reported: seconds, requests and records of the full round, then of a round with
the sync token when nothing changed, then after one occurrence moved.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--page-size", type=int, default=250)
    args = parser.parse_args()

    from connectors.gcal import GoogleCalendar
    from connectors.googleauth import CALENDAR_SCOPE, SCOPES, ServiceAccountTokenSource
    from tests.fakes.google.server import FakeGoogle

    google = FakeGoogle().start()
    rep = "rep@ourco.com"
    key = google.service_account()
    google.delegate(json.loads(key)["client_id"], SCOPES)
    google.add_user(rep)
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    series = args.events // 10 // 4
    sid = None
    for s in range(series):
        sid = google.calendar.add_series(
            [rep],
            subject=f"Weekly {s}",
            starts=[now + timedelta(days=s % 60 + 7 * w) for w in range(4)],
            organizer=rep,
            attendees=[f"guest{s}@acme.com"],
        )
    for i in range(args.events - series * 4):
        google.calendar.add_event(
            [rep],
            subject=f"Meeting {i}",
            start=now + timedelta(hours=i % 4000 - 2000),
            organizer=rep,
            attendees=[f"c{i % 500}@acme.com", ("boss@acme.com", "accepted")],
        )
    cal = GoogleCalendar(
        ServiceAccountTokenSource(key, rep, [CALENDAR_SCOPE]), api_url=google.calendar_url, page_size=args.page_size
    )

    def round_of(cursor):
        started, before = time.perf_counter(), cal.requests
        batches = list(cal.fetch_changes(cursor))
        return (
            time.perf_counter() - started,
            cal.requests - before,
            sum(len(b.records) for b in batches),
            batches[-1].cursor,
        )

    full = round_of({})
    print(f"full round: {full[0]:.2f} s, {full[1]} requests, {full[2]} meetings")
    same = round_of(full[3])
    print(f"no change:  {same[0] * 1000:.1f} ms, {same[1]} request(s), {same[2]} meetings")
    assert sid is not None
    google.calendar.move_occurrence(sid, now + timedelta(days=(series - 1) % 60 + 7), now + timedelta(days=70))
    one = round_of(same[3])
    print(f"one moved:  {one[0] * 1000:.1f} ms, {one[1]} request(s), {one[2]} meeting(s)")
    print(f"load average: {os.getloadavg()}")
    cal.close()
    google.stop()


if __name__ == "__main__":
    main()
