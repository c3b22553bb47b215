"""Scheduling: APScheduler ticks, a bounded pool of sync runs, IDLE on many mailboxes.

Each tick asks the database which mailboxes are due; the claim inside
sync_mailbox makes it safe for several processes (serve, worker) to tick at
once. IMAP mailboxes are also held in IDLE (sync/idlehub.py: one selector thread
for all of a worker's connections) so new mail is synced within seconds instead
of waiting for the next interval; which worker holds which mailbox's IDLE is a
lease (claim_watches), so workers share them and survivors take a dead one's over.
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import or_, select, update

from app.db import read_only, write_transaction
from app.models import Mailbox, MailboxStatus, Organisation
from app.models.base import utcnow
from app.settings import holder_gone
from connectors.base import AuthError, ConnectorError, Fix
from connectors.imap import ImapSettings
from connectors.imapidle import IdleSession
from sync import followups, stats
from sync.engine import due_mailboxes, request_sync, sync_mailbox
from sync.idlehub import IdleHub
from sync.runtime import Runtime

log = logging.getLogger("threadline.scheduler")
MAILBOX = Mailbox.__table__


# IDLE is re-issued this often (RFC 2177 only asks for less than 29 min): each cycle
# is a round trip (DONE, IDLE) that fails within IDLE_ANSWER_SECONDS when the
# server is gone or the link stalled, so a dead push connection is noticed within a
# minute (30 + 20 s) instead of never. One exchange per 30 s per mailbox is little.
IDLE_HEARTBEAT_SECONDS = 30.0
IDLE_ANSWER_SECONDS = 20.0
# How often the per-contact summaries are recounted (sync/stats.py: check_due), and the
# first time after start (not at once: a fresh server is busy with its first imports).
SUMMARY_CHECK_SECONDS = 6 * 3600
SUMMARY_CHECK_DELAY = 600
WATCHED_KINDS = ("imap", "gmail", "m365")  # IDLE; Graph subscriptions (a Graph mailbox needs no connection)
IDLE_KINDS = ("imap", "gmail")  # held in IDLE by the hub (Gmail with XOAUTH2, on All Mail)


def claim_watches(engine, worker: str, lease_seconds: int, limit: int, now: datetime | None = None) -> dict[int, str]:
    """The mailboxes this worker watches, with their kind: IMAP ones it holds IDLE on,
    Microsoft 365 ones whose Graph subscriptions it keeps. Its own (renewed when half their
    lease is gone, so a thousand leases cost one UPDATE now and then) plus free ones up
    to `limit`. Free: nobody's, expired (the holder died on another host or stalled),
    or held by a process gone from this host (killed: taken at once). The claiming
    UPDATE repeats the condition, so two workers racing for a mailbox cannot both win
    (PostgreSQL re-checks it on the locked row; SQLite has one writer); on PostgreSQL
    the candidates are locked with SKIP LOCKED, so workers starting together split them
    instead of all reaching for the same first rows."""
    now = now or utcnow()
    until = now + timedelta(seconds=lease_seconds)
    watchable = (
        MAILBOX.c.kind.in_(WATCHED_KINDS),
        MAILBOX.c.status.in_((MailboxStatus.IMPORTING, MailboxStatus.ACTIVE)),
    )
    mine = MAILBOX.c.watch_owner == worker
    with write_transaction(engine) as conn:
        conn.execute(
            update(MAILBOX)
            .where(mine, MAILBOX.c.watch_until < now + timedelta(seconds=lease_seconds / 2), *watchable)
            .values(watch_until=until)
        )
        conn.execute(update(MAILBOX).where(mine, ~watchable[1]).values(watch_owner=None, watch_until=None))
        held = dict(conn.execute(select(MAILBOX.c.id, MAILBOX.c.kind).where(mine)).all())
        room = limit - len(held)
        if room > 0:
            owners = conn.execute(select(MAILBOX.c.watch_owner).distinct().where(MAILBOX.c.watch_owner.is_not(None)))
            gone = [o for o in owners.scalars() if o != worker and holder_gone(o)]
            free = or_(MAILBOX.c.watch_owner.is_(None), MAILBOX.c.watch_until < now, MAILBOX.c.watch_owner.in_(gone))
            candidates = (
                conn.execute(
                    select(MAILBOX.c.id)
                    .where(*watchable, free)
                    .order_by(MAILBOX.c.id)
                    .limit(room)
                    .with_for_update(skip_locked=True)  # PostgreSQL: racers take different rows
                )
                .scalars()
                .all()
            )
            if candidates:
                conn.execute(
                    update(MAILBOX)
                    .where(MAILBOX.c.id.in_(candidates), free)
                    .values(watch_owner=worker, watch_until=until)
                )
                held = dict(conn.execute(select(MAILBOX.c.id, MAILBOX.c.kind).where(mine)).all())
    return held


def release_watches(engine, worker: str) -> None:
    """A worker stopping cleanly hands its mailboxes to the others at once."""
    with write_transaction(engine) as conn:
        conn.execute(update(MAILBOX).where(MAILBOX.c.watch_owner == worker).values(watch_owner=None, watch_until=None))


def open_idle_session(rt: Runtime, mailbox_id: int, answer_seconds: float) -> IdleSession:
    """An IdleSession for an IMAP mailbox, its answers due within answer_seconds (see above)."""
    with read_only(rt.engine) as conn:
        row = conn.execute(
            select(MAILBOX.c.kind, MAILBOX.c.config, MAILBOX.c.secret_enc).where(MAILBOX.c.id == mailbox_id)
        ).one()
        cfg = row.config or {}
        if row.kind == "gmail":
            return _gmail_idle_session(rt, conn, mailbox_id, cfg, answer_seconds, row.secret_enc)
    settings = ImapSettings(
        host=cfg["host"],
        port=int(cfg["port"]),
        security=cfg.get("security", "tls"),
        username=cfg["username"],
        timeout=answer_seconds,
    )
    return IdleSession(settings, rt.box.decrypt(row.secret_enc) if row.secret_enc else "")


def _gmail_idle_session(
    rt: Runtime, conn, mailbox_id: int, cfg: dict, answer_seconds: float, secret_enc: str | None = None
) -> IdleSession:
    """Gmail: XOAUTH2 with a token of the rep from the Workspace's service account (or the rep's
    own sign-in), IDLE on the folder the sync reads (All Mail, where every new message lands,
    sent mail included)."""
    from app.models import FolderState, GoogleWorkspace
    from connectors.gmail import GMAIL_IMAP
    from connectors.googleauth import MAIL_SCOPE, RefreshTokenSource, ServiceAccountTokenSource

    W, F = GoogleWorkspace.__table__, FolderState.__table__
    own = cfg.get("mode") == "installed"
    key_enc = (
        secret_enc
        if own
        else conn.execute(select(W.c.secret_enc).where(W.c.id == int(cfg.get("workspace") or 0))).scalar()
    )
    if not key_enc:
        raise AuthError(
            "the Google sign-in of this mailbox is gone" if own else "the Google Workspace of this mailbox is gone",
            fix=Fix.GOOGLE_SIGN_IN if own else Fix.SERVICE_KEY,
        )
    folder = conn.execute(
        select(F.c.name)
        .where(F.c.mailbox_id == mailbox_id, F.c.selected, F.c.role.notin_(("calendar", "skip")))
        .order_by((F.c.role == "archive").desc(), F.c.name)
        .limit(1)
    ).scalar()
    user = cfg.get("user") or cfg["username"]
    if own:
        refresh = RefreshTokenSource(
            rt.box.decrypt(key_enc), str(cfg.get("client_id") or ""), user, token_uri=cfg.get("token_uri")
        )

        def token() -> str:
            value = refresh.token()
            if refresh.updated_secret:  # rotated while opening IDLE: the stored secret must follow
                with write_transaction(rt.engine) as wconn:
                    wconn.execute(
                        update(MAILBOX)
                        .where(MAILBOX.c.id == mailbox_id)
                        .values(secret_enc=rt.box.encrypt(refresh.updated_secret))
                    )
                refresh.updated_secret = None
            return value
    else:
        token = ServiceAccountTokenSource(rt.box.decrypt(key_enc), user, [MAIL_SCOPE]).token
    settings = ImapSettings(
        host=cfg.get("host", GMAIL_IMAP["host"]),
        port=int(cfg.get("port", GMAIL_IMAP["port"])),
        security=cfg.get("security", GMAIL_IMAP["security"]),
        username=cfg.get("username") or user,
        timeout=answer_seconds,
    )
    return IdleSession(settings, "", oauth2_token=token, folder=folder or "INBOX")


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
        jobs: list[tuple[str, Callable[[], object], float]] | None = None,
    ):
        self.rt = rt
        # Periodic work of the layers above (name, function, seconds), which this layer cannot
        # import: the composition root (app/api, app/cli) passes it in.
        self.jobs = list(jobs or [])
        self.idle_enabled = rt.settings.idle_enabled if idle is None else idle
        self.idle_timeout, self.idle_answer_seconds = idle_timeout, idle_answer_seconds
        self.pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sync")
        self.scheduler = BackgroundScheduler(timezone=timezone.utc)
        self.running: set[int] = set()
        self.again: set[int] = set()  # new mail came during their run: run once more
        # Graph mailboxes whose subscriptions this process keeps (by watch lease; None: all of them)
        self.graph_held: set[int] | None = set() if self.idle_enabled else None
        self.hub: IdleHub | None = None
        if self.idle_enabled:
            self.hub = IdleHub(
                lambda mailbox_id: open_idle_session(rt, mailbox_id, idle_answer_seconds),
                on_news=self._news,
                on_lost=self._lost,
                on_back=lambda mailbox_id: log.warning("IDLE connection of mailbox %s is back", mailbox_id),
                heartbeat=idle_timeout,
                answer=idle_answer_seconds,
            )
        self._lock = threading.Lock()
        self._watch_lock = threading.Lock()
        self.stopping = False

    def start(self) -> None:
        if self.hub is not None:
            self.hub.start()
        self.scheduler.add_job(
            self.tick,
            "interval",
            seconds=self.rt.settings.scheduler_tick_seconds,
            id="tick",
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(timezone.utc),
        )
        # The summaries' recount reads a whole organisation: every few hours, not per page view.
        self.scheduler.add_job(
            self._check_summaries,
            "interval",
            seconds=SUMMARY_CHECK_SECONDS,
            id="summary-check",
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(timezone.utc) + timedelta(seconds=SUMMARY_CHECK_DELAY),
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
        for name, job, seconds in self.jobs:
            self.scheduler.add_job(
                self._guarded(name, job),
                "interval",
                seconds=seconds,
                id=name,
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

    @staticmethod
    def _guarded(name: str, job: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            try:
                job()
            except Exception:  # noqa: BLE001 - a report; the next run tries again
                log.exception("scheduled job %s failed", name)

        return run

    def _check_summaries(self) -> None:
        try:
            stats.check_due(self.rt.engine, SUMMARY_CHECK_SECONDS)
        except Exception:  # noqa: BLE001 - a report; the next one tries again
            log.exception("could not recount the contact summaries")

    def _renew_subscriptions(self) -> None:
        from sync import graph_push

        try:
            graph_push.ensure_subscriptions(self.rt, mailbox_ids=self.graph_held)
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
            self.submit(mailbox_id)
        if self.hub is not None:
            self._watch()

    def _watch(self) -> None:
        """Renew and take watch leases; hold IDLE on the IMAP ones and keep the Graph
        ones' subscriptions (at once for mailboxes just taken over)."""
        s = self.rt.settings
        with self._watch_lock:  # never claims again after stop() let them go
            if self.stopping:
                return
            try:
                held = claim_watches(self.rt.engine, s.worker_id, s.idle_lease_seconds, s.idle_max_mailboxes)
            except Exception:  # noqa: BLE001 - the next tick tries again; polling still syncs
                log.exception("could not renew the IDLE leases")
                return
        assert self.hub is not None
        self.hub.watch_only(m for m, kind in held.items() if kind in IDLE_KINDS)
        graph = {m for m, kind in held.items() if kind == "m365"}
        new = graph - (self.graph_held or set())
        self.graph_held = graph
        if new and self.scheduler.get_job("graph-subscriptions") is not None:
            try:
                self.scheduler.modify_job("graph-subscriptions", next_run_time=datetime.now(timezone.utc))
            except Exception:  # noqa: BLE001 - shutting down
                pass

    def submit(self, mailbox_id: int) -> bool:
        """Run a sync of the mailbox in the pool unless one is running here already."""
        with self._lock:
            if mailbox_id in self.running:
                return False
            self.running.add(mailbox_id)
        self.pool.submit(self._run, mailbox_id)
        return True

    def _news(self, mailbox_id: int) -> None:
        """The server announced new mail: sync now, without waiting for a tick. The
        row is marked due first, so a worker that holds the sync lease runs it too."""
        request_sync(self.rt.engine, mailbox_id)
        if not self.submit(mailbox_id):
            with self._lock:
                self.again.add(mailbox_id)  # the running sync may have read the Inbox already

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
                again = mailbox_id in self.again
                self.again.discard(mailbox_id)
        if again:
            self.submit(mailbox_id)

    def _lost(self, mailbox_id: int, exc: Exception, first: bool) -> None:
        """A held IDLE connection dropped (or could not be made again): the mailbox is
        degraded at once, the drop is logged, and a sync is requested, which either
        confirms the failure or, when the server is fine, clears it."""
        if not isinstance(exc, ConnectorError):
            log.error("IDLE on mailbox %s failed: %s: %s", mailbox_id, type(exc).__name__, exc)
            return
        if exc.kind not in ("transient", "auth"):  # e.g. a server refusing IDLE: polling still syncs it
            log.info("IDLE on mailbox %s stopped: %s", mailbox_id, exc)
            return
        if not first:
            log.info("IDLE on mailbox %s still down: %s", mailbox_id, exc)
            return
        log.warning(
            "IDLE connection of mailbox %s lost: %s; marking it degraded and syncing it now to check", mailbox_id, exc
        )
        mark_connection_lost(self.rt.engine, mailbox_id, str(exc))
        request_sync(self.rt.engine, mailbox_id)
        self.submit(mailbox_id)

    def stop(self) -> None:
        try:
            self.scheduler.shutdown(wait=False)
        except Exception:  # noqa: BLE001
            pass
        if self.hub is not None:
            self.hub.stop()
            with self._watch_lock:
                self.stopping = True
                try:
                    release_watches(self.rt.engine, self.rt.settings.worker_id)
                except Exception:  # noqa: BLE001 - the leases expire anyway
                    log.warning("could not release the IDLE leases", exc_info=True)
        self.pool.shutdown(wait=True, cancel_futures=True)


def run_forever(rt: Runtime, jobs: list[tuple[str, Callable[[], object], float]] | None = None) -> None:
    service = SyncService(rt, jobs=jobs)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    service.start()
    done.wait()
    service.stop()
