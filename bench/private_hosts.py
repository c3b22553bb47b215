#!/usr/bin/env python
"""What refusing private addresses costs a first import (THREADLINE_REFUSE_PRIVATE_HOSTS, app/netguard.py).

    .venv/bin/python bench/private_hosts.py [--messages 20000] [--pairs 4]

With the refusal on, an audit hook sees every audited event of both processes (the CLI and the
fetch child), not only the connects it checks. This benchmark builds one rep's mailbox on a
private Dovecot (as bench/imap_sync.py does, not measured), then runs `threadline sync --once`
into a fresh SQLite database in alternating pairs: the refusal off (the baseline) and on, with
127.0.0.1 allowed so the loopback Dovecot stays reachable. It prints each run and the medians
side by side.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import imap_sync as bench  # noqa: E402  (the mailbox builder and Threadline's set-up)

from tests.servers import Dovecot  # noqa: E402

ON = {"THREADLINE_REFUSE_PRIVATE_HOSTS": "1", "THREADLINE_PRIVATE_HOSTS_ALLOWED": "127.0.0.1"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tlbench-guard-"))
    os.chmod(work, 0o755)
    dv = Dovecot(work, special_use=True)
    dv.start()
    try:
        n = args.messages
        corpus, rep, *_ = bench.build_mailbox(dv, "rep", args.seed, 6, max(40, n // 1000), n)
        bench.run_mbsync(dv, work, "rep", "no", "warm-up", n)  # Dovecot's indexes built, files cached
        print(f"{n:,} messages; load {os.getloadavg()[0]:.2f}", flush=True)
        times: dict[str, list[float]] = {"off": [], "on": []}
        for i in range(args.pairs):
            for mode in ("off", "on") if i % 2 == 0 else ("on", "off"):
                data = work / f"threadline-{i}-{mode}"
                mailbox_id = bench.setup_threadline(data, corpus, rep, dv.host, dv.port, "rep")
                env = bench.threadline_env(data)
                if mode == "on":
                    env.update(ON)
                argv = [bench.PYTHON, "-m", "app.cli", "sync", "--once", "--mailbox", str(mailbox_id)]
                t0 = time.perf_counter()
                run = subprocess.run(argv, env=env, capture_output=True, text=True)
                wall = time.perf_counter() - t0
                if run.returncode != 0:
                    print(run.stdout[-2000:], run.stderr[-2000:])
                    return 1
                times[mode].append(wall)
                print(f"pair {i + 1} refusal {mode:>3}: {wall:.2f} s  {run.stdout.strip().splitlines()[-1][:100]}")
        off, on = statistics.median(times["off"]), statistics.median(times["on"])
        print(
            f"\nmedian wall: refusal off {off:.2f} s, on {on:.2f} s ({(on / off - 1) * 100:+.1f}%); load {os.getloadavg()[0]:.2f}"
        )
        return 0
    finally:
        dv.stop()


if __name__ == "__main__":
    sys.exit(main())
