"""The shape every connector shares: folders, batches of records, cursors, errors."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterator, Protocol


class ConnectorError(Exception):
    """Base of the few error kinds the engine understands."""

    kind = "transient"

    def __init__(self, message: str, *, retry_after: float | str | None = None):
        super().__init__(message)
        self.retry_after = retry_after_seconds(retry_after)


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
    from datetime import datetime, timezone
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
    kind = "auth"


class TransientError(ConnectorError):
    """Network trouble, server unavailable: retry with backoff."""
    kind = "transient"


class ThrottledError(ConnectorError):
    """The provider asked us to slow down (retry_after seconds)."""
    kind = "throttled"


class CursorExpiredError(ConnectorError):
    """The stored cursor is no longer valid; the folder must be re-listed."""
    kind = "cursor_expired"


class BadDataError(ConnectorError):
    """One item cannot be understood; the rest of the sync carries on."""
    kind = "bad_data"


@dataclass(frozen=True)
class Folder:
    name: str
    role: str  # inbox | sent | archive | other | skip
    flags: tuple[str, ...] = ()


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
    records: list[MessageRecord | MeetingRecord]
    bad: list[BadRecord]
    cursor: dict
    # remote ids that left this folder or calendar (deleted, moved away)
    removed: list[str] = field(default_factory=list)
    backfill_done: bool = False
    reset: bool = False  # cursor was invalidated: copies recorded under the old cursor are stale
    extra: dict = field(default_factory=dict)


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
