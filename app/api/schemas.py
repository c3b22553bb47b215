"""Response shapes (they also document the API at /docs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from pydantic import BaseModel


class CompanyRef(BaseModel):
    id: int
    name: str
    domain: str


class FieldSource(BaseModel):
    """Where an enriched value came from: "typed" by a person, or a "signature" of
    the contact's own mail (the interaction, and when it was sent)."""

    source: str
    at: str | None = None
    interaction_id: int | None = None


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
    mobile: str | None = None
    website: str | None = None
    company_name: str | None = None  # the employer as the contact signs
    honorific: str = ""
    name_suffix: str = ""
    provenance: dict[str, FieldSource] = {}


class UserRef(BaseModel):
    id: int
    name: str | None
    email: str | None = None


class Author(BaseModel):
    """Who wrote a note or task (timeline items carry no author address)."""

    id: int
    name: str | None


class Colleague(BaseModel):
    id: int
    name: str
    email: str
    interactions: int
    last_interaction_at: datetime | None
    strength: int = 0  # 0-100, app/services/strength.py
    strength_explanation: str = ""  # "12 emails both ways in the last 90 days, met twice"


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
    # The From names someone of the organisation but nothing vouched for it (a
    # forgery, or internal mail not yet seen in the sender's own Sent folder):
    # kept as received, the sender shown as claimed, not credited as a colleague.
    unverified_sender: bool = False
    # Recipients the message named beyond the 500 per field kept as participants (a mass mailing).
    recipients_not_kept: int = 0
    colleagues: list[ColleagueRef]
    participants: list[Person]
    # meetings
    ends_at: datetime | None = None
    location: str | None = None
    status: str | None = None
    # notes and tasks
    body: str | None = None
    author: Author | None = None
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


class NeverLogConsequence(BaseModel):
    """What a "never log" rule would delete: stored mail and meetings only this rep's mailboxes hold."""

    emails: int
    meetings: int


class ContactConflict(BaseModel):
    """409 from creating a contact: the address is already one, here is its id."""

    detail: str
    error: str = "conflict"
    field: Optional[str] = None
    contact_id: int


class Me(BaseModel):
    id: int
    email: str
    name: str
    organisation: str
    organisation_id: int  # names can be alike: a sign-in link of another organisation is told by this
    role: str  # rep | manager | admin
    stages: list[str]


class NeverLogRule(BaseModel):
    kind: str  # address | domain
    value: str
    removed_interactions: int


class LoggedEmail(BaseModel):
    logged: bool
    interaction_id: int | None
    created: bool  # false: the email was already on the timeline
    reason: str | None  # why it was not kept: "internal", "excluded by rule", "bulk or automated", ...


# -- mailboxes (app/services/mailboxes.describe) ----------------------------------------


class MailboxStatus(BaseModel):
    id: int
    kind: str  # imap | m365 | caldav | demo
    owner: str | None
    server: str | None  # host:port, IMAP only
    username: str | None
    status: str  # pending | importing | active | failed | paused
    stage: str  # idle | running
    healthy: bool
    last_success_at: datetime | None
    last_attempt_at: datetime | None
    next_sync_at: datetime | None
    last_error: str | None
    last_error_kind: str | None
    fix: str | None = None  # what to do about last_error, in words (None: nothing to add)
    messages_imported: int
    skipped: dict[str, int]  # messages not kept, by reason
    # every completed folder's server count = stored + skipped + removed by an admin (see docs/architecture.md)
    reconciled: bool
    missing: int  # messages on the server in completed folders that are neither stored nor skipped
    kept_more: int = 0  # copies kept beyond what the servers hold (mail deleted there); no alarm
    attention: str | None  # why the mailbox needs attention although its runs succeed (None: nothing)
    attention_fix: str | None


class FolderStatus(BaseModel):
    name: str
    role: str  # inbox | sent | archive | other
    selected: bool
    status: str  # ok | error
    last_error: str | None
    messages: int
    backfill_done: bool
    # the connector's own resume point (IMAP UIDs, Graph delta links, ...), with server_count and counted_at
    cursor: dict[str, Any]
    last_synced_at: datetime | None
    # reconciliation (app/services/reconcile.py): server_count = stored + skipped + removed, once backfill is done
    # the server's count of what the sync is meant to read, as last taken (at most hourly, and at once
    # after a removal or a re-read); calendars count instances in their window (None: not counted yet)
    server_count: int | None
    stored: int  # copies stored, counted (messages is the folder's running count of them)
    skipped: int  # skipped with a reason, unreadable included
    removed: int  # taken off the timeline by an admin (a rule, an erasure)
    difference: int | None  # server_count - stored - skipped - removed; > 0: missing; < 0: kept more
    reconciliation: str  # reconciled | missing | kept more | importing | not counted


class Unreadable(BaseModel):
    folder: str
    remote_id: str
    reason: str


class SkippedItem(BaseModel):
    """An item the sync read and left off the timeline on purpose, with why."""

    folder: str
    remote_id: str
    reason: str  # internal | bulk or automated | excluded by rule | internal meeting | ...
    skipped_at: datetime


class MailboxDetail(MailboxStatus):
    folders: list[FolderStatus]
    unreadable: list[Unreadable]  # the latest 50
    skipped_items: list[SkippedItem]  # the latest 50, newest first


class Queued(BaseModel):
    queued: bool


# -- the sidebar's configuration and the health checks ---------------------------------


class EntraConfig(BaseModel):
    client_id: str
    scope: str
    scope_uri: str
    authority: str
    tenant: str  # the one connected tenant, or "organizations"


class PanelConfig(BaseModel):
    stages: list[str]
    entra: EntraConfig | None  # null: Microsoft sign-in is not configured


class Health(BaseModel):
    ok: bool


class Unhealthy(BaseModel):
    ok: bool
    database: str


ContactCard.model_rebuild()
