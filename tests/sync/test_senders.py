"""Mail that claims a colleague as its sender counts as theirs only when something
vouches for it (sync/senders.py): their own Sent folder, no SMTP hop at all, the
organisation's own server's Authentication-Results, or Exchange's word. Otherwise
it is received mail from an unverified sender. Real Dovecot mailboxes (and the
fake Graph for Microsoft 365)."""

from __future__ import annotations

import dataclasses
import pickle
from datetime import datetime, timedelta, timezone

import pytest

from app.db import read_only
from app.services import timeline
from connectors.base import MessageRecord
from sync import pipeline, reportsums
from tests.sync.test_graph_sync import add_tenant_mailbox
from tests.sync.test_stats import _recounted, _tables, db_url  # noqa: F401 - the fixture: SQLite and PostgreSQL
from tests.world import NOW, make_world, message, migrated_database

RECEIVED = (
    "Received: from mail.evil-corp.example (mail.evil-corp.example [203.0.113.7])\r\n"
    "\tby mx.ourco.com (Postfix) with ESMTPS id 4QxYz1;\r\n\tTue, 1 Dec 2026 09:59:58 +0000"
)
INTERNAL_HOP = (
    "Received: from laptop.ourco.com (laptop.ourco.com [10.0.0.8])\r\n"
    "\tby mx.ourco.com (Postfix) with ESMTPSA id 4QxYz2;\r\n\tTue, 1 Dec 2026 09:59:58 +0000"
)
DMARC_FAIL = "Authentication-Results: mx.ourco.com;\r\n\tdmarc=fail (p=none dis=none) header.from=ourco.com"
DAY = timedelta(days=1)


def stamped(*results: str, hop: str = RECEIVED) -> str:
    """Header lines as a receiving server leaves them: its results on top, then its Received."""
    return "\r\n".join([*(f"Authentication-Results: {r}" for r in results), hop])


def interactions(world) -> dict[str, tuple]:
    return {
        r[0]: tuple(r[1:])
        for r in world.sql("SELECT message_key, direction, unverified_sender, from_address FROM interaction")
    }


def from_row(world, key: str) -> tuple:
    return tuple(
        world.sql(
            "SELECT p.address, p.name, u.email FROM participant p JOIN interaction i "
            "ON i.id = p.interaction_id LEFT JOIN app_user u ON u.id = p.user_id "
            "WHERE i.message_key = :k AND p.role = 'from'",
            k=key,
        )[0]
    )


def with_sent_folder(factory):
    user = factory()
    user.create_folder("Sent")
    return user


def test_a_forged_colleague_in_someone_elses_inbox_is_received_mail_from_an_unverified_sender(
    tmp_path, imap_user_factory, db_url
):
    w = make_world(tmp_path, url=db_url)
    w.set_org(contact_policy="sent")
    alice = with_sent_folder(imap_user_factory)
    alice.deliver(
        message(
            "Alice Rep <alice@ourco.com>",
            "Known Person <known@partner.example>",
            "Intro",
            msgid="intro@ourco.com",
            when=NOW - 3 * DAY,
        ),
        folder="Sent",
    )
    alice.deliver(
        message(
            "Bob Rep <bob@ourco.com>",
            "alice@ourco.com",
            "Urgent: new bank details",
            msgid="forged1@evil-corp.example",
            when=NOW - DAY,
            cc="Trusted Partner <buyer@evil-corp.example>, Known Person <known@partner.example>",
            extra=f"{DMARC_FAIL}\r\n{RECEIVED}",
        )
    )
    alice.deliver(
        message(
            "IT Admin <admin@ourco.com>",
            "alice@ourco.com",
            "Password expiry",
            msgid="forged2@evil-corp.example",
            when=NOW - DAY,
            cc="helpdesk@evil-corp.example",
            extra=f"{DMARC_FAIL}\r\n{RECEIVED}",
        )
    )
    assert w.sync(w.add_imap("alice@ourco.com", alice)).ok

    got = interactions(w)
    assert got["forged1@evil-corp.example"] == ("in", True, "bob@ourco.com")
    assert got["forged2@evil-corp.example"] == ("in", True, "admin@ourco.com")
    assert got["intro@ourco.com"] == ("out", False, "alice@ourco.com")
    # Shown as claimed, credited to nobody.
    assert from_row(w, "forged1@evil-corp.example") == ("bob@ourco.com", "Bob Rep", None)
    assert from_row(w, "forged2@evil-corp.example") == ("admin@ourco.com", "IT Admin", None)
    # Policy "sent": only people the organisation wrote to become contacts, not the forger's Cc.
    assert w.sql("SELECT primary_email, name FROM contact") == [("known@partner.example", "Known Person")]
    kept = _tables(w)
    assert [r[:3] for r in kept["stats"]] == [("known@partner.example", 1, 1)]  # in: the forgery; out: the intro
    assert [r[:3] for r in kept["colleagues"]] == [("known@partner.example", "alice@ourco.com", 2)]
    assert _recounted(w) == kept
    with read_only(w.rt.engine) as conn:
        card = timeline.lookup(conn, w.org_id, "known@partner.example")
    forged = next(i for i in card["timeline"]["items"] if i["subject"] == "Urgent: new bank details")
    assert forged["direction"] == "in" and forged["unverified_sender"] is True
    assert forged["sender"] == {"address": "bob@ourco.com", "name": "Bob Rep"}
    assert [k["address"] for k in forged["colleagues"]] == ["alice@ourco.com"]
    assert [c["email"] for c in card["summary"]["colleagues"]] == ["alice@ourco.com"]


def test_a_colleagues_mail_counts_once_as_their_sent_mail_when_their_sent_folder_has_it(
    tmp_path, imap_user_factory, request, db_url
):
    worlds = {}
    for run in ("inbox copy first", "sent copy first"):
        url = migrated_database(request.getfixturevalue("postgres")) if db_url else None
        w = make_world(tmp_path / run.replace(" ", "-"), url=url)
        w.set_org(contact_policy="sent")
        alice, bob = imap_user_factory(), with_sent_folder(imap_user_factory)
        shared = dict(
            frm="Bob Rep <bob@ourco.com>",
            to="alice@ourco.com",
            subject="Quote for Acme",
            msgid="q1@ourco.com",
            when=NOW - DAY,
            cc="Carla Buyer <carla@acme.com>",
        )
        # Internal mail through the organisation's relay, which stamps no results: unverified in Alice's inbox.
        alice.deliver(message(**shared, extra=INTERNAL_HOP))
        bob.deliver(message(**shared), folder="Sent")
        boxes = {"alice": w.add_imap("alice@ourco.com", alice), "bob": w.add_imap("bob@ourco.com", bob)}
        first, second = ("alice", "bob") if run == "inbox copy first" else ("bob", "alice")
        assert w.sync(boxes[first]).ok
        expected_first = ("in", True, "bob@ourco.com") if first == "alice" else ("out", False, "bob@ourco.com")
        assert interactions(w)["q1@ourco.com"] == expected_first
        assert w.sql("SELECT primary_email FROM contact") == ([] if first == "alice" else [("carla@acme.com",)])
        assert w.sync(boxes[second]).ok
        assert interactions(w) == {"q1@ourco.com": ("out", False, "bob@ourco.com")}
        assert from_row(w, "q1@ourco.com") == ("bob@ourco.com", "Bob Rep", "bob@ourco.com")
        assert w.scalar("SELECT COUNT(*) FROM interactionsource") == 2
        assert w.sql("SELECT primary_email, name FROM contact") == [("carla@acme.com", "Carla Buyer")]
        kept = _tables(w)
        assert [r[:3] for r in kept["stats"]] == [("carla@acme.com", 0, 1)]
        assert [r[:3] for r in kept["colleagues"]] == [
            ("carla@acme.com", "alice@ourco.com", 1),
            ("carla@acme.com", "bob@ourco.com", 1),
        ]
        assert _recounted(w) == kept
        with read_only(w.rt.engine) as conn:  # the reports' summaries follow the vouching too
            assert reportsums.check(conn, w.org_id) == []
            days = reportsums.kept(conn, w.org_id)[0]
        assert [v[0] for v in days.values()] == [1]  # one email sent, Bob's, whichever copy came first
        snap = w.snapshot()
        snap["sources"] = [s[:3] for s in snap["sources"]]  # UIDVALIDITY differs between the two Dovecot users
        worlds[run] = (snap, kept)
    assert worlds["inbox copy first"] == worlds["sent copy first"]


def test_the_organisations_own_server_vouches_for_a_colleague_with_a_passing_result(tmp_path, imap_user):
    w = make_world(tmp_path)
    imap_user.deliver(
        message(
            "Bob Rep <bob@ourco.com>",
            "alice@ourco.com",
            "Team update",
            msgid="ok1@ourco.com",
            cc="carla@acme.com",
            extra=stamped(
                "mx.ourco.com; dkim=pass header.d=ourco.com header.s=s1; spf=pass "
                "smtp.mailfrom=bob@ourco.com; dmarc=pass (p=reject) header.from=ourco.com"
            ),
        )
    )
    imap_user.deliver(
        message(
            "Bob Rep <bob@ourco.com>",
            "alice@ourco.com",
            "Second",
            msgid="ok2@ourco.com",
            cc="carla@acme.com",
            extra=stamped(
                "relay.eu.ourco.com 1; spf=pass (relay.eu.ourco.com: 10.0.0.8 is allowed) "
                "smtp.mailfrom=bob@eu.ourco.com"
            ),
        )
    )
    assert w.sync(w.add_imap("alice@ourco.com", imap_user)).ok
    assert interactions(w) == {
        "ok1@ourco.com": ("out", False, "bob@ourco.com"),
        "ok2@ourco.com": ("out", False, "bob@ourco.com"),
    }
    assert from_row(w, "ok1@ourco.com") == ("bob@ourco.com", "Bob Rep", "bob@ourco.com")


def test_authentication_results_a_forger_could_write_vouch_for_nothing(tmp_path, imap_user):
    w = make_world(tmp_path)
    forgeries = {
        # the server's own verdict on top; a copy the forger wrote underneath
        "below@x": stamped(
            "mx.ourco.com; dmarc=fail header.from=ourco.com",
            "mx.ourco.com; dkim=pass header.d=ourco.com; dmarc=pass header.from=ourco.com",
        ),
        "foreign-server@x": stamped("mx.evil-corp.example; dmarc=pass header.from=ourco.com"),
        "lookalike-server@x": stamped("mx.ourco.com.evil-corp.example; dmarc=pass header.from=ourco.com"),
        "other-domain@x": stamped(
            "mx.ourco.com; dkim=pass header.d=evil-corp.example; spf=pass smtp.mailfrom=bounce@evil-corp.example"
        ),
        "no-authserv-id@x": stamped(
            "spf=pass (sender IP is 203.0.113.7) smtp.mailfrom=ourco.com; dmarc=pass action=none header.from=ourco.com"
        ),
        "exchange-header-over-imap@x": "X-MS-Exchange-Organization-AuthAs: Internal\r\n" + RECEIVED,
    }
    for key, extra in forgeries.items():
        imap_user.deliver(
            message(
                "Bob Rep <bob@ourco.com>", "alice@ourco.com", key, msgid=key, cc="buyer@evil-corp.example", extra=extra
            )
        )
    assert w.sync(w.add_imap("alice@ourco.com", imap_user)).ok
    assert interactions(w) == {key: ("in", True, "bob@ourco.com") for key in forgeries}


def test_the_owners_own_address_needs_proof_in_their_inbox_but_not_in_copies_their_client_placed(tmp_path, imap_user):
    w = make_world(tmp_path)
    imap_user.create_folder("Projects")
    imap_user.deliver(
        message(
            "Alice Rep <alice@ourco.com>",
            "alice@ourco.com",
            "Invoice attached",
            msgid="self@evil-corp.example",
            cc="billing@evil-corp.example",
            extra=RECEIVED,
        )
    )
    # A sent message the rep filed away: no Received field, their client put it there.
    imap_user.deliver(
        message("Alice Rep <alice@ourco.com>", "carla@acme.com", "Filed", msgid="filed@ourco.com"), folder="Projects"
    )
    assert w.sync(w.add_imap("alice@ourco.com", imap_user)).ok
    assert interactions(w) == {
        "self@evil-corp.example": ("in", True, "alice@ourco.com"),
        "filed@ourco.com": ("out", False, "alice@ourco.com"),
    }


def test_mail_claiming_a_colleague_in_microsoft_365_counts_as_theirs_only_when_exchange_says_internal(world_365, graph):
    w, mid = world_365
    bob, carla = ("Bob Rep", "bob@ourco.com"), ("Carla Buyer", "carla@acme.com")
    alice = [("Alice Rep", "alice@ourco.com")]
    hop = ("Received", "from AM0PR01MB1234.eurprd01.prod.outlook.com (2603:10a6::1) by AM0PR01MB5678 with HTTPS")
    graph.add_message(
        "alice@ourco.com",
        internet_message_id="<internal@ourco.com>",
        subject="Internal",
        sender=bob,
        to=alice,
        cc=[carla],
        headers=[hop, ("X-MS-Exchange-Organization-AuthAs", "Internal")],
    )
    graph.add_message(
        "alice@ourco.com",
        internet_message_id="<spoof@evil-corp.example>",
        subject="Spoofed",
        sender=bob,
        to=alice,
        cc=[carla],
        headers=[
            (
                "Authentication-Results",
                "spf=fail (sender IP is 203.0.113.7) smtp.mailfrom=ourco.com; "
                "dmarc=fail action=none header.from=ourco.com",
            ),
            hop,
            ("X-MS-Exchange-Organization-AuthAs", "Anonymous"),
        ],
    )
    graph.add_message(
        "alice@ourco.com", internet_message_id="<customer@acme.com>", subject="From Carla", sender=carla, to=alice
    )
    graph.add_message(
        "alice@ourco.com",
        "sentitems",
        internet_message_id="<mine@ourco.com>",
        subject="Mine",
        sender=alice[0],
        to=[carla],
    )
    graph.add_message(
        "alice@ourco.com", internet_message_id="<colleagues-only@ourco.com>", subject="Lunch?", sender=bob, to=alice
    )
    graph.requests.clear()
    assert w.sync(mid).ok
    got = interactions(w)
    assert got["internal@ourco.com"] == ("out", False, "bob@ourco.com")
    assert got["spoof@evil-corp.example"] == ("in", True, "bob@ourco.com")
    assert got["customer@acme.com"][:2] == ("in", False) and got["mine@ourco.com"][:2] == ("out", False)
    # Headers are read only for mail claiming a colleague and written to someone outside.
    asked = [path for method, path in graph.requests if "internetMessageHeaders" in path]
    assert len(asked) == 2, asked
    # by the ids the delta gave, which stay only for requests that ask for immutable ids
    assert graph.mutable_id_reads == []


@pytest.fixture
def world_365(tmp_path, graph):
    w = make_world(tmp_path)
    return w, add_tenant_mailbox(w, graph)


def test_a_record_crosses_the_fetch_child_pipe_with_every_field():
    record = MessageRecord(
        remote_id="7/1",
        message_key="k@x",
        date=datetime(2026, 12, 1, tzinfo=timezone.utc),
        from_=[("Bob", "bob@ourco.com")],
        to=[("", "a@ourco.com")],
        cc=[("", "c@acme.com")],
        bcc=[("", "d@x.io")],
        subject="s",
        in_reply_to="r@x",
        references=["r@x"],
        bulk=True,
        auto_reply=True,
        snippet="hi",
        bulk_signals=("list-id",),
        list_id="l.x",
        reply_to=[("", "e@x.io")],
        relayed=True,
        auth_results=("mx.ourco.com; dmarc=pass header.from=ourco.com",),
        internal_submission=True,
    )
    assert {f.name for f in dataclasses.fields(MessageRecord)} == set(dataclasses.asdict(record))
    copy = pickle.loads(pipeline._dumps(record))
    assert dataclasses.asdict(copy) == dataclasses.asdict(record)
