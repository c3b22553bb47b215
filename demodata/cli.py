"""``python -m demodata``: generate the corpus, print its statistics, optionally write Maildirs."""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from datetime import datetime
from typing import Sequence

from demodata.maildir import _MaildirWriter
from demodata.stream import generate


def _stats(seed, n, reps, companies, days, now) -> dict:
    _, it = generate(seed=seed, n_messages=n, reps=reps, companies=companies, days=days, now=now)
    t0, c0 = time.perf_counter(), time.process_time()
    count = 0
    for _ in it:
        count += 1
    gen_s = time.perf_counter() - t0
    cpu_s = time.process_time() - c0

    corpus, it = generate(seed=seed, n_messages=n, reps=reps, companies=companies, days=days, now=now)
    per_folder, per_rep, kinds = Counter(), Counter(), Counter()
    unique_ids: dict[str, int] = {}
    sizes = []
    replies = 0
    last_30 = 0
    now_dt = corpus.now
    for m in it:
        per_folder[m.folder] += 1
        per_rep[m.mailbox] += 1
        if m.message_id not in unique_ids:
            unique_ids[m.message_id] = 1
            kinds[m.kind] += 1
            sizes.append(len(m.raw))
            replies += m.in_reply_to is not None
            last_30 += (now_dt - m.internaldate).days < 30
        else:
            unique_ids[m.message_id] += 1
    u = len(unique_ids) or 1
    sizes.sort()
    return {
        "copies": count,
        "unique": len(unique_ids),
        "seconds": gen_s,
        "rate": count / gen_s if gen_s else float("inf"),
        "cpu_rate": count / cpu_s if cpu_s else float("inf"),
        "per_folder": per_folder,
        "per_rep": per_rep,
        "kinds": kinds,
        "shared": sum(1 for v in unique_ids.values() if v > 1) / u,
        "replies": replies / u,
        "last_30": last_30 / u,
        "size_mean": sum(sizes) / len(sizes) if sizes else 0,
        "size_p5": sizes[len(sizes) // 20] if sizes else 0,
        "size_p95": sizes[len(sizes) * 19 // 20] if sizes else 0,
        "corpus": corpus,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m demodata", description="Generate the demo email corpus and print stats."
    )
    ap.add_argument("--n", type=int, default=2000, help="mailbox copies to generate")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--reps", type=int, default=6)
    ap.add_argument("--companies", type=int, default=None)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--now", default=None, help="ISO timestamp ending the window (default: today)")
    ap.add_argument("--maildir", default=None, help="also write one Maildir++ per rep under DIR/<rep email>/")
    args = ap.parse_args(argv)
    now = datetime.fromisoformat(args.now) if args.now else None
    s = _stats(args.seed, args.n, args.reps, args.companies, args.days, now)
    c = s["corpus"]
    u = s["unique"] or 1
    print(
        "%s (%s): %d reps, %d companies, %d contacts"
        % (c.org_name, ", ".join(c.internal_domains), len(c.reps), len(c.companies), len(c.contacts))
    )
    print("window: %d days ending %s" % (c.days, c.now.isoformat()))
    print(
        "generated %d mailbox copies of %d unique emails in %.3fs: %.0f messages/s"
        " (%.0f messages/s of CPU time)" % (s["copies"], s["unique"], s["seconds"], s["rate"], s["cpu_rate"])
    )
    print("per folder: " + ", ".join("%s=%d" % kv for kv in sorted(s["per_folder"].items())))
    print("per rep:")
    admins = set(c.admins)
    for r in c.reps:
        print("  %-28s %6d%s" % (r.email, s["per_rep"].get(r.email, 0), "  (admin)" if r.email in admins else ""))
    k = s["kinds"]
    print(
        "kinds (unique emails): external %.1f%%, internal %.1f%%, bulk %.1f%%, auto-reply %.1f%%"
        % tuple(100.0 * k.get(x, 0) / u for x in ("external", "internal", "bulk", "auto"))
    )
    print(
        "shared across mailboxes: %.1f%%, replies: %.1f%%, last 30 days: %.1f%%"
        % (100 * s["shared"], 100 * s["replies"], 100 * s["last_30"])
    )
    print("size: mean %.0f B, p5 %d B, p95 %d B" % (s["size_mean"], s["size_p5"], s["size_p95"]))
    if args.maildir:
        t0 = time.perf_counter()
        writers: dict[str, _MaildirWriter] = {}
        _, it = generate(
            seed=args.seed, n_messages=args.n, reps=args.reps, companies=args.companies, days=args.days, now=now
        )
        for m in it:
            w = writers.get(m.mailbox)
            if w is None:
                w = writers[m.mailbox] = _MaildirWriter(os.path.join(args.maildir, m.mailbox))
            w.add(m)
        for w in writers.values():
            w.finish()
        print("wrote %d maildirs under %s in %.2fs" % (len(writers), args.maildir, time.perf_counter() - t0))
    return 0
