"""Deals: pipelines of ordered stages, the deals moving through them, and what ties a deal
to the timeline (its contacts and the mail threads linked to it)."""

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Column, Index, UniqueConstraint, false as sa_false
from sqlmodel import Field

from app.models.base import TableModel, utcnow


class StageKind(StrEnum):
    """Where a stage leaves a deal: still being worked, or closed (won or lost: final)."""

    OPEN = "open"
    WON = "won"
    LOST = "lost"


class DealVisibility(StrEnum):
    """The organisation's setting (organisation.deal_visibility): which deals a rep sees and edits.
    Admins always see every deal."""

    ALL = "all"  # every deal of the organisation
    OWN = "own"  # the rep's own deals and those marked shared


class Pipeline(TableModel, table=True):
    __table_args__ = (UniqueConstraint("org_id", "name"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id", index=True)
    name: str
    position: int = 0
    created_at: datetime = Field(default_factory=utcnow)


class PipelineStage(TableModel, table=True):
    __table_args__ = (UniqueConstraint("pipeline_id", "name"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    pipeline_id: int = Field(foreign_key="pipeline.id", index=True)
    name: str
    position: int  # order on the board, left to right
    kind: str = StageKind.OPEN
    probability: int = 0  # win probability, percent


class Deal(TableModel, table=True):
    __table_args__ = (
        Index("ix_deal_org_stage", "org_id", "stage_id"),
        Index("ix_deal_org_owner", "org_id", "owner_id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    pipeline_id: int = Field(foreign_key="pipeline.id")
    stage_id: int = Field(foreign_key="pipelinestage.id")
    name: str
    company_id: int | None = Field(default=None, foreign_key="company.id")
    owner_id: int = Field(foreign_key="app_user.id")
    # Integer minor units (cents) of an ISO 4217 currency: no float ever rounds a price.
    amount_minor: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    currency: str = "EUR"
    close_date: date | None = None
    shared: bool = Field(default=False, sa_column_kwargs={"server_default": sa_false()})
    lost_reason: str | None = None
    opened_at: datetime = Field(default_factory=utcnow)  # the deal timeline starts here
    stage_changed_at: datetime = Field(default_factory=utcnow)
    closed_at: datetime | None = None
    created_by: int | None = Field(default=None, foreign_key="app_user.id")
    updated_at: datetime = Field(default_factory=utcnow)


class DealContact(TableModel, table=True):
    __table_args__ = (Index("ix_dealcontact_org_contact", "org_id", "contact_id"),)
    deal_id: int = Field(foreign_key="deal.id", primary_key=True)
    contact_id: int = Field(foreign_key="contact.id", primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")


class DealThread(TableModel, table=True):
    """A mail thread linked to a deal, by the interaction's thread_key: every later reply that
    ingest keys to the same thread shows on the deal without anyone linking it."""

    __table_args__ = (Index("ix_dealthread_org_thread", "org_id", "thread_key"),)
    deal_id: int = Field(foreign_key="deal.id", primary_key=True)
    thread_key: str = Field(primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    linked_by: int | None = Field(default=None, foreign_key="app_user.id")
    linked_at: datetime = Field(default_factory=utcnow)


class DealStageChange(TableModel, table=True):
    """Who moved a deal to which stage, when (the first row is where it was created)."""

    __table_args__ = (Index("ix_dealstagechange_deal_at", "deal_id", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    deal_id: int = Field(foreign_key="deal.id")
    from_stage_id: int | None = Field(default=None, foreign_key="pipelinestage.id")
    to_stage_id: int = Field(foreign_key="pipelinestage.id")
    user_id: int | None = Field(default=None, foreign_key="app_user.id")  # None: the CLI operator
    at: datetime = Field(default_factory=utcnow)
