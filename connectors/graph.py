"""Microsoft 365 connector: mail and calendar through Microsoft Graph delta queries
(or Exchange Online IMAP with XOAUTH2, reusing the IMAP connector).

Folders: every mail folder except the ones Exchange marks by well-known name
as junk, deleted, drafts, outbox and the like (locale-proof) and search folders
(@odata.type mailSearchFolder: views of other folders' mail), named by its path
of display names, its Graph id as Folder.remote_id; plus one folder
"calendar:Calendar" with role "calendar" for calendarView/delta over the
organisation's CalendarWindow.

Cursor per folder (stored by the engine as given):
  id          the Graph folder id the links below belong to (mail folders)
  next_link   the next page of an unfinished round (absolute URL, followed verbatim)
  delta_link  the state token of the last finished round
  window      [start, end] of the calendar window the links belong to (calendar);
              once the window has moved a week, a fresh round starts over the new one,
              after the old round is read to its end (a deletion meanwhile)
  masters     series master id -> its iCalUId (calendar, a small cache)
  since       the backfill window's first instant (mail folders): the first round passes
              over mail received before it, and the count below uses the same instant; when
              the organisation's window starts earlier (backfill_days raised), the mail
              between is listed and read first (widen_to: the new instant; widen_upper and
              widen_seen: where that listing stood, should it be interrupted)
  round_started  when the unfinished round began: the count covers mail received before it
  server_count   what the reconciliation (app/services/reconcile.py) compares with the copies
              stored plus the skipped ones, once a round is done: mail folders, Graph's
              `$count=true` of messages received in [since, round start) that are no drafts;
              the calendar, the calendarView instances in the window with someone invited
              (counted by listing them; occurrences count one each, as the sync keeps them)
  counted_at  when server_count was taken: again at most hourly (base.RECOUNT_SECONDS), and
              at once after a removal or a full re-read

A round ends at @odata.deltaLink. An item named more than once in a page counts
at its last entry (see _last_entries). An expired state (410, SyncStateNotFound,
resyncRequired) restarts that folder from scratch with reset=True: the engine
drops the folder's copies and every record is re-linked by its key. The
calendar's listing covers its window only: its reset carries the window's start
(Batch.relists_from), and the meetings from before it keep their copies as history.

Graph gives delta no internet headers: In-Reply-To/References, List-Id and
Auto-Submitted are unknown here, so threads are keyed by the message's
conversationId (MessageRecord.conversation; Exchange derives it from the
conversation index a reply carries, so copies in colleagues' mailboxes agree,
and the follow-up queue's same-people rule joins the rare ones that do not), bulk mail
is caught only by the sender patterns the ingest pipeline applies to every
source, and auto-replies by Exchange's localized subject prefixes. Mail whose
From claims someone of the organisation, with someone outside it among the
recipients, is the exception: its headers are read with one more request
(`$select=internetMessageHeaders`), for what Exchange says about the sender
(see _transport_facts and sync/senders.py).
"""

from __future__ import annotations

import json
import os
import ssl
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from functools import lru_cache
from typing import Callable, Generator, Iterator
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from connectors.base import (
    MAX_LISTED_FOLDERS,
    Attendee,
    AuthError,
    BadDataError,
    BadRecord,
    Batch,
    CalendarWindow,
    ConnectorError,
    ConnectorSpec,
    CursorExpiredError,
    Fix,
    Folder,
    MeetingRecord,
    MessageRecord,
    ThrottledError,
    TransientError,
    counted,
    kept_count,
    recount_due,
    retry_after_seconds,
    utc_stamp,
)
from connectors.m365auth import (
    IMAP_APP_SCOPES,
    IMAP_USER_SCOPES,
    AppTokenSource,
    DelegatedTokenSource,
    graph_scopes,
    parse_credential,
)
from connectors.mailparse import MAX_ADDRESSES, message_ids, message_key_for, snippet_of

DEFAULT_GRAPH_URL = "https://graph.microsoft.com/v1.0"
MAX_CONCURRENT = 4  # Graph: at most 4 concurrent requests per app and mailbox
PAGE_SIZE = 1000
# Ids that stay when an item moves to another folder. The preference applies to the one request
# that carries it (Graph's "Obtain immutable identifiers" page), so every item request sends it.
IMMUTABLE_IDS = {"Prefer": 'IdType="ImmutableId"'}
CALENDAR_FOLDER = "calendar:Calendar"
# What each Graph mailbox subscribes to for change notifications.
SUBSCRIBED = ("mailFolders('inbox')/messages", "events")
# What a plain occurrence takes from its series master (see _events).
SERIES_FIELDS = ("subject", "organizer", "attendees", "location", "isCancelled", "isAllDay", "originalStartTimeZone")
MASTER_FIELDS = ",".join(("iCalUId", "type") + SERIES_FIELDS)
MESSAGE_FIELDS = (
    "internetMessageId",
    "subject",
    "from",
    "sender",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "receivedDateTime",
    "sentDateTime",
    "conversationId",
    "isDraft",
)
ROLE_BY_WELL_KNOWN = {"inbox": "inbox", "sentitems": "sent", "archive": "archive"}
SKIP_WELL_KNOWN = (
    "deleteditems",
    "junkemail",
    "drafts",
    "outbox",
    "conversationhistory",
    "syncissues",
    "conflicts",
    "localfailures",
    "serverfailures",
    "clutter",
    "scheduled",
)
EXPIRED_CODES = {"syncstatenotfound", "resyncrequired", "syncstateinvalid"}
AUTO_REPLY_PREFIXES = (
    "automatic reply:",
    "auto reply:",
    "autoreply:",
    "out of office:",
    "automatische antwort:",
    "réponse automatique",
    "respuesta automática:",
    "risposta automatica:",
    "autosvar:",
    "automatisch antwoord:",
    "resposta automática:",
)
RESPONSES = {
    "accepted": "accepted",
    "declined": "declined",
    "tentativelyaccepted": "tentative",
    "none": "needs-action",
    "notresponded": "needs-action",
    "organizer": "accepted",
}
# Windows zone names Outlook writes into events, with their IANA counterparts (CLDR).
WINDOWS_ZONES = {
    "UTC": "UTC",
    "Coordinated Universal Time": "UTC",
    "GMT Standard Time": "Europe/London",
    "Greenwich Standard Time": "Atlantic/Reykjavik",
    "W. Europe Standard Time": "Europe/Berlin",
    "Central Europe Standard Time": "Europe/Budapest",
    "Romance Standard Time": "Europe/Paris",
    "Central European Standard Time": "Europe/Warsaw",
    "E. Europe Standard Time": "Europe/Chisinau",
    "FLE Standard Time": "Europe/Kiev",
    "GTB Standard Time": "Europe/Bucharest",
    "Russian Standard Time": "Europe/Moscow",
    "Turkey Standard Time": "Europe/Istanbul",
    "Israel Standard Time": "Asia/Jerusalem",
    "South Africa Standard Time": "Africa/Johannesburg",
    "Arabian Standard Time": "Asia/Dubai",
    "India Standard Time": "Asia/Kolkata",
    "China Standard Time": "Asia/Shanghai",
    "Singapore Standard Time": "Asia/Singapore",
    "Tokyo Standard Time": "Asia/Tokyo",
    "Korea Standard Time": "Asia/Seoul",
    "AUS Eastern Standard Time": "Australia/Sydney",
    "New Zealand Standard Time": "Pacific/Auckland",
    "Eastern Standard Time": "America/New_York",
    "Central Standard Time": "America/Chicago",
    "Mountain Standard Time": "America/Denver",
    "US Mountain Standard Time": "America/Phoenix",
    "Pacific Standard Time": "America/Los_Angeles",
    "Alaskan Standard Time": "America/Anchorage",
    "Hawaiian Standard Time": "Pacific/Honolulu",
    "Atlantic Standard Time": "America/Halifax",
    "E. South America Standard Time": "America/Sao_Paulo",
    "Argentina Standard Time": "America/Buenos_Aires",
    "Canada Central Standard Time": "America/Regina",
    "Mexico Standard Time": "America/Mexico_City",
}

_gates: dict[str, threading.BoundedSemaphore] = {}
_gates_lock = threading.Lock()


def mailbox_gate(key: str) -> threading.BoundedSemaphore:
    """One semaphore per mailbox in this process: every connector, subscription
    job and prefetch for that mailbox shares the 4 slots."""
    with _gates_lock:
        gate = _gates.get(key)
        if gate is None:
            gate = _gates[key] = threading.BoundedSemaphore(MAX_CONCURRENT)
        return gate


@lru_cache(maxsize=8)
def _ssl_context(cafile: str | None) -> ssl.SSLContext | bool:
    return ssl.create_default_context(cafile=cafile) if cafile else True


def _verify() -> ssl.SSLContext | bool:
    # The same trust store msal (requests) uses, so one setting covers both.
    return _ssl_context(os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE") or None)


def build(spec: ConnectorSpec):
    """A connector from its spec: a delegated mailbox's config holds client_id (and
    tenant_id, user, authority, graph_url), its secret is the token cache; a
    tenant-wide one has spec.tenant and the tenant app's credential as secret."""
    cfg = dict(spec.config or {})
    tenant = spec.tenant
    imap = cfg.get("protocol") == "imap"
    owner = cfg.get("user") or spec.owner or ""
    tokens: AppTokenSource | DelegatedTokenSource
    if tenant:
        tcfg = tenant.config or {}
        graph_url = tcfg.get("graph_url") or DEFAULT_GRAPH_URL
        tokens = AppTokenSource(
            tenant.tenant_id,
            tenant.client_id,
            parse_credential(tenant.auth_kind or "secret", spec.secret),
            authority=tcfg.get("authority"),
            scopes=IMAP_APP_SCOPES if imap else graph_scopes(graph_url, delegated=False),
        )
        user_path = f"/users/{quote(owner, safe='@')}"
    else:
        if not cfg.get("client_id"):
            raise AuthError("this Microsoft 365 mailbox has no app registration", fix=Fix.SIGN_IN)
        graph_url = cfg.get("graph_url") or DEFAULT_GRAPH_URL
        tokens = DelegatedTokenSource(
            cfg["client_id"],
            cfg.get("tenant_id") or "organizations",
            spec.secret,
            authority=cfg.get("authority"),
            username=cfg.get("user"),
            scopes=IMAP_USER_SCOPES if imap else graph_scopes(graph_url, delegated=True),
        )
        user_path = "/me"
    if imap:
        return exchange_imap(cfg, owner, tokens, spec.want_snippet)
    return GraphConnector(
        graph_url=graph_url,
        user_path=user_path,
        tokens=tokens,
        want_snippet=spec.want_snippet,
        mailbox_key=f"{graph_url}|{owner.lower()}",
        window=spec.window,
        owner=owner,
        internal=spec.internal,
        page_size=int(cfg.get("page_size", PAGE_SIZE)),
        max_retry_wait=float(cfg.get("max_retry_wait", 60)),
    )


def exchange_imap(cfg: dict, owner: str, tokens, want_snippet: bool):
    """Exchange Online IMAP with an OAuth access token (SASL XOAUTH2)."""
    from connectors.imap import ImapConnector, ImapSettings

    class ExchangeImapConnector(ImapConnector):
        @property
        def updated_secret(self):
            return tokens.updated_secret

        def connect(self):
            try:
                return super().connect()
            except AuthError as exc:
                if exc.fix != Fix.PASSWORD:
                    raise
                raise AuthError(
                    f"Exchange Online refused the OAuth sign-in (XOAUTH2) for {self.settings.username}",
                    fix=Fix.IMAP_SIGN_IN,
                ) from exc

    settings = ImapSettings(
        host=cfg.get("host", "outlook.office365.com"),
        port=int(cfg.get("port", 993)),
        security=cfg.get("security", "tls"),
        username=cfg.get("username") or owner,
        batch_size=int(cfg.get("batch_size", 1000)),
    )
    return ExchangeImapConnector(settings, "", want_snippet=want_snippet, oauth2_token=tokens.token)


class GraphConnector:
    def __init__(
        self,
        *,
        graph_url: str,
        user_path: str,
        tokens,
        want_snippet: bool,
        mailbox_key: str,
        window: CalendarWindow = CalendarWindow(),
        page_size: int = PAGE_SIZE,
        max_retries: int = 3,
        max_retry_wait: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        owner: str = "",
        internal: dict | None = None,
    ):
        self.graph_url = graph_url.rstrip("/")
        self.user_path = user_path
        self.owner = owner.strip().lower()
        # The organisation's domains and users' addresses (sync.engine._connector_args).
        self.internal_domains = tuple((internal or {}).get("domains") or ())
        self.internal_addresses = frozenset((internal or {}).get("addresses") or ())
        self.tokens = tokens
        self.want_snippet = want_snippet
        self.window = window
        self.page_size = page_size
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self._sleep = sleep
        self.gate = mailbox_gate(mailbox_key)
        self.http = httpx.Client(
            verify=_verify(),
            timeout=httpx.Timeout(60.0, connect=15.0),
            limits=httpx.Limits(max_connections=MAX_CONCURRENT, max_keepalive_connections=MAX_CONCURRENT),
            headers={"Accept": "application/json", "User-Agent": "Threadline"},
        )
        self._pool = ThreadPoolExecutor(max_workers=MAX_CONCURRENT, thread_name_prefix="graph")
        self._token: str | None = None
        self._token_lock = threading.Lock()
        self._folder_ids: dict[str, str] = {}
        # Series masters: id -> iCalUId (also kept in the calendar cursor) and, for
        # this run only, id -> the fields its plain occurrences take from it.
        self._masters: dict[str, str] = {}
        self._master_info: dict[str, dict] = {}
        # Measurements (benchmarks, tests): time inside HTTP calls (prefetches
        # overlap the engine's work), time the caller actually waited for Graph,
        # requests made, throttling waits.
        self.http_seconds = 0.0
        self.wait_seconds = 0.0
        self.requests = 0
        self.throttle_waits: list[float] = []

    def __repr__(self) -> str:
        return f"GraphConnector({self.graph_url}{self.user_path})"

    @property
    def updated_secret(self) -> str | None:
        return self.tokens.updated_secret

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.http.close()

    # -- HTTP -----------------------------------------------------------------
    def _access_token(self, *, force_refresh: bool = False) -> str:
        with self._token_lock:
            if self._token is None or force_refresh:
                self._token = self.tokens.token(force_refresh=force_refresh)
            return self._token

    def call(
        self, method: str, url: str, *, what: str, json_body: dict | None = None, headers: dict | None = None
    ) -> httpx.Response:
        """One Graph request: at most 4 in flight per mailbox, Retry-After honoured
        a few times, one token refresh on 401, errors mapped to the shared kinds."""
        if not url.startswith("https://") and not url.startswith("http://"):
            url = self.graph_url + url
        refreshed = False
        attempt = 0
        while True:
            token = self._access_token()
            sent = {"Authorization": f"Bearer {token}", **(headers or {})}
            started = time.perf_counter()
            try:
                with self.gate:
                    resp = self.http.request(method, url, headers=sent, json=json_body)
                    resp.read()
            except httpx.TimeoutException as exc:
                raise TransientError(f"Microsoft Graph did not answer in time while {what}") from exc
            except httpx.HTTPError as exc:
                raise TransientError(
                    f"cannot reach Microsoft Graph while {what}: {type(exc).__name__}: {str(exc)[:200]}"
                ) from exc
            finally:
                spent = time.perf_counter() - started
                self.http_seconds += spent
                self.requests += 1
                if not threading.current_thread().name.startswith("graph"):
                    self.wait_seconds += spent  # the caller itself waited (not a prefetch)
            status = resp.status_code
            if status < 300:
                return resp
            code, message = _graph_error(resp)
            if status in (429, 503, 504) or code == "ApplicationThrottled":
                wait = _retry_after(resp, attempt)
                if attempt < self.max_retries and wait <= self.max_retry_wait:
                    attempt += 1
                    self.throttle_waits.append(wait)
                    self._sleep(wait)
                    continue
                raise ThrottledError(
                    f"Microsoft Graph is throttling this mailbox ({status} {code or ''}) while "
                    f"{what}; retrying after {wait:.0f} s",
                    retry_after=wait,
                )
            if status == 401 and not refreshed:
                refreshed = True
                self._access_token(force_refresh=True)
                continue
            raise self._error(status, code, message, what)

    def _error(self, status: int, code: str, message: str, what: str) -> ConnectorError:
        detail = f"{code}: {message}"[:300] if code else f"HTTP {status}"
        if status == 410 or code.lower() in EXPIRED_CODES:
            return CursorExpiredError(f"the sync state expired while {what} ({detail})")
        if status == 401:
            return AuthError(
                f"Microsoft Graph refused the access token ({detail}): the sign-in expired or was revoked",
                fix=Fix.SIGN_IN if self.user_path == "/me" else Fix.APP_CREDENTIAL,
            )
        if status == 403:
            text = message.lower()
            if (
                "accesspolicy" in text.replace(" ", "")
                or "access to odata is disabled" in text
                or "application access policy" in text
            ):
                return AuthError(
                    f"Microsoft 365 blocks this app from {self.user_path.rsplit('/', 1)[-1]}: an Exchange "
                    f"application access policy denies it ({detail})",
                    fix=Fix.ACCESS_POLICY,
                )
            return AuthError(f"Microsoft Graph denied access while {what} ({detail})", fix=Fix.CONSENT)
        if status == 404 and code in (
            "ErrorInvalidUser",
            "MailboxNotEnabledForRESTAPI",
            "ResourceNotFound",
            "ErrorNonExistentMailbox",
        ):
            return AuthError(f"Microsoft 365 has no usable mailbox here ({detail})", fix=Fix.NO_MAILBOX)
        if status >= 500:
            return TransientError(f"Microsoft Graph failed while {what} ({detail})")
        return BadDataError(f"Microsoft Graph refused the request while {what} ({detail})")

    def get_json(self, url: str, *, what: str, headers: dict | None = None) -> dict:
        resp = self.call("GET", url, what=what, headers=headers)
        try:
            data = json.loads(resp.content)
        except ValueError as exc:
            raise BadDataError(f"Microsoft Graph sent an unreadable answer while {what} (invalid JSON)") from exc
        if not isinstance(data, dict):
            raise BadDataError(f"Microsoft Graph sent an unexpected answer while {what} (not an object)")
        return data

    def _prefer(self, *extra: str) -> dict:
        return {"Prefer": ", ".join((f"odata.maxpagesize={self.page_size}", IMMUTABLE_IDS["Prefer"]) + extra)}

    # -- folders ----------------------------------------------------------------
    def list_folders(self) -> list[Folder]:
        from connectors.imap import ARCHIVE_NAMES, SENT_NAMES, SKIP_NAMES

        well_known = self._well_known_ids()
        folders: list[Folder] = []
        queue: list[tuple[str, str, str | None]] = [(f"{self.user_path}/mailFolders", "", None)]
        while queue and len(folders) < MAX_LISTED_FOLDERS:
            url, prefix, inherited = queue.pop(0)
            url += "?$top=250&$select=id,displayName,childFolderCount,isHidden"
            for item in self._all_pages(url, what="listing mail folders"):
                fid, name = item.get("id"), str(item.get("displayName") or "").strip()
                if not fid or not name or item.get("isHidden"):
                    continue
                wk = well_known.get(fid)
                # A search folder is a view of messages that live in other folders (Deleted
                # Items and Junk Email too); Graph lists it among the folders by its type.
                search = str(item.get("@odata.type") or "").lower().endswith("mailsearchfolder")
                if wk in SKIP_WELL_KNOWN or inherited == "skip" or search:
                    role = "skip"
                elif wk in ROLE_BY_WELL_KNOWN:
                    role = ROLE_BY_WELL_KNOWN[wk]
                elif inherited == "archive" or (not prefix and name.lower() in ARCHIVE_NAMES):
                    role = "archive"
                elif name.lower() in SKIP_NAMES:
                    role = "skip"
                elif not prefix and name.lower() in SENT_NAMES and "sentitems" not in well_known.values():
                    role = "sent"
                else:
                    role = "other"
                path = f"{prefix}{name}"
                self._folder_ids[path] = fid
                folders.append(Folder(name=path, role=role, flags=(f"wk:{wk}",) if wk else (), remote_id=fid))
                if role != "skip" and int(item.get("childFolderCount") or 0) > 0 and prefix.count("/") < 5:
                    queue.append(
                        (
                            f"{self.user_path}/mailFolders/{quote(fid)}/childFolders",
                            path + "/",
                            "archive" if role == "archive" else None,
                        )
                    )
        folders.append(Folder(name=CALENDAR_FOLDER, role="calendar"))
        return folders

    def _well_known_ids(self) -> dict[str, str]:
        """folder id -> well-known name, resolved by GET mailFolders/{name} (locale-proof)."""
        names = ("inbox", "sentitems", "archive") + SKIP_WELL_KNOWN

        def one(name: str):
            try:
                data = self.get_json(f"{self.user_path}/mailFolders/{name}?$select=id", what=f"finding {name}")
            except BadDataError:  # not every mailbox has every well-known folder
                return None
            return data.get("id"), name

        out = {}
        waited = time.perf_counter()
        for found in self._pool.map(one, names):
            if found and found[0]:
                out[found[0]] = found[1]
        self.wait_seconds += time.perf_counter() - waited
        return out

    def _all_pages(self, url: str, *, what: str) -> Iterator[dict]:
        for _ in range(1000):
            page = self.get_json(url, what=what)
            value = page.get("value")
            if not isinstance(value, list):
                raise BadDataError(f"Microsoft Graph sent a page without a value list while {what}")
            yield from (v for v in value if isinstance(v, dict))
            url = page.get("@odata.nextLink") or ""
            if not url:
                return

    # -- changes ------------------------------------------------------------------
    def fetch_changes(self, folder: Folder, cursor: dict, since: datetime) -> Iterator[Batch]:
        if folder.role == "calendar":
            yield from self._calendar_changes(cursor)
            return
        fid = folder.remote_id or self._folder_ids.get(folder.name)
        if not fid:
            raise BadDataError(f"folder {folder.name!r} has no Graph id")
        cursor = dict(cursor or {})
        reset = False
        if cursor and cursor.get("id") != fid:  # deleted and re-created under the same name
            cursor, reset = {}, True
        wanted = since  # the organisation's backfill window as it is now
        select = ",".join(MESSAGE_FIELDS + (("bodyPreview",) if self.want_snippet else ()))
        incremental = bool(cursor.get("delta_link") or cursor.get("incremental"))
        # The backfill window's first instant, kept for the folder: the first round passes over
        # mail received before it, and the server count (the reconciliation's side) uses the same.
        start = cursor.get("since") or utc_stamp(since)
        since = _parse_time(start) or since
        # When this round began (kept while it spans runs): the count covers mail received
        # before it, which the round lists; later mail is the next round's to read and count.
        round_started = cursor.get("round_started") if cursor.get("next_link") else None
        base = {"id": fid, "since": start, "round_started": round_started or utc_stamp()}
        count = kept_count(cursor)

        def fresh() -> str:
            # No $filter on receivedDateTime: Graph then returns at most 5,000 messages
            # (documented), silently. The backfill window is applied here instead.
            return f"{self.user_path}/mailFolders/{quote(fid)}/messages/delta?$select={select}"

        def convert(items: list, incremental: bool, base: dict):
            records, bad, removed = self._messages(items, None if incremental else since)
            self._transport_facts(records, folder.role)
            return records, bad, removed

        changed = reset  # something left the folder, or it is read again from scratch: count again
        if cursor.get("delta_link") and not reset and (cursor.get("widen_to") or wanted < since):
            start = yield from self._widen(
                fid, folder, cursor, select, start, cursor.get("widen_to") or utc_stamp(wanted)
            )
            since, base["since"], changed = _parse_time(start) or since, start, True
        for batch in self._rounds(
            cursor.get("next_link") or cursor.get("delta_link") or fresh(),
            fresh,
            base,
            convert,
            reset,
            what=f"syncing folder {folder.name!r}",
            incremental=incremental,
        ):
            if batch.reset:
                changed, count = True, {}
            changed = changed or bool(batch.removed)
            if batch.backfill_done:
                if not incremental or recount_due(count, changed=changed):
                    n = self._count_messages(fid, folder, start, base["round_started"])
                    count = counted(n)
                batch.cursor.update(count)
                batch.cursor.pop("round_started", None)  # the next round starts its own
            elif count:
                batch.cursor.update(count)  # an incremental round spanning runs keeps the last count
            yield batch

    def _widen(
        self, fid: str, folder: Folder, cursor: dict, select: str, old: str, new: str
    ) -> Generator[Batch, None, str]:
        """The backfill window made wider (backfill_days raised) after the folder's first round:
        the mail received between the new start and the one that round passed over is read as it
        would have read it. Listed by the folder's messages filtered on receivedDateTime, newest
        first (a delta round lists only changes), a page at a time from where the last page ended
        (`widen_upper`, and the ids read at that very instant, `widen_seen`): a nextLink counts
        by position, and a message deleted meanwhile would make it skip one. An interrupted pass
        resumes there. The delta state is kept and read after it. Returns the new start."""
        upper = cursor.get("widen_upper") or old
        seen = set(cursor.get("widen_seen") or ())
        bound = "le" if cursor.get("widen_upper") else "lt"  # the old start itself was read
        what = f"reading the older mail of folder {folder.name!r}"
        kept = {k: v for k, v in cursor.items() if k not in ("widen_to", "widen_upper", "widen_seen")}
        url = ""
        while True:
            if not url:
                flt = f"receivedDateTime ge {new} and receivedDateTime {bound} {upper}"
                url = (
                    f"{self.user_path}/mailFolders/{quote(fid)}/messages?$select={select}&$top={self.page_size}"
                    f"&$filter={quote(flt, safe='')}&$orderby={quote('receivedDateTime desc', safe='')}"
                )
            page = self.get_json(url, what=what, headers={"Prefer": IMMUTABLE_IDS["Prefer"]})
            url = ""
            value = page.get("value")
            if not isinstance(value, list):
                raise BadDataError(f"Microsoft Graph sent a page without a value list while {what}")
            items = [i for i in value if isinstance(i, dict) and i.get("id") not in seen]
            if not items and value and page.get("@odata.nextLink"):
                # a whole page received at the instant already reached: its nextLink goes past them
                url = page["@odata.nextLink"]
                continue
            records, bad, _ = self._messages(_last_entries(items), None)
            self._transport_facts(records, folder.role)
            stamps = {i.get("id"): utc_stamp(t) for i in items if (t := _parse_time(i.get("receivedDateTime")))}
            if not page.get("@odata.nextLink") or not stamps:
                yield Batch(records, bad, {**kept, "since": new})
                return new
            oldest = min(stamps.values())
            at_oldest = {rid for rid, stamp in stamps.items() if stamp == oldest}
            seen = (seen | at_oldest) if (bound == "le" and oldest == upper) else at_oldest
            upper, bound = oldest, "le"
            yield Batch(records, bad, {**kept, "widen_to": new, "widen_upper": upper, "widen_seen": sorted(seen)})

    def _count_messages(self, fid: str, folder: Folder, start: str, before: str) -> int:
        """How many messages of the folder the sync is meant to have read: received from the
        window's start until this round began, drafts left out (as _messages leaves them out).
        Graph's $count=true answers the total of the filtered collection as @odata.count
        (ConsistencyLevel: eventual, as advanced queries ask); one item is listed, not read."""
        flt = f"receivedDateTime ge {start} and receivedDateTime lt {before} and isDraft eq false"
        url = (
            f"{self.user_path}/mailFolders/{quote(fid)}/messages"
            f"?$count=true&$top=1&$select=id&$filter={quote(flt, safe='')}"
        )
        what = f"counting the messages of folder {folder.name!r}"
        data = self.get_json(url, what=what, headers={"ConsistencyLevel": "eventual"})
        count = data.get("@odata.count")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise BadDataError(f"Microsoft Graph sent no @odata.count while {what}")
        return count

    def _rounds(
        self,
        url: str,
        fresh: Callable[[], str],
        base: dict,
        convert,
        reset: bool,
        *,
        what: str,
        incremental: bool,
        headers: dict | None = None,
        relists_from: datetime | None = None,
    ) -> Iterator[Batch]:
        """Follow nextLinks verbatim up to the deltaLink; the next page is fetched while
        the engine ingests the current one. An expired state restarts once from scratch.
        relists_from: where a fresh listing starts (the window it reads), told with a reset and
        at the listing's end."""
        headers = headers or self._prefer()
        restarted = False
        if reset:
            incremental = False
            yield Batch([], [], {**base}, reset=True, relists_from=relists_from)
            reset = False
        pending: Future = self._pool.submit(self.get_json, url, what=what, headers=headers)
        try:
            while True:
                waited = time.perf_counter()
                try:
                    page = pending.result()
                except CursorExpiredError:
                    if restarted:
                        raise
                    restarted, incremental = True, False
                    yield Batch([], [], {**base}, reset=True, relists_from=relists_from)
                    pending = self._pool.submit(self.get_json, fresh(), what=what, headers=headers)
                    continue
                finally:
                    self.wait_seconds += time.perf_counter() - waited
                value = page.get("value")
                next_link, delta_link = page.get("@odata.nextLink"), page.get("@odata.deltaLink")
                if not isinstance(value, list):
                    raise BadDataError(f"Microsoft Graph sent a page without a value list while {what}")
                if not next_link and not delta_link:
                    raise BadDataError(f"Microsoft Graph sent a page with neither nextLink nor deltaLink while {what}")
                if next_link:
                    pending = self._pool.submit(self.get_json, next_link, what=what, headers=headers)
                records, bad, removed = convert(_last_entries(value), incremental, base)
                if next_link:
                    cursor = {**base, "next_link": next_link, "incremental": incremental}
                else:
                    cursor = {**base, "delta_link": delta_link}
                # a fresh listing's end tells what it covered, as its reset did
                covered = relists_from if delta_link and not incremental else None
                yield Batch(records, bad, cursor, removed=removed, backfill_done=bool(delta_link), relists_from=covered)
                if delta_link:
                    return
        finally:
            pending.cancel()

    def _messages(self, items: list, since: datetime | None):
        """since: the backfill window's start, for a first round (older mail is passed over).
        Later rounds read what they list whatever its date, as IMAP reads every new UID: old
        mail moved into the folder is new to it."""
        records, bad, removed = [], [], []
        for item in items:
            rid = item.get("id") if isinstance(item, dict) else None
            if not rid:
                bad.append(BadRecord("?", "message without an id"))
                continue
            if "@removed" in item:
                removed.append(rid)
                continue
            if item.get("isDraft") is True:
                continue  # never sent: not mail to anyone
            if since is not None:
                received = _parse_time(item.get("receivedDateTime"))
                if received is not None and received < since:
                    continue
            try:
                records.append(self._message(rid, item))
            except BadDataError as exc:
                bad.append(BadRecord(rid, str(exc)))
            except Exception as exc:  # noqa: BLE001 - one message never stops the folder
                bad.append(BadRecord(rid, f"unreadable message: {type(exc).__name__}: {exc}"[:300]))
        return records, bad, removed

    def _message(self, rid: str, item: dict) -> MessageRecord:
        sender = _address(item.get("from")) or _address(item.get("sender"))
        if sender is None:
            raise BadDataError("missing or invalid sender")
        date = _parse_time(item.get("sentDateTime")) or _parse_time(item.get("receivedDateTime"))
        if date is None:
            raise BadDataError("no usable sentDateTime or receivedDateTime")
        subject = str(item.get("subject") or "")[:998]
        preview = item.get("bodyPreview") if self.want_snippet else None
        to, cc = _addresses(item.get("toRecipients")), _addresses(item.get("ccRecipients"))
        bcc = _addresses(item.get("bccRecipients"))
        return MessageRecord(
            remote_id=rid,
            message_key=message_key(item, sender, date, subject),
            date=date,
            from_=[sender],
            to=to,
            cc=cc,
            bcc=bcc,
            subject=subject,
            in_reply_to=None,
            references=[],
            conversation=str(item.get("conversationId") or "") or None,
            auto_reply=subject.lower().startswith(AUTO_REPLY_PREFIXES),
            invitation=_calendar_message(item),
            # bodyPreview is Graph's first 255 characters of the text: the snippet stops at a
            # quoted reply in it as over IMAP, but it is too short for a signature (the body or
            # uniqueBody would cost a download of the whole text per message).
            snippet=snippet_of(str(preview)) if preview else None,
            recipients_not_kept=_not_kept(item, [sender, *to, *cc, *bcc]),
        )

    def _claims_internal(self, address: str) -> bool:
        address = address.strip().lower()
        domain = address.rpartition("@")[2]
        return address in self.internal_addresses or any(
            domain == d or domain.endswith("." + d) for d in self.internal_domains
        )

    def _transport_facts(self, records: list[MessageRecord], role: str) -> None:
        """Read the internet headers of mail claiming a sender of the organisation and
        written to someone outside it (the only mail whose sender matters to ingest;
        the owner's own Sent Items vouch for themselves), a request each, four at once.

        Kept: whether there is a Received field, the Authentication-Results, and
        Exchange's X-MS-Exchange-Organization-AuthAs. "Internal" there means an
        authenticated sender of the organisation submitted the message; mail from
        outside says "Anonymous", and Exchange's header firewall strips any
        X-MS-Exchange-Organization-* field a sender wrote before it can be stored,
        so Graph's copy of the header is Exchange's own word."""
        wanted = []
        for r in records:
            sender = r.from_[0][1].strip().lower()
            if (role == "sent" and sender == self.owner) or not self._claims_internal(sender):
                continue
            if any(not self._claims_internal(a) for _, a in r.to + r.cc + r.bcc):
                wanted.append(r)
        what = "reading the internet headers of mail from a colleague"
        asked = [
            (
                r,
                self._pool.submit(
                    self.get_json,
                    f"{self.user_path}/messages/{quote(r.remote_id, safe='')}?$select=internetMessageHeaders",
                    what=what,
                    headers=IMMUTABLE_IDS,
                ),
            )
            for r in wanted
        ]
        for r, answer in asked:
            try:
                headers = answer.result().get("internetMessageHeaders") or []
            except BadDataError:
                continue  # gone meanwhile, or refused: nothing vouches for the sender
            fields = [
                (str(h.get("name") or "").lower(), str(h.get("value") or "")) for h in headers if isinstance(h, dict)
            ]
            r.relayed = any(name == "received" for name, _ in fields)
            r.auth_results = tuple(v for name, v in fields if name == "authentication-results")[:5]
            r.internal_submission = any(
                name == "x-ms-exchange-organization-authas" and v.strip().lower() == "internal" for name, v in fields
            )

    # -- calendar -------------------------------------------------------------------
    def _calendar_changes(self, cursor: dict) -> Iterator[Batch]:
        cursor = dict(cursor or {})
        window, slid = self.window.for_cursor(cursor.get("window"))
        self._masters = dict(cursor.get("masters") or {})
        expired = False
        if slid:
            expired = yield from self._finish_round(cursor)
            cursor = {"masters": self._masters}
        win = list(window)

        def fresh() -> str:
            return f"{self.user_path}/calendarView/delta?startDateTime={win[0]}&endDateTime={win[1]}"

        base = {"window": win, "masters": self._masters}
        incremental = bool(cursor.get("delta_link") or cursor.get("incremental"))
        count = kept_count(cursor)
        changed = False
        for batch in self._rounds(
            cursor.get("next_link") or cursor.get("delta_link") or fresh(),
            fresh,
            base,
            self._events,
            expired,  # the old round's state expired: what it would have told is lost, read afresh
            what="syncing the calendar",
            incremental=incremental,
            relists_from=_parse_time(win[0]),
        ):
            if len(self._masters) > 2000:  # keep the cursor small; misses are looked up again
                self._masters = dict(list(self._masters.items())[-1000:])
            batch.cursor["masters"] = dict(self._masters)
            if batch.reset:
                changed, count = True, {}
            changed = changed or bool(batch.removed)
            if batch.backfill_done and (not incremental or recount_due(count, changed=changed)):
                count = counted(self._count_meetings(win))
            batch.cursor.update(count)
            yield batch

    def _finish_round(self, cursor: dict) -> Generator[Batch, None, bool]:
        """The old window's round read to its end before a fresh round over the new window: a
        meeting deleted since its last round is told only by its delta (the fresh round just
        does not list it, and its copy stayed on the timeline for good). Its batches end no
        listing (the fresh round is the folder's listing). Returns whether its state had expired:
        the fresh round is then a re-listing (`reset`), as after any expired state."""
        link, old = cursor.get("next_link") or cursor.get("delta_link"), cursor.get("window")
        if not link or not old:
            return False
        base = {"window": list(old), "masters": self._masters}
        incremental = bool(cursor.get("delta_link") or cursor.get("incremental"))
        what = "finishing the calendar's last round before its window moves"
        for batch in self._rounds(link, lambda: link, base, self._events, False, what=what, incremental=incremental):
            if batch.reset:
                return True
            batch.cursor["masters"] = dict(self._masters)
            batch.backfill_done = False
            yield batch
        return False

    def _count_meetings(self, window: list[str]) -> int:
        """How many instances in the window the calendar sync is meant to read: calendarView
        (single events, occurrences and exceptions; never series masters) with someone invited,
        as _event reads them (a rep's own appointment is no meeting). Graph's $count=true gives
        the collection's total with the first page: a listing that ends short of it is an
        incomplete answer, tried again later. Counted as instances, as the sync keeps them."""
        url = (
            f"{self.user_path}/calendarView?startDateTime={window[0]}&endDateTime={window[1]}"
            f"&$count=true&$top={self.page_size}&$select=id,type,attendees"
        )
        what = "counting the calendar's meetings"
        total, listed, meetings = None, 0, 0
        for _ in range(10000):
            page = self.get_json(url, what=what, headers={"ConsistencyLevel": "eventual"})
            value = page.get("value")
            if not isinstance(value, list):
                raise BadDataError(f"Microsoft Graph sent a page without a value list while {what}")
            if total is None and isinstance(page.get("@odata.count"), int):
                total = page["@odata.count"]
            listed += len(value)
            meetings += sum(1 for item in value if isinstance(item, dict) and _invited(item))
            url = page.get("@odata.nextLink") or ""
            if not url:
                break
        if total is not None and listed < total:
            raise TransientError(f"Microsoft Graph listed {listed} of {total} events while {what}")
        return meetings

    def _events(self, items: list, incremental: bool, base: dict):
        records, bad, removed = [], [], []
        live = [
            i
            for i in items
            if isinstance(i, dict)
            and i.get("seriesMasterId")
            and "@removed" not in i
            and i.get("type") in ("occurrence", "exception")
        ]
        # Every instance needs its series' iCalUId (kept in the cursor); a plain
        # occurrence also needs the series' subject, people and place, since
        # calendarView/delta gives it only id, seriesMasterId, type, start and end.
        need = {str(i["seriesMasterId"]) for i in live} - set(self._masters)
        need |= {str(i["seriesMasterId"]) for i in live if _sparse(i)} - set(self._master_info)
        self._lookup_masters(need)
        for item in items:
            rid = item.get("id") if isinstance(item, dict) else None
            if not rid:
                bad.append(BadRecord("?", "event without an id"))
                continue
            if "@removed" in item:
                removed.append(rid)
                continue
            if item.get("type") == "seriesMaster":
                continue
            try:
                record = self._event(rid, item)
            except BadDataError as exc:
                bad.append(BadRecord(rid, str(exc)))
                continue
            except Exception as exc:  # noqa: BLE001
                bad.append(BadRecord(rid, f"unreadable event: {type(exc).__name__}: {exc}"[:300]))
                continue
            if record is None:
                if incremental:  # attendees all gone: no longer a meeting with anyone
                    removed.append(rid)
                continue
            records.append(record)
        return records, bad, removed

    def _lookup_masters(self, ids: set[str]) -> None:
        def one(master_id: str):
            try:
                data = self.get_json(
                    f"{self.user_path}/events/{quote(master_id)}?$select={MASTER_FIELDS}",
                    what="reading a recurring meeting's series",
                    headers=IMMUTABLE_IDS,
                )
            except BadDataError:
                return master_id, None
            return master_id, data

        waited = time.perf_counter()
        for master_id, data in self._pool.map(one, sorted(ids)):
            if data and data.get("iCalUId"):
                self._masters[master_id] = data["iCalUId"]
                self._master_info[master_id] = {k: data[k] for k in SERIES_FIELDS if k in data}
        self.wait_seconds += time.perf_counter() - waited

    def _event(self, rid: str, item: dict) -> MeetingRecord | None:
        if _sparse(item):
            series = self._master_info.get(str(item.get("seriesMasterId")))
            if series is None:
                raise BadDataError(f"recurring meeting whose series {item.get('seriesMasterId')!r} cannot be read")
            item = {**series, **item}
        attendees = []
        for a in _people(item):
            addr = _address(a)
            if addr is None:
                continue
            response = RESPONSES.get(str((a.get("status") or {}).get("response") or "none").lower(), "needs-action")
            attendees.append(
                Attendee(
                    address=addr[1],
                    name=addr[0],
                    role="optional" if a.get("type") == "optional" else "attendee",
                    response=response,
                )
            )
        if not attendees:
            return None
        kind = item.get("type") or "singleInstance"
        if kind in ("occurrence", "exception"):
            master = item.get("seriesMasterId")
            uid = original_uid(self._masters.get(str(master)) or "") if master else None
            if not uid:
                raise BadDataError(f"recurring meeting whose series {master!r} cannot be read")
            original = _parse_time(item.get("originalStart")) or _event_time(item.get("start"))
            if original is None:
                raise BadDataError("occurrence without originalStart")
            if item.get("isAllDay"):  # keyed by its date, like an iCalendar VALUE=DATE recurrence id
                local = original.astimezone(
                    _first_zone(item.get("originalStartTimeZone"), (item.get("start") or {}).get("timeZone"))
                )
                original = datetime(local.year, local.month, local.day, tzinfo=timezone.utc)
            recurrence_id = original.strftime("%Y-%m-%dT%H:%M:%SZ")
        else:
            uid = original_uid(str(item.get("iCalUId") or ""))
            if not uid:
                raise BadDataError("event without iCalUId")
            recurrence_id = None
        all_day = bool(item.get("isAllDay"))
        start = _event_time(item.get("start"), all_day=all_day)
        if start is None:
            raise BadDataError("event without a readable start")
        org = _address(item.get("organizer"))
        location = ((item.get("location") or {}).get("displayName") or "").strip() or None
        return MeetingRecord(
            remote_id=rid,
            uid=str(uid),
            recurrence_id=recurrence_id,
            start=start,
            end=_event_time(item.get("end"), all_day=all_day),
            subject=str(item.get("subject") or "")[:998],
            organizer=Attendee(address=org[1], name=org[0], role="organizer", response="accepted") if org else None,
            attendees=attendees,
            status="cancelled" if item.get("isCancelled") else "confirmed",
            location=location,
        )

    # -- push subscriptions ------------------------------------------------------------
    def subscription_resources(self) -> list[str]:
        path = self.user_path.lstrip("/")
        return [f"{path}/{r}" for r in SUBSCRIBED]

    def create_subscription(
        self, resource: str, notification_url: str, lifecycle_url: str, client_state: str, expires: datetime
    ) -> dict:
        resp = self.call(
            "POST",
            "/subscriptions",
            what="creating a change subscription",
            json_body={
                "changeType": "created,updated,deleted",
                "notificationUrl": notification_url,
                "lifecycleNotificationUrl": lifecycle_url,
                "resource": resource,
                "clientState": client_state,
                "expirationDateTime": expires.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        )
        return resp.json()

    def renew_subscription(self, subscription_id: str, expires: datetime) -> dict:
        resp = self.call(
            "PATCH",
            f"/subscriptions/{quote(subscription_id)}",
            what="renewing a change subscription",
            json_body={"expirationDateTime": expires.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")},
        )
        return resp.json()

    def delete_subscription(self, subscription_id: str) -> None:
        try:
            self.call("DELETE", f"/subscriptions/{quote(subscription_id)}", what="deleting a change subscription")
        except (BadDataError, AuthError):
            pass  # already gone


# -- helpers --------------------------------------------------------------------------

# Graph types a meeting request, its cancellation and an attendee's answer as eventMessage
# subtypes, named by @odata.type. A plain eventMessage may be a request or a cancellation (only
# meetingMessageType, a property of the subtype the delta's $select cannot name, would say).
_EVENT_MESSAGE_TYPES = {"eventmessage": "REQUEST", "eventmessagerequest": "REQUEST", "eventmessageresponse": "REPLY"}


def _calendar_message(item: dict) -> str | None:
    """The iMIP method an eventMessage stands for; None for ordinary mail."""
    return _EVENT_MESSAGE_TYPES.get(str(item.get("@odata.type") or "").rpartition(".")[2].lower())


def _graph_error(resp: httpx.Response) -> tuple[str, str]:
    try:
        err = resp.json().get("error")
    except (ValueError, AttributeError):
        return "", resp.text[:200]
    if isinstance(err, dict):
        return str(err.get("code") or ""), str(err.get("message") or "")
    return str(err or ""), ""


def _last_entries(items: list) -> list:
    """A delta page with each item only at its last entry. Graph may name an item more than
    once in a round, in the order its changes happened: a message moved out of the folder and
    back (its immutable id kept) comes as its removal and then the message. Split into records
    and removals, which the engine applies in that order, the earlier removal would drop the
    copy the later entry keeps; the last entry is what the folder holds now. Pages are
    batches applied in order, so a later page still overrides an earlier one."""
    last: dict[str, int] = {}
    named = 0
    for i, item in enumerate(items):
        if isinstance(item, dict) and item.get("id"):
            last[str(item["id"])] = i
            named += 1
    if len(last) == named:  # every item named once: the page as it came
        return items
    return [
        item
        for i, item in enumerate(items)
        if not (isinstance(item, dict) and item.get("id")) or last[str(item["id"])] == i
    ]


def _retry_after(resp: httpx.Response, attempt: int) -> float:
    """The server's Retry-After (seconds or an HTTP date), else exponential backoff."""
    told = retry_after_seconds(resp.headers.get("Retry-After"))
    return told if told is not None else float(min(60, 2 ** (attempt + 1)))


def _people(item: dict) -> list[dict]:
    """An event's attendees that are people (rooms and equipment left out)."""
    return [a for a in item.get("attendees") or [] if isinstance(a, dict) and a.get("type") != "resource"]


def _invited(item: dict) -> bool:
    """Whether an event has someone invited, as _event requires of a meeting."""
    return item.get("type") != "seriesMaster" and any(_address(a) is not None for a in _people(item))


def _sparse(item: dict) -> bool:
    """A plain occurrence as calendarView/delta lists it: no people, no subject."""
    return item.get("type") == "occurrence" and "attendees" not in item and "subject" not in item


def _address(value) -> tuple[str, str] | None:
    if not isinstance(value, dict):
        return None
    email = value.get("emailAddress") or {}
    addr = str(email.get("address") or "").strip()
    if "@" not in addr:
        return None
    return str(email.get("name") or "").strip(), addr


def _addresses(values) -> list[tuple[str, str]]:
    out = []
    for v in values or []:
        a = _address(v)
        if a:
            out.append(a)
    return out[:MAX_ADDRESSES]


def _not_kept(item: dict, kept: list[tuple[str, str]]) -> int:
    """How many distinct recipients of the message are not among `kept` (what the record keeps)."""
    lists = [item.get(name) for name in ("toRecipients", "ccRecipients", "bccRecipients")]
    if not any(isinstance(values, list) and len(values) > MAX_ADDRESSES for values in lists):
        return 0
    everyone = {a[1].lower() for values in lists if isinstance(values, list) for v in values if (a := _address(v))}
    return len(everyone - {addr.lower() for _, addr in kept})


def _parse_time(value) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def zone(name: str):
    name = (name or "UTC").strip()
    if name in ("UTC", "tzone://Microsoft/Utc", "Etc/UTC", "GMT"):
        return timezone.utc
    from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON  # CLDR's full Windows -> IANA table

    try:
        return ZoneInfo(WINDOWS_ZONES.get(name) or WINDOWS_TO_OLSON.get(name) or name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise BadDataError(f"unknown time zone {name!r}") from exc


_GLOBAL_OBJECT_CLASS = "040000008200E00074C5B7101A82E008"


def original_uid(value: str) -> str:
    """The iCalendar UID a meeting had before Exchange stored it.

    A meeting organised outside Exchange (Google, Zoho, any CalDAV server) gets an
    iCalUId that wraps the organiser's UID ([MS-OXOCAL] PidLidGlobalObjectId: class
    id 16 bytes, instance date 4, creation time 8, reserved 8, data size 4
    little-endian, then the data, which is b"vCal-Uid", a 4-byte version and the
    UID up to a NUL). Unwrapped, it is the same key the invitation in mail and the
    organiser's CalDAV calendar give, so the copies are one meeting."""
    text = value.strip()
    if len(text) < 96 or not text.upper().startswith(_GLOBAL_OBJECT_CLASS):
        return text
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return text
    size = int.from_bytes(raw[36:40], "little")
    data = raw[40 : 40 + size]
    if not data.startswith(b"vCal-Uid") or len(data) <= 12:
        return text
    uid = data[12:].split(b"\x00", 1)[0]
    try:
        return uid.decode("utf-8") or text
    except UnicodeDecodeError:
        return text


def _first_zone(*names: str | None):
    """The first of these zones that is known ("tzone://Microsoft/Custom" is not), else UTC."""
    for name in names:
        if name:
            try:
                return zone(name)
            except BadDataError:
                continue
    return timezone.utc


def _event_time(value, *, all_day: bool = False) -> datetime | None:
    """Graph's dateTimeTimeZone: a local wall time plus the zone it is in. All-day
    events are dates: midnight UTC of the date, as connectors.ical reads VALUE=DATE."""
    if not isinstance(value, dict) or not value.get("dateTime"):
        return None
    raw = str(value["dateTime"])
    if "." in raw:  # Graph writes 7 fractional digits; Python reads up to 6
        head, frac = raw.split(".", 1)
        raw = f"{head}.{frac[:6]}"
    try:
        local = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise BadDataError(f"unreadable event time {value['dateTime']!r}") from exc
    if all_day:
        return datetime(local.year, local.month, local.day, tzinfo=timezone.utc)
    if local.tzinfo is None:
        local = local.replace(tzinfo=zone(value.get("timeZone") or "UTC"))
    return local.astimezone(timezone.utc)


def message_key(item: dict, sender: tuple[str, str], date: datetime, subject: str) -> str:
    """internetMessageId reduced exactly as connectors.mailparse reduces Message-ID
    (the text inside the first <...>), so IMAP and Graph copies share one key."""
    raw = str(item.get("internetMessageId") or "").strip()
    ids = message_ids(raw)
    if ids:
        return message_key_for(ids[0], sender[1], date, subject)
    if raw and " " not in raw and "<" not in raw and ">" not in raw:
        return message_key_for(raw, sender[1], date, subject)
    # No Message-ID (rare: drafts, some system mail). Graph has no raw headers, so
    # this cannot match mailparse's fallback; it is stable across Graph mailboxes.
    import hashlib

    basis = "\x1f".join(
        [
            sender[1].lower(),
            ",".join(a for _, a in _addresses(item.get("toRecipients"))),
            date.strftime("%Y-%m-%dT%H:%M:%SZ"),
            subject,
        ]
    )
    return "sha256:graph:" + hashlib.sha256(basis.encode("utf-8", "surrogatepass")).hexdigest()[:40]
