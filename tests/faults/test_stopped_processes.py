"""The fetch child's event pipe survives its processes being stopped and continued: job
control (Ctrl-Z, `fg`), a profiler or a debugger attaching. Each stop cuts a large write to a
full pipe short; a frame must still arrive whole, and in order. A child stopped for good (or
stuck) fails the run once it has been silent for the lease time, instead of holding it forever.
The CLI's own standard output keeps every byte of a large export under the same stops.

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
from tests.app.test_cli_admin import _ok
from tests.cli import cli_env
from tests.faults.backfill import fetch_child, world_for
from tests.faults.timeline import assert_same_timeline, timeline

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


def test_a_fetch_child_stopped_for_good_fails_the_run_after_the_lease_time_and_the_next_run_ends_as_a_clean_import(
    mailbox, imap_user, tmp_path
):
    corpus, expected = mailbox
    world = world_for(tmp_path, corpus, "stopped")
    mid = world.add_imap(corpus.reps[0][1], imap_user)
    world.set_batch_size(mid, 20)
    imported = lambda: world.scalar("SELECT messages_imported FROM mailbox WHERE id = :i", i=mid)  # noqa: E731
    stopped: list[int] = []
    finished = threading.Event()

    def stop_the_child_once_it_has_sent_batches():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not stopped and not finished.is_set():
            child = fetch_child(os.getpid())
            if child and imported() >= 100:
                os.kill(child, signal.SIGSTOP)  # and never continued
                stopped.append(child)
            time.sleep(0.005)
        if stopped and not finished.wait(60):
            os.kill(stopped[0], signal.SIGKILL)  # a run still held after a minute: free it, and fail below

    watcher = threading.Thread(target=stop_the_child_once_it_has_sent_batches)
    watcher.start()
    started = time.monotonic()
    try:
        first = world.sync(mid, fetch_in_child=True, lease_seconds=4)
    finally:
        finished.set()
        took = time.monotonic() - started
        watcher.join()

    assert stopped, "the child was never stopped"
    assert not first.ok and first.error_kind == "transient", first
    assert "the fetch process sent nothing for 4 s" in first.error, first
    assert 0 < first.imported < len(expected["interactions"]) and took < 60, (first, took)
    assert not Path(f"/proc/{stopped[0]}").exists() or _state(stopped[0]) == "Z"  # ended, not left stopped
    status, error = world.sql("SELECT status, last_error FROM mailbox")[0]
    assert status == "failed" and "sent nothing" in error

    second = world.sync(mid, fetch_in_child=True)
    assert second.ok, second
    assert_same_timeline(timeline(world), expected, what="an import whose fetch child was stopped for good")


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]


def test_a_segment_exported_to_a_pipe_arrives_whole_while_the_command_is_stopped_and_continued(tmp_path):
    """`threadline segment export All | gzip` with Ctrl-Z and fg, under PYTHONUNBUFFERED=1: the CLI's
    standard output must not drop the part of a write a stop cut short (app/cli.py: _whole_writes)."""
    _ok(tmp_path, "org", "init", "--name", "OurCo", "--domain", "ourco.com")
    people = tmp_path / "people.csv"
    rows = [f"buyer{i}@customer{i % 400}.com,Buyer Number {i},{'purchasing ' * 8}" for i in range(20_000)]
    people.write_text("email,name,title\n" + "\n".join(rows) + "\n", encoding="utf-8")
    _ok(tmp_path, "contacts", "import", str(people))
    _ok(tmp_path, "segment", "save", "All", "--filters", "{}")
    whole = tmp_path / "all.csv"
    _ok(tmp_path, "segment", "export", "All", "--out", str(whole))
    expected = whole.read_bytes()
    assert expected.count(b"\n") >= 20_000

    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "segment", "export", "All"],
        cwd=ROOT,
        env=dict(cli_env(tmp_path), PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    done = threading.Event()
    stops: list[int] = []
    pester = threading.Thread(target=lambda: stops.append(_stop_and_continue(proc.pid, done, random.Random(5))))
    received = bytearray()
    try:
        while not received:  # the command's start-up, unstopped
            chunk = proc.stdout.read1(1 << 14)
            if not chunk:
                break
            received += chunk
        pester.start()
        while chunk := proc.stdout.read1(1 << 14):
            received += chunk
            time.sleep(0.002)  # a slow consumer (gzip, a network copy): the pipe stays full
    finally:
        done.set()
        if pester.is_alive():
            pester.join()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert stops and stops[0] >= 20, stops
    assert len(received) == len(expected) and bytes(received) == expected
