#!/usr/bin/env python
"""Duplicate candidates, merge and undo on a large organisation (SQLite).

    .venv/bin/python bench/duplicates.py [--contacts 20000] [--interactions 200000] [--rounds 5]

Builds an organisation with N contacts over N/10 companies and M emails (each with its
contact and a rep as participants; one in four inbound with a snippet holding an address),
with 100 planted duplicate pairs (same name, same company) and 20 announced address changes.
Measured, beside a baseline run in the same process:

  candidates   duplicates.find_candidates (every rule, the whole organisation)
               baseline: one COUNT(*) over participant and over interaction (a scan's floor)
  stored list  duplicates.candidates: what the console, the API and the CLI read (--reads
               times, p50/p99), and duplicates.refresh: the whole organisation (the scheduler's
               full search), 500 contacts (new mail of a sync batch, the scheduler's
               incremental look) and 2 contacts (what a merge or an undo adds)
  merge        duplicates.merge of a contact with 2,000 emails into another, then
  undo         duplicates.unmerge of it (both bring the stored list up to date)
               baseline: sync.stats.recompute of both contacts (what each must do anyway)

Prints median and worst of the rounds (candidates) and of merge/undo pairs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, REPO)

from bench._util import machine_summary  # noqa: E402


def build(data_dir: str, n_contacts: int, n_mail: int):
    from sqlalchemy import insert

    from app.db import session, write_transaction
    from app.models import Company, Contact, ContactAddress, Interaction, Participant
    from app.runtime import open_runtime
    from app.settings import load_settings
    from sync import stats
    from tests import factories

    rt = open_runtime(load_settings({"THREADLINE_DATA_DIR": data_dir, "THREADLINE_IDLE": "0"}))
    with session(rt.engine) as s:
        org = factories.create_org(s, "Bench Co", ["bench.example"])
        rep = factories.add_user(s, org, "rep@bench.example", name="Rep One").id
        org_id = org.id
    now = datetime.now(timezone.utc)
    n_companies = max(1, n_contacts // 10)
    with write_transaction(rt.engine) as conn:
        conn.execute(
            insert(Company.__table__),
            [
                {"org_id": org_id, "domain": f"co{i}.example", "name": f"Co {i}", "created_at": now}
                for i in range(n_companies)
            ],
        )
        companies = [r[0] for r in conn.exec_driver_sql("SELECT id FROM company ORDER BY id")]
        people = []
        for i in range(n_contacts):
            # the last 100 contacts share a name and company with the first 100: planted duplicates
            twin = i - (n_contacts - 100) if i >= n_contacts - 100 else i
            people.append(
                {
                    "org_id": org_id,
                    "name": f"Given{twin} Family{twin}",
                    "search_name": f"given{twin} family{twin}",
                    "primary_email": f"p{i}@co{twin % n_companies}.example",
                    "company_id": companies[twin % n_companies],
                    "tags": [],
                    "created_at": now,
                }
            )
        conn.execute(insert(Contact.__table__), people)
        ids = [r[0] for r in conn.exec_driver_sql("SELECT id FROM contact ORDER BY id")]
        conn.execute(
            insert(ContactAddress.__table__),
            [
                {"org_id": org_id, "contact_id": cid, "address": p["primary_email"]}
                for cid, p in zip(ids, people, strict=True)
            ],
        )
        mail, parts = [], []
        for j in range(n_mail):
            who = j % n_contacts if j >= 2000 else 0  # contact 0 gets the first 2,000 emails
            address = people[who]["primary_email"]
            inbound = j % 2 == 0
            snippet = None
            if inbound and j % 4 == 0:
                snippet = f"Thanks, see the notes. Copy to someone{j}@elsewhere.example for the file."
            if 2000 <= j < 2020:  # announced changes: the new address is another contact's
                snippet = f"Hello, my new email address is {people[who + 1]['primary_email']}, please update."
            at = now - timedelta(minutes=j)
            mail.append(
                {
                    "org_id": org_id,
                    "kind": "email",
                    "message_key": f"m{j}@bench",
                    "occurred_at": at,
                    "direction": "in" if inbound else "out",
                    "snippet": snippet,
                    "thread_key": f"t{j // 3}@bench",
                    "from_address": address if inbound else "rep@bench.example",
                    "created_at": now,
                }
            )
        conn.execute(insert(Interaction.__table__), mail)
        iids = [r[0] for r in conn.exec_driver_sql("SELECT id FROM interaction ORDER BY id")]
        for j, iid in enumerate(iids):
            who = j % n_contacts if j >= 2000 else 0
            at = mail[j]["occurred_at"]
            inbound = mail[j]["direction"] == "in"
            parts.append(
                {
                    "org_id": org_id,
                    "interaction_id": iid,
                    "occurred_at": at,
                    "address": people[who]["primary_email"],
                    "name": people[who]["name"],
                    "role": "from" if inbound else "to",
                    "contact_id": ids[who],
                    "company_id": people[who]["company_id"],
                    "user_id": None,
                }
            )
            parts.append(
                {
                    "org_id": org_id,
                    "interaction_id": iid,
                    "occurred_at": at,
                    "address": "rep@bench.example",
                    "name": "Rep One",
                    "role": "to" if inbound else "from",
                    "contact_id": None,
                    "company_id": None,
                    "user_id": rep,
                }
            )
        conn.execute(insert(Participant.__table__), parts)
        stats.recompute(conn, org_id, ids)
    return rt, org_id, ids


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts", type=int, default=20000)
    ap.add_argument("--interactions", type=int, default=200000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reads", type=int, default=200)
    args = ap.parse_args()

    from app.db import read_only, write_transaction
    from app.services import duplicates
    from app.services.actor import Actor
    from sync import stats

    print(machine_summary())
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        rt, org_id, ids = build(tmp, args.contacts, args.interactions)
        print(f"built {args.contacts:,} contacts, {args.interactions:,} emails in {time.perf_counter() - t0:.1f} s")

        def timed(fn) -> float:
            start = time.perf_counter()
            fn()
            return (time.perf_counter() - start) * 1000

        def scan():
            with read_only(rt.engine) as conn:
                conn.exec_driver_sql("SELECT count(*) FROM participant").scalar()
                conn.exec_driver_sql("SELECT count(*) FROM interaction").scalar()

        found: list = []

        def find():
            with read_only(rt.engine) as conn:
                found[:] = duplicates.find_candidates(conn, org_id, limit=1000)

        base = [timed(scan) for _ in range(args.rounds)]
        cand = [timed(find) for _ in range(args.rounds)]
        kinds: dict[str, int] = {}
        for c in found:
            for e in c["evidence"]:
                kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
        print(f"candidates found: {len(found)} ({kinds})")

        def refresh(contact_ids):
            def run():
                with write_transaction(rt.engine) as conn:
                    duplicates.refresh(conn, org_id, contact_ids)

            return run

        full = [timed(refresh(None)) for _ in range(args.rounds)]
        middle = len(ids) // 4
        batch = [timed(refresh(ids[middle + 500 * r : middle + 500 * (r + 1)])) for r in range(args.rounds)]
        pair = [timed(refresh([ids[10 + r], ids[20 + r]])) for r in range(args.rounds)]
        shown: list = []
        reads = [
            timed(lambda: shown.__setitem__(slice(None), duplicates.candidates(rt, org_id))) for _ in range(args.reads)
        ]
        assert shown == found[:200], "the stored list is not what a full search finds"

        op = Actor.operator(org_id)
        keep, busy = ids[1], ids[0]  # contact 0 holds 2,000 emails

        def recount():
            with write_transaction(rt.engine) as conn:
                stats.recompute(conn, org_id, [keep, busy])

        merges, undos, recounts = [], [], []
        for _ in range(args.rounds):
            recounts.append(timed(recount))
            result: dict = {}
            merges.append(timed(lambda r=result: r.update(duplicates.merge(rt, op, keep, busy))))
            undos.append(timed(lambda r=result: duplicates.unmerge(rt, op, r["audit_id"])))
        with read_only(rt.engine) as conn:
            stored = duplicates.stored_candidates(conn, org_id, limit=1000)
            assert stored == duplicates.find_candidates(conn, org_id, limit=1000), "stored list stale after merges"

        def row(label, values):
            print(f"| {label} | {statistics.median(values):,.1f} | {max(values):,.1f} |")

        print("| measure | median ms | worst ms |")
        print("|---|---|---|")
        row("baseline: COUNT(*) over participant and interaction", base)
        row("find_candidates (all rules, whole organisation)", cand)
        row("refresh: the whole organisation (scheduler, every 6 h)", full)
        row("refresh: 500 contacts (a sync batch's, scheduler every 5 min)", batch)
        row("refresh: 2 contacts (added to a merge or an undo)", pair)
        reads.sort()
        p99 = reads[min(len(reads) - 1, int(len(reads) * 0.99))]
        print(
            f"| candidates(): the stored list, 200 shown (p50 / p99 / worst of {len(reads)}) "
            f"| {statistics.median(reads):,.1f} | p99 {p99:,.1f}, worst {reads[-1]:,.1f} |"
        )
        row("baseline: recompute the summaries of both contacts", recounts)
        row("merge (loser with 2,000 emails)", merges)
        row("undo of that merge", undos)


if __name__ == "__main__":
    main()
