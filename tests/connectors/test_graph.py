"""The Microsoft Graph connector against the fake Graph + Entra authority (real HTTPS, real msal)."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from app.services import m365
from connectors import graph as graph_connector
from connectors.base import (
    AuthError,
    BadDataError,
    CalendarWindow,
    ConnectorSpec,
    CursorExpiredError,
    Fix,
    Folder,
    MeetingRecord,
    TenantSpec,
    ThrottledError,
    meeting_key,
    utc_stamp,
)
from connectors.graph import CALENDAR_FOLDER
from connectors.mailparse import parse_message_headers
from sync.fixes import explain_error
from tests.fakes.graph import POLICY_MESSAGE, POLICY_MESSAGE_RAOP
from tests.fakes.graph.imap import FakeOAuthImap

USER = "alice@ourco.com"
LONG_AGO = datetime.now(timezone.utc) - timedelta(days=365)


def build(spec: ConnectorSpec, secret: str, want_snippet: bool):
    return graph_connector.build(replace(spec, secret=secret, want_snippet=want_snippet))


def tenant_mailbox(graph, *, user=USER, page_size=10, window=None, **config):
    client_id, secret = graph.register_app()
    mailbox = ConnectorSpec(
        "m365",
        {"user": user, "page_size": page_size, **config},
        mailbox_id=1,
        owner=user,
        window=window or CalendarWindow(30, 60),
        tenant=TenantSpec(
            graph.tenant, client_id, "secret", {"authority": graph.authority, "graph_url": graph.graph_url}
        ),
    )
    return mailbox, secret


def delegated_mailbox(graph, *, user=USER, imap=False, **config):
    graph.mailbox(user)
    graph.device_user = user
    client_id = graph.register_public_client()
    shown = []
    username, cache = m365.device_sign_in(client_id, graph.tenant, shown.append, authority=graph.authority, imap=imap)
    assert username == user and "enter the code" in shown[0]
    mailbox = ConnectorSpec(
        "m365",
        {
            "mode": "delegated",
            "client_id": client_id,
            "tenant_id": graph.tenant,
            "authority": graph.authority,
            "graph_url": graph.graph_url,
            "user": user,
            "page_size": 10,
            **config,
        },
        mailbox_id=2,
        owner=user,
        window=CalendarWindow(30, 60),
    )
    return mailbox, cache


def folder(connector, name):
    return next(f for f in connector.list_folders() if f.name == name)


def drain(connector, fold, cursor=None):
    return list(connector.fetch_changes(fold, cursor or {}, LONG_AGO))


def test_app_only_token_and_folder_roles(graph):
    graph.add_folder(USER, "Customers", parent=graph.folder_id(USER, "inbox"))
    graph.add_folder(USER, "2025", parent=graph.folder_id(USER, "archive"))
    graph.add_folder(USER, "Old", parent=graph.folder_id(USER, "deleteditems"))
    graph.add_folder(USER, "RSS Feeds")
    mailbox, secret = tenant_mailbox(graph)
    c = build(mailbox, secret, want_snippet=False)
    try:
        folders = c.list_folders()
    finally:
        c.close()
    roles = {f.name: f.role for f in folders}
    assert "client_credentials" in graph.token_requests
    # Graph's ids are the folders' remote ids (fetching never looks them up again), not flags.
    inbox = next(f for f in folders if f.name == "Inbox")
    assert inbox.remote_id == graph.folder_id(USER, "inbox") and inbox.flags == ("wk:inbox",)
    assert roles == {
        "Inbox": "inbox",
        "Inbox/Customers": "other",
        "Sent Items": "sent",
        "Archive": "archive",
        "Archive/2025": "archive",
        "Deleted Items": "skip",
        "Junk Email": "skip",
        "Drafts": "skip",
        "Outbox": "skip",
        "Conversation History": "skip",
        "RSS Feeds": "skip",
        CALENDAR_FOLDER: "calendar",
    }
    # Children of skipped folders are not even listed.
    assert not any("Old" in path for _, path in graph.requests if "childFolders" in path and "deleted" in path)


def test_search_folders_are_not_read_as_folders_of_their_own(graph):
    """Graph lists mail search folders among the mail folders (typed mailSearchFolder). They
    are views of messages living in other folders, Deleted Items and Junk Email included: read
    as folders they would give every message a second copy and bring in mail the sync leaves out."""
    graph.add_message(USER, "deleteditems", subject="Binned", sender=("Carla", "carla@acme.com"))
    graph.add_message(USER, "inbox", subject="Kept", sender=("Carla", "carla@acme.com"))
    graph.add_search_folder(USER, "From Carla", ["inbox", "deleteditems"])
    graph.add_search_folder(USER, "Weekly digests", ["inbox"], parent=graph.folder_id(USER, "inbox"))
    graph.add_folder(USER, "Clutter", hidden=True)
    mailbox, secret = tenant_mailbox(graph)
    c = build(mailbox, secret, want_snippet=False)
    try:
        # The fake serves the search folder's view as Graph would: the binned message too.
        view = drain(c, Folder(name="x", role="other", remote_id=graph.folder_id(USER, "From Carla")))
        assert sorted(r.subject for b in view for r in b.records) == ["Binned", "Kept"]
        roles = {f.name: f.role for f in c.list_folders()}
    finally:
        c.close()
    assert roles["From Carla"] == "skip" and roles["Inbox/Weekly digests"] == "skip"
    assert "Clutter" not in roles  # hidden folders are not listed unless asked for
    assert [n for n, r in roles.items() if r not in ("skip", "calendar")] == ["Inbox", "Sent Items", "Archive"]


def test_delta_rounds_pages_removals_and_cursor(graph):
    ids = [graph.add_message(USER, subject=f"S{i}", to=[("Alice", USER)], preview=f"preview {i}") for i in range(25)]
    mailbox, secret = tenant_mailbox(graph)
    c = build(mailbox, secret, want_snippet=False)
    try:
        inbox = folder(c, "Inbox")
        batches = drain(c, inbox)
        assert [len(b.records) for b in batches] == [10, 10, 5]
        assert [b.backfill_done for b in batches] == [False, False, True]
        assert "next_link" in batches[0].cursor and batches[0].cursor["next_link"].startswith(graph.url)
        final = batches[-1].cursor
        # the window's start and the server's count of the folder (the reconciliation's side) ride along
        assert set(final) == {"id", "delta_link", "since", "server_count", "counted_at"}
        assert "$deltatoken=" in final["delta_link"] and final["server_count"] == 25
        assert sorted(r.remote_id for b in batches for r in b.records) == sorted(ids)
        assert all(r.snippet is None for b in batches for r in b.records)
        delta_calls = [p for _, p in graph.requests if "/messages/delta" in p and "$select=" in p]
        assert delta_calls and "bodyPreview" not in delta_calls[0] and "internetMessageId" in delta_calls[0]
        assert "$filter" not in delta_calls[0]  # a filtered delta stops at 5,000 messages

        # Next round: one new, one changed, one deleted, one moved to the Archive.
        new = graph.add_message(USER, subject="New one")
        graph.update_message(USER, ids[3], subject="S3 edited")
        graph.delete_message(USER, ids[4])
        graph.move_message(USER, ids[5], "archive")
        again = drain(c, inbox, final)
        assert sorted(r.remote_id for b in again for r in b.records) == sorted([new, ids[3]])
        assert sorted(x for b in again for x in b.removed) == sorted([ids[4], ids[5]])
        assert again[-1].backfill_done and "delta_link" in again[-1].cursor
        archived = drain(c, folder(c, "Archive"))
        assert [r.remote_id for b in archived for r in b.records] == [ids[5]]  # immutable id survives the move

        # Nothing changed: one request, no records.
        before = len(graph.requests)
        quiet = drain(c, inbox, again[-1].cursor)
        assert [len(b.records) for b in quiet] == [0] and len(graph.requests) == before + 1
    finally:
        c.close()


def test_an_item_named_twice_in_a_page_is_what_its_last_entry_says(graph):
    ids = [graph.add_message(USER, subject=f"S{i}") for i in range(3)]
    mailbox, secret = tenant_mailbox(graph)
    c = build(mailbox, secret, want_snippet=False)
    try:
        inbox = folder(c, "Inbox")
        cursor = drain(c, inbox)[-1].cursor
        graph.move_message(USER, ids[0], "archive")  # out and back: its removal, then the message
        graph.move_message(USER, ids[0], "inbox")
        graph.move_message(USER, ids[1], "archive")
        batches = drain(c, inbox, cursor)
    finally:
        c.close()
    assert [r.remote_id for b in batches for r in b.records] == [ids[0]]
    assert [x for b in batches for x in b.removed] == [ids[1]]


def test_resume_from_a_next_link_after_a_crash(graph):
    for i in range(25):
        graph.add_message(USER, subject=f"S{i}")
    mailbox, secret = tenant_mailbox(graph)
    c = build(mailbox, secret, want_snippet=True)
    try:
        inbox = folder(c, "Inbox")
        stream = c.fetch_changes(inbox, {}, LONG_AGO)
        first = next(stream)
        stream.close()  # the run died after committing the first batch
        rest = drain(c, inbox, first.cursor)
        assert [len(b.records) for b in rest] == [10, 5]
        got = {r.remote_id for r in first.records} | {r.remote_id for b in rest for r in b.records}
        assert len(got) == 25
        assert all(r.snippet for b in rest for r in b.records)
    finally:
        c.close()


def test_a_next_link_the_round_has_left_behind_restarts_the_folder(graph):
    """Exchange keeps only the last few generations of a round: an older nextLink answers 410
    SyncStateNotFound. Resuming from one reads the folder again from scratch (reset)."""
    ids = [graph.add_message(USER, subject=f"S{i}") for i in range(50)]
    mailbox, secret = tenant_mailbox(graph)
    c = build(mailbox, secret, want_snippet=False)
    try:
        inbox = folder(c, "Inbox")
        batches = drain(c, inbox)
        assert len(batches) == 5
        again = drain(c, inbox, batches[0].cursor)  # the round has since handed out 4 more pages
    finally:
        c.close()
    assert again[0].reset and not any(b.reset for b in again[1:])
    assert sorted(r.remote_id for b in again for r in b.records) == sorted(ids)


def test_message_fields_and_key_match_imap(graph):
    graph.add_message(
        USER,
        internet_message_id="<CAF=Abc.123+x@mail.gmail.com>",
        subject="Pricing",
        sender=("Carla Buyer", "carla@acme.com"),
        to=[("Alice Rep", USER)],
        cc=[("", "dan@acme.com")],
        sent=datetime(2026, 3, 1, 9, 30, tzinfo=timezone.utc),
        preview="  Hello\r\n  Alice,   the price is ...",
    )
    graph.add_message(USER, subject="Automatic reply: Pricing", sender=("Bob", "bob@acme.com"))
    graph.add_message(USER, internet_message_id="", subject="No id")
    bad = graph.add_message(USER, subject="Broken", extra={"from": None, "sender": None})
    mailbox, secret = tenant_mailbox(graph)
    c = build(mailbox, secret, want_snippet=True)
    try:
        batches = drain(c, folder(c, "Inbox"))
    finally:
        c.close()
    records = {r.subject: r for b in batches for r in b.records}
    bads = [x for b in batches for x in b.bad]
    pricing = records["Pricing"]
    imap_copy = parse_message_headers(
        "1/1",
        b"From: carla@acme.com\r\nDate: Sun, 1 Mar 2026 09:30:00 +0000\r\n"
        b"Message-ID: <CAF=Abc.123+x@mail.gmail.com>\r\n\r\n",
    )
    assert pricing.message_key == imap_copy.message_key == "CAF=Abc.123+x@mail.gmail.com"
    assert pricing.from_ == [("Carla Buyer", "carla@acme.com")] and pricing.to == [("Alice Rep", USER)]
    assert pricing.cc == [("", "dan@acme.com")] and pricing.date == datetime(2026, 3, 1, 9, 30, tzinfo=timezone.utc)
    assert pricing.snippet == "Hello Alice, the price is ..." and not pricing.auto_reply
    assert records["Automatic reply: Pricing"].auto_reply
    assert records["No id"].message_key.startswith("sha256:graph:")
    assert [x.remote_id for x in bads] == [bad] and "sender" in bads[0].reason


def test_meeting_requests_answers_and_cancellations_are_calendar_messages(graph):
    # Graph types them as eventMessage subtypes (@odata.type); a plain eventMessage (a cancellation
    # here) does not say which it is, and reads as a request.
    kinds = {
        "Invitation: Demo": {
            "@odata.type": "#microsoft.graph.eventMessageRequest",
            "meetingMessageType": "meetingRequest",
        },
        "Accepted: Demo": {
            "@odata.type": "#microsoft.graph.eventMessageResponse",
            "meetingMessageType": "meetingAccepted",
        },
        "Declined: Demo": {"@odata.type": "#microsoft.graph.eventMessageResponse"},
        "Canceled: Demo": {"@odata.type": "#microsoft.graph.eventMessage", "meetingMessageType": "meetingCancelled"},
        "Demo notes": {},
    }
    for subject, extra in kinds.items():
        graph.add_message(USER, subject=subject, sender=("Carla Buyer", "carla@acme.com"), extra=extra)
    mailbox, secret = tenant_mailbox(graph)
    c = build(mailbox, secret, want_snippet=False)
    try:
        records = {r.subject: r.invitation for b in drain(c, folder(c, "Inbox")) for r in b.records}
    finally:
        c.close()
    assert records == {
        "Invitation: Demo": "REQUEST",
        "Accepted: Demo": "REPLY",
        "Declined: Demo": "REPLY",
        "Canceled: Demo": "REQUEST",
        "Demo notes": None,
    }


def test_expired_delta_state_restarts_the_folder_with_reset(graph):
    ids = [graph.add_message(USER, subject=f"S{i}") for i in range(12)]
    mailbox, secret = tenant_mailbox(graph)
    c = build(mailbox, secret, want_snippet=False)
    try:
        inbox = folder(c, "Inbox")
        cursor = drain(c, inbox)[-1].cursor
        graph.delete_message(USER, ids[0])
        graph.expire_delta_tokens(USER)  # 410 SyncStateNotFound on the stored deltaLink
        batches = drain(c, inbox, cursor)
    finally:
        c.close()
    assert batches[0].reset and batches[0].records == [] and batches[0].cursor["id"] == cursor["id"]
    assert batches[0].relists_from is None  # a mail folder's re-listing: its invitations' meetings stay anyway
    assert not {"delta_link", "next_link", "server_count"} & set(batches[0].cursor)  # the old count went too
    assert batches[-1].cursor["server_count"] == 11  # counted again at once after the re-read
    assert not any(b.reset for b in batches[1:])
    assert sorted(r.remote_id for b in batches for r in b.records) == sorted(ids[1:])
    assert "delta_link" in batches[-1].cursor and batches[-1].backfill_done
    assert any(p for _, p in graph.requests if "$deltatoken" in p)


def test_expired_state_twice_in_a_row_is_cursor_expired(graph):
    graph.add_message(USER)
    mailbox, secret = tenant_mailbox(graph)
    c = build(mailbox, secret, want_snippet=False)
    try:
        inbox = folder(c, "Inbox")
        graph.inject("/messages/delta", 410, {"error": {"code": "SyncStateNotFound", "message": "gone"}}, times=2)
        with pytest.raises(CursorExpiredError):
            drain(c, inbox)
    finally:
        c.close()


def test_throttling_retry_after_is_honoured(graph):
    graph.add_message(USER)
    mailbox, secret = tenant_mailbox(graph)
    c = build(mailbox, secret, want_snippet=False)
    try:
        inbox = folder(c, "Inbox")
        graph.inject(
            "/messages/delta",
            429,
            {"error": {"code": "ApplicationThrottled", "message": "Application is over its MailboxConcurrency limit."}},
            headers={"Retry-After": "1"},
        )
        graph.inject(
            "/messages/delta",
            503,
            {"error": {"code": "ServiceUnavailable", "message": "busy"}},
            headers={"Retry-After": "1"},
        )
        started = time.monotonic()
        batches = drain(c, inbox)
        assert time.monotonic() - started >= 2.0
        assert c.throttle_waits == [1.0, 1.0] and len(batches[-1].records) == 1
    finally:
        c.close()


def test_persistent_throttling_raises_with_retry_after(graph):
    graph.add_message(USER)
    mailbox, secret = tenant_mailbox(graph)
    c = build(mailbox, secret, want_snippet=False)
    try:
        inbox = folder(c, "Inbox")
        graph.inject(
            "/messages/delta",
            503,
            {"error": {"code": "ServiceUnavailable", "message": "busy"}},
            headers={"Retry-After": "0"},
            times=10,
        )
        with pytest.raises(ThrottledError) as info:
            drain(c, inbox)
        assert c.throttle_waits == [0.0, 0.0, 0.0]
        graph.faults.clear()
        graph.inject(
            "/messages/delta",
            429,
            {"error": {"code": "TooManyRequests", "message": "slow down"}},
            headers={"Retry-After": "120"},
        )
        with pytest.raises(ThrottledError) as info:  # longer than we wait inside a run: hand it to the engine
            drain(c, inbox)
        assert info.value.retry_after == 120 and info.value.kind == "throttled"
    finally:
        c.close()


def test_never_more_than_four_concurrent_requests_per_mailbox(graph):
    for i in range(30):
        graph.add_message(USER, subject=f"S{i}")
    mailbox, secret = tenant_mailbox(graph, page_size=5)
    graph.delay = 0.03
    errors, connectors = [], [build(mailbox, secret, want_snippet=False) for _ in range(5)]

    def run(c):
        try:
            inbox = folder(c, "Inbox")
            drain(c, inbox)
            drain(c, folder(c, CALENDAR_FOLDER))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in connectors]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for c in connectors:
        c.close()
    assert errors == []
    assert 2 <= graph.max_inflight[USER] <= 4  # the fake answers 429 above 4; it never had to
    assert sum(len(c.throttle_waits) for c in connectors) == 0


def test_app_only_expired_access_token_is_renewed_once(graph):
    graph.add_message(USER)
    mailbox, secret = tenant_mailbox(graph)
    c = build(mailbox, secret, want_snippet=False)
    inbox = folder(c, "Inbox")
    c.close()
    graph.expire_access_tokens()  # msal still holds the old token in its cache
    c = build(mailbox, secret, want_snippet=False)
    try:
        assert len(drain(c, inbox)[-1].records) == 1
    finally:
        c.close()
    assert graph.token_requests.count("client_credentials") == 2


def test_wrong_client_secret_is_an_auth_error(graph):
    mailbox, _ = tenant_mailbox(graph)
    graph.mailbox(USER)
    c = build(mailbox, "not-the-secret", want_snippet=False)
    try:
        with pytest.raises(AuthError) as info:
            c.list_folders()
    finally:
        c.close()
    assert "invalid_client" in str(info.value) and info.value.fix == Fix.APP_CREDENTIAL
    assert "add-m365-tenant" in explain_error(info.value, "m365")
    assert "not-the-secret" not in str(info.value)


@pytest.mark.parametrize("message", [POLICY_MESSAGE, POLICY_MESSAGE_RAOP])
def test_application_access_policy_is_a_clear_auth_error(graph, message):
    graph.add_message(USER)
    graph.block_user(USER, message=message)
    mailbox, secret = tenant_mailbox(graph)
    c = build(mailbox, secret, want_snippet=False)
    try:
        with pytest.raises(AuthError) as info:
            c.list_folders()
    finally:
        c.close()
    assert "application access policy" in str(info.value) and USER in str(info.value)
    assert info.value.fix == Fix.ACCESS_POLICY and "ApplicationAccessPolicy" in explain_error(info.value, "m365")


@pytest.mark.parametrize("case", ["denied", "no-mailbox", "token-refused"])
def test_graph_refusals_say_what_to_do(graph, case):
    """Each way Graph refuses a mailbox is an auth error carrying its fix code, so
    the mailbox shows as failed with that fix (the engine explains it in last_error)."""
    graph.add_message(USER)
    user = USER
    if case == "denied":
        graph.inject("/mailFolders", 403, {"error": {"code": "ErrorAccessDenied", "message": "Access is denied."}})
    elif case == "no-mailbox":
        user = "ghost@ourco.com"  # no such user in the tenant: the fake answers 404 ErrorInvalidUser
    else:  # refused even after a fresh token
        graph.inject(
            "/mailFolders",
            401,
            {"error": {"code": "InvalidAuthenticationToken", "message": "Access token validation failure."}},
            times=50,
        )
    mailbox, secret = tenant_mailbox(graph, user=user)
    c = build(mailbox, secret, want_snippet=False)
    try:
        with pytest.raises(AuthError) as info:
            c.list_folders()
    finally:
        c.close()
    fix, expected = {
        "denied": (Fix.CONSENT, "grant the app Mail.Read and Calendars.Read with admin consent"),
        "no-mailbox": (Fix.NO_MAILBOX, "check the rep's address and licence"),
        "token-refused": (Fix.APP_CREDENTIAL, "client secret or certificate"),
    }[case]
    assert info.value.fix == fix
    assert expected.lower() in explain_error(info.value, "m365").lower()


def test_delegated_sign_in_rotation_and_revocation(graph):
    graph.add_message(USER, subject="Mine")
    mailbox, cache = delegated_mailbox(graph)
    c = build(mailbox, cache, want_snippet=False)
    try:
        assert [r.subject for b in drain(c, folder(c, "Inbox")) for r in b.records] == ["Mine"]
        assert any("/v1.0/me/" in p for _, p in graph.requests)
        assert c.updated_secret is None  # the access token in the cache was still good
    finally:
        c.close()
    graph.expire_access_tokens()
    c = build(mailbox, cache, want_snippet=False)
    try:
        c.list_folders()  # 401 -> refresh with the refresh token -> retry
        rotated = c.updated_secret
    finally:
        c.close()
    assert "refresh_token" in graph.token_requests and rotated and rotated != cache
    graph.expire_access_tokens()
    graph.revoke_refresh_tokens(USER)
    c = build(mailbox, rotated, want_snippet=False)
    try:
        with pytest.raises(AuthError) as info:
            c.list_folders()
    finally:
        c.close()
    assert "invalid_grant" in str(info.value) and info.value.fix == Fix.SIGN_IN
    assert "reconnect" in explain_error(info.value, "m365") and "add-m365" in explain_error(info.value, "m365")


def test_malformed_pages_are_bad_data(graph):
    graph.add_message(USER)
    mailbox, secret = tenant_mailbox(graph)
    c = build(mailbox, secret, want_snippet=False)
    try:
        inbox = folder(c, "Inbox")
        graph.inject("/messages/delta", 200, "{not json", times=1)
        with pytest.raises(BadDataError, match="invalid JSON"):
            drain(c, inbox)
        graph.inject("/messages/delta", 200, {"@odata.deltaLink": graph.url + "/x"}, times=1)
        with pytest.raises(BadDataError, match="value"):
            drain(c, inbox)
        graph.inject("/messages/delta", 200, {"value": []}, times=1)
        with pytest.raises(BadDataError, match="nextLink"):
            drain(c, inbox)
        assert len(drain(c, inbox)[-1].records) == 1  # the folder recovers on the next try
    finally:
        c.close()


def test_calendar_events_become_meetings(graph):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    carla = ("Carla Buyer", "carla@acme.com", "required", "accepted")
    dan = ("Dan", "dan@acme.com", "optional", "tentativelyAccepted")
    room = ("Room 1", "room1@ourco.com", "resource", "accepted")
    eve = ("Eve", "eve@acme.com", "required", "notResponded")
    local_start = now + timedelta(days=3)
    single = graph.add_event(
        USER,
        subject="Demo",
        start=local_start,
        time_zone="Pacific Standard Time",
        attendees=[carla, dan, room, eve],
        location="Zoom",
        ical_uid="UID-SINGLE",
    )
    cancelled = graph.add_event(
        USER,
        subject="Cancelled",
        start=now + timedelta(days=4),
        time_zone="Europe/Berlin",
        attendees=[carla],
        cancelled=True,
    )
    graph.add_event(USER, subject="Focus time", start=now + timedelta(days=1))  # nobody else: not a meeting
    offsite_day = datetime(now.year, now.month, now.day, tzinfo=timezone.utc) + timedelta(days=6)
    offsite = graph.add_event(
        USER, subject="Offsite", start=offsite_day, all_day=True, time_zone="W. Europe Standard Time", attendees=[carla]
    )
    graph.add_event(USER, subject="Too old", start=now - timedelta(days=90), attendees=[carla])
    starts = [now + timedelta(days=d) for d in (1, 8, 15)]
    master, occ = graph.add_series(
        USER,
        subject="Weekly",
        starts=starts,
        ical_uid="UID-SERIES",
        exceptions={1: starts[1] + timedelta(hours=2)},
        attendees=[carla],
    )
    mailbox, secret = tenant_mailbox(graph)
    c = build(mailbox, secret, want_snippet=False)
    try:
        cal = folder(c, CALENDAR_FOLDER)
        assert cal.role == "calendar"
        batches = drain(c, cal)
        meetings = {r.remote_id: r for b in batches for r in b.records}
        assert all(isinstance(r, MeetingRecord) for r in meetings.values())
        assert set(meetings) == {single, cancelled, offsite, *occ}
        # All-day: the date at midnight UTC (as connectors.ical reads VALUE=DATE), whatever the zone.
        assert (meetings[offsite].start, meetings[offsite].end) == (offsite_day, offsite_day + timedelta(days=1))
        demo = meetings[single]
        assert demo.uid == "UID-SINGLE" and demo.recurrence_id is None and demo.location == "Zoom"
        assert demo.start == local_start and demo.end == local_start + timedelta(minutes=30)
        assert demo.start.tzinfo is not None and demo.start.utcoffset() == timedelta(0)
        assert [(a.address, a.role, a.response) for a in demo.attendees] == [
            ("carla@acme.com", "attendee", "accepted"),
            ("dan@acme.com", "optional", "tentative"),
            ("eve@acme.com", "attendee", "needs-action"),
        ]
        assert demo.organizer.address == USER and demo.organizer.role == "organizer"
        assert meetings[cancelled].status == "cancelled" and meetings[cancelled].start == now + timedelta(days=4)
        series = [meetings[i] for i in occ]
        assert {m.uid for m in series} == {"UID-SERIES"}  # not each occurrence's own iCalUId
        assert [m.recurrence_id for m in series] == [s.strftime("%Y-%m-%dT%H:%M:%SZ") for s in starts]
        assert series[1].start == starts[1] + timedelta(hours=2)  # the moved exception keeps its original key
        assert (
            meeting_key(series[0].uid, series[0].recurrence_id)
            == f"ical:UID-SERIES/{starts[0].strftime('%Y-%m-%dT%H:%M:%SZ')}"
        )
        assert sum(1 for _, p in graph.requests if f"/events/{master}" in p) == 1
        assert graph.mutable_id_reads == []  # the series was read by the immutable id the delta gave

        # Next round: an occurrence deleted, an event loses its attendees, one new.
        graph.delete_event(USER, occ[2])
        graph.update_event(USER, cancelled, attendees=[])
        new = graph.add_event(USER, subject="New", start=now + timedelta(days=5), attendees=[dan])
        again = drain(c, cal, batches[-1].cursor)
        assert [r.remote_id for b in again for r in b.records] == [new]
        assert sorted(x for b in again for x in b.removed) == sorted([occ[2], cancelled])
        assert sum(1 for _, p in graph.requests if f"/events/{master}" in p) == 1  # master uid kept in the cursor
    finally:
        c.close()


def test_first_round_reads_past_5000_messages_and_applies_the_window_itself(graph):
    now = datetime.now(timezone.utc)
    recent = [
        graph.add_message(USER, subject=f"R{i}", to=[("Alice", USER)], received=now - timedelta(days=1))
        for i in range(5050)
    ]
    graph.add_message(
        USER,
        subject="Too old",
        to=[("Alice", USER)],
        received=now - timedelta(days=400),
        sent=now - timedelta(days=400),
    )
    graph.add_message(USER, subject="Unsent", to=[("Bo", "bo@prospect.com")], extra={"isDraft": True})
    mailbox, secret = tenant_mailbox(graph, page_size=1000)
    c = build(mailbox, secret, want_snippet=False)
    try:
        first = list(c.fetch_changes(folder(c, "Inbox"), {}, now - timedelta(days=365)))
        assert sorted(r.remote_id for b in first for r in b.records) == sorted(recent)
        # Mail older than the window that is moved into the folder later is new to it: it is read.
        old = graph.add_message(
            USER,
            subject="Old, moved in",
            to=[("Alice", USER)],
            received=now - timedelta(days=500),
            sent=now - timedelta(days=500),
        )
        later = list(c.fetch_changes(folder(c, "Inbox"), first[-1].cursor, now - timedelta(days=365)))
        assert [r.remote_id for b in later for r in b.records] == [old]
    finally:
        c.close()


def test_exchange_imap_with_xoauth2(graph):
    imap = FakeOAuthImap(graph).start()
    try:
        mailbox, cache = delegated_mailbox(
            graph, imap=True, protocol="imap", host=imap.host, port=imap.port, security="none", username=USER
        )
        c = build(mailbox, cache, want_snippet=False)
        try:
            roles = {f.name: f.role for f in c.list_folders()}
        finally:
            c.close()
        assert roles == {"INBOX": "inbox", "Sent Items": "sent", "Junk Email": "skip"}
        assert imap.logins == [USER]
        graph.expire_access_tokens()
        graph.revoke_refresh_tokens(USER)
        c = build(mailbox, cache, want_snippet=False)
        try:
            with pytest.raises(AuthError) as info:
                c.list_folders()
        finally:
            c.close()
        assert info.value.fix in (Fix.IMAP_SIGN_IN, Fix.SIGN_IN)
        assert "reconnect" in explain_error(info.value, "m365")
        assert imap.failures >= 1
    finally:
        imap.stop()


def test_certificate_credential(graph):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    thumbprint = "1F" * 20
    client_id, _ = graph.register_app(thumbprint=thumbprint, public_key_pem=public)
    graph.add_message(USER, subject="By certificate")
    import json as _json

    mailbox = ConnectorSpec(
        "m365",
        {"user": USER},
        mailbox_id=3,
        owner=USER,
        window=CalendarWindow(1, 1),
        tenant=TenantSpec(
            graph.tenant, client_id, "certificate", {"authority": graph.authority, "graph_url": graph.graph_url}
        ),
    )
    c = build(mailbox, _json.dumps({"private_key": private, "thumbprint": thumbprint}), want_snippet=False)
    try:
        assert [r.subject for b in drain(c, folder(c, "Inbox")) for r in b.records] == ["By certificate"]
    finally:
        c.close()
    other = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    c = build(mailbox, _json.dumps({"private_key": other, "thumbprint": thumbprint}), want_snippet=False)
    try:
        with pytest.raises(AuthError, match="invalid_client"):
            c.list_folders()
    finally:
        c.close()


def test_calendar_reads_the_same_default_window_as_caldav_365_days_back(graph):
    now = datetime.now(timezone.utc)
    carla = ("Carla", "carla@acme.com", "required", "accepted")
    kept = graph.add_event(USER, subject="Last autumn", start=now - timedelta(days=200), attendees=[carla])
    graph.add_event(USER, subject="Too old", start=now - timedelta(days=400), attendees=[carla])
    mailbox, secret = tenant_mailbox(graph)
    unset = ConnectorSpec("m365", mailbox.config, owner=USER, tenant=mailbox.tenant)  # no window given
    assert unset.window == CalendarWindow(past_days=365, future_days=180)
    c = build(unset, secret, want_snippet=False)
    try:
        assert [r.remote_id for b in drain(c, folder(c, CALENDAR_FOLDER)) for r in b.records] == [kept]
    finally:
        c.close()


def test_calendar_window_slides_with_a_fresh_round(graph):
    now = datetime.now(timezone.utc)
    graph.add_event(
        USER,
        subject="Soon",
        start=now + timedelta(days=2),
        attendees=[("Carla", "carla@acme.com", "required", "accepted")],
    )
    mailbox, secret = tenant_mailbox(graph)
    c = build(mailbox, secret, want_snippet=False)
    try:
        cal = folder(c, CALENDAR_FOLDER)
        cursor = drain(c, cal)[-1].cursor
        assert drain(c, cal, cursor)[-1].records == []  # same window: only changes
        old = dict(cursor, window=["2020-01-01T00:00:00Z", "2020-09-01T00:00:00Z"])
        again = drain(c, cal, old)  # a stale window: listed afresh over today's window
        assert [r.subject for b in again for r in b.records] == ["Soon"] and not any(b.reset for b in again)
        assert again[-1].cursor["window"] == cursor["window"]
    finally:
        c.close()


def test_a_window_slide_first_finishes_the_old_round_so_a_meeting_deleted_meanwhile_leaves(graph):
    """The fresh round over the new window just does not list a meeting deleted since the last
    round: only the old round's delta tells, so it is read to its end first."""
    now = datetime.now(timezone.utc)
    carla = [("Carla", "carla@acme.com", "required", "accepted")]
    graph.add_event(USER, subject="Soon", start=now + timedelta(days=2), attendees=carla)
    gone = graph.add_event(USER, subject="Dropped", start=now + timedelta(days=3), attendees=carla)
    mailbox, secret = tenant_mailbox(graph)
    c = build(mailbox, secret, want_snippet=False)
    try:
        cal = folder(c, CALENDAR_FOLDER)
        cursor = drain(c, cal)[-1].cursor
        graph.delete_event(USER, gone)
        slid = dict(cursor, window=["2020-01-01T00:00:00Z", "2020-09-01T00:00:00Z"])
        again = drain(c, cal, slid)
        assert gone in [x for b in again for x in b.removed] and not any(b.reset for b in again)
        assert [b.backfill_done for b in again] == [False] * (len(again) - 1) + [True]
        assert [r.subject for b in again for r in b.records] == ["Soon"]
        assert again[-1].cursor["window"] == cursor["window"]
        # The old state expired meanwhile (a mailbox failing for weeks): the listing is a re-listing.
        graph.expire_delta_tokens(USER)
        expired = drain(c, cal, dict(again[-1].cursor, window=slid["window"]))
        assert expired[0].reset and not any(b.reset for b in expired[1:])
        # the re-listing covers the new window: what is behind it stays as history (the engine)
        assert expired[0].relists_from == datetime.fromisoformat(cursor["window"][0].replace("Z", "+00:00"))
        assert expired[-1].backfill_done and expired[-1].relists_from == expired[0].relists_from  # and its end
        assert [r.subject for b in expired for r in b.records] == ["Soon"]
    finally:
        c.close()


def test_national_clouds_ask_for_their_own_graph():
    from connectors.m365auth import graph_scopes

    assert graph_scopes(None, delegated=False) == ["https://graph.microsoft.com/.default"]
    assert graph_scopes("https://graph.microsoft.us/v1.0", delegated=False) == ["https://graph.microsoft.us/.default"]
    assert graph_scopes("https://microsoftgraph.chinacloudapi.cn/v1.0", delegated=True) == [
        "https://microsoftgraph.chinacloudapi.cn/Mail.Read",
        "https://microsoftgraph.chinacloudapi.cn/Calendars.Read",
    ]
    assert graph_scopes("https://127.0.0.1:8443/v1.0", delegated=False) == ["https://graph.microsoft.com/.default"]
    mailbox = ConnectorSpec(
        "m365",
        {"user": USER},
        mailbox_id=1,
        owner=USER,
        tenant=TenantSpec(
            "t",
            "c",
            "secret",
            {"graph_url": "https://graph.microsoft.us/v1.0", "authority": "https://login.microsoftonline.us/t"},
        ),
    )
    c = build(mailbox, "secret", want_snippet=False)
    try:
        assert c.tokens.scopes == ["https://graph.microsoft.us/.default"]
    finally:
        c.close()


def test_recurring_all_day_exception_in_a_zone_outside_the_short_table():
    from connectors.graph import _first_zone, zone

    assert str(zone("SE Asia Standard Time")) == "Asia/Bangkok"
    assert str(zone("W. Australia Standard Time")) == "Australia/Perth"
    assert str(_first_zone("tzone://Microsoft/Custom", "Pacific Standard Time")) == "America/Los_Angeles"


def test_recipients_beyond_the_kept_500_of_a_list_are_counted(graph):
    crowd = [(f"Person {i}", f"p{i}@crowd.example") for i in range(1_200)]
    others = [(f"Guest {i}", f"g{i}@crowd.example") for i in range(501)]
    # Bcc: 501 others, and the first 100 of the Cc again (counted once).
    graph.add_message(USER, subject="all hands", to=[("Alice", USER)], cc=crowd, bcc=crowd[:100] + others)
    mailbox, secret = tenant_mailbox(graph)
    c = build(mailbox, secret, want_snippet=False)
    try:
        (record,) = [r for b in drain(c, folder(c, "Inbox")) for r in b.records]
    finally:
        c.close()
    assert len(record.cc) == 500 and len(record.bcc) == 500 and len(record.to) == 1
    assert record.recipients_not_kept == 700 + 101  # the Cc past 500, and the others the Bcc could not keep


def test_a_wider_backfill_window_lists_the_older_mail_by_date_and_resumes_at_its_next_page(graph):
    now = datetime.now(timezone.utc)
    for days in (2, 50, 60, 400):
        graph.add_message(USER, subject=f"{days} days", received=now - timedelta(days=days))
    for n in "abc":  # three received at one instant, across a page's end
        graph.add_message(USER, subject=f"70 days {n}", received=(now - timedelta(days=70)).replace(microsecond=0))
    mailbox, secret = tenant_mailbox(graph, page_size=2)
    c = build(mailbox, secret, want_snippet=False)
    try:
        inbox = folder(c, "Inbox")
        cursor = list(c.fetch_changes(inbox, {}, now - timedelta(days=30)))[-1].cursor
        wider = now - timedelta(days=365)
        first = next(iter(c.fetch_changes(inbox, cursor, wider)))  # the run stops after one page
    finally:
        c.close()
    assert [r.subject for r in first.records] == ["50 days", "60 days"]  # newest first
    assert first.cursor["widen_upper"] and first.cursor["delta_link"] == cursor["delta_link"]
    graph.delete_message(USER, first.records[0].remote_id)  # a position-counting nextLink would now skip one
    c = build(mailbox, secret, want_snippet=False)
    try:
        rest = list(c.fetch_changes(folder(c, "Inbox"), first.cursor, wider))
    finally:
        c.close()
    read = sorted(r.subject for b in [first, *rest] for r in b.records)
    assert read == ["50 days", "60 days", "70 days a", "70 days b", "70 days c"]  # each once
    done = rest[-1].cursor
    assert done["server_count"] == 5 and done["since"] == utc_stamp(wider) and "widen_to" not in done
