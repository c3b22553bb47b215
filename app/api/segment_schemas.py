"""Response and request models of saved segments, imports and exports (app/api/segments.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional, Union

from pydantic import BaseModel, Field


class SegmentFilters(BaseModel):
    """A segment's filter; every key optional (see app/services/segments.py FILTER_KEYS)."""

    tags: Optional[list[str]] = None
    stage: Optional[list[str]] = None
    owner_id: Optional[int] = Field(None, description="an owner's user id; 0 for nobody's")
    domain: Optional[str] = None
    last_before: Optional[str] = Field(None, description="last email or meeting before this day (YYYY-MM-DD)")
    last_after: Optional[str] = Field(None, description="last email or meeting on or after this day (YYYY-MM-DD)")
    min_strength: Optional[int] = None
    max_strength: Optional[int] = None
    has_open_deal: Optional[bool] = None
    q: Optional[str] = None


class SegmentIn(BaseModel):
    name: str
    entity: str = "contacts"
    filters: SegmentFilters = SegmentFilters()
    shared: bool = False


class SegmentPatch(BaseModel):
    name: Optional[str] = None
    filters: Optional[SegmentFilters] = None
    shared: Optional[bool] = None


class Segment(BaseModel):
    id: int
    name: str
    entity: str
    filters: dict[str, Any] = Field(description="the cleaned filter: only the keys it uses (see SegmentFilters)")
    shared: bool
    owner_id: Optional[int]
    owner_email: Optional[str]
    created_at: datetime
    updated_at: datetime


class Deleted(BaseModel):
    deleted: int


class RowCompany(BaseModel):
    id: int
    name: str
    domain: str


class ContactRow(BaseModel):
    id: int
    name: str
    email: str
    title: Optional[str]
    honorific: str = ""  # "Dr.", kept apart from the name
    name_suffix: str = ""  # "Jr.", "PhD"
    phone: Optional[str]
    stage: Optional[str]
    tags: list[str]
    owner_id: Optional[int]
    owner_email: Optional[str]
    company: Optional[RowCompany]
    last_interaction_at: Optional[datetime]
    strength: int
    strength_explanation: str


class CompanyRow(BaseModel):
    id: int
    name: str
    domain: str
    key_account: bool
    contacts: int
    last_interaction_at: Optional[datetime]
    strength: int
    strength_explanation: str


class SegmentPage(BaseModel):
    entity: str
    filters: dict[str, Any]
    items: list[Union[ContactRow, CompanyRow]]
    next_after: Optional[int] = Field(description="pass as `after` for the next page; null at the end")
    segment: Optional[Segment] = None


class RowError(BaseModel):
    row: int = Field(
        description="the row's number as a spreadsheet shows it (the header is row 1); a vCard's card number"
    )
    field: Optional[str]
    reason: str


class ImportResult(BaseModel):
    entity: str
    format: str
    encoding: Optional[str]
    mapping: dict[str, str]
    dry_run: bool
    written: bool
    rows: int
    created: int
    updated: int
    unchanged: int
    skipped: int
    error_count: int
    errors: list[RowError]
    notes: list[str]


class PreviewError(BaseModel):
    field: Optional[str]
    reason: str


class PreviewRow(BaseModel):
    row: int
    values: dict[str, str]
    error: Optional[PreviewError]
    notes: list[str]


class ImportPreview(BaseModel):
    entity: str
    format: str
    encoding: Optional[str]
    delimiter: Optional[str]
    headers: list[str]
    mapping: dict[str, str]
    fields: list[str]
    rows: list[PreviewRow]
    notes: list[str]
