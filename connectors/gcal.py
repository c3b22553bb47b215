"""Google Calendar connector: a Workspace rep's primary calendar through the
Calendar API v3 `events.list`, signed in with the service account's
domain-wide delegation (connectors/googleauth.py, scope calendar.readonly).

It is one folder of a Gmail mailbox (connectors/gmail.py): "calendar:primary",
role "calendar", as Microsoft 365's calendar is one folder of a Graph mailbox.

A round (https://developers.google.com/calendar/api/guides/sync, "Synchronize
resources efficiently"):
- full: `events.list` with `singleEvents=true` (every occurrence of a recurring
  event is an event of its own, with `recurringEventId` and `originalStartTime`)
  over the organisation's CalendarWindow (`timeMin`/`timeMax`), following
  `nextPageToken` with `pageToken`; the last page carries `nextSyncToken`;
- incremental: the same request with `syncToken` instead of the time range
  (the guide: the token is not compatible with timeMin/timeMax; every other
  parameter must be the same as for the full sync). Deleted and cancelled
  events come back with `status: "cancelled"` and are removed; a moved
  occurrence comes back with its new start and the same `originalStartTime`,
  so it updates the meeting it was. A change that falls outside the window
  (created or moved there) is treated as removed, as a full round would not
  list it.
- 410 GONE ("fullSyncRequired": the token expired or was invalidated) restarts
  the calendar from scratch with reset=True, as the guide asks ("clear the
  client's store and perform a full sync"): the engine drops the folder's
  copies, the full listing re-links every meeting by its key, and meetings it
  no longer lists are removed at the end of the round. The listing covers the
  window only: the reset says where it starts (Batch.relists_from), and the
  meetings from before it keep their copies as history.

Remote id: the event's `id` (an occurrence's is `<series id>_<original start>`).
Meeting key: `iCalUID` (shared by every occurrence of a series, and the UID the
invitation in mail and other calendars carry) plus, for an occurrence, its
original start in UTC (`originalStartTime`; an all-day one keyed by its date).

Cursor (stored by the engine as given):
  v           1
  window      [timeMin, timeMax] of the full round the tokens belong to; once the
              window has moved a week, a fresh full round starts over the new one, after
              the old token's changes are read to their end (a deletion meanwhile)
  sync_token  nextSyncToken of the last finished round
  page_token  the next page of an unfinished round
  round_token the syncToken the unfinished round was started with (None: full round)
  listed      meetings an unfinished full round has listed so far
  server_count  what the reconciliation (app/services/reconcile.py) compares with the copies
              stored plus the skipped ones: the events of the window with guests (plus the
              unreadable ones) that the last full listing gave, one per occurrence. Google
              gives no count, so it is the listing's: a full round's own, and after a
              sync-token round a listing of the window made for it
  counted_at  when server_count was taken: again at most hourly (base.RECOUNT_SECONDS), at
              once after a removal or a full re-read

Errors (https://developers.google.com/calendar/api/guides/errors): 429 and 403
`rateLimitExceeded` / `userRateLimitExceeded` are throttling, retried with
exponential backoff (Retry-After when given) a few times, then ThrottledError
so the engine backs off; 500/503 likewise, then TransientError; 401 refreshes
the token once, then AuthError (reconnect: domain-wide delegation); 403
otherwise (scope not granted, API not enabled for the project) AuthError too.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import Callable, Generator, Iterator
from urllib.parse import quote, urlencode

import httpx

from connectors.base import (
    Attendee,
    AuthError,
    BadDataError,
    BadRecord,
    Batch,
    CalendarWindow,
    ConnectorError,
    CursorExpiredError,
    Fix,
    Folder,
    MeetingRecord,
    ThrottledError,
    TransientError,
    counted,
    kept_count,
    parse_stamp,
    recount_due,
    retry_after_seconds,
)

API_URL = "https://www.googleapis.com/calendar/v3"
CALENDAR_FOLDER = "calendar:primary"
PAGE_SIZE = 250  # events.list's default; at most 2500
THROTTLE_REASONS = {"ratelimitexceeded", "userratelimitexceeded"}
RESPONSES = {"accepted": "accepted", "declined": "declined", "tentative": "tentative", "needsaction": "needs-action"}
FIELDS = (
    "nextPageToken,nextSyncToken,items(id,status,iCalUID,recurringEventId,originalStartTime,start,end,"
    "summary,location,organizer,attendees,sequence)"
)


def calendar_folder() -> Folder:
    return Folder(name=CALENDAR_FOLDER, role="calendar", remote_id="primary")


class GoogleCalendar:
    """One rep's calendar; `tokens.token(force_refresh=...)` gives the access token."""

    def __init__(
        self,
        tokens,
        *,
        api_url: str = API_URL,
        calendar_id: str = "primary",
        window: CalendarWindow = CalendarWindow(),
        page_size: int = PAGE_SIZE,
        max_retries: int = 5,
        max_retry_wait: float = 32.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.tokens = tokens
        self.api_url = api_url.rstrip("/")
        self.calendar_id = calendar_id
        self.window = window
        self.page_size = page_size
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self._sleep = sleep
        self.http = httpx.Client(timeout=httpx.Timeout(60.0, connect=15.0), headers={"Accept": "application/json"})
        self._token: str | None = None
        # Measurements (tests, benchmarks): requests made, throttling waits.
        self.requests = 0
        self.throttle_waits: list[float] = []

    def __repr__(self) -> str:
        return f"GoogleCalendar({self.api_url}/calendars/{self.calendar_id})"

    def close(self) -> None:
        self.http.close()

    # -- HTTP -----------------------------------------------------------------------
    def _wait(self, resp: httpx.Response | None, attempt: int) -> float:
        """Retry-After when the server gave one, else exponential backoff with jitter
        (the errors guide's advice: 1, 2, 4 ... seconds plus a random fraction)."""
        told = retry_after_seconds(resp.headers.get("Retry-After")) if resp is not None else None
        return told if told is not None else min(self.max_retry_wait, 2**attempt + random.random())

    def get(self, params: dict, *, what: str) -> dict:
        url = f"{self.api_url}/calendars/{quote(self.calendar_id, safe='')}/events?{urlencode(params)}"
        refreshed = False
        attempt = 0
        while True:
            if self._token is None:
                self._token = self.tokens.token()
            try:
                resp = self.http.get(url, headers={"Authorization": f"Bearer {self._token}"})
            except httpx.TimeoutException as exc:
                raise TransientError(f"Google Calendar did not answer in time while {what}") from exc
            except httpx.HTTPError as exc:
                raise TransientError(f"cannot reach Google Calendar while {what}: {type(exc).__name__}") from exc
            finally:
                self.requests += 1
            status = resp.status_code
            if status < 300:
                try:
                    data = json.loads(resp.content)
                except ValueError as exc:
                    raise BadDataError(f"Google Calendar sent an unreadable answer while {what}") from exc
                if not isinstance(data, dict):
                    raise BadDataError(f"Google Calendar sent an unexpected answer while {what}")
                return data
            reason, message = _google_error(resp)
            detail = f"{status} {reason}: {message}"[:300] if reason else f"HTTP {status}"
            throttled = status == 429 or (status == 403 and reason.lower() in THROTTLE_REASONS)
            if throttled or status in (500, 502, 503, 504):
                wait = self._wait(resp, attempt)
                if attempt < self.max_retries and wait <= self.max_retry_wait:
                    attempt += 1
                    self.throttle_waits.append(wait)
                    self._sleep(wait)
                    continue
                if throttled:
                    raise ThrottledError(
                        f"Google Calendar is throttling this calendar ({detail}) while {what}", retry_after=wait
                    )
                raise TransientError(f"Google Calendar failed while {what} ({detail})")
            if status == 401 and not refreshed:
                refreshed = True
                self._token = self.tokens.token(force_refresh=True)
                continue
            raise self._error(status, reason, detail, what)

    def _error(self, status: int, reason: str, detail: str, what: str) -> ConnectorError:
        if status == 410:
            return CursorExpiredError(f"the calendar's sync token expired while {what} ({detail})")
        if status in (401, 403):
            return AuthError(
                f"Google Calendar refused access while {what} ({detail}): domain-wide delegation with the "
                "calendar scope is missing or was withdrawn",
                fix=Fix.DELEGATION,
            )
        if status == 404:
            return BadDataError(f"Google Calendar has no such calendar ({detail})")
        if status >= 500:
            return TransientError(f"Google Calendar failed while {what} ({detail})")
        return BadDataError(f"Google Calendar refused the request while {what} ({detail})")

    # -- changes --------------------------------------------------------------------
    def fetch_changes(self, cursor: dict) -> Iterator[Batch]:
        cursor = dict(cursor or {})
        window, slid = self.window.for_cursor(cursor.get("window"))
        expired = False
        if slid:
            expired = yield from self._finish_round(cursor)
            cursor = {}
        base = {"v": 1, "window": list(window)}
        # a full round lists the window: the meetings behind it stay as history at a re-listing
        relists_from = parse_stamp(window[0])
        if expired:  # what the old token would have told is lost: the full round is a re-listing
            yield Batch([], [], {**base}, reset=True, relists_from=relists_from)
        if cursor.get("page_token"):
            round_token, page_token = cursor.get("round_token"), cursor["page_token"]
        else:
            round_token, page_token = cursor.get("sync_token"), None
        count = kept_count(cursor)
        # meetings a full round spanning runs has listed so far (its count, once done)
        listed = int(cursor.get("listed") or 0) if page_token and round_token is None else 0
        restarted = changed = False
        while True:
            try:
                for batch in self._round(base, round_token, page_token):
                    changed = changed or bool(batch.removed)
                    if round_token is None:  # a full round: its listing is the count
                        listed += len(batch.records) + len(batch.bad)
                        if batch.backfill_done:
                            count = counted(listed)
                        else:
                            batch.cursor["listed"] = listed
                    elif batch.backfill_done and recount_due(count, changed=changed):
                        count = counted(self._count(list(window)))
                    batch.cursor.update(count)
                    yield batch
                return
            except CursorExpiredError:
                if restarted or round_token is None:
                    raise
                restarted = changed = True
                round_token, page_token, listed, count = None, None, 0, {}
                yield Batch([], [], {**base}, reset=True, relists_from=relists_from)

    def _finish_round(self, cursor: dict) -> Generator[Batch, None, bool]:
        """The old window's sync-token round read to its end before a full round over the new
        window: a meeting deleted since the last round is told only by the token's changes (the
        full round just does not list it, and its copy stayed on the timeline for good). Its
        batches end no listing; a full round cut short has nothing to finish. Returns whether the
        token had expired (the full round is then a re-listing, `reset`)."""
        old = cursor.get("window")
        if cursor.get("page_token"):
            token, page = cursor.get("round_token"), cursor["page_token"]
        else:
            token, page = cursor.get("sync_token"), None
        if not old or not token:
            return False
        try:
            for batch in self._round({"v": 1, "window": list(old)}, token, page):
                yield replace(batch, backfill_done=False)
        except CursorExpiredError:
            return True
        return False

    def _count(self, window: list[str]) -> int:
        """The meetings a full round over the window would read (events.list gives no count:
        the same listing, counted): events with guests inside the window, plus the ones that
        cannot be read (skipped as unreadable). Occurrences count one each (singleEvents)."""
        params: dict = {"singleEvents": "true", "maxResults": str(self.page_size), "fields": FIELDS}
        params["timeMin"], params["timeMax"] = window
        count, page_token = 0, None
        for _ in range(100000):
            page = self.get({**params, **({"pageToken": page_token} if page_token else {})}, what="counting meetings")
            items = page.get("items") or []
            if not isinstance(items, list):
                raise BadDataError("Google Calendar sent a page without an item list while counting meetings")
            records, bad, _ = self._events(items, incremental=False, window=window)
            count += len(records) + len(bad)
            page_token = page.get("nextPageToken")
            if not page_token:
                break
        return count

    def _round(self, base: dict, round_token: str | None, page_token: str | None) -> Iterator[Batch]:
        params: dict = {"singleEvents": "true", "maxResults": str(self.page_size), "fields": FIELDS}
        if round_token:
            params["syncToken"] = round_token
        else:
            params["timeMin"], params["timeMax"] = base["window"]
        what = "syncing the calendar"
        for _ in range(100000):
            page = self.get({**params, **({"pageToken": page_token} if page_token else {})}, what=what)
            items = page.get("items") or []
            if not isinstance(items, list):
                raise BadDataError(f"Google Calendar sent a page without an item list while {what}")
            next_page, sync_token = page.get("nextPageToken"), page.get("nextSyncToken")
            if not next_page and not sync_token:
                raise BadDataError("Google Calendar sent a page with neither nextPageToken nor nextSyncToken")
            records, bad, removed = self._events(items, incremental=round_token is not None, window=base["window"])
            if next_page:
                cursor = {**base, "page_token": next_page, "round_token": round_token}
            else:
                cursor = {**base, "sync_token": sync_token}
            # a full round's end tells what it covered (the window), as its reset did
            covered = parse_stamp(base["window"][0]) if not next_page and round_token is None else None
            yield Batch(records, bad, cursor, removed=removed, backfill_done=not next_page, relists_from=covered)
            if not next_page:
                return
            page_token = next_page

    def _events(self, items: list, *, incremental: bool, window: list[str]):
        """A sync-token round lists changes wherever they fall in time (timeMin/timeMax cannot go
        with a token): a meeting created or moved outside the window is treated as gone, so the
        timeline holds what a full round over the same window would."""
        lo, hi = (parse_stamp(w) for w in window)
        records: list[MeetingRecord] = []
        bad: list[BadRecord] = []
        removed: list[str] = []
        for item in items:
            rid = item.get("id") if isinstance(item, dict) else None
            if not rid:
                bad.append(BadRecord("?", "event without an id"))
                continue
            rid = str(rid)
            if item.get("status") == "cancelled":
                # Deleted, or a single occurrence cancelled (singleEvents=true lists it
                # as an instance of its own with status cancelled).
                removed.append(rid)
                continue
            try:
                record = event_record(rid, item)
            except BadDataError as exc:
                bad.append(BadRecord(rid, str(exc)))
                continue
            except Exception as exc:  # noqa: BLE001 - one event never stops the calendar
                bad.append(BadRecord(rid, f"unreadable event: {type(exc).__name__}: {exc}"[:300]))
                continue
            outside = record is not None and not (lo <= record.start < hi or (record.end and lo < record.end <= hi))
            if record is None or outside:
                if incremental:  # its guests all gone, or moved out of the window
                    removed.append(rid)
                continue
            records.append(record)
        return records, bad, removed


def event_record(rid: str, item: dict) -> MeetingRecord | None:
    """An event of events.list as a MeetingRecord; None for an event without guests
    (a rep's own appointment is no interaction with anyone)."""
    organizer = None
    org = item.get("organizer") or {}
    if isinstance(org, dict) and "@" in str(org.get("email") or ""):
        organizer = Attendee(
            address=str(org["email"]).strip(),
            name=str(org.get("displayName") or "").strip(),
            role="organizer",
            response="accepted",
        )
    attendees = []
    for a in item.get("attendees") or []:
        if not isinstance(a, dict) or a.get("resource"):
            continue  # rooms and equipment
        address = str(a.get("email") or "").strip()
        if "@" not in address:
            continue
        response = RESPONSES.get(str(a.get("responseStatus") or "needsAction").lower(), "needs-action")
        if a.get("organizer"):
            # The organiser is listed among the guests too; the organizer field says who it is.
            if organizer is None:
                organizer = Attendee(address, str(a.get("displayName") or ""), "organizer", response)
            continue
        attendees.append(
            Attendee(
                address=address,
                name=str(a.get("displayName") or "").strip(),
                role="optional" if a.get("optional") else "attendee",
                response=response,
            )
        )
    if not attendees:
        return None
    uid = str(item.get("iCalUID") or "").strip()
    if not uid:
        raise BadDataError("event without iCalUID")
    start = _event_time(item.get("start"))
    if start is None:
        raise BadDataError("event without a readable start")
    recurrence_id = None
    if item.get("recurringEventId"):
        original = _event_time(item.get("originalStartTime"))
        if original is None:
            raise BadDataError("occurrence without originalStartTime")
        recurrence_id = original.strftime("%Y-%m-%dT%H:%M:%SZ")
    status = str(item.get("status") or "confirmed")
    return MeetingRecord(
        remote_id=rid,
        uid=uid,
        recurrence_id=recurrence_id,
        start=start,
        end=_event_time(item.get("end")),
        subject=str(item.get("summary") or "")[:998],
        organizer=organizer,
        attendees=attendees,
        status=status if status in ("confirmed", "tentative") else "confirmed",
        location=str(item.get("location") or "").strip()[:500] or None,
        sequence=int(item.get("sequence") or 0),
    )


def _event_time(value) -> datetime | None:
    """An EventDateTime: `dateTime` (RFC 3339 with its offset) or, all day, `date`
    (midnight UTC of the date, as connectors.ical reads VALUE=DATE)."""
    if not isinstance(value, dict):
        return None
    if value.get("dateTime"):
        try:
            when = datetime.fromisoformat(str(value["dateTime"]).replace("Z", "+00:00"))
        except ValueError as exc:
            raise BadDataError(f"unreadable event time {value['dateTime']!r}") from exc
        if when.tzinfo is None:  # RFC 3339 requires an offset; a zone name may stand for it
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                when = when.replace(tzinfo=ZoneInfo(str(value.get("timeZone") or "UTC")))
            except (ZoneInfoNotFoundError, ValueError):
                when = when.replace(tzinfo=timezone.utc)
        return when.astimezone(timezone.utc)
    if value.get("date"):
        try:
            day = datetime.fromisoformat(str(value["date"]))
        except ValueError as exc:
            raise BadDataError(f"unreadable event date {value['date']!r}") from exc
        return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    return None


def _google_error(resp: httpx.Response) -> tuple[str, str]:
    """(reason, message) of a Google API error body: {"error": {"errors": [{"reason"}], "code", "message"}}."""
    try:
        err = resp.json().get("error")
    except (ValueError, AttributeError):
        return "", resp.text[:200]
    if not isinstance(err, dict):
        return str(err or ""), ""
    errors = err.get("errors") or []
    reason = str(errors[0].get("reason") or "") if errors and isinstance(errors[0], dict) else ""
    return reason or str(err.get("status") or ""), str(err.get("message") or "")
