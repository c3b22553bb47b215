"""Duplicate contacts for admins (/api/admin/duplicates, /api/admin/merges): the candidates
with their evidence, dismissing one, merging two contacts and undoing a merge by its audit
event. Each route calls its use case in app/services/duplicates.py."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Optional

from fastapi import APIRouter, Query
from pydantic import BaseModel

from app.api.deps import AdminDep, RuntimeDep, read_conn
from app.services import duplicates
from app.services.actor import Actor

router = APIRouter(prefix="/api/admin", tags=["admin"])


class DuplicateExample(BaseModel):
    text: str
    interaction_id: Optional[int] = None
    subject: Optional[str] = None
    at: Optional[datetime] = None


class DuplicateEvidence(BaseModel):
    kind: str  # address_change | same_name_same_company | same_name_in_thread | same_name_on_message | ...
    count: int
    examples: list[DuplicateExample]


class DuplicateContact(BaseModel):
    id: int
    name: str
    email: str
    addresses: list[str]
    company: Optional[str] = None
    emails: int
    last_email_at: Optional[datetime] = None


class DuplicateCandidate(BaseModel):
    key: str
    contacts: list[DuplicateContact]
    keep_id: int  # the suggested survivor
    merge_id: int
    confidence: float
    evidence: list[DuplicateEvidence]


class Dismissed(BaseModel):
    contact_ids: list[int]
    dismissed: bool


class MergeCounts(BaseModel):
    addresses: int
    participants: int
    followups: int
    deals_moved: int
    deals_dropped: int


class Merged(BaseModel):
    merge_id: int
    audit_id: int  # undo with POST /api/admin/merges/{audit_id}/undo
    survivor_id: int
    loser_id: int
    moved: MergeCounts


class MergeRow(BaseModel):
    merge_id: int
    audit_id: Optional[int] = None
    survivor_id: int
    loser_id: int
    loser_email: Optional[str] = None
    loser_name: Optional[str] = None
    state: str  # merged | undone | void
    merged_at: datetime


class Unmerged(BaseModel):
    merge_id: int
    survivor_id: int
    contact_id: int  # the contact restored
    addresses: int
    addresses_not_restored: int  # excluded from logging or erased since the merge
    participants: int
    later_participants: int  # mail that reached its addresses after the merge


@router.get(
    "/duplicates",
    response_model=list[DuplicateCandidate],
    summary="Contacts that look like one person, with the evidence and a confidence",
    description="The stored list: brought up to date by each merge, undo and removal, and every few "
    "minutes for new mail (the console says how fresh it is).",
)
def candidates(caller: AdminDep, rt: RuntimeDep, limit: Annotated[int, Query(ge=1, le=1000)] = 200):
    return duplicates.candidates(rt, caller.org_id, limit=limit)


@router.post(
    "/duplicates/{contact_id}/dismiss/{other_id}",
    response_model=Dismissed,
    summary="Not the same person: never propose this pair again",
)
def dismiss(caller: AdminDep, rt: RuntimeDep, contact_id: int, other_id: int):
    return duplicates.dismiss(rt, Actor.of(caller), contact_id, other_id)


@router.post(
    "/contacts/{contact_id}/merge/{other_id}",
    response_model=Merged,
    summary="Merge contact other_id into contact_id (kept); undo by the audit event",
)
def merge(caller: AdminDep, rt: RuntimeDep, contact_id: int, other_id: int):
    return duplicates.merge(rt, Actor.of(caller), contact_id, other_id)


@router.get("/merges", response_model=list[MergeRow], summary="The latest contact merges")
def merges(caller: AdminDep, rt: RuntimeDep, limit: Annotated[int, Query(ge=1, le=500)] = 50):
    with read_conn(rt) as conn:
        return duplicates.merges_of(conn, caller.org_id, limit=limit)


@router.post("/merges/{audit_id}/undo", response_model=Unmerged, summary="Undo the merge recorded by this audit event")
def undo(caller: AdminDep, rt: RuntimeDep, audit_id: int):
    return duplicates.unmerge(rt, Actor.of(caller), audit_id)
