#!/usr/bin/env python
"""Run `python -m app.cli ARGS` and, at exit, write this process's own CPU seconds as JSON
to the file named by $TLBENCH_OWN_CPU (user, system: getrusage(RUSAGE_SELF)).

bench/imap_sync.py --followups-compare uses it to measure the ingesting process alone: the
fetch child's CPU is the same with and without the follow-up step, and /usr/bin/time's
figure adds it (a waited-for child counts in its parent's RUSAGE_CHILDREN), while wall time
on this shared machine swings with other work."""

from __future__ import annotations

import atexit
import json
import os
import resource
import runpy
import sys

OUT = os.environ.pop("TLBENCH_OWN_CPU", "")


def _write() -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    if OUT:
        with open(OUT, "w") as f:
            json.dump({"user": usage.ru_utime, "sys": usage.ru_stime, "maxrss_kb": usage.ru_maxrss}, f)


atexit.register(_write)
sys.argv = ["app.cli", *sys.argv[1:]]
runpy.run_module("app.cli", run_name="__main__", alter_sys=True)
