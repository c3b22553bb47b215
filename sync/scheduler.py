"""Scheduling: APScheduler ticks, a bounded pool of sync runs, IDLE watchers.

Each tick asks the database which mailboxes are due; the claim inside
sync_mailbox makes it safe for several processes (serve, worker) to tick at
once. IMAP mailboxes also get an IDLE watcher so new mail is synced within
seconds instead of waiting for the next interval.
"""
from __future__ import annotations

import logging
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select

from app.db import read_only
from app.models import Mailbox, MailboxStatus
from connectors.base import ConnectorError, close_quietly
from connectors.factory import build_connector
from sync.engine import due_mailboxes, load_mailbox, request_sync, sync_mailbox
from sync.runtime import Runtime

if TYPE_CHECKING:
    from connectors.imap import ImapConnector

log = logging.getLogger("threadline.scheduler")
MAILBOX = Mailbox.__table__


class IdleWatcher(threading.Thread):
    """Holds one IMAP connection in IDLE on the Inbox and wakes the sync on new mail."""

    def __init__(self, service: "SyncService", mailbox_id: int):
        super().__init__(name=f"idle-{mailbox_id}", daemon=True)
        self.service, self.mailbox_id = service, mailbox_id
        self.stop_event = threading.Event()
        self.connector: ImapConnector | None = None

    def run(self) -> None:
        failures = 0
        while not self.stop_event.is_set():
            try:
                if self.connector is None:
                    self.connector = self._connector()
                # RFC 2177: re-issue IDLE before servers drop it (29 min).
                if self.connector.idle_wait("INBOX", timeout=self.service.idle_timeout):
                    request_sync(self.service.rt.engine, self.mailbox_id)
                    self.service.wake()
                failures = 0
            except ConnectorError as exc:
                failures += 1
                log.info("IDLE on mailbox %s stopped: %s", self.mailbox_id, exc)
                self._drop()
                self.stop_event.wait(min(300, 5 * 2 ** min(failures, 6)))
            except Exception:  # noqa: BLE001 - a watcher must not die silently
                failures += 1
                log.exception("IDLE watcher for mailbox %s failed", self.mailbox_id)
                self._drop()
                self.stop_event.wait(min(300, 5 * 2 ** min(failures, 6)))
        self._drop()

    def _connector(self):
        rt = self.service.rt
        with read_only(rt.engine) as conn:
            _, spec, _, _ = load_mailbox(conn, rt.box, self.mailbox_id)
        return build_connector(spec)

    def _drop(self) -> None:
        connector, self.connector = self.connector, None
        close_quietly(connector)

    def stop(self) -> None:
        self.stop_event.set()
        client = getattr(self.connector, "_client", None)
        if client is not None:
            try:
                client.shutdown()  # unblock idle_check at once
            except Exception:  # noqa: BLE001
                pass


class SyncService:
    def __init__(self, rt: Runtime, *, max_workers: int = 2, idle: bool | None = None, idle_timeout: float = 25 * 60):
        self.rt = rt
        self.idle_enabled = rt.settings.idle_enabled if idle is None else idle
        self.idle_timeout = idle_timeout
        self.pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sync")
        self.scheduler = BackgroundScheduler(timezone=timezone.utc)
        self.running: set[int] = set()
        self.watchers: dict[int, IdleWatcher] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        self.scheduler.add_job(self.tick, "interval", seconds=self.rt.settings.scheduler_tick_seconds, id="tick",
                               max_instances=1, coalesce=True, next_run_time=datetime.now(timezone.utc))
        from sync import graph_push

        if graph_push.push_enabled(self.rt):
            # Microsoft Graph subscriptions live at most ~3 days for mail: renew well before.
            self.scheduler.add_job(self._renew_subscriptions, "interval", minutes=30, id="graph-subscriptions",
                                   max_instances=1, coalesce=True, next_run_time=datetime.now(timezone.utc))
        self.scheduler.start()

    def _renew_subscriptions(self) -> None:
        from sync import graph_push

        try:
            graph_push.ensure_subscriptions(self.rt)
        except Exception:  # noqa: BLE001 - polling still syncs every mailbox
            log.exception("could not renew Microsoft Graph subscriptions")

    def wake(self) -> None:
        try:
            self.scheduler.modify_job("tick", next_run_time=datetime.now(timezone.utc))
        except Exception:  # noqa: BLE001 - shutting down
            pass

    def tick(self) -> None:
        try:
            due = due_mailboxes(self.rt.engine)
        except Exception:  # noqa: BLE001
            log.exception("could not list due mailboxes")
            return
        for mailbox_id in due:
            with self._lock:
                if mailbox_id in self.running:
                    continue
                self.running.add(mailbox_id)
            self.pool.submit(self._run, mailbox_id)
        if self.idle_enabled:
            self._ensure_watchers()

    def _run(self, mailbox_id: int) -> None:
        try:
            sync_mailbox(self.rt.engine, self.rt.box, mailbox_id, worker=self.rt.settings.worker_id,
                         lease_seconds=self.rt.settings.sync_lease_seconds)
        except Exception:  # noqa: BLE001
            log.exception("sync run of mailbox %s crashed", mailbox_id)
        finally:
            with self._lock:
                self.running.discard(mailbox_id)

    def _ensure_watchers(self) -> None:
        with read_only(self.rt.engine) as conn:
            wanted = set(conn.execute(select(MAILBOX.c.id).where(
                MAILBOX.c.kind == "imap",
                MAILBOX.c.status.in_((MailboxStatus.IMPORTING, MailboxStatus.ACTIVE)))).scalars())
        for mailbox_id in wanted - set(self.watchers):
            watcher = IdleWatcher(self, mailbox_id)
            self.watchers[mailbox_id] = watcher
            watcher.start()
        for mailbox_id in set(self.watchers) - wanted:
            self.watchers.pop(mailbox_id).stop()

    def stop(self) -> None:
        try:
            self.scheduler.shutdown(wait=False)
        except Exception:  # noqa: BLE001
            pass
        for watcher in self.watchers.values():
            watcher.stop()
        self.pool.shutdown(wait=True, cancel_futures=True)


def run_forever(rt: Runtime) -> None:
    service = SyncService(rt)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    service.start()
    done.wait()
    service.stop()
