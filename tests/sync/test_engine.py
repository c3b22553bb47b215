"""The sync engine against a real Dovecot: initial and incremental sync,
cursors, UIDVALIDITY, shared messages, policies, and bad input."""

from __future__ import annotations

from datetime import timedelta

import pytest

from demodata import generate, malformed_messages
from tests.world import NOW, json_value, make_world, message


@pytest.fixture
def world(tmp_path):
    return make_world(tmp_path)


def test_first_sync_builds_the_timeline(world, imap_user):
    imap_user.create_folder("Sent")
    imap_user.deliver(
        message('"Carla Buyer" <carla@sub.acme.co.uk>', "Alice Rep <alice@ourco.com>", "Pricing", msgid="m1@acme"),
        internaldate=NOW - timedelta(days=3),
    )
    imap_user.deliver(
        message(
            "Alice Rep <alice@ourco.com>",
            "carla@sub.acme.co.uk",
            "Re: Pricing",
            msgid="m2@ourco",
            extra="In-Reply-To: <m1@acme>\r\nReferences: <m1@acme>",
        ),
        folder="Sent",
    )
    mid = world.add_imap("alice@ourco.com", imap_user)

    report = world.sync(mid)

    assert report.ok and report.imported == 2 and report.new_interactions == 2
    rows = world.sql("SELECT message_key, direction, subject, thread_key FROM interaction ORDER BY occurred_at")
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("m1@acme", "in", "Pricing", "m1@acme"),
        ("m2@ourco", "out", "Re: Pricing", "m1@acme"),
    ]
    assert world.sql("SELECT c.name, co.domain FROM contact c JOIN company co ON co.id = c.company_id") == [
        ("Carla Buyer", "acme.co.uk")
    ]
    status = world.sql("SELECT status, sync_stage, messages_imported, last_error FROM mailbox")[0]
    assert status == ("active", "idle", 2, None)
    folders = dict(world.sql("SELECT name, role FROM folderstate"))
    assert folders == {"INBOX": "inbox", "Sent": "sent"}


def test_incremental_sync_fetches_only_new_mail(world, imap_user):
    imap_user.deliver(message("x@ext.com", "alice@ourco.com", msgid="a1@ext"))
    mid = world.add_imap("alice@ourco.com", imap_user)
    assert world.sync(mid).imported == 1
    cursor_before = world.sql("SELECT cursor FROM folderstate WHERE name = 'INBOX'")[0][0]

    again = world.sync(mid)
    assert again.ok and again.imported == 0
    assert world.sql("SELECT cursor FROM folderstate WHERE name = 'INBOX'")[0][0] == cursor_before

    imap_user.deliver(message("y@ext.com", "alice@ourco.com", msgid="a2@ext"))
    third = world.sync(mid)
    assert third.imported == 1
    assert world.scalar("SELECT count(*) FROM interaction") == 2


def test_cursor_tracks_condstore_modseq(world, imap_user):
    imap_user.deliver(message("x@ext.com", "alice@ourco.com", msgid="c1@ext"))
    mid = world.add_imap("alice@ourco.com", imap_user)
    world.sync(mid)
    cursor = json_value(world.sql("SELECT cursor FROM folderstate WHERE name='INBOX'")[0][0])
    assert cursor["highestmodseq"] >= 1 and cursor["uidvalidity"] > 0 and cursor["backfill_done"]

    client = imap_user.connect()
    client.select_folder("INBOX")
    client.add_flags(client.search(["ALL"]), [b"\\Seen"])
    client.logout()
    report = world.sync(mid)
    after = json_value(world.sql("SELECT cursor FROM folderstate WHERE name='INBOX'")[0][0])
    assert report.imported == 0
    assert after["highestmodseq"] > cursor["highestmodseq"]
    # Mail read in another client is still on the timeline: nothing keys on \Seen.
    assert world.scalar("SELECT count(*) FROM interaction") == 1


def test_uidvalidity_change_remaps_without_duplicates(world, imap_user):
    imap_user.create_folder("Archive")
    for i in range(5):
        imap_user.deliver(message(f"p{i}@ext.com", "alice@ourco.com", f"S{i}", msgid=f"u{i}@ext"), folder="Archive")
    mid = world.add_imap("alice@ourco.com", imap_user)
    world.sync(mid)
    old = {r[0] for r in world.sql("SELECT remote_id FROM interactionsource")}

    path = imap_user.recreate_folder("Archive")
    assert path is not None
    for i in range(5):
        imap_user.deliver(message(f"p{i}@ext.com", "alice@ourco.com", f"S{i}", msgid=f"u{i}@ext"), folder="Archive")
    imap_user.deliver(message("new@ext.com", "alice@ourco.com", "New", msgid="u-new@ext"), folder="Archive")

    report = world.sync(mid)
    assert report.ok
    assert world.scalar("SELECT count(*) FROM interaction") == 6
    assert report.new_interactions == 1
    new = {r[0] for r in world.sql("SELECT remote_id FROM interactionsource")}
    assert len(new) == 6 and not (new & old)
    assert world.scalar("SELECT count(*) FROM participant WHERE user_id IS NOT NULL") == 6


def test_same_message_in_two_mailboxes_is_one_interaction(world, imap_user_factory):
    alice_box, bob_box = imap_user_factory(), imap_user_factory()
    raw = message(
        "Dan Client <dan@client.io>", "alice@ourco.com", "Both of us", cc="bob@ourco.com", msgid="shared@client.io"
    )
    alice_box.deliver(raw)
    bob_box.deliver(raw)
    a = world.add_imap("alice@ourco.com", alice_box)
    b = world.add_imap("bob@ourco.com", bob_box)
    world.sync(a)
    world.sync(b)

    assert world.scalar("SELECT count(*) FROM interaction") == 1
    assert world.scalar("SELECT count(*) FROM interactionsource") == 2
    colleagues = world.sql("SELECT address FROM participant WHERE user_id IS NOT NULL ORDER BY address")
    assert [c[0] for c in colleagues] == ["alice@ourco.com", "bob@ourco.com"]


def test_generated_corpus_across_reps_is_exact(world, imap_user_factory, tmp_path):
    corpus, messages = generate(seed=3, n_messages=600, reps=3)
    w = make_world(tmp_path / "corpus", domains=corpus.internal_domains, reps=[(e, n) for n, e in corpus.reps])
    boxes = {email: imap_user_factory() for _, email in corpus.reps}
    per_box = {email: [] for email in boxes}
    folders = {email: {"INBOX"} for email in boxes}
    keys = set()
    for m in messages:
        if m.folder not in folders[m.mailbox]:
            boxes[m.mailbox].create_folder(m.folder)
            folders[m.mailbox].add(m.folder)
        per_box[m.mailbox].append((m.raw, m.folder, m.internaldate))
        keys.add(m.message_id.strip("<>"))
    for email, box in boxes.items():
        box.deliver_many(per_box[email])
    ids = [w.add_imap(email, box) for email, box in boxes.items()]
    for mid in ids:
        assert w.sync(mid).ok
    stored = {r[0] for r in w.sql("SELECT message_key FROM interaction")}
    # Every stored interaction is a real generated message, stored once.
    assert stored <= keys
    assert len(stored) == w.scalar("SELECT count(*) FROM interaction")
    # Internal-only mail and bulk mail from strangers are not on the timeline.
    internal_only = w.scalar(
        "SELECT count(*) FROM interaction i WHERE NOT EXISTS (SELECT 1 FROM participant p "
        "WHERE p.interaction_id = i.id AND p.user_id IS NULL)"
    )
    assert internal_only == 0
    assert not w.sql("SELECT domain FROM company WHERE domain IN ('gmail.com','outlook.com','yahoo.com')")
    skipped = w.sql("SELECT skipped FROM mailbox")
    assert any("internal" in s[0] for s in skipped)
    # Re-running every mailbox changes nothing.
    before = w.snapshot()
    for mid in ids:
        assert w.sync(mid).imported == 0
    assert w.snapshot() == before


def test_internal_bulk_and_free_mail_rules(world, imap_user):
    imap_user.deliver(message("bob@ourco.com", "alice@ourco.com", "Lunch?", msgid="int@ourco"))
    imap_user.deliver(
        message(
            "news@vendor.com",
            "alice@ourco.com",
            "Newsletter",
            msgid="bulk@vendor",
            extra="List-Unsubscribe: <mailto:u@vendor.com>\r\nPrecedence: bulk",
        )
    )
    imap_user.deliver(message("no-reply@service.com", "alice@ourco.com", "Your receipt", msgid="auto@service"))
    imap_user.deliver(message("Gina <gina@gmail.com>", "alice@ourco.com", "Question", msgid="free@gmail"))
    mid = world.add_imap("alice@ourco.com", imap_user)
    world.sync(mid)
    assert [r[0] for r in world.sql("SELECT message_key FROM interaction")] == ["free@gmail"]
    assert world.sql("SELECT primary_email, company_id FROM contact") == [("gina@gmail.com", None)]

    skipped = json_value(world.sql("SELECT skipped FROM mailbox")[0][0])
    assert skipped == {"internal": 1, "bulk or automated": 2}


def test_list_headers_on_personal_mail_do_not_drop_it(world, imap_user):
    """A customer writing to the team's own Google Group (sales@), the same when the
    group rewrote the From because of the customer's DMARC policy, and a rep's
    sequence mail carrying List-Unsubscribe are all kept; real list mail is not."""
    group = "List-Id: <sales.ourco.com>\r\nList-Unsubscribe: <mailto:sales+unsubscribe@ourco.com>\r\nPrecedence: list"
    imap_user.deliver(
        message("Ann Buyer <ann@acme.com>", "Sales <sales@ourco.com>", "Pricing please", msgid="grp1@acme", extra=group)
    )
    imap_user.deliver(
        message(
            "'Jane Doe' via Sales <sales@ourco.com>",
            "Sales <sales@ourco.com>",
            "Renewal",
            msgid="grp2@bigcorp",
            extra=group + "\r\nReply-To: Jane Doe <jane@bigcorp.com>",
        )
    )
    imap_user.deliver(
        message(
            "Alice Rep <alice@ourco.com>",
            "Tom <tom@prospect.com>",
            "Quick question",
            msgid="seq1@ourco",
            extra="List-Unsubscribe: <https://tool.example/u/123>",
        ),
        folder="Sent",
    )
    imap_user.deliver(
        message(
            "news@vendor.com",
            "alice@ourco.com",
            "Digest",
            msgid="list1@vendor",
            extra="List-Id: <digest.vendor.com>\r\nList-Unsubscribe: <mailto:u@vendor.com>",
        )
    )
    imap_user.deliver(
        message(
            "promo@shop.com",
            "alice@ourco.com",
            "Sale",
            msgid="promo1@shop",
            extra="List-Unsubscribe: <mailto:u@shop.com>",
        )
    )
    mid = world.add_imap("alice@ourco.com", imap_user)
    assert world.sync(mid).ok
    kept = {r.message_key: r.direction for r in world.sql("SELECT message_key, direction FROM interaction")}
    assert kept == {"grp1@acme": "in", "grp2@bigcorp": "in", "seq1@ourco": "out"}
    senders = dict(
        world.sql(
            "SELECT i.message_key, p.address FROM participant p JOIN interaction i "
            "ON i.id = p.interaction_id WHERE p.role = 'from'"
        )
    )
    assert senders["grp2@bigcorp"] == "jane@bigcorp.com"  # not the group
    assert world.scalar("SELECT name FROM contact WHERE primary_email = 'jane@bigcorp.com'") == "Jane Doe"
    assert {r[0] for r in world.sql("SELECT primary_email FROM contact")} == {
        "ann@acme.com",
        "jane@bigcorp.com",
        "tom@prospect.com",
    }


def test_contact_policy_exchanged_skips_strangers_in_cc(world, imap_user):
    imap_user.deliver(message("ann@cust.com", "alice@ourco.com", "Hi", cc="stranger@other.com", msgid="p1@cust"))
    mid = world.add_imap("alice@ourco.com", imap_user)
    world.sync(mid)
    assert [r[0] for r in world.sql("SELECT primary_email FROM contact")] == ["ann@cust.com"]
    # The stranger is still a participant, so becoming a contact later brings the history.
    assert (
        world.scalar("SELECT count(*) FROM participant WHERE address = 'stranger@other.com' AND contact_id IS NULL")
        == 1
    )
    imap_user.deliver(message("alice@ourco.com", "stranger@other.com", "Nice to meet", msgid="p2@ourco"))
    world.sync(mid)
    assert (
        world.scalar("SELECT count(*) FROM participant WHERE address = 'stranger@other.com' AND contact_id IS NOT NULL")
        == 2
    )


def test_contact_policy_none_and_visibility_metadata(world, imap_user):
    world.set_org(contact_policy="none", visibility="metadata")
    imap_user.deliver(message("ann@cust.com", "alice@ourco.com", "Secret deal", msgid="v1@cust"))
    mid = world.add_imap("alice@ourco.com", imap_user)
    world.sync(mid)
    assert world.sql("SELECT subject, snippet FROM interaction") == [(None, None)]
    assert world.scalar("SELECT count(*) FROM contact") == 0


def test_aliases_count_as_the_user(world, imap_user, tmp_path):
    w = make_world(tmp_path / "alias", reps=())
    w.add_user("carol@ourco.com", "Carol", aliases=["carol.sales@ourco-sales.com"])
    imap_user.deliver(message("carol.sales@ourco-sales.com", "client@cust.com", "From my alias", msgid="al@x"))
    mid = w.add_imap("carol@ourco.com", imap_user)
    w.sync(mid)
    assert w.sql("SELECT direction FROM interaction") == [("out",)]
    assert w.sql("SELECT address FROM participant WHERE user_id IS NOT NULL") == [("carol.sales@ourco-sales.com",)]


def test_message_without_message_id_is_never_duplicated(world, imap_user_factory):
    a, b = imap_user_factory(), imap_user_factory()
    raw = message("ext@cust.com", "alice@ourco.com", "No id here", cc="bob@ourco.com")
    a.deliver(raw)
    b.deliver(raw)
    ma, mb = world.add_imap("alice@ourco.com", a), world.add_imap("bob@ourco.com", b)
    world.sync(ma)
    world.sync(mb)
    world.sync(ma)
    keys = world.sql("SELECT message_key FROM interaction")
    assert len(keys) == 1 and keys[0][0].startswith("sha256:")


def test_backfill_window_and_newest_first(world, imap_user):
    world.set_org(backfill_days=30)
    # No message within two days of the window's edge: IMAP's SINCE counts whole days, so a
    # message exactly 30 days old would be in or out depending on the time of day the test runs.
    ages = [0, 5, 10, 15, 20, 25, 28, 32, 37, 42, 47, 52]
    for i in reversed(range(12)):  # delivered oldest first, as mail arrives
        imap_user.deliver(
            message(
                f"c{i}@cust.com", "alice@ourco.com", f"M{i}", msgid=f"bf{i}@cust", when=NOW - timedelta(days=ages[i])
            ),
            internaldate=NOW - timedelta(days=ages[i]),
        )
    mid = world.add_imap("alice@ourco.com", imap_user)
    world.sync(mid)
    keys = {r[0] for r in world.sql("SELECT message_key FROM interaction")}
    assert keys == {f"bf{i}@cust" for i in range(7)}  # 0..28 days old; 32 and older are outside
    # Newest first: the first row written is the newest message.
    assert world.scalar("SELECT message_key FROM interaction ORDER BY id LIMIT 1") == "bf0@cust"


def test_malformed_messages_are_recorded_and_never_stop_the_sync(world, imap_user):
    samples = malformed_messages()
    for _name, raw in samples:
        imap_user.deliver(raw or b"\r\n")
    imap_user.deliver(message("good@cust.com", "alice@ourco.com", "Still fine", msgid="good@cust"))
    mid = world.add_imap("alice@ourco.com", imap_user)
    report = world.sync(mid)
    assert report.ok
    assert "good@cust" in {r[0] for r in world.sql("SELECT message_key FROM interaction")}
    issues = world.sql("SELECT reason FROM syncissue")
    assert issues and all(reason for (reason,) in issues)
    assert world.sql("SELECT status FROM mailbox") == [("active",)]
    # Every delivered message is accounted for: imported, skipped with a reason, or unreadable.

    skipped = sum(json_value(world.sql("SELECT skipped FROM mailbox")[0][0]).values())
    assert report.imported + skipped == len(samples) + 1


def test_odd_folder_names_sync_and_system_folders_are_skipped(world, imap_user):
    names = ["Kunden/Müller & Söhne", 'Projects/"Quoted" name', "Deals 2026", "Trash", "Junk", "Drafts"]
    for n in names:
        imap_user.create_folder(n)
    for i, n in enumerate(names):
        imap_user.deliver(message(f"f{i}@cust.com", "alice@ourco.com", n, msgid=f"fold{i}@cust"), folder=n)
    mid = world.add_imap("alice@ourco.com", imap_user)
    report = world.sync(mid)
    assert report.ok and not report.folders_failed
    assert {r[0] for r in world.sql("SELECT message_key FROM interaction")} == {
        "fold0@cust",
        "fold1@cust",
        "fold2@cust",
    }
    skipped = {r[0] for r in world.sql("SELECT name FROM folderstate WHERE NOT selected")}
    assert skipped == {"Trash", "Junk", "Drafts"}


def test_a_broken_folder_is_reported_and_the_others_sync(world, imap_user):
    import os

    imap_user.create_folder("Broken")
    imap_user.create_folder("Fine")
    imap_user.deliver(message("a@cust.com", "alice@ourco.com", "ok", msgid="ok1@cust"), folder="Fine")
    imap_user.deliver(message("b@cust.com", "alice@ourco.com", "in broken", msgid="br1@cust"), folder="Broken")
    path = imap_user.dovecot.folder_path(imap_user.username, "Broken")
    os.chmod(path / "cur", 0)
    try:
        mid = world.add_imap("alice@ourco.com", imap_user)
        report = world.sync(mid)
    finally:
        os.chmod(path / "cur", 0o700)
    assert report.ok
    assert [r[0] for r in world.sql("SELECT message_key FROM interaction")] == ["ok1@cust"]
    broken = world.sql("SELECT status, last_error FROM folderstate WHERE name = 'Broken'")[0]
    assert broken[0] == "error" and broken[1]
    status = world.sql("SELECT status, last_error FROM mailbox")[0]
    assert "Broken" in status[1]  # never shown as healthy
    # Once the folder is readable again it catches up.
    world.sync(mid)
    assert world.scalar("SELECT count(*) FROM interaction") == 2
    assert world.sql("SELECT status FROM folderstate WHERE name = 'Broken'") == [("ok",)]


def test_special_use_folders_are_recognised(world, imap_user_factory, dovecot_special_use):
    user = imap_user_factory(server=dovecot_special_use)
    for name in ("Sent", "Archive", "Junk", "Trash", "Drafts"):
        user.create_folder(name)
    mid = world.add_imap("alice@ourco.com", user)
    world.sync(mid)
    roles = dict(world.sql("SELECT name, role FROM folderstate"))
    assert roles["Sent"] == "sent" and roles["Archive"] == "archive" and roles["INBOX"] == "inbox"
    assert {roles["Junk"], roles["Trash"], roles["Drafts"]} == {"skip"}


@pytest.mark.sqlite
def test_sqlite_planner_statistics_are_refreshed_after_new_mail(world, imap_user):
    imap_user.deliver(message("stats@cust.com", "alice@ourco.com", msgid="stats@cust"))
    mid = world.add_imap("alice@ourco.com", imap_user)
    assert not world.sql("SELECT name FROM sqlite_master WHERE name = 'sqlite_stat1'")
    world.sync(mid)
    tables = {r[0] for r in world.sql("SELECT tbl FROM sqlite_stat1")}
    assert {"participant", "interaction", "contactaddress"} <= tables


def test_gmail_shape_archived_mail_in_all_mail_is_imported_once(world, imap_user_factory, dovecot_special_use):
    """Gmail keeps an archived conversation only in "All Mail" (\\All); mail still
    in the Inbox is in both. Both reach the timeline, each as one interaction."""
    user = imap_user_factory(server=dovecot_special_use)
    for name in ("Sent", "All Mail", "Starred"):
        user.create_folder(name)
    archived = message("Ann <ann@acme.com>", "alice@ourco.com", "Archived deal", msgid="arch1@acme")
    current = message("Ann <ann@acme.com>", "alice@ourco.com", "Still in inbox", msgid="cur1@acme")
    user.deliver(archived, folder="All Mail")
    user.deliver(current, folder="INBOX")
    user.deliver(current, folder="All Mail")
    user.deliver(current, folder="Starred")
    # A draft kept in All Mail was never sent: it is not mail to anyone.
    draft = message("alice@ourco.com", "Bo <bo@prospect.com>", "Unsent proposal", msgid="draft1@ourco")
    user.deliver(draft, folder="All Mail", flags="\\Draft")
    mid = world.add_imap("alice@ourco.com", user)
    assert world.sync(mid).ok
    roles = dict(world.sql("SELECT name, role FROM folderstate"))
    assert roles["All Mail"] == "archive" and roles["Starred"] == "skip"
    rows = world.sql(
        "SELECT i.subject, count(s.id) FROM interaction i JOIN interactionsource s "
        "ON s.interaction_id = i.id GROUP BY i.id, i.subject ORDER BY i.subject"
    )
    assert [tuple(r) for r in rows] == [("Archived deal", 1), ("Still in inbox", 2)]
    assert world.scalar("SELECT count(*) FROM contact WHERE primary_email = 'bo@prospect.com'") == 0


def test_a_stored_error_is_one_sentence_without_a_stray_period_and_without_the_fix():
    from app.services.mailboxes import fix_for
    from sync.engine import _plain

    assert (
        _plain("connection refused while connecting: is the host and port right?")
        == "connection refused while connecting: is the host and port right?"
    )
    login = _plain("login refused by the server ([AUTHENTICATIONFAILED] Authentication failed.)")
    assert login.endswith("failed.).") and "set-password" not in login
    assert "set-password" in fix_for("auth", "imap")
    # A connector's fix code chooses the advice (a Microsoft 365 sign-in to renew), words never do.
    assert "add-m365" in fix_for("auth", "m365", "sign_in") and "set-password" not in fix_for("auth", "m365", "sign_in")
    assert fix_for(None) is None


def test_the_server_words_of_a_refused_login_are_shown_as_text_not_python_bytes():
    from imapclient.exceptions import LoginError

    from connectors.imap import server_text, translate

    # imapclient wraps imaplib's bytes in str(): "b'[AUTHENTICATIONFAILED] Authentication failed.'"
    wrapped = LoginError(str(b"[AUTHENTICATIONFAILED] Authentication failed."))
    assert server_text(wrapped) == "[AUTHENTICATIONFAILED] Authentication failed."
    assert "b'" not in str(translate(wrapped, "logging in"))
    assert server_text(LoginError(b"[AUTH] nope")) == "[AUTH] nope"
    assert server_text(OSError("plain words")) == "plain words"


def test_on_postgresql_an_import_leaves_the_planner_statistics_of_what_it_filled(tmp_path, imap_user, request):
    # Autovacuum analyses a grown table only a while later: until then the follow-up sweep that ends
    # the import, and every lookup, planned on the empty tables (the sweep: 7.8 s against 0.09 s at
    # 20,000 messages). An incremental run leaves it to autovacuum.
    world = make_world(tmp_path, url=request.getfixturevalue("postgres_migrated_url"))
    for i in range(3):
        imap_user.deliver(message("Jane <jane@acme.com>", "alice@ourco.com", f"Deal {i}", msgid=f"deal-{i}@acme.com"))
    mid = world.add_imap("alice@ourco.com", imap_user)

    def analysed() -> dict:
        return dict(
            world.sql(
                "SELECT relname, last_analyze FROM pg_stat_user_tables WHERE relname IN ('participant', 'followup')"
            )
        )

    before = analysed()
    assert world.sync(mid).ok
    after = analysed()
    assert all(after[t] is not None and after[t] != before.get(t) for t in ("participant", "followup")), after
    imap_user.deliver(message("Jane <jane@acme.com>", "alice@ourco.com", "Deal 3", msgid="deal-3@acme.com"))
    assert world.sync(mid).ok
    assert analysed() == after


def test_the_senders_copy_with_its_bcc_raises_the_count_of_recipients_not_kept_read_after_a_recipients_copy(
    tmp_path, imap_user_factory
):
    """A Bcc is in the sender's copy alone: read after a recipient's copy (stored with no Bcc),
    it adds its first 500 people and raises the count of the rest, never lowers it."""
    world = make_world(tmp_path)
    bob, alice = imap_user_factory(), imap_user_factory()
    guests = ", ".join(f"guest{i}@crowd.example" for i in range(600))
    head = ("alice@ourco.com", "carol@acme.com", "Launch")
    bob.deliver(message(*head, msgid="launch@ourco.com", cc="bob@ourco.com"))
    alice.deliver(message(*head, msgid="launch@ourco.com", cc="bob@ourco.com", extra=f"Bcc: {guests}"), folder="Sent")
    counted = "SELECT recipients_not_kept FROM interaction WHERE message_key = 'launch@ourco.com'"
    people = (
        "SELECT COUNT(*) FROM participant p JOIN interaction i ON i.id = p.interaction_id "
        "WHERE i.message_key = 'launch@ourco.com'"
    )
    assert world.sync(world.add_imap("bob@ourco.com", bob)).ok
    assert (world.scalar(counted), world.scalar(people)) == (0, 3)
    assert world.sync(world.add_imap("alice@ourco.com", alice)).ok
    assert (world.scalar(counted), world.scalar(people)) == (100, 503)  # Alice, Carol, Bob and 500 guests
    assert world.sync(world.add_imap("bob@ourco.com", bob)).ok  # read again: never lowered
    assert world.scalar(counted) == 100
