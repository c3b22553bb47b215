"""Response shapes (they also document the API at /docs)."""
from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class CompanyRef(BaseModel):
    id: int
    name: str
    domain: str


class ContactCard(BaseModel):
    id: int
    name: str
    email: str
    emails: list[str]
    title: str | None
    phone: str | None
    stage: str | None
    tags: list[str]
    owner_id: int | None
    owner: "UserRef | None" = None
    company: CompanyRef | None


class UserRef(BaseModel):
    id: int
    name: str | None
    email: str | None = None


class Colleague(BaseModel):
    id: int
    name: str
    email: str
    interactions: int
    last_interaction_at: datetime | None


class Summary(BaseModel):
    emails_in: int
    emails_out: int
    meetings: int
    first_interaction_at: datetime | None
    last_interaction_at: datetime | None
    colleagues: list[Colleague]


class Person(BaseModel):
    address: str
    name: str | None
    role: str
    contact_id: int | None = None
    response: str | None = None  # meetings: accepted | declined | tentative | needs-action


class ColleagueRef(BaseModel):
    id: int
    name: str | None
    address: str
    response: str | None = None


class Sender(BaseModel):
    address: str
    name: str | None


class TimelineItem(BaseModel):
    id: int
    kind: str
    occurred_at: datetime
    direction: str
    subject: str | None
    snippet: str | None
    thread_key: str
    sender: Sender | None = None
    colleagues: list[ColleagueRef]
    participants: list[Person]
    # meetings
    ends_at: datetime | None = None
    location: str | None = None
    status: str | None = None
    # notes and tasks
    body: str | None = None
    author: UserRef | None = None
    due_at: datetime | None = None
    done_at: datetime | None = None


class TimelinePage(BaseModel):
    items: list[TimelineItem]
    next_cursor: str | None


class CompanyContact(BaseModel):
    id: int
    name: str
    email: str
    title: str | None


class Lookup(BaseModel):
    contact: ContactCard
    summary: Summary
    upcoming: list[TimelineItem]  # the next meetings (at most 5), soonest first; the timeline holds the past
    next_meeting: TimelineItem | None
    last_meeting: TimelineItem | None
    company_contacts: list[CompanyContact]
    timeline: TimelinePage


class UnknownAddress(BaseModel):
    name: str  # the name the address wrote under, else guessed from first.last@; "" when neither
    company: CompanyRef | None  # the organisation's company of its domain, if any
    company_contacts: list[CompanyContact]
    colleagues: list[Colleague]  # who work with that company, latest first (interactions summed per person)
    last_interaction: TimelineItem | None  # the company's latest


class LookupMiss(BaseModel):
    detail: str
    unknown: UnknownAddress | None  # None for an address that is not valid


class ContactHit(BaseModel):
    id: int
    name: str
    email: str
    company: str | None


class CompanyDetail(BaseModel):
    id: int
    name: str
    domain: str
    contacts: list[CompanyContact]


ContactCard.model_rebuild()
