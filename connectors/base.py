"""The shape every connector shares: what a connector is built from
(ConnectorSpec, CalendarWindow), folders, batches of records, cursors, errors
(ErrorKind, Fix)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from enum import StrEnum
from typing import Iterator, NamedTuple, Protocol, Sequence


class ErrorKind(StrEnum):
    """The five kinds of failure the engine tells apart (stored as Mailbox.last_error_kind)."""

    AUTH = "auth"  # credentials refused or revoked: a person must act
    TRANSIENT = "transient"  # network trouble, server unavailable: retried with backoff
    THROTTLED = "throttled"  # the provider asked us to slow down
    CURSOR_EXPIRED = "cursor_expired"  # the stored cursor is no longer valid
    BAD_DATA = "bad_data"  # one item (or one folder) cannot be understood


class Fix(StrEnum):
    """What a person has to do, when the connector knows better than its error kind.
    The words shown to people are in sync/fixes.py, keyed by this code and the source."""

    PASSWORD = "password"  # the server refused the username or password
    SIGN_IN = "sign_in"  # a person's Microsoft 365 sign-in expired, was revoked or is missing
    APP_CREDENTIAL = "app_credential"  # Entra rejected (or we cannot read) the tenant app's credential
    CONSENT = "consent"  # the app lacks Mail.Read / Calendars.Read with admin consent
    ACCESS_POLICY = "access_policy"  # an Exchange application access policy excludes this mailbox
    NO_MAILBOX = "no_mailbox"  # the provider has no usable mailbox for this address (address, licence)
    IMAP_SIGN_IN = "imap_sign_in"  # Exchange Online refused the OAuth (XOAUTH2) IMAP login
    DELEGATION = "delegation"  # Google: the service account lacks domain-wide delegation (or a scope)
    SERVICE_KEY = "service_key"  # Google refused (or we cannot read) the service account's key
    GMAIL_IMAP = "gmail_imap"  # Gmail refused the XOAUTH2 IMAP login (IMAP off for the user)
    GOOGLE_SIGN_IN = "google_sign_in"  # a rep's own Google sign-in was revoked, expired or is unusable


class ConnectorError(Exception):
    """Base of the few error kinds the engine understands. The message says what
    happened; `kind` and `fix` are values the engine acts on (never words in the
    message)."""

    kind = ErrorKind.TRANSIENT

    def __init__(self, message: str, *, retry_after: float | str | None = None, fix: Fix | None = None):
        super().__init__(message)
        self.retry_after = retry_after_seconds(retry_after)
        self.fix = fix


def retry_after_seconds(value) -> float | None:
    """A Retry-After as seconds, whatever form it came in: a number, a numeric
    string, or an HTTP date (RFC 9110 10.2.3). None when absent or unreadable."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return max(0.0, float(value))
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class AuthError(ConnectorError):
    """Credentials refused or revoked: a person must act."""

    kind = ErrorKind.AUTH


class TransientError(ConnectorError):
    """Network trouble, server unavailable: retry with backoff."""

    kind = ErrorKind.TRANSIENT


class ThrottledError(ConnectorError):
    """The provider asked us to slow down (retry_after seconds)."""

    kind = ErrorKind.THROTTLED


class CursorExpiredError(ConnectorError):
    """The stored cursor is no longer valid; the folder must be re-listed."""

    kind = ErrorKind.CURSOR_EXPIRED


class BadDataError(ConnectorError):
    """One item cannot be understood; the rest of the sync carries on."""

    kind = ErrorKind.BAD_DATA


def own_refusal(exc: BaseException | None) -> str | None:
    """The reason of a connection this process refused by its own rule (a ConnectionRefusedError
    with a message and no errno: app/netguard.py), found through the wrappers HTTP clients add."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, ConnectionRefusedError) and exc.errno is None and str(exc):
            return str(exc)
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


# Keyed by ErrorKind, whose members equal their strings: the string a pipe carries finds its class.
ERRORS: dict[str, type[ConnectorError]] = {
    cls.kind: cls for cls in (AuthError, TransientError, ThrottledError, CursorExpiredError, BadDataError)
}


def error_of(kind: str, message: str, *, retry_after: float | None = None, fix: str | None = None) -> ConnectorError:
    """The error of this kind again (the fetch child sends errors over a pipe as values)."""
    return ERRORS.get(kind, TransientError)(message, retry_after=retry_after, fix=Fix(fix) if fix else None)


# How often a folder's server count (the reconciliation's side, app/services/reconcile.py) is
# taken again once its backfill is done: at most hourly, and at once after a removal or a
# full re-read, so a message deleted or added on the server moves the numbers without a
# count on every run.
RECOUNT_SECONDS = 3600


def utc_stamp(now: datetime | None = None) -> str:
    """An instant as a cursor keeps it: ISO 8601, UTC, whole seconds, with Z."""
    return (now or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(stamp: str) -> datetime:
    """A cursor's instant (`utc_stamp`) back as an aware datetime; ValueError when unreadable."""
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))


def counted(n: int, now: datetime | None = None) -> dict:
    """The cursor keys a server count is kept under: the count and when it was taken."""
    return {"server_count": n, "counted_at": utc_stamp(now)}


def kept_count(cursor: dict) -> dict:
    """The last count a cursor holds (both keys, or whichever an older cursor has), to carry
    into the next cursor when this run does not count again."""
    return {k: cursor[k] for k in ("server_count", "counted_at") if k in cursor}


def recount_due(cursor: dict, *, changed: bool = False, now: datetime | None = None) -> bool:
    """Whether a completed folder's server count is to be taken now: never counted (or
    counted before `counted_at` was kept), something left the folder or it was read again
    from scratch (`changed`), or the last count is RECOUNT_SECONDS old."""
    if changed or "server_count" not in cursor:
        return True
    return older_than(cursor.get("counted_at"), RECOUNT_SECONDS, now)


def older_than(stamp: str | None, seconds: float, now: datetime | None = None) -> bool:
    """Whether a cursor's instant (`utc_stamp`) is `seconds` old, or missing, unreadable or ahead
    of the clock (a clock set back): each means "do it now"."""
    try:
        then = parse_stamp(str(stamp))
    except ValueError:
        return True
    age = ((now or datetime.now(timezone.utc)) - then).total_seconds()
    return age >= seconds or age < 0


@dataclass(frozen=True)
class CalendarWindow:
    """How far back and ahead calendars are read, in days: the organisation's
    setting (Organisation.calendar_past_days / calendar_future_days)."""

    past_days: int = 365
    future_days: int = 180

    def bounds(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        """[start, end) in whole days (midnight UTC), so the window moves once a
        day rather than at every run; end is the day after the last one."""
        now = now or datetime.now(timezone.utc)
        today = datetime.combine(now.astimezone(timezone.utc).date(), time(0), tzinfo=timezone.utc)
        return today - timedelta(days=int(self.past_days)), today + timedelta(days=int(self.future_days) + 1)

    def for_cursor(self, stored: list | None, now: datetime | None = None) -> tuple[list[str], bool]:
        """The [start, end] (ISO, UTC) a calendar cursor's links belong to: the stored one until
        the window has slid a week or the setting changed its length, then the current one; the
        flag says it slid, and the connector starts a fresh full round over the new window (event
        ids are stable, so re-listing re-links copies without duplicating anything)."""
        start, end = self.bounds(now)
        if stored:
            old_start, old_end = parse_stamp(stored[0]), parse_stamp(stored[1])
            # a window of another length: the setting changed, and the new one applies at once
            if abs((start - old_start).days) < 7 and old_end - old_start == end - start:
                return list(stored), False
        current = [start.strftime("%Y-%m-%dT%H:%M:%SZ"), end.strftime("%Y-%m-%dT%H:%M:%SZ")]
        return current, bool(stored)


@dataclass(frozen=True)
class TenantSpec:
    """A Microsoft 365 tenant app (application permissions) a mailbox is read through."""

    tenant_id: str
    client_id: str
    auth_kind: str = "secret"  # secret | certificate
    config: dict = field(default_factory=dict)  # authority / graph_url overrides


@dataclass(frozen=True)
class ConnectorSpec:
    """Everything a connector is built from (connectors/factory.py): plain values,
    so it pickles to the fetch child process (sync/pipeline.py) unchanged."""

    kind: str  # imap | m365 | gmail | caldav | demo
    config: dict  # the mailbox's connection settings, no secrets
    # The mailbox's password or token cache, or for a tenant-wide Microsoft 365
    # mailbox the tenant app's credential. Never in a repr.
    secret: str = field(default="", repr=False)
    mailbox_id: int | None = None
    owner: str = ""  # the owner's address, lower case
    window: CalendarWindow = CalendarWindow()
    tenant: TenantSpec | None = None
    want_snippet: bool = False
    # The organisation's domains and users' addresses ({"domains": [...], "addresses": [...]}):
    # a connector may look closer at mail claiming to come from them (sync/senders.py).
    internal: dict | None = field(default=None, hash=False)


# The most mail folders a listing returns (Graph's walk stops there). A listing that long may
# have left folders out, so sync drops no folder on its word (sync/engine.py: _drop_folders_left_out).
MAX_LISTED_FOLDERS = 1000


@dataclass(frozen=True)
class Folder:
    name: str
    role: str  # inbox | sent | archive | other | skip | calendar
    flags: tuple[str, ...] = ()  # what the source says about it (IMAP: \Sent, \HasChildren ...)
    remote_id: str | None = None  # the source's id for it where that is not the name (Graph id, CalDAV URL)


@dataclass(frozen=True, slots=True)
class Signature:
    """What a sender's own signature says about them (connectors/signature.py).
    Every value is text exactly as it appears in the message; sync normalises
    phones and decides whether a value may replace what the contact has."""

    name: str | None = None
    title: str | None = None
    company: str | None = None
    phone: str | None = None  # the first number that is not a mobile or a fax
    mobile: str | None = None
    website: str | None = None

    def __bool__(self) -> bool:
        return any((self.title, self.company, self.phone, self.mobile, self.website))


@dataclass(slots=True)
class MessageRecord:
    """A message reduced to what the timeline needs. Addresses are raw (name, address)
    pairs as found in the headers; the ingest pipeline normalises them."""

    remote_id: str
    message_key: str
    date: datetime  # aware UTC
    from_: list[tuple[str, str]]
    to: list[tuple[str, str]]
    cc: list[tuple[str, str]]
    bcc: list[tuple[str, str]]
    subject: str
    in_reply_to: str | None
    references: list[str]
    bulk: bool = False  # newsletters, mailing lists, machine-generated mail
    auto_reply: bool = False  # out-of-office and similar answers from a person's mailbox
    snippet: str | None = None
    # Why bulk: some of "list-id", "list-unsubscribe", "precedence", "auto-submitted"
    # (ingest weighs them: a rep's own sequence mail, an internal group's mail).
    bulk_signals: tuple[str, ...] = ()
    list_id: str | None = None  # the List-Id's identifier, e.g. "sales.ourco.com"
    reply_to: list[tuple[str, str]] = field(default_factory=list)
    # What the transport says about who sent it; ingest weighs it when the From
    # claims someone of the organisation (sync/senders.py).
    relayed: bool | None = None  # carries a Received field (came over SMTP); None: the source cannot tell
    auth_results: tuple[str, ...] = ()  # Authentication-Results values, topmost (newest) first
    internal_submission: bool = False  # Exchange: submitted by an authenticated sender of the organisation
    # The source's own thread id where it has no References to give (Graph's conversationId):
    # ingest keys the thread by it, so a reply read through Graph joins its thread.
    conversation: str | None = None
    signature: Signature | None = None  # the sender's signature, when the fetched text holds one
    # The provider's own ids where it has them (Gmail's X-GM-MSGID and X-GM-THRID, unsigned 64-bit
    # numbers as decimal text); None for every other source. Both hold within one mailbox only:
    # the message id is the same in every folder (label) of the mailbox and survives a change of
    # UIDVALIDITY, the thread id groups the mailbox's conversation. Ingest stores them on the
    # copy (sync/ingest.py: a copy is recognised by its message id; a message with no
    # References joins the thread Gmail put it in).
    provider_id: str | None = None
    provider_thread: str | None = None
    # The iMIP method (REQUEST, REPLY, CANCEL, COUNTER...) when the message is a calendar
    # message: an invitation, its acceptance or its cancellation. The meeting it carries is
    # read as a meeting; as mail it neither opens nor closes a follow-up (sync/followups.py).
    # Graph's plain eventMessage does not say which it is and reads as REQUEST.
    invitation: str | None = None
    # Recipients (To, Cc, Bcc) the source named beyond the MAX_ADDRESSES a field keeps: a mass
    # mailing to 10,000 people keeps 500 of each field as participants and says how many it left out.
    recipients_not_kept: int = 0


@dataclass(slots=True)
class Attendee:
    address: str  # raw, as the source gave it; ingest normalises
    name: str = ""
    role: str = "attendee"  # organizer | attendee | optional
    response: str = "needs-action"  # accepted | declined | tentative | needs-action


@dataclass(slots=True)
class MeetingRecord:
    """One meeting (or one occurrence of a recurring one), from any calendar source.

    The same meeting seen through CalDAV, an invitation in mail, several reps'
    calendars or Microsoft Graph has the same (uid, recurrence_id) and becomes
    one interaction whose key is meeting_key(uid, recurrence_id).
    """

    remote_id: str  # this copy's id at the source (event href or id, plus occurrence)
    uid: str  # iCalendar UID (Graph: the series' iCalUId)
    recurrence_id: str | None  # occurrence's original start, UTC ISO 8601 (None for single events)
    start: datetime  # aware UTC
    end: datetime | None
    subject: str
    organizer: Attendee | None
    attendees: list[Attendee]
    status: str = "confirmed"  # confirmed | tentative | cancelled
    location: str | None = None
    sequence: int = 0
    method: str | None = None  # iMIP: REQUEST | REPLY | CANCEL (None for calendar copies)
    # iMIP: the mail the invitation came in, whose From is its author (checked by the
    # connector) and whose transport fields say whether anything vouches for that From
    # (sync/senders.py). None for calendar copies.
    via_mail: MessageRecord | None = None
    # An occurrence read from a whole series (its rule expanded from this recurrence id on: the
    # window's start). The copy then lists every occurrence from there on, so an occurrence of
    # the UID it lacks and that is older (lower SEQUENCE) was moved or cut from the series
    # (sync/meetings.py). None for single events, invitations to one occurrence and Graph's.
    series_from: str | None = None
    series_to: str | None = None  # ... and up to this one (the window's end), not including it
    # The series' own SEQUENCE (its master component's) on every occurrence of such a copy: an
    # override may keep an older one, or carry a newer one, than the series it belongs to.
    series_sequence: int | None = None


def meeting_key(uid: str, recurrence_id: str | None) -> str:
    key = f"ical:{uid.strip()}"
    return f"{key}/{recurrence_id}" if recurrence_id else key


@dataclass(slots=True)
class BadRecord:
    remote_id: str
    reason: str


@dataclass
class Batch:
    """Records plus the cursor that covers them: the engine commits both together."""

    records: Sequence[MessageRecord | MeetingRecord]  # Sequence: a list of one kind is one
    bad: list[BadRecord]
    cursor: dict
    # remote ids that left this folder or calendar (deleted, moved away)
    removed: list[str] = field(default_factory=list)
    # Where a source cannot say what left (IMAP without QRESYNC): every id the folder holds.
    # What is stored or skipped for the folder and not listed here left it, as if it had been
    # in `removed` (sync/engine.py). None: no listing.
    listed: frozenset[str] | None = None
    # Every record is read for the first time under the folder's cursor (IMAP's new UIDs and
    # backfill: a UID is never listed again): none can be one skipped before and stored now.
    first_reading: bool = False
    backfill_done: bool = False
    reset: bool = False  # cursor was invalidated: copies recorded under the old cursor are stale
    # A calendar's listing: with reset, the listing that follows covers meetings from this instant
    # on (its window); with backfill_done, the listing that ends covered them. The meetings from
    # before it are history it does not list again: their copies stay, as when the window slides
    # past them (at a reset none is dropped; at the end, those set aside meanwhile are given back).
    # None: the listing covers the whole folder (a mail folder's invitation copies stay anyway).
    relists_from: datetime | None = None
    extra: dict = field(default_factory=dict)


# What a run reads from a connector, folder by folder (connectors.factory.events,
# or the fetch child process): typed, and cheap to pickle.
class FolderBatch(NamedTuple):
    """Records (and the cursor covering them) of one folder, to commit together."""

    folder: str
    batch: Batch


class FolderDone(NamedTuple):
    """The folder was read to its end without error."""

    folder: str


class FolderFailed(NamedTuple):
    """The folder failed; the other folders carry on."""

    folder: str
    kind: ErrorKind | None  # None: an unexpected exception (a bug), not a ConnectorError
    reason: str


SyncEvent = FolderBatch | FolderDone | FolderFailed


def close_quietly(connector) -> None:
    """Close a connector at the end of a run; the link may already be gone."""
    if connector is None:
        return
    try:
        connector.close()
    except Exception:  # noqa: BLE001
        pass


class MailConnector(Protocol):
    def list_folders(self) -> list[Folder]: ...

    def fetch_changes(self, folder: Folder, cursor: dict, since: datetime) -> Iterator[Batch]: ...

    def close(self) -> None: ...
