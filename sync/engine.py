"""The sync engine: claim a mailbox, pull from its connector, ingest, commit rows
and cursor together, release.

Exactly-once comes from two things working together: every batch's rows and
the cursor that covers them commit in one transaction (a crash loses at most
an uncommitted batch, which is fetched again), and every row is keyed so that
a replayed batch writes nothing twice.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from sqlalchemy import delete, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from app.crypto import SecretBox, SecretError
from app.db import insert_ignore, read_only, write_transaction
from app.dberrors import database_trouble, is_database_error
from app.models import (
    FolderState,
    GoogleWorkspace,
    Interaction,
    InteractionSource,
    M365Tenant,
    Mailbox,
    MailboxStatus,
    Organisation,
    SyncIssue,
    SyncStage,
    User,
    UserAlias,
)
from app.models.base import utcnow
from app.settings import holder_gone
from connectors.base import (
    MAX_LISTED_FOLDERS,
    Batch,
    CalendarWindow,
    ConnectorError,
    ConnectorSpec,
    Folder,
    FolderBatch,
    FolderDone,
    FolderFailed,
    MeetingRecord,
    MessageRecord,
    TenantSpec,
    close_quietly,
)
from connectors.factory import build_connector, events
from connectors.ical import INVITATION_PART
from sync import copies, exclusions, followups, metrics
from sync.addresses import FREE_MAIL_DOMAINS
from sync.fixes import RunError
from sync.ingest import IngestResult, MailboxContext, OrgContext, ingest
from sync.meetings import SeriesChanged, drop_meetings_without_copies, ingest_meetings, remove_copies
from sync.skipped import (
    REMOVED as REMOVED_BY_ADMIN,
    forget as forget_skipped,
    forget_folder as forget_skipped_items,
    record as record_skipped_items,
    record_unreadable,
    unlisted as unlisted_skipped,
)

log = logging.getLogger("threadline.sync")
MAILBOX = Mailbox.__table__
FOLDER = FolderState.__table__
ROLE_ORDER = {"inbox": 0, "sent": 1, "archive": 2, "other": 3}
MAX_BACKOFF = 3600
COMMIT_ATTEMPTS = 8  # a batch that collides with another writer: about 5 s of retries in all


class LeaseLost(Exception):
    """The run's lease is gone: another worker took the mailbox over (it expired), or its folders
    were reset to be read from the beginning (app/services/mailboxes.py: reset_folders). Stop writing."""


@dataclass
class RunReport:
    mailbox_id: int
    ok: bool = False
    imported: int = 0
    new_interactions: int = 0
    skipped: int = 0
    bad: int = 0
    folders_failed: list[str] = field(default_factory=list)
    error: str | None = None
    error_kind: str | None = None
    error_fix: str | None = None  # connectors.base.Fix: what to do, when the connector knows better than the kind
    seconds: float = 0.0


# -- claiming -----------------------------------------------------------------


def claim(
    engine: Engine,
    mailbox_id: int,
    worker: str,
    lease_seconds: int,
    *,
    now: datetime | None = None,
    force: bool = False,
) -> bool:
    """Atomically take a mailbox for one run; a conditional UPDATE works on SQLite and PostgreSQL.

    A free or expired lease is taken, and so is one whose holder process is gone
    from this host (killed: it cannot write any more) or, with force, any lease
    (an operator's explicit takeover: a live holder is fenced out at its next batch).
    """
    now = now or utcnow()
    with write_transaction(engine) as conn:
        free = [MAILBOX.c.sync_stage != "running", MAILBOX.c.lease_until.is_(None), MAILBOX.c.lease_until < now]
        holder = conn.execute(
            select(MAILBOX.c.lease_owner).where(MAILBOX.c.id == mailbox_id, MAILBOX.c.sync_stage == "running")
        ).scalar()
        if holder is not None and (force or holder_gone(holder)):
            free.append(MAILBOX.c.lease_owner == holder)  # that holder only: a newer one keeps it
        res = conn.execute(
            update(MAILBOX)
            .where(MAILBOX.c.id == mailbox_id, MAILBOX.c.status != "paused", or_(*free))
            .values(
                sync_stage="running",
                lease_owner=worker,
                lease_until=now + timedelta(seconds=lease_seconds),
                last_attempt_at=now,
            )
        )
        return res.rowcount == 1


def lease_holder(engine: Engine, mailbox_id: int) -> tuple[str | None, datetime | None]:
    """(holder, until) of a mailbox's lease, for telling an operator who is syncing it."""
    with read_only(engine) as conn:
        row = conn.execute(
            select(MAILBOX.c.lease_owner, MAILBOX.c.lease_until).where(
                MAILBOX.c.id == mailbox_id, MAILBOX.c.sync_stage == "running"
            )
        ).first()
    return (row.lease_owner, row.lease_until) if row else (None, None)


def due_mailboxes(engine: Engine, now: datetime | None = None) -> list[int]:
    now = now or utcnow()
    with read_only(engine) as conn:
        holders = (
            conn.execute(select(MAILBOX.c.lease_owner).distinct().where(MAILBOX.c.sync_stage == "running"))
            .scalars()
            .all()
        )
        gone = [h for h in holders if holder_gone(h)]
        rows = conn.execute(
            select(MAILBOX.c.id)
            .where(
                MAILBOX.c.status != "paused",
                or_(MAILBOX.c.next_sync_at.is_(None), MAILBOX.c.next_sync_at <= now),
                or_(MAILBOX.c.sync_stage != "running", MAILBOX.c.lease_until < now, MAILBOX.c.lease_owner.in_(gone)),
            )
            .order_by(MAILBOX.c.next_sync_at.is_(None).desc(), MAILBOX.c.next_sync_at)
        )
        return [r[0] for r in rows]


def request_sync(engine: Engine, mailbox_id: int) -> None:
    """Make a mailbox due now (new mail pushed by IDLE, an admin's 'sync now')."""
    with write_transaction(engine) as conn:
        conn.execute(update(MAILBOX).where(MAILBOX.c.id == mailbox_id).values(next_sync_at=utcnow()))


# -- context --------------------------------------------------------------------


def org_context(conn, org_id: int, box: SecretBox) -> OrgContext:
    """Everything ingest needs about an organisation; box decrypts the key of its erasure tombstones."""
    org = conn.execute(select(Organisation.__table__).where(Organisation.__table__.c.id == org_id)).one()
    users: dict[str, int] = {}
    for uid, email in conn.execute(
        select(User.__table__.c.id, User.__table__.c.email).where(User.__table__.c.org_id == org_id)
    ):
        users[email.lower()] = uid
    for uid, alias in conn.execute(
        select(UserAlias.__table__.c.user_id, UserAlias.__table__.c.address).where(
            UserAlias.__table__.c.org_id == org_id
        )
    ):
        users[alias.lower()] = uid
    return OrgContext(
        org_id=org_id,
        internal_domains=frozenset(d.lower() for d in org.internal_domains),
        users_by_address=users,
        contact_policy=org.contact_policy,
        visibility=org.visibility,
        bulk_detection=org.bulk_detection,
        free_mail=(
            frozenset(d.lower() for d in org.free_mail_domains)
            if org.free_mail_domains is not None
            else FREE_MAIL_DOMAINS
        ),
        exclusions=exclusions.load(conn, org_id, box),
        phone_region=org.phone_region,
    )


# -- one run --------------------------------------------------------------------

ConnectorFactory = Callable[[ConnectorSpec], object]


def load_mailbox(conn, box: SecretBox, mailbox_id: int):
    """(the mailbox row as a dict; the ConnectorSpec its connector is built from;
    the organisation's context; the organisation's sync settings).

    For a tenant-wide Microsoft 365 mailbox the spec holds the tenant, and its
    secret is the tenant app's credential rather than the mailbox's own; for a
    Gmail mailbox the secret is its Google Workspace's service account key."""
    mailbox = dict(conn.execute(select(MAILBOX).where(MAILBOX.c.id == mailbox_id)).mappings().one())
    org = org_context(conn, mailbox["org_id"], box)
    O = Organisation.__table__
    settings = conn.execute(
        select(O.c.backfill_days, O.c.sync_interval_seconds, O.c.calendar_past_days, O.c.calendar_future_days).where(
            O.c.id == mailbox["org_id"]
        )
    ).one()
    owner = (
        conn.execute(select(User.__table__.c.email).where(User.__table__.c.id == mailbox["owner_id"]))
        .scalar_one()
        .lower()
    )
    tenant, secret_enc = None, mailbox["secret_enc"]
    if mailbox.get("tenant_ref"):
        T = M365Tenant.__table__
        row = (
            conn.execute(select(T).where(T.c.id == mailbox["tenant_ref"], T.c.org_id == mailbox["org_id"]))
            .mappings()
            .one()
        )
        tenant = TenantSpec(row["tenant_id"], row["client_id"], row["auth_kind"], dict(row["config"] or {}))
        secret_enc = row["secret_enc"] or secret_enc
    elif mailbox["kind"] == "gmail" and (mailbox["config"] or {}).get("workspace"):
        # Read through the Workspace's service account: its key is the secret.
        W = GoogleWorkspace.__table__
        secret_enc = conn.execute(
            select(W.c.secret_enc).where(W.c.id == int(mailbox["config"]["workspace"]), W.c.org_id == mailbox["org_id"])
        ).scalar_one_or_none()
    spec = ConnectorSpec(
        kind=mailbox["kind"],
        config=dict(mailbox["config"] or {}),
        secret=box.decrypt(secret_enc) if secret_enc else "",
        mailbox_id=mailbox_id,
        owner=owner,
        window=CalendarWindow(settings.calendar_past_days, settings.calendar_future_days),
        tenant=tenant,
        want_snippet=org.visibility == "snippet",
        internal={"domains": sorted(org.internal_domains), "addresses": sorted(org.users_by_address)},
    )
    return mailbox, spec, org, settings


# Mail sources whose first import is large enough to be worth a second process.
FETCH_IN_CHILD = ("imap", "m365", "gmail")


def _needs_import(engine: Engine, mailbox_id: int) -> bool:
    with read_only(engine) as conn:
        states = (
            conn.execute(
                select(FOLDER.c.backfill_done).where(FOLDER.c.mailbox_id == mailbox_id, FOLDER.c.selected.is_(True))
            )
            .scalars()
            .all()
        )
    return not states or not all(states)


def sync_mailbox(
    engine: Engine,
    box: SecretBox,
    mailbox_id: int,
    *,
    worker: str = "cli",
    lease_seconds: int = 300,
    connector_factory: ConnectorFactory | None = None,
    fetch_in_child: bool | None = None,
    force: bool = False,
    progress: Callable[[RunReport], None] | None = None,
    now: datetime | None = None,
) -> RunReport | None:
    """Sync one mailbox once. Returns None when another worker holds it (force: take it over; see claim).

    A first import fetches in a child process (see pipeline.py) so fetching and
    ingesting use both cores; small incremental runs stay in this process.
    """
    try:
        if not claim(engine, mailbox_id, worker, lease_seconds, force=force):
            return None
    except DBAPIError as exc:
        # The database cannot take the claim (read-only, full, unreachable): nothing can be
        # recorded there either, so the report and the log carry the reason.
        report = RunReport(mailbox_id)
        if not _refused_by_the_database(report, exc):
            raise
        metrics.observe_run(report)
        return report
    started = time.monotonic()
    report = RunReport(mailbox_id)
    connector: Any = None  # a connector, or the ChildFetcher running one in a child process (duck-typed)
    retry_after: float | None = None
    importing = False  # a folder is read from its start this run (settle_followups)
    try:
        with read_only(engine) as conn:
            mailbox, spec, org, settings = load_mailbox(conn, box, mailbox_id)
    except (SecretError, DBAPIError) as exc:
        if isinstance(exc, SecretError):  # the connector's secret is unreadable (a wrong key): fail the run, release it
            report.error, report.error_kind = f"internal error: SecretError: {exc}", RunError.INTERNAL
        elif not _refused_by_the_database(report, exc):
            raise
        _unless_the_database_refuses(report, lambda: _finish(engine, mailbox_id, worker, report, 0, retry_after=None))
        metrics.observe_run(report)
        return report
    owner_email = spec.owner
    # The follow-up queue's context, read once for the run rather than in every batch (sync/followups.py: RunCache).
    org = replace(org, followups=followups.RunCache())
    since = (now or datetime.now(timezone.utc)) - timedelta(days=settings.backfill_days)
    try:
        if mailbox["status"] in (MailboxStatus.PENDING, MailboxStatus.FAILED) and mailbox["last_success_at"] is None:
            _set(engine, mailbox_id, worker, status=MailboxStatus.IMPORTING)
        if fetch_in_child is None:
            fetch_in_child = (
                connector_factory is None and mailbox["kind"] in FETCH_IN_CHILD and _needs_import(engine, mailbox_id)
            )
        if fetch_in_child:
            from sync.pipeline import ChildFetcher

            connector = ChildFetcher(spec, silence_limit=lease_seconds)
        else:
            connector = (connector_factory or build_connector)(spec)
        folders = connector.list_folders()
        _drop_folders_left_out(engine, mailbox, folders, worker)
        states = _upsert_folders(engine, mailbox, folders)
        # A first import, a folder read again, or one listed for the first time (a new folder or label).
        importing = any(state["selected"] and not state["backfill_done"] for _, state in states)
        work = [(folder, state["cursor"]) for folder, state in states if state["selected"]]
        state_by_name = {folder.name: (folder, state) for folder, state in states}
        if fetch_in_child:
            # Read ahead only where the writer waits on a server (pipeline._ReadAhead says why).
            stream = connector.run(work, since, read_ahead=2 if engine.dialect.name == "postgresql" else 0)
        else:
            stream = events(connector, work, since)
        broken: set[str] = set()
        for event in stream:
            name = event.folder
            folder, state = state_by_name[name]
            if name in broken:
                continue
            if isinstance(event, FolderBatch):
                importing = importing or event.batch.reset  # the folder is read again from its start
                mbx = MailboxContext(mailbox_id, state["id"], mailbox["owner_id"], owner_email, folder.role)
                try:
                    org = _commit_batch(engine, box, org, mbx, worker, lease_seconds, folder, event.batch, report)
                except LeaseLost:
                    raise
                except Exception as exc:  # noqa: BLE001 - one broken folder never stops the others
                    log.exception("folder %s of mailbox %s failed", name, mailbox_id)
                    broken.add(name)
                    _folder_failed(engine, state["id"], _describe(exc), report, name)
                if progress:
                    progress(report)
            elif isinstance(event, FolderDone):
                _folder_ok(engine, state["id"])
            elif isinstance(event, FolderFailed):
                broken.add(name)
                _folder_failed(engine, state["id"], event.reason, report, name)
        report.ok = True
    except LeaseLost:
        report.error = "another worker took over this mailbox, or it is to be read again from the beginning"
        report.error_kind = RunError.LEASE
    except ConnectorError as exc:
        # What happened, in one sentence; what fixes it is kept as values (kind and fix
        # code) and worded once beside it (app/services/mailboxes.py: fix_for).
        report.error, report.error_kind, report.error_fix = _plain(str(exc)), exc.kind, exc.fix
        retry_after = exc.retry_after
    except Exception as exc:  # noqa: BLE001 - a run must always release its claim
        log.exception("sync of mailbox %s failed", mailbox_id)
        if database_trouble(exc):  # the database's own trouble, not a fault in Threadline
            report.error, report.error_kind = _describe(exc), RunError.DATABASE
        else:
            report.error, report.error_kind = f"internal error: {_describe(exc)}", RunError.INTERNAL
    finally:
        _unless_the_database_refuses(report, lambda: _keep_rotated_secret(engine, box, mailbox, connector))
        close_quietly(connector)
    report.seconds = time.monotonic() - started
    if report.error_kind != RunError.LEASE:
        _unless_the_database_refuses(
            report,
            lambda: _finish(
                engine, mailbox_id, worker, report, settings.sync_interval_seconds, retry_after=retry_after
            ),
        )
    metrics.observe_run(report)
    if report.new_interactions:
        refresh_planner_statistics(engine, imported=importing)
        if importing:
            settle_followups(engine, mailbox["org_id"])
    return report


def _unless_the_database_refuses(report: RunReport, write: Callable[[], None]) -> None:
    """Run a write of the run's bookkeeping (its outcome, a rotated secret). When the database
    itself refuses it (read-only, full, gone), the report and the log say so instead: the lease
    then stays until it expires, and a rotated secret lives only as long as this process."""
    try:
        write()
    except DBAPIError as exc:
        if not _refused_by_the_database(report, exc):
            raise


def _refused_by_the_database(report: RunReport, exc: DBAPIError) -> bool:
    """Whether exc is the database's own trouble (app/dberrors.py); if so the report (failed,
    kind database) and the log say what it is."""
    if not database_trouble(exc):
        return False
    log.error("sync of mailbox %s: %s", report.mailbox_id, _describe(exc))
    report.ok = False
    report.error, report.error_kind = _describe(exc), RunError.DATABASE
    return True


def _describe(exc: BaseException) -> str:
    """An unexpected failure in words an admin sees. A database error's own text
    carries the SQL statement and its parameters (addresses, subjects): only the
    log gets those."""
    if is_database_error(exc):  # wrapped by SQLAlchemy, or raw from a driver's cursor (app/db.py's bulk paths)
        driver_error = type(getattr(exc, "orig", None) or exc).__name__
        trouble = database_trouble(exc)
        said = f": {trouble} ({driver_error})" if trouble else f" ({driver_error})"
        return f"database error{said}; the next run tries again"
    return f"{type(exc).__name__}: {exc}"


def _keep_rotated_secret(engine: Engine, box: SecretBox, mailbox: dict, connector) -> None:
    """Providers rotate refresh tokens; a connector exposes the new one as
    `updated_secret` and it is stored (encrypted) whatever the run's outcome."""
    fresh = getattr(connector, "updated_secret", None)
    if not fresh or mailbox.get("tenant_ref"):
        return
    with write_transaction(engine) as conn:
        conn.execute(update(MAILBOX).where(MAILBOX.c.id == mailbox["id"]).values(secret_enc=box.encrypt(fresh)))


def settle_followups(engine: Engine, org_id: int) -> None:
    """After an import, the follow-up queue's sweep (sync/followups.py), which the scheduler
    otherwise runs every few minutes. An import reads mail newest first and folder after
    folder, so a customer's answer in another thread is often stored before the rep's email
    it answers: the ingest cannot close a row that does not exist yet, and that email's row
    is written open. Measured on a 100,000-message first import: 1,348 "waiting on them"
    rows open that the sweep closes, against 122 really open, so a rep who opened the queue
    right after an import (or after `threadline sync --once`, where no scheduler runs) saw
    eleven false rows for every true one. 120-180 ms at that size, once per importing run."""
    try:
        with write_transaction(engine) as conn:
            followups.sweep(conn, org_id)
    except Exception:  # noqa: BLE001 - the scheduler's sweep does it again within minutes
        log.warning("could not settle the follow-up queue of organisation %s", org_id, exc_info=True)


# The tables an import fills, analysed on PostgreSQL after it (refresh_planner_statistics).
_IMPORTED_TABLES = (
    "interaction",
    "participant",
    "interactionsource",
    "followup",
    "contact",
    "contactaddress",
    "company",
)


def refresh_planner_statistics(engine: Engine, *, imported: bool = False) -> None:
    """SQLite plans with table statistics only after ANALYZE; without them busy
    lookups pick poor indexes (4x slower in bench/api_lookup.py). With
    analysis_limit, ANALYZE samples a few hundred rows per index: milliseconds.

    PostgreSQL's autovacuum keeps its statistics, but only a while after a table grew: right
    after an import (`imported`) they still describe the tables before it. Measured on a
    20,000-message first import: the follow-up sweep that ends the run took 7.8 s on those
    statistics and 0.09 s after ANALYZE of the whole database (0.21 s, which samples a bounded
    number of rows per table however large it is). Runs that brought a few emails leave it to
    autovacuum."""
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA analysis_limit=400")
                conn.exec_driver_sql("ANALYZE")
            elif imported:
                conn.exec_driver_sql(f"ANALYZE {', '.join(_IMPORTED_TABLES)}")
    except Exception:  # noqa: BLE001 - statistics are an optimisation, never a failure
        log.warning("could not refresh the database's statistics", exc_info=True)


def _upsert_folders(engine: Engine, mailbox, folders: list[Folder]) -> list[tuple[Folder, dict]]:
    with write_transaction(engine) as conn:
        insert_ignore(
            conn,
            FOLDER,
            [
                {
                    "org_id": mailbox["org_id"],
                    "mailbox_id": mailbox["id"],
                    "name": f.name,
                    "role": f.role,
                    "selected": f.role != "skip",
                    "cursor": {},
                    "backfill_done": False,
                    "messages": 0,
                    "status": "ok",
                }
                for f in folders
            ],
        )
        rows = conn.execute(select(FOLDER).where(FOLDER.c.mailbox_id == mailbox["id"])).mappings().all()
        # A folder listed with another role than its row's (insert_ignore keeps the first one): the
        # listing's role is what a first import would give it. One skipped for a while (a \Junk flag
        # set and taken off again; _drop_folders_left_out turned its row into a skipped one) is read
        # again: kept unselected, its mail never reached the timeline.
        listed = {f.name: f.role for f in folders}
        changed = [
            r for r in rows if r["name"] in listed and r["role"] != listed[r["name"]] and listed[r["name"]] != "skip"
        ]
        for r in changed:
            values: dict[str, Any] = {"role": listed[r["name"]]}
            if r["role"] == "skip":
                values["selected"] = True
            conn.execute(update(FOLDER).where(FOLDER.c.id == r["id"]).values(**values))
        if changed:
            rows = conn.execute(select(FOLDER).where(FOLDER.c.mailbox_id == mailbox["id"])).mappings().all()
    by_name = {r["name"]: dict(r) for r in rows}
    pairs = [(f, by_name[f.name]) for f in folders if f.name in by_name]
    pairs.sort(key=lambda p: (ROLE_ORDER.get(p[0].role, 9), p[0].name))
    return pairs


def _left_out(stored: list, folders: list[Folder]) -> list:
    """The stored mail folders a first import of this listing would not have: gone from the
    server (renamed, deleted), or now skipped (another user's or a public namespace, a search
    folder: rules added after the folder was first stored, which insert_ignore never updates)."""
    listed = {f.name: f.role for f in folders}
    return [
        r
        for r in stored
        if r["role"] != "calendar"
        and (r["name"] not in listed or (listed[r["name"]] == "skip" and r["role"] != "skip"))
    ]


def _drop_folders_left_out(engine: Engine, mailbox, folders: list[Folder], worker: str) -> None:
    """Folders a first import of the source as it is now would not read (_left_out) leave the
    mailbox: their copies go (a renamed folder's messages come back as copies of its new name,
    the same interactions), with their share of the mailbox's counters, their unreadable and
    skipped lists, and meetings no copy holds any more. Emails stay on the timeline, as when a
    message is expunged. Kept, such a folder's row held the mailbox at "importing" for good when
    its first read had not finished, its copies were counted twice after a rename, and a
    colleague's shared folder went on being read. Runs before the listing is stored, so a folder
    now skipped comes back as a skipped row.

    Only on the word of a listing that can be whole: one with the mail source's INBOX (an IMAP
    server always has it; Graph's resolves by its well-known name) and shorter than
    MAX_LISTED_FOLDERS. Calendars are never dropped here (a CalDAV listing cut short would take
    their meetings)."""
    mail = [f for f in folders if f.role != "calendar"]
    if not any(f.role == "inbox" for f in mail) or len(mail) >= MAX_LISTED_FOLDERS:
        return
    with read_only(engine) as conn:  # nearly always nothing is left out: no write lock for that
        stored = (
            conn.execute(select(FOLDER.c.name, FOLDER.c.role).where(FOLDER.c.mailbox_id == mailbox["id"]))
            .mappings()
            .all()
        )
    if not _left_out(list(stored), folders):
        return
    with write_transaction(engine) as conn:
        rows = conn.execute(select(FOLDER).where(FOLDER.c.mailbox_id == mailbox["id"])).mappings()
        gone = [dict(r) for r in _left_out(list(rows), folders)]
        if not gone:
            return
        held = conn.execute(
            update(MAILBOX)
            .where(MAILBOX.c.id == mailbox["id"], MAILBOX.c.lease_owner == worker)
            .values(lease_owner=worker)
            .returning(MAILBOX.c.skipped)
        ).first()
        if held is None:
            raise LeaseLost()
        skipped = held[0] or {}
        S = InteractionSource.__table__
        ids = [f["id"] for f in gone]
        affected = set(conn.execute(select(S.c.interaction_id).where(S.c.folder_id.in_(ids))).scalars())
        copies.delete(conn, S.c.mailbox_id == mailbox["id"], S.c.folder_id.in_(ids))
        for f in gone:
            log.info(
                "mailbox %s: folder %r is no longer read (gone from the server, or skipped); its copies are dropped",
                mailbox["id"],
                f["name"],
            )
            skipped = _forget_folder_counts(conn, mailbox["id"], f["id"], f["name"], skipped)
        conn.execute(delete(FOLDER).where(FOLDER.c.id.in_(ids)))
        drop_meetings_without_copies(conn, mailbox["org_id"], affected)


def _conflict(exc: DBAPIError | SeriesChanged) -> bool:
    """Whether a failed write lost a race with another writer and succeeds if tried again:
    a key written at the same moment, a series' newest copy changed meanwhile, a deadlock or
    serialization failure, a busy SQLite."""
    if isinstance(exc, (IntegrityError, SeriesChanged)):
        return True
    return getattr(exc.orig, "pgcode", None) in ("40001", "40P01") or "locked" in str(exc.orig).lower()


def _commit_batch(
    engine: Engine,
    box: SecretBox,
    org: OrgContext,
    mbx: MailboxContext,
    worker: str,
    lease_seconds: int,
    folder: Folder,
    batch: Batch,
    report: RunReport,
) -> OrgContext:
    """Write one batch; returns the organisation's context for the next (its exclusions read
    again when they changed since the run began)."""
    for attempt in range(COMMIT_ATTEMPTS):
        try:
            with write_transaction(engine) as conn:
                result, org = _write_batch(conn, org, mbx, worker, lease_seconds, folder, batch, box)
            if org.followups is not None:  # committed: what the batch wrote to the queue stands
                org.followups.confirm()
            break
        except (IntegrityError, OperationalError, SeriesChanged) as exc:
            # Ingest's locks keep writers of one organisation from colliding; this is
            # the safety net. A collision rolls the whole batch back, so retrying is
            # safe; the pause (with jitter, so two losers do not meet again) lets the
            # other writer commit first.
            if attempt == COMMIT_ATTEMPTS - 1 or not _conflict(exc):
                raise
            log.warning(
                "mailbox %s, folder %s: the batch met another writer (%s); trying again",
                mbx.mailbox_id,
                folder.name,
                type(getattr(exc, "orig", exc)).__name__,
            )
            time.sleep(min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.5))
    report.imported += result.imported
    report.new_interactions += result.new_interactions
    report.skipped += sum(result.skipped.values())
    report.bad += len(batch.bad)
    return org


def _write_batch(
    conn, org, mbx, worker, lease_seconds, folder, batch, box: SecretBox | None = None
) -> tuple[IngestResult, OrgContext]:
    now = utcnow()
    exclusions.hold_to_apply(conn, org.org_id)  # before the stamp below is read (exclusions.py says why)
    # Fencing: write only while we still hold the lease. The same statement hands back the
    # skipped counts the batch adds to (the mailbox's and its folder's), which used to take a
    # read of their own each: on PostgreSQL every statement is a round trip the ingest waits
    # for (docs/performance.md section 6). The UPDATE locks the mailbox row until this
    # transaction ends, and only the lease holder writes these counts (another worker's
    # writes wait behind its own fencing UPDATE on that row), so they cannot change
    # underneath; on SQLite the transaction holds the write lock from BEGIN anyway.
    held = conn.execute(
        update(MAILBOX)
        .where(MAILBOX.c.id == mbx.mailbox_id, MAILBOX.c.lease_owner == worker)
        .values(lease_until=now + timedelta(seconds=lease_seconds))
        .returning(
            MAILBOX.c.skipped,
            select(FOLDER.c.skipped).where(FOLDER.c.id == mbx.folder_id).scalar_subquery(),
            select(FOLDER.c.removed).where(FOLDER.c.id == mbx.folder_id).scalar_subquery(),
            select(FOLDER.c.relisted).where(FOLDER.c.id == mbx.folder_id).scalar_subquery(),
            *exclusions.stamp_of(MAILBOX.c.org_id),
        )
    ).first()
    if held is None:
        raise LeaseLost()
    mailbox_skipped, folder_skipped, folder_removed = held[0] or {}, held[1] or {}, held[2] or 0
    # meetings the folder held when it was last read again from scratch, its listing not ended yet
    relisted: set[int] = set(held[3] or ())
    if box is not None and tuple(held[4:]) != org.exclusions.stamp:
        # A "never log" rule or an erasure was made since the run read them: a run lasts as long
        # as a first import does, and an erased person must not come back in its later batches.
        # Read in this transaction, what this batch writes is checked against what it sees.
        org = replace(org, exclusions=exclusions.load(conn, org.org_id, box))
    changes: Counter = Counter()  # folder id -> copies added minus copies removed by this batch
    S = InteractionSource.__table__
    if batch.reset:
        # The folder's ids mean nothing now (UIDVALIDITY changed, a delta state
        # expired). The interactions stay; the new listing re-links every copy by
        # its key, and meetings it no longer lists are removed when it is done (the
        # candidates kept with the folder meanwhile, should the listing span runs).
        # Copies with a provider id (Gmail's X-GM-MSGID) are set aside instead of
        # deleted: the new listing recognises them by it and moves them to their new
        # ids, and those it did not list go when it ends (below).
        # A calendar's listing covers its window: the meetings behind it are history it will not
        # list again, and keep their copies (Batch.relists_from). An invitation's meeting copies in
        # mail (`uid#ics…`) stay as they are, as when their email is expunged: the new listing reads
        # the backfill window by the emails' dates, and an older invitation is not read again.
        I = Interaction.__table__
        listed_again = [
            S.c.mailbox_id == mbx.mailbox_id,
            S.c.folder_id == mbx.folder_id,
            S.c.remote_id.not_like(f"%{INVITATION_PART}%"),
        ]
        if batch.relists_from is not None:
            listed_again.append(~copies.of_meeting_before(batch.relists_from))
        relisted.update(
            conn.execute(
                select(S.c.interaction_id)
                .join(I, I.c.id == S.c.interaction_id)
                .where(*listed_again, I.c.kind == "meeting")
            ).scalars()
        )
        changes.subtract(copies.delete(conn, *listed_again, S.c.provider_id.is_(None)))
        changes.subtract(copies.set_aside(conn, mbx.mailbox_id, mbx.folder_id))
        mailbox_skipped = _forget_folder_counts(conn, mbx.mailbox_id, mbx.folder_id, folder.name, mailbox_skipped)
        folder_skipped, folder_removed = {}, 0
    mail = [r for r in batch.records if isinstance(r, MessageRecord)]
    meetings = [r for r in batch.records if isinstance(r, MeetingRecord)]
    result = ingest(conn, org, mbx, mail)
    if meetings:
        more = ingest_meetings(conn, org, mbx, meetings)
        result.imported += more.imported
        result.new_interactions += more.new_interactions
        result.new_contacts += more.new_contacts
        result.skipped_items += more.skipped_items
        result.copies.update(more.copies)
    changes.update(result.copies)
    gone: Counter = Counter()  # skipped items that left the server, by reason
    removed = list(batch.removed)
    if batch.listed is not None:  # the source listed what the folder holds: the rest left
        removed += copies.unlisted(conn, mbx.mailbox_id, mbx.folder_id, batch.listed)
        removed += unlisted_skipped(conn, mbx.mailbox_id, folder.name, batch.listed)
    if not batch.first_reading:
        # An item listed again (a changed message in a delta round, a changed event) ends as a clean
        # sync would have it. Stored before and skipped or unreadable now: its copy goes (a meeting
        # with its last copy leaves the timeline; an email stays, the company keeps what it learnt).
        # Not for a warning about a record read (a calendar's attendees cut): it is stored.
        read = {r.remote_id for r in batch.records}
        removed += [remote_id for remote_id, _ in result.skipped_items]
        removed += [b.remote_id for b in batch.bad if b.remote_id not in read]
    if removed:
        changes.subtract(remove_copies(conn, org.org_id, mbx, removed))
    # What left the server takes its skipped or unreadable row and count with it. So does every
    # item listed again: the rows it has go, and this batch records again what still applies, so
    # an item that went from skipped to stored, unreadable to skipped, skipped to unreadable (or
    # stays as it was) is counted once, under what it is now. A folder that has counted nothing
    # skipped or removed holds no such row, and an IMAP batch's UIDs were never read before (the
    # look costs 0.7 ms a batch on SQLite).
    forgotten = removed
    if (folder_skipped or folder_removed) and not batch.first_reading:
        forgotten = removed + [r.remote_id for r in batch.records]
    if forgotten:
        gone = forget_skipped(conn, mbx.mailbox_id, folder.name, forgotten)
    if batch.backfill_done:
        # The folder's listing has ended: copies set aside at a reset that it did not re-link
        # left the server meanwhile (none unless the folder was read again from scratch), and
        # so did the meetings it held then that no copy holds now: they leave the timeline, as
        # they would have had their deletion been seen.
        if batch.relists_from is not None:  # what the listing did not cover is not its to drop
            copies.restore_set_aside_meetings(conn, mbx.mailbox_id, mbx.folder_id, batch.relists_from)
        changes.subtract(copies.drop_set_aside(conn, mbx.mailbox_id, mbx.folder_id))
        if relisted:
            drop_meetings_without_copies(conn, org.org_id, relisted)
            relisted = set()
    unreadable = record_unreadable(conn, org.org_id, mbx.mailbox_id, folder.name, batch.bad, now)
    # what the batch skipped that is new, by reason (an item already kept, or a meeting's part, counts nothing)
    result.skipped = record_skipped_items(conn, org.org_id, mbx.mailbox_id, folder.name, result.skipped_items, now)
    skipped_now = dict(result.skipped)
    if unreadable:
        skipped_now["unreadable"] = skipped_now.get("unreadable", 0) + unreadable
    # The folder's bookkeeping in one UPDATE: cursor (committed with the rows it covers),
    # its count of copies and its skipped counts; then the other folders whose copies this
    # batch changed (a re-listing, removals), and the mailbox's totals in one more.
    values: dict[str, Any] = {"cursor": batch.cursor, "last_synced_at": now}
    if batch.backfill_done:
        values["backfill_done"] = True
    if batch.reset or batch.backfill_done:
        values["relisted"] = sorted(relisted)
    mine = changes.pop(mbx.folder_id, 0)
    if mine:
        values["messages"] = FOLDER.c.messages + mine
    taken_back = gone.pop(REMOVED_BY_ADMIN, 0)  # an admin's removals that left the server (or came back)
    if taken_back:
        values["removed"] = FOLDER.c.removed - taken_back
    skipped_change = Counter(skipped_now)
    skipped_change.subtract(gone)  # what this batch skipped, less what left the server
    if skipped_change:
        values["skipped"] = _add_counts(folder_skipped, skipped_change)
    conn.execute(update(FOLDER).where(FOLDER.c.id == mbx.folder_id).values(**values))
    copies.count_changed(conn, changes)
    totals: dict[str, Any] = {}
    if skipped_change:
        totals["skipped"] = _add_counts(mailbox_skipped, skipped_change)
    if result.imported:
        totals["messages_imported"] = MAILBOX.c.messages_imported + result.imported
    if totals:
        conn.execute(update(MAILBOX).where(MAILBOX.c.id == mbx.mailbox_id).values(**totals))
    return result, org


def _add_counts(counts: dict, more: dict, sign: int = 1) -> dict:
    merged = dict(counts)
    for reason, n in more.items():
        merged[reason] = merged.get(reason, 0) + sign * n
    return {reason: n for reason, n in merged.items() if n > 0}


def _forget_folder_counts(conn, mailbox_id: int, folder_id: int, folder_name: str, mailbox_skipped: dict) -> dict:
    """A folder read again from scratch (new ids) takes back from the mailbox's
    counters what it had counted, and its unreadable messages (listed under the
    old ids) go: the new listing counts and lists them again. Returns the mailbox's
    skipped counts as they are now (given: as they were)."""
    messages, skipped = conn.execute(select(FOLDER.c.messages, FOLDER.c.skipped).where(FOLDER.c.id == folder_id)).one()
    current = _add_counts(mailbox_skipped, skipped or {}, -1)
    conn.execute(
        update(MAILBOX)
        .where(MAILBOX.c.id == mailbox_id)
        .values(messages_imported=MAILBOX.c.messages_imported - (messages or 0), skipped=current)
    )
    conn.execute(update(FOLDER).where(FOLDER.c.id == folder_id).values(skipped={}, removed=0))
    forget_skipped_items(conn, mailbox_id, folder_name)
    conn.execute(
        delete(SyncIssue.__table__).where(
            SyncIssue.__table__.c.mailbox_id == mailbox_id, SyncIssue.__table__.c.folder == folder_name
        )
    )
    return current


def _folder_ok(engine: Engine, folder_id: int) -> None:
    with write_transaction(engine) as conn:
        conn.execute(
            update(FOLDER).where(FOLDER.c.id == folder_id, FOLDER.c.status != "ok").values(status="ok", last_error=None)
        )


def _folder_failed(engine: Engine, folder_id: int, reason: str, report: RunReport, name: str) -> None:
    report.folders_failed.append(f"{name}: {reason}")
    with write_transaction(engine) as conn:
        conn.execute(update(FOLDER).where(FOLDER.c.id == folder_id).values(status="error", last_error=reason[:500]))


def _set(engine: Engine, mailbox_id: int, worker: str, **values) -> None:
    with write_transaction(engine) as conn:
        conn.execute(
            update(MAILBOX).where(MAILBOX.c.id == mailbox_id, MAILBOX.c.lease_owner == worker).values(**values)
        )


def backoff_seconds(failures: int) -> int:
    return min(MAX_BACKOFF, 30 * 2 ** max(0, failures - 1))


def _finish(
    engine: Engine, mailbox_id: int, worker: str, report: RunReport, interval: int, retry_after: float | None
) -> None:
    now = utcnow()
    with write_transaction(engine) as conn:
        row = conn.execute(select(MAILBOX.c.failure_count, MAILBOX.c.status).where(MAILBOX.c.id == mailbox_id)).one()
        values: dict = {"sync_stage": SyncStage.IDLE, "lease_owner": None, "lease_until": None}
        if report.ok:
            all_done = (
                conn.execute(
                    select(FOLDER.c.id).where(
                        FOLDER.c.mailbox_id == mailbox_id,
                        FOLDER.c.selected.is_(True),
                        FOLDER.c.backfill_done.is_(False),
                    )
                ).first()
                is None
            )
            folder_note = "; ".join(report.folders_failed) or None
            values.update(
                status=MailboxStatus.ACTIVE if all_done else MailboxStatus.IMPORTING,
                last_success_at=now,
                failure_count=0,
                next_sync_at=now + timedelta(seconds=interval),
                last_error=(f"some folders could not be synced: {folder_note}" if folder_note else None),
                last_error_kind=(RunError.FOLDER if folder_note else None),
                last_error_fix=None,
                last_error_at=(now if folder_note else None),
            )
        else:
            failures = row.failure_count + 1
            wait = retry_after if retry_after else backoff_seconds(failures)
            values.update(
                status=MailboxStatus.FAILED,
                failure_count=failures,
                last_error=report.error or "unknown error",
                last_error_kind=report.error_kind,
                last_error_fix=report.error_fix,
                last_error_at=now,
                next_sync_at=now + timedelta(seconds=wait),
            )
        if row.status == MailboxStatus.PAUSED:
            values.pop("status", None)
        conn.execute(
            update(MAILBOX)
            # Only while this run holds the lease: one another worker took over, or a reset ended
            # (app/services/mailboxes.py: reset_folders), is no longer this run's to finish.
            .where(MAILBOX.c.id == mailbox_id, MAILBOX.c.lease_owner == worker)
            .values(**values)
        )


def _plain(message: str) -> str:
    """An error as one sentence in plain words (what fixes it is shown beside it, once)."""
    msg = (message or "unknown error").strip()
    return msg if msg.endswith((".", "?", "!")) else f"{msg}."
