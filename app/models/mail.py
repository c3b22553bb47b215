"""Mailboxes, their per-folder cursors and what their sync could not import."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field

from app.models.base import TableModel, utcnow


# sync_stage is the machine's state (what the engine is doing); status is what
# users see. They are separate so a crash mid-run cannot leave a mailbox
# looking healthy, and a lease can expire without touching the user's view.
# StrEnums equal their strings, so the columns stay plain text.
class SyncStage(StrEnum):
    IDLE = "idle"
    RUNNING = "running"  # a worker holds the lease


class MailboxStatus(StrEnum):
    PENDING = "pending"  # never synced yet
    IMPORTING = "importing"  # synced, backfill still going
    ACTIVE = "active"  # every folder imported
    FAILED = "failed"  # the last run failed (last_error, last_error_kind)
    PAUSED = "paused"  # an admin paused it, or its owner was deactivated


class Mailbox(TableModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id", index=True)
    owner_id: int = Field(foreign_key="app_user.id", index=True)
    kind: str = "imap"  # imap | m365 | gmail | caldav | demo (a calendar account is a mailbox of calendars)
    # For kind m365 with tenant-wide (application) access: the tenant app it uses.
    tenant_ref: int | None = Field(default=None, foreign_key="m365tenant.id")
    # Connection settings without secrets (host, port, security, username, ...).
    config: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    secret_enc: str | None = None
    sync_stage: str = SyncStage.IDLE
    status: str = MailboxStatus.PENDING
    lease_owner: str | None = None
    lease_until: datetime | None = None
    # The worker holding this mailbox's IDLE connection and until when (sync/scheduler.py: claim_watches).
    watch_owner: str | None = None
    watch_until: datetime | None = None
    next_sync_at: datetime | None = Field(default=None, index=True)
    failure_count: int = 0
    last_error: str | None = None
    last_error_kind: str | None = None  # connectors.base.ErrorKind or sync.fixes.RunError
    last_error_fix: str | None = None  # connectors.base.Fix, when the connector knew better than the kind
    last_error_at: datetime | None = None
    last_attempt_at: datetime | None = None
    last_success_at: datetime | None = None
    # records the runs stored, a tally of work (a message a source lists again counts again);
    # what admins see as imported is the copies held (app/services/reconcile.py mailbox_state)
    messages_imported: int = 0
    # reason -> count of messages deliberately not stored (bulk, internal, ...)
    skipped: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class FolderState(TableModel, table=True):
    """Persisted state of one folder; the cursor is the connector's own, stored as given."""

    __table_args__ = (UniqueConstraint("mailbox_id", "name"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    mailbox_id: int = Field(foreign_key="mailbox.id", index=True)
    name: str
    role: str = "other"  # inbox | sent | archive | other
    selected: bool = True
    cursor: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    backfill_done: bool = False
    messages: int = 0
    # reason -> this folder's share of the mailbox's skipped counts (taken back when its ids are reset)
    skipped: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # copies an admin took off the timeline (a rule, an erasure): still on the server, counted
    # here so the folder's reconciliation adds up (app/services/reconcile.py); zeroed when re-read
    removed: int = 0
    # meetings whose copies this folder held when it was read again from scratch: re-linked by the
    # new listing, or dropped when it ends if no copy is left anywhere (sync/engine.py); kept here,
    # not in the run, so a listing interrupted meanwhile still ends with them (migration 0028)
    relisted: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]"))
    status: str = "ok"  # ok | error
    last_error: str | None = None
    last_synced_at: datetime | None = None


class SyncIssue(TableModel, table=True):
    """A message that could not be imported, with the reason, shown to admins."""

    __table_args__ = (UniqueConstraint("mailbox_id", "folder", "remote_id"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    mailbox_id: int = Field(foreign_key="mailbox.id", index=True)
    folder: str
    remote_id: str
    reason: str
    created_at: datetime = Field(default_factory=utcnow)


class SkippedItem(TableModel, table=True):
    """An item a sync read and left off the timeline on purpose, with why (internal, bulk
    or automated, excluded by rule ...): its folder's `skipped` counts it, the reconciliation
    adds it to the copies stored, and admins see the latest ones per mailbox. Every one is kept,
    so a count is never taken twice and an item gone from the server leaves it (sync/skipped.py)."""

    __table_args__ = (UniqueConstraint("mailbox_id", "folder", "remote_id"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    mailbox_id: int = Field(foreign_key="mailbox.id", index=True)
    folder: str
    remote_id: str
    reason: str
    created_at: datetime = Field(default_factory=utcnow)


class M365Tenant(TableModel, table=True):
    """An Entra app registration with application permissions for one tenant."""

    __table_args__ = (UniqueConstraint("org_id", "tenant_id"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id", index=True)
    tenant_id: str
    client_id: str
    auth_kind: str = "secret"  # secret | certificate
    # Client secret, or the PEM private key plus thumbprint for a certificate, encrypted.
    secret_enc: str | None = None
    # authority / graph_url overrides (national clouds, the test fake)
    config: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class GoogleWorkspace(TableModel, table=True):
    """A Google Cloud service account with domain-wide delegation in one Workspace
    domain: every rep's Gmail is read through it by address (kind gmail mailboxes
    name it in config["workspace"])."""

    __table_args__ = (UniqueConstraint("org_id", "client_email"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id", index=True)
    domain: str  # the Workspace's primary domain, lower case
    client_email: str  # the service account (…@PROJECT.iam.gserviceaccount.com)
    client_id: str  # its numeric OAuth client id: what the admin authorises for delegation
    key_id: str  # private_key_id of the stored key (shown so a rotated key can be told apart)
    # The service account's JSON key (with its private key), encrypted like a tenant app's secret.
    secret_enc: str
    # imap_host / imap_port / imap_security overrides (a Google-compatible test server)
    config: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class GraphSubscription(TableModel, table=True):
    """A Microsoft Graph change-notification subscription kept alive for a mailbox."""

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    mailbox_id: int = Field(foreign_key="mailbox.id", index=True)
    subscription_id: str = Field(unique=True)
    resource: str
    client_state_enc: str
    expires_at: datetime
    created_at: datetime = Field(default_factory=utcnow)
