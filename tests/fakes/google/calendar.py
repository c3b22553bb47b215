"""A fake Google Calendar API v3 `events.list`, served by the fake Google (server.py).

Each behaviour and the page of Google's documentation it follows is in README.md.
Tests play the reps and their guests: `add_event` (one meeting in several reps'
calendars, as Google keeps a copy per attendee's calendar with the same event id
and iCalUID), `add_series` (a recurring event, stored already expanded the way
`singleEvents=true` lists it), `move_occurrence`, `cancel_occurrence`,
`delete_event`, `respond`; and Google's operators: `expire_sync_tokens` (the next
incremental request answers 410), `storm` (the next N requests answer 429 or
403 rateLimitExceeded / userRateLimitExceeded).
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

CALENDAR_PATH = "/calendar/v3/calendars/"
READ_SCOPES = {"https://www.googleapis.com/auth/calendar.readonly", "https://www.googleapis.com/auth/calendar"}
MAX_RESULTS = 2500  # "maxResults ... cannot be greater than 2500"
DEFAULT_RESULTS = 250


def rfc3339(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _instance_suffix(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _error(status: int, reason: str, message: str, domain: str = "global") -> dict:
    """Google's error body (Calendar API "Handle API errors")."""
    return {
        "error": {
            "errors": [{"domain": domain, "reason": reason, "message": message}],
            "code": status,
            "message": message,
        }
    }


@dataclass
class Stored:
    """One event as a calendar lists it with singleEvents=true, and when it last changed."""

    body: dict
    start: datetime
    end: datetime
    changed: int  # the change counter's value when it last changed


@dataclass
class Paging:
    user: str
    items: list[dict]
    sync_seq: int
    params: dict = field(default_factory=dict)


class FakeCalendar:
    def __init__(self, google):
        self.google = google  # the fake token endpoint: its tokens are the only ones accepted
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with getattr(self, "_lock", threading.Lock()):
            self.calendars: dict[str, dict[str, Stored]] = {}  # user -> event id -> event
            self.seq = 0
            self.sync_tokens: dict[str, tuple[str, int]] = {}  # token -> (user, change counter)
            self.pages: dict[str, Paging] = {}
            self.faults: list[tuple[int, dict, dict]] = []
            self.requests: list[tuple[str, dict, int]] = []  # (calendar user, query, status answered)

    # -- what reps and their guests do ---------------------------------------------------
    def _put(self, user: str, body: dict, start: datetime, end: datetime) -> None:
        self.seq += 1
        self.calendars.setdefault(user.lower(), {})[body["id"]] = Stored(body, start, end, self.seq)

    def _event_body(self, eid, uid, subject, start, end, organizer, attendees, sequence=0) -> dict:
        people = [
            {"email": organizer, "displayName": organizer.split("@")[0].title(), "organizer": True}
            | {"responseStatus": "accepted"}
        ]
        for guest in attendees:
            email, response, *rest = guest if isinstance(guest, tuple) else (guest, "needsAction")
            entry = {"email": email, "responseStatus": response}
            if rest and rest[0] == "optional":
                entry["optional"] = True
            if rest and rest[0] == "resource":
                entry["resource"] = True
            people.append(entry)
        return {
            "kind": "calendar#event",
            "id": eid,
            "status": "confirmed",
            "iCalUID": uid,
            "summary": subject,
            "organizer": {"email": organizer},
            "start": {"dateTime": rfc3339(start), "timeZone": "UTC"},
            "end": {"dateTime": rfc3339(end), "timeZone": "UTC"},
            "attendees": people,
            "sequence": sequence,
        }

    def add_event(
        self,
        users,
        *,
        subject: str,
        start: datetime,
        minutes: int = 30,
        organizer: str,
        attendees,
        uid: str | None = None,
    ) -> str:
        """One meeting in each of these users' calendars; attendees are addresses or
        (address, responseStatus[, "optional" | "resource"])."""
        eid = secrets.token_hex(13)
        uid = uid or f"{eid}@google.com"
        end = start + timedelta(minutes=minutes)
        with self._lock:
            for user in users:
                self._put(user, self._event_body(eid, uid, subject, start, end, organizer, attendees), start, end)
        return eid

    def add_series(
        self,
        users,
        *,
        subject: str,
        starts: list[datetime],
        minutes: int = 30,
        organizer: str,
        attendees,
        uid: str | None = None,
    ) -> str:
        """A recurring event, stored as singleEvents=true lists it: one instance per start,
        id `<series id>_<original start>`, recurringEventId and originalStartTime set."""
        sid = secrets.token_hex(13)
        uid = uid or f"{sid}@google.com"
        with self._lock:
            for user in users:
                for start in starts:
                    end = start + timedelta(minutes=minutes)
                    body = self._event_body(
                        f"{sid}_{_instance_suffix(start)}", uid, subject, start, end, organizer, attendees
                    )
                    body["recurringEventId"] = sid
                    body["originalStartTime"] = {"dateTime": rfc3339(start), "timeZone": "UTC"}
                    self._put(user, body, start, end)
        return sid

    def _instances(self, series_id: str, original: datetime | None):
        wanted = f"{series_id}_{_instance_suffix(original)}" if original else None
        for user, events in self.calendars.items():
            for eid, stored in events.items():
                if eid == series_id or eid == wanted or (wanted is None and eid.startswith(series_id + "_")):
                    yield user, stored

    def move_occurrence(self, series_id: str, original: datetime, new_start: datetime, minutes: int = 30) -> None:
        """An occurrence moved (an exception of the series): new start, same originalStartTime."""
        with self._lock:
            for user, stored in list(self._instances(series_id, original)):
                body = dict(stored.body)
                body["start"] = {"dateTime": rfc3339(new_start), "timeZone": "UTC"}
                body["end"] = {"dateTime": rfc3339(new_start + timedelta(minutes=minutes)), "timeZone": "UTC"}
                body["sequence"] = int(body.get("sequence") or 0) + 1
                self._put(user, body, new_start, new_start + timedelta(minutes=minutes))

    def cancel_occurrence(self, series_id: str, original: datetime) -> None:
        """One occurrence cancelled: listed (to incremental requests) with status cancelled."""
        self._cancel(series_id, original)

    def delete_event(self, event_id: str) -> None:
        """The event (or every occurrence of a series) deleted."""
        self._cancel(event_id, None)

    def _cancel(self, event_id: str, original: datetime | None) -> None:
        with self._lock:
            for user, stored in list(self._instances(event_id, original)):
                # What Google keeps of a deleted event: its id, status and, for an instance,
                # its series and original start.
                keep = ("kind", "id", "recurringEventId", "originalStartTime", "iCalUID")
                body = {k: v for k, v in stored.body.items() if k in keep} | {"status": "cancelled"}
                self._put(user, body, stored.start, stored.end)

    def respond(self, user: str, event_id: str, attendee: str, response: str) -> None:
        """An attendee answers (accepted | declined | tentative | needsAction) in every copy."""
        with self._lock:
            for owner, events in self.calendars.items():
                for eid, stored in list(events.items()):
                    if eid != event_id and not eid.startswith(event_id + "_"):
                        continue
                    body = dict(stored.body)
                    body["attendees"] = [
                        a | {"responseStatus": response} if a.get("email") == attendee else a
                        for a in body.get("attendees", [])
                    ]
                    self._put(owner, body, stored.start, stored.end)

    # -- what Google's operators do -------------------------------------------------------
    def expire_sync_tokens(self, user: str | None = None) -> None:
        """Invalidate sync tokens (all, or a user's): their next use answers 410 GONE."""
        with self._lock:
            for token, (owner, _) in list(self.sync_tokens.items()):
                if user is None or owner == user.lower():
                    del self.sync_tokens[token]

    def storm(self, times: int, status: int = 429, reason: str = "rateLimitExceeded", retry_after=None) -> None:
        """Answer the next `times` events.list requests with a rate-limit error."""
        message = {
            "rateLimitExceeded": "Rate Limit Exceeded",
            "userRateLimitExceeded": "User Rate Limit Exceeded",
        }.get(reason, reason)
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        with self._lock:
            self.faults.extend([(status, _error(status, reason, message, "usageLimits"), headers)] * times)

    # -- the endpoint ------------------------------------------------------------------
    def events_list(self, calendar_id: str, query: dict, authorization: str) -> tuple[int, dict, dict]:
        status, body, headers, user = self._answer(calendar_id, query, authorization)
        with self._lock:
            self.requests.append((user, dict(query), status))
        return status, body, headers

    def _answer(self, calendar_id: str, query: dict, authorization: str):
        scheme, _, token = authorization.partition(" ")
        issued = self.google.tokens.get(token) if scheme.lower() == "bearer" else None
        if issued is None or issued.expires <= time.time():
            return 401, _error(401, "authError", "Invalid Credentials"), {}, ""
        user = issued.email
        if not READ_SCOPES & set(issued.scopes):
            return (
                403,
                _error(403, "insufficientPermissions", "Request had insufficient authentication scopes."),
                {},
                user,
            )
        if calendar_id not in ("primary", user):
            return 404, _error(404, "notFound", "Not Found"), {}, user
        with self._lock:
            if self.faults:
                status, body, headers = self.faults.pop(0)
                return status, body, headers, user
            if query.get("singleEvents") != "true":
                return 400, _error(400, "invalid", "This fake lists only with singleEvents=true."), {}, user
            sync_token, page_token = query.get("syncToken"), query.get("pageToken")
            if sync_token and (query.get("timeMin") or query.get("timeMax") or query.get("updatedMin")):
                return 400, _error(400, "invalid", "Sync token cannot be used with timeMin, timeMax."), {}, user
            if page_token:
                paging = self.pages.get(page_token)
                if paging is None or paging.user != user or paging.params != _same(query):
                    return 400, _error(400, "invalid", "Invalid page token value."), {}, user
                # Kept: a client that stopped after a page asks for the next one again.
            else:
                paging = self._listing(user, query, sync_token)
                if paging is None:
                    return (
                        410,
                        _error(410, "fullSyncRequired", "Sync token is no longer valid, a full sync is required."),
                        {},
                        user,
                    )
            size = min(MAX_RESULTS, int(query.get("maxResults") or DEFAULT_RESULTS))
            page, rest = paging.items[:size], paging.items[size:]
            body = {"kind": "calendar#events", "summary": user, "items": page}
            if rest:
                nxt = secrets.token_urlsafe(12)
                self.pages[nxt] = Paging(user, rest, paging.sync_seq, paging.params)
                body["nextPageToken"] = nxt
            else:
                token = "sync-" + secrets.token_urlsafe(16)
                self.sync_tokens[token] = (user, paging.sync_seq)
                body["nextSyncToken"] = token
            return 200, body, {}, user

    def _listing(self, user: str, query: dict, sync_token: str | None) -> Paging | None:
        events = sorted(self.calendars.get(user, {}).values(), key=lambda s: (s.start, s.body["id"]))
        if sync_token:
            known = self.sync_tokens.get(sync_token)
            if known is None or known[0] != user:
                return None
            # Everything changed since the token, deleted and cancelled events included.
            items = [s.body for s in events if s.changed > known[1]]
        else:
            lo = _time(query.get("timeMin")) or datetime.min.replace(tzinfo=timezone.utc)
            hi = _time(query.get("timeMax")) or datetime.max.replace(tzinfo=timezone.utc)
            show_deleted = query.get("showDeleted") == "true"
            items = [
                s.body
                for s in events
                if s.end > lo and s.start < hi and (show_deleted or s.body.get("status") != "cancelled")
            ]
        return Paging(user, [dict(i) for i in items], self.seq, _same(query))


def _same(query: dict) -> dict:
    """What must stay the same between the pages of one listing."""
    return {k: v for k, v in query.items() if k not in ("pageToken", "fields", "maxResults")}


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
