"""What the administration API (/api/admin) answers: one model per kind of answer, so
/docs describes it. Models declare the fields clients rely on; rows that grow with
the source kind (a mailbox's health) keep their other fields (extra="allow")."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict


class Ok(BaseModel):
    ok: bool = True


class OrgSettings(BaseModel):
    id: int
    name: str
    internal_domains: list[str]
    contact_policy: str
    visibility: str
    backfill_days: int
    sync_interval_seconds: int
    bulk_detection: bool
    free_mail_domains: Optional[list[str]] = None
    calendar_past_days: int
    calendar_future_days: int
    entra_tenant_id: Optional[str] = None
    phone_region: Optional[str] = None


class AliasOut(BaseModel):
    id: int
    address: str
    user_id: Optional[int] = None


class TokenInfo(BaseModel):
    id: int
    name: str
    created_at: Optional[datetime] = None
    last_used_at: Optional[datetime] = None
    revoked_at: Optional[datetime] = None
    active: bool


class UserOut(BaseModel):
    id: int
    email: str
    name: str
    role: str
    active: bool
    created_at: Optional[datetime] = None
    aliases: list[AliasOut]
    tokens: list[TokenInfo]


class IssuedToken(BaseModel):
    id: int
    user_id: int
    email: str
    name: str
    token: str


class MailboxRow(BaseModel):
    """A mailbox (IMAP, Microsoft 365 or CalDAV account) as the health table shows it."""

    model_config = ConfigDict(extra="allow")

    id: int
    kind: str
    owner: Optional[str] = None
    status: str
    stage: str
    healthy: bool
    last_error: Optional[str] = None
    last_error_kind: Optional[str] = None
    messages_imported: int
    skipped: dict[str, int]
    reconciled: bool  # see app/services/reconcile.py
    missing: int
    kept_more: int = 0
    attention: Optional[str] = None
    attention_fix: Optional[str] = None


class ConnectionStep(BaseModel):
    step: str
    ok: Optional[bool] = None
    detail: str
    fix: Optional[str] = None  # what to do, for a failed step that knows (Google Workspace)


class ConnectionTest(BaseModel):
    ok: bool
    steps: list[ConnectionStep]


class SyncStarted(BaseModel):
    sync: str


class RemovedCounts(BaseModel):
    removed_interactions: int
    removed_contacts: int
    removed_companies: int


class TenantOut(BaseModel):
    id: int
    tenant_id: str
    client_id: str
    auth_kind: str
    authority: Optional[str] = None
    graph_url: Optional[str] = None
    created_at: Optional[datetime] = None
    mailboxes: Optional[int] = None


class WorkspaceOut(BaseModel):
    """A Google Workspace's service account (never its key)."""

    id: int
    domain: str
    client_email: str
    client_id: str
    key_id: str
    created_at: Optional[datetime] = None
    mailboxes: Optional[int] = None


class GmailAdded(BaseModel):
    added: list[MailboxRow]
    outside: list[str]  # enabled reps left out: their address is not in the Workspace's domain


class RuleOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: int
    kind: str
    value: str
    user_id: Optional[int] = None


class ErasureOut(BaseModel):
    addresses: int
    removed_interactions: int
    removed_participations: int
    removed_contacts: int
    removed_companies: int
    removed_rules: int
    scrubbed_audit_events: int


class AuditEventOut(BaseModel):
    id: int
    at: datetime
    actor_id: Optional[int] = None
    actor: Optional[str] = None
    action: str
    target: str
    detail: dict[str, Any]


class SummaryCheckOut(BaseModel):
    """The latest recount of the organisation's per-contact summaries (sync/stats.py: check)."""

    checked_at: Optional[datetime] = None  # None: never checked yet
    contacts: int = 0  # contacts recounted
    disagreeing: int = 0  # contacts whose kept summaries disagree with the recount
    contact_ids: list[int] = []  # the first 100 of them
    mailbox_ids: list[int] = []  # mailboxes holding their mail: not shown healthy until repaired
