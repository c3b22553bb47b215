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

import os
import pickle
import struct
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Iterator

from connectors.base import ConnectorError, Folder, TransientError, close_quietly

_HEADER = struct.Struct("!I")
ROOT = Path(__file__).resolve().parent.parent


def _write(stream: BinaryIO, event) -> None:
    data = pickle.dumps(event, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read(stream: BinaryIO):
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)


def child_main() -> None:
    from sync.engine import build_connector

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write to the event pipe
    connector = None
    try:
        connector = build_connector(*_read(inp))
        _write(out, ("folders", connector.list_folders()))
        plan = _read(inp)
        if not plan:
            return
        work, since = plan
        from sync.engine import _events

        for event in _events(connector, work, since):
            _write(out, event)
        _write(out, ("done",))
    except ConnectorError as exc:
        _write(out, ("fatal", type(exc).__name__, str(exc), exc.retry_after))
    except BrokenPipeError:
        pass
    except BaseException as exc:  # noqa: BLE001
        _write(out, ("fatal", "TransientError", f"fetch process failed: {type(exc).__name__}: {exc}", None))
    finally:
        close_quietly(connector)


class ChildFetcher:
    """list_folders and fetch_changes of one connector, run in a child process."""

    def __init__(self, factory_args: tuple):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        self._proc = subprocess.Popen([sys.executable, "-m", "sync.pipeline"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, cwd=str(ROOT), env=env)
        # The password travels over the pipe, never in argv or the environment.
        _write(self._proc.stdin, factory_args)

    def _next(self):
        event = _read(self._proc.stdout)
        if event is None:
            code = self._proc.wait(timeout=10)
            raise TransientError(f"fetch process ended unexpectedly (exit code {code})")
        if event[0] == "fatal":
            _, kind, message, retry_after = event
            import connectors.base as base

            raise getattr(base, kind, TransientError)(message, retry_after=retry_after)
        return event

    def list_folders(self) -> list[Folder]:
        event = self._next()
        if event[0] != "folders":
            raise TransientError(f"fetch process answered {event[0]!r} instead of the folder list")
        return event[1]

    def run(self, work: list[tuple[Folder, dict]], since: datetime) -> Iterator[tuple]:
        """Yields ("batch", name, Batch) / ("folder_done", name) / ("folder_error", name, kind, msg)."""
        _write(self._proc.stdin, (work, since))
        while True:
            event = self._next()
            if event[0] == "done":
                return
            yield event

    def close(self) -> None:
        proc = self._proc
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


if __name__ == "__main__":
    child_main()
