"""A rep's mailbox with a realistic backfill on the test Dovecot, a world to
import it into, the seed every fault test draws its random choices from, and
the fetch child of a running sync (the process some faults are aimed at)."""

from __future__ import annotations

import os
import random
from pathlib import Path

from demodata import generate
from tests.world import make_world


def fault_seed(default: int) -> int:
    """THREADLINE_FAULT_SEED replays a failed run; each test has its own default so CI is repeatable."""
    return int(os.environ.get("THREADLINE_FAULT_SEED", default))


def chance(seed: int) -> random.Random:
    return random.Random(seed)


def rep_mail(n: int, seed: int = 11):
    """A generated corpus and its first rep's share as (raw, folder, internaldate), in INBOX and Sent."""
    corpus, messages = generate(seed=seed, n_messages=n, reps=2)
    items = [
        (m.raw, m.folder if m.folder in ("INBOX", "Sent") else "INBOX", m.internaldate)
        for m in messages
        if m.mailbox == corpus.reps[0][1]
    ]
    return corpus, items


def fill(imap_user, n: int, seed: int = 11):
    """Deliver rep_mail(n, seed) to imap_user; returns the corpus."""
    corpus, items = rep_mail(n, seed)
    imap_user.create_folder("Sent")
    imap_user.deliver_many(items)
    return corpus


def world_for(tmp_path, corpus, name, url: str | None = None):
    return make_world(tmp_path / name, url=url, domains=corpus.internal_domains, reps=[(e, n) for n, e in corpus.reps])


def cli_env(world, **extra) -> dict:
    """The environment a `threadline` subprocess needs to work on this world's database."""
    return dict(
        os.environ,
        THREADLINE_DATA_DIR=str(world.rt.settings.data_dir),
        THREADLINE_DATABASE_URL=world.rt.settings.database_url,
        THREADLINE_IDLE="0",
        THREADLINE_SYNC_LEASE_SECONDS="300",
        **extra,
    )


def fetch_child(pid: int) -> int | None:
    """The `python -m sync.pipeline` child of a sync process, once it runs."""
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    for kid in kids:
        try:
            argv = Path(f"/proc/{kid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"sync.pipeline" in argv:
            return int(kid)
    return None
