"""Found by the hostile corpus: a NUL can survive parsing (an encoded-word such as
=?utf-8?q?=00?=, a body's first bytes) and PostgreSQL refuses NUL in text, which
failed the whole folder. Stored without the NULs, alike on both databases."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from app.db import write_transaction
from connectors.mailparse import parse_message_headers
from sync.engine import org_context
from sync.ingest import MailboxContext, ingest
from tests.world import make_world

RAW = (
    b"From: =?utf-8?q?Ev=00il?= <evil@cust.example>\r\nTo: alice@ourco.com\r\n"
    b"Subject: =?utf-8?q?a=00b?=\r\nMessage-ID: <nul@cust.example>\r\nDate: Tue, 04 Mar 2025 14:02:11 +0000\r\n\r\n"
)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_nul_characters_left_by_decoding_are_dropped_before_storing_not_a_failed_folder(tmp_path, request, database):
    world = make_world(
        tmp_path, url=request.getfixturevalue("postgres_migrated_url") if database == "postgresql" else None
    )
    record = parse_message_headers("1/1", RAW, datetime(2026, 1, 1, tzinfo=timezone.utc), b"Hi\x00 there\r\n")
    assert "\x00" in record.subject and "\x00" in record.from_[0][0]  # what the parser hands on
    uid = world.scalar("SELECT id FROM app_user WHERE email = 'alice@ourco.com'")
    with write_transaction(world.rt.engine) as conn:
        result = ingest(
            conn,
            org_context(conn, world.org_id, world.rt.box),
            MailboxContext(None, None, uid, "alice@ourco.com"),
            [record],
        )
    assert result.imported == 1
    assert world.sql("SELECT subject, snippet FROM interaction") == [("ab", "Hi there")]
    assert world.sql("SELECT name FROM participant WHERE address = 'evil@cust.example'") == [("Evil",)]


def test_a_nul_in_a_field_name_reads_the_same_whether_dovecot_sends_it_as_0x80_or_drops_it(imap_user):
    """Found by the hostile corpus cut every K bytes: "From<NUL...>: Mei" came back from
    Dovecot's first FETCH as "From\\x80...:", from its cache later as "From:", so the same
    message was unreadable in one import and stored in the other."""
    from connectors.mailparse import header_fields

    raw = b"From\x00\x00\x00: Mei <mei@harbor.example>\r\nTo: alice@ourco.com\r\nSubject: hi\r\n\r\nbody\r\n"
    imap_user.deliver(raw)
    client = imap_user.connect()
    client.select_folder("INBOX", readonly=True)
    answers = []
    for _ in range(2):  # parsed by Dovecot, then from its cache
        data = client.fetch([1], ["BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT)]"])[1]
        answers.append(next(v for k, v in data.items() if k.startswith(b"BODY")))
    client.logout()
    assert answers[0] != answers[1]  # what the server does: the test would not need the fix otherwise
    fields = [header_fields(answer) for answer in answers]
    assert fields[0] == fields[1] and fields[0]["from"] == "Mei <mei@harbor.example>", fields


def test_nul_characters_from_microsoft_graph_mail_and_meetings_are_dropped_on_postgresql(
    tmp_path, postgres_migrated_url, graph
):
    """JSON carries \\u0000 as easily as a header does: mail and meetings alike."""
    from datetime import timedelta

    from tests.sync.test_graph_sync import ALICE, add_tenant_mailbox
    from tests.world import NOW

    world = make_world(tmp_path, url=postgres_migrated_url)
    mid = add_tenant_mailbox(world, graph)
    graph.add_message(
        ALICE,
        internet_message_id="<g-n\x00ul@cust.example>",
        subject="a\x00b",
        sender=("Ev\x00il", "evil@cust.example"),
        to=[("Alice", ALICE)],
        preview="Hi\x00 there",
    )
    graph.add_event(
        ALICE,
        subject="Me\x00et",
        start=NOW + timedelta(days=1),
        organizer=("Alice Rep", ALICE),
        attendees=[("Ev\x00il", "evil@cust.example", "required", "accepted")],
        location="Ro\x00om",
        ical_uid="UID-NUL",
    )

    report = world.sync(mid)

    assert report.ok and not report.folders_failed, report
    assert sorted(world.sql("SELECT message_key, subject, location FROM interaction")) == [
        ("g-nul@cust.example", "ab", None),
        ("ical:UID-NUL", "Meet", "Room"),
    ]
    assert {n for (n,) in world.sql("SELECT name FROM participant WHERE address = 'evil@cust.example'")} == {"Evil"}
