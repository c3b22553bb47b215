"""Duplicate contacts: the merges made (with what each moved, so it can be undone) and the
candidate pairs an admin dismissed (so they are not proposed again)."""

from datetime import datetime

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field

from app.models.base import TableModel, utcnow


class MergeState:
    MERGED = "merged"
    UNDONE = "undone"
    # The survivor was deleted (erased, or left with no mail by a rule): nothing can be put
    # back, and the record's copy of the merged contact was dropped with it.
    VOID = "void"


class ContactMerge(TableModel, table=True):
    """One merge of `loser_id` into `survivor_id`. `record` holds the merged contact's row and
    the ids of every row the merge moved or changed, exactly what an undo puts back.

    The contact ids are plain integers, not foreign keys: the loser is deleted by the merge
    and the survivor may be erased later; the record must outlive both to say so."""

    __table_args__ = (
        Index("ix_contactmerge_org_survivor", "org_id", "survivor_id"),
        Index("ix_contactmerge_org_loser", "org_id", "loser_id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    survivor_id: int
    loser_id: int
    audit_id: int | None = None  # the "contact.merge" audit event that an undo names
    state: str = MergeState.MERGED
    record: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    merged_at: datetime = Field(default_factory=utcnow)
    merged_by: int | None = Field(default=None, foreign_key="app_user.id")
    undone_at: datetime | None = None


class DuplicateDismissal(TableModel, table=True):
    """An admin said these two contacts are different people (contact_a < contact_b)."""

    org_id: int = Field(foreign_key="organisation.id", primary_key=True)
    contact_a: int = Field(primary_key=True)
    contact_b: int = Field(primary_key=True)
    dismissed_by: int | None = Field(default=None, foreign_key="app_user.id")
    dismissed_at: datetime = Field(default_factory=utcnow)


class DuplicateCandidate(TableModel, table=True):
    """A stored candidate pair (contact_a < contact_b) with its evidence, as
    app/services/duplicates.py found it: the console and the API read these rows instead of
    searching the whole organisation on each view. Dismissed pairs stay here and are left out
    on reading, so a dismissal needs no refresh."""

    __table_args__ = (Index("ix_duplicatecandidate_org_confidence", "org_id", "confidence"),)
    org_id: int = Field(foreign_key="organisation.id", primary_key=True)
    contact_a: int = Field(primary_key=True)
    contact_b: int = Field(primary_key=True)
    confidence: float
    keep_hint: int | None = None  # the contact to keep when the evidence says so (a new address)
    evidence: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class DuplicateScan(TableModel, table=True):
    """How fresh an organisation's stored candidates are: when they were last brought up to
    date, when the whole organisation was last searched, and the participant and contact ids
    already looked at (the scheduler checks only the contacts of newer rows)."""

    org_id: int = Field(foreign_key="organisation.id", primary_key=True)
    refreshed_at: datetime = Field(default_factory=utcnow)
    full_at: datetime = Field(default_factory=utcnow)
    participant_mark: int = 0
    contact_mark: int = 0
    interaction_mark: int = 0  # the last interaction the whole search read
    # what it found announced: [interaction id, from address, announced address], oldest first
    announcements: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
