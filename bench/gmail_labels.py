#!/usr/bin/env python
"""Gmail: reading All Mail only against reading every label folder, on one mailbox.

    .venv/bin/python bench/gmail_labels.py [--messages 5000] [--labels 3]

Builds one rep's mailbox shaped like Gmail's IMAP on a private Dovecot whose
oauth2 passdb validates tokens at the fake Google (tests/fakes/google): each
message in All Mail and under --labels label folders (INBOX first). Then, each
into a fresh SQLite database, in-process:
  a) a Gmail mailbox (kind gmail: XOAUTH2, All Mail only),
  b) the same mailbox as a plain IMAP one (password login, every folder read),
and prints per run the wall time, the copies fetched (source rows) and the
interactions stored (both must be --messages). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.services import google as google_service  # noqa: E402
from app.services.actor import Actor  # noqa: E402
from connectors.googleauth import MAIL_SCOPE  # noqa: E402
from tests.fakes.google.fixtures import oauth2_dovecot_config  # noqa: E402
from tests.fakes.google.server import FakeGoogle  # noqa: E402
from tests.servers import Dovecot  # noqa: E402
from tests.world import make_world, message  # noqa: E402

REP = "alice@ourco.com"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--labels", type=int, default=3)
    args = parser.parse_args()
    fake = FakeGoogle().start()
    root = Path(tempfile.mkdtemp(prefix="bench-gmail-"))
    dovecot = Dovecot(
        root / "dovecot", special_use=True, autocreate_special_use=True, extra_config=oauth2_dovecot_config(fake)
    ).start()
    try:
        key = fake.service_account()
        fake.delegate(json.loads(key)["client_id"], [MAIL_SCOPE])
        fake.add_user(REP)
        password = "bench-password-1"
        dovecot.add_user(REP, password)
        labels = ["INBOX"] + [f"Label{i}" for i in range(1, args.labels)]
        items = []
        for n in range(args.messages):
            raw = message(f"Customer {n} <c{n}@acme{n % 50}.com>", REP, f"Subject {n}", msgid=f"m{n}@acme.com")
            items += [(raw, folder) for folder in ["All Mail", *labels]]
        dovecot.deliver_many(REP, items, atomic=False)
        print(f"{args.messages} messages, each in All Mail and {len(labels)} labels: {len(items)} copies")

        for kind in ("gmail", "imap"):
            world = make_world(root / kind, reps=((REP, "Alice"),))
            actor = Actor.operator(world.org_id)
            if kind == "gmail":
                google_service.add_workspace(
                    world.rt,
                    actor,
                    key_json=key,
                    domain="ourco.com",
                    imap_host=dovecot.host,
                    imap_port=dovecot.port,
                    imap_security="none",
                )
                mid = google_service.add_workspace_mailboxes(world.rt, actor, owner=REP)["added"][0]["id"]
            else:
                from app.services import mailboxes

                mid = mailboxes.add_imap(
                    world.rt,
                    actor,
                    owner=REP,
                    host=dovecot.host,
                    port=dovecot.port,
                    security="none",
                    username=REP,
                    password=password,
                )["id"]
            start = time.perf_counter()
            report = world.sync(mid)
            took = time.perf_counter() - start
            copies = world.scalar("SELECT COUNT(*) FROM interactionsource")
            stored = world.scalar("SELECT COUNT(*) FROM interaction")
            print(
                f"{kind:<6} ok={report.ok} {took:6.2f} s  copies fetched {copies:>6}  interactions {stored:>6}  "
                f"({args.messages / took:,.0f} messages/s)"
            )
        print("load average:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    finally:
        dovecot.stop()
        fake.stop()


if __name__ == "__main__":
    main()
