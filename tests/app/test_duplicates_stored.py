"""The stored duplicate candidates (what the console, the API and the CLI read) stay what a
fresh search of the whole organisation finds: after a merge, its undo, a dismissal, an
erasure, a mailbox removal and a renamed contact at once, and after new mail once the
scheduler's job has looked at it. Real IMAP sync (Dovecot) fills the timeline."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from app.db import read_only, write_transaction
from app.models.base import utcnow
from app.services import duplicates, mailboxes, people, privacy
from app.services.actor import Actor
from tests.app.test_duplicates import contact_of, deliver_world, pairs
from tests.world import NOW, make_world, message


def write(w, query: str) -> None:
    with write_transaction(w.rt.engine) as conn:
        conn.execute(text(query))


def fresh(w) -> list[dict]:
    with read_only(w.rt.engine) as conn:
        return duplicates.find_candidates(conn, w.org_id, limit=1000)


def stored(w) -> list[dict]:
    with read_only(w.rt.engine) as conn:
        return duplicates.stored_candidates(conn, w.org_id, limit=1000)


def assert_stored_is_fresh(w) -> list[dict]:
    now, searched = stored(w), fresh(w)
    assert now == searched
    # and no row is left behind for a pair that is gone (reading skips missing contacts)
    rows = w.sql(
        "SELECT contact_a, contact_b FROM duplicatecandidate s WHERE NOT EXISTS (SELECT 1 FROM duplicatedismissal d "
        "WHERE d.contact_a = s.contact_a AND d.contact_b = s.contact_b)"
    )
    assert sorted(f"{a}-{b}" for a, b in rows) == sorted(c["key"] for c in searched)
    return now


@pytest.fixture
def listed(tmp_path, imap_user):
    """A synced mailbox whose candidates were stored (the first view searches once)."""
    w = make_world(tmp_path)
    deliver_world(imap_user)
    mid = w.add_imap("alice@ourco.com", imap_user)
    assert w.sync(mid).ok
    first = duplicates.candidates(w.rt, w.org_id, limit=1000)
    assert len(first) == 5 and first == fresh(w)
    return w, mid


def test_the_first_view_searches_once_and_later_views_read_the_stored_rows(listed):
    w, _ = listed
    assert w.scalar("SELECT count(*) FROM duplicatecandidate") == 5
    # a row changed behind the service's back shows: the view reads the table, not a search
    write(w, "UPDATE duplicatecandidate SET confidence = 0.01 WHERE confidence = 0.95")
    assert duplicates.candidates(w.rt, w.org_id)[-1]["confidence"] == 0.01


def test_after_a_merge_and_its_undo_the_stored_list_is_a_fresh_search(listed):
    w, _ = listed
    op = Actor.operator(w.org_id)
    # Lee's work address merged into Dana's contact: Dana's contact is now on Lee's message under
    # Lee's name beside Lee's personal address, a pair no one had before; Lee's own pair goes
    dana, lee, lee_home = (contact_of(w, a) for a in ("dana@globex.com", "lee@initech.com", "lee.park@gmail.com"))
    merged = duplicates.merge(w.rt, op, dana, lee)
    found = pairs(assert_stored_is_fresh(w))
    assert found[frozenset({"dana@globex.com", "lee@initech.com", "lee.park@gmail.com"})]["key"] == (
        f"{min(dana, lee_home)}-{max(dana, lee_home)}"
    )
    duplicates.unmerge(w.rt, op, merged["audit_id"])
    assert len(assert_stored_is_fresh(w)) == 5
    # and the merge the console proposes: the pair goes, and comes back with the undo
    sam_new, sam_old = contact_of(w, "sam@newco.io"), contact_of(w, "sam@oldco.com")
    merged = duplicates.merge(w.rt, op, sam_new, sam_old)
    assert len(assert_stored_is_fresh(w)) == 4
    duplicates.unmerge(w.rt, op, merged["audit_id"])
    back = pairs(assert_stored_is_fresh(w))
    assert back[frozenset({"sam@oldco.com", "sam@newco.io"})]["keep_id"] == sam_new


def test_a_dismissed_pair_leaves_the_stored_list_as_it_leaves_the_search(listed):
    w, _ = listed
    dana, cole = contact_of(w, "dana@globex.com"), contact_of(w, "dana.cole@gmail.com")
    duplicates.dismiss(w.rt, Actor.operator(w.org_id), dana, cole)
    assert frozenset({"dana@globex.com", "dana.cole@gmail.com"}) not in pairs(assert_stored_is_fresh(w))
    assert len(stored(w)) == 4


def test_after_an_erasure_the_stored_list_is_a_fresh_search(listed):
    w, _ = listed
    privacy.erase_person(w.rt, Actor.operator(w.org_id), "lee.park@gmail.com", confirm=True)
    found = pairs(assert_stored_is_fresh(w))
    assert len(found) == 4 and not any("lee.park@gmail.com" in p for p in found)


def test_after_a_mailbox_removal_the_stored_list_is_a_fresh_search(listed, imap_user_factory):
    w, alice_id = listed
    # Bob's mailbox holds two of the messages that pair Dana's addresses and Sam's: they stay
    bob = imap_user_factory()
    day = timedelta(days=1)
    bob.deliver(
        message("Dana Cole <dana@globex.com>", "bob@ourco.com", "Project", msgid="d1@globex", when=NOW - 6 * day)
    )
    bob.deliver(
        message(
            "Dana Cole <dana.cole@gmail.com>",
            "bob@ourco.com",
            "Re: Project",
            msgid="d2@gmail",
            when=NOW - 5 * day,
            extra="In-Reply-To: <d1@globex>\r\nReferences: <d1@globex>",
        )
    )
    # and mail from both of Lee's addresses, but not the message that named both: they stay,
    # their pair goes with that message
    bob.deliver(
        message("alice@ourco.com", "Lee Park <lee.park@gmail.com>", "Re: Intro", msgid="l2@ourco", when=NOW - 2 * day)
    )
    bob.deliver(message("Lee Park <lee@initech.com>", "bob@ourco.com", "Hello Bob", msgid="l3@initech", when=NOW - day))
    bob_id = w.add_imap("bob@ourco.com", bob)
    assert w.sync(bob_id).ok
    duplicates.refresh_due(w.rt.engine)  # Bob's mail looked at
    assert_stored_is_fresh(w)
    mailboxes.remove(w.rt, Actor.operator(w.org_id), alice_id, purge=True)
    assert {"lee@initech.com", "lee.park@gmail.com"} <= {r[0] for r in w.sql("SELECT address FROM contactaddress")}
    found = pairs(assert_stored_is_fresh(w))
    assert list(found) == [frozenset({"dana@globex.com", "dana.cole@gmail.com"})]


def test_a_renamed_contact_changes_its_stored_pairs_at_once(listed):
    w, _ = listed
    kim = contact_of(w, "kim.lo@acme.com")
    people.update_contact(w.rt, Actor.operator(w.org_id), kim, {"name": "Kimberly Lo-Smith"})
    assert frozenset({"kim@acme.de", "kim.lo@acme.com"}) not in pairs(assert_stored_is_fresh(w))


def test_new_mail_joins_the_list_when_the_scheduler_looks_at_the_contacts_it_touched(listed, imap_user):
    w, mid = listed
    imap_user.deliver(
        message(
            "Rory Adams <rory.adams@acme.com>", "alice@ourco.com", "Hi", cc="Rory Adams <rory@umbrella.org>", msgid="n1"
        )
    )
    imap_user.deliver(message("Nia Berg <nia@initech.com>", "alice@ourco.com", "Hello", msgid="n2"))
    imap_user.deliver(  # an address change announced after the last whole search
        message(
            "Rory Smith <rory@initech.com>",
            "alice@ourco.com",
            "Moving",
            msgid="n4",
            body="Hi,\nmy new email address is rory@hooli.com from Monday.\n",
        )
    )
    imap_user.deliver(message("Nia Berg <nberg@initech.com>", "alice@ourco.com", "Hello again", msgid="n3"))
    assert w.sync(mid).ok
    new = set(pairs(fresh(w))) - set(pairs(stored(w)))
    assert new == {
        frozenset({"rory.adams@acme.com", "rory@umbrella.org"}),
        frozenset({"nia@initech.com", "nberg@initech.com"}),
        frozenset({"rory@initech.com", "rory@hooli.com"}),
    }  # not yet looked at
    with read_only(w.rt.engine) as conn:
        waiting = duplicates.freshness(conn, w.org_id)["waiting"]
    assert waiting >= 6  # each message's sender and recipient
    done = duplicates.refresh_due(w.rt.engine)
    assert [d["full"] for d in done] == [False]  # only the contacts of the new rows
    assert len(assert_stored_is_fresh(w)) == 8
    with read_only(w.rt.engine) as conn:
        assert duplicates.freshness(conn, w.org_id)["waiting"] == 0


def test_the_whole_organisation_is_searched_again_when_the_last_full_search_is_old(listed):
    w, _ = listed
    # a change no hook sees (written straight to the table) is found by the periodic full search
    write(w, "DELETE FROM duplicatecandidate")
    assert duplicates.refresh_due(w.rt.engine)[0]["full"] is False
    assert stored(w) == []
    later = utcnow() + timedelta(seconds=duplicates.FULL_REFRESH_SECONDS + 60)
    assert duplicates.refresh_due(w.rt.engine, now=later)[0]["full"] is True
    assert len(assert_stored_is_fresh(w)) == 5


def test_the_web_apps_scheduler_keeps_the_list_with_a_job_of_its_own(tmp_path):
    from fastapi.testclient import TestClient

    from app.api import create_app

    w = make_world(tmp_path)
    for email in ("rory.adams@acme.com", "radams@acme.com"):
        people.create_contact(w.rt, Actor.operator(w.org_id), email=email, name="Rory Adams")
    app = create_app(w.rt, run_scheduler=True)
    with TestClient(app):
        job = app.state.sync_service.scheduler.get_job("duplicate-candidates")
        assert job.trigger.interval == timedelta(seconds=duplicates.REFRESH_SECONDS)
        assert w.scalar("SELECT count(*) FROM duplicatescan") == 0
        job.func()  # what the scheduler runs: the organisation, never searched, is searched whole
    assert w.scalar("SELECT count(*) FROM duplicatecandidate") == 1 == len(stored(w))
