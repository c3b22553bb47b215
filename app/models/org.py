"""Organisation, its users and their credentials."""
from datetime import datetime

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.models.base import utcnow

CONTACT_POLICIES = ("exchanged", "sent", "all", "none")
VISIBILITY_LEVELS = ("metadata", "subject", "snippet")


class Organisation(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str
    internal_domains: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Which external addresses become contacts automatically (see sync/policy.py).
    contact_policy: str = "exchanged"
    # How much of a message is kept: metadata only, plus subject, plus snippet.
    visibility: str = "snippet"
    backfill_days: int = 365
    sync_interval_seconds: int = 300
    bulk_detection: bool = True
    created_at: datetime = Field(default_factory=utcnow)


class User(SQLModel, table=True):
    __tablename__ = "app_user"
    __table_args__ = (UniqueConstraint("org_id", "email"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id", index=True)
    email: str
    name: str = ""
    role: str = "rep"  # rep | admin
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow)


class UserAlias(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("org_id", "address"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    user_id: int = Field(foreign_key="app_user.id", index=True)
    address: str


class ApiToken(SQLModel, table=True):
    """A personal access token; only its SHA-256 is stored."""
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    user_id: int = Field(foreign_key="app_user.id", index=True)
    name: str = ""
    token_hash: str = Field(unique=True)
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
