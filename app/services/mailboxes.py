"""Mailboxes: adding one, describing its health, and the admin's operations on it
(pause, resume, re-sync, sync now, new password, remove)."""

from __future__ import annotations

import threading
from collections import Counter

from sqlmodel import Session, select

from app import netguard
from app.models import FolderState, Mailbox, Organisation, SkippedItem, SyncIssue, SyncStage, User
from app.services.actor import Actor, changing
from app.services.errors import Conflict, Invalid, NotFound
from app.services.orgs import clean_address, org_settings, user_id_by_email

SECURITY = ("tls", "starttls", "none")


def _check_imap_settings(host: str, port: int, security: str) -> None:
    if security not in SECURITY:
        raise Invalid(f"security must be one of {', '.join(SECURITY)}", field="security")
    if not (host or "").strip():
        raise Invalid("the IMAP host is required", field="host")
    if not 0 < int(port) < 65536:
        raise Invalid(f"not a port number: {port}", field="port")
    refused = netguard.refusal(host.strip(), int(port))
    if refused:
        raise Invalid(refused, field="host")


def owner_id(conn, org_id: int, email: str, field: str = "owner") -> int:
    """The id of the organisation's user with this address (a mailbox's owner)."""
    try:
        return user_id_by_email(conn, org_id, email, field)
    except NotFound as exc:  # a value in the request, not the resource addressed: the request is invalid
        raise Invalid(exc.reason, field=field) from None


def insert_mailbox(conn, **fields) -> int:
    """A Mailbox row written in the caller's transaction, with the model's defaults."""
    with Session(bind=conn) as s:
        mailbox = Mailbox(**fields)
        s.add(mailbox)
        s.flush()
        return mailbox.id


def add_imap(
    rt,
    actor: Actor,
    *,
    owner: str,
    host: str,
    port: int,
    security: str,
    username: str,
    password: str,
    check: bool = False,
) -> dict:
    """An IMAP mailbox for a rep; the password is stored encrypted, never shown again.
    With `check`, connect and log in first and store nothing if any step fails (Invalid,
    naming the step, with every step's outcome in its facts)."""
    _check_imap_settings(host, port, security)
    if not (username or "").strip():
        raise Invalid("the IMAP username is required", field="username")
    if check:
        with changing(rt.engine, actor) as conn:  # refuse a wrong owner before reaching the server
            owner_id(conn, actor.org_id, owner)
        # Outside any transaction: on SQLite each holds the write lock, which must not wait on a server.
        refuse_unless_reachable(test_imap_connection(host, port, security, username.strip(), password))
    with changing(rt.engine, actor) as conn:
        uid = owner_id(conn, actor.org_id, owner)
        config = {"host": host.strip(), "port": int(port), "security": security, "username": username.strip()}
        mid = insert_mailbox(
            conn, org_id=actor.org_id, owner_id=uid, kind="imap", config=config, secret_enc=rt.box.encrypt(password)
        )
        audit.record(
            conn,
            actor.org_id,
            actor.user_id,
            "mailbox.add",
            f"mailbox {mid} (imap {config['username']})",
            {"host": config["host"], "owner": owner},
        )
    with Session(rt.engine) as s:
        return describe(s, s.get(Mailbox, mid))


def get_mailbox(session: Session, org_id: int, mailbox_id: int) -> Mailbox:
    mailbox = session.get(Mailbox, mailbox_id)
    if mailbox is None or mailbox.org_id != org_id:
        raise NotFound(f"no mailbox {mailbox_id}")
    return mailbox


def describe(session: Session, mailbox: Mailbox, *, with_folders: bool = False) -> dict:
    """What admins see: status and stage kept apart, errors in plain words, counters."""
    owner = session.get(User, mailbox.owner_id)
    out = {
        "id": mailbox.id,
        "kind": mailbox.kind,
        "owner": owner.email if owner else None,
        "server": f"{mailbox.config.get('host')}:{mailbox.config.get('port')}" if mailbox.kind == "imap" else None,
        "username": mailbox.config.get("username"),
        "status": mailbox.status,
        "stage": mailbox.sync_stage,
        "healthy": False,
        "last_success_at": mailbox.last_success_at,
        "last_attempt_at": mailbox.last_attempt_at,
        "next_sync_at": mailbox.next_sync_at,
        "last_error": mailbox.last_error,
        "last_error_kind": mailbox.last_error_kind,
        "fix": fix_for(mailbox.last_error_kind, mailbox.kind, mailbox.last_error_fix),
        "skipped": dict(mailbox.skipped or {}),
    }
    # a mailbox whose numbers do not add up, or whose contacts' summaries disagree with a
    # recount, is never shown healthy (app/services/reconcile.py)
    out.update(reconcile.mailbox_state(session.connection(), mailbox.org_id, [mailbox.id])[mailbox.id])
    out["messages_imported"] = out.pop("stored")
    out["healthy"] = mailbox.status == "active" and not mailbox.last_error and not out["attention"]
    out["fix"] = out["fix"] or out["attention_fix"]
    if with_folders:
        folders = session.exec(
            select(FolderState).where(FolderState.mailbox_id == mailbox.id).order_by(FolderState.name)
        ).all()
        stored = reconcile.copies_by_folder(session.connection(), [mailbox.id])
        out["folders"] = [
            {
                "name": f.name,
                "role": f.role,
                "selected": f.selected,
                "status": f.status,
                "last_error": f.last_error,
                "messages": f.messages,
                "backfill_done": f.backfill_done,
                "cursor": f.cursor,
                "last_synced_at": f.last_synced_at,
                **reconcile.folder_numbers({**f.model_dump(), "copies": stored.get(f.id, 0)}),
            }
            for f in folders
        ]
        issues = session.exec(
            select(SyncIssue).where(SyncIssue.mailbox_id == mailbox.id).order_by(SyncIssue.id.desc()).limit(50)
        ).all()
        out["unreadable"] = [{"folder": i.folder, "remote_id": i.remote_id, "reason": i.reason} for i in issues]
        skipped = session.exec(
            select(SkippedItem).where(SkippedItem.mailbox_id == mailbox.id).order_by(SkippedItem.id.desc()).limit(50)
        ).all()
        out["skipped_items"] = [
            {"folder": i.folder, "remote_id": i.remote_id, "reason": i.reason, "skipped_at": i.created_at}
            for i in skipped
        ]
    return out


# -- admin operations (console, API and CLI share these) -------------------------

import socket  # noqa: E402
import ssl  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402

from sqlalchemy import (  # noqa: E402
    delete as _delete,
    exists as _exists,
    select as _select,
    update as _update,  # noqa: E402
)
from sqlalchemy.engine import Connection  # noqa: E402

from app.models import GraphSubscription, InteractionSource  # noqa: E402
from app.models.base import utcnow  # noqa: E402
from app.services import audit, reconcile  # noqa: E402
from connectors import caldav  # noqa: E402
from connectors.base import CalendarWindow  # noqa: E402
from sync import copies  # noqa: E402
from sync.fixes import RunError, fix_text  # noqa: E402

MB, FS, SRC = Mailbox.__table__, FolderState.__table__, InteractionSource.__table__
ISSUE, GSUB, SKIPPED = SyncIssue.__table__, GraphSubscription.__table__, SkippedItem.__table__


def fix_for(kind: str | None, source: str | None = None, fix: str | None = None) -> str | None:
    """What an admin does about a mailbox's last error: chosen by its fix code when the connector
    gave one, else by its kind and source (the table is sync/fixes.py); None when there is no error."""
    return fix_text(kind, source, fix)


def _aware(value):
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value


def health_label(row: dict, interval: int, now: datetime | None = None) -> str:
    """healthy | failing | attention | paused | importing | pending | behind: a failing mailbox, or one
    whose numbers do not add up (attention), is never healthy."""
    now = now or utcnow()
    if row["status"] == "paused":
        return "paused"
    if row["status"] == "failed" or row.get("last_error") or row.get("folder_errors"):
        return "failing"
    if row.get("attention"):  # messages missing or summaries wrong, though the runs succeed
        return "attention"
    if row["status"] in ("pending", "importing"):
        return row["status"]
    last = _aware(row.get("last_success_at"))
    if last is None:
        return "pending"
    if (now - last).total_seconds() > max(3 * interval, 900):
        return "behind"
    return "healthy"


def human_lag(seconds: float | None) -> str:
    if seconds is None:
        return "never synced"
    seconds = int(max(0, seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def health(session: Session, org_id: int, mailbox_id: int | None = None) -> list[dict]:
    """One row per mailbox for the sync health table."""
    org = session.get(Organisation, org_id)
    interval = org.sync_interval_seconds if org else 300
    query = select(Mailbox).where(Mailbox.org_id == org_id).order_by(Mailbox.id)
    if mailbox_id is not None:
        query = query.where(Mailbox.id == mailbox_id)
    now = utcnow()
    rows = []
    for mb in session.exec(query).all():
        row = describe(session, mb)
        bad_folders = session.exec(
            select(FolderState.name).where(FolderState.mailbox_id == mb.id, FolderState.status == "error")
        ).all()
        row["folder_errors"] = list(bad_folders)
        last = _aware(mb.last_success_at)
        row["lag_seconds"] = (now - last).total_seconds() if last else None
        row["lag"] = human_lag(row["lag_seconds"])
        row["health"] = health_label(row, interval, now)
        row["healthy"] = row["health"] == "healthy"
        kind = mb.last_error_kind or (RunError.FOLDER if bad_folders else None)
        row["fix"] = fix_for(kind, mb.kind, mb.last_error_fix) or row["attention_fix"]
        rows.append(row)
    return rows


def reset_folders(conn: Connection, org_id: int, mailbox_ids: list[int]) -> None:
    """Forget where each folder's sync stood, so the next run reads everything again.
    Interactions and copies stay (keyed rows: re-reading duplicates nothing), and so
    does each folder's count of its copies; the mailbox's counters restart."""
    if not mailbox_ids:
        return
    # The mailbox row first, as a batch locks it first (its fencing), then the folders: two writers
    # taking them in one order never wait for each other in a cycle (PostgreSQL).
    # A run going on now would write its cursors back over these at its next batch (a rule removed
    # or a re-read asked for mid-import would be lost): its lease ends here, so its next batch's
    # fencing stops it (sync/engine.py: LeaseLost), and the next run starts from the beginning.
    conn.execute(
        _update(MB)
        .where(MB.c.org_id == org_id, MB.c.id.in_(mailbox_ids))
        .values(
            messages_imported=0,
            skipped={},
            next_sync_at=utcnow(),
            failure_count=0,
            sync_stage=SyncStage.IDLE,
            lease_owner=None,
            lease_until=None,
        )
    )
    folders = conn.execute(
        _select(FS.c.id, FS.c.mailbox_id, FS.c.role, FS.c.selected, FS.c.relisted, FS.c.cursor, MB.c.kind)
        .join(MB, MB.c.id == FS.c.mailbox_id)
        .where(FS.c.org_id == org_id, FS.c.mailbox_id.in_(mailbox_ids))
    ).all()
    conn.execute(
        _update(FS)
        .where(FS.c.org_id == org_id, FS.c.mailbox_id.in_(mailbox_ids))
        .values(cursor={}, backfill_done=False, skipped={}, removed=0, status="ok", last_error=None)
    )
    # Mail deleted on the server since the last run is told by no cursor any more: each mail folder's
    # copies are set aside for the new reading to re-link or store again, and its end drops the rest.
    # A calendar's reading covers its window only: the copies from the window's start on are set
    # aside, their meetings kept with the folder (`relisted`) for the reading's end to drop those no
    # copy holds then; the history behind the window stays. A week inside the window: it moves a day
    # at a time, and a reading that starts a day or two later must still list every meeting set aside.
    # (Should the reading list less, it gives back at its end what it did not cover: Batch.relists_from.)
    # A copy stored again by a reading not ended yet, beside its set-aside twin, goes (`_set_aside`).
    # A CalDAV calendar keeps the members its cursor tracks (connectors/caldav.py reread_cursor).
    settings = org_settings(conn, org_id)
    window = CalendarWindow(settings["calendar_past_days"], settings["calendar_future_days"])
    window_start = window.bounds()[0] + timedelta(days=7)
    gone: Counter = Counter()
    for f in folders:
        if f.role != "calendar":
            if f.selected:
                gone.update(copies.set_aside(conn, f.mailbox_id, f.id, every=True))
            continue
        values: dict = {}
        if f.kind == "caldav" and (cursor := caldav.reread_cursor(f.cursor)):
            values["cursor"] = cursor
        if f.selected:
            dropped, meetings = copies.set_aside_meetings(conn, f.mailbox_id, f.id, window_start)
            gone.update(dropped)
            if meetings:
                values["relisted"] = sorted(set(f.relisted or ()) | set(meetings))
        if values:
            conn.execute(_update(FS).where(FS.c.id == f.id).values(**values))
    copies.count_changed(conn, {folder_id: -n for folder_id, n in gone.items()})
    # the counts restart, and so do the items behind them: the new reading skips them again, and
    # finds again what it cannot read (kept, those rows made it count none: "missing" for good)
    conn.execute(_delete(SKIPPED).where(SKIPPED.c.org_id == org_id, SKIPPED.c.mailbox_id.in_(mailbox_ids)))
    conn.execute(_delete(ISSUE).where(ISSUE.c.org_id == org_id, ISSUE.c.mailbox_id.in_(mailbox_ids)))


def _one(conn: Connection, org_id: int, mailbox_id: int):
    row = conn.execute(_select(MB).where(MB.c.id == mailbox_id, MB.c.org_id == org_id)).first()
    if row is None:
        raise NotFound(f"no mailbox {mailbox_id}")
    return row


def _target(row) -> str:
    cfg = row.config or {}
    return f"mailbox {row.id} ({row.kind} {cfg.get('username') or cfg.get('owner') or ''})".replace(" )", ")")


def pause(rt, actor: Actor, mailbox_id: int) -> None:
    with changing(rt.engine, actor) as conn:
        row = _one(conn, actor.org_id, mailbox_id)
        conn.execute(_update(MB).where(MB.c.id == mailbox_id).values(status="paused"))
        audit.record(conn, actor.org_id, actor.user_id, "mailbox.pause", _target(row))


def resume(rt, actor: Actor, mailbox_id: int) -> None:
    with changing(rt.engine, actor) as conn:
        row = _one(conn, actor.org_id, mailbox_id)
        pending = conn.execute(
            _select(FS.c.id).where(
                FS.c.mailbox_id == mailbox_id, FS.c.selected.is_(True), FS.c.backfill_done.is_(False)
            )
        ).first()
        status = "pending" if row.last_success_at is None else ("importing" if pending else "active")
        if row.status == "paused":
            conn.execute(
                _update(MB).where(MB.c.id == mailbox_id).values(status=status, next_sync_at=utcnow(), failure_count=0)
            )
        audit.record(conn, actor.org_id, actor.user_id, "mailbox.resume", _target(row))


def resync(rt, actor: Actor, mailbox_id: int) -> None:
    with changing(rt.engine, actor) as conn:
        row = _one(conn, actor.org_id, mailbox_id)
        reset_folders(conn, actor.org_id, [mailbox_id])
        audit.record(conn, actor.org_id, actor.user_id, "mailbox.resync", _target(row))


def sync_now(rt, actor: Actor, mailbox_id: int, *, scheduler=None, start: bool = True, background: bool = True) -> str:
    """'Sync now' (an admin for any mailbox, a rep for their own): mark the mailbox due, then
    wake this process's scheduler when it runs one (`queued`); else, with `start`, sync in a
    background thread (`started`) or right here (`done`); without, leave it to the workers
    (`queued`)."""
    from sync.engine import request_sync, sync_mailbox

    with changing(rt.engine, actor, admin=False) as conn:
        row = _one(conn, actor.org_id, mailbox_id)
        if actor.role != "admin" and row.owner_id != actor.user_id:
            raise NotFound(f"no mailbox {mailbox_id}")  # a colleague's mailbox is not the rep's to see
        if row.status == "paused":
            raise Conflict("the mailbox is paused: resume it first")
        audit.record(conn, actor.org_id, actor.user_id, "mailbox.sync_now", _target(row))
    request_sync(rt.engine, mailbox_id)
    if scheduler is not None:
        scheduler.wake()
        return "queued"
    if not start:
        return "queued"

    def run() -> None:  # the engine records the run's metrics itself (sync/metrics.py)
        sync_mailbox(
            rt.engine, rt.box, mailbox_id, worker=rt.settings.worker_id, lease_seconds=rt.settings.sync_lease_seconds
        )

    if background:
        threading.Thread(target=run, name=f"sync-now-{mailbox_id}", daemon=True).start()
        return "started"
    run()
    return "done"


def set_password(rt, actor: Actor, mailbox_id: int, password: str) -> None:
    """A new password (or app password) for the mailbox; it is synced again soon."""
    if not password:
        raise Invalid("the password is empty", field="password")
    with changing(rt.engine, actor) as conn:
        row = _one(conn, actor.org_id, mailbox_id)
        if row.kind == "gmail":  # a service account or the rep's own sign-in: no password of its own
            raise Invalid(
                "a Gmail mailbox has no password: it is read through its Google Workspace's service account "
                "(replace the key with `threadline mailbox add-google-workspace --key FILE`) or the rep's own "
                "Google sign-in (sign in again: `threadline mailbox add-google --owner REP --client-id ID`)",
                field="password",
            )
        conn.execute(
            _update(MB)
            .where(MB.c.id == mailbox_id)
            .values(secret_enc=rt.box.encrypt(password), failure_count=0, next_sync_at=utcnow())
        )
        audit.record(conn, actor.org_id, actor.user_id, "mailbox.set_password", _target(row))


def remove(rt, actor: Actor, mailbox_id: int, *, purge: bool = False) -> dict:
    """Remove a mailbox. The timeline keeps every interaction unless `purge`, which removes the
    interactions seen only through this mailbox (and contacts left with nothing)."""
    from app.services.admin import remove_from_timeline

    with changing(rt.engine, actor) as conn:
        org_id = actor.org_id
        row = _one(conn, org_id, mailbox_id)
        outcome = {"removed_interactions": 0, "removed_contacts": 0, "removed_companies": 0}
        if purge:
            other = SRC.alias("other")
            only_here = (
                _select(SRC.c.interaction_id)
                .distinct()
                .where(
                    SRC.c.org_id == org_id,
                    SRC.c.mailbox_id == mailbox_id,
                    ~_exists().where(other.c.interaction_id == SRC.c.interaction_id, other.c.mailbox_id != mailbox_id),
                )
            )
            outcome = remove_from_timeline(conn, org_id, list(conn.execute(only_here).scalars()))
        for table in (SRC, ISSUE, SKIPPED, GSUB, FS):
            conn.execute(_delete(table).where(table.c.mailbox_id == mailbox_id))
        conn.execute(_delete(MB).where(MB.c.id == mailbox_id, MB.c.org_id == org_id))
        audit.record(conn, org_id, actor.user_id, "mailbox.remove", _target(row), {"purge": purge, **outcome})
        return outcome


def _checked_settings(port, security: str) -> tuple[int, str | None]:
    """The port as a number, and what is wrong with the settings if anything (reported on the dns step)."""
    if security not in SECURITY:
        return 0, f"security must be one of {', '.join(SECURITY)}"
    try:
        number = int(port)
    except (TypeError, ValueError):
        return 0, f"not a port number: {port}"
    if not 0 < number < 65536:
        return 0, f"not a port number: {number}"
    return number, None


def _resolve(host: str, port: int) -> tuple[bool, str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        return False, f"cannot resolve {host!r}: {exc.strerror if hasattr(exc, 'strerror') and exc.strerror else exc}"
    addresses = sorted({str(i[4][0]) for i in infos})
    refused = netguard.refusal(host, port)
    if refused:
        return False, refused
    return True, f"{host} resolves to {', '.join(addresses[:4])}"


def _reach(host: str, port: int, timeout: float) -> tuple[bool, str]:
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.close()
    except (socket.timeout, TimeoutError):
        return False, f"no answer from {host}:{port} within {timeout:.0f} s (firewall, or wrong port?)"
    except netguard.RefusedDestination as exc:  # resolved elsewhere since the dns step
        return False, str(exc)
    except OSError as exc:
        return False, f"cannot connect to {host}:{port}: {exc.strerror or exc} (is the port right?)"
    return True, f"connected to {host}:{port}"


def _greet(host: str, port: int, security: str, timeout: float):
    """The tls step: (an IMAP client past the greeting and TLS or STARTTLS, outcome); no client on failure."""
    from imapclient import IMAPClient

    client = None
    try:
        client = IMAPClient(host, port=port, ssl=security == "tls", timeout=timeout)
        if security == "starttls":
            client.starttls(ssl.create_default_context())
    except ssl.SSLError as exc:
        _close(client)
        return None, (False, f"TLS handshake failed: {exc.reason or exc} (wrong security setting or certificate)")
    except Exception as exc:  # noqa: BLE001 - reported to the admin
        _close(client)
        what = "TLS" if security != "none" else "IMAP greeting"
        return None, (
            False,
            f"{what} failed: {type(exc).__name__}: {str(exc)[:200]} (is this an IMAP port with this security setting?)",
        )
    return client, (
        True,
        {
            "tls": "TLS established",
            "starttls": "STARTTLS established",
            "none": "no encryption requested (security none): connected in plain text",
        }[security],
    )


def _login(client, username: str, password: str) -> tuple[bool, str]:
    from imapclient.exceptions import LoginError

    from connectors.imap import login_link_broke, server_text

    try:
        client.login(username, password)
    except LoginError as exc:
        said = server_text(exc)[:200]
        if login_link_broke(exc):  # the network, not the server: the password may well be right
            return False, f"the connection was lost during login ({said or 'no answer'}); try again"
        return False, (
            f"the server refused the login of {username}: wrong username or password"
            + (f" (it said: {said})" if said else "")
        )
    except Exception as exc:  # noqa: BLE001
        return False, f"login failed: {type(exc).__name__}: {str(exc)[:200]}"
    return True, f"logged in as {username}"


def _list_folders(client) -> tuple[bool, str]:
    try:
        folders = client.list_folders()
        names = [f[2] if isinstance(f[2], str) else f[2].decode("utf-8", "replace") for f in folders]
    except Exception as exc:  # noqa: BLE001
        return False, f"listing folders failed: {type(exc).__name__}: {str(exc)[:200]}"
    return True, f"{len(names)} folders: {', '.join(sorted(names)[:8])}" + (" …" if len(names) > 8 else "")


def _close(client) -> None:
    if client is None:
        return
    try:
        client.logout()
    except Exception:  # noqa: BLE001
        try:
            client.shutdown()
        except Exception:  # noqa: BLE001
            pass


def test_imap_connection(
    host: str, port: int, security: str, username: str, password: str, *, timeout: float = 10.0
) -> list[dict]:
    """Try each step of reaching an IMAP mailbox and report exactly which one fails.

    Steps: dns, tcp, tls, login, folders. Each is {"step", "ok", "detail"}; ok is
    None for steps not tried because an earlier one failed. The password is never
    part of any detail."""
    steps = [{"step": s, "ok": None, "detail": "not tried"} for s in ("dns", "tcp", "tls", "login", "folders")]
    by = {s["step"]: s for s in steps}

    def done(name: str, outcome: tuple[bool, str]) -> bool:
        by[name].update(ok=outcome[0], detail=outcome[1])
        return outcome[0]

    host = (host or "").strip()
    port, problem = _checked_settings(port, security)
    if problem:
        done("dns", (False, problem))
        return steps
    if not (done("dns", _resolve(host, port)) and done("tcp", _reach(host, port, timeout))):
        return steps
    client, greeting = _greet(host, port, security, timeout)
    if not done("tls", greeting):
        return steps
    try:
        if done("login", _login(client, username, password)):
            done("folders", _list_folders(client))
    finally:
        _close(client)
    return steps


def connect_imap(
    rt,
    actor: Actor,
    *,
    owner: str,
    password: str,
    email: str | None = None,
    host: str | None = None,
    port: int = 993,
    security: str = "tls",
    username: str | None = None,
    check: bool = True,
) -> dict:
    """Add a rep's IMAP mailbox from its address (default: the owner's) and password: the server
    is found and tested (find_imap_server), or given by hand with `host` (tested unless not
    `check`). Returns the mailbox as described, with `found` (the discovery, or None)."""
    address = (email or "").strip() or owner
    if (host or "").strip():
        mb = add_imap(
            rt,
            actor,
            owner=owner,
            host=host,
            port=port,
            security=security,
            username=(username or "").strip() or address,
            password=password,
            check=check,
        )
        return mb | {"found": None}
    with changing(rt.engine, actor) as conn:  # refuse a wrong owner (or actor) before reaching any server
        owner_id(conn, actor.org_id, owner)
    found = find_imap_server(rt, address, password)
    mb = add_imap(
        rt,
        actor,
        owner=owner,
        host=found["host"],
        port=found["port"],
        security=found["security"],
        username=found["username"],
        password=password,
    )  # just tested
    return mb | {"found": found}


def find_imap_server(rt, address: str, password: str) -> dict:
    """Find where `address` is read over IMAP (connectors/discover.py) and log in to the
    candidates in order until one accepts: {host, port, security, username, source, steps,
    note}. Nothing is stored. Invalid (field "email") when nothing is found, when the
    provider needs its own sign-in (Microsoft 365), or when the login is refused; the
    admin can then give the server by hand."""
    from connectors.discover import MICROSOFT, discover, resolver_for

    address = clean_address(address, "email")
    found = discover(address, resolver=resolver_for(rt.settings.dns_server))
    domain = address.rpartition("@")[2]
    if found.provider == MICROSOFT:
        raise Invalid(found.note, field="email", facts={"provider": found.provider})
    if not found.servers:
        raise Invalid(
            f"could not find the IMAP server of {domain} (looked at {', '.join(found.looked_at)}): "
            "give the server's host, port and security by hand",
            field="host",
        )
    for server in found.servers:
        steps = test_imap_connection(server.host, server.port, server.security, server.username, password)
        failed = next((s for s in steps if s["ok"] is False), None)
        if failed is None:
            return {
                "host": server.host,
                "port": server.port,
                "security": server.security,
                "username": server.username,
                "source": server.source,
                "steps": steps,
                "note": found.note,
            }
        if failed["step"] in ("login", "folders"):  # the server is right; another would refuse the same login
            break
    where = f"{server.host}:{server.port} ({server.security}, from {server.source})"
    raise Invalid(
        f"found {where}, but the connection test failed at the {failed['step']} step: {failed['detail']}"
        + (f". {found.note}" if found.note else ""),
        field=_STEP_FIELD[failed["step"]],
        facts={
            "steps": steps,
            "server": {
                "host": server.host,
                "port": server.port,
                "security": server.security,
                "username": server.username,
            },
        },
    )


# Which form field a failed connection step points at.
_STEP_FIELD = {"dns": "host", "tcp": "port", "tls": "security", "login": "password", "folders": None}


def refuse_unless_reachable(steps: list[dict]) -> None:
    """Raise Invalid naming the first failed step of a connection test (all steps in its facts)."""
    failed = next((s for s in steps if s["ok"] is False), None)
    if failed is not None:
        raise Invalid(
            f"nothing was saved: the connection test failed at the {failed['step']} step: {failed['detail']}",
            field=_STEP_FIELD[failed["step"]],
            facts={"steps": steps},
        )


def with_sources(session: Session, org_id: int, rows: list[dict]) -> list[dict]:
    """Add to health rows what identifies each mailbox's source, per kind, never a secret:
    `account` (who signs in) and `location` (where), plus for CalDAV the `url`, for
    Microsoft 365 the `tenant`, `user`, `mode` (app | delegated) and `protocol`, for Gmail the
    `workspace` (its domain) and `user`."""
    from app.services import calendars, google, m365

    for row in rows:
        mb = get_mailbox(session, org_id, row["id"])
        if mb.kind == "caldav":
            row.update(calendars.account_facts(mb))
            row["account"], row["location"] = row["username"], row["url"]
        elif mb.kind == "m365":
            row.update(m365.mailbox_facts(session, mb))
            row["account"] = row["user"]
            row["location"] = (
                f"tenant {row['tenant']}"
                if row["mode"] == "app"
                else f"delegated sign-in ({row['tenant'] or 'organizations'})"
            )
        elif mb.kind == "gmail":
            row.update(google.mailbox_facts(session, mb))
            row["account"] = row["user"]
            row["location"] = (
                f"Google Workspace {row['workspace']}" if row["workspace"] else "the rep's own Google sign-in"
            )
        else:
            row["account"], row["location"] = row.get("username"), row.get("server")
    return rows


def health_page(engine, org_id: int) -> list[dict]:
    """The sync health table: every mailbox of the organisation with its source."""
    with Session(engine) as s:
        return with_sources(s, org_id, health(s, org_id))


def mailbox_detail(engine, org_id: int, mailbox_id: int) -> dict:
    """One mailbox's health row with its folders (and their cursors), unreadable messages and
    the latest items skipped with their reason."""
    with Session(engine) as s:
        rows = health(s, org_id, mailbox_id)
        if not rows:
            raise NotFound(f"no mailbox {mailbox_id}")
        with_sources(s, org_id, rows)
        detail = describe(s, get_mailbox(s, org_id, mailbox_id), with_folders=True)
        return {
            **rows[0],
            "folders": detail["folders"],
            "unreadable": detail["unreadable"],
            "skipped_items": detail["skipped_items"],
        }
