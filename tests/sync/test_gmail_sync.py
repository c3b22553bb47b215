"""Gmail mailboxes end to end: a Google Workspace added through the services, reps'
Gmail synced over IMAP with XOAUTH2 (a Dovecot shaped like Gmail, tokens from the
fake Google) into a real database."""

from __future__ import annotations

import json

import pytest

from app.services import google as google_service
from app.services.actor import Actor
from app.services.mailboxes import fix_for
from connectors.googleauth import MAIL_SCOPE, SCOPES
from tests.sync.test_gcal_sync import connect
from tests.world import make_world, message

ALICE, BOB = "alice@ourco.com", "bob@ourco.com"
CARLA = "Carla Buyer <carla@acme.com>"


@pytest.fixture
def world(tmp_path):
    return make_world(tmp_path)


@pytest.fixture
def gmail(world, google, dovecot_gmail):
    """The Workspace connected (delegation granted), Alice and Bob in the domain with Gmail."""
    key = google.service_account()
    yield connect(world, google, dovecot_gmail, key), key
    for rep in (ALICE, BOB):
        dovecot_gmail.remove_user(rep)


def as_gmail_shows_it(dovecot, user: str, raw: bytes, labels=()) -> None:
    """One message as Gmail's IMAP shows it: in All Mail, and once more under each label
    (INBOX is a label too)."""
    dovecot.deliver(user, raw, folder="All Mail")
    for label in labels:
        dovecot.deliver(user, raw, folder=label)


def test_the_same_message_under_three_labels_is_one_interaction_read_once(world, gmail, dovecot_gmail):
    boxes, _ = gmail
    raw = message(CARLA, ALICE, "Pricing", msgid="pricing-1@acme.com")
    as_gmail_shows_it(dovecot_gmail, ALICE, raw, labels=("INBOX", "Clients", "Clients/Acme"))
    assert world.sync(boxes[ALICE]).ok
    assert world.scalar("SELECT COUNT(*) FROM interaction WHERE message_key LIKE '%pricing-1@acme.com%'") == 1
    sources = world.sql(
        "SELECT f.name FROM interactionsource s JOIN folderstate f ON f.id = s.folder_id WHERE s.mailbox_id = :m",
        m=boxes[ALICE],
    )
    assert [name for (name,) in sources] == ["All Mail"]  # fetched once, not once per label
    selected = world.sql("SELECT name FROM folderstate WHERE mailbox_id = :m AND selected", m=boxes[ALICE])
    assert sorted(name for (name,) in selected) == ["All Mail", "calendar:primary"]  # and the rep's calendar


def test_a_rep_and_a_colleague_in_one_gmail_thread_give_one_interaction_per_message(world, gmail, dovecot_gmail):
    boxes, _ = gmail
    first = message(CARLA, ALICE, "Renewal", msgid="renewal-1@acme.com", cc=BOB)
    reply = message(
        f"Alice Rep <{ALICE}>",
        "carla@acme.com",
        "Re: Renewal",
        msgid="renewal-2@ourco.com",
        cc=BOB,
        extra="In-Reply-To: <renewal-1@acme.com>\r\nReferences: <renewal-1@acme.com>",
    )
    last = message(
        CARLA,
        ALICE,
        "Re: Renewal",
        msgid="renewal-3@acme.com",
        cc=BOB,
        extra="In-Reply-To: <renewal-2@ourco.com>\r\nReferences: <renewal-1@acme.com> <renewal-2@ourco.com>",
    )
    for raw in (first, reply, last):
        as_gmail_shows_it(dovecot_gmail, ALICE, raw, labels=("INBOX",))
        as_gmail_shows_it(dovecot_gmail, BOB, raw, labels=("INBOX",))
    assert world.sync(boxes[ALICE]).ok and world.sync(boxes[BOB]).ok
    rows = world.sql("SELECT message_key, thread_key FROM interaction WHERE message_key LIKE '%renewal-%'")
    assert len(rows) == 3  # one per message, whichever rep's mailbox held it
    assert len({thread for _, thread in rows}) == 1
    per_message = world.sql(
        "SELECT i.message_key, COUNT(DISTINCT s.mailbox_id) FROM interaction i "
        "JOIN interactionsource s ON s.interaction_id = i.id GROUP BY i.message_key"
    )
    assert sorted(n for _, n in per_message) == [2, 2, 2]


def test_a_withdrawn_delegation_fails_the_mailbox_with_reconnect_and_the_step_to_take(world, gmail, google):
    boxes, key = gmail
    assert world.sync(boxes[ALICE]).ok
    google.undelegate(json.loads(key)["client_id"])  # an admin removed the client id
    report = world.sync(boxes[ALICE])
    row = world.sql(
        "SELECT status, last_error_kind, last_error_fix, last_error FROM mailbox WHERE id = :m", m=boxes[ALICE]
    )[0]
    assert not report.ok and row.status == "failed" and row.last_error_kind == "auth"
    assert row.last_error_fix == "delegation" and "domain-wide delegation" in row.last_error
    advice = fix_for(row.last_error_kind, "gmail", row.last_error_fix)
    assert advice.startswith("Reconnect Google Workspace") and "Manage Domain Wide Delegation" in advice
    assert MAIL_SCOPE in advice and "PRIVATE KEY" not in row.last_error
    # The admin puts the client id back: the next run reconnects, nothing else to do.
    google.delegate(json.loads(key)["client_id"], SCOPES)
    assert world.sync(boxes[ALICE]).ok
    assert world.scalar("SELECT last_error_fix FROM mailbox WHERE id = :m", m=boxes[ALICE]) is None


def test_a_deleted_key_says_store_a_new_one_and_a_new_key_reconnects_every_rep(world, gmail, google, dovecot_gmail):
    boxes, key = gmail
    dovecot_gmail.deliver(ALICE, message(CARLA, ALICE, "Before", msgid="before@acme.com"), folder="All Mail")
    assert world.sync(boxes[ALICE]).ok
    google.delete_key(key)  # deleted in the Google Cloud console (or expired)
    assert not world.sync(boxes[ALICE]).ok
    fix = world.scalar("SELECT last_error_fix FROM mailbox WHERE id = :m", m=boxes[ALICE])
    assert fix == "service_key" and "add-google-workspace --key" in fix_for("auth", "gmail", fix)
    rotated = google.new_key(json.loads(key)["client_email"])
    again = google_service.add_workspace(world.rt, Actor.operator(world.org_id), key_json=rotated, domain="ourco.com")
    assert again["key_id"] == json.loads(rotated)["private_key_id"]
    assert world.scalar("SELECT COUNT(*) FROM googleworkspace") == 1  # the same service account, its key replaced
    dovecot_gmail.deliver(ALICE, message(CARLA, ALICE, "After", msgid="after@acme.com"), folder="All Mail")
    assert world.sync(boxes[ALICE]).ok and world.sync(boxes[BOB]).ok
    assert world.scalar("SELECT COUNT(*) FROM interaction WHERE message_key LIKE '%@acme.com%'") == 2


def test_a_gmail_mailbox_has_no_password_to_replace(world, gmail):
    from app.services import mailboxes
    from app.services.errors import Invalid

    boxes, _ = gmail
    with pytest.raises(Invalid, match="no password"):
        mailboxes.set_password(world.rt, Actor.operator(world.org_id), boxes[ALICE], "hunter2")
    assert world.scalar("SELECT secret_enc FROM mailbox WHERE id = :m", m=boxes[ALICE]) is None


def test_a_rep_who_left_the_domain_fails_alone_and_says_so(world, gmail, google):
    boxes, _ = gmail
    google.suspend(BOB)
    assert world.sync(boxes[ALICE]).ok
    assert not world.sync(boxes[BOB]).ok
    fix = world.scalar("SELECT last_error_fix FROM mailbox WHERE id = :m", m=boxes[BOB])
    assert fix == "no_mailbox" and "Google Workspace domain" in fix_for("auth", "gmail", fix)


def test_rotating_the_secret_key_re_encrypts_the_service_account_key_and_gmail_still_syncs(world, gmail):
    from app.crypto import rotate_key
    from app.runtime import open_runtime
    from sync.engine import sync_mailbox

    boxes, key = gmail
    before = world.scalar("SELECT secret_enc FROM googleworkspace")
    counts = rotate_key(world.rt.settings, world.rt.engine)
    after = world.scalar("SELECT secret_enc FROM googleworkspace")
    assert counts["googleworkspace.secret_enc"] == 1 and after != before
    fresh = open_runtime(world.rt.settings)
    assert fresh.box.decrypt(after) == key
    assert sync_mailbox(fresh.engine, fresh.box, boxes[ALICE]).ok


def test_new_gmail_reaches_the_timeline_within_seconds_through_idle_with_xoauth2(world, gmail, google, dovecot_gmail):
    import time

    from sync.scheduler import SyncService

    boxes, _ = gmail
    dovecot_gmail.deliver(ALICE, message(CARLA, ALICE, "Before", msgid="push-0@acme.com"), folder="All Mail")
    assert world.sync(boxes[ALICE]).ok
    grants = len(google.grants)
    service = SyncService(world.rt, idle=True)
    service.start()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and boxes[ALICE] not in service.hub.live:
            time.sleep(0.05)
        assert boxes[ALICE] in service.hub.live  # in IDLE on All Mail, logged in with XOAUTH2
        time.sleep(0.5)
        dovecot_gmail.deliver(ALICE, message(CARLA, ALICE, "Pushed", msgid="push-1@acme.com"), folder="All Mail")
        sent = time.monotonic()
        while time.monotonic() - sent < 10:
            if world.scalar("SELECT count(*) FROM interaction WHERE message_key LIKE '%push-1@acme.com%'"):
                break
            time.sleep(0.05)
        elapsed = time.monotonic() - sent
    finally:
        service.stop()
    assert world.scalar("SELECT count(*) FROM interaction WHERE message_key LIKE '%push-1@acme.com%'") == 1
    assert elapsed < 5.0, f"new Gmail took {elapsed:.2f}s to reach the timeline"
    # The IDLE login asked Google for a token of the rep with Gmail's scope only.
    scopes = {g["claims"]["scope"] for g in google.grants[grants:] if g["claims"] and g["claims"].get("sub") == ALICE}
    assert MAIL_SCOPE in scopes
