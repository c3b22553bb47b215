"""Duplicate contacts on a timeline filled by a real IMAP sync (Dovecot): candidates with
their evidence, merge keeping every row, undo from the audit log restoring the prior state
row for row, later mail to a merged address, erasure and "never log" after a merge."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from app.db import read_only, write_transaction
from app.services import activity, deals, duplicates, followups, people, privacy, rules, timeline
from app.services.actor import Actor
from app.services.errors import Conflict, Forbidden, Invalid, NotFound
from sync import stats
from tests.world import NOW, make_world, message

# Every table that holds a contact id or what a merge changes, compared row for row.
TABLES = {
    "contact": "id",
    "contactaddress": "id",
    "participant": "id",
    "interaction": "id",
    "followup": "id",
    "dealcontact": "deal_id, contact_id",
    "contactstats": "contact_id",
    "contactcolleague": "contact_id, user_id",
    "company": "id",
    "interactionsource": "id",
}


def tables(w) -> dict[str, list[tuple]]:
    return {t: [tuple(r) for r in w.sql(f"SELECT * FROM {t} ORDER BY {key}")] for t, key in TABLES.items()}


def counts(w) -> dict[str, int]:
    return {t: w.scalar(f"SELECT count(*) FROM {t}") for t in TABLES}


def contact_of(w, address: str) -> int:
    return w.scalar("SELECT contact_id FROM contactaddress WHERE address = :a", a=address)


def timeline_ids(w, contact_id: int) -> set[int]:
    with read_only(w.rt.engine) as conn:
        page = timeline.contact_timeline(conn, w.org_id, contact_id, limit=100)
    assert page["next_cursor"] is None
    return {i["id"] for i in page["items"]}


def deliver_world(imap_user) -> None:
    day = timedelta(days=1)
    mail = [
        # the same person at one company under two addresses
        message("Rory Adams <rory.adams@acme.com>", "alice@ourco.com", "Pricing", msgid="r1@acme", when=NOW - 9 * day),
        message("Adams, Rory <radams@acme.com>", "alice@ourco.com", "Order", msgid="r2@acme", when=NOW - 8 * day),
        message("alice@ourco.com", "Rory Adams <radams@acme.com>", "Re: Order", msgid="r3@ourco", when=NOW - 7 * day),
        # a work and a personal address in one thread
        message("Dana Cole <dana@globex.com>", "alice@ourco.com", "Project", msgid="d1@globex", when=NOW - 6 * day),
        message(
            "Dana Cole <dana.cole@gmail.com>",
            "alice@ourco.com",
            "Re: Project",
            msgid="d2@gmail",
            when=NOW - 5 * day,
            extra="In-Reply-To: <d1@globex>\r\nReferences: <d1@globex>",
        ),
        # an address change announced in mail
        message(
            "Sam Old <sam@oldco.com>",
            "alice@ourco.com",
            "Moving on",
            msgid="s1@oldco",
            when=NOW - 4 * day,
            body="Hi Alice,\nmy new email address is sam@newco.io, please update your records.\nSam\n",
        ),
        message("Samuel <sam@newco.io>", "alice@ourco.com", "Hello from NewCo", msgid="s2@newco", when=NOW - 3 * day),
        # one name at acme.de and acme.com: two companies of the same name
        message("Kim Lo <kim@acme.de>", "alice@ourco.com", "Angebot", msgid="k1@acme.de", when=NOW - 3 * day),
        message("Kim Lo <kim.lo@acme.com>", "alice@ourco.com", "Offer", msgid="k2@acme", when=NOW - 3 * day),
        # a work address writing with the personal one in copy, under the same name
        message(
            "Lee Park <lee@initech.com>",
            "alice@ourco.com",
            "Intro",
            cc="Lee Park <lee.park@gmail.com>",
            msgid="l1@initech",
            when=NOW - 3 * day,
        ),
        message("alice@ourco.com", "Lee Park <lee.park@gmail.com>", "Re: Intro", msgid="l2@ourco", when=NOW - 2 * day),
        # different people sharing a first name (or a whole name) at different companies
        message("Rory Smith <rory@initech.com>", "alice@ourco.com", "Hi", msgid="x1@initech", when=NOW - 2 * day),
        message("Rory Jones <rory@umbrella.com>", "alice@ourco.com", "Hi", msgid="x2@umbrella", when=NOW - 2 * day),
        message("Rory <rory@hooli.com>", "alice@ourco.com", "Hi", msgid="x3@hooli", when=NOW - 2 * day),
        message("Rory <rory@piedpiper.com>", "alice@ourco.com", "Hi", msgid="x4@pied", when=NOW - 2 * day),
        message("Rory Adams <rory@umbrella.org>", "alice@ourco.com", "Hi", msgid="x5@umbrella", when=NOW - 2 * day),
    ]
    for m in mail:
        imap_user.deliver(m)


@pytest.fixture
def synced(tmp_path, imap_user):
    w = make_world(tmp_path)
    deliver_world(imap_user)
    mid = w.add_imap("alice@ourco.com", imap_user)
    assert w.sync(mid).ok
    return w, mid


def pairs(found: list[dict]) -> dict[frozenset, dict]:
    return {frozenset(a for c in cand["contacts"] for a in c["addresses"]): cand for cand in found}


def candidates(w) -> list[dict]:
    with read_only(w.rt.engine) as conn:
        return duplicates.find_candidates(conn, w.org_id)


def test_candidates_from_a_synced_mailbox_come_with_their_evidence(synced):
    w, _ = synced
    found = pairs(candidates(w))
    rory = found.pop(frozenset({"rory.adams@acme.com", "radams@acme.com"}))
    assert [e["kind"] for e in rory["evidence"]] == ["same_name_same_company"]
    assert rory["evidence"][0]["examples"][0]["text"] in (
        "both are named Rory Adams at acme.com",
        "both are named Adams, Rory at acme.com",
    )
    assert rory["confidence"] == 0.8
    dana = found.pop(frozenset({"dana@globex.com", "dana.cole@gmail.com"}))
    assert [e["kind"] for e in dana["evidence"]] == ["same_name_in_thread"]
    assert dana["evidence"][0]["examples"][0]["subject"] == "Re: Project"
    sam = found.pop(frozenset({"sam@oldco.com", "sam@newco.io"}))
    assert [e["kind"] for e in sam["evidence"]] == ["address_change"]
    assert sam["confidence"] == 0.95 and sam["keep_id"] == contact_of(w, "sam@newco.io")
    assert "sam@oldco.com wrote that their new address is sam@newco.io" == sam["evidence"][0]["examples"][0]["text"]
    kim = found.pop(frozenset({"kim@acme.de", "kim.lo@acme.com"}))
    assert [e["kind"] for e in kim["evidence"]] == ["same_name_linked_companies"] and kim["confidence"] == 0.6
    lee = found.pop(frozenset({"lee@initech.com", "lee.park@gmail.com"}))
    assert [e["kind"] for e in lee["evidence"]] == ["same_name_on_message"]
    assert lee["evidence"][0]["examples"][0]["subject"] == "Intro"
    assert lee["keep_id"] == contact_of(w, "lee.park@gmail.com")  # the one with more mail is kept
    # The Rorys at initech, umbrella, hooli, piedpiper and umbrella.org are different people
    # (umbrella.com and umbrella.org are linked by name, but Rory Jones is not Rory Adams).
    assert found == {}


def test_a_dismissed_candidate_is_not_proposed_again(synced):
    w, _ = synced
    admin = Actor.operator(w.org_id)
    a, b = contact_of(w, "rory.adams@acme.com"), contact_of(w, "radams@acme.com")
    duplicates.dismiss(w.rt, admin, b, a)
    duplicates.dismiss(w.rt, admin, a, b)  # twice: remembered once
    assert frozenset({"rory.adams@acme.com", "radams@acme.com"}) not in pairs(candidates(w))
    assert len(candidates(w)) == 4
    assert w.scalar("SELECT count(*) FROM duplicatedismissal") == 1
    with pytest.raises(Invalid):
        duplicates.dismiss(w.rt, admin, a, a)


def _decorate(w, loser: int, survivor: int) -> dict:
    """Give the contact to be merged a note, a task, a deal, tags and the key-account flag."""
    op = Actor.operator(w.org_id)
    with read_only(w.rt.engine) as conn:
        alice = followups.user_id_by_email(conn, w.org_id, "alice@ourco.com")
    activity.add_note(w.rt, op, loser, "Met Rory at the fair")
    activity.add_task(w.rt, op, loser, "Send the brochure", NOW + timedelta(days=2))
    people.update_contact(w.rt, op, loser, {"tags": ["fair", "vip"], "title": "Buyer"})
    people.update_contact(w.rt, op, survivor, {"tags": ["vip", "acme"]})
    followups.set_key_account(w.rt, op, kind="contact", target_id=loser)
    deals.create_pipeline(w.rt, op, name="Sales")
    both = deals.create_deal(w.rt, op, name="Both", owner_id=alice, contact_ids=[loser, survivor])
    only = deals.create_deal(w.rt, op, name="Only the merged one", owner_id=alice, contact_ids=[loser])
    return {"both": both["id"], "only": only["id"]}


def test_merge_keeps_every_row_and_undo_restores_the_prior_state_row_for_row(synced):
    w, _ = synced
    survivor, loser = contact_of(w, "rory.adams@acme.com"), contact_of(w, "radams@acme.com")
    made = _decorate(w, loser, survivor)
    union = timeline_ids(w, survivor) | timeline_ids(w, loser)
    assert len(union) == 5  # two emails in, one out, a note and a task
    before_rows, before_counts = tables(w), counts(w)
    assert w.scalar("SELECT count(*) FROM followup WHERE contact_id = :c", c=loser) >= 1

    result = duplicates.merge(w.rt, Actor.operator(w.org_id), survivor, loser)

    after = counts(w)
    # one contact and its summary row fewer; the deal both were on keeps the survivor only
    assert after == {
        **before_counts,
        "contact": before_counts["contact"] - 1,
        "contactstats": before_counts["contactstats"] - 1,
        "contactcolleague": before_counts["contactcolleague"] - 1,
        "dealcontact": before_counts["dealcontact"] - 1,
    }
    assert sorted(r[0] for r in w.sql("SELECT address FROM contactaddress WHERE contact_id = :c", c=survivor)) == [
        "radams@acme.com",
        "rory.adams@acme.com",
    ]
    assert timeline_ids(w, survivor) == union
    assert w.scalar("SELECT count(*) FROM participant WHERE contact_id = :c", c=loser) == 0
    assert w.scalar("SELECT count(*) FROM followup WHERE contact_id = :c", c=loser) == 0
    deal_people = w.sql("SELECT deal_id, contact_id FROM dealcontact ORDER BY deal_id")
    assert deal_people == [(made["both"], survivor), (made["only"], survivor)]
    card = w.sql("SELECT tags, key_account, title FROM contact WHERE id = :c", c=survivor)[0]
    assert card[1] and card[2] == "Buyer" and "fair" in str(card[0]) and "acme" in str(card[0])
    stats = w.sql("SELECT emails_in, emails_out FROM contactstats WHERE contact_id = :c", c=survivor)
    assert stats == [(2, 1)]
    event = w.sql("SELECT action, detail FROM auditevent WHERE id = :i", i=result["audit_id"])
    assert event[0][0] == "contact.merge"

    undone = duplicates.unmerge(w.rt, Actor.operator(w.org_id), result["audit_id"])
    assert undone["contact_id"] == loser
    assert tables(w) == before_rows
    with pytest.raises(Conflict, match="already undone"):
        duplicates.unmerge(w.rt, Actor.operator(w.org_id), result["audit_id"])


def test_new_mail_to_a_merged_address_lands_on_the_survivor_and_follows_it_back_on_undo(synced, imap_user):
    w, mid = synced
    survivor, loser = contact_of(w, "sam@newco.io"), contact_of(w, "sam@oldco.com")
    result = duplicates.merge(w.rt, Actor.operator(w.org_id), survivor, loser)
    imap_user.deliver(message("Sam Old <sam@oldco.com>", "alice@ourco.com", "Still here", msgid="s3@oldco"))
    assert w.sync(mid).ok
    later = w.sql("SELECT contact_id FROM participant WHERE address = 'sam@oldco.com' ORDER BY id")
    assert later == [(survivor,), (survivor,)]
    assert w.scalar("SELECT count(*) FROM contact WHERE id = :c", c=loser) == 0
    assert w.sql("SELECT emails_in FROM contactstats WHERE contact_id = :c", c=survivor) == [(3,)]
    duplicates.unmerge(w.rt, Actor.operator(w.org_id), result["audit_id"])
    assert w.sql("SELECT DISTINCT contact_id FROM participant WHERE address = 'sam@oldco.com'") == [(loser,)]
    # the company timelines too: the later mail goes back to the old company's timeline
    assert w.sql(
        "SELECT DISTINCT co.domain FROM participant p JOIN company co ON co.id = p.company_id "
        "WHERE p.address = 'sam@oldco.com'"
    ) == [("oldco.com",)]
    assert w.sql("SELECT emails_in FROM contactstats WHERE contact_id = :c", c=loser) == [(2,)]


def followup_of(w, thread_key: str) -> tuple:
    return w.sql("SELECT contact_id, company_id FROM followup WHERE thread_key = :t", t=thread_key)[0]


def company_of(w, domain: str) -> int:
    return w.scalar("SELECT id FROM company WHERE domain = :d", d=domain)


def test_follow_ups_go_with_their_mail_through_a_merge_later_mail_and_its_undo(synced, imap_user):
    w, mid = synced
    op = Actor.operator(w.org_id)
    survivor, loser = contact_of(w, "sam@newco.io"), contact_of(w, "sam@oldco.com")
    newco, oldco = company_of(w, "newco.io"), company_of(w, "oldco.com")
    assert followup_of(w, "s1@oldco") == (loser, oldco)
    result = duplicates.merge(w.rt, op, survivor, loser)
    # merged, the old mail's "you owe a reply" is the survivor's, at the survivor's company, as its mail is
    assert followup_of(w, "s1@oldco") == (survivor, newco)
    imap_user.deliver(message("Sam Old <sam@oldco.com>", "alice@ourco.com", "Still here", msgid="s3@oldco"))
    assert w.sync(mid).ok
    assert followup_of(w, "s3@oldco") == (survivor, newco)

    duplicates.unmerge(w.rt, op, result["audit_id"])

    # as if the merge had never been: the follow-ups of mail from the old address are Sam Old's again
    assert followup_of(w, "s1@oldco") == (loser, oldco)
    assert followup_of(w, "s3@oldco") == (loser, oldco)
    assert followup_of(w, "s2@newco") == (survivor, newco)
    with read_only(w.rt.engine) as conn:
        assert stats.check(conn, w.org_id)[1] == []


def test_erasing_the_survivor_erases_every_merged_address_and_voids_the_undo(synced, imap_user):
    w, mid = synced
    op = Actor.operator(w.org_id)
    survivor, loser = contact_of(w, "dana@globex.com"), contact_of(w, "dana.cole@gmail.com")
    result = duplicates.merge(w.rt, op, survivor, loser)
    privacy.erase_person(w.rt, op, "dana@globex.com", confirm=True)
    for address in ("dana@globex.com", "dana.cole@gmail.com"):
        assert w.scalar("SELECT count(*) FROM participant WHERE address = :a", a=address) == 0
        assert w.scalar("SELECT count(*) FROM contactaddress WHERE address = :a", a=address) == 0
    # the merge record kept the merged contact's row for an undo: it must not outlive the erasure
    assert w.sql("SELECT state, record FROM contactmerge") in ([("void", {})], [("void", "{}")])
    with pytest.raises(Conflict, match="cannot be undone"):
        duplicates.unmerge(w.rt, op, result["audit_id"])
    imap_user.deliver(message("Dana Cole <dana.cole@gmail.com>", "alice@ourco.com", "Back", msgid="d3@gmail"))
    assert w.sync(mid).ok
    assert w.scalar("SELECT count(*) FROM participant WHERE address = 'dana.cole@gmail.com'") == 0


def test_an_address_excluded_after_a_merge_is_not_brought_back_by_the_undo(synced, imap_user):
    w, mid = synced
    op = Actor.operator(w.org_id)
    survivor, loser = contact_of(w, "rory.adams@acme.com"), contact_of(w, "radams@acme.com")
    result = duplicates.merge(w.rt, op, survivor, loser)
    rules.add_rule(w.rt, op, kind="address", value="radams@acme.com")
    imap_user.deliver(message("Rory Adams <radams@acme.com>", "alice@ourco.com", "Never", msgid="r9@acme"))
    assert w.sync(mid).ok
    assert w.scalar("SELECT count(*) FROM participant WHERE address = 'radams@acme.com'") == 0
    # the merged contact's only address is now never logged: there is nothing to restore
    with pytest.raises(Conflict, match="still logged"):
        duplicates.unmerge(w.rt, op, result["audit_id"])
    assert w.scalar("SELECT count(*) FROM contact WHERE id = :c", c=loser) == 0


def test_undo_leaves_out_an_excluded_address_and_restores_the_others(synced):
    w, _ = synced
    op = Actor.operator(w.org_id)
    sam_new, sam_old = contact_of(w, "sam@newco.io"), contact_of(w, "sam@oldco.com")
    rory, radams = contact_of(w, "rory.adams@acme.com"), contact_of(w, "radams@acme.com")
    duplicates.merge(w.rt, op, sam_old, sam_new)  # sam@oldco.com now also holds sam@newco.io
    second = duplicates.merge(w.rt, op, rory, sam_old)  # and that contact merged into Rory's
    rules.add_rule(w.rt, op, kind="address", value="sam@newco.io")
    undone = duplicates.unmerge(w.rt, op, second["audit_id"])
    assert undone["addresses_not_restored"] == 1 and undone["addresses"] == 1
    assert w.scalar("SELECT count(*) FROM contactaddress WHERE address = 'sam@newco.io'") == 0
    assert contact_of(w, "sam@oldco.com") == sam_old and contact_of(w, "radams@acme.com") == radams


def test_undo_is_refused_while_the_survivor_is_merged_into_another_contact(synced):
    w, _ = synced
    op = Actor.operator(w.org_id)
    a, b, c = (contact_of(w, x) for x in ("sam@oldco.com", "sam@newco.io", "dana@globex.com"))
    first = duplicates.merge(w.rt, op, a, b)
    second = duplicates.merge(w.rt, op, c, a)
    with pytest.raises(Conflict, match=f"undo audit event {second['audit_id']}"):
        duplicates.unmerge(w.rt, op, first["audit_id"])
    duplicates.unmerge(w.rt, op, second["audit_id"])
    duplicates.unmerge(w.rt, op, first["audit_id"])
    assert {contact_of(w, x) for x in ("sam@oldco.com", "sam@newco.io", "dana@globex.com")} == {a, b, c}


def test_merge_refuses_reps_other_organisations_and_nonsense(synced):
    w, _ = synced
    from app.db import session
    from tests import factories

    a, b = contact_of(w, "rory.adams@acme.com"), contact_of(w, "radams@acme.com")
    with read_only(w.rt.engine) as conn:
        rep = followups.user_id_by_email(conn, w.org_id, "alice@ourco.com")
    with pytest.raises(Forbidden):
        duplicates.merge(w.rt, Actor(w.org_id, rep, "rep"), a, b)
    with session(w.rt.engine) as s:
        other = factories.create_org(s, "Other", ["other.org"])
        other_admin = factories.add_user(s, other, "admin@other.org", admin=True).id
        other_id = other.id
    with pytest.raises(NotFound):
        duplicates.merge(w.rt, Actor(other_id, other_admin, "admin"), a, b)
    with pytest.raises(NotFound):
        duplicates.unmerge(w.rt, Actor.operator(w.org_id), 999999)
    with pytest.raises(Invalid):
        duplicates.merge(w.rt, Actor.operator(w.org_id), a, a)
    with write_transaction(w.rt.engine) as conn:
        assert conn.execute(text("SELECT count(*) FROM contactmerge")).scalar() == 0


def test_undo_never_links_the_contact_to_another_organisations_company_that_took_its_companys_id(synced):
    # SQLite gives a deleted row's id to the next row made: the merged contact's company, removed
    # since the merge, may come back as that id in another organisation. The undo must not link to it.
    from sqlalchemy import insert

    from app.db import session
    from app.models import Company
    from app.models.base import utcnow
    from tests import factories

    w, _ = synced
    op = Actor.operator(w.org_id)
    survivor, loser = contact_of(w, "kim.lo@acme.com"), contact_of(w, "kim@acme.de")
    gone = w.scalar("SELECT company_id FROM contact WHERE id = :c", c=loser)
    assert w.scalar("SELECT count(*) FROM followup WHERE company_id = :g", g=gone) >= 1  # Kim's email to answer
    assert gone is not None and gone != w.scalar("SELECT company_id FROM contact WHERE id = :c", c=survivor)
    result = duplicates.merge(w.rt, op, survivor, loser)
    with write_transaction(w.rt.engine) as conn:
        conn.execute(text("UPDATE participant SET company_id = NULL WHERE company_id = :g"), {"g": gone})
        conn.execute(text("UPDATE followup SET company_id = NULL WHERE company_id = :g"), {"g": gone})
        conn.execute(text("DELETE FROM company WHERE id = :g"), {"g": gone})
    with session(w.rt.engine) as s:
        other = factories.create_org(s, "OtherCo", ["otherco.example"]).id
    with write_transaction(w.rt.engine) as conn:
        conn.execute(
            insert(Company.__table__).values(
                id=gone, org_id=other, domain="acme.de", name="Not Yours", created_at=utcnow(), provenance={}
            )
        )
    restored = duplicates.unmerge(w.rt, op, result["audit_id"])["contact_id"]
    assert w.scalar("SELECT company_id FROM contact WHERE id = :c", c=restored) is None
    assert w.scalar("SELECT count(*) FROM participant WHERE company_id = :g", g=gone) == 0
    assert w.scalar("SELECT count(*) FROM followup WHERE company_id = :g", g=gone) == 0
    assert w.scalar("SELECT count(*) FROM participant WHERE contact_id = :c", c=restored) > 0


def test_undo_restores_the_merged_contact_even_when_its_id_was_given_to_a_new_contact(synced):
    w, _ = synced
    op = Actor.operator(w.org_id)
    newest = w.scalar("SELECT max(id) FROM contact")
    keep = contact_of(w, "rory.adams@acme.com")
    assert newest != keep
    mail = w.scalar("SELECT count(*) FROM participant WHERE contact_id = :c", c=newest)
    result = duplicates.merge(w.rt, op, keep, newest)
    # SQLite hands the highest free id out again; PostgreSQL's sequence never does
    made = people.create_contact(w.rt, op, email="newcomer@client.example", name="New Comer")["id"]
    undone = duplicates.unmerge(w.rt, op, result["audit_id"])
    restored = undone["contact_id"]
    assert restored not in (keep, made) and (restored == newest) == (made != newest)
    assert w.scalar("SELECT count(*) FROM participant WHERE contact_id = :c", c=restored) == mail
    assert contact_of(w, "newcomer@client.example") == made
    assert w.scalar("SELECT loser_id FROM contactmerge WHERE id = :m", m=result["merge_id"]) == restored
