"""Scheduling: APScheduler ticks, a bounded pool of sync runs, IDLE watchers.

Each tick asks the database which mailboxes are due; the claim inside
sync_mailbox makes it safe for several processes (serve, worker) to tick at
once. IMAP mailboxes also get an IDLE watcher so new mail is synced within
seconds instead of waiting for the next interval.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select, update

from app.db import read_only, write_transaction
from app.models import Mailbox, MailboxStatus, Organisation
from app.models.base import utcnow
from connectors.base import ConnectorError, close_quietly
from connectors.factory import build_connector
from sync import followups
from sync.engine import due_mailboxes, load_mailbox, request_sync, sync_mailbox
from sync.runtime import Runtime

if TYPE_CHECKING:
    from connectors.imap import ImapConnector

log = logging.getLogger("threadline.scheduler")
MAILBOX = Mailbox.__table__


# IDLE is re-issued this often (RFC 2177 only asks for less than 29 min): each cycle
# is a round trip (DONE, SELECT, IDLE) that fails within IDLE_ANSWER_SECONDS when the
# server is gone or the link stalled, so a dead push connection is noticed within a
# minute (30 + 20 s) instead of never. One exchange per 30 s per mailbox is little.
IDLE_HEARTBEAT_SECONDS = 30.0
IDLE_ANSWER_SECONDS = 20.0


class IdleWatcher(threading.Thread):
    """Holds one IMAP connection in IDLE on the Inbox and wakes the sync on new mail.

    When that connection drops (or cannot be made again) the mailbox is degraded at
    once: the reason is recorded as its error, the drop is logged, and a sync is
    requested, which either confirms the failure or, when the server is fine, clears it."""

    def __init__(self, service: "SyncService", mailbox_id: int):
        super().__init__(name=f"idle-{mailbox_id}", daemon=True)
        self.service, self.mailbox_id = service, mailbox_id
        self.stop_event = threading.Event()
        self.connector: ImapConnector | None = None
        self.lost = False  # the push connection is down (logged once per outage)

    def run(self) -> None:
        failures = 0
        while not self.stop_event.is_set():
            try:
                if self.connector is None:
                    self.connector = self._connector()
                new_mail = self.connector.idle_wait("INBOX", timeout=self.service.idle_timeout)
                if self.lost:
                    self.lost = False
                    log.warning("IDLE connection of mailbox %s is back", self.mailbox_id)
                if new_mail:
                    request_sync(self.service.rt.engine, self.mailbox_id)
                    self.service.wake()
                failures = 0
            except Exception as exc:  # noqa: BLE001 - a watcher must not die silently
                if self.stop_event.is_set():
                    break
                failures += 1
                self._lost(exc)
                self._drop()
                self.stop_event.wait(min(300, 5 * 2 ** min(failures, 6)))
        self._drop()

    def _lost(self, exc: Exception) -> None:
        if not isinstance(exc, ConnectorError):
            log.exception("IDLE watcher for mailbox %s failed", self.mailbox_id)
            return
        if exc.kind not in ("transient", "auth"):  # e.g. a server refusing IDLE: polling still syncs it
            log.info("IDLE on mailbox %s stopped: %s", self.mailbox_id, exc)
            return
        if not self.lost:
            self.lost = True
            log.warning(
                "IDLE connection of mailbox %s lost: %s; marking it degraded and syncing it now to check",
                self.mailbox_id,
                exc,
            )
            mark_connection_lost(self.service.rt.engine, self.mailbox_id, str(exc))
            request_sync(self.service.rt.engine, self.mailbox_id)
            self.service.wake()
        else:
            log.info("IDLE on mailbox %s still down: %s", self.mailbox_id, exc)

    def _connector(self):
        rt = self.service.rt
        with read_only(rt.engine) as conn:
            _, spec, _, _ = load_mailbox(conn, rt.box, self.mailbox_id)
        connector = build_connector(spec)
        if hasattr(connector, "settings"):  # answers to the heartbeat must come quickly (see above)
            connector.settings = dataclasses.replace(connector.settings, timeout=self.service.idle_answer_seconds)
        return connector

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


def mark_connection_lost(engine, mailbox_id: int, reason: str) -> None:
    """Record a lost push connection as the mailbox's error (health: failing) unless a sync
    is running (its outcome will say); the next successful sync clears it."""
    reason = reason.strip()
    with write_transaction(engine) as conn:
        conn.execute(
            update(MAILBOX)
            .where(
                MAILBOX.c.id == mailbox_id,
                MAILBOX.c.status.in_(("active", "importing")),
                MAILBOX.c.sync_stage != "running",
            )
            .values(
                last_error=reason if reason.endswith((".", "?", "!")) else reason + ".",
                last_error_kind="transient",
                last_error_fix=None,
                last_error_at=utcnow(),
            )
        )


class SyncService:
    def __init__(
        self,
        rt: Runtime,
        *,
        max_workers: int = 2,
        idle: bool | None = None,
        idle_timeout: float = IDLE_HEARTBEAT_SECONDS,
        idle_answer_seconds: float = IDLE_ANSWER_SECONDS,
    ):
        self.rt = rt
        self.idle_enabled = rt.settings.idle_enabled if idle is None else idle
        self.idle_timeout, self.idle_answer_seconds = idle_timeout, idle_answer_seconds
        self.pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sync")
        self.scheduler = BackgroundScheduler(timezone=timezone.utc)
        self.running: set[int] = set()
        self.watchers: dict[int, IdleWatcher] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        self.scheduler.add_job(
            self.tick,
            "interval",
            seconds=self.rt.settings.scheduler_tick_seconds,
            id="tick",
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(timezone.utc),
        )
        from sync import graph_push

        # The follow-up queue's time-based rules (sync/followups.py): replies in other threads and
        # meetings that arrived out of order, and key accounts going quiet.
        self.scheduler.add_job(
            self.sweep_followups,
            "interval",
            minutes=5,
            id="followups",
            max_instances=1,
            coalesce=True,
        )
        if graph_push.push_enabled(self.rt):
            # Microsoft Graph subscriptions live at most ~3 days for mail: renew well before.
            self.scheduler.add_job(
                self._renew_subscriptions,
                "interval",
                minutes=30,
                id="graph-subscriptions",
                max_instances=1,
                coalesce=True,
                next_run_time=datetime.now(timezone.utc),
            )
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

    def sweep_followups(self, now: datetime | None = None) -> None:
        try:
            with read_only(self.rt.engine) as conn:
                orgs = list(conn.execute(select(Organisation.__table__.c.id)).scalars())
            for org_id in orgs:
                with write_transaction(self.rt.engine) as conn:
                    followups.sweep(conn, org_id, now)
        except Exception:  # noqa: BLE001 - the next run tries again
            log.exception("follow-up sweep failed")

    def _run(self, mailbox_id: int) -> None:
        try:
            report = sync_mailbox(
                self.rt.engine,
                self.rt.box,
                mailbox_id,
                worker=self.rt.settings.worker_id,
                lease_seconds=self.rt.settings.sync_lease_seconds,
            )
            if report is not None and not report.ok and report.error_kind != "lease":
                log.warning("sync of mailbox %s failed (%s): %s", mailbox_id, report.error_kind, report.error)
        except Exception:  # noqa: BLE001
            log.exception("sync run of mailbox %s crashed", mailbox_id)
        finally:
            with self._lock:
                self.running.discard(mailbox_id)

    def _ensure_watchers(self) -> None:
        with read_only(self.rt.engine) as conn:
            wanted = set(
                conn.execute(
                    select(MAILBOX.c.id).where(
                        MAILBOX.c.kind == "imap", MAILBOX.c.status.in_((MailboxStatus.IMPORTING, MailboxStatus.ACTIVE))
                    )
                ).scalars()
            )
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
