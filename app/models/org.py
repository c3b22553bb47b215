"""Organisation, its users and their credentials."""

from datetime import date, datetime

from sqlalchemy import JSON, Column, Index, UniqueConstraint, false as sa_false
from sqlmodel import Field

from app.models.base import TableModel, utcnow

CONTACT_POLICIES = ("exchanged", "sent", "all", "none")
VISIBILITY_LEVELS = ("metadata", "subject", "snippet")


class Organisation(TableModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str
    internal_domains: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Which external addresses become contacts automatically (see sync/policy.py).
    contact_policy: str = "exchanged"
    # How much of a message is kept: metadata only, plus subject, plus snippet.
    visibility: str = "snippet"
    # Which deals a rep sees and edits (app.models.deals.DealVisibility); admins see all.
    deal_visibility: str = Field(default="all", sa_column_kwargs={"server_default": "all"})
    backfill_days: int = 365
    sync_interval_seconds: int = 300
    bulk_detection: bool = True
    # ISO region for phone numbers written without a country code in signatures when the
    # sender's domain names no country (.com); None: such numbers are not kept.
    phone_region: str | None = None
    # None means the built-in list (sync/addresses.py FREE_MAIL_DOMAINS).
    free_mail_domains: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # Calendar window: how far back and ahead meetings are synced.
    calendar_past_days: int = 365
    calendar_future_days: int = 180
    # Microsoft Entra tenant whose signed-in users map to this organisation.
    entra_tenant_id: str | None = Field(default=None, unique=True)
    # The key of erasure tombstones (sync/exclusions.py), random, encrypted with
    # the secret box; made at the first erasure or export.
    erasure_key_enc: str | None = None
    # Follow-up queue (sync/followups.py): business days to wait for an answer, business
    # hours to answer, days without interaction before a key account is "going quiet".
    followup_wait_days: int = Field(default=3, sa_column_kwargs={"server_default": "3"})
    followup_reply_hours: int = Field(default=8, sa_column_kwargs={"server_default": "8"})
    followup_quiet_days: int = Field(default=30, sa_column_kwargs={"server_default": "30"})
    # The SMTP server the daily digest goes through (host, port, security, username, from);
    # its password is secret_enc-style encrypted in smtp_secret_enc.
    smtp: dict | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    smtp_secret_enc: str | None = None
    # The outcome of the last digest or test email (app/services/digest.py), shown in the console.
    smtp_last_error: str | None = None
    smtp_last_error_at: datetime | None = None
    smtp_last_sent_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class User(TableModel, table=True):
    __tablename__ = "app_user"
    __table_args__ = (UniqueConstraint("org_id", "email"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id", index=True)
    email: str
    name: str = ""
    role: str = "rep"  # rep | manager (every rep's reports, no admin rights) | admin
    active: bool = True
    # Entra ID object id (oid claim) once the user has signed in with Microsoft.
    entra_object_id: str | None = None
    # The rep's calendar for follow-up due dates: IANA time zone, working weekdays (0 = Monday), hours.
    timezone: str = Field(default="UTC", sa_column_kwargs={"server_default": "UTC"})
    working_days: list[int] = Field(
        default_factory=lambda: [0, 1, 2, 3, 4], sa_column=Column(JSON, nullable=False, server_default="[0,1,2,3,4]")
    )
    work_start_hour: int = Field(default=9, sa_column_kwargs={"server_default": "9"})
    work_end_hour: int = Field(default=17, sa_column_kwargs={"server_default": "17"})
    digest_enabled: bool = Field(default=False, sa_column_kwargs={"server_default": sa_false()})
    # The local hour (0-23, in `timezone`) the digest goes out, and the local day it last went:
    # the conditional UPDATE on it is the claim that sends it once a day (app/services/digest.py).
    digest_hour: int = Field(default=8, sa_column_kwargs={"server_default": "8"})
    digest_sent_on: date | None = None
    created_at: datetime = Field(default_factory=utcnow)


class UserAlias(TableModel, table=True):
    __table_args__ = (UniqueConstraint("org_id", "address"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    user_id: int = Field(foreign_key="app_user.id", index=True)
    address: str


class ApiToken(TableModel, table=True):
    """A personal access token; only its SHA-256 is stored."""

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    user_id: int = Field(foreign_key="app_user.id", index=True)
    name: str = ""
    token_hash: str = Field(unique=True)
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class ConsoleSession(TableModel, table=True):
    """A signed-in admin console session. The cookie holds a random id; only its
    SHA-256 is stored, and signing out ends the session here, not just in the browser."""

    id: int | None = Field(default=None, primary_key=True)
    session_hash: str = Field(unique=True)
    org_id: int = Field(foreign_key="organisation.id")
    user_id: int = Field(foreign_key="app_user.id", index=True)
    token_id: int = Field(foreign_key="apitoken.id")  # the token signed in with: revoking it ends the session
    csrf: str
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    ended_at: datetime | None = None


class ExclusionRule(TableModel, table=True):
    """ "Never log" an address or a domain (subdomains included), org-wide or for one rep."""

    __table_args__ = (UniqueConstraint("org_id", "user_id", "kind", "value"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id", index=True)
    user_id: int | None = Field(default=None, foreign_key="app_user.id")  # None: whole organisation
    kind: str  # address | domain
    value: str  # normalised, lower-case
    created_by: int | None = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = Field(default_factory=utcnow)


class ErasedPerson(TableModel, table=True):
    """Tombstone of an erased person: only a keyed hash of the address is kept,
    so a later sync can recognise them without storing who they were."""

    __table_args__ = (UniqueConstraint("org_id", "address_hash"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    address_hash: str
    erased_at: datetime = Field(default_factory=utcnow)


class AuditEvent(TableModel, table=True):
    """Who did what, when: admins read this in the console."""

    __table_args__ = (Index("ix_auditevent_org_at", "org_id", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    actor_id: int | None = Field(default=None, foreign_key="app_user.id")  # None: the CLI or the system
    action: str  # e.g. person.erase, rule.add, mailbox.remove
    target: str = ""
    detail: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    at: datetime = Field(default_factory=utcnow)
