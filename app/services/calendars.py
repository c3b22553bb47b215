"""Calendar accounts (CalDAV): adding one for a rep, describing them.

A calendar account is a Mailbox of kind "caldav" (config {url, username}, the
password encrypted in secret_enc); each of its calendars is a FolderState with
role "calendar", created by the first sync.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlmodel import Session, select

from app import netguard
from app.models import FolderState, Mailbox, SyncIssue, User
from app.services import audit, reconcile
from app.services.actor import Actor, changing
from app.services.errors import Invalid
from app.services.mailboxes import describe, insert_mailbox, owner_id, with_sources


def check_url(url: str) -> str:
    url = (url or "").strip()
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        # The URL is kept in clear (the mailbox's settings, the audit log, the console); only the
        # password field is encrypted. Checked first, and never echoed: it may hold the password.
        raise Invalid("the CalDAV URL holds a username or password: give them in their own fields instead", field="url")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise Invalid(f"not a CalDAV URL (http:// or https://): {url!r}", field="url")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Invalid(f"not a port number in {url!r}", field="url") from None
    refused = netguard.refusal(parts.hostname or "", port)
    if refused:
        raise Invalid(refused, field="url")
    return url


def _check_settings(url: str, username: str, sync: str) -> str:
    url = check_url(url)
    if not (username or "").strip():
        raise Invalid("the CalDAV username is required", field="username")
    if sync not in ("auto", "ctag"):
        raise Invalid("sync must be auto (sync-token where offered) or ctag", field="sync")
    return url


def probe(url: str, username: str, password: str, owner: str | None = None) -> list[str]:
    """Log in and list the account's calendars now; raises a ConnectorError (auth,
    transient, ...) when that fails. Returns the calendars' paths."""
    from connectors.base import close_quietly
    from connectors.caldav import CalDavConnector

    conn = CalDavConnector(url, username, password, owner=owner, timeout=30)
    try:
        return [f.name for f in conn.list_folders()]
    finally:
        close_quietly(conn)


def add_caldav(
    rt, actor: Actor, *, owner: str, url: str, username: str, password: str, check: bool = True, sync: str = "auto"
) -> dict:
    """Add a rep's CalDAV account: the owner and URL are checked first; with `check`, log in
    and list the calendars now, and store nothing if that fails (Invalid, naming the error
    kind). Returns the account as described on the admin pages, with `calendars` found
    (empty without `check`). The password is never part of any message."""
    from connectors.base import ConnectorError
    from sync.fixes import explain_error

    url = _check_settings(url, username, sync)
    with changing(rt.engine, actor) as conn:  # refuse a wrong owner before reaching the server
        owner_id(conn, actor.org_id, owner)
    found: list[str] = []
    if check:
        # Outside any transaction: on SQLite each one holds the write lock, which must
        # not wait on a remote server.
        try:
            found = probe(url, username, password, owner)
        except ConnectorError as exc:
            raise Invalid(
                f"cannot use this CalDAV account ({exc.kind}): {explain_error(exc, 'caldav')}", field="url"
            ) from exc
    config = {"url": url, "username": username.strip()}
    if sync != "auto":
        config["sync"] = sync
    with changing(rt.engine, actor) as conn:
        mid = insert_mailbox(
            conn,
            org_id=actor.org_id,
            owner_id=owner_id(conn, actor.org_id, owner),
            kind="caldav",
            config=config,
            secret_enc=rt.box.encrypt(password),
        )
        audit.record(
            conn,
            actor.org_id,
            actor.user_id,
            "mailbox.add",
            f"mailbox {mid} (caldav {config['username']})",
            {"url": url, "owner": owner, "checked": check},
        )
    with Session(rt.engine) as s:
        return with_sources(s, actor.org_id, [describe(s, s.get(Mailbox, mid))])[0] | {"calendars": found}


def account_facts(mailbox: Mailbox) -> dict:
    """What identifies a CalDAV account on the admin pages (never the password)."""
    config = mailbox.config or {}
    return {"url": config.get("url"), "username": config.get("username"), "sync_mode": config.get("sync", "auto")}


def describe_all(session: Session, org_id: int) -> list[dict]:
    """Every calendar account of the organisation with its calendars and health."""
    out = []
    accounts = session.exec(
        select(Mailbox).where(Mailbox.org_id == org_id, Mailbox.kind == "caldav").order_by(Mailbox.id)
    ).all()
    for mb in accounts:
        owner = session.get(User, mb.owner_id)
        state = reconcile.mailbox_state(session.connection(), org_id, [mb.id])[mb.id]
        folders = session.exec(
            select(FolderState).where(FolderState.mailbox_id == mb.id).order_by(FolderState.name)
        ).all()
        issues = session.exec(
            select(SyncIssue).where(SyncIssue.mailbox_id == mb.id).order_by(SyncIssue.id.desc()).limit(20)
        ).all()
        out.append(
            {
                "id": mb.id,
                "owner": owner.email if owner else None,
                "url": mb.config.get("url"),
                "username": mb.config.get("username"),
                "status": mb.status,
                "stage": mb.sync_stage,
                # summaries that disagree with a recount make no account healthy (app/services/reconcile.py)
                "healthy": mb.status == "active" and not mb.last_error and not state["attention"],
                "last_success_at": mb.last_success_at,
                "next_sync_at": mb.next_sync_at,
                "last_error": mb.last_error,
                "last_error_kind": mb.last_error_kind,
                "meetings_imported": state["stored"],
                "skipped": dict(mb.skipped or {}),
                "calendars": [
                    {
                        "name": f.name,
                        "selected": f.selected,
                        "status": f.status,
                        "last_error": f.last_error,
                        "copies": f.messages,
                        "synced": f.backfill_done,
                        "last_synced_at": f.last_synced_at,
                        "mode": (f.cursor or {}).get("mode"),
                    }
                    for f in folders
                ],
                "unreadable": [{"calendar": i.folder, "remote_id": i.remote_id, "reason": i.reason} for i in issues],
            }
        )
    return out
