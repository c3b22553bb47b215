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
