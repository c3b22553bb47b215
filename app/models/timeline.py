"""The shared timeline: contacts, companies, interactions and who took part."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Column, Index, UniqueConstraint, false as sa_false, text
from sqlmodel import Field

from app.models.base import TableModel, utcnow


class Company(TableModel, table=True):
    __table_args__ = (UniqueConstraint("org_id", "domain"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    domain: str  # registrable domain, e.g. example.co.uk
    name: str
    key_account: bool = Field(default=False, sa_column_kwargs={"server_default": sa_false()})
    created_at: datetime = Field(default_factory=utcnow)
    # Where the name came from: {"name": {"source": "signature" | "typed", "at": ..., "interaction_id": ...}};
    # no entry: split from the domain (sync/enrichment.py).
    provenance: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False, server_default="{}"))


class Contact(TableModel, table=True):
    # ix_contact_org_created: the new-contacts report range-scans creation times (app/services/reports.py)
    __table_args__ = (
        Index("ix_contact_org_search", "org_id", "search_name"),
        Index("ix_contact_org_created", "org_id", "created_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    name: str = ""
    search_name: str = ""  # lower-cased name for prefix search
    primary_email: str
    company_id: int | None = Field(default=None, foreign_key="company.id", index=True)
    title: str | None = None
    phone: str | None = None  # E.164 when it came from a signature
    mobile: str | None = None  # E.164 when it came from a signature
    website: str | None = None
    company_name: str | None = None  # the employer as the contact signs ("Aurora Telecom plc")
    honorific: str = Field(default="", sa_column_kwargs={"server_default": ""})  # "Dr.", kept out of name
    name_suffix: str = Field(default="", sa_column_kwargs={"server_default": ""})  # "Jr.", "PhD"
    # Per enriched field, where its value came from: {"title": {"source": "typed" | "signature",
    # "at": ISO time, "interaction_id": ..., "user_id": ...}}. A typed value is never overwritten
    # by a signature; among signatures the latest message wins (sync/enrichment.py).
    provenance: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False, server_default="{}"))
    stage: str | None = None
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    owner_id: int | None = Field(default=None, foreign_key="app_user.id")
    key_account: bool = Field(default=False, sa_column_kwargs={"server_default": sa_false()})
    created_at: datetime = Field(default_factory=utcnow)


class ContactAddress(TableModel, table=True):
    __table_args__ = (UniqueConstraint("org_id", "address"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    contact_id: int = Field(foreign_key="contact.id", index=True)
    address: str  # normalised, lower-case


class InteractionKind(StrEnum):
    EMAIL = "email"
    MEETING = "meeting"
    NOTE = "note"
    TASK = "task"


class Interaction(TableModel, table=True):
    """One email or meeting, stored once per organisation however many reps saw it."""

    __table_args__ = (
        UniqueConstraint("org_id", "message_key"),
        Index("ix_interaction_thread", "org_id", "thread_key"),
        # The rep's day (app/services/day.py). Partial, so mail (nearly every row) pays nothing
        # at import: meetings by time, and tasks and notes by author and due date. Without
        # them the day took 4 s for a rep on 32,000 emails (bench/day.py).
        Index(
            "ix_interaction_meeting_time",
            "org_id",
            "occurred_at",
            sqlite_where=text("kind = 'meeting'"),
            postgresql_where=text("kind = 'meeting'"),
        ),
        Index(
            "ix_interaction_author_due",
            "org_id",
            "author_id",
            "due_at",
            sqlite_where=text("author_id IS NOT NULL"),
            postgresql_where=text("author_id IS NOT NULL"),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    kind: str = InteractionKind.EMAIL
    # email: Message-ID (or a digest of the headers); meeting: "ical:" UID [+ "/" recurrence id];
    # note/task: "note:" + a random id
    message_key: str
    occurred_at: datetime
    direction: str  # in | out
    subject: str | None = None
    snippet: str | None = None
    thread_key: str
    from_address: str | None = None
    # email: the From names someone of the organisation, but nothing vouched for it
    # (sync/senders.py), so it is kept as received, not as their sent mail
    unverified_sender: bool = Field(default=False, sa_column_kwargs={"server_default": sa_false()})
    # email: an auto-reply (out of office) or machine mail kept on the timeline; it never
    # opens or closes a follow-up (sync/followups.py)
    automated: bool = Field(default=False, sa_column_kwargs={"server_default": sa_false()})
    # email: recipients the message named beyond the 500 of each field kept as participants
    # (connectors/mailparse.py MAX_ADDRESSES), so a mass mailing says what it left out
    recipients_not_kept: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # meetings
    ends_at: datetime | None = None
    location: str | None = None
    status: str | None = None  # confirmed | tentative | cancelled
    sequence: int = 0  # iCalendar SEQUENCE: an older copy never overwrites a newer one
    # notes and tasks
    body: str | None = None
    author_id: int | None = Field(default=None, foreign_key="app_user.id")
    due_at: datetime | None = None
    done_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Participant(TableModel, table=True):
    """A contact or colleague on an interaction.

    occurred_at and company_id are copied from the interaction and contact so
    that a contact's (or company's) timeline is one index range scan.
    """

    __table_args__ = (
        UniqueConstraint("interaction_id", "address"),
        # org_id leads so each lookup matches two equality columns: the planner
        # then always picks these over the address index, statistics or not.
        Index("ix_participant_contact_time", "org_id", "contact_id", "occurred_at", "interaction_id"),
        Index("ix_participant_company_time", "org_id", "company_id", "occurred_at", "interaction_id"),
        Index("ix_participant_org_address", "org_id", "address"),
        # a colleague's rows by time (reports: one rep's activity over a range)
        Index("ix_participant_user_time", "org_id", "user_id", "occurred_at", "role", "interaction_id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    interaction_id: int = Field(foreign_key="interaction.id")
    occurred_at: datetime
    address: str
    name: str | None = None
    role: str  # from | to | cc | bcc | organizer | attendee | optional | about (notes, tasks)
    response: str | None = None  # meetings: accepted | declined | tentative | needs-action
    contact_id: int | None = Field(default=None, foreign_key="contact.id")
    company_id: int | None = Field(default=None, foreign_key="company.id")
    user_id: int | None = Field(default=None, foreign_key="app_user.id")


class InteractionSource(TableModel, table=True):
    """One mailbox copy of an interaction: where it was seen, exactly."""

    __table_args__ = (
        UniqueConstraint("mailbox_id", "folder_id", "remote_id"),
        # Gmail: one copy per message id and folder, and the mailbox's copies of a message (or of
        # a thread) found by its id (sync/ingest.py). Partial: every other source's copies
        # (provider ids NULL) cost nothing.
        Index(
            "ix_interactionsource_provider_id",
            "mailbox_id",
            "provider_id",
            "folder_id",
            unique=True,
            sqlite_where=text("provider_id IS NOT NULL"),
            postgresql_where=text("provider_id IS NOT NULL"),
        ),
        Index(
            "ix_interactionsource_provider_thread",
            "mailbox_id",
            "provider_thread",
            sqlite_where=text("provider_thread IS NOT NULL"),
            postgresql_where=text("provider_thread IS NOT NULL"),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    interaction_id: int = Field(foreign_key="interaction.id", index=True)
    mailbox_id: int = Field(foreign_key="mailbox.id")
    folder_id: int = Field(foreign_key="folderstate.id")
    # The provider's id of this copy: "UIDVALIDITY/UID" for IMAP. A copy whose folder was read
    # again from scratch (UIDVALIDITY changed) but which a provider id can recognise is kept as
    # "stale:" + its old id until the new listing re-links it (or, when the listing ends
    # without it, deleted: sync/engine.py).
    remote_id: str
    # The provider's own id of the message, the same in every folder of the mailbox and for
    # good (Gmail's X-GM-MSGID, an unsigned 64-bit number as decimal text), and of its
    # conversation in this mailbox (X-GM-THRID). NULL for every other source.
    provider_id: str | None = None
    provider_thread: str | None = None


class ContactStats(TableModel, table=True):
    """A contact's relationship summary, kept current at ingest (sync/stats.py)
    so a lookup reads one row instead of aggregating the whole history."""

    # the new-contacts report range-scans first emails (app/services/reports.py)
    __table_args__ = (Index("ix_contactstats_org_first_email", "org_id", "first_email_at"),)
    contact_id: int = Field(foreign_key="contact.id", primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    emails_in: int = 0
    emails_out: int = 0
    meetings: int = 0
    first_email_at: datetime | None = None
    last_email_at: datetime | None = None


class ContactColleague(TableModel, table=True):
    """How many emails one colleague exchanged with a contact, and the latest."""

    # one rep's contacts, for the reports scoped to a rep (app/services/reports.py)
    __table_args__ = (Index("ix_contactcolleague_org_user", "org_id", "user_id", "contact_id"),)
    contact_id: int = Field(foreign_key="contact.id", primary_key=True)
    user_id: int = Field(foreign_key="app_user.id", primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    interactions: int = 0
    last_at: datetime | None = None


class ContactColleagueDay(TableModel, table=True):
    """Per contact, colleague and UTC day (YYYY-MM-DD): the emails in, the emails out and the
    meetings (any status) they shared, and the latest of them. Relationship strength sums its
    90 days of these (app/services/strength.py) instead of reading every interaction: for a
    contact with 5,645 emails in those days that read took 50-80 ms (docs/performance.md,
    section 8)."""

    contact_id: int = Field(foreign_key="contact.id", primary_key=True)
    day: str = Field(primary_key=True)
    user_id: int = Field(foreign_key="app_user.id", primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    emails_in: int = 0
    emails_out: int = 0
    meetings: int = 0
    last_at: datetime | None = None


class SummaryCheck(TableModel, table=True):
    """The latest recount of an organisation's kept summaries (sync/stats.py: check), stored so
    the health pages show it without recounting on every view."""

    org_id: int = Field(foreign_key="organisation.id", primary_key=True)
    checked_at: datetime
    contacts: int = 0  # contacts recounted
    disagreeing: int = 0  # of which the kept rows disagree with the recount
    # the first of those contacts, and the mailboxes holding their mail (those are not shown healthy)
    contact_ids: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    mailbox_ids: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class RepDay(TableModel, table=True):
    """One colleague's activity on one UTC day, kept current at ingest (sync/reportsums.py) so the
    activity report reads reps x days rows instead of every participant row of the range."""

    org_id: int = Field(foreign_key="organisation.id", primary_key=True)
    user_id: int = Field(foreign_key="app_user.id", primary_key=True)
    day: str = Field(primary_key=True)  # YYYY-MM-DD, the UTC day
    emails_out: int = 0
    emails_in: int = 0
    meetings: int = 0


class AnswerSample(TableModel, table=True):
    """One answered turn of an email thread (sync/reportsums.py): who answered (direction out: a
    rep answered a customer; in: a customer answered), when the turn it answers began, and the
    sender the answer is credited to (the rep's address either way)."""

    __table_args__ = (
        # Each percentile is the k-th entry of one (address, side) in seconds order, read in
        # place: covering, the range's times included (reports.answer_figures).
        Index("ix_answersample_org_sender", "org_id", "sender", "direction", "seconds", "answered_at", "asked_at"),
        Index("ix_answersample_org_thread", "org_id", "thread_key"),
    )
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    thread_key: str
    asked_at: datetime
    answered_at: datetime
    seconds: float
    direction: str  # out: a rep answered; in: a customer answered
    sender: str | None = None  # lower-case address of the rep concerned


class MeetingSeries(TableModel, table=True):
    """The newest invitation seen of a recurring meeting's whole series: its SEQUENCE and the
    occurrences it listed in the window it was read over. A first import reads mail newest first,
    so an older invitation of the series comes after it; the occurrences that one lists and this
    one did not (moved, or cut by "this and following") stay off the timeline (sync/meetings.py)."""

    __table_args__ = (UniqueConstraint("org_id", "series_key"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    series_key: str = Field(max_length=900)  # 'ical:UID', as meeting_key(uid, None)
    sequence: int = 0
    since: str  # the recurrence ids of its window, from ...
    until: str  # ... up to (not including)
    listed: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))  # its recurrence ids
    updated_at: datetime = Field(default_factory=utcnow)
