"""Adding and describing mailboxes."""
from __future__ import annotations

from sqlmodel import Session, select

from app.crypto import SecretBox
from app.models import FolderState, Mailbox, Organisation, SyncIssue, User
from app.services.orgs import Invalid, NotFound, find_user

SECURITY = ("tls", "starttls", "none")


def add_imap(session: Session, box: SecretBox, org: Organisation, *, owner: str, host: str, port: int,
             security: str, username: str, password: str) -> Mailbox:
    if security not in SECURITY:
        raise Invalid(f"security must be one of {', '.join(SECURITY)}")
    if not host.strip():
        raise Invalid("the IMAP host is required")
    if not 0 < port < 65536:
        raise Invalid(f"not a port number: {port}")
    user = find_user(session, org.id, owner)
    mailbox = Mailbox(org_id=org.id, owner_id=user.id, kind="imap",
                      config={"host": host.strip(), "port": port, "security": security, "username": username},
                      secret_enc=box.encrypt(password))
    session.add(mailbox)
    session.commit()
    session.refresh(mailbox)
    return mailbox


def get_mailbox(session: Session, org_id: int, mailbox_id: int) -> Mailbox:
    mailbox = session.get(Mailbox, mailbox_id)
    if mailbox is None or mailbox.org_id != org_id:
        raise NotFound(f"no mailbox {mailbox_id}")
    return mailbox


def describe(session: Session, mailbox: Mailbox, *, with_folders: bool = False) -> dict:
    """What admins see: status and stage kept apart, errors in plain words, counters."""
    owner = session.get(User, mailbox.owner_id)
    out = {
        "id": mailbox.id, "kind": mailbox.kind, "owner": owner.email if owner else None,
        "server": f"{mailbox.config.get('host')}:{mailbox.config.get('port')}" if mailbox.kind == "imap" else None,
        "username": mailbox.config.get("username"),
        "status": mailbox.status, "stage": mailbox.sync_stage,
        "healthy": mailbox.status == "active" and not mailbox.last_error,
        "last_success_at": mailbox.last_success_at, "last_attempt_at": mailbox.last_attempt_at,
        "next_sync_at": mailbox.next_sync_at,
        "last_error": mailbox.last_error, "last_error_kind": mailbox.last_error_kind,
        "messages_imported": mailbox.messages_imported, "skipped": dict(mailbox.skipped or {}),
    }
    if with_folders:
        folders = session.exec(select(FolderState).where(FolderState.mailbox_id == mailbox.id)
                               .order_by(FolderState.name)).all()
        out["folders"] = [{"name": f.name, "role": f.role, "selected": f.selected, "status": f.status,
                           "last_error": f.last_error, "messages": f.messages, "backfill_done": f.backfill_done,
                           "cursor": f.cursor, "last_synced_at": f.last_synced_at} for f in folders]
        issues = session.exec(select(SyncIssue).where(SyncIssue.mailbox_id == mailbox.id)
                              .order_by(SyncIssue.id.desc()).limit(50)).all()
        out["unreadable"] = [{"folder": i.folder, "remote_id": i.remote_id, "reason": i.reason} for i in issues]
    return out


# -- admin operations (console, API and CLI share these) -------------------------

import socket  # noqa: E402
import ssl  # noqa: E402
from datetime import datetime, timezone  # noqa: E402

from sqlalchemy import delete as _delete, exists as _exists, select as _select, update as _update  # noqa: E402
from sqlalchemy.engine import Connection  # noqa: E402

from app.models import GraphSubscription, InteractionSource  # noqa: E402
from app.models.base import utcnow  # noqa: E402
from app.services import audit  # noqa: E402

MB, FS, SRC = Mailbox.__table__, FolderState.__table__, InteractionSource.__table__
ISSUE, GSUB = SyncIssue.__table__, GraphSubscription.__table__

# What an admin does about each kind of error (sync/engine.py error kinds).
FIXES = {
    "auth": "Update the mailbox password (console: mailbox page → New password; CLI: threadline mailbox "
            "set-password ID). For Microsoft 365, connect the account again.",
    "transient": "Check the server name, port and security setting, and that the server is up; "
                 "Threadline retries automatically.",
    "throttled": "Nothing to do: the server asked Threadline to slow down and it retries later.",
    "cursor_expired": "Re-sync the mailbox from scratch.",
    "bad_data": "Some messages could not be read; see the unreadable list on the mailbox page.",
    "folder": "Some folders failed; see their errors on the mailbox page, then Sync now.",
    "lease": "Another worker was syncing this mailbox; nothing to do.",
    "internal": "An internal error; check the server log and report it.",
}


def fix_for(kind: str | None) -> str | None:
    if not kind:
        return None
    return FIXES.get(kind, "Check the error above, then Sync now.")


def _aware(value):
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value


def health_label(row: dict, interval: int, now: datetime | None = None) -> str:
    """healthy | failing | paused | importing | pending | behind: a failing mailbox is never healthy."""
    now = now or utcnow()
    if row["status"] == "paused":
        return "paused"
    if row["status"] == "failed" or row.get("last_error") or row.get("folder_errors"):
        return "failing"
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
        bad_folders = session.exec(select(FolderState.name).where(FolderState.mailbox_id == mb.id,
                                                                  FolderState.status == "error")).all()
        row["folder_errors"] = list(bad_folders)
        last = _aware(mb.last_success_at)
        row["lag_seconds"] = (now - last).total_seconds() if last else None
        row["lag"] = human_lag(row["lag_seconds"])
        row["health"] = health_label(row, interval, now)
        row["healthy"] = row["health"] == "healthy"
        kind = mb.last_error_kind or ("folder" if bad_folders else None)
        row["fix"] = fix_for(kind)
        rows.append(row)
    return rows


def reset_folders(conn: Connection, org_id: int, mailbox_ids: list[int]) -> None:
    """Forget where each folder's sync stood, so the next run reads everything again.
    Interactions stay (keyed rows: re-reading duplicates nothing); counters restart."""
    if not mailbox_ids:
        return
    conn.execute(_update(FS).where(FS.c.org_id == org_id, FS.c.mailbox_id.in_(mailbox_ids))
                 .values(cursor={}, backfill_done=False, messages=0, skipped={}, status="ok", last_error=None))
    conn.execute(_update(MB).where(MB.c.org_id == org_id, MB.c.id.in_(mailbox_ids))
                 .values(messages_imported=0, skipped={}, next_sync_at=utcnow(), failure_count=0))


def _one(conn: Connection, org_id: int, mailbox_id: int):
    row = conn.execute(_select(MB).where(MB.c.id == mailbox_id, MB.c.org_id == org_id)).first()
    if row is None:
        raise NotFound(f"no mailbox {mailbox_id}")
    return row


def _target(row) -> str:
    cfg = row.config or {}
    return f"mailbox {row.id} ({row.kind} {cfg.get('username') or cfg.get('owner') or ''})".replace(" )", ")")


def pause(conn: Connection, org_id: int, mailbox_id: int, *, actor_id: int | None) -> None:
    row = _one(conn, org_id, mailbox_id)
    conn.execute(_update(MB).where(MB.c.id == mailbox_id).values(status="paused"))
    audit.record(conn, org_id, actor_id, "mailbox.pause", _target(row))


def resume(conn: Connection, org_id: int, mailbox_id: int, *, actor_id: int | None) -> None:
    row = _one(conn, org_id, mailbox_id)
    pending = conn.execute(_select(FS.c.id).where(FS.c.mailbox_id == mailbox_id, FS.c.selected.is_(True),
                                                  FS.c.backfill_done.is_(False))).first()
    status = "pending" if row.last_success_at is None else ("importing" if pending else "active")
    if row.status == "paused":
        conn.execute(_update(MB).where(MB.c.id == mailbox_id)
                     .values(status=status, next_sync_at=utcnow(), failure_count=0))
    audit.record(conn, org_id, actor_id, "mailbox.resume", _target(row))


def resync(conn: Connection, org_id: int, mailbox_id: int, *, actor_id: int | None) -> None:
    row = _one(conn, org_id, mailbox_id)
    reset_folders(conn, org_id, [mailbox_id])
    audit.record(conn, org_id, actor_id, "mailbox.resync", _target(row))


def set_password(conn: Connection, box: SecretBox, org_id: int, mailbox_id: int, password: str, *,
                 actor_id: int | None) -> None:
    row = _one(conn, org_id, mailbox_id)
    if not password:
        raise Invalid("the password is empty")
    conn.execute(_update(MB).where(MB.c.id == mailbox_id)
                 .values(secret_enc=box.encrypt(password), failure_count=0, next_sync_at=utcnow()))
    audit.record(conn, org_id, actor_id, "mailbox.set_password", _target(row))


def remove(conn: Connection, org_id: int, mailbox_id: int, *, purge: bool = False, actor_id: int | None) -> dict:
    """Remove a mailbox. The timeline keeps every interaction unless `purge`, which removes the
    interactions seen only through this mailbox (and contacts left with nothing)."""
    from app.services.admin import remove_from_timeline

    row = _one(conn, org_id, mailbox_id)
    outcome = {"removed_interactions": 0, "removed_contacts": 0, "removed_companies": 0}
    if purge:
        other = SRC.alias("other")
        only_here = (_select(SRC.c.interaction_id).distinct()
                     .where(SRC.c.org_id == org_id, SRC.c.mailbox_id == mailbox_id,
                            ~_exists().where(other.c.interaction_id == SRC.c.interaction_id,
                                             other.c.mailbox_id != mailbox_id)))
        outcome = remove_from_timeline(conn, org_id, list(conn.execute(only_here).scalars()))
    for table in (SRC, ISSUE, GSUB, FS):
        conn.execute(_delete(table).where(table.c.mailbox_id == mailbox_id))
    conn.execute(_delete(MB).where(MB.c.id == mailbox_id, MB.c.org_id == org_id))
    audit.record(conn, org_id, actor_id, "mailbox.remove", _target(row), {"purge": purge, **outcome})
    return outcome


def test_imap_connection(host: str, port: int, security: str, username: str, password: str, *,
                         timeout: float = 10.0) -> list[dict]:
    """Try each step of reaching an IMAP mailbox and report exactly which one fails.

    Steps: dns, tcp, tls, login, folders. Each is {"step", "ok", "detail"}; ok is
    None for steps not tried because an earlier one failed. The password is never
    part of any detail."""
    steps = [{"step": s, "ok": None, "detail": "not tried"} for s in ("dns", "tcp", "tls", "login", "folders")]
    by = {s["step"]: s for s in steps}

    def done(name: str, ok: bool, detail: str) -> bool:
        by[name].update(ok=ok, detail=detail)
        return ok

    host = (host or "").strip()
    if security not in SECURITY:
        done("dns", False, f"security must be one of {', '.join(SECURITY)}")
        return steps
    try:
        port = int(port)
        if not 0 < port < 65536:
            raise ValueError
    except (TypeError, ValueError):
        done("dns", False, f"not a port number: {port}")
        return steps
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = sorted({i[4][0] for i in infos})
        done("dns", True, f"{host} resolves to {', '.join(addresses[:4])}")
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        done("dns", False, f"cannot resolve {host!r}: {exc.strerror if hasattr(exc, 'strerror') and exc.strerror else exc}")
        return steps
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.close()
        done("tcp", True, f"connected to {host}:{port}")
    except (socket.timeout, TimeoutError):
        done("tcp", False, f"no answer from {host}:{port} within {timeout:.0f} s (firewall, or wrong port?)")
        return steps
    except OSError as exc:
        done("tcp", False, f"cannot connect to {host}:{port}: {exc.strerror or exc} (is the port right?)")
        return steps
    from imapclient import IMAPClient
    from imapclient.exceptions import LoginError

    from connectors.imap import login_link_broke

    client = None
    try:
        try:
            client = IMAPClient(host, port=port, ssl=security == "tls", timeout=timeout)
            if security == "starttls":
                client.starttls(ssl.create_default_context())
        except ssl.SSLError as exc:
            done("tls", False, f"TLS handshake failed: {exc.reason or exc} (wrong security setting or certificate)")
            return steps
        except Exception as exc:  # noqa: BLE001 - reported to the admin
            what = "TLS" if security != "none" else "IMAP greeting"
            done("tls", False, f"{what} failed: {type(exc).__name__}: {str(exc)[:200]}"
                 + (" (is this an IMAP port with this security setting?)"))
            return steps
        done("tls", True, {"tls": "TLS established", "starttls": "STARTTLS established",
                           "none": "no encryption requested (security none): connected in plain text"}[security])
        try:
            client.login(username, password)
            done("login", True, f"logged in as {username}")
        except LoginError as exc:
            text = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
            if login_link_broke(exc):
                done("login", False, f"the connection was lost during login ({text[:200]}); try again")
            else:
                done("login", False, f"login refused for {username}: wrong username or password ({text[:200]})")
            return steps
        except Exception as exc:  # noqa: BLE001
            done("login", False, f"login failed: {type(exc).__name__}: {str(exc)[:200]}")
            return steps
        try:
            folders = client.list_folders()
            names = [f[2] if isinstance(f[2], str) else f[2].decode("utf-8", "replace") for f in folders]
            done("folders", True, f"{len(names)} folders: {', '.join(sorted(names)[:8])}"
                 + (" …" if len(names) > 8 else ""))
        except Exception as exc:  # noqa: BLE001
            done("folders", False, f"listing folders failed: {type(exc).__name__}: {str(exc)[:200]}")
    finally:
        if client is not None:
            try:
                client.logout()
            except Exception:  # noqa: BLE001
                try:
                    client.shutdown()
                except Exception:  # noqa: BLE001
                    pass
    return steps
