"""IMAP connector (imapclient): folders by SPECIAL-USE and name, header-only
batched fetch, newest-first backfill, UIDVALIDITY-aware cursors (IDLE: imapidle.py).

Cursor per folder (stored by the engine as given):
  uidvalidity      the UIDVALIDITY the UIDs below belong to
  uidnext          UIDNEXT when the folder was last looked at (no-change check)
  highestmodseq    HIGHESTMODSEQ at that time, where the server has CONDSTORE
  messages         MESSAGES at that time: without QRESYNC, fewer than UIDNEXT's move
                   allows means expunges, and the folder is listed (Batch.listed)
  expunged         without QRESYNC: a listing is owed (put off: at most one per
                   LISTING_SECONDS, or its answer was short); listed_at: the last one
  top_uid          every UID above this is new mail
  low_uid          newest-first backfill has imported everything in the window
                   from here up to top_uid; null before the first batch
  since            the backfill window's first day the folder was read from; when the
                   organisation's window starts earlier (backfill_days raised), the mail
                   between is read newest first (widen_to: that new day; widen_below: the
                   lowest UID a widening pass has read, should it be interrupted)

A new UIDVALIDITY starts the folder again (a Batch with reset): the engine drops the old
copies and the new listing re-links every message by its key; an invitation's meeting
copies stay, as when its email is expunged.

A record's remote_id is "UIDVALIDITY/UID". Where the server advertises X-GM-EXT-1
(Gmail), each record also carries Gmail's X-GM-MSGID (provider_id: the same in every
folder of the mailbox and across a change of UIDVALIDITY) and X-GM-THRID
(provider_thread), as decimal text; None for every other server.
"""

from __future__ import annotations

import ast
import base64
import binascii
import imaplib
import logging
import quopri
import re
import socket
import ssl
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Iterator

from imapclient import IMAPClient, exceptions as imap_errors

from connectors import ical
from connectors.base import (
    AuthError,
    BadDataError,
    BadRecord,
    Batch,
    CalendarWindow,
    ConnectorError,
    Fix,
    Folder,
    MessageRecord,
    ThrottledError,
    TransientError,
    counted,
    older_than,
    own_refusal,
    recount_due,
    utc_stamp,
)
from connectors.imapfetch import (
    HEADER_FIELDS_KEY as _HEADER_KEY,
    RECEIVED_KEY,
    FetchFailed,
    calendar_part,
    parse_internaldate,
    read_fetch,
    read_structures,
    send_fetch,
    throttled,
)
from connectors.mailparse import parse_message_headers

HEADER_FIELDS = (
    "FROM TO CC BCC REPLY-TO SUBJECT DATE MESSAGE-ID IN-REPLY-TO REFERENCES LIST-UNSUBSCRIBE LIST-ID "
    "PRECEDENCE AUTO-SUBMITTED X-AUTOREPLY X-AUTORESPOND CONTENT-TYPE CONTENT-TRANSFER-ENCODING "
    "AUTHENTICATION-RESULTS"
)
HEADER_ITEM = f"BODY.PEEK[HEADER.FIELDS ({HEADER_FIELDS})]"
# Whether a message has any Received field (it came over SMTP: sync/senders.py)
# costs one byte: "R", or the blank line ending an empty selection. The fields
# themselves are kilobytes per message. Measured with AUTHENTICATION-RESULTS
# above (bench/imap_sync, 10,000 messages, 3 rounds each, same load): Dovecot
# CPU 0.29 -> 0.34 s, Threadline's two processes 2.69 -> 2.85 s.
RECEIVED_ITEM = "BODY.PEEK[HEADER.FIELDS (RECEIVED)]<0.1>"
# A UID SEARCH answer is one line: a large folder's (Gmail's All Mail: 100,000s of
# UIDs) passes imaplib's 1 MB line limit.
imaplib._MAXLINE = max(imaplib._MAXLINE, 64 << 20)  # type: ignore[attr-defined]  # private, so not in typeshed
# NO codes (RFC 5530) that mean "try again later", not "this message is broken".
_TRANSIENT_CODES = (b"[UNAVAILABLE]", b"[LIMIT]", b"[INUSE]", b"[SERVERBUG]")
# Gmail's answers when an account is over its limits (docs/architecture.md, "Gmail's limits"):
# "NO [OVERQUOTA] Account exceeded command or bandwidth limits." (the daily IMAP download
# allowance: the account is blocked for up to 24 hours), "[THROTTLED]" (commands slowed down;
# on OK answers too) and, at login, "NO [ALERT] Too many simultaneous connections." (15 per
# account). All three are the provider asking Threadline to slow down: ThrottledError, the run
# ends, the engine backs off (30 s doubling; an hour for over-quota).
OVERQUOTA_WAIT = 3600
_OVERQUOTA = b"[OVERQUOTA]"
_THROTTLED = b"[THROTTLED]"
_TOO_MANY_CONNECTIONS = b"TOO MANY SIMULTANEOUS CONNECTIONS"

log = logging.getLogger("threadline.imap")


def rate_limited(text: str | bytes, what: str) -> ThrottledError | None:
    """The ThrottledError for a server answer that says the account is over a limit, else None."""
    said = (text.decode("utf-8", "replace") if isinstance(text, bytes) else text).strip()[:200]
    raw = said.encode("utf-8", "replace").upper()
    if _OVERQUOTA in raw:
        return ThrottledError(
            f"the server says the account is over its quota while {what} ({said}); retrying in an hour",
            retry_after=OVERQUOTA_WAIT,
        )
    if _THROTTLED in raw or _TOO_MANY_CONNECTIONS in raw:
        return ThrottledError(f"the server asked to slow down while {what} ({said})")
    return None


FIRST_BATCH = 200
# Enough for a 200-character snippet after a multipart preamble and part headers,
# and for the sender's signature under a short message's own text (most replies:
# the quoted part that follows tells where their words end). 1 KB before issue 13.
SNIPPET_BYTES = 4096
# Invitations (iMIP): only multipart messages can carry a text/calendar part next to
# the text, so only they get a BODYSTRUCTURE (one FETCH per batch, not per message);
# a single-part text/calendar message is read whole. See _invitations().
_CONTENT_TYPE = re.compile(
    rb"^content-type:[ \t]*(?:\r?\n[ \t]+)?([a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+)"
    rb"(.*(?:\r?\n[ \t].*)*)",
    re.I | re.M,
)
_METHOD_PARAM = re.compile(rb'method\s*=\s*"?([A-Za-z-]+)', re.I)
_CHARSET_PARAM = re.compile(rb'charset\s*=\s*"?([^";\s]+)', re.I)
_CTE = re.compile(rb"^content-transfer-encoding:[ \t]*([A-Za-z0-9-]+)", re.I | re.M)

# \Flagged and \Important are views of mail stored elsewhere. \All is not
# skipped: Gmail keeps archived mail only there ("All Mail"), so skipping it
# silently lost every conversation a rep had archived; the copies it shares
# with INBOX or labels become extra source rows of the same interaction.
_SKIP_FLAGS = {b"\\noselect", b"\\nonexistent", b"\\junk", b"\\trash", b"\\drafts", b"\\flagged", b"\\important"}
_ROLE_FLAGS = {b"\\sent": "sent", b"\\archive": "archive", b"\\all": "archive"}
# Names mail clients and servers give these folders when SPECIAL-USE is absent.
SENT_NAMES = {
    "sent",
    "sent items",
    "sent messages",
    "sent mail",
    "gesendet",
    "gesendete elemente",
    "gesendete objekte",
    "envoyés",
    "éléments envoyés",
    "messages envoyés",
    "enviados",
    "elementos enviados",
    "inviata",
    "posta inviata",
    "verzonden",
    "verzonden items",
    "verzonden berichten",
    "itens enviados",
    "enviadas",
    "wysłane",
    "skickat",
    "skickade objekt",
    "sendt",
    "sendte elementer",
    "lähetetyt",
}
ARCHIVE_NAMES = {"archive", "archives", "archiv", "all mail", "archivio", "archivo", "archief", "arquivo"}
# Drafts matter most: synced, a rep's unsent drafts would show up as mail they sent.
SKIP_NAMES = {
    "junk",
    "junk e-mail",
    "junk email",
    "spam",
    "bulk mail",
    "trash",
    "deleted items",
    "deleted messages",
    "bin",
    "papierkorb",
    "gelöschte elemente",
    "gelöschte objekte",
    "corbeille",
    "éléments supprimés",
    "courrier indésirable",
    "drafts",
    "draft",
    "entwürfe",
    "brouillons",
    "outbox",
    "postausgang",
    "boîte d'envoi",
    "notes",
    "sync issues",
    "conflicts",
    "local failures",
    "server failures",
    "rss feeds",
    "conversation history",
    "calendar",
    "contacts",
    "tasks",
    "journal",
    "templates",
    # Spanish, Portuguese, Italian, Dutch, Polish, Nordic
    "papelera",
    "elementos eliminados",
    "correo no deseado",
    "borradores",
    "bandeja de salida",
    "lixeira",
    "lixo",
    "itens excluídos",
    "lixo eletrônico",
    "rascunhos",
    "caixa de saída",
    "cestino",
    "posta eliminata",
    "posta indesiderata",
    "bozze",
    "posta in uscita",
    "prullenbak",
    "verwijderde items",
    "ongewenste e-mail",
    "concepten",
    "postvak uit",
    "kosz",
    "elementy usunięte",
    "wiadomości-śmieci",
    "kopie robocze",
    "skrzynka nadawcza",
    "papperskorgen",
    "borttagna objekt",
    "skräppost",
    "utkast",
    "utkorgen",
    "papirkurv",
    "slettede elementer",
    "søppelpost",
    "kladder",
    "roskakori",
    "luonnokset",
}


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
    if isinstance(exc, (imaplib.IMAP4.error, imap_errors.LoginError)) and not isinstance(exc, imaplib.IMAP4.abort):
        limited = rate_limited(server_text(exc), what)
        if limited is not None:
            return limited
    if isinstance(exc, imap_errors.LoginError):
        if login_link_broke(exc):
            return TransientError(f"connection lost while {what}: {_msg(exc)}")
        return login_refused(_msg(exc))
    if isinstance(exc, ssl.SSLError):
        return TransientError(f"TLS failed while {what}: {_msg(exc)}")
    if isinstance(exc, socket.gaierror):
        return TransientError(f"cannot resolve the server name while {what}: {_msg(exc)}")
    if isinstance(exc, ConnectionRefusedError):
        if refused := own_refusal(exc):  # refused by this process's own rule, which says why
            return TransientError(f"{refused} (while {what})")
        return TransientError(f"connection refused while {what}: is the host and port right?")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return TransientError(f"server did not answer in time while {what}")
    if isinstance(exc, (imaplib.IMAP4.abort, OSError, EOFError)):
        return TransientError(f"connection lost while {what}: {_msg(exc)}")
    if isinstance(exc, imaplib.IMAP4.error):
        return BadDataError(f"server refused while {what}: {_msg(exc)}")
    return TransientError(f"unexpected failure while {what}: {type(exc).__name__}: {_msg(exc)}")


def login_refused(said: str, fix: Fix = Fix.PASSWORD) -> ConnectorError:
    """The error for a server's NO to LOGIN (or AUTHENTICATE). Most mean the credentials,
    but RFC 5530 codes say otherwise: [LIMIT] is a connection limit (Dovecot's
    mail_max_userip_connections, reached while IDLE or the rep's own mail client holds the
    connections it allows), [UNAVAILABLE] / [INUSE] / [SERVERBUG] a server that cannot log
    anyone in now. Those were told to check a password that was right; they wait instead."""
    limited = rate_limited(said, "logging in")
    if limited is not None:
        return limited
    raw = said.encode("utf-8", "replace").upper()
    if b"[LIMIT]" in raw:
        return ThrottledError(f"the server allows no more connections for this account now ({said})")
    if any(code in raw for code in _TRANSIENT_CODES):
        return TransientError(f"the server cannot log in this account now ({said})")
    return AuthError(f"login refused by the server ({said})", fix=fix)


def login_link_broke(exc: BaseException) -> bool:
    """Whether a LoginError means the connection failed, not that the server said no.
    imapclient raises LoginError for both; a broken link is the exception it was
    raised from (imaplib's abort, or a socket error)."""
    cause = exc.__cause__ or exc.__context__
    return isinstance(cause, (imaplib.IMAP4.abort, OSError, EOFError))


def _msg(exc: BaseException) -> str:
    return server_text(exc)[:300] or type(exc).__name__


_BYTES_REPR = re.compile(r"""^b(['"])(.*)\1$""", re.S)


def server_text(exc: BaseException) -> str:
    """What the server said, as words: imaplib keeps a server's answer as bytes, and
    imapclient's LoginError wraps its str(), so admins were shown `b'[AUTHENTICATIONFAILED] …'`."""
    first = exc.args[0] if exc.args else None
    if isinstance(first, bytes):
        return first.decode("utf-8", "replace").strip()
    text = str(exc).strip()
    quoted = _BYTES_REPR.match(text)
    if quoted:
        try:
            return ast.literal_eval(text).decode("utf-8", "replace").strip()
        except (ValueError, SyntaxError, UnicodeError):
            return quoted.group(2)
    return text


class ImapConnector:
    def __init__(
        self,
        settings: ImapSettings,
        password: str,
        *,
        want_snippet: bool = True,
        ssl_context: ssl.SSLContext | None = None,
        oauth2_token=None,
    ):
        self.settings = settings
        self._password = password
        self._oauth2_token = oauth2_token  # callable giving an OAuth access token (SASL XOAUTH2) instead of LOGIN
        self.want_snippet = want_snippet
        # The organisation's domains: signatures are read only from everyone else's mail.
        self.internal_domains: frozenset[str] = frozenset()
        self._ssl_context = ssl_context
        self._client: IMAPClient | None = None
        self.capabilities: set[bytes] = set()
        self.qresync = False

    def __repr__(self) -> str:
        s = self.settings
        return f"ImapConnector({s.username}@{s.host}:{s.port})"

    # -- connection -----------------------------------------------------------
    def connect(self) -> IMAPClient:
        if self._client is not None:
            return self._client
        s = self.settings
        try:
            client = IMAPClient(
                s.host, port=s.port, ssl=s.security == "tls", ssl_context=self._ssl_context, timeout=s.timeout
            )
        except BaseException as exc:  # noqa: BLE001 - translated
            raise translate(exc, "connecting") from exc
        try:
            if s.security == "starttls":
                client.starttls(self._ssl_context or ssl.create_default_context())
            if self._oauth2_token is not None:
                client.oauth2_login(s.username, self._oauth2_token())
            else:
                client.login(s.username, self._password)
            self.capabilities = set(client.capabilities())
            if b"ENABLE" in self.capabilities:
                # QRESYNC (which includes CONDSTORE) tells which UIDs left a folder.
                if b"QRESYNC" in self.capabilities:
                    self.qresync = b"QRESYNC" in client.enable("QRESYNC")
                elif b"CONDSTORE" in self.capabilities:
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
        foreign = self._foreign_namespaces(client)
        folders = []
        for flags, delimiter, name in listing:
            if isinstance(name, bytes):  # undecodable modified UTF-7: keep it usable
                name = name.decode("utf-8", "replace")
            delim = delimiter.decode() if isinstance(delimiter, bytes) else delimiter
            role = classify_folder(name, tuple(flags), delim)
            if any(name.startswith(prefix) or name == prefix.rstrip(sep) for prefix, sep in foreign):
                role = "skip"
            folders.append(Folder(name=name, role=role, flags=tuple(f.decode("ascii", "replace") for f in flags)))
        return folders

    def _foreign_namespaces(self, client: IMAPClient) -> list[tuple[str, str]]:
        """(prefix, separator) of the namespaces that are not the rep's own (RFC 2342): other
        users' mailboxes shared with the rep (`shared/bob/INBOX`, `Other Users/bob`) and public
        folders (`Public/Support`). LIST shows them beside the rep's folders; read as the rep's
        own mail, a colleague's inbox or a team's folder became the rep's conversations. They
        are listed but not selected (role "skip"). A server without NAMESPACE has one."""
        if b"NAMESPACE" not in self.capabilities:
            return []
        try:
            spaces = client.namespace()
        except imaplib.IMAP4.error as exc:
            # A server that advertises NAMESPACE and then refuses it (NO/BAD) is read as one
            # without: failing every run over an optional answer would stop the whole mailbox.
            log.warning("IMAP server refused NAMESPACE (%s); every listed folder is taken as the rep's", exc)
            return []
        except BaseException as exc:  # noqa: BLE001 - a broken connection: the run's error
            raise translate(exc, "listing namespaces") from exc
        foreign = []
        for space in (spaces.other, spaces.shared):
            for prefix, sep in space or ():
                prefix = prefix.decode("utf-8", "replace") if isinstance(prefix, bytes) else prefix
                sep = (sep.decode() if isinstance(sep, bytes) else sep) or ""
                if prefix and prefix.upper().rstrip(sep) != "INBOX":
                    foreign.append((prefix, sep))
        return foreign

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
        widen_to = _widen_to(cursor, since)
        unchanged = (
            widen_to is None
            and cursor.get("uidnext") == status["uidnext"]
            and cursor.get("highestmodseq") == status.get("highestmodseq")
            and cursor.get("messages") == status["messages"]  # an expunge, where nothing else tells
            and not cursor.get("expunged")  # a listing put off (`_listing`)
            and cursor.get("low_uid") is not None
            and cursor.get("backfill_done")
            and "server_count" in cursor  # a cursor from before reconciliation gets counted once
        )
        if unchanged:
            return
        client = self.connect()
        try:
            selected = client.select_folder(folder.name, readonly=True)
        except BaseException as exc:  # noqa: BLE001
            raise translate(exc, f"opening folder {folder.name!r}") from exc
        base = {
            "uidvalidity": status["uidvalidity"],
            "uidnext": status["uidnext"],
            "highestmodseq": status.get("highestmodseq"),
            "messages": status["messages"],
        }
        # Messages expunged since last time, before anything else: the batch keeps the
        # old cursor, so an interrupted run still fetches what came in meanwhile (and,
        # without QRESYNC, lists the folder again).
        removed = self._vanished(folder, cursor, status) if cursor else []
        listed = None
        if cursor and not self.qresync:
            listed, base["expunged"] = self._listing(folder, cursor, status, int(selected.get(b"EXISTS") or 0))
            if listed is not None:
                base["listed_at"] = utc_stamp()
        if removed or listed is not None:
            yield Batch([], [], dict(cursor), removed=removed, listed=listed)
        if not cursor:
            top0 = status["uidnext"] - 1
            cursor = {**base, "top_uid": top0, "first_top": top0, "low_uid": None, "backfill_done": False}
            if reset:
                yield Batch([], [], dict(cursor), reset=True)
        top = int(cursor["top_uid"])
        # 1. New mail since last time, oldest first so top_uid only ever grows.
        new_uids = [u for u in self._search(["UID", f"{top + 1}:*"], folder) if u > top]
        for chunk, records, bad in self._batches(folder, status["uidvalidity"], sorted(new_uids)):
            cursor = {**cursor, **base, "top_uid": max(chunk)}
            yield Batch(records, bad, dict(cursor), first_reading=True)
        # 2. Backfill inside the window, newest first, so the sidebar is useful early.
        if not cursor.get("backfill_done"):
            low = cursor.get("low_uid") or top + 1
            old_uids = []
            # The window's first day, kept: the reconciliation counts the server's side with it. A day
            # kept from an earlier run and later than today's window start stays: the window was made
            # wider meanwhile, and what the UIDs above low_uid hold from the days between is read by
            # the widening pass below once this backfill is done. A narrower window applies at once.
            kept = _day(cursor.get("since"))
            day = kept if kept is not None and kept > since.date() else since.date()
            cursor = {**cursor, "since": day.isoformat()}
            if low > 1:
                criteria = ["UID", f"1:{low - 1}", "SINCE", day]
                old_uids = [u for u in self._search(criteria, folder) if u < low]
            old_uids.sort(reverse=True)
            for chunk, records, bad in self._batches(folder, status["uidvalidity"], old_uids):
                cursor = {**cursor, **base, "low_uid": min(chunk)}
                yield Batch(records, bad, dict(cursor), first_reading=True)
            cursor = {**cursor, **base, "low_uid": cursor.get("low_uid") or low, "backfill_done": True}
            widen_to = _widen_to(cursor, since)
            if widen_to is None:
                count = counted(self._scope_count(folder, cursor, since))
                yield Batch([], [], {**cursor, **count}, backfill_done=True)
                return
        if widen_to is not None:
            yield from self._widen(folder, status["uidvalidity"], cursor, base, top, widen_to, since)
        elif recount_due(cursor, changed=bool(removed) or listed is not None):
            # at most hourly, and at once after messages were expunged: new mail read meanwhile
            # only makes the copies outnumber the count, which is no alarm
            count = counted(self._scope_count(folder, cursor, since))
            yield Batch([], [], {**cursor, **base, **count})
        else:
            yield Batch([], [], {**cursor, **base})

    def _widen(
        self, folder: Folder, uidvalidity: int, cursor: dict, base: dict, top: int, widen_to: date, since: datetime
    ) -> Iterator[Batch]:
        """3. The backfill window made wider (backfill_days raised): the mail between its new first
        day and the one the folder was read from, newest first, as the backfill was; a clean import
        would have it. `widen_below` keeps where an interrupted pass stood."""
        first = int(cursor["first_top"]) if cursor.get("first_top") is not None else top
        below = min(int(cursor.get("widen_below") or first + 1), first + 1)
        old_day = _day(cursor["since"])
        uids: list[int] = []
        if below > 1:
            criteria = ["UID", f"1:{below - 1}", "SINCE", widen_to, "BEFORE", old_day]
            uids = sorted((u for u in self._search(criteria, folder) if u < below), reverse=True)
        cursor = {**cursor, "widen_to": widen_to.isoformat()}
        for chunk, records, bad in self._batches(folder, uidvalidity, uids):
            cursor = {**cursor, **base, "widen_below": min(chunk)}
            yield Batch(records, bad, dict(cursor), first_reading=True)
        # every UID up to the first import's top inside the wider window is read now
        cursor = {**cursor, **base, "since": widen_to.isoformat(), "low_uid": 1}
        cursor.pop("widen_to", None)
        cursor.pop("widen_below", None)
        count = counted(self._scope_count(folder, cursor, since))
        yield Batch([], [], {**cursor, **count}, backfill_done=True)

    def _scope_count(self, folder: Folder, cursor: dict, since: datetime) -> int:
        """How many messages the server holds that this sync is meant to have read: every
        UID above the first import's top (new mail, whatever its date) up to the highest
        read, and below it those inside the backfill window from the lowest read up; drafts
        are never read. Counted after the folder's batches, so mail arriving meanwhile is
        not counted before it is read. The reconciliation compares it with the copies stored
        plus the messages skipped with a reason (app/services/reconcile.py)."""
        top = int(cursor.get("top_uid") or 0)
        low = int(cursor.get("low_uid") or top + 1)
        # a cursor from before these keys: count everything against the window (a count too
        # low can only hide a gap, never show one that is not there)
        first = min(int(cursor["first_top"]) if cursor.get("first_top") is not None else top, top)
        day = _day(cursor.get("since")) or since.date()
        drafts = ["NOT", "DRAFT"]
        if b"X-GM-EXT-1" in self.capabilities:
            drafts += ["NOT", "X-GM-LABELS", "\\Draft"]
        count = 0
        if top > first:  # IMAP reads a:b as b:a when a > b: ask only for real ranges
            count += sum(1 for u in self._search(["UID", f"{first + 1}:{top}", *drafts], folder) if first < u <= top)
        if first >= low:
            criteria = ["UID", f"{low}:{first}", "SINCE", day, *drafts]
            count += sum(1 for u in self._search(criteria, folder) if low <= u <= first)
        return count

    def _vanished(self, folder: Folder, cursor: dict, status: dict) -> list[str]:
        """Remote ids of the messages expunged since the cursor's HIGHESTMODSEQ, between
        its lowest and highest imported UID (RFC 7162 VANISHED). Servers without QRESYNC
        do not say: `_listing` finds out."""
        since, top = cursor.get("highestmodseq"), int(cursor.get("top_uid") or 0)
        low = int(cursor.get("low_uid") or 1)
        if cursor.get("widen_below"):  # a widening pass not ended has read below low_uid too
            low = min(low, int(cursor["widen_below"]))
        if not self.qresync or since is None or since == status.get("highestmodseq") or top < low:
            return []
        imap = self.connect()._imap  # imapclient cannot pass the VANISHED modifier; see imapfetch.py
        try:
            imap.untagged_responses.pop("VANISHED", None)
            typ, data = imap.uid("FETCH", f"{low}:{top}", "(UID)", f"(CHANGEDSINCE {int(since)} VANISHED)")
            if typ != "OK":
                raise imaplib.IMAP4.error(data[-1] if data else typ)
            answers = imap.untagged_responses.pop("VANISHED", [])
        except BaseException as exc:  # noqa: BLE001
            raise translate(exc, f"reading what left folder {folder.name!r}") from exc
        uids: set[int] = set()
        for answer in answers:
            text = answer.decode("ascii", "replace") if isinstance(answer, bytes) else str(answer)
            for part in text.replace("(EARLIER)", "").strip().split(","):
                first, _, last = part.strip().partition(":")
                a, b = sorted((int(first), int(last or first)))
                uids.update(range(max(a, low), min(b, top) + 1))
        return [f"{status['uidvalidity']}/{uid}" for uid in sorted(uids)]

    def _listing(self, folder: Folder, cursor: dict, status: dict, exists: int) -> tuple[frozenset[str] | None, bool]:
        """Without QRESYNC a server does not say which messages left, but STATUS says that some
        did: MESSAGES grows by at most what UIDNEXT moved, so a smaller count means expunges (or
        mail expunged before it was read, which costs one listing for nothing). Then every UID
        of the folder is listed (Batch.listed): what is stored or skipped for it and not among
        them left. Returns (the listing or None, whether one is still owed).

        At most every LISTING_SECONDS: on Gmail, archiving lowers INBOX's count and deleting All
        Mail's, and a listing of 100,000 UIDs is about 700 KB; one put off is owed (`expunged` in
        the cursor) until it is done. An answer with fewer UIDs than the folder's EXISTS is not
        trusted (mail expunged meanwhile, or a server cutting it short): all it would take off
        is kept, and the listing stays owed. A cursor from before MESSAGES was kept lists once."""
        owed = bool(cursor.get("expunged"))
        before, uidnext = cursor.get("messages"), cursor.get("uidnext")
        if before is None or uidnext is None:
            owed = owed or bool(cursor.get("backfill_done"))
        elif status["messages"] < int(before) + status["uidnext"] - int(uidnext):
            owed = True
        if not owed or not listing_due(cursor):
            return None, owed
        uids = self._search(["ALL"], folder)
        if len(uids) < exists:
            log.warning(
                "folder %r listed %d UIDs of the %d it holds; what left it is looked for again later",
                folder.name,
                len(uids),
                exists,
            )
            return None, True
        return frozenset(f"{status['uidvalidity']}/{uid}" for uid in uids), False

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
        # FLAGS (and Gmail's labels) to leave out drafts: Gmail's All Mail holds them,
        # often with only the \Draft label. Gmail's own ids come in the same FETCH (a number
        # each): the message id recognises a copy, the thread id threads mail that has no
        # References (MessageRecord.provider_id / provider_thread, sync/ingest.py).
        items = f"UID FLAGS INTERNALDATE {HEADER_ITEM} {RECEIVED_ITEM}"
        if b"X-GM-EXT-1" in self.capabilities:
            items += " X-GM-LABELS X-GM-MSGID X-GM-THRID"
        if self.want_snippet:
            items += f" BODY.PEEK[TEXT]<0.{SNIPPET_BYTES}>"
        return items

    def _batches(self, folder: Folder, uidvalidity: int, uids: list[int]) -> Iterator[tuple[list[int], list, list]]:
        """Fetch uids in batches, keeping the next batch's FETCH in flight while the
        caller works on the current one.

        Invitations: after a batch's headers are read, its multipart messages get one
        BODYSTRUCTURE FETCH and the text/calendar parts found one BODY.PEEK[section]
        FETCH per distinct section, before the next batch's FETCH is sent. Only one
        command is ever in flight: Dovecot runs pipelined FETCHes in parallel and
        interleaves their untagged answers, which this lean reader cannot tell apart."""
        size = self.settings.batch_size
        # A smaller first batch: whoever ingests starts sooner (it has nothing
        # else to do until the first batch arrives); later batches overlap anyway.
        first = min(size, max(FIRST_BATCH, size // 4))
        chunks = list(_chunks(uids[:first], first)) + list(_chunks(uids[first:], size))
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
            refused: list[BadRecord] = []
            try:
                try:
                    response = read_fetch(imap, pending)
                except FetchFailed as exc:
                    response, refused = self._salvage(imap, folder, uidvalidity, chunk, items, exc)
                parts = {}
                if self.want_invitations:
                    multipart, single = _calendar_candidates(response)
                    if multipart or single:
                        parts = self._invitation_parts(imap, multipart, single)
                # The next batch's FETCH goes out before this one is handled (they overlap),
                # unless Gmail answered this one OK [THROTTLED]: then nothing more is asked.
                if i + 1 < len(chunks) and not throttled(imap):
                    pending = send_fetch(imap, chunks[i + 1], items)
            except BaseException as exc:  # noqa: BLE001
                raise translate(exc, what) from exc
            records, bad = self._records(uidvalidity, chunk, response)
            bad.extend(refused)
            if parts:
                self._add_meetings(uidvalidity, parts, records, bad)
            yield chunk, records, bad
            if throttled(imap) and i + 1 < len(chunks):
                # Gmail answered OK but [THROTTLED]: this batch is committed (the caller has
                # handled it), the rest waits for the engine's backoff instead of pressing on.
                raise ThrottledError(f"the server asked to slow down while {what} (OK [THROTTLED])")

    @staticmethod
    def _salvage(
        imap, folder: Folder, uidvalidity: int, chunk: list[int], items: str, failure: FetchFailed
    ) -> tuple[dict, list[BadRecord]]:
        """A batch's FETCH ended with NO (Gmail and Yahoo do so when one message is
        broken on their side): keep what came, fetch the rest one by one, and record
        only the messages the server still refuses. A "try later" code, or every
        message refused, is a transient failure instead: nothing is skipped."""
        limited = rate_limited(str(failure), f"fetching from folder {folder.name!r}")
        if limited is not None:
            raise limited
        if any(code in str(failure).encode().upper() for code in _TRANSIENT_CODES):
            raise TransientError(f"the server refused to send mail from folder {folder.name!r} for now: {failure}")
        response = dict(failure.partial)
        refused: list[BadRecord] = []
        for uid in [u for u in chunk if _HEADER_KEY not in response.get(u, {})]:
            try:
                response.update(read_fetch(imap, send_fetch(imap, [uid], items)))
            except FetchFailed as exc:
                limited = rate_limited(str(exc), f"fetching from folder {folder.name!r}")
                if limited is not None:
                    raise limited from exc
                if any(code in str(exc).encode().upper() for code in _TRANSIENT_CODES):
                    raise TransientError(
                        f"the server refused to send mail from folder {folder.name!r} for now: {exc}"
                    ) from exc
                refused.append(
                    BadRecord(f"{uidvalidity}/{uid}", f"the server would not send this message: {exc}"[:300])
                )
        if refused and len(refused) == len(chunk) > 1:
            raise TransientError(f"the server refused every message of a batch in folder {folder.name!r}: {failure}")
        return response, refused

    # -- invitations (iMIP) -----------------------------------------------------
    want_invitations = True
    # The calendar window recurring invitations are expanded over; the factory sets
    # the organisation's (ConnectorSpec.window).
    calendar_window: CalendarWindow = CalendarWindow()

    def _invitation_parts(self, imap, multipart: list[int], single: dict) -> dict:
        """uid -> (part info, raw bytes or None when too large), one command at a time."""
        wanted: dict[int, tuple[str, dict]] = dict(single)
        if multipart:
            try:
                structures = read_structures(imap, send_fetch(imap, multipart, "BODYSTRUCTURE"))
            except FetchFailed:  # the server would not say: no invitations from this batch
                structures = {}
            for uid, structure in structures.items():
                found = calendar_part(structure)
                if found:
                    wanted[uid] = found
        out: dict[int, tuple[dict, bytes | None]] = {}
        by_section: dict[str, list[int]] = {}
        for uid, (section, info) in wanted.items():
            if info.get("size", 0) > ical.MAX_ICS_BYTES:
                out[uid] = (info, None)  # too large to read: recorded as bad
                continue
            by_section.setdefault(section, []).append(uid)
        for section, uids in sorted(by_section.items()):
            key = f"BODY[{section}]".encode()
            try:
                answer = read_fetch(imap, send_fetch(imap, uids, f"BODY.PEEK[{section}]"))
            except FetchFailed:
                answer = {}
            for uid, values in answer.items():
                if uid in wanted:
                    out[uid] = (wanted[uid][1], values.get(key))
        return out

    def _add_meetings(self, uidvalidity: int, parts: dict, records: list, bad: list) -> None:
        window = ical.Window.of(self.calendar_window)
        mails = {r.remote_id: r for r in records if isinstance(r, MessageRecord)}
        for uid, (info, raw) in sorted(parts.items()):
            base = f"{uidvalidity}/{uid}{ical.INVITATION_PART}"
            mail = mails.get(f"{uidvalidity}/{uid}")
            # RFC 6047: an iMIP message carries a text/calendar part that names its scheduling
            # method in its Content-Type. An .ics file attached to a written email (application/ics,
            # or a PUBLISH) is no such message: that email stays ordinary mail.
            method = str(info.get("method") or "").strip().upper()
            if mail is not None and info.get("type") == (b"text", b"calendar") and method in ical.SCHEDULING_METHODS:
                mail.invitation = method
            if raw is None:
                size = info.get("size", 0)
                bad.append(
                    BadRecord(
                        base,
                        f"invitation not read: calendar part of {size:,} bytes"
                        if size
                        else "invitation not read: calendar part missing",
                    )
                )
                continue
            try:
                data = _decode_part(raw, info.get("encoding", "7bit"), info.get("charset") or "utf-8")
                parsed = ical.meetings_from_ics(
                    data, base_id=base, window=window, method=info.get("method") or "", window_singles=False
                )
            except Exception as exc:  # noqa: BLE001 - one invitation never stops the folder
                bad.append(BadRecord(base, f"unreadable invitation: {type(exc).__name__}: {exc}"[:300]))
                continue
            sender = mail.from_[0][1].strip().lower() if mail is not None and mail.from_ else None
            for meeting in parsed.records:
                trusted = _from_its_author(meeting, sender)
                if trusted is None:
                    bad.append(
                        BadRecord(
                            meeting.remote_id,
                            f"invitation ignored: sent by {sender or 'nobody'}, "
                            "not by the meeting's organiser or the replying attendee",
                        )
                    )
                else:
                    trusted.via_mail = mail  # what vouches for its From, if anything: sync/meetings.py
                    records.append(trusted)
            bad.extend(parsed.bad)

    def _records(
        self, uidvalidity: int, uids: list[int], response: dict
    ) -> tuple[list[MessageRecord], list[BadRecord]]:
        records, bad = [], []
        for uid in uids:
            data = response.get(uid)
            if data is None:  # expunged between SEARCH and FETCH
                continue
            if data.get(b"DRAFT"):  # not sent: never on the timeline
                continue
            remote_id = f"{uidvalidity}/{uid}"
            raw_date = data.get(b"INTERNALDATE")
            received = data.get(RECEIVED_KEY) or b""
            try:
                record = parse_message_headers(
                    remote_id,
                    data.get(_HEADER_KEY) or b"",
                    (lambda d=raw_date: parse_internaldate(d)) if raw_date else None,
                    body := data.get(b"BODY[TEXT]<0>"),
                    # anything but the blank line (or nothing: the server did not say) is a field
                    relayed=(received[:1] not in b"\r\n") if received else None,
                    truncated=body is not None and len(body) >= SNIPPET_BYTES,
                    internal_domains=self.internal_domains,
                )
                gm_id, gm_thread = data.get(b"X-GM-MSGID"), data.get(b"X-GM-THRID")
                if gm_id is not None:
                    record.provider_id = gm_id.decode("ascii")
                if gm_thread is not None:
                    record.provider_thread = gm_thread.decode("ascii")
                records.append(record)
            except BadDataError as exc:
                bad.append(BadRecord(remote_id, str(exc)))
            except Exception as exc:  # noqa: BLE001 - one message never stops the folder
                bad.append(BadRecord(remote_id, f"unreadable message: {type(exc).__name__}: {exc}"[:300]))
        return records, bad


def _calendar_candidates(response: dict) -> tuple[list[int], dict]:
    """From a batch's header blocks: multipart messages (need a BODYSTRUCTURE) and
    single-part text/calendar messages (uid -> ("TEXT", part info))."""
    multipart, single = [], {}
    for uid, values in response.items():
        block = values.get(_HEADER_KEY)
        if not block:
            continue
        m = _CONTENT_TYPE.search(block)
        if not m:
            continue
        ctype = m.group(1).lower()
        if ctype.startswith(b"multipart/"):
            multipart.append(uid)
        elif ctype in (b"text/calendar", b"application/ics"):
            params = m.group(2)
            method = _METHOD_PARAM.search(params)
            charset = _CHARSET_PARAM.search(params)
            cte = _CTE.search(block)
            single[uid] = (
                "TEXT",
                {
                    "type": tuple(ctype.split(b"/", 1)),
                    "size": 0,
                    "method": method.group(1).decode().upper() if method else "",
                    "charset": charset.group(1).decode("ascii", "replace") if charset else "utf-8",
                    "encoding": cte.group(1).decode().lower() if cte else "7bit",
                },
            )
    return sorted(multipart), single


def _decode_part(raw: bytes, encoding: str, charset: str) -> str:
    if encoding == "base64":
        data = re.sub(rb"[^A-Za-z0-9+/=]", b"", raw)
        try:
            raw = base64.b64decode(data + b"=" * (-len(data) % 4))
        except (binascii.Error, ValueError) as exc:
            raise BadDataError(f"invitation with broken base64: {exc}") from exc
    elif encoding == "quoted-printable":
        raw = quopri.decodestring(raw)
    try:
        return raw.decode(charset, "replace")
    except (LookupError, UnicodeError, ValueError, TypeError):  # as mailparse.body_text: idna, hex...
        return raw.decode("utf-8", "replace")


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# How often a folder on a server without QRESYNC may be listed to find what left it (`_listing`).
LISTING_SECONDS = 900


def listing_due(cursor: dict, now: datetime | None = None) -> bool:
    """Whether the folder's last listing (`listed_at`) is LISTING_SECONDS old, or there was none."""
    return older_than(cursor.get("listed_at"), LISTING_SECONDS, now)


def _widen_to(cursor: dict, since: datetime) -> date | None:
    """The new first day of a folder's backfill window when the organisation's window now starts
    before the day the folder was read from (its `since`), or a widening pass not ended yet
    (`widen_to`); None otherwise. Only for a folder whose backfill is done: one still in its
    backfill keeps the later day, and widens once done (fetch_changes)."""
    if not cursor.get("backfill_done") or not cursor.get("since"):
        return None
    if cursor.get("widen_to"):
        return date.fromisoformat(cursor["widen_to"])
    kept = _day(cursor["since"])
    return since.date() if kept is not None and since.date() < kept else None


def _day(value) -> date | None:
    """A cursor's day (ISO), or None when absent or unreadable."""
    try:
        return date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def since_date(days: int, now: datetime | None = None) -> datetime:
    return (now or datetime.now(timezone.utc)) - timedelta(days=days)


def _from_its_author(meeting, sender: str | None):
    """An invitation may only speak for whoever sent it: a REQUEST or CANCEL
    must come from the organiser, a REPLY only changes the sender's own answer.
    Anyone can mail a rep an .ics with a known UID; without this check they
    could move, cancel or rewrite a customer meeting. Returns the record to
    keep (a REPLY trimmed to the sender), or None."""
    if not sender:
        return None
    if meeting.method == "REPLY":
        own = [a for a in meeting.attendees if a.address.strip().lower() == sender]
        if not own:
            return None
        meeting.attendees = own
        return meeting
    organizer = meeting.organizer.address.strip().lower() if meeting.organizer else None
    return meeting if organizer == sender else None
