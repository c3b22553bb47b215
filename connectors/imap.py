"""IMAP connector (imapclient): folders by SPECIAL-USE and name, header-only
batched fetch, newest-first backfill, UIDVALIDITY-aware cursors, IDLE.

Cursor per folder (stored by the engine as given):
  uidvalidity      the UIDVALIDITY the UIDs below belong to
  uidnext          UIDNEXT when the folder was last looked at (no-change check)
  highestmodseq    HIGHESTMODSEQ at that time, where the server has CONDSTORE
  top_uid          every UID above this is new mail
  low_uid          newest-first backfill has imported everything in the window
                   from here up to top_uid; null before the first batch
"""
from __future__ import annotations

import imaplib
import socket
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterator

from imapclient import IMAPClient
from imapclient import exceptions as imap_errors

from connectors.base import (
    AuthError, BadDataError, BadRecord, Batch, ConnectorError, Folder, MessageRecord, TransientError,
)
from connectors.imapfetch import parse_internaldate, read_fetch, send_fetch
from connectors.mailparse import parse_message_headers

HEADER_FIELDS = (
    "FROM TO CC BCC SUBJECT DATE MESSAGE-ID IN-REPLY-TO REFERENCES LIST-UNSUBSCRIBE LIST-ID "
    "PRECEDENCE AUTO-SUBMITTED X-AUTOREPLY X-AUTORESPOND CONTENT-TYPE CONTENT-TRANSFER-ENCODING"
)
HEADER_ITEM = f"BODY.PEEK[HEADER.FIELDS ({HEADER_FIELDS})]"
_HEADER_KEY = f"BODY[HEADER.FIELDS ({HEADER_FIELDS})]".encode()
# Enough for a 200-character snippet after a multipart preamble and part headers.
SNIPPET_BYTES = 1024

_SKIP_FLAGS = {b"\\noselect", b"\\nonexistent", b"\\junk", b"\\trash", b"\\drafts", b"\\all", b"\\flagged", b"\\important"}
_ROLE_FLAGS = {b"\\sent": "sent", b"\\archive": "archive"}
# Names mail clients and servers give these folders when SPECIAL-USE is absent.
SENT_NAMES = {"sent", "sent items", "sent messages", "sent mail", "gesendet", "gesendete elemente",
              "gesendete objekte", "envoyés", "éléments envoyés", "enviados", "elementos enviados", "inviata", "posta inviata"}
ARCHIVE_NAMES = {"archive", "archives", "archiv", "all mail", "archivio", "archivo"}
SKIP_NAMES = {"junk", "junk e-mail", "junk email", "spam", "bulk mail", "trash", "deleted items", "deleted messages",
              "bin", "papierkorb", "corbeille", "drafts", "draft", "entwürfe", "brouillons", "outbox", "notes",
              "sync issues", "conflicts", "local failures", "server failures", "rss feeds", "conversation history",
              "calendar", "contacts", "tasks", "journal", "templates"}


@dataclass(frozen=True)
class ImapSettings:
    host: str
    port: int
    security: str  # tls | starttls | none
    username: str
    timeout: float = 60.0
    batch_size: int = 1000


def classify_folder(name: str, flags: tuple[bytes, ...], delimiter: str | None) -> str:
    lowered = {f.lower() for f in flags}
    if lowered & _SKIP_FLAGS:
        return "skip"
    if name.upper() == "INBOX":
        return "inbox"
    for flag, role in _ROLE_FLAGS.items():
        if flag in lowered:
            return role
    leaf = name.rsplit(delimiter, 1)[-1] if delimiter else name
    leaf = leaf.strip().lower()
    if leaf in SENT_NAMES:
        return "sent"
    if leaf in ARCHIVE_NAMES:
        return "archive"
    if leaf in SKIP_NAMES:
        return "skip"
    # Trash and Junk subfolders are never mail the rep wanted kept.
    if delimiter and any(part.strip().lower() in SKIP_NAMES for part in name.split(delimiter)[:-1]):
        return "skip"
    return "other"


def translate(exc: BaseException, what: str) -> ConnectorError:
    """Map imapclient/socket failures to the shared error kinds."""
    if isinstance(exc, ConnectorError):
        return exc
    if isinstance(exc, imap_errors.LoginError):
        return AuthError(f"login refused by the server ({_msg(exc)}): check the username and password")
    if isinstance(exc, ssl.SSLError):
        return TransientError(f"TLS failed while {what}: {_msg(exc)}")
    if isinstance(exc, socket.gaierror):
        return TransientError(f"cannot resolve the server name while {what}: {_msg(exc)}")
    if isinstance(exc, (ConnectionRefusedError,)):
        return TransientError(f"connection refused while {what}: is the host and port right?")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return TransientError(f"server did not answer in time while {what}")
    if isinstance(exc, (imaplib.IMAP4.abort, OSError, EOFError)):
        return TransientError(f"connection lost while {what}: {_msg(exc)}")
    if isinstance(exc, imaplib.IMAP4.error):
        return BadDataError(f"server refused while {what}: {_msg(exc)}")
    return TransientError(f"unexpected failure while {what}: {type(exc).__name__}: {_msg(exc)}")


def _msg(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc.args[0] if exc.args else None, bytes):
        text = exc.args[0].decode("utf-8", "replace")
    return text[:300] or type(exc).__name__


class ImapConnector:
    def __init__(self, settings: ImapSettings, password: str, *, want_snippet: bool = True,
                 ssl_context: ssl.SSLContext | None = None):
        self.settings = settings
        self._password = password
        self.want_snippet = want_snippet
        self._ssl_context = ssl_context
        self._client: IMAPClient | None = None
        self.capabilities: set[bytes] = set()

    def __repr__(self) -> str:
        s = self.settings
        return f"ImapConnector({s.username}@{s.host}:{s.port})"

    # -- connection -----------------------------------------------------------
    def connect(self) -> IMAPClient:
        if self._client is not None:
            return self._client
        s = self.settings
        try:
            client = IMAPClient(s.host, port=s.port, ssl=s.security == "tls", ssl_context=self._ssl_context,
                                timeout=s.timeout)
        except BaseException as exc:  # noqa: BLE001 - translated
            raise translate(exc, "connecting") from exc
        try:
            if s.security == "starttls":
                client.starttls(self._ssl_context or ssl.create_default_context())
            client.login(s.username, self._password)
            self.capabilities = set(client.capabilities())
            if b"CONDSTORE" in self.capabilities:
                client.enable("CONDSTORE")
        except BaseException as exc:  # noqa: BLE001
            try:
                client.shutdown()
            except Exception:  # noqa: BLE001
                pass
            raise translate(exc, "logging in") from exc
        self._client = client
        return client

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.logout()
        except Exception:  # noqa: BLE001 - the link may already be gone
            try:
                client.shutdown()
            except Exception:  # noqa: BLE001
                pass

    # -- folders --------------------------------------------------------------
    def list_folders(self) -> list[Folder]:
        client = self.connect()
        try:
            listing = client.list_folders()
        except BaseException as exc:  # noqa: BLE001
            raise translate(exc, "listing folders") from exc
        folders = []
        for flags, delimiter, name in listing:
            if isinstance(name, bytes):  # undecodable modified UTF-7: keep it usable
                name = name.decode("utf-8", "replace")
            delim = delimiter.decode() if isinstance(delimiter, bytes) else delimiter
            folders.append(Folder(name=name, role=classify_folder(name, tuple(flags), delim),
                                  flags=tuple(f.decode("ascii", "replace") for f in flags)))
        return folders

    def folder_status(self, name: str) -> dict:
        client = self.connect()
        self._unselect()  # STATUS of the selected mailbox may be stale (RFC 3501 6.3.10)
        items = [b"UIDNEXT", b"UIDVALIDITY", b"MESSAGES"]
        if b"CONDSTORE" in self.capabilities:
            items.append(b"HIGHESTMODSEQ")
        try:
            status = client.folder_status(name, items)
        except BaseException as exc:  # noqa: BLE001
            raise translate(exc, f"reading the status of folder {name!r}") from exc
        return {k.decode().lower(): int(v) for k, v in status.items()}

    # -- changes --------------------------------------------------------------
    def fetch_changes(self, folder: Folder, cursor: dict, since: datetime) -> Iterator[Batch]:
        """Yield batches of new mail (oldest first), then the backfill (newest first)."""
        status = self.folder_status(folder.name)
        cursor = dict(cursor or {})
        reset = False
        if cursor and cursor.get("uidvalidity") != status["uidvalidity"]:
            cursor, reset = {}, True
        unchanged = (cursor.get("uidnext") == status["uidnext"]
                     and cursor.get("highestmodseq") == status.get("highestmodseq")
                     and cursor.get("low_uid") is not None and cursor.get("backfill_done"))
        if unchanged:
            return
        client = self.connect()
        try:
            client.select_folder(folder.name, readonly=True)
        except BaseException as exc:  # noqa: BLE001
            raise translate(exc, f"opening folder {folder.name!r}") from exc
        base = {"uidvalidity": status["uidvalidity"], "uidnext": status["uidnext"],
                "highestmodseq": status.get("highestmodseq")}
        if not cursor:
            cursor = {**base, "top_uid": status["uidnext"] - 1, "low_uid": None, "backfill_done": False}
            if reset:
                yield Batch([], [], dict(cursor), reset=True)
        top = int(cursor["top_uid"])
        # 1. New mail since last time, oldest first so top_uid only ever grows.
        new_uids = [u for u in self._search(["UID", f"{top + 1}:*"], folder) if u > top]
        for chunk, records, bad in self._batches(folder, status["uidvalidity"], sorted(new_uids)):
            cursor = {**cursor, **base, "top_uid": max(chunk)}
            yield Batch(records, bad, dict(cursor))
        # 2. Backfill inside the window, newest first, so the sidebar is useful early.
        if not cursor.get("backfill_done"):
            low = cursor.get("low_uid") or top + 1
            old_uids = []
            if low > 1:
                criteria = ["UID", f"1:{low - 1}", "SINCE", since.date()]
                old_uids = [u for u in self._search(criteria, folder) if u < low]
            old_uids.sort(reverse=True)
            for chunk, records, bad in self._batches(folder, status["uidvalidity"], old_uids):
                cursor = {**cursor, **base, "low_uid": min(chunk)}
                yield Batch(records, bad, dict(cursor))
            cursor = {**cursor, **base, "low_uid": cursor.get("low_uid") or low, "backfill_done": True}
            yield Batch([], [], dict(cursor), backfill_done=True)
        elif cursor.get("uidnext") != status["uidnext"] or cursor.get("highestmodseq") != status.get("highestmodseq"):
            yield Batch([], [], {**cursor, **base})

    def _unselect(self) -> None:
        client = self._client
        if client is None or not getattr(client, "_imap", None) or client._imap.state != "SELECTED":
            return
        try:
            client.unselect_folder() if b"UNSELECT" in self.capabilities else client.close_folder()
        except BaseException as exc:  # noqa: BLE001
            raise translate(exc, "closing a folder") from exc

    def _search(self, criteria: list, folder: Folder) -> list[int]:
        try:
            return list(self.connect().search(criteria))
        except BaseException as exc:  # noqa: BLE001
            raise translate(exc, f"searching folder {folder.name!r}") from exc

    def _fetch_items(self) -> str:
        items = f"UID INTERNALDATE {HEADER_ITEM}"
        if self.want_snippet:
            items += f" BODY.PEEK[TEXT]<0.{SNIPPET_BYTES}>"
        return items

    def _batches(self, folder: Folder, uidvalidity: int, uids: list[int]) -> Iterator[tuple[list[int], list, list]]:
        """Fetch uids in batches, keeping the next batch's FETCH in flight while the
        caller works on the current one."""
        chunks = list(_chunks(uids, self.settings.batch_size))
        if not chunks:
            return
        imap = self.connect()._imap  # imapclient has no public handle; see imapfetch.py
        items = self._fetch_items()
        what = f"fetching from folder {folder.name!r}"
        try:
            pending = send_fetch(imap, chunks[0], items)
        except BaseException as exc:  # noqa: BLE001
            raise translate(exc, what) from exc
        for i, chunk in enumerate(chunks):
            try:
                response = read_fetch(imap, pending)
                if i + 1 < len(chunks):
                    pending = send_fetch(imap, chunks[i + 1], items)
            except BaseException as exc:  # noqa: BLE001
                raise translate(exc, what) from exc
            records, bad = self._records(uidvalidity, chunk, response)
            yield chunk, records, bad

    @staticmethod
    def _records(uidvalidity: int, uids: list[int], response: dict) -> tuple[list[MessageRecord], list[BadRecord]]:
        records, bad = [], []
        for uid in uids:
            data = response.get(uid)
            if data is None:  # expunged between SEARCH and FETCH
                continue
            remote_id = f"{uidvalidity}/{uid}"
            raw_date = data.get(b"INTERNALDATE")
            try:
                records.append(parse_message_headers(
                    remote_id, data.get(_HEADER_KEY) or b"",
                    (lambda: parse_internaldate(raw_date)) if raw_date else None,
                    data.get(b"BODY[TEXT]<0>")))
            except BadDataError as exc:
                bad.append(BadRecord(remote_id, str(exc)))
            except Exception as exc:  # noqa: BLE001 - one message never stops the folder
                bad.append(BadRecord(remote_id, f"unreadable message: {type(exc).__name__}: {exc}"[:300]))
        return records, bad

    # -- push -----------------------------------------------------------------
    def idle_wait(self, folder: str = "INBOX", timeout: float = 600.0) -> bool:
        """Block in IDLE until the server reports new mail (True) or timeout (False)."""
        client = self.connect()
        try:
            client.select_folder(folder, readonly=True)
            client.idle()
            try:
                responses = client.idle_check(timeout=timeout)
            finally:
                client.idle_done()
        except BaseException as exc:  # noqa: BLE001
            raise translate(exc, "waiting for new mail (IDLE)") from exc
        return any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses)


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def since_date(days: int, now: datetime | None = None) -> datetime:
    return (now or datetime.now(timezone.utc)) - timedelta(days=days)
