"""The follow-up queue: what a rep should chase or answer, computed from mail (sync/followups.py)."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field

from app.models.base import TableModel, utcnow


class FollowUpKind(StrEnum):
    WAITING = "waiting"  # the rep wrote; nobody on the contact's side answered
    OWE = "owe"  # the contact wrote; nobody of ours answered
    QUIET = "quiet"  # a key account (or open deal) with no interaction for a while


class FollowUpStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"  # by a reply, a meeting, or new activity (closed_reason)
    DISMISSED = "dismissed"  # the rep said done


class FollowUp(TableModel, table=True):
    """One row per thread (or per quiet contact/company: thread_key "quiet:contact:<id>"),
    so re-syncs and copies of one email in several mailboxes never make a second one.
    It describes the thread's latest meaningful message: a newer one rewrites it."""

    __table_args__ = (
        UniqueConstraint("org_id", "thread_key"),
        Index("ix_followup_user_due", "org_id", "user_id", "status", "due_at"),
        # Ingest's cross-thread closing reads open rows of one kind by `since` (sync/followups.py).
        Index("ix_followup_open_since", "org_id", "kind", "status", "since"),
    )
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    thread_key: str
    kind: str
    user_id: int | None = Field(default=None, foreign_key="app_user.id")  # the rep it is for
    interaction_id: int | None = Field(default=None, foreign_key="interaction.id")  # the message that opened it
    contact_id: int | None = Field(default=None, foreign_key="contact.id")
    company_id: int | None = Field(default=None, foreign_key="company.id")
    address: str | None = None  # the other side's address (also when it is not a contact)
    since: datetime  # when the opening message was sent (or the last interaction, for quiet)
    due_at: datetime  # since + the organisation's business days/hours in the rep's calendar
    status: str = FollowUpStatus.OPEN
    closed_reason: str | None = None  # reply | meeting | activity | old
    closed_at: datetime | None = None
    snoozed_until: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)
