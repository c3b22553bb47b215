"""The shape every connector shares: folders, batches of records, cursors, errors."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterator, Protocol


class ConnectorError(Exception):
    """Base of the few error kinds the engine understands."""

    kind = "transient"

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


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


@dataclass(slots=True)
class BadRecord:
    remote_id: str
    reason: str


@dataclass
class Batch:
    """Records plus the cursor that covers them: the engine commits both together."""
    records: list[MessageRecord]
    bad: list[BadRecord]
    cursor: dict
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
