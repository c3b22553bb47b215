"""A fake Microsoft Graph v1.0 and Entra ID (v2.0 endpoints) on a loopback HTTPS port.

One uvicorn server in a thread serves both the authority (what msal talks to)
and Graph (what the connector talks to). Tests mutate the in-memory mailboxes
between sync rounds and inject faults. See README.md for the behaviours
reproduced and where each is documented.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode

import httpx
import trustme
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tests.servers import LOOPBACK, free_port, wait_for_port

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
IMAP_AUDIENCES = ("https://outlook.office.com", "https://outlook.office365.com")
RESERVED = {"openid", "profile", "offline_access"}
# The 403 an application access policy answers, as documented ("Handling API errors",
# https://learn.microsoft.com/en-us/graph/auth-limit-mailbox-access); tenants are also seen to
# answer the longer POLICY_MESSAGE_RAOP (graph.block_user(user, message=...)).
POLICY_MESSAGE = "Access to OData is disabled."
POLICY_MESSAGE_RAOP = (
    "Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings."
)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, code: str, message: str, headers: dict | None = None) -> Response:
    return JSONResponse(
        {
            "error": {
                "code": code,
                "message": message,
                "innerError": {"date": _iso(datetime.now(timezone.utc)), "request-id": secrets.token_hex(8)},
            }
        },
        status_code=status,
        headers=headers,
    )


def _oauth_error(error: str, description: str, status: int = 400) -> Response:
    return JSONResponse(
        {
            "error": error,
            "error_description": description,
            "error_codes": [0],
            "timestamp": _iso(datetime.now(timezone.utc)),
        },
        status_code=status,
    )


FILTERED_DELTA_CAP = 5000  # messages a $filter-ed delta returns at most
# Pages of a round whose @odata.nextLink still works once the round has moved on: Exchange
# keeps the last few generations of a round's sync state and answers an older $skiptoken
# with 410 SyncStateNotFound ("The sync state generation is not found; generation=518;
# [highest=523][523][521][522]", https://github.com/microsoftgraph/microsoft-graph-docs/issues/2162;
# "In case of an expired token, the service should respond with a 40X-series error with error
# codes such as syncStateNotFound", https://learn.microsoft.com/en-us/graph/delta-query-overview).
KEPT_GENERATIONS = 3


@dataclass
class Token:
    audience: str  # graph | imap
    tenant: str
    client_id: str
    user: str | None  # None for app-only tokens
    expires: float


@dataclass
class Fault:
    match: str
    status: int
    body: bytes
    headers: dict
    times: int
    content_type: str = "application/json"


@dataclass
class UserBox:
    user: str
    folders: dict = field(default_factory=dict)  # id -> folder dict (Graph shape)
    messages: dict = field(default_factory=dict)  # folder id -> {message id: (seq, message dict)}
    removed: dict = field(default_factory=dict)  # folder id -> {message id: seq}
    events: dict = field(default_factory=dict)  # event id -> (seq, event dict) (instances as calendarView shows them)
    masters: dict = field(default_factory=dict)  # series master id -> event dict
    removed_events: dict = field(default_factory=dict)  # event id -> seq
    seq: int = 0
    generation: int = 0  # bumped to expire every delta token (HTTP 410)
    blocked: str | None = None  # application access policy denies app-only access: the 403's message

    def tick(self) -> int:
        self.seq += 1
        return self.seq


WELL_KNOWN = [
    ("inbox", "Inbox"),
    ("sentitems", "Sent Items"),
    ("archive", "Archive"),
    ("deleteditems", "Deleted Items"),
    ("junkemail", "Junk Email"),
    ("drafts", "Drafts"),
    ("outbox", "Outbox"),
    ("conversationhistory", "Conversation History"),
]


class FakeGraph:
    def __init__(self, tmp_dir: Path):
        self.tmp_dir = Path(tmp_dir)
        self.host, self.port = LOOPBACK, free_port()
        self.tenant = "contoso-tenant"
        self.lock = threading.RLock()
        self.reset()
        self.app = self._build_app()
        self._server = None
        self._thread = None

    # -- lifecycle ------------------------------------------------------------
    def reset(self) -> None:
        with self.lock:
            self.apps: dict[str, dict] = {}  # client_id -> {"secret": str|None, "thumbprint": str|None, "tenant"}
            self.public_clients: set[str] = set()
            self.users: dict[str, UserBox] = {}
            self.tokens: dict[str, Token] = {}
            self.refresh_tokens: dict[str, tuple[str, str, str]] = {}  # rt -> (tenant, client_id, user)
            self.device_codes: dict[str, dict] = {}
            self.device_user: str | None = None  # who approves device codes (auto-approval)
            self.delta_state: dict[str, dict] = {}
            self.round_highest: dict[str, int] = {}  # round -> the newest page generation handed out
            self.faults: list[Fault] = []
            self.subscriptions: dict[str, dict] = {}
            self.notification_rewrite: tuple[str, str] | None = None  # (public prefix, reachable prefix)
            self.requests: list[tuple[str, str]] = []  # (method, path?query) of Graph calls
            # Item reads sent without Prefer: IdType="ImmutableId" (the preference applies to one
            # request only; such a read hands out an id that changes when the item moves)
            self.mutable_id_reads: list[str] = []
            self.token_requests: list[str] = []  # grant types seen by the token endpoint
            self.inflight: dict[str, int] = {}
            self.max_inflight: dict[str, int] = {}
            self.concurrency_limit = 4
            self.delay = 0.0  # seconds every Graph answer waits (to make concurrency observable)
            self.page_cache: dict[tuple, bytes] = {}
            self.access_token_lifetime = 3599

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def authority(self) -> str:
        return f"{self.url}/{self.tenant}"

    @property
    def graph_url(self) -> str:
        return f"{self.url}/v1.0"

    def start(self) -> "FakeGraph":
        import uvicorn

        self.ca = trustme.CA()
        cert = self.ca.issue_cert(LOOPBACK, "localhost")
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        key_file, cert_file = self.tmp_dir / "fake-graph.key", self.tmp_dir / "fake-graph.pem"
        cert.private_key_pem.write_to_path(str(key_file))
        cert.cert_chain_pems[0].write_to_path(str(cert_file))
        # A bundle with the system CAs plus the test CA: what REQUESTS_CA_BUNDLE points at in tests.
        system = Path(os.environ.get("REQUESTS_CA_BUNDLE") or "/etc/ssl/certs/ca-certificates.crt")
        self.ca_bundle = self.tmp_dir / "ca-bundle.pem"
        base = system.read_bytes() if system.exists() and system != self.ca_bundle else b""
        self.ca_bundle.write_bytes(base + b"\n" + self.ca.cert_pem.bytes())
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            log_level="warning",
            lifespan="off",
            ssl_keyfile=str(key_file),
            ssl_certfile=str(cert_file),
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fake-graph", daemon=True)
        self._thread.start()
        wait_for_port(self.host, self.port, timeout=15)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True  # msal and httpx pools keep connections alive
            self._thread.join(timeout=10)

    # -- test helpers: identities -----------------------------------------------
    def register_app(
        self,
        client_id: str | None = None,
        secret: str | None = None,
        *,
        thumbprint: str | None = None,
        public_key_pem: bytes | None = None,
    ) -> tuple[str, str]:
        """An app registration with a client secret, or with a certificate (its SHA-1
        thumbprint in hex and the public key the client assertion must verify with)."""
        client_id = client_id or secrets.token_hex(8)
        secret = secret if secret is not None or thumbprint else secrets.token_urlsafe(24)
        with self.lock:
            self.apps[client_id] = {"secret": secret, "thumbprint": thumbprint, "public_key": public_key_pem}
        return client_id, secret

    def register_public_client(self, client_id: str | None = None) -> str:
        client_id = client_id or secrets.token_hex(8)
        with self.lock:
            self.public_clients.add(client_id)
        return client_id

    def expire_access_tokens(self) -> None:
        with self.lock:
            for tok in self.tokens.values():
                tok.expires = 0

    def revoke_refresh_tokens(self, user: str | None = None) -> None:
        with self.lock:
            for rt in [rt for rt, v in self.refresh_tokens.items() if user is None or v[2] == user]:
                del self.refresh_tokens[rt]

    def block_user(self, user: str, blocked: bool = True, *, message: str = POLICY_MESSAGE) -> None:
        self.mailbox(user).blocked = message if blocked else None

    # -- test helpers: mail -----------------------------------------------------------
    def mailbox(self, user: str) -> UserBox:
        user = user.lower()
        with self.lock:
            box = self.users.get(user)
            if box is None:
                box = self.users[user] = UserBox(user)
                for wk, name in WELL_KNOWN:
                    self.add_folder(user, name, well_known=wk)
            return box

    def add_folder(
        self,
        user: str,
        name: str,
        *,
        parent: str | None = None,
        well_known: str | None = None,
        folder_id: str | None = None,
        hidden: bool = False,
    ) -> str:
        box = self.users[user.lower()] if user.lower() in self.users else self.mailbox(user)
        fid = folder_id or ("AAMk" + secrets.token_hex(10))
        with self.lock:
            box.folders[fid] = {
                "id": fid,
                "displayName": name,
                "parentFolderId": parent or "root",
                "childFolderCount": 0,
                "unreadItemCount": 0,
                "totalItemCount": 0,
                "isHidden": hidden,
                "_wk": well_known,
            }
            if parent:
                box.folders[parent]["childFolderCount"] += 1
            box.messages[fid] = {}
            box.removed[fid] = {}
        return fid

    def add_search_folder(
        self, user: str, name: str, sources: list[str], *, parent: str | None = None, filter_query: str = ""
    ) -> str:
        """A mail search folder: a virtual folder whose messages are those of its source
        folders (names or well-known names), each still living in its own folder. Graph
        lists it among the folders, typed "#microsoft.graph.mailSearchFolder" ("The
        returned collection includes any mail search folders directly under the root",
        https://learn.microsoft.com/en-us/graph/api/user-list-mailfolders; "a virtual
        folder in the user's mailbox that contains all the email items matching specified
        search criteria", https://learn.microsoft.com/en-us/graph/api/resources/mailsearchfolder)."""
        source_ids = [self.folder_id(user, s) for s in sources]
        fid = self.add_folder(user, name, parent=parent)
        with self.lock:
            self.mailbox(user).folders[fid].update(
                {
                    "@odata.type": "#microsoft.graph.mailSearchFolder",
                    "isSupported": True,
                    "includeNestedFolders": False,
                    "sourceFolderIds": source_ids,
                    "filterQuery": filter_query,
                    "_search": source_ids,
                }
            )
        return fid

    def _items(self, box: UserBox, fid: str) -> dict:
        """A folder's messages (id -> (seq, message)); a search folder's are its sources'."""
        sources = box.folders[fid].get("_search")
        if sources is None:
            return box.messages[fid]
        merged: dict = {}
        for source in sources:
            merged.update(box.messages[source])
        return merged

    def folder_id(self, user: str, name_or_wk: str) -> str:
        box = self.mailbox(user)
        for fid, f in box.folders.items():
            if f["_wk"] == name_or_wk or f["displayName"] == name_or_wk:
                return fid
        raise KeyError(name_or_wk)

    def add_message(
        self,
        user: str,
        folder: str = "inbox",
        *,
        internet_message_id: str | None = None,
        subject: str = "Hello",
        sender: tuple[str, str] = ("Carla", "carla@acme.com"),
        to: list[tuple[str, str]] = (),
        cc: list[tuple[str, str]] = (),
        bcc=(),
        sent: datetime | None = None,
        received: datetime | None = None,
        preview: str = "Hi there",
        message_id: str | None = None,
        extra: dict | None = None,
        headers: list[tuple[str, str]] | None = None,
        conversation_id: str | None = None,
    ) -> str:
        box = self.mailbox(user)
        fid = self.folder_id(user, folder)
        sent = sent or datetime.now(timezone.utc) - timedelta(hours=1)
        received = received or sent + timedelta(seconds=5)
        mid = message_id or ("AAkALg" + secrets.token_hex(12))

        def rcpt(pairs):
            return [{"emailAddress": {"name": n, "address": a}} for n, a in pairs]

        msg = {
            "@odata.type": "#microsoft.graph.message",
            "id": mid,
            "receivedDateTime": _iso(received),
            "sentDateTime": _iso(sent),
            "internetMessageId": internet_message_id
            if internet_message_id is not None
            else f"<{secrets.token_hex(8)}@acme.com>",
            "subject": subject,
            "bodyPreview": preview,
            # A new conversation unless the caller says which one a reply belongs to.
            "conversationId": conversation_id or "AAQk" + secrets.token_hex(6),
            "isDraft": False,
            "isRead": False,
            "importance": "normal",
            "inferenceClassification": "focused",
            "from": rcpt([sender])[0],
            "sender": rcpt([sender])[0],
            "toRecipients": rcpt(to),
            "ccRecipients": rcpt(cc),
            "bccRecipients": rcpt(bcc),
            "body": {"contentType": "html", "content": f"<html><body>{preview}</body></html>"},
        }
        if headers is not None:
            # What Exchange stored with the message as it arrived; mail a client
            # saved (Sent Items, drafts) has none.
            msg["internetMessageHeaders"] = [{"name": n, "value": v} for n, v in headers]
        msg.update(extra or {})
        with self.lock:
            box.messages[fid][mid] = (box.tick(), msg)
        return mid

    def update_message(self, user: str, message_id: str, **changes) -> None:
        box = self.mailbox(user)
        with self.lock:
            for items in box.messages.values():
                if message_id in items:
                    msg = dict(items[message_id][1], **changes)
                    items[message_id] = (box.tick(), msg)
                    return
        raise KeyError(message_id)

    def delete_message(self, user: str, message_id: str) -> None:
        box = self.mailbox(user)
        with self.lock:
            for fid, items in box.messages.items():
                if message_id in items:
                    del items[message_id]
                    box.removed[fid][message_id] = box.tick()
                    return
        raise KeyError(message_id)

    def move_message(self, user: str, message_id: str, folder: str) -> None:
        """Immutable ids keep the id across a move (Prefer: IdType="ImmutableId")."""
        box = self.mailbox(user)
        target = self.folder_id(user, folder)
        with self.lock:
            for fid, items in box.messages.items():
                if message_id in items:
                    _, msg = items.pop(message_id)
                    box.removed[fid][message_id] = box.tick()
                    box.messages[target][message_id] = (box.tick(), msg)
                    return
        raise KeyError(message_id)

    def expire_delta_tokens(self, user: str) -> None:
        with self.lock:
            self.mailbox(user).generation += 1

    # -- test helpers: calendar --------------------------------------------------------
    def add_event(
        self,
        user: str,
        *,
        subject: str = "Meeting",
        start: datetime,
        end: datetime | None = None,
        time_zone: str = "UTC",
        organizer: tuple[str, str] = ("Alice", "alice@ourco.com"),
        attendees: list[tuple[str, str, str, str]] = (),
        location: str = "",
        cancelled: bool = False,
        ical_uid: str | None = None,
        event_type: str = "singleInstance",
        series_master_id: str | None = None,
        original_start: datetime | None = None,
        event_id: str | None = None,
        all_day: bool = False,
    ) -> str:
        """attendees: (name, address, type required|optional|resource, response).
        all_day: start/end are dates at local midnight in time_zone, isAllDay true."""
        box = self.mailbox(user)
        eid, ev = self._event(
            subject=subject,
            start=start,
            end=end,
            time_zone=time_zone,
            organizer=organizer,
            attendees=attendees,
            location=location,
            cancelled=cancelled,
            ical_uid=ical_uid,
            event_type=event_type,
            series_master_id=series_master_id,
            original_start=original_start,
            event_id=event_id,
            all_day=all_day,
        )
        with self.lock:
            box.events[eid] = (box.tick(), ev)
        return eid

    @staticmethod
    def _event(
        *,
        subject,
        start,
        end,
        time_zone,
        organizer,
        attendees,
        location,
        cancelled,
        ical_uid,
        event_type,
        series_master_id,
        original_start,
        event_id,
        all_day,
    ) -> tuple[str, dict]:
        end = end or start + (timedelta(days=1) if all_day else timedelta(minutes=30))
        eid = event_id or ("AAMkEv" + secrets.token_hex(10))
        ev = {
            "@odata.type": "#microsoft.graph.event",
            "id": eid,
            "iCalUId": ical_uid or ("040000008200E00074C5B7101A82E008" + secrets.token_hex(24).upper()),
            "subject": subject,
            "type": event_type,
            "isCancelled": cancelled,
            "isAllDay": all_day,
            "seriesMasterId": series_master_id,
            "originalStart": (
                original_start.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if original_start else None
            ),
            "start": {"dateTime": _local(start, time_zone, all_day), "timeZone": time_zone},
            "end": {"dateTime": _local(end, time_zone, all_day), "timeZone": time_zone},
            "originalStartTimeZone": time_zone,
            "location": {"displayName": location},
            "organizer": {"emailAddress": {"name": organizer[0], "address": organizer[1]}},
            "attendees": [
                {
                    "type": t,
                    "status": {"response": r, "time": "0001-01-01T00:00:00Z"},
                    "emailAddress": {"name": n, "address": a},
                }
                for n, a, t, r in attendees
            ],
            "_start": start.astimezone(timezone.utc),
            "_end": end.astimezone(timezone.utc),
        }
        if original_start is None:
            ev.pop("originalStart")
        return eid, ev

    def add_series(
        self,
        user: str,
        *,
        subject: str,
        starts: list[datetime],
        ical_uid: str | None = None,
        exceptions: dict[int, datetime] | None = None,
        **kw,
    ) -> tuple[str, list[str]]:
        """A recurring series: a master (not in calendarView, read by id) holding the
        series' subject, organizer, attendees and location, and one instance per start.
        exceptions maps an index to the moved start of that occurrence. As in Graph,
        calendarView/delta lists plain occurrences with only their id, seriesMasterId,
        type, start and end; exceptions come with every property."""
        box = self.mailbox(user)
        master_id = "AAMkMaster" + secrets.token_hex(8)
        uid = ical_uid or ("040000008200E00074C5B7101A82E008" + secrets.token_hex(24).upper())
        _, master = self._event(
            subject=subject,
            start=starts[0],
            end=kw.get("end"),
            time_zone=kw.get("time_zone", "UTC"),
            organizer=kw.get("organizer", ("Alice", "alice@ourco.com")),
            attendees=kw.get("attendees", ()),
            location=kw.get("location", ""),
            cancelled=kw.get("cancelled", False),
            ical_uid=uid,
            event_type="seriesMaster",
            series_master_id=None,
            original_start=None,
            event_id=master_id,
            all_day=kw.get("all_day", False),
        )
        with self.lock:
            box.masters[master_id] = master
        ids = []
        for i, original in enumerate(starts):
            moved = (exceptions or {}).get(i)
            ids.append(
                self.add_event(
                    user,
                    subject=subject,
                    start=moved or original,
                    event_type="exception" if moved else "occurrence",
                    series_master_id=master_id,
                    original_start=original,
                    # Graph gives every occurrence its own iCalUId.
                    ical_uid=uid[:-8] + secrets.token_hex(4).upper(),
                    **kw,
                )
            )
        return master_id, ids

    def update_event(self, user: str, event_id: str, **changes) -> None:
        box = self.mailbox(user)
        with self.lock:
            seq, ev = box.events[event_id]
            box.events[event_id] = (box.tick(), dict(ev, **changes))

    def delete_event(self, user: str, event_id: str) -> None:
        box = self.mailbox(user)
        with self.lock:
            del box.events[event_id]
            box.removed_events[event_id] = box.tick()

    # -- test helpers: faults and push ---------------------------------------------
    def inject(
        self,
        match: str,
        status: int,
        body: dict | str | bytes | None = None,
        *,
        headers: dict | None = None,
        times: int = 1,
        content_type: str = "application/json",
    ) -> None:
        """The next `times` requests whose path+query contains `match` get this answer."""
        if isinstance(body, dict):
            raw = json.dumps(body).encode()
        elif isinstance(body, str):
            raw = body.encode()
        else:
            raw = body or b""
        with self.lock:
            self.faults.append(Fault(match, status, raw, dict(headers or {}), times, content_type))

    def notify(
        self,
        subscription_id: str,
        *,
        client_state: str | None = None,
        change_type: str = "created",
        lifecycle_event: str | None = None,
    ) -> httpx.Response:
        """Post a change (or lifecycle) notification the way Graph does; returns the app's answer."""
        sub = self.subscriptions[subscription_id]
        item = {
            "subscriptionId": subscription_id,
            "subscriptionExpirationDateTime": sub["expirationDateTime"],
            "clientState": sub.get("clientState") if client_state is None else client_state,
            "tenantId": self.tenant,
        }
        if lifecycle_event:
            item["lifecycleEvent"] = lifecycle_event
            url = sub["lifecycleNotificationUrl"]
        else:
            item.update(
                changeType=change_type,
                resource=sub["resource"] + "/AAMkNew",
                resourceData={"@odata.type": "#Microsoft.Graph.Message", "id": "AAMkNew"},
            )
            url = sub["notificationUrl"]
        return httpx.post(self._reachable(url), json={"value": [item]}, timeout=10)

    def _reachable(self, url: str) -> str:
        if self.notification_rewrite and url.startswith(self.notification_rewrite[0]):
            return self.notification_rewrite[1] + url[len(self.notification_rewrite[0]) :]
        return url

    # -- the ASGI app --------------------------------------------------------------
    def _build_app(self) -> FastAPI:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        fake = self

        @app.middleware("http")
        async def graph_gate(request: Request, call_next):
            path = request.url.path
            query = request.url.query
            target = path + ("?" + query if query else "")
            with fake.lock:
                for fault in fake.faults:
                    if fault.times > 0 and fault.match in target:
                        fault.times -= 1
                        if path.startswith("/v1.0"):
                            fake.requests.append((request.method, target))
                        return Response(
                            fault.body, status_code=fault.status, headers=fault.headers, media_type=fault.content_type
                        )
            if not path.startswith("/v1.0"):
                return await call_next(request)
            user = fake._user_of(request)
            if isinstance(user, Response):
                return user
            with fake.lock:
                fake.requests.append((request.method, target))
                now = fake.inflight.get(user, 0) + 1
                fake.inflight[user] = now
                fake.max_inflight[user] = max(fake.max_inflight.get(user, 0), now)
            try:
                if now > fake.concurrency_limit:
                    return _error(
                        429,
                        "ApplicationThrottled",
                        "Application is over its MailboxConcurrency limit.",
                        {"Retry-After": "1"},
                    )
                if fake.delay:
                    await asyncio.sleep(fake.delay)
                request.state.user = user
                return await call_next(request)
            finally:
                with fake.lock:
                    fake.inflight[user] -= 1

        # ---- Entra ID ----
        @app.get("/{tenant}/v2.0/.well-known/openid-configuration")
        def openid_configuration(tenant: str):
            base = f"{fake.url}/{tenant}"
            return {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "issuer": f"{fake.url}/{tenant}/v2.0",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_types_supported": ["code", "id_token", "code id_token", "token id_token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
            }

        @app.post("/{tenant}/oauth2/v2.0/devicecode")
        async def devicecode(tenant: str, request: Request):
            form = parse_qs((await request.body()).decode())
            client_id = form.get("client_id", [""])[0]
            if client_id not in fake.public_clients:
                return _oauth_error("unauthorized_client", f"AADSTS700016: Application {client_id} not found.")
            code, user_code = secrets.token_urlsafe(24), secrets.token_hex(4).upper()
            with fake.lock:
                fake.device_codes[code] = {
                    "client_id": client_id,
                    "scope": form.get("scope", [""])[0],
                    "tenant": tenant,
                    "user_code": user_code,
                    "user": fake.device_user,
                }
            return {
                "device_code": code,
                "user_code": user_code,
                "verification_uri": "https://microsoft.com/devicelogin",
                "expires_in": 900,
                "interval": 1,
                "message": f"To sign in, use a web browser to open the page https://microsoft.com/devicelogin "
                f"and enter the code {user_code} to authenticate.",
            }

        @app.post("/{tenant}/oauth2/v2.0/token")
        async def token(tenant: str, request: Request):
            form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
            grant = form.get("grant_type", "")
            fake.token_requests.append(grant)
            scope = form.get("scope", "")
            client_id = form.get("client_id", "")
            if grant == "client_credentials":
                reg = fake.apps.get(client_id)
                if reg is None:
                    return _oauth_error(
                        "unauthorized_client",
                        f"AADSTS700016: Application with identifier '{client_id}' was not found in the directory.",
                    )
                if reg["thumbprint"]:
                    import jwt

                    assertion = form.get("client_assertion", "")
                    x5t = base64.urlsafe_b64encode(bytes.fromhex(reg["thumbprint"])).decode()
                    try:
                        header = jwt.get_unverified_header(assertion)
                        claims = jwt.decode(
                            assertion, reg["public_key"], algorithms=["PS256", "RS256"], options={"verify_aud": False}
                        )
                    except Exception:  # noqa: BLE001 - any failure is a bad assertion
                        header, claims = {}, {}
                    if header.get("x5t", "").rstrip("=") != x5t.rstrip("=") or claims.get("iss") != client_id:
                        return _oauth_error(
                            "invalid_client", "AADSTS700027: Client assertion contains an invalid signature.", 401
                        )
                elif form.get("client_secret") != reg["secret"]:
                    return _oauth_error("invalid_client", "AADSTS7000215: Invalid client secret provided.", 401)
                return fake._issue(tenant, client_id, None, scope, refresh=False)
            if grant == "urn:ietf:params:oauth:grant-type:device_code":
                flow = fake.device_codes.get(form.get("device_code", ""))
                if flow is None:
                    return _oauth_error(
                        "expired_token",
                        "AADSTS70020: The provided value for the input parameter 'device_code' is not valid.",
                    )
                if flow["user"] is None:
                    return _oauth_error(
                        "authorization_pending", "AADSTS70016: OAuth 2.0 device flow error. Authorization is pending."
                    )
                del fake.device_codes[form["device_code"]]
                return fake._issue(tenant, flow["client_id"], flow["user"], scope or flow["scope"], refresh=True)
            if grant == "refresh_token":
                entry = fake.refresh_tokens.get(form.get("refresh_token", ""))
                if entry is None:
                    return _oauth_error(
                        "invalid_grant",
                        "AADSTS50173: The provided grant has expired due to it "
                        "being revoked, a fresh auth token is needed. The user might have changed "
                        "or reset their password.",
                    )
                return fake._issue(entry[0], entry[1], entry[2], scope, refresh=True)
            return _oauth_error("unsupported_grant_type", f"AADSTS70003: grant type {grant!r} not supported")

        # ---- Graph ----
        def box_of(request: Request) -> UserBox:
            return fake.mailbox(request.state.user)

        @app.get("/v1.0/users/{uid}/mailFolders")
        @app.get("/v1.0/me/mailFolders")
        def mail_folders(request: Request, uid: str = ""):
            return fake._folders(box_of(request), "root", request)

        @app.get("/v1.0/users/{uid}/mailFolders/{fid}/childFolders")
        @app.get("/v1.0/me/mailFolders/{fid}/childFolders")
        def child_folders(request: Request, fid: str, uid: str = ""):
            return fake._folders(box_of(request), fid, request)

        @app.get("/v1.0/users/{uid}/mailFolders/{fid}")
        @app.get("/v1.0/me/mailFolders/{fid}")
        def mail_folder(request: Request, fid: str, uid: str = ""):
            box = box_of(request)
            folder = fake._resolve_folder(box, fid)
            if folder is None:
                return _error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
            return fake._folder_json(folder)

        @app.get("/v1.0/users/{uid}/mailFolders/{fid}/messages/delta")
        @app.get("/v1.0/me/mailFolders/{fid}/messages/delta")
        def messages_delta(request: Request, fid: str, uid: str = ""):
            return fake._delta(request, box_of(request), "messages", fid)

        @app.get("/v1.0/users/{uid}/mailFolders/{fid}/messages")
        @app.get("/v1.0/me/mailFolders/{fid}/messages")
        def list_messages(request: Request, fid: str, uid: str = ""):
            box = box_of(request)
            folder = fake._resolve_folder(box, fid)
            if folder is None:
                return _error(404, "ErrorItemNotFound", "The specified folder was not found in the store.")
            keep = _message_filter(request.query_params.get("$filter"))
            if keep is None:
                return _error(400, "ErrorInvalidUrlQueryFilter", "The filter expression is not supported.")
            order = (request.query_params.get("$orderby") or "").strip().lower()
            if order not in ("", "receiveddatetime", "receiveddatetime asc", "receiveddatetime desc"):
                return _error(400, "ErrorInvalidUrlQuery", "The $orderby expression is not supported.")
            with fake.lock:
                items = [dict(m) for _, m in sorted(fake._items(box, folder["id"]).values(), key=lambda sm: sm[0])]
            if order:  # stable: messages received at one instant keep the store's order
                items.sort(key=lambda m: m["receivedDateTime"], reverse=order.endswith("desc"))
            return fake._listing(request, [m for m in items if keep(m)])

        @app.get("/v1.0/users/{uid}/calendarView")
        @app.get("/v1.0/me/calendarView")
        def calendar_view(request: Request, uid: str = ""):
            box = box_of(request)
            q = request.query_params
            if "startDateTime" not in q or "endDateTime" not in q:
                return _error(
                    400,
                    "ErrorInvalidParameter",
                    "This request requires a time window specified by "
                    "the query string parameters StartDateTime and EndDateTime.",
                )
            lo = datetime.fromisoformat(q["startDateTime"].replace("Z", "+00:00"))
            hi = datetime.fromisoformat(q["endDateTime"].replace("Z", "+00:00"))
            with fake.lock:
                # Occurrences, exceptions and single events overlapping the window; series
                # masters are not instances and calendarView never lists them.
                items = [
                    dict(ev)
                    for _, ev in sorted(box.events.values(), key=lambda se: se[0])
                    if ev.get("type") != "seriesMaster" and ev["_start"] < hi and ev["_end"] > lo
                ]
            return fake._listing(request, items)

        @app.get("/v1.0/users/{uid}/messages/{mid}")
        @app.get("/v1.0/me/messages/{mid}")
        def get_message(request: Request, mid: str, uid: str = ""):
            box = box_of(request)
            plain = mid.rpartition("~")[2]  # an id bound to its folder (no ImmutableId), see _page
            with fake.lock:
                found = next((m for items in box.messages.values() if (m := items.get(plain)) is not None), None)
            if found is None:
                return _error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
            item = {k: v for k, v in found[1].items() if not k.startswith("_") and v is not None}
            item["id"] = mid
            if not fake._immutable(request):
                fake.mutable_id_reads.append(request.url.path)
                item["id"] = f"{next(f for f, items in box.messages.items() if plain in items)}~{plain}"
            select = request.query_params.get("$select")
            if not select or "internetMessageHeaders" not in select.split(","):
                # "Returned only on applying a $select query option."
                item.pop("internetMessageHeaders", None)
            return fake._select(item, select)

        @app.get("/v1.0/users/{uid}/calendarView/delta")
        @app.get("/v1.0/me/calendarView/delta")
        def calendar_delta(request: Request, uid: str = ""):
            return fake._delta(request, box_of(request), "events", None)

        @app.get("/v1.0/users/{uid}/events/{eid}")
        @app.get("/v1.0/me/events/{eid}")
        def get_event(request: Request, eid: str, uid: str = ""):
            box = box_of(request)
            ev = box.masters.get(eid) or (box.events.get(eid) or (None, None))[1]
            ev = {k: v for k, v in ev.items() if v is not None} if ev is not None else None
            if ev is None:
                return _error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
            if not fake._immutable(request):
                fake.mutable_id_reads.append(request.url.path)
            return fake._select(
                {k: v for k, v in ev.items() if not k.startswith("_")}, request.query_params.get("$select")
            )

        @app.post("/v1.0/subscriptions")
        async def create_subscription(request: Request):
            body = await request.json()
            for key in ("changeType", "notificationUrl", "resource", "expirationDateTime"):
                if key not in body:
                    return _error(400, "InvalidRequest", f"{key} is required")
            if not body["notificationUrl"].startswith("https://"):
                return _error(400, "InvalidRequest", "The Notification Url must be HTTPS.")
            token = secrets.token_urlsafe(16)
            # Graph validates the endpoint before creating the subscription.
            async with httpx.AsyncClient(timeout=10) as client:
                for url_key in ("notificationUrl", "lifecycleNotificationUrl"):
                    if not body.get(url_key):
                        continue
                    try:
                        answer = await client.post(
                            fake._reachable(body[url_key]) + "?validationToken=" + quote(token), content=b""
                        )
                    except httpx.HTTPError as exc:
                        return _error(400, "InvalidRequest", f"Subscription validation request failed: {exc}")
                    if answer.status_code != 200 or answer.text != token:
                        return _error(
                            400,
                            "InvalidRequest",
                            "Subscription validation request failed. Response "
                            "must exactly match validationToken query parameter.",
                        )
            sid = secrets.token_hex(16)
            sub = dict(body, id=sid, applicationId="fake", creatorId="fake")
            with fake.lock:
                fake.subscriptions[sid] = sub
            return JSONResponse(sub, status_code=201)

        @app.patch("/v1.0/subscriptions/{sid}")
        async def renew_subscription(sid: str, request: Request):
            body = await request.json()
            sub = fake.subscriptions.get(sid)
            if sub is None:
                return _error(404, "ResourceNotFound", "The object was not found.")
            sub["expirationDateTime"] = body["expirationDateTime"]
            return sub

        @app.delete("/v1.0/subscriptions/{sid}")
        def delete_subscription(sid: str):
            if fake.subscriptions.pop(sid, None) is None:
                return _error(404, "ResourceNotFound", "The object was not found.")
            return Response(status_code=204)

        return app

    # -- internals -------------------------------------------------------------------
    def _issue(self, tenant: str, client_id: str, user: str | None, scope: str, *, refresh: bool) -> Response:
        scopes = [s for s in scope.split() if s not in RESERVED]
        audience = "imap" if any(s.startswith(IMAP_AUDIENCES) for s in scopes) else "graph"
        access = secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[access] = Token(audience, tenant, client_id, user, time.time() + self.access_token_lifetime)
        out = {
            "token_type": "Bearer",
            "scope": " ".join(scopes),
            "expires_in": self.access_token_lifetime,
            "ext_expires_in": self.access_token_lifetime,
            "access_token": access,
        }
        if refresh and user:
            rt = secrets.token_urlsafe(40)
            with self.lock:
                self.refresh_tokens[rt] = (tenant, client_id, user)
            oid = "00000000-0000-0000-0000-" + user.encode().hex()[:12].ljust(12, "0")
            now = int(time.time())
            claims = {
                "aud": client_id,
                "iss": f"{self.url}/{tenant}/v2.0",
                "iat": now,
                "nbf": now,
                "exp": now + 3600,
                "name": user.split("@")[0],
                "oid": oid,
                "preferred_username": user,
                "sub": oid,
                "tid": tenant,
                "ver": "2.0",
            }
            out.update(
                refresh_token=rt,
                id_token=f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
                client_info=_b64({"uid": oid, "utid": tenant}),
            )
        return JSONResponse(out)

    def _user_of(self, request: Request):
        auth = request.headers.get("authorization", "")
        token = self.tokens.get(auth[7:]) if auth.startswith("Bearer ") else None
        if token is None or token.audience != "graph":
            return _error(
                401,
                "InvalidAuthenticationToken",
                "Access token is empty." if not auth else "IDX14100: JWT is not well formed.",
            )
        if token.expires < time.time():
            return _error(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
        parts = request.url.path.split("/")
        if request.url.path.startswith("/v1.0/subscriptions") or request.url.path == "/v1.0/$batch":
            return token.user or "app:" + token.client_id
        if parts[2] == "me":
            if token.user is None:
                return _error(400, "BadRequest", "/me request is only valid with delegated authentication flow.")
            user = token.user
        else:
            user = parts[3].lower()
            if token.user is not None and token.user != user:
                return _error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        box = self.users.get(user)
        if box is None:
            return _error(404, "ErrorInvalidUser", f"The requested user '{user}' is invalid.")
        if box.blocked and token.user is None:
            return _error(403, "ErrorAccessDenied", box.blocked)
        return user

    def imap_token_user(self, access: str) -> str | None:
        tok = self.tokens.get(access)
        if tok is None or tok.audience != "imap" or tok.expires < time.time():
            return None
        return tok.user or "app"

    def _resolve_folder(self, box: UserBox, fid: str):
        if fid in box.folders:
            return box.folders[fid]
        for folder in box.folders.values():
            if folder["_wk"] == fid.lower():
                return folder
        return None

    @staticmethod
    def _folder_json(folder: dict) -> dict:
        return {k: v for k, v in folder.items() if not k.startswith("_")}

    def _folders(self, box: UserBox, parent: str, request: Request):
        folder = self._resolve_folder(box, parent) if parent != "root" else None
        pid = folder["id"] if folder else "root"
        # "By default, this operation does not return hidden folders. Use a query parameter
        # includeHiddenFolders to include them" (https://learn.microsoft.com/en-us/graph/api/user-list-mailfolders,
        # and the same for childFolders: https://learn.microsoft.com/en-us/graph/api/mailfolder-list-childfolders).
        hidden = request.query_params.get("includeHiddenFolders", "").lower() == "true"
        items = [
            self._folder_json(f)
            for f in box.folders.values()
            if f["parentFolderId"] == pid and (hidden or not f["isHidden"])
        ]
        top = int(request.query_params.get("$top", "10"))
        skip = int(request.query_params.get("$skip", "0"))
        out = {"@odata.context": "fake", "value": items[skip : skip + top]}
        if skip + top < len(items):
            q = dict(request.query_params)
            q["$skip"] = str(skip + top)
            out["@odata.nextLink"] = f"{self.url}{request.url.path}?{urlencode(q)}"
        return out

    @staticmethod
    def _select(item: dict, select: str | None) -> dict:
        if not select:
            return item
        wanted = set(select.split(","))
        return {k: v for k, v in item.items() if k in wanted or k in ("id", "@odata.type")}

    def _listing(self, request: Request, items: list[dict]):
        """A plain (not delta) collection page: `$top` (default 10) and `$skip`, an absolute
        `@odata.nextLink` while more remain, `$select` honoured; with `$count=true` the total
        of the filtered collection, whatever the page holds, as `@odata.count` ("$count:
        Retrieves the total count of matching resources", Graph's query parameters page)."""
        q = request.query_params
        count = q.get("$count")
        if count not in (None, "true", "false"):
            return _error(400, "BadRequest", "Invalid $count value.")
        top, skip = int(q.get("$top", "10")), int(q.get("$skip", "0"))
        page = [
            self._select({k: v for k, v in i.items() if not k.startswith("_") and v is not None}, q.get("$select"))
            for i in items[skip : skip + top]
        ]
        out: dict = {"@odata.context": "fake"}
        if count == "true":
            out["@odata.count"] = len(items)
        out["value"] = page
        if skip + top < len(items):
            more = dict(q)
            more["$skip"] = str(skip + top)
            out["@odata.nextLink"] = f"{self.url}{request.url.path}?{urlencode(more)}"
        return out

    def _page_size(self, request: Request) -> int:
        for part in request.headers.get("prefer", "").split(","):
            part = part.strip()
            if part.startswith("odata.maxpagesize="):
                return max(1, int(part.split("=", 1)[1]))
        return 10

    def _delta(self, request: Request, box: UserBox, kind: str, fid: str | None):
        q = request.query_params
        size = self._page_size(request)
        headers = {"Preference-Applied": f"odata.maxpagesize={size}"}
        if "$skiptoken" in q or "$deltatoken" in q:
            token = q.get("$skiptoken") or q.get("$deltatoken")
            state = self.delta_state.get(token)
            if (
                state is None
                or state["generation"] != box.generation
                or state["user"] != box.user
                or ("$skiptoken" in q and state["step"] <= self.round_highest[state["round"]] - KEPT_GENERATIONS)
            ):
                return _error(
                    410,
                    "SyncStateNotFound",
                    "The sync state generation is not found.",
                    {"Location": f"{self.url}{request.url.path}"},
                )
            if "$deltatoken" in q:  # a new round from a stored state
                state = self._new_round(
                    box, kind, state["folder"], state["since"], state["select"], state["ge"], state["window"]
                )
        else:
            if kind == "messages":
                folder = self._resolve_folder(box, fid)
                if folder is None:
                    return _error(404, "ErrorItemNotFound", "The specified folder was not found in the store.")
                fid = folder["id"]
                ge = None
                flt = q.get("$filter")
                if flt:
                    field_, op, value = flt.split(" ", 2)
                    if field_ != "receivedDateTime" or op not in ("ge", "gt"):
                        return _error(400, "ErrorInvalidUrlQueryFilter", "The filter expression is not supported.")
                    ge = value
                window = None
            else:
                if "startDateTime" not in q or "endDateTime" not in q:
                    return _error(
                        400,
                        "ErrorInvalidParameter",
                        "This request requires a time window specified by "
                        "the query string parameters StartDateTime and EndDateTime.",
                    )
                if "$select" in q or "$filter" in q:
                    return _error(400, "ErrorInvalidUrlQuery", "calendarView delta does not support $select/$filter.")
                window = (q["startDateTime"], q["endDateTime"])
                ge = None
            state = self._new_round(box, kind, fid, 0, q.get("$select"), ge, window)
        return self._page(request, box, kind, state, size, headers)

    def _new_round(self, box, kind, fid, since, select, ge, window) -> dict:
        with self.lock:
            if kind == "messages":
                live = self._items(box, fid)
                ids = [
                    (seq, mid, False)
                    for mid, (seq, msg) in live.items()
                    if seq > since and (ge is None or msg["receivedDateTime"] >= ge)
                ]
                if since:
                    ids += [(seq, mid, True) for mid, seq in box.removed.get(fid, {}).items() if seq > since]
            else:
                lo = datetime.fromisoformat(window[0].replace("Z", "+00:00"))
                hi = datetime.fromisoformat(window[1].replace("Z", "+00:00"))
                ids = [
                    (seq, eid, False)
                    for eid, (seq, ev) in box.events.items()
                    if seq > since and ev["_start"] < hi and ev["_end"] > lo
                ]
                if since:  # removed events come back whatever their time
                    ids += [(seq, eid, True) for eid, seq in box.removed_events.items() if seq > since]
            # In the order the changes happened. An item that left and came back since the
            # last round (moved out of the folder and back, keeping its immutable id) is in
            # the round twice: its removal, then the item. "It's possible that a single entity
            # will be contained multiple times in the response, if that entity was changed
            # multiple times" and "Assume that the same item can show up anywhere in the
            # @odata.nextLink sequence and handle that in your merge logic"
            # (https://learn.microsoft.com/en-us/graph/delta-query-overview).
            ids.sort()
            if ge is not None:
                # "Applying $filter in a delta query returns only up to 5,000 messages."
                # (Microsoft Graph docs, delta-query-messages)
                ids = ids[:FILTERED_DELTA_CAP]
            return {
                "user": box.user,
                "kind": kind,
                "folder": fid,
                "since": since,
                "round_seq": box.seq,
                "select": select,
                "ge": ge,
                "window": window,
                "ids": [(i, gone) for _, i, gone in ids],  # gone: this entry is the item's removal
                "offset": 0,
                "generation": box.generation,
                "round": secrets.token_hex(6),
                "step": 0,
            }

    @staticmethod
    def _immutable(request: Request) -> bool:
        return 'idtype="immutableid"' in request.headers.get("prefer", "").lower()

    def _page(self, request: Request, box: UserBox, kind: str, state: dict, size: int, headers: dict) -> Response:
        offset, ids = state["offset"], state["ids"]
        chunk = ids[offset : offset + size]
        parts = []
        # Without Prefer: IdType="ImmutableId" Graph hands out ids that change when
        # a message moves to another folder; the fake makes them folder-bound too.
        immutable = kind != "messages" or self._immutable(request)

        def visible(item_id: str) -> str:
            return item_id if immutable else f"{state['folder']}~{item_id}"

        with self.lock:
            for item_id, gone in chunk:
                if kind == "messages":
                    live = None if gone else self._items(box, state["folder"]).get(item_id)
                    if live is None:
                        if item_id in box.removed[state["folder"]]:
                            parts.append(
                                b'{"@odata.type":"#microsoft.graph.message","id":'
                                + json.dumps(visible(item_id)).encode()
                                + b',"@removed":{"reason":"deleted"}}'
                            )
                        continue
                else:
                    live = None if gone else box.events.get(item_id)
                    if live is None:
                        if item_id in box.removed_events:
                            parts.append(
                                b'{"@odata.type":"#microsoft.graph.event","id":'
                                + json.dumps(item_id).encode()
                                + b',"@removed":{"reason":"deleted"}}'
                            )
                        continue
                seq, item = live
                key = (item_id, seq, state["select"], immutable)
                raw = self.page_cache.get(key)
                if raw is None:
                    clean = {
                        k: v
                        for k, v in item.items()
                        if not k.startswith("_") and v is not None and k != "internetMessageHeaders"
                    }  # delta never returns them
                    if kind == "events" and item.get("type") == "occurrence":
                        # What Graph's calendarView/delta gives a plain occurrence; the
                        # rest is on its series master (microsoft-graph-docs #7632, #22197).
                        clean = {
                            k: clean[k]
                            for k in ("@odata.type", "id", "seriesMasterId", "type", "start", "end")
                            if k in clean
                        }
                    clean["id"] = visible(item_id)
                    raw = json.dumps(self._select(clean, state["select"]), separators=(",", ":")).encode()
                    self.page_cache[key] = raw
                parts.append(raw)
        base = f"{self.url}{request.url.path}"
        link_token = secrets.token_urlsafe(18)
        if offset + size < len(ids):
            step = state["step"] + 1
            self.delta_state[link_token] = dict(state, offset=offset + size, step=step)
            self.round_highest[state["round"]] = max(self.round_highest.get(state["round"], 0), step)
            link = b'"@odata.nextLink":' + json.dumps(f"{base}?$skiptoken={link_token}").encode()
        else:
            self.delta_state[link_token] = dict(state, since=state["round_seq"], ids=[], offset=0)
            link = b'"@odata.deltaLink":' + json.dumps(f"{base}?$deltatoken={link_token}").encode()
        body = (
            b'{"@odata.context":"'
            + f"{self.graph_url}/$metadata#Collection({kind})".encode()
            + b'",'
            + link
            + b',"value":['
            + b",".join(parts)
            + b"]}"
        )
        return Response(body, media_type="application/json", headers=headers)

    def prewarm(self, user: str, select: str | None) -> None:
        """Serialise every message of a mailbox for a $select ahead of time (benchmarks)."""
        box = self.mailbox(user)
        with self.lock:
            for items in box.messages.values():
                for mid, (seq, item) in items.items():
                    clean = {k: v for k, v in item.items() if not k.startswith("_") and v is not None}
                    self.page_cache[(mid, seq, select, True)] = json.dumps(
                        self._select(clean, select), separators=(",", ":")
                    ).encode()
            for eid, (seq, item) in box.events.items():
                clean = {k: v for k, v in item.items() if not k.startswith("_") and v is not None}
                self.page_cache[(eid, seq, None, True)] = json.dumps(clean, separators=(",", ":")).encode()


def _message_filter(expression: str | None):
    """The message `$filter`s the fake understands: clauses joined by `and`, each
    `receivedDateTime ge|gt|le|lt <UTC ISO time>` or `isDraft eq|ne true|false`. A
    predicate on a message, or None for anything else (Graph's 400)."""
    if not expression:
        return lambda m: True
    tests = []
    for clause in expression.split(" and "):
        parts = clause.strip().split(" ")
        if len(parts) != 3:
            return None
        field_, op, value = parts
        if field_ == "receivedDateTime" and op in ("ge", "gt", "le", "lt"):
            try:
                when = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return None
            compare = {"ge": "__ge__", "gt": "__gt__", "le": "__le__", "lt": "__lt__"}[op]
            tests.append(
                lambda m, when=when, compare=compare: getattr(
                    datetime.fromisoformat(m["receivedDateTime"].replace("Z", "+00:00")), compare
                )(when)
            )
        elif field_ == "isDraft" and op in ("eq", "ne") and value in ("true", "false"):
            wanted = (value == "true") == (op == "eq")
            tests.append(lambda m, wanted=wanted: bool(m.get("isDraft")) == wanted)
        else:
            return None
    return lambda m: all(t(m) for t in tests)


# Windows zone names Outlook writes, for the events the fake creates in a local zone.
_WINDOWS = {
    "Pacific Standard Time": "America/Los_Angeles",
    "W. Europe Standard Time": "Europe/Berlin",
    "Eastern Standard Time": "America/New_York",
    "GMT Standard Time": "Europe/London",
}


def _local(dt: datetime, zone: str, date_only: bool = False) -> str:
    from zoneinfo import ZoneInfo

    if date_only:  # an all-day event's date, written as local midnight
        return dt.strftime("%Y-%m-%dT00:00:00.0000000")
    tz = timezone.utc if zone == "UTC" else ZoneInfo(_WINDOWS.get(zone, zone))
    return dt.astimezone(tz).replace(tzinfo=None).strftime("%Y-%m-%dT%H:%M:%S.0000000")
