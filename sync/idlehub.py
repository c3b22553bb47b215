"""Every IDLE connection of a worker in one selector thread.

A thread per connection (the first design: imapclient blocking in idle_check)
costs a thread stack, an imapclient object and a buffered reader per mailbox, and
a thousand threads waking for heartbeats. Here one thread waits on all the
sockets at once (selectors: epoll on Linux) and only opening a connection (TCP,
TLS, LOGIN, EXAMINE: blocking, a few milliseconds) runs in a small pool. When a
mailbox's server announces new mail the hub calls `on_news(mailbox_id)`; the
sync itself runs in the scheduler's pool as before. Measured in bench/fleet.py
(docs/performance.md): 1,000 mailboxes held by one worker in about 60 MB RSS.

Callbacks (news, lost, back) run on one separate thread so a slow database write
never delays reading the sockets.
"""

from __future__ import annotations

import logging
import queue
import random
import resource
import selectors
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from connectors.base import TransientError
from connectors.imapidle import IdleSession

log = logging.getLogger("threadline.scheduler")
OPENERS = 8  # connections opened at once: 1,000 mailboxes are all in IDLE within seconds


def raise_file_limit() -> None:
    """One descriptor per held mailbox: the usual soft limit (1,024) is too few for
    a thousand; the hard limit is what the system allows this process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
        except (ValueError, OSError):
            log.warning("could not raise the open-file limit from %s", soft)


class IdleHub:
    def __init__(
        self,
        open_session: Callable[[int], IdleSession],
        *,
        on_news: Callable[[int], None],
        on_lost: Callable[[int, Exception, bool], None],  # (mailbox, why, first failure since it was up)
        on_back: Callable[[int], None],
        heartbeat: float,
        answer: float,
        openers: int = OPENERS,
    ):
        self._open_session = open_session
        self._on_news, self._on_lost, self._on_back = on_news, on_lost, on_back
        self.heartbeat, self.answer = heartbeat, answer
        self._wanted: frozenset[int] = frozenset()
        self._sessions: dict[int, IdleSession] = {}
        self._opening: set[int] = set()
        self._retry: dict[int, tuple[float, int]] = {}  # mailbox -> (not before, failures so far)
        self._due: dict[int, float] = {}  # mailbox -> next heartbeat, or the deadline of its answer
        self._lost: set[int] = set()
        self.live: frozenset[int] = frozenset()  # mailboxes in IDLE now (read from other threads)
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._openers = ThreadPoolExecutor(max_workers=openers, thread_name_prefix="idle-open")
        self._callbacks = ThreadPoolExecutor(max_workers=1, thread_name_prefix="idle-events")
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="idle-hub", daemon=True)

    # -- from other threads -----------------------------------------------------------
    def start(self) -> None:
        raise_file_limit()
        self._thread.start()

    def watch_only(self, mailbox_ids) -> None:
        """Hold IDLE on exactly these mailboxes (opening new ones, closing the rest)."""
        self._post(("want", frozenset(mailbox_ids)))

    def stop(self) -> None:
        self._stopping.set()
        self._post(("stop",))
        self._thread.join(timeout=10)
        self._openers.shutdown(wait=False, cancel_futures=True)
        self._callbacks.shutdown(wait=False, cancel_futures=True)

    def _post(self, event: tuple) -> None:
        self._events.put(event)
        try:
            self._wake_w.send(b"x")
        except OSError:  # the buffer is full: the loop is awake anyway
            pass

    # -- the loop -------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            while not self._stopping.is_set():
                for key, _ in self._sel.select(self._timeout()):
                    if key.data is None:
                        self._drain_wakeups()
                    else:
                        self._readable(key.data)
                self._handle_events()
                self._keep_alive()
                self._open_wanted()
        except Exception:  # noqa: BLE001 - a dying hub must say so
            log.exception("the IDLE hub stopped")
        finally:
            for mailbox_id in list(self._sessions):
                self._close(mailbox_id)
            self.live = frozenset()

    def _timeout(self) -> float:
        now = time.monotonic()
        soonest = min(self._due.values(), default=now + 1.0)
        if self._retry:
            soonest = min(soonest, min(t for t, _ in self._retry.values()))
        return max(0.0, min(1.0, soonest - now))

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    def _readable(self, mailbox_id: int) -> None:
        session = self._sessions.get(mailbox_id)
        if session is None:
            return
        renewing = session.state == "renewing"
        try:
            news = session.on_readable()
        except Exception as exc:  # noqa: BLE001
            self._fail(mailbox_id, exc)
            return
        if renewing and session.state == "idling":
            self._due[mailbox_id] = time.monotonic() + self.heartbeat
        if news:
            self._callbacks.submit(self._call, self._on_news, mailbox_id)

    def _handle_events(self) -> None:
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            if event[0] == "want":
                self._wanted = event[1]
                for mailbox_id in set(self._sessions) - self._wanted:
                    self._close(mailbox_id)
                for mailbox_id in set(self._retry) - self._wanted:
                    del self._retry[mailbox_id]
                self._lost &= self._wanted
            elif event[0] == "opened":
                _, mailbox_id, session = event
                self._opening.discard(mailbox_id)
                if mailbox_id not in self._wanted or self._stopping.is_set():
                    session.close()
                    continue
                self._sessions[mailbox_id] = session
                self._sel.register(session, selectors.EVENT_READ, mailbox_id)
                # The first heartbeat at a random point of the period: a thousand connections
                # opened together would otherwise all renew in the same instant, forever.
                self._due[mailbox_id] = time.monotonic() + self.heartbeat * random.uniform(0.5, 1.0)
                self._retry.pop(mailbox_id, None)
                self.live = frozenset(self._sessions)
                if mailbox_id in self._lost:
                    self._lost.discard(mailbox_id)
                    self._callbacks.submit(self._call, self._on_back, mailbox_id)
            elif event[0] == "failed":
                _, mailbox_id, exc = event
                self._opening.discard(mailbox_id)
                if mailbox_id in self._wanted:
                    self._fail(mailbox_id, exc)

    def _keep_alive(self) -> None:
        now = time.monotonic()
        for mailbox_id, due in list(self._due.items()):
            if due > now:
                continue
            session = self._sessions[mailbox_id]
            if session.state == "idling":
                try:
                    session.renew()
                except Exception as exc:  # noqa: BLE001
                    self._fail(mailbox_id, exc)
                    continue
                self._due[mailbox_id] = now + self.answer
            else:  # no answer to the heartbeat: the link stalled
                self._fail(
                    mailbox_id, TransientError("server did not answer in time while waiting for new mail (IDLE)")
                )

    def _open_wanted(self) -> None:
        now = time.monotonic()
        for mailbox_id in self._wanted:
            if mailbox_id in self._sessions or mailbox_id in self._opening:
                continue
            if self._retry.get(mailbox_id, (0.0, 0))[0] > now:
                continue
            self._opening.add(mailbox_id)
            self._openers.submit(self._open, mailbox_id)

    def _open(self, mailbox_id: int) -> None:
        if self._stopping.is_set():
            return
        try:
            session = self._open_session(mailbox_id)
            session.open()
        except Exception as exc:  # noqa: BLE001 - reported to the loop
            self._post(("failed", mailbox_id, exc))
            return
        if self._stopping.is_set() or not self._thread.is_alive():
            session.close()  # the loop is gone: nobody would close it
            return
        self._post(("opened", mailbox_id, session))

    def _fail(self, mailbox_id: int, exc: Exception) -> None:
        self._close(mailbox_id)
        failures = self._retry.get(mailbox_id, (0.0, 0))[1] + 1
        self._retry[mailbox_id] = (time.monotonic() + min(300, 5 * 2 ** min(failures, 6)), failures)
        first = mailbox_id not in self._lost
        self._lost.add(mailbox_id)
        self._callbacks.submit(self._call, self._on_lost, mailbox_id, exc, first)

    def _close(self, mailbox_id: int) -> None:
        session = self._sessions.pop(mailbox_id, None)
        self._due.pop(mailbox_id, None)
        if session is None:
            return
        try:
            self._sel.unregister(session)
        except (KeyError, ValueError):
            pass
        session.close()
        self.live = frozenset(self._sessions)

    @staticmethod
    def _call(callback, *args) -> None:
        try:
            callback(*args)
        except Exception:  # noqa: BLE001 - a callback never stops the hub
            log.exception("IDLE callback %s failed", getattr(callback, "__name__", callback))
