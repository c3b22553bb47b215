"""Fetch in a child process while this process ingests.

A large import is CPU-bound on both sides: reading and parsing IMAP answers,
and turning records into rows. Threads cannot overlap them (the GIL; and
SQLite hands the GIL back and forth on every row, so a busy second thread
slows the writer badly), so the connector runs in a child process and streams
pickled events back over a pipe. The pipe's small buffer is the back-pressure:
the child waits while this side is busy, and memory stays flat.

The child only talks to the mail server; every database write stays here, so
the rows-and-cursor-in-one-transaction rule is unchanged. The child is a plain
`python -m sync.pipeline` process, not multiprocessing, so it never re-imports
whatever script happens to be running here.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import operator
import os
import pickle
import queue
import select
import struct
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, Callable, Iterator, cast

from app import netguard
from connectors.base import (
    ConnectorError,
    ConnectorSpec,
    ErrorKind,
    Folder,
    MessageRecord,
    Signature,
    SyncEvent,
    TransientError,
    close_quietly,
    error_of,
)
from connectors.factory import build_connector, events

_HEADER = struct.Struct("!I")
ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("threadline.sync")


# Every field of MessageRecord, in declaration order, read in one C call: the pipe rebuilds a
# record by a positional constructor call, much cheaper on both sides than the generic pickling
# of a slots dataclass (which walks dataclasses.fields() per object). Derived from the class, so
# a new field crosses the pipe without anyone listing it here (a hand-kept list once dropped
# one); 0.3 µs more per record than a literal tuple, against 12.7 µs to pickle it.
_FIELDS = operator.attrgetter(*(f.name for f in dataclasses.fields(MessageRecord)))
_SIGNATURE_FIELDS = operator.attrgetter(*(f.name for f in dataclasses.fields(Signature)))


def _reduce_record(r: MessageRecord):
    return MessageRecord, _FIELDS(r)


def _reduce_signature(s: Signature):
    return Signature, _SIGNATURE_FIELDS(s)


_DISPATCH: dict[type, Callable[[Any], Any]] = {MessageRecord: _reduce_record, Signature: _reduce_signature}


def _dumps(event) -> bytes:
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _DISPATCH
    pickler.dump(event)
    return buf.getvalue()


def _write_frame(stream: IO[bytes], data: bytes) -> None:
    """One event's frame, whole, whatever kind of stream carries it.

    The child's stdout is a raw FileIO, not a buffered writer, when Python runs unbuffered
    (`python -u`, or PYTHONUNBUFFERED=1, which container images commonly set), and a raw
    write is one system call: a signal that stops and continues the process (job control,
    a profiler or debugger attaching) cuts a large write to a full pipe short. Ignoring the
    count lost the rest of the frame, and the reader took the next frame's bytes for this
    one's (measured: under SIGSTOP/SIGCONT every few milliseconds, the import failed with
    an unpickling error within 20 frames of a few hundred KB, every time). A buffered
    writer returns the whole length, so the loop costs it nothing."""
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        written = stream.write(view)
        if not written:  # None: a non-blocking stream would block (ours never are); never spin on it
            raise BlockingIOError("the event pipe took nothing")
        view = view[written:]
    stream.flush()


def _write(stream: IO[bytes], event) -> None:
    _write_frame(stream, _dumps(event))


class _BackgroundWriter:
    """Writes events to the pipe from a thread, up to `depth` events behind, so
    the child parses the next batch while the parent is still reading the last
    one (the pipe alone holds only 64 KiB: about a tenth of a batch)."""

    def __init__(self, stream: BinaryIO, depth: int = 2):
        self._stream = stream
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pipe-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            data = self._queue.get()
            if data is None:
                return
            if self.error is not None:
                continue  # drain: the reader is gone
            try:
                _write_frame(self._stream, data)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
                self.error = exc

    def write(self, event) -> None:
        if self.error is not None:
            raise self.error
        self._queue.put(_dumps(event))

    def close(self) -> None:
        """Wait until everything queued is written (or the pipe broke)."""
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    """`size` bytes, or fewer only at the end of the stream. A buffered reader (the child's
    stdin) loops by itself; a raw one (the parent's end, _Watched) returns what one system call
    read: at most what the pipe holds, 64 KiB."""
    parts: list[bytes] = []
    missing = size
    while missing:
        more = stream.read(missing)
        if more is None:  # a non-blocking stream with nothing to read (ours never are): not the end
            raise BlockingIOError("the event pipe had nothing to read")
        if not more:
            break
        parts.append(more)
        missing -= len(more)
    return b"".join(parts)  # one part (a buffered reader's answer) is returned as it is, not copied


def _read(stream: IO[bytes]):
    head = _read_exactly(stream, _HEADER.size)
    if len(head) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(head)
    data = _read_exactly(stream, size)
    if len(data) < size:
        return None
    return pickle.loads(data)


def child_main() -> None:
    """Pipe protocol: the parent sends a ConnectorSpec, then (work, since) or None
    (folders only); the child answers ("folders", list), then SyncEvents, then
    ("done",), or ("fatal", ErrorKind, message, retry_after, Fix) at any point;
    ("secret", new secret) may come before either end."""
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write to the event pipe
    netguard.install_from_env()  # the parent's refusal of private addresses (ChildFetcher passes it)
    connector = None

    def send_secret() -> None:
        # A provider may rotate the refresh token during the run; the parent
        # stores it (encrypted) whatever the outcome, as for an in-process run.
        fresh = getattr(connector, "updated_secret", None)
        if fresh:
            _write(out, ("secret", fresh))

    try:
        connector = build_connector(_read(inp))
        _write(out, ("folders", connector.list_folders()))
        plan = _read(inp)
        if not plan:
            send_secret()
            return
        work, since = plan
        writer = _BackgroundWriter(out)
        try:
            for event in events(connector, work, since):
                writer.write(event)
        finally:
            writer.close()
        send_secret()
        _write(out, ("done",))
    except ConnectorError as exc:
        send_secret()
        _write(out, ("fatal", exc.kind, str(exc), exc.retry_after, exc.fix))
    except BrokenPipeError:
        pass
    except BaseException as exc:  # noqa: BLE001
        send_secret()
        _write(out, ("fatal", ErrorKind.TRANSIENT, f"fetch process failed: {type(exc).__name__}: {exc}", None, None))
    finally:
        close_quietly(connector)


def _tag(message) -> str | None:
    """A control message's tag ("folders", "secret", "done", "fatal"); None for a
    SyncEvent, whose first field is a folder name (a NamedTuple, never a plain tuple)."""
    return message[0] if type(message) is tuple else None


def _warm_up() -> None:
    try:
        from sync import addresses

        addresses.warm_up()
    except Exception:  # noqa: BLE001 - an optimisation only; the ingest loads it when needed
        pass


class _ReadAhead:
    """Events read and unpickled in a thread, up to `depth` ahead of the consumer.

    For a writer that waits on a database server: on PostgreSQL the ingest spends most of a
    batch waiting for answers (the driver releases the GIL meanwhile), and unpickling the next
    batch in that time takes it off the critical path (a 20,000-message import: 0.7-1.3 s of
    `pickle.loads` in the ingesting process, against 6.8 s waiting on the server; see
    docs/performance.md section 6). Not for SQLite: it runs in this process and takes the GIL
    back after every row, so a second busy thread slows the writer (module docstring)."""

    _STOP = object()

    def __init__(self, next_event: Callable[[], Any], depth: int):
        self._next = next_event
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pipe-reader", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            while True:
                event = self._next()
                if _tag(event) == "done":
                    self._put(self._STOP)
                    return
                if not self._put(event):
                    return
        except BaseException as exc:  # noqa: BLE001 - raised again in the consumer, in order
            self._put(exc)

    def __iter__(self) -> Iterator[SyncEvent]:
        try:
            while True:
                item = self._queue.get()
                if item is self._STOP:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            # The consumer stopped (done, an error, a lost lease): the thread ends at its next
            # put, or when close() kills the child and its read sees the pipe's end.
            self._stopped.set()


class _Watched:
    """The child's end of the event pipe, read with a limit on how long the child may stay silent.

    A child that stops sending (stopped by a signal and never continued, stuck on a server that
    keeps its connection open without answering) would otherwise hold this run, its worker thread
    and its lease for good. Unbuffered, so that waiting for the descriptor is waiting for data
    (a buffered reader may hold bytes the descriptor no longer shows); poll, not select, because a
    worker holding thousands of IDLE connections has descriptors past select's 1,024."""

    def __init__(self, raw: IO[bytes], limit: float):
        self._raw = raw
        self._limit_ms = max(1, int(limit * 1000))
        self._limit = limit
        self._poll = select.poll()
        self._poll.register(raw.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)

    def read(self, size: int) -> bytes:
        if not self._poll.poll(self._limit_ms):
            raise TransientError(
                f"the fetch process sent nothing for {self._limit:.0f} s (stopped or stuck); "
                "it was ended and the next run tries again"
            )
        return self._raw.read(size)


class ChildFetcher:
    """list_folders and fetch_changes of one connector, run in a child process.

    silence_limit: how long the child may send nothing before the run fails (the engine passes
    its lease time: a run silent that long has lost its lease anyway)."""

    def __init__(self, spec: ConnectorSpec, silence_limit: float = 300.0):
        env = dict(
            os.environ,
            **netguard.child_env(),
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        )
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "sync.pipeline"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,  # raw pipes: _Watched polls the descriptor; frames are written and read whole
            cwd=str(ROOT),
            env=env,
        )
        # The two pipes asked for above (Popen types them as optional).
        self._to_child = cast(IO[bytes], self._proc.stdin)
        self._from_child = cast(IO[bytes], _Watched(cast(IO[bytes], self._proc.stdout), silence_limit))
        # The password travels over the pipe, never in argv or the environment.
        _write(self._to_child, spec)
        # While the child starts and logs in this process only waits: load what the
        # first batch's ingest needs (the public-suffix list) meanwhile.
        threading.Thread(target=_warm_up, name="ingest-warm-up", daemon=True).start()

    updated_secret: str | None = None

    def _next(self):
        event = _read(self._from_child)
        while _tag(event) == "secret":
            self.updated_secret = event[1]
            event = _read(self._from_child)
        if event is None:
            code = self._proc.wait(timeout=10)
            raise TransientError(f"fetch process ended unexpectedly (exit code {code})")
        if _tag(event) == "fatal":
            _, kind, message, retry_after, fix = event
            raise error_of(kind, message, retry_after=retry_after, fix=fix)
        return event

    def list_folders(self) -> list[Folder]:
        event = self._next()
        if _tag(event) != "folders":
            raise TransientError(f"fetch process answered {type(event).__name__} instead of the folder list")
        return event[1]

    def run(self, work: list[tuple[Folder, dict]], since: datetime, read_ahead: int = 0) -> Iterator[SyncEvent]:
        """The child's events() for this work, as they come. With read_ahead, a thread reads and
        unpickles up to that many events ahead while the caller writes the last one (see
        _ReadAhead for when that pays)."""
        _write(self._to_child, (work, since))
        if read_ahead:
            yield from _ReadAhead(self._next, read_ahead)
            return
        while True:
            event = self._next()
            if _tag(event) == "done":
                return
            yield event

    def close(self) -> None:
        proc = self._proc
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (self._proc.stdin, self._proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass


if __name__ == "__main__":
    child_main()
