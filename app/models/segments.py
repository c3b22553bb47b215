"""Saved segments: a named filter over contacts or companies, private to its author or shared
with the organisation (app/services/segments.py applies it)."""

from datetime import datetime

from sqlalchemy import JSON, Column, Index, false as sa_false
from sqlmodel import Field

from app.models.base import TableModel, utcnow


class Segment(TableModel, table=True):
    __table_args__ = (Index("ix_segment_org_owner", "org_id", "owner_id"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    # The author; None: made at the CLI by the operator (then it is always shared).
    owner_id: int | None = Field(default=None, foreign_key="app_user.id")
    name: str
    entity: str = "contacts"  # contacts | companies
    # The cleaned filter (segments.clean_filters), stored as validated so reading never fails.
    filters: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    shared: bool = Field(default=False, sa_column_kwargs={"server_default": sa_false()})
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
