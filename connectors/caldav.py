"""CalDAV connector: a rep's calendars become folders (role "calendar", named by
their path on the server, their URL as Folder.remote_id), their meetings
MeetingRecords (connectors/ical.py does the iCalendar part).

Transport, authentication and discovery use the caldav library (DAVClient,
principal, calendar-home-set); the few REPORT/PROPFIND bodies whose cost
matters are written here, so that a run costs requests in proportion to what
changed:

- sync-token mode (RFC 6578, when the calendar offers DAV:sync-token): one
  sync-collection REPORT lists what changed and what was removed since the
  token; changed members are read with calendar-multiget REPORTs of up to
  `chunk` members. Nothing changed = one REPORT per calendar.
- ctag mode (no sync token): PROPFIND CS:getctag; unchanged ctag = one request;
  otherwise a Depth 1 PROPFIND of the etags is compared with the cursor's and
  changed members are read with calendar-multiget.
An expired or refused sync token (DAV:valid-sync-token) falls back to a full
listing that is reconciled with the cursor: members gone are removed, nothing
is duplicated.

Remote ids: `<member>` for a single event and `<member>#<recurrence id>` for an
occurrence, where member is the resource's name inside its calendar (its href
relative to the calendar's path; unique per folder).

Cursor per calendar (stored by the engine as given):
  v         1
  mode      "sync" | "ctag"
  token     the sync token the items below are complete for (sync mode)
  ctag      the ctag they are complete for (ctag mode)
  win       [first day, day after last] of the window recurring events were expanded in
            (the organisation's CalendarWindow on the day of the run)
  items     member -> [etag digest ("" in sync mode), recurring 0/1, [recurrence ids emitted]]
            ("" stands for a single event's record). Members that gave nothing and
            need no tracking are left out in sync mode.
  server_count  what the reconciliation (app/services/reconcile.py) compares with the copies
            stored plus the skipped ones: the occurrences (and single events) the sync read
            and keeps, counted from `items` (one per recurrence id, history behind the window
            included, as its copies stay). CalDAV has no count of a calendar's meetings: this
            is the sync's own, so it shows a copy that was read but not stored, not a meeting
            the server holds that the listing missed. Counted from the cursor, so at no cost.
The window moves a day at a time: when it has moved, recurring members are read
again (one multiget per `chunk` of them) so new occurrences appear. Occurrences
that fall behind the window's start stay on the timeline as history and stay in
the cursor, so deleting the whole series still removes them.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import ssl
from datetime import datetime
from typing import Iterator
from urllib.parse import quote, unquote, urljoin, urlsplit
from xml.sax.saxutils import escape

from connectors.base import (
    AuthError,
    BadDataError,
    Batch,
    CalendarWindow,
    ConnectorError,
    ConnectorSpec,
    CursorExpiredError,
    ErrorKind,
    Fix,
    Folder,
    MeetingRecord,
    ThrottledError,
    TransientError,
    own_refusal,
)
from connectors.ical import Window, meetings_from_ics, parse_rid, remote_id

log = logging.getLogger("threadline.caldav")
NS = {"D": "DAV:", "C": "urn:ietf:params:xml:ns:caldav", "CS": "http://calendarserver.org/ns/"}
_D, _C, _CS = "{DAV:}", "{urn:ietf:params:xml:ns:caldav}", "{http://calendarserver.org/ns/}"
XML_HEADERS = {"Content-Type": "application/xml; charset=utf-8"}
CURSOR_VERSION = 1
MAX_SYNC_PAGES = 200


class TokenInvalid(Exception):
    """The server no longer knows our sync token (RFC 6578 DAV:valid-sync-token)."""


def _etag_digest(etag: str | None) -> str:
    return hashlib.blake2b((etag or "").encode(), digest_size=8).hexdigest() if etag else ""


class CalDavConnector:
    def __init__(
        self,
        url: str,
        username: str,
        password: str,
        *,
        owner: str | None = None,
        window: CalendarWindow = CalendarWindow(),
        use_sync_token: bool = True,
        chunk: int = 200,
        timeout: float = 60.0,
        now: datetime | None = None,
    ):
        self.url = url if url.endswith("/") else url + "/"
        self.username = username
        self._password = password
        self.owner = (owner or "").lower() or None
        self.window_settings = window
        self.use_sync_token = use_sync_token
        self.chunk = chunk
        self.timeout = timeout
        self._now = now
        self._client = None
        self._calendars: dict[str, str] = {}  # folder name (calendar path) -> URL
        self.requests = 0
        self.bytes_in = 0

    def __repr__(self) -> str:
        return f"CalDavConnector({self.username}@{self.url})"

    # -- transport ------------------------------------------------------------
    def connect(self):
        if self._client is None:
            import caldav

            try:
                self._client = caldav.DAVClient(
                    url=self.url,
                    username=self.username,
                    password=self._password,
                    timeout=int(self.timeout),
                    enable_rfc6764=False,
                    require_tls=False,
                    rate_limit_handle=False,
                )
            except Exception as exc:  # noqa: BLE001
                raise translate(exc, "connecting") from exc
        return self._client

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001
                pass

    def _request(self, method: str, url: str, body: str = "", headers: dict | None = None, what: str = ""):
        client = self.connect()
        try:
            resp = client.request(url, method, body, {**XML_HEADERS, **(headers or {})})
        except Exception as exc:  # noqa: BLE001 - translated
            err = translate(exc, what or f"{method} {urlsplit(url).path}")
            if isinstance(err, _TokenRefused):
                raise TokenInvalid(str(exc)) from exc
            raise err from exc
        self.requests += 1
        raw = getattr(resp, "_raw", b"") or b""
        self.bytes_in += len(raw)
        status = int(resp.status)
        if status == 429 or status == 503:
            retry = resp.headers.get("Retry-After") if resp.headers else None
            raise ThrottledError(f"the CalDAV server asked us to slow down ({status})", retry_after=retry)
        if status == 501:  # e.g. a REPORT this server does not implement: a fact, not an outage
            raise BadDataError(f"the CalDAV server does not implement {method} here (501)")
        if status >= 500:
            raise TransientError(f"the CalDAV server failed ({status}) while {what or method}")
        if status == 404:
            raise BadDataError(f"not found on the CalDAV server: {urlsplit(url).path}")
        if status >= 400:
            if b"valid-sync-token" in (raw if isinstance(raw, bytes) else raw.encode()):
                raise TokenInvalid(f"sync token refused ({status})")
            raise BadDataError(f"the CalDAV server refused {method} {urlsplit(url).path} ({status})")
        tree = getattr(resp, "tree", None)
        if tree is None and raw:
            from lxml import etree

            try:
                tree = etree.fromstring(raw if isinstance(raw, bytes) else raw.encode())
            except Exception as exc:  # noqa: BLE001
                raise BadDataError(f"unreadable answer to {method}: {exc}") from exc
        return tree

    def _propfind(self, url: str, props: str, depth: int, what: str):
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<D:propfind xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" '
            f'xmlns:CS="http://calendarserver.org/ns/"><D:prop>{props}</D:prop></D:propfind>'
        )
        return self._request("PROPFIND", url, body, {"Depth": str(depth)}, what)

    # -- folders --------------------------------------------------------------
    def list_folders(self) -> list[Folder]:
        """Every calendar of the account that can hold events."""
        home = self._home_set()
        tree = self._propfind(
            home, "<D:resourcetype/><D:displayname/><C:supported-calendar-component-set/>", 1, "listing calendars"
        )
        folders = []
        self._calendars = {}
        for resp in _responses(tree):
            href = resp.findtext(f"{_D}href") or ""
            props = _ok_props(resp)
            rtype = props.get(f"{_D}resourcetype")
            if rtype is None or rtype.find(f"{_C}calendar") is None:
                continue
            comps = props.get(f"{_C}supported-calendar-component-set")
            names = {c.get("name", "").upper() for c in comps} if comps is not None and len(comps) else set()
            if names and "VEVENT" not in names:
                continue  # task lists, journals
            path = unquote(urlsplit(urljoin(home, href)).path)
            if not path.endswith("/"):
                path += "/"
            self._calendars[path] = urljoin(home, href)
            shown = props.get(f"{_D}displayname")
            display = (shown.text or "").strip() if shown is not None else ""
            folders.append(
                Folder(
                    name=path,
                    role="calendar",
                    flags=(f"displayname={display}",) if display else (),
                    remote_id=self._calendars[path],
                )
            )
        return folders

    def _home_set(self) -> str:
        try:
            client = self.connect()
            principal = client.principal()
            home = principal.calendar_home_set.url
        except ConnectorError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, "finding the calendars") from exc
        self.requests += 2
        return str(home) if str(home).endswith("/") else f"{home}/"

    def _calendar_url(self, folder: Folder) -> str:
        url = folder.remote_id or self._calendars.get(folder.name)
        if not url:  # a folder known only by its path (stored before, or made by hand)
            base = urlsplit(self.url)
            return f"{base.scheme}://{base.netloc}{quote(folder.name)}"
        return url

    # -- changes --------------------------------------------------------------
    def window(self) -> Window:
        return Window.of(self.window_settings, self._now)

    def fetch_changes(self, folder: Folder, cursor: dict, since: datetime | None = None) -> Iterator[Batch]:
        """Batches of meeting records and removals; the last one carries the new
        token/ctag and backfill_done. Nothing changed: no batch at all."""
        try:
            yield from self._changes(folder, cursor)
        except AuthError as exc:
            # The login worked (the calendars were just listed): this calendar alone
            # is closed to the account, e.g. shared as free/busy only. The others go on.
            raise BadDataError(f"the account may not read calendar {folder.name!r}: {exc}") from exc

    def _changes(self, folder: Folder, cursor: dict) -> Iterator[Batch]:
        cal_url = self._calendar_url(folder)
        cal_path = urlsplit(cal_url).path
        window = self.window()
        cursor = dict(cursor or {})
        if cursor.get("v") != CURSOR_VERSION:
            cursor = {}
        items: dict[str, list] = {k: list(v) for k, v in (cursor.get("items") or {}).items()}
        moved = cursor.get("win") != window.key()
        mode = cursor.get("mode") or ("sync" if self.use_sync_token else "ctag")
        if mode == "sync" and not self.use_sync_token:
            mode = "ctag"
        state: dict = {
            "v": CURSOR_VERSION,
            "mode": mode,
            "token": cursor.get("token"),
            "ctag": cursor.get("ctag"),
            "win": cursor.get("win"),
        }
        etags: dict[str, str] = {}  # member -> digest (ctag mode), for the new cursor
        full = False
        if mode == "sync":
            try:
                changed, deleted, token, complete = self._sync_collection(cal_url, cal_path, cursor.get("token"))
            except TokenInvalid:
                log.info("sync token of %s no longer valid: full listing", folder.name)
                changed, deleted, token, complete = self._sync_collection(cal_url, cal_path, None)
                full = True
            except (BadDataError, AuthError) as exc:
                # 403 (RFC 3253: REPORT not supported), 501, or an answer without a token.
                if cursor.get("token"):
                    raise
                # No RFC 6578 here after all: ctag + etags from now on. (A login that
                # really fails fails again on the ctag request.)
                log.info("sync-collection refused on %s (%s): ctag mode", folder.name, exc)
                mode = state["mode"] = "ctag"
                changed = deleted = None
            if mode == "sync":
                if not cursor.get("token") or full:
                    deleted = set(deleted) | (set(items) - set(changed))
                new_marker = {"token": token}
        if mode == "ctag":
            ctag = self._ctag(cal_url)
            if cursor.get("mode") == "ctag" and ctag and ctag == cursor.get("ctag") and not moved:
                if "server_count" not in cursor:  # a cursor from before the count: counted once
                    yield Batch([], [], _cursor({**cursor, "items": items}), backfill_done=True)
                return
            listing = self._etags(cal_url, cal_path)
            etags = {m: _etag_digest(e) for m, e in listing.items()}
            changed = [m for m, d in etags.items() if m not in items or items[m][0] != d]
            deleted = set(items) - set(etags)
            new_marker = {"ctag": ctag}
            complete = True
        if not changed and not deleted and not moved and cursor.get("token" if mode == "sync" else "ctag"):
            if any(cursor.get(k) != v for k, v in new_marker.items()) or "server_count" not in cursor:
                # remember the new token/ctag (and count a cursor from before the count)
                yield Batch([], [], _cursor({**cursor, **new_marker, "items": items}), backfill_done=True)
            return
        to_read = list(dict.fromkeys(changed))
        if moved:
            # The window moved: recurring members may have new occurrences in it, and
            # single events beyond the old window may now be inside.
            seen = set(to_read)
            to_read += [m for m, v in items.items() if v[1] and m not in seen and m not in deleted]
        # 1. Members that are gone.
        removed: list[str] = []
        for member in sorted(deleted):
            old = items.pop(member, None)
            if old:
                removed += [remote_id(member, rid or None) for rid in old[2]]
        state["items"] = items
        if removed or not to_read:
            if not to_read:
                yield self._final(state, new_marker, window, [], [], removed, mode)
                return
            yield Batch([], [], _cursor(state), removed=removed)
        # 2. Changed members, read in chunks.
        chunks = [to_read[i : i + self.chunk] for i in range(0, len(to_read), self.chunk)]
        for n, chunk in enumerate(chunks):
            records, bad, removed = self._read_chunk(cal_url, cal_path, chunk, items, etags, window, mode)
            if n + 1 < len(chunks):
                yield Batch(records, bad, _cursor(state), removed=removed)
            else:
                yield self._final(state, new_marker, window, records, bad, removed, mode)
        if not complete:
            log.info("sync-collection of %s was truncated; the rest comes next run", folder.name)

    @staticmethod
    def _final(state: dict, marker: dict, window: Window, records, bad, removed, mode) -> Batch:
        state = {**state, **marker, "win": window.key()}
        if mode == "sync":
            state["ctag"] = None
        else:
            state["token"] = None
        # what the listing covers (its window): meetings before it that it did not read are history
        return Batch(records, bad, _cursor(state), removed=removed, backfill_done=True, relists_from=window.start)

    def _read_chunk(
        self, cal_url: str, cal_path: str, members: list[str], items: dict, etags: dict, window: Window, mode: str
    ):
        data = self._multiget(cal_url, cal_path, members)
        records: list[MeetingRecord] = []
        bad = []
        removed: list[str] = []
        for member in members:
            old = items.get(member)
            old_ids = list(old[2]) if old else []
            got = data.get(member)
            if got is None:  # deleted between listing and reading
                items.pop(member, None)
                removed += [remote_id(member, rid or None) for rid in old_ids]
                continue
            etag, ics = got
            parsed = meetings_from_ics(ics, base_id=member, window=window, owner=self.owner)
            new_ids = list(parsed.ids)
            keep = set(new_ids)
            for rid in old_ids:
                if rid in keep:
                    continue
                if _history(rid, parsed.before_window, window):
                    new_ids.append(rid)  # behind the window: stays on the timeline
                    keep.add(rid)
                else:
                    removed.append(remote_id(member, rid or None))
            records += parsed.records
            bad += parsed.bad
            # What could not be read is listed with the member too: the server holds it (counted,
            # as it is counted unreadable), and its deletion or repair takes its unreadable row off.
            # Not a warning about a record that was read (attendees or occurrences cut).
            read = {r.remote_id for r in parsed.records}
            for b in parsed.bad:
                if b.remote_id in read or any(r.startswith(b.remote_id + "#") for r in read):
                    continue
                if b.remote_id == member:
                    rid = ""
                elif b.remote_id.startswith(member + "#"):
                    rid = b.remote_id[len(member) + 1 :]
                else:
                    continue
                if rid not in keep:
                    new_ids.append(rid)
                    keep.add(rid)
            digest = etags.get(member) or (_etag_digest(etag) if mode == "ctag" else "")
            # Kept, and read again whenever the window moves (see _changes): series, whose
            # occurrences enter the window, and single events booked beyond it, which
            # nothing else would bring back once the window reaches them.
            if mode == "ctag" or new_ids or parsed.recurring or parsed.after_window:
                items[member] = [digest, 1 if parsed.recurring or parsed.after_window else 0, new_ids]
            else:
                items.pop(member, None)
        return records, bad, removed

    # -- protocol pieces ---------------------------------------------------------
    def _sync_collection(self, cal_url: str, cal_path: str, token: str | None):
        """(changed members, deleted members, new token, complete); follows truncated pages."""
        changed: dict[str, None] = {}
        deleted: set[str] = set()
        complete = True
        for _page in range(MAX_SYNC_PAGES):
            body = (
                '<?xml version="1.0" encoding="utf-8"?><D:sync-collection xmlns:D="DAV:">'
                f"<D:sync-token>{escape(token or '')}</D:sync-token><D:sync-level>1</D:sync-level>"
                "<D:prop><D:getetag/></D:prop></D:sync-collection>"
            )
            tree = self._request("REPORT", cal_url, body, {"Depth": "1"}, "listing changes (sync-collection)")
            truncated = False
            for resp in _responses(tree):
                href = resp.findtext(f"{_D}href") or ""
                member = _member(href, cal_path)
                status = resp.findtext(f"{_D}status") or ""
                if member is None:
                    if " 507" in status:
                        truncated = True
                    continue
                if " 404" in status and resp.find(f"{_D}propstat") is None:
                    deleted.add(member)
                    changed.pop(member, None)
                else:
                    changed[member] = None
                    deleted.discard(member)
            new = tree.findtext(f"{_D}sync-token") if tree is not None else None
            if not new:
                raise BadDataError("sync-collection answer without a sync token")
            if not truncated or new == token:
                token = new
                complete = not truncated
                break
            token = new
        return list(changed), deleted, token, complete

    def _ctag(self, cal_url: str) -> str | None:
        tree = self._propfind(cal_url, "<CS:getctag/><D:getetag/>", 0, "reading the calendar's ctag")
        for resp in _responses(tree):
            props = _ok_props(resp)
            for tag in (f"{_CS}getctag", f"{_D}getetag"):
                if props.get(tag) is not None and (props[tag].text or "").strip():
                    return props[tag].text.strip()
        return None

    def _etags(self, cal_url: str, cal_path: str) -> dict[str, str]:
        tree = self._propfind(cal_url, "<D:getetag/><D:resourcetype/>", 1, "listing the calendar's events")
        out = {}
        for resp in _responses(tree):
            member = _member(resp.findtext(f"{_D}href") or "", cal_path)
            if member is None:
                continue
            props = _ok_props(resp)
            rtype = props.get(f"{_D}resourcetype")
            if rtype is not None and len(rtype):
                continue  # a sub-collection
            etag = props.get(f"{_D}getetag")
            out[member] = (etag.text or "").strip() if etag is not None else ""
        return out

    def _multiget(self, cal_url: str, cal_path: str, members: list[str]) -> dict[str, tuple[str, str]]:
        # cal_path is as the server wrote it (already percent-encoded, e.g. Google's
        # /caldav/v2/alice%40gmail.com/events/) and members are decoded names.
        hrefs = "".join(f"<D:href>{escape(quote(unquote(cal_path) + m))}</D:href>" for m in members)
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<C:calendar-multiget xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
            f"<D:prop><D:getetag/><C:calendar-data/></D:prop>{hrefs}</C:calendar-multiget>"
        )
        tree = self._request("REPORT", cal_url, body, {"Depth": "1"}, "reading events (calendar-multiget)")
        out = {}
        for resp in _responses(tree):
            member = _member(resp.findtext(f"{_D}href") or "", cal_path)
            if member is None:
                continue
            props = _ok_props(resp)
            data = props.get(f"{_C}calendar-data")
            if data is None or data.text is None:
                continue
            etag = props.get(f"{_D}getetag")
            out[member] = ((etag.text or "").strip() if etag is not None else "", data.text)
        return out


def reread_cursor(cursor: dict | None) -> dict:
    """The cursor an admin's re-read (app/services/mailboxes.py reset_folders) starts a calendar
    from: a full listing, as from no cursor, that keeps the members it tracks with their change
    markers cleared. So every member is read again, one gone since is told as removed (exactly,
    where a listing from nothing could only set copies aside), and history behind the window that
    the listing does not read stays tracked: its deletion still removes it, and it is counted."""
    cursor = cursor or {}
    if cursor.get("v") != CURSOR_VERSION or not isinstance(cursor.get("items"), dict):
        return {}
    # None: no digest equals it (a member without an ETag has the digest "")
    items = {member: [None, v[1], list(v[2])] for member, v in cursor["items"].items()}
    return {"v": CURSOR_VERSION, "mode": cursor.get("mode"), "items": items}


def _history(rid: str, single_before: bool, window: Window) -> bool:
    if not rid:
        return single_before
    try:
        return parse_rid(rid) < window.start
    except ValueError:
        return False


def _cursor(state: dict) -> dict:
    """The cursor to store, with its server_count: the occurrences the sync read (and keeps)."""
    items = state.get("items") or {}
    out = {**state, "items": {k: [v[0], v[1], list(v[2])] for k, v in items.items()}}
    out["server_count"] = sum(len(v[2]) for v in items.values())
    return out


def _responses(tree):
    if tree is None:
        return []
    return tree.iter(f"{_D}response")


def _ok_props(resp) -> dict:
    props = {}
    for ps in resp.findall(f"{_D}propstat"):
        if " 200" not in (ps.findtext(f"{_D}status") or ""):
            continue
        prop = ps.find(f"{_D}prop")
        if prop is None:
            continue
        for child in prop:
            props[child.tag] = child
    return props


def _member(href: str, cal_path: str) -> str | None:
    """A member's name relative to its calendar, or None for the calendar itself (or anything else)."""
    path = unquote(urlsplit(href).path)
    base = unquote(cal_path)
    if not base.endswith("/"):
        base += "/"
    if not path.startswith(base):
        return None
    rest = path[len(base) :]
    return rest if rest and "/" not in rest.rstrip("/") and not rest.endswith("/") else None


class _TokenRefused(ConnectorError):
    kind = ErrorKind.CURSOR_EXPIRED


def translate(exc: BaseException, what: str) -> ConnectorError:
    """caldav/requests failures as the shared error kinds."""
    if isinstance(exc, ConnectorError):
        return exc
    from caldav.lib import error as dav_error

    if isinstance(exc, dav_error.AuthorizationError):
        pre = " ".join(getattr(exc, "preconditions", []) or [])
        if "valid-sync-token" in pre:
            return _TokenRefused(f"sync token refused while {what}")
        status = str(getattr(exc, "reason", "") or exc)
        return AuthError(f"the CalDAV server refused the login while {what} ({status[:120]})", fix=Fix.PASSWORD)
    if isinstance(exc, dav_error.RateLimitError):
        return ThrottledError(
            f"the CalDAV server asked us to slow down while {what}",
            retry_after=getattr(exc, "retry_after_seconds", None) or getattr(exc, "retry_after", None),
        )
    if isinstance(exc, dav_error.NotFoundError):
        return BadDataError(f"not found on the CalDAV server while {what}")
    if isinstance(exc, dav_error.DAVError):
        return BadDataError(f"the CalDAV server refused while {what}: {str(exc)[:200]}")
    if isinstance(exc, ssl.SSLError):
        return TransientError(f"TLS failed while {what}: {exc}")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return TransientError(f"the CalDAV server did not answer in time while {what}")
    refused = own_refusal(exc)
    if refused:
        return TransientError(f"{refused} (while {what})")
    name = type(exc).__name__
    if isinstance(exc, OSError) or name in (
        "ConnectionError",
        "ConnectTimeout",
        "ReadTimeout",
        "Timeout",
        "ChunkedEncodingError",
        "ProtocolError",
        "RemoteDisconnected",
    ):
        return TransientError(f"cannot reach the CalDAV server while {what}: {str(exc)[:200]}")
    mod = type(exc).__module__ or ""
    if mod.startswith(("requests", "niquests", "urllib3", "urllib3_future", "http")):
        return TransientError(f"cannot reach the CalDAV server while {what}: {name}: {str(exc)[:200]}")
    return TransientError(f"unexpected failure while {what}: {name}: {str(exc)[:200]}")


def build(spec: ConnectorSpec) -> CalDavConnector:
    """A connector from its spec: config holds url, username and optionally sync
    ("ctag" to ignore sync tokens) and chunk; the secret is the password."""
    cfg = spec.config or {}
    return CalDavConnector(
        cfg["url"],
        cfg["username"],
        spec.secret,
        owner=spec.owner or None,
        window=spec.window,
        use_sync_token=cfg.get("sync", "auto") != "ctag",
        chunk=int(cfg.get("chunk", 200)),
    )


__all__ = ["CalDavConnector", "CursorExpiredError", "build", "translate"]
