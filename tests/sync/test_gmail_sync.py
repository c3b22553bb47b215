"""Gmail mailboxes end to end: a Google Workspace added through the services, reps'
Gmail synced over IMAP with XOAUTH2 (a Dovecot shaped like Gmail behind a shim that
adds Gmail's IMAP extensions, tokens from the fake Google) into a real database."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from app.services import google as google_service
from app.services.actor import Actor
from app.services.mailboxes import fix_for
from connectors.googleauth import MAIL_SCOPE, SCOPES
from tests.sync.test_gcal_sync import connect
from tests.sync.test_scheduling import PUSH_BOUND, _wait_for
from tests.world import NOW, make_world, message

ALICE, BOB = "alice@ourco.com", "bob@ourco.com"
CARLA = "Carla Buyer <carla@acme.com>"


@pytest.fixture
def world(tmp_path):
    return make_world(tmp_path)


@pytest.fixture
def gmail(world, google, dovecot_gmail, gmail_imap):
    """The Workspace connected (delegation granted), Alice and Bob in the domain with Gmail,
    read through Gmail's IMAP extensions (X-GM-EXT-1) in front of the Dovecot."""
    key = google.service_account()
    yield connect(world, google, dovecot_gmail, key, imap=gmail_imap), key
    for rep in (ALICE, BOB):
        dovecot_gmail.remove_user(rep)


def copies(world, mailbox_id: int) -> list[tuple]:
    """(folder, message key, remote id, X-GM-MSGID, X-GM-THRID, copy row id) of a mailbox's copies."""
    return [
        tuple(row)
        for row in world.sql(
            "SELECT f.name, i.message_key, s.remote_id, s.provider_id, s.provider_thread, s.id "
            "FROM interactionsource s JOIN folderstate f ON f.id = s.folder_id "
            "JOIN interaction i ON i.id = s.interaction_id WHERE s.mailbox_id = :m ORDER BY f.name, i.message_key",
            m=mailbox_id,
        )
    ]


def test_the_same_message_under_three_labels_is_one_interaction_read_once(world, gmail, gmail_imap):
    boxes, _ = gmail
    raw = message(CARLA, ALICE, "Pricing", msgid="pricing-1@acme.com")
    shown = gmail_imap.store.deliver(ALICE, raw, labels=("INBOX", "Clients", "Clients/Acme"))
    assert world.sync(boxes[ALICE]).ok
    assert world.scalar("SELECT COUNT(*) FROM interaction WHERE message_key LIKE '%pricing-1@acme.com%'") == 1
    # fetched once, not once per label; the copy carries Gmail's ids, unsigned 64-bit numbers
    [(folder, _, _, msgid, thrid, _)] = copies(world, boxes[ALICE])
    assert (folder, msgid, thrid) == ("All Mail", str(shown.msgid), str(shown.thrid))
    assert shown.msgid >= 2**63  # past a signed 64-bit column
    selected = world.sql("SELECT name FROM folderstate WHERE mailbox_id = :m AND selected", m=boxes[ALICE])
    assert sorted(name for (name,) in selected) == ["All Mail", "calendar:primary"]  # and the rep's calendar


def test_with_all_mail_hidden_the_labels_read_as_folders_give_one_interaction_for_one_x_gm_msgid(
    world, gmail, gmail_imap
):
    boxes, _ = gmail
    gmail_imap.hide_all_mail = True  # an admin took All Mail out of IMAP: every label is a folder
    shown = gmail_imap.store.deliver(
        ALICE, message(CARLA, ALICE, "Pricing", msgid="pricing-2@acme.com"), labels=("INBOX", "Clients", "Clients/Acme")
    )
    assert world.sync(boxes[ALICE]).ok
    assert world.sync(boxes[ALICE]).ok  # a second run adds nothing
    assert world.scalar("SELECT COUNT(*) FROM interaction WHERE kind = 'email'") == 1
    got = copies(world, boxes[ALICE])
    # one copy per label it is under (each folder's own count and removals need them), all of
    # one Gmail message and so of one interaction
    assert [folder for folder, *_ in got] == ["Clients", "Clients/Acme", "INBOX"]
    assert {(key, msgid, thrid) for _, key, _, msgid, thrid, _ in got} == {
        ("pricing-2@acme.com", str(shown.msgid), str(shown.thrid))
    }
    counts = world.sql(
        "SELECT name, messages FROM folderstate WHERE mailbox_id = :m AND messages > 0 ORDER BY name", m=boxes[ALICE]
    )
    assert [tuple(c) for c in counts] == [("Clients", 1), ("Clients/Acme", 1), ("INBOX", 1)]


def test_an_all_mail_uidvalidity_reset_re_links_each_copy_by_x_gm_msgid_and_imports_nothing_twice(
    world, gmail, gmail_imap, dovecot_gmail
):
    boxes, _ = gmail
    store = gmail_imap.store
    kept = [store.deliver(ALICE, message(CARLA, ALICE, f"Quote {i}", msgid=f"quote-{i}@acme.com")) for i in range(3)]
    gone = store.deliver(ALICE, message(CARLA, ALICE, "Spam-ish", msgid="deleted@acme.com"))
    assert world.sync(boxes[ALICE]).ok
    # (newer copies in Bob's mailbox, so that a copy made again could not take back a deleted one's row id)
    store.deliver(BOB, message(CARLA, BOB, "Bob's", msgid="bobs@acme.com"))
    assert world.sync(boxes[BOB]).ok
    before = {key: (copy_id, remote) for _, key, remote, _, _, copy_id in copies(world, boxes[ALICE])}
    interactions = world.sql("SELECT id, message_key, thread_key FROM interaction ORDER BY id")
    followups = world.sql("SELECT thread_key, kind, interaction_id FROM followup ORDER BY thread_key")
    old_validity = dovecot_gmail.uidvalidity(ALICE, "All Mail")

    store.messages.remove(gone)  # deleted in Gmail meanwhile
    store.reset_folder(ALICE, "All Mail")  # Gmail shows All Mail under a new UIDVALIDITY
    assert dovecot_gmail.uidvalidity(ALICE, "All Mail") != old_validity
    report = world.sync(boxes[ALICE])
    assert report.ok and report.new_interactions == 0

    after = {key: (copy_id, remote) for _, key, remote, _, _, copy_id in copies(world, boxes[ALICE])}
    assert sorted(after) == sorted(m.message_id for m in kept)  # the deleted message's copy went
    for key, (copy_id, remote) in after.items():
        assert copy_id == before[key][0]  # the same copy, moved to its new UID, not added again
        assert remote.startswith(f"{dovecot_gmail.uidvalidity(ALICE, 'All Mail')}/") and remote != before[key][1]
    assert world.sql("SELECT id, message_key, thread_key FROM interaction ORDER BY id") == interactions
    assert world.sql("SELECT thread_key, kind, interaction_id FROM followup ORDER BY thread_key") == followups
    folder = world.sql(
        "SELECT f.messages, m.messages_imported FROM folderstate f JOIN mailbox m ON m.id = f.mailbox_id "
        "WHERE f.mailbox_id = :m AND f.name = 'All Mail'",
        m=boxes[ALICE],
    )[0]
    assert tuple(folder) == (3, 3)
    # and mail arriving after the reset is read as usual
    store.deliver(ALICE, message(CARLA, ALICE, "After", msgid="after-reset@acme.com"))
    assert world.sync(boxes[ALICE]).new_interactions == 1


def test_a_reply_without_references_that_gmail_threads_joins_its_threads_key_and_follow_up(world, gmail, gmail_imap):
    boxes, _ = gmail
    store = gmail_imap.store
    day = NOW - timedelta(days=3)
    first = store.deliver(ALICE, message(CARLA, ALICE, "Pilot", msgid="pilot-1@acme.com", when=day))
    store.deliver(
        ALICE,
        message(
            f"Alice Rep <{ALICE}>",
            "carla@acme.com",
            "Re: Pilot",
            msgid="pilot-2@ourco.com",
            when=day + timedelta(hours=1),
            extra="In-Reply-To: <pilot-1@acme.com>\r\nReferences: <pilot-1@acme.com>",
        ),
        labels=("Sent",),
    )
    assert world.sync(boxes[ALICE]).ok
    # Carla's client dropped In-Reply-To and References; Gmail still put her answer in the thread.
    bare = message(CARLA, ALICE, "Re: Pilot", msgid="pilot-3@acme.com", when=day + timedelta(hours=2))
    store.deliver(ALICE, bare, thread=first)
    # Another message without them that Gmail did not thread starts a thread of its own.
    store.deliver(ALICE, message(CARLA, ALICE, "Other topic", msgid="other@acme.com", when=day + timedelta(hours=3)))
    assert world.sync(boxes[ALICE]).ok
    threads = dict(world.sql("SELECT message_key, thread_key FROM interaction"))
    assert threads["pilot-3@acme.com"] == threads["pilot-1@acme.com"] == threads["pilot-2@ourco.com"]
    assert threads["other@acme.com"] == "other@acme.com"
    # the thread's follow-up follows it: Carla answered last, so Alice owes her a reply
    [followup] = world.sql(
        "SELECT f.kind, i.message_key FROM followup f JOIN interaction i ON i.id = f.interaction_id "
        "WHERE f.thread_key = :t",
        t=threads["pilot-1@acme.com"],
    )
    assert tuple(followup) == ("owe", "pilot-3@acme.com")
    assert not world.sql("SELECT id FROM followup WHERE thread_key = 'pilot-3@acme.com'")


def test_a_thread_read_newest_first_in_one_batch_joins_its_earliest_messages_key(world, gmail, gmail_imap):
    boxes, _ = gmail
    store = gmail_imap.store
    day = NOW - timedelta(days=5)
    first = store.deliver(ALICE, message(CARLA, ALICE, "Trial", msgid="trial-1@acme.com", when=day))
    store.deliver(
        ALICE, message(CARLA, ALICE, "Re: Trial", msgid="trial-2@acme.com", when=day + timedelta(hours=1)), thread=first
    )
    assert world.sync(boxes[ALICE]).ok  # the first import reads newest first: the bare reply before the first
    threads = dict(world.sql("SELECT message_key, thread_key FROM interaction"))
    assert threads == {"trial-1@acme.com": "trial-1@acme.com", "trial-2@acme.com": "trial-1@acme.com"}


def test_a_rep_and_a_colleague_in_one_gmail_thread_give_one_interaction_per_message_and_one_thread(
    world, gmail, gmail_imap
):
    boxes, _ = gmail
    store = gmail_imap.store
    day = NOW - timedelta(days=2)
    first = message(CARLA, ALICE, "Renewal", msgid="renewal-1@acme.com", cc=BOB, when=day)
    reply = message(
        f"Alice Rep <{ALICE}>",
        "carla@acme.com",
        "Re: Renewal",
        msgid="renewal-2@ourco.com",
        cc=BOB,
        when=day + timedelta(hours=1),
        extra="In-Reply-To: <renewal-1@acme.com>\r\nReferences: <renewal-1@acme.com>",
    )
    last = message(
        CARLA,
        ALICE,
        "Re: Renewal",
        msgid="renewal-3@acme.com",
        cc=BOB,
        when=day + timedelta(hours=2),
        extra="In-Reply-To: <renewal-2@ourco.com>\r\nReferences: <renewal-1@acme.com> <renewal-2@ourco.com>",
    )
    # and one that lost its References on the way, which each rep's Gmail threads all the same
    bare = message(CARLA, ALICE, "Re: Renewal", msgid="renewal-4@acme.com", cc=BOB, when=day + timedelta(hours=3))
    for rep in (ALICE, BOB):
        opened = store.deliver(rep, first)
        for raw in (reply, last):
            store.deliver(rep, raw)
        store.deliver(rep, bare, thread=opened)
    assert world.sync(boxes[ALICE]).ok and world.sync(boxes[BOB]).ok
    rows = world.sql("SELECT message_key, thread_key FROM interaction WHERE message_key LIKE '%renewal-%'")
    assert len(rows) == 4  # one per message, whichever rep's mailbox held it
    assert {thread for _, thread in rows} == {"renewal-1@acme.com"}
    per_message = world.sql(
        "SELECT i.message_key, COUNT(DISTINCT s.mailbox_id), COUNT(DISTINCT s.provider_id), "
        "COUNT(DISTINCT s.provider_thread) FROM interaction i "
        "JOIN interactionsource s ON s.interaction_id = i.id GROUP BY i.message_key"
    )
    # each message: a copy in each mailbox, under each account's own X-GM-MSGID and X-GM-THRID
    assert sorted(tuple(r[1:]) for r in per_message) == [(2, 2, 2)] * 4


def test_within_a_mailbox_a_known_x_gm_msgid_is_its_interaction_even_under_another_message_key(world, gmail):
    from app.db import write_transaction
    from connectors.base import MessageRecord
    from sync.engine import org_context
    from sync.ingest import MailboxContext, ingest

    boxes, _ = gmail
    assert world.sync(boxes[ALICE]).ok and world.sync(boxes[BOB]).ok  # their folders exist

    def seen(rep: str, folder: str, remote_id: str, key: str) -> None:
        mailbox_id = boxes[rep]
        folder_id = world.scalar(
            "SELECT id FROM folderstate WHERE mailbox_id = :m AND name = :f", m=mailbox_id, f=folder
        )
        user_id = world.scalar("SELECT id FROM app_user WHERE email = :e", e=rep)
        record = MessageRecord(
            remote_id=remote_id,
            message_key=key,
            date=NOW - timedelta(days=1),
            from_=[("Carla", "carla@acme.com")],
            to=[("", rep)],
            cc=[],
            bcc=[],
            subject="Quote",
            in_reply_to=None,
            references=[],
            provider_id="18000000000000000001",
            provider_thread="18000000000000000001",
        )
        with write_transaction(world.rt.engine) as conn:
            ingest(
                conn,
                org_context(conn, world.org_id, world.rt.box),
                MailboxContext(mailbox_id, folder_id, user_id, rep),
                [record],
            )

    seen(ALICE, "All Mail", "5/1", "quote@acme.com")
    # the same Gmail message (its X-GM-MSGID) under a key the headers give otherwise now
    seen(ALICE, "INBOX", "6/1", "quote-rekeyed@acme.com")
    assert world.sql("SELECT message_key FROM interaction WHERE kind = 'email'") == [("quote@acme.com",)]
    assert len(copies(world, boxes[ALICE])) == 2
    # Bob's Gmail numbers its messages itself: the same number there is another message
    seen(BOB, "All Mail", "7/1", "other@acme.com")
    assert world.scalar("SELECT COUNT(*) FROM interaction WHERE kind = 'email'") == 2


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


def test_new_gmail_is_pushed_to_the_timeline_through_idle_with_xoauth2(world, gmail, google, dovecot_gmail):
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
        assert world.seconds_to_next_poll(boxes[ALICE]) > 10 * PUSH_BOUND
        dovecot_gmail.deliver(ALICE, message(CARLA, ALICE, "Pushed", msgid="push-1@acme.com"), folder="All Mail")
        pushed = "SELECT count(*) FROM interaction WHERE message_key LIKE '%push-1@acme.com%'"
        arrived = _wait_for(lambda: world.scalar(pushed), PUSH_BOUND, 0.05)
    finally:
        service.stop()
    assert arrived == 1, "the pushed Gmail did not reach the timeline before the bound"
    # The IDLE login asked Google for a token of the rep with Gmail's scope only.
    scopes = {g["claims"]["scope"] for g in google.grants[grants:] if g["claims"] and g["claims"].get("sub") == ALICE}
    assert MAIL_SCOPE in scopes


def test_a_server_without_x_gm_ext_1_stores_no_gmail_ids_and_threads_and_re_reads_as_before(world, imap_user):
    mailbox = world.add_imap(ALICE, imap_user)
    day = NOW - timedelta(days=2)
    mail = [
        message(CARLA, ALICE, "Pilot", msgid="plain-1@acme.com", when=day),
        message(CARLA, ALICE, "Re: Pilot", msgid="plain-2@acme.com", when=day + timedelta(hours=1)),
    ]
    for raw in mail:
        imap_user.dovecot.deliver(imap_user.username, raw)
    assert world.sync(mailbox).ok
    before = copies(world, mailbox)
    assert [(key, msgid, thrid) for _, key, _, msgid, thrid, _ in before] == [
        ("plain-1@acme.com", None, None),
        ("plain-2@acme.com", None, None),
    ]
    # threaded by the headers alone: the bare reply is a thread of its own
    assert dict(world.sql("SELECT message_key, thread_key FROM interaction")) == {
        "plain-1@acme.com": "plain-1@acme.com",
        "plain-2@acme.com": "plain-2@acme.com",
    }
    # (a newer copy elsewhere, so that a copy made again cannot take back a deleted one's row id)
    imap_user.dovecot.deliver(imap_user.username, message(CARLA, ALICE, "Other", msgid="plain-3@acme.com"), "Later")
    assert world.sync(mailbox).ok
    # a new UIDVALIDITY: the folder is read again into new copies of the same interactions
    imap_user.dovecot.recreate_folder(imap_user.username, "INBOX")
    for raw in mail:
        imap_user.dovecot.deliver(imap_user.username, raw)
    report = world.sync(mailbox)
    assert report.ok and report.new_interactions == 0
    after = copies(world, mailbox)
    assert [key for folder, key, *_ in after if folder == "INBOX"] == ["plain-1@acme.com", "plain-2@acme.com"]
    assert not {copy_id for *_, copy_id in after} & {copy_id for *_, copy_id in before}
    assert world.scalar("SELECT messages FROM folderstate WHERE mailbox_id = :m AND name = 'INBOX'", m=mailbox) == 2
