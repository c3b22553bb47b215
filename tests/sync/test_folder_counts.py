"""Each folder's message count (folderstate.messages, the "Messages" on the mailbox
page) equals the copies stored for that folder after every way copies come and
go: an IMAP expunge or UIDVALIDITY change (Dovecot), a Graph deletion or move
(the Graph fake), a CalDAV deletion (Radicale), a "never log" rule, an erasure,
a resync and a replayed batch. On SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
import threading
import time
from datetime import timedelta

import pytest

from app.db import write_transaction
from sync import copies
from tests.cli import cli_env, run_cli
from tests.connectors.test_ical import event, stamp, vcalendar
from tests.servers.dovecot import Dovecot
from tests.sync.test_calendar_sync import add_caldav
from tests.sync.test_graph_sync import CARLA, add_tenant_mailbox
from tests.sync.test_meetings import _calendar, _run, batch, meeting
from tests.world import NOW, json_value, make_world, message

ALICE, BOB = "alice@ourco.com", "bob@ourco.com"


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request, tmp_path):
    url = request.getfixturevalue("postgres_migrated_url") if request.param == "postgresql" else None
    return make_world(tmp_path, url=url)


def counts(world, mailbox_id: int) -> dict[str, tuple[int, int]]:
    """folder name -> (count shown, copies stored), for every folder of the mailbox."""
    return {
        r[0]: (r[1], r[2])
        for r in world.sql(
            "SELECT f.name, f.messages, (SELECT count(*) FROM interactionsource s WHERE s.folder_id = f.id) "
            "FROM folderstate f WHERE f.mailbox_id = :m",
            m=mailbox_id,
        )
    }


def assert_exact(world, *mailbox_ids: int) -> None:
    for mid in mailbox_ids:
        wrong = {name: c for name, c in counts(world, mid).items() if c[0] != c[1]}
        assert wrong == {}, f"mailbox {mid}: folder (count shown, copies stored)"


def admin(world, *args: str) -> None:
    """An admin's command, as they would run it (`threadline ...`, in-process: tests/cli.py) on the world's database."""
    settings = world.rt.settings
    proc = run_cli(args, cli_env(settings.data_dir, THREADLINE_DATABASE_URL=settings.database_url))
    assert proc.returncode == 0, proc.stderr


def expunge(imap_user, folder: str, uids: list[int]) -> None:
    client = imap_user.connect()
    client.select_folder(folder)
    client.delete_messages(uids)
    client.expunge()
    client.logout()


def test_an_imap_expunge_takes_the_copy_and_the_count_down(world, imap_user):
    for i in (1, 2, 3):
        imap_user.deliver(message("Carla <carla@acme.com>", ALICE, f"Offer {i}", msgid=f"offer-{i}@acme.com"))
    mid = world.add_imap(ALICE, imap_user)
    assert world.sync(mid).ok
    assert counts(world, mid)["INBOX"] == (3, 3)

    expunge(imap_user, "INBOX", [2])
    assert world.sync(mid).ok
    assert counts(world, mid)["INBOX"] == (2, 2)
    # The mail stays on the timeline (the company keeps what it learnt); only the copy goes.
    assert world.scalar("SELECT count(*) FROM interaction WHERE message_key = 'offer-2@acme.com'") == 1

    expunge(imap_user, "INBOX", [1, 3])
    imap_user.deliver(message("Carla <carla@acme.com>", ALICE, "Offer 4", msgid="offer-4@acme.com"))
    assert world.sync(mid).ok
    assert counts(world, mid)["INBOX"] == (1, 1)
    assert_exact(world, mid)


def skipped_counts(world, mailbox_id: int, folder: str) -> tuple[dict, int]:
    """A folder's skipped counts by reason, and the skipped items listed for it."""
    raw = world.scalar("SELECT skipped FROM folderstate WHERE mailbox_id = :m AND name = :f", m=mailbox_id, f=folder)
    rows = world.scalar(
        "SELECT count(*) FROM skippeditem WHERE mailbox_id = :m AND folder = :f", m=mailbox_id, f=folder
    )
    return json_value(raw) or {}, rows


def test_a_skipped_message_expunged_leaves_the_skipped_count_too(world, imap_user):
    """Without it, the skipped count stayed high: server count = stored + skipped could then
    add up while a copy was missing."""
    imap_user.deliver(message("Carla <carla@acme.com>", ALICE, "Offer", msgid="offer@acme.com"))
    for i in (1, 2):
        imap_user.deliver(message(f"Bob <{BOB}>", ALICE, f"Lunch {i}", msgid=f"lunch-{i}@ourco.com"))
    mid = world.add_imap(ALICE, imap_user)
    assert world.sync(mid).ok
    assert skipped_counts(world, mid, "INBOX") == ({"internal": 2}, 2)
    expunge(imap_user, "INBOX", [2])  # Lunch 1
    assert world.sync(mid).ok
    assert skipped_counts(world, mid, "INBOX") == ({"internal": 1}, 1)
    mailbox = json_value(world.scalar("SELECT skipped FROM mailbox WHERE id = :m", m=mid))
    assert mailbox == {"internal": 1}
    assert counts(world, mid)["INBOX"] == (1, 1)


def test_a_skipped_graph_message_deleted_leaves_the_skipped_count(world, graph):
    mid = add_tenant_mailbox(world, graph)
    kept = graph.add_message(ALICE, internet_message_id="<deal@acme.com>", subject="Deal", sender=CARLA)
    lunch = graph.add_message(ALICE, internet_message_id="<lunch@ourco.com>", subject="Lunch", sender=("Bob", BOB))
    assert world.sync(mid).ok
    assert skipped_counts(world, mid, "Inbox") == ({"internal": 1}, 1)
    graph.update_message(ALICE, lunch, subject="Lunch, moved to Friday")  # listed again: counted once
    assert world.sync(mid).ok
    assert skipped_counts(world, mid, "Inbox") == ({"internal": 1}, 1)
    graph.delete_message(ALICE, lunch)
    assert world.sync(mid).ok
    assert skipped_counts(world, mid, "Inbox") == ({}, 0)
    assert counts(world, mid)["Inbox"] == (1, 1) and kept


def test_an_unreadable_graph_message_listed_again_is_counted_once_and_leaves_with_its_deletion(world, graph):
    mid = add_tenant_mailbox(world, graph)
    graph.add_message(ALICE, internet_message_id="<deal@acme.com>", subject="Deal", sender=CARLA)
    broken = graph.add_message(ALICE, subject="No sender", extra={"from": None, "sender": None})
    assert world.sync(mid).ok
    issues = "SELECT count(*) FROM syncissue WHERE mailbox_id = :m"
    assert skipped_counts(world, mid, "Inbox")[0] == {"unreadable": 1} and world.scalar(issues, m=mid) == 1
    graph.update_message(ALICE, broken, subject="Still no sender")  # listed again, still unreadable
    assert world.sync(mid).ok
    assert skipped_counts(world, mid, "Inbox")[0] == {"unreadable": 1}
    graph.delete_message(ALICE, broken)
    assert world.sync(mid).ok
    assert skipped_counts(world, mid, "Inbox")[0] == {} and world.scalar(issues, m=mid) == 0
    assert counts(world, mid)["Inbox"] == (1, 1)


# Servers that do not say what left a folder: one without CONDSTORE at all (as many
# hosted and older servers), and one with CONDSTORE but no QRESYNC (as Gmail).
_NO_QRESYNC = {
    "plain": "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT LITERAL+ UIDPLUS NAMESPACE UNSELECT CHILDREN MOVE",
    "condstore": "IMAP4rev1 SASL-IR ID ENABLE IDLE LITERAL+ UIDPLUS NAMESPACE UNSELECT CHILDREN MOVE CONDSTORE",
}


@pytest.fixture(scope="module", params=sorted(_NO_QRESYNC))
def dovecot_without_qresync(request, tmp_path_factory):
    server = Dovecot(
        tmp_path_factory.mktemp("dovecot-no-qresync"), extra_config=f"imap_capability = {_NO_QRESYNC[request.param]}"
    )
    server.start()
    yield server
    server.stop()


def server_ids(imap_user, folder: str = "INBOX") -> set[str]:
    client = imap_user.connect()
    uidvalidity = client.select_folder(folder, readonly=True)[b"UIDVALIDITY"]
    uids = client.search(["ALL"])
    client.logout()
    return {f"{uidvalidity}/{uid}" for uid in uids}


def stored_ids(world, mailbox_id: int) -> set[str]:
    return {r[0] for r in world.sql("SELECT remote_id FROM interactionsource WHERE mailbox_id = :m", m=mailbox_id)}


def test_without_qresync_an_expunge_still_takes_the_copy_and_the_skipped_count_down(
    world, imap_user_factory, dovecot_without_qresync
):
    """The server says nothing of what left; STATUS says that something did, and the folder's
    listing says what. Before, the copies and skipped counts of expunged mail stayed for
    good on such servers, so the reconciliation could add up while a copy was missing."""
    user = imap_user_factory(dovecot_without_qresync)
    for i in (1, 2, 3, 4):
        user.deliver(message("Carla <carla@acme.com>", ALICE, f"Offer {i}", msgid=f"offer-{i}@acme.com"))
    user.deliver(message(f"Bob <{BOB}>", ALICE, "Lunch", msgid="lunch@ourco.com"))  # internal: skipped
    mid = world.add_imap(ALICE, user)
    assert world.sync(mid).ok
    assert counts(world, mid)["INBOX"] == (4, 4)
    assert skipped_counts(world, mid, "INBOX") == ({"internal": 1}, 1)

    expunge(user, "INBOX", [2, 5])  # Offer 2 and the lunch; nothing new, UIDNEXT stays
    assert world.sync(mid).ok
    assert counts(world, mid)["INBOX"] == (3, 3)
    assert skipped_counts(world, mid, "INBOX") == ({}, 0)
    assert stored_ids(world, mid) == server_ids(user)
    # The mail stays on the timeline (the company keeps what it learnt); only the copy goes.
    assert world.scalar("SELECT count(*) FROM interaction WHERE message_key = 'offer-2@acme.com'") == 1

    # New mail and an expunge in one interval: MESSAGES grew by less than UIDNEXT moved. A folder
    # is listed at most every LISTING_SECONDS: this one was a moment ago, so the listing is owed.
    user.deliver(message("Carla <carla@acme.com>", ALICE, "Offer 5", msgid="offer-5@acme.com"))
    user.deliver(message("Carla <carla@acme.com>", ALICE, "Offer 6", msgid="offer-6@acme.com"))
    expunge(user, "INBOX", [1])
    assert world.sync(mid).ok
    assert len(stored_ids(world, mid)) == 5 and len(server_ids(user)) == 4
    assert world.sync(mid).ok  # still owed, not forgotten: nothing else says the folder changed
    assert len(stored_ids(world, mid)) == 5
    a_while_later(world, mid)
    assert world.sync(mid).ok
    assert counts(world, mid)["INBOX"] == (4, 4)
    assert stored_ids(world, mid) == server_ids(user)
    assert_exact(world, mid)

    # Mail expunged before it was ever read: a listing for nothing, nothing else changes.
    user.deliver(message("Carla <carla@acme.com>", ALICE, "Offer 7", msgid="offer-7@acme.com"))
    expunge(user, "INBOX", [max(int(r.split("/")[1]) for r in server_ids(user))])
    a_while_later(world, mid)
    assert world.sync(mid).ok
    assert stored_ids(world, mid) == server_ids(user)
    assert world.scalar("SELECT count(*) FROM interaction WHERE message_key = 'offer-7@acme.com'") == 0

    mailbox = json_value(world.scalar("SELECT skipped FROM mailbox WHERE id = :m", m=mid))
    assert mailbox in ({}, None)


def a_while_later(world, mailbox_id: int) -> None:
    """The folders' last listing (connectors/imap.py `listing_due`) made two hours ago."""
    from sqlalchemy import select, update

    from app.models import FolderState

    fs = FolderState.__table__
    with write_transaction(world.rt.engine) as conn:
        for fid, cursor in conn.execute(select(fs.c.id, fs.c.cursor).where(fs.c.mailbox_id == mailbox_id)).all():
            if cursor.get("listed_at"):
                aged = {**cursor, "listed_at": "2000-01-01T00:00:00Z"}
                conn.execute(update(fs).where(fs.c.id == fid).values(cursor=aged))


def test_without_qresync_a_short_answer_to_the_listing_takes_nothing_off(
    world, imap_user_factory, dovecot_without_qresync
):
    """A listing with fewer UIDs than the folder holds (mail expunged meanwhile, a server cutting
    its answer short) would take off copies of mail still there: it is not trusted, and is owed."""
    from connectors import imap

    user = imap_user_factory(dovecot_without_qresync)
    for i in (1, 2, 3):
        user.deliver(message("Carla <carla@acme.com>", ALICE, f"Offer {i}", msgid=f"offer-{i}@acme.com"))
    mid = world.add_imap(ALICE, user)
    assert world.sync(mid).ok
    expunge(user, "INBOX", [2])
    real = imap.ImapConnector._search

    def short(self, criteria, folder):
        found = real(self, criteria, folder)
        return found[:1] if criteria == ["ALL"] else found

    imap.ImapConnector._search = short
    try:
        assert world.sync(mid, fetch_in_child=False).ok
    finally:
        imap.ImapConnector._search = real
    assert len(stored_ids(world, mid)) == 3  # nothing taken off on a short answer
    assert world.sync(mid, fetch_in_child=False).ok  # owed, and due: it was never done
    assert stored_ids(world, mid) == server_ids(user)


def test_without_qresync_an_invitation_expunged_keeps_its_meeting_as_with_qresync(
    world, imap_user_factory, dovecot_without_qresync
):
    """Outlook deletes an invitation once it is accepted: the meeting it brought stays on the
    timeline, whether or not the server says what left."""
    from tests.connectors.test_imip import intro_call

    user = imap_user_factory(dovecot_without_qresync)
    user.deliver(intro_call(ALICE))
    user.deliver(message("Jane <jane@acme.com>", ALICE, "Deal", msgid="deal@acme.com"))
    mid = world.add_imap(ALICE, user)
    assert world.sync(mid).ok
    meeting_copies = "SELECT count(*) FROM interactionsource WHERE mailbox_id = :m AND remote_id LIKE '%#ics%'"
    assert world.scalar(meeting_copies, m=mid) == 1
    expunge(user, "INBOX", [1])
    assert world.sync(mid).ok
    assert {r for r in stored_ids(world, mid) if "#ics" not in r} == server_ids(user)
    assert world.scalar(meeting_copies, m=mid) == 1
    assert world.scalar("SELECT count(*) FROM interaction WHERE kind = 'meeting'") == 1


def test_an_unreadable_graph_message_readable_once_changed_is_stored_and_counted_unreadable_no_more(world, graph):
    mid = add_tenant_mailbox(world, graph)
    broken = graph.add_message(ALICE, subject="No sender", extra={"from": None, "sender": None})
    assert world.sync(mid).ok
    issues = "SELECT count(*) FROM syncissue WHERE mailbox_id = :m"
    assert skipped_counts(world, mid, "Inbox")[0] == {"unreadable": 1} and world.scalar(issues, m=mid) == 1
    carla = {"emailAddress": {"name": CARLA[0], "address": CARLA[1]}}
    graph.update_message(ALICE, broken, subject="Sender back", **{"from": carla, "sender": carla})
    assert world.sync(mid).ok
    assert skipped_counts(world, mid, "Inbox")[0] == {} and world.scalar(issues, m=mid) == 0
    assert counts(world, mid)["Inbox"] == (1, 1)
    assert json_value(world.scalar("SELECT skipped FROM mailbox WHERE id = :m", m=mid)) in ({}, None)


def test_mail_an_admin_took_off_is_counted_once_when_listed_again_and_leaves_with_its_deletion(world, graph):
    """A rule takes Carla's message off the timeline: `removed` counts it. Read in Outlook, it is
    listed again and skipped by the rule: it was counted a second time (skipped too), and once
    deleted it stayed in `removed` for good, either way hiding a lost copy."""
    mid = add_tenant_mailbox(world, graph)
    deal = graph.add_message(ALICE, internet_message_id="<deal@acme.com>", subject="Deal", sender=CARLA)
    graph.add_message(ALICE, internet_message_id="<other@third.com>", subject="Other", sender=("Dan", "dan@third.com"))
    assert world.sync(mid).ok
    removed = "SELECT removed FROM folderstate WHERE mailbox_id = :m AND name = 'Inbox'"
    admin(world, "rule", "add", "acme.com")
    assert (world.scalar(removed, m=mid), counts(world, mid)["Inbox"]) == (1, (1, 1))
    graph.update_message(ALICE, deal, isRead=True)  # listed again by the next delta round
    assert world.sync(mid).ok
    # counted once, now as what it is: skipped by the rule
    assert (world.scalar(removed, m=mid), skipped_counts(world, mid, "Inbox")) == (0, ({"excluded by rule": 1}, 1))
    graph.delete_message(ALICE, deal)
    assert world.sync(mid).ok
    assert (world.scalar(removed, m=mid), skipped_counts(world, mid, "Inbox")) == (0, ({}, 0))
    assert counts(world, mid)["Inbox"] == (1, 1)


def test_messages_imported_are_the_messages_held_not_a_tally_of_listings(world, graph):
    """Each time Graph listed a message again (read, flagged) the mailbox's "imported" grew by one,
    and a message deleted on the server was never taken off it."""
    from tests.app.test_reconciliation import api

    mid = add_tenant_mailbox(world, graph)
    deal = graph.add_message(ALICE, internet_message_id="<deal@acme.com>", subject="Deal", sender=CARLA)
    graph.add_message(ALICE, internet_message_id="<other@third.com>", subject="Other", sender=("Dan", "dan@third.com"))
    assert world.sync(mid).ok
    client = api(world)
    imported = lambda: client.get(f"/api/mailboxes/{mid}").json()["messages_imported"]  # noqa: E731
    assert imported() == 2
    for n in range(3):
        graph.update_message(ALICE, deal, isRead=bool(n % 2 == 0))
        assert world.sync(mid).ok
    assert imported() == 2
    graph.delete_message(ALICE, deal)
    assert world.sync(mid).ok
    assert imported() == 1


def test_a_graph_message_that_changes_state_is_counted_once_under_what_it_is_now(world, graph):
    """Unreadable, then readable but skipped (internal), then stored, then unreadable again: each
    listing counted it under its new state and kept the old one too (stored + skipped then exceeded
    the server's count, hiding a lost copy)."""
    mid = add_tenant_mailbox(world, graph)
    graph.add_message(ALICE, internet_message_id="<deal@acme.com>", subject="Deal", sender=CARLA)
    item = graph.add_message(ALICE, subject="No sender", extra={"from": None, "sender": None})
    assert world.sync(mid).ok
    issues = "SELECT count(*) FROM syncissue WHERE mailbox_id = :m"
    assert (skipped_counts(world, mid, "Inbox"), world.scalar(issues, m=mid)) == (({"unreadable": 1}, 0), 1)
    bob = {"emailAddress": {"name": "Bob", "address": BOB}}
    graph.update_message(ALICE, item, **{"from": bob, "sender": bob})  # a colleague's: internal
    assert world.sync(mid).ok
    assert (skipped_counts(world, mid, "Inbox"), world.scalar(issues, m=mid)) == (({"internal": 1}, 1), 0)
    carla = {"emailAddress": {"name": CARLA[0], "address": CARLA[1]}}
    graph.update_message(ALICE, item, **{"from": carla, "sender": carla})
    assert world.sync(mid).ok
    assert (skipped_counts(world, mid, "Inbox"), world.scalar(issues, m=mid)) == (({}, 0), 0)
    assert counts(world, mid)["Inbox"] == (2, 2)
    graph.update_message(ALICE, item, **{"from": None, "sender": None})
    assert world.sync(mid).ok
    assert (skipped_counts(world, mid, "Inbox"), world.scalar(issues, m=mid)) == (({"unreadable": 1}, 0), 1)
    assert counts(world, mid)["Inbox"] == (1, 1)  # its copy went; the email stays on the timeline
    mailbox = json_value(world.scalar("SELECT skipped FROM mailbox WHERE id = :m", m=mid))
    assert mailbox == {"unreadable": 1}


def test_mail_deleted_before_an_admins_re_read_leaves_with_it(world, imap_user):
    """Read again from the start (a resync, a rule removed), the folder's cursor is gone, and with
    it what would tell of mail deleted since the last run: its copy stayed for good."""
    from app.services import mailboxes
    from app.services.actor import Actor

    for i in (1, 2, 3):
        imap_user.deliver(message("Carla <carla@acme.com>", ALICE, f"Offer {i}", msgid=f"offer-{i}@acme.com"))
    mid = world.add_imap(ALICE, imap_user)
    assert world.sync(mid).ok
    expunge(imap_user, "INBOX", [2])
    mailboxes.resync(world.rt, Actor.operator(world.org_id), mid)
    assert world.sync(mid).ok
    assert stored_ids(world, mid) == server_ids(imap_user)
    assert counts(world, mid)["INBOX"] == (2, 2)
    assert world.scalar("SELECT count(*) FROM interaction WHERE message_key = 'offer-2@acme.com'") == 1  # stays
    assert_exact(world, mid)


def test_a_mailbox_read_again_counts_its_unreadable_messages_again(world, graph):
    """Read again (an admin's resync, a rule removed), the unreadable rows stayed while their
    counts restarted: found again, they counted as known, and the folder showed them missing."""
    from app.services import mailboxes
    from app.services.actor import Actor

    mid = add_tenant_mailbox(world, graph)
    graph.add_message(ALICE, internet_message_id="<deal@acme.com>", subject="Deal", sender=CARLA)
    graph.add_message(ALICE, subject="No sender", extra={"from": None, "sender": None})
    assert world.sync(mid).ok
    assert skipped_counts(world, mid, "Inbox")[0] == {"unreadable": 1}
    mailboxes.resync(world.rt, Actor.operator(world.org_id), mid)
    assert world.sync(mid).ok
    assert skipped_counts(world, mid, "Inbox")[0] == {"unreadable": 1}
    assert json_value(world.scalar("SELECT skipped FROM mailbox WHERE id = :m", m=mid)) == {"unreadable": 1}
    assert world.scalar("SELECT count(*) FROM syncissue WHERE mailbox_id = :m", m=mid) == 1


def test_a_new_uidvalidity_leaves_the_count_of_what_the_folder_holds_now(world, imap_user):
    imap_user.create_folder("Archive")
    for i in (1, 2):
        imap_user.deliver(
            message("Carla <carla@acme.com>", ALICE, f"Old {i}", msgid=f"old-{i}@acme.com"), folder="Archive"
        )
    mid = world.add_imap(ALICE, imap_user)
    assert world.sync(mid).ok
    assert counts(world, mid)["Archive"] == (2, 2)

    imap_user.recreate_folder("Archive")
    imap_user.deliver(message("Carla <carla@acme.com>", ALICE, "Old 1", msgid="old-1@acme.com"), folder="Archive")
    assert world.sync(mid).ok
    assert counts(world, mid)["Archive"] == (1, 1)
    assert_exact(world, mid)


def test_a_graph_deletion_or_move_takes_the_count_down(world, graph):
    mid = add_tenant_mailbox(world, graph)
    archived = graph.add_message(
        ALICE,
        "archive",
        internet_message_id="<old-deal@acme.com>",
        subject="Old deal",
        sender=CARLA,
        to=[("Alice Rep", ALICE)],
    )
    inbox = graph.add_message(
        ALICE, internet_message_id="<new-deal@acme.com>", subject="New deal", sender=CARLA, to=[("Alice Rep", ALICE)]
    )
    demo = graph.add_event(
        ALICE,
        subject="Demo",
        start=NOW + timedelta(days=2),
        organizer=("Alice Rep", ALICE),
        attendees=[(*CARLA, "required", "accepted")],
        ical_uid="UID-DEMO",
    )
    assert world.sync(mid).ok
    before = counts(world, mid)
    assert (before["Archive"], before["Inbox"], before["calendar:Calendar"]) == ((1, 1), (1, 1), (1, 1))

    graph.delete_message(ALICE, archived)  # the only message of the folder
    graph.delete_event(ALICE, demo)
    assert world.sync(mid).ok
    after = counts(world, mid)
    assert (after["Archive"], after["Inbox"], after["calendar:Calendar"]) == ((0, 0), (1, 1), (0, 0))

    graph.move_message(ALICE, inbox, "archive")
    assert world.sync(mid).ok
    moved = counts(world, mid)
    assert (moved["Archive"], moved["Inbox"]) == ((1, 1), (0, 0))
    assert_exact(world, mid)


def test_a_caldav_deletion_takes_the_count_down(world, caldav_user):
    soon = NOW.replace(minute=0, second=0) + timedelta(days=4)
    caldav_user.put(
        "demo.ics",
        vcalendar(event("demo@ourco.com", stamp(soon), summary="Demo", attendees=(("carla@acme.com", "ACCEPTED"),))),
    )
    caldav_user.put(
        "weekly.ics",
        vcalendar(
            event(
                "weekly@ourco.com",
                stamp(soon + timedelta(hours=3)),
                summary="Weekly",
                attendees=(("dan@client.io", "ACCEPTED"),),
                extra="RRULE:FREQ=WEEKLY;COUNT=3",
            )
        ),
    )
    mid = add_caldav(world, ALICE, caldav_user)
    assert world.sync(mid).ok
    [(name, before)] = counts(world, mid).items()
    assert before == (4, 4)  # one event and three occurrences

    caldav_user.delete("weekly.ics")
    assert world.sync(mid).ok
    assert counts(world, mid) == {name: (1, 1)}
    caldav_user.delete("demo.ics")
    assert world.sync(mid).ok
    assert counts(world, mid) == {name: (0, 0)}


def test_a_replayed_batch_counts_its_copies_once(world):
    box = _calendar(world, ALICE)
    same = batch(meeting("e1"), meeting("e2", uid="m-2@acme.com"))
    _run(world, box, same)
    _run(world, box, same)  # as after a crash between commit and the cursor's use
    assert counts(world, box) == {"calendar:Work": (2, 2)}
    _run(world, box, batch(removed=["e1", "e1", "gone-long-ago"]))
    _run(world, box, batch(removed=["e1"]))
    assert counts(world, box) == {"calendar:Work": (1, 1)}


def test_rules_erasure_and_resync_keep_every_folder_count_exact(world, imap_user_factory):
    a, b = imap_user_factory(), imap_user_factory()
    a.deliver(message("Jane <jane@acme.com>", ALICE, "Only Alice", msgid="m1@acme"))
    a.deliver(message("Pat <pat@other.com>", ALICE, "Unrelated", msgid="m2@other"))
    a.deliver(message("Erin <erin@third.com>", ALICE, "Erase me", msgid="m3@third"))
    both = message("Jane <jane@acme.com>", ALICE, "Both saw it", cc=BOB, msgid="m4@acme")
    a.deliver(both)
    b.deliver(both)
    b.deliver(message("Erin <erin@third.com>", BOB, "Erase me too", msgid="m5@third"))
    box_a, box_b = world.add_imap(ALICE, a), world.add_imap(BOB, b)
    for mid in (box_a, box_b):
        assert world.sync(mid).ok
    assert (counts(world, box_a)["INBOX"], counts(world, box_b)["INBOX"]) == ((4, 4), (2, 2))

    admin(world, "rule", "add", "acme.com")
    assert (counts(world, box_a)["INBOX"], counts(world, box_b)["INBOX"]) == ((2, 2), (1, 1))
    admin(world, "privacy", "erase", "erin@third.com", "--yes")
    assert (counts(world, box_a)["INBOX"], counts(world, box_b)["INBOX"]) == ((1, 1), (0, 0))
    admin(world, "mailbox", "resync", str(box_a))
    assert counts(world, box_a)["INBOX"] == (1, 1)  # the copies stay, and so does their count
    assert world.sync(box_a).ok
    assert counts(world, box_a)["INBOX"] == (1, 1)
    assert_exact(world, box_a, box_b)


def test_two_writers_deleting_the_same_copy_take_it_from_the_count_once(world):
    box = _calendar(world, ALICE)
    _run(world, box, batch(meeting("e1"), meeting("e2", uid="m-2@acme.com")))
    engine, S = world.rt.engine, copies.S

    def remove() -> None:
        with write_transaction(engine) as conn:
            gone = copies.delete(conn, S.c.mailbox_id == box, S.c.remote_id == "e1")
            copies.count_changed(conn, {fid: -n for fid, n in gone.items()})

    with write_transaction(engine) as conn:  # the first writer holds its deletion open ...
        gone = copies.delete(conn, S.c.mailbox_id == box, S.c.remote_id == "e1")
        copies.count_changed(conn, {fid: -n for fid, n in gone.items()})
        second = threading.Thread(target=remove)
        second.start()  # ... while the second one waits for it (row lock, or SQLite's write lock)
        time.sleep(0.5)
        assert second.is_alive()
    second.join(timeout=30)
    assert not second.is_alive()
    assert counts(world, box) == {"calendar:Work": (1, 1)}


def test_a_wider_backfill_window_imports_the_older_mail_a_clean_import_would_have(world, imap_user, tmp_path, request):
    """backfill_days raised after the first import: the folder had been read from the old window's
    first day, and nothing read the mail between. Now it is read (newest first, resumable), and
    the folder is counted against the wider window."""
    from tests.app.test_reconciliation import api
    from tests.faults.timeline import assert_same_timeline, timeline

    for days, msgid in ((3, "new@acme"), (50, "mid@acme"), (200, "old@acme"), (500, "ancient@acme")):
        imap_user.deliver(
            message("carla@acme.com", "alice@ourco.com", msgid, msgid=msgid), internaldate=NOW - timedelta(days=days)
        )
    world.set_org(backfill_days=30)
    mid = world.add_imap("alice@ourco.com", imap_user)
    assert world.sync(mid).ok
    keys = "SELECT message_key FROM interaction ORDER BY message_key"
    assert [r[0] for r in world.sql(keys)] == ["new@acme"]
    world.set_org(backfill_days=365)
    assert world.sync(mid).ok
    assert [r[0] for r in world.sql(keys)] == ["mid@acme", "new@acme", "old@acme"]
    (inbox,) = [f for f in api(world).get(f"/api/mailboxes/{mid}").json()["folders"] if f["name"] == "INBOX"]
    assert (inbox["server_count"], inbox["stored"], inbox["reconciliation"]) == (3, 3, "reconciled")
    assert world.sync(mid).ok  # nothing owed any more: the folder is unchanged
    url = None
    if world.rt.engine.dialect.name == "postgresql":  # the clean run on the same kind of database
        from tests import world as worlds

        url = worlds.migrated_database(request.getfixturevalue("postgres"), f"t_{secrets.token_hex(6)}")
    clean = make_world(tmp_path / "clean", url=url)
    clean.set_org(backfill_days=365)
    assert clean.sync(clean.add_imap("alice@ourco.com", imap_user)).ok
    assert_same_timeline(
        timeline(world, skip=("unreadable", "skipped_items")),
        timeline(clean, skip=("unreadable", "skipped_items")),
        what="a folder whose backfill window was made wider",
    )
