"""The fetch child's event pipe survives its processes being stopped and continued: job
control (Ctrl-Z, `fg`), a profiler or a debugger attaching. Each stop cuts a large write to a
full pipe short; a frame must still arrive whole, and in order.

The child runs unbuffered (PYTHONUNBUFFERED=1, as container images commonly set): its stdout
is then a raw stream that writes what one system call took (sync/pipeline.py: _write_frame)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from sync import pipeline

ROOT = Path(__file__).resolve().parents[2]
FRAMES = 120

# The child side as sync/pipeline.py's child_main does it: events through the background
# writer on sys.stdout.buffer. Frames of 0.1-0.8 MB, far more than the pipe's 64 KiB.
WRITER = f"""
import random, sys
from sync import pipeline
out = sys.stdout.buffer
sys.stdout = sys.stderr
rnd = random.Random(7)
writer = pipeline._BackgroundWriter(out)
for i in range({FRAMES}):
    writer.write(("frame", i, str(i) * rnd.randint(100_000, 800_000)))
writer.close()
pipeline._write(out, ("done",))
"""


def _stop_and_continue(pid: int, until: threading.Event, rnd: random.Random) -> int:
    stops = 0
    while not until.is_set():
        time.sleep(rnd.uniform(0.001, 0.008))
        try:
            os.kill(pid, signal.SIGSTOP)
            time.sleep(rnd.uniform(0.0005, 0.003))
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            break
        stops += 1
    return stops


def test_every_event_crosses_the_pipe_whole_and_in_order_while_the_writer_is_stopped_and_continued():
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER],
        cwd=ROOT,
        env=dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    done = threading.Event()
    stops: list[int] = []
    pester = threading.Thread(target=lambda: stops.append(_stop_and_continue(child.pid, done, random.Random(3))))
    pester.start()
    received = []
    try:
        while True:
            event = pipeline._read(child.stdout)
            assert event is not None, f"the pipe ended after {len(received)} events"
            if event == ("done",):
                break
            tag, i, body = event
            # whole: the body is the frame's number repeated, to its end
            assert tag == "frame" and body == str(i) * (len(body) // len(str(i))), i
            received.append(i)
            time.sleep(0.002)  # a reader busy now and then: the writer blocks on a full pipe
    finally:
        done.set()
        pester.join()
        child.kill()
        _, err = child.communicate(timeout=30)
    assert received == list(range(FRAMES)), err[-2000:]
    assert stops[0] >= 20, f"only {stops[0]} stops landed while the events crossed"
