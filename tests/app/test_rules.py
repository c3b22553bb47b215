""" "Never log" rules against a timeline filled by a real IMAP sync (Dovecot)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from app.services import rules
from app.services.actor import Actor
from app.services.errors import Invalid
from tests.world import make_world, message


@pytest.fixture
def world(tmp_path, imap_user_factory):
    w = make_world(tmp_path)
    a, b = imap_user_factory(), imap_user_factory()
    a.deliver(message("Jane <jane@acme.com>", "alice@ourco.com", "Only Alice", msgid="m1@acme"))
    a.deliver(message("Joe <joe@sales.acme.com>", "alice@ourco.com", "Subdomain", msgid="m2@acme"))
    a.deliver(message("Pat <pat@other.com>", "alice@ourco.com", "Unrelated", msgid="m3@other"))
    both = message("Jane <jane@acme.com>", "alice@ourco.com", "Both saw it", cc="bob@ourco.com", msgid="m5@acme")
    a.deliver(both)
    b.deliver(both)
    b.deliver(message("Jane <jane@acme.com>", "bob@ourco.com", "Only Bob", msgid="m4@acme"))
    w.mailbox_a, w.mailbox_b = w.add_imap("alice@ourco.com", a), w.add_imap("bob@ourco.com", b)
    for mid in (w.mailbox_a, w.mailbox_b):
        assert w.sync(mid).ok
    w.alice = w.scalar("SELECT id FROM app_user WHERE email = 'alice@ourco.com'")
    return w


def keys(w) -> set[str]:
    return {r[0] for r in w.sql("SELECT message_key FROM interaction WHERE org_id = :o", o=w.org_id)}


def contacts(w) -> set[str]:
    return {r[0] for r in w.sql("SELECT address FROM contactaddress WHERE org_id = :o", o=w.org_id)}


def test_org_wide_domain_rule_removes_subdomains_and_survives_a_resync(world):
    w = world
    assert keys(w) == {"m1@acme", "m2@acme", "m3@other", "m4@acme", "m5@acme"}
    assert {"jane@acme.com", "joe@sales.acme.com"} <= contacts(w)
    result = rules.add_rule(w.rt, Actor.operator(w.org_id), kind="domain", value=" ACME.com ")
    assert result["value"] == "acme.com" and result["removed_interactions"] == 4
    assert keys(w) == {"m3@other"}
    assert contacts(w) == {"pat@other.com"}
    assert w.scalar("SELECT count(*) FROM participant WHERE address LIKE '%acme.com'") == 0
    assert w.scalar("SELECT count(*) FROM company WHERE domain = 'acme.com'") == 0
    # idempotent
    again = rules.add_rule(w.rt, Actor.operator(w.org_id), kind="domain", value="acme.com")
    assert again["id"] == result["id"] and again["removed_interactions"] == 0
    assert w.scalar("SELECT count(*) FROM exclusionrule") == 1
    assert w.scalar("SELECT count(*) FROM auditevent WHERE action = 'rule.add'") == 2

    # A re-sync from scratch does not bring the excluded mail back ...
    from app.services import mailboxes

    mailboxes.resync(w.rt, Actor.operator(w.org_id), w.mailbox_a)
    assert w.sync(w.mailbox_a).ok
    assert keys(w) == {"m3@other"}
    # ... and removing the rule does, without duplicates.
    rules.remove_rule(w.rt, Actor.operator(w.org_id), result["id"])
    assert w.scalar("SELECT count(*) FROM folderstate WHERE CAST(cursor AS TEXT) != '{}'") == 0
    for mid in (w.mailbox_a, w.mailbox_b):
        assert w.sync(mid).ok
    assert keys(w) == {"m1@acme", "m2@acme", "m3@other", "m4@acme", "m5@acme"}
    assert w.scalar("SELECT count(*) FROM interaction") == 5
    assert w.scalar("SELECT count(*) FROM interactionsource WHERE mailbox_id = :m", m=w.mailbox_a) == 4
    assert w.scalar("SELECT messages_imported FROM mailbox WHERE id = :m", m=w.mailbox_a) == 4
    assert rules.list_rules(_conn(w), w.org_id) == []


def _conn(w):
    return w.rt.engine.connect()


def test_rep_rule_removes_only_what_that_rep_alone_saw(world):
    w = world
    result = rules.add_rule(w.rt, Actor.operator(w.org_id), kind="address", value="Jane@Acme.com", user_id=w.alice)
    assert result["removed_interactions"] == 1
    # m1 was only in Alice's mailbox; m5 was also in Bob's, m4 only in Bob's.
    assert keys(w) == {"m2@acme", "m3@other", "m4@acme", "m5@acme"}
    assert "jane@acme.com" in contacts(w)
    listed = rules.list_rules(_conn(w), w.org_id, w.alice)
    assert [(r["kind"], r["value"], r["user_email"]) for r in listed] == [
        ("address", "jane@acme.com", "alice@ourco.com")
    ]
    # summaries follow the timeline: Jane now has two emails in
    jane = w.scalar("SELECT contact_id FROM contactaddress WHERE address = 'jane@acme.com'")
    assert w.scalar("SELECT emails_in FROM contactstats WHERE contact_id = :c", c=jane) == 2
    # m5 stays through Bob's copy; Alice's own copy goes, as a clean sync under the rule skips it
    copies_of_m5 = (
        "SELECT s.mailbox_id FROM interactionsource s JOIN interaction i ON i.id = s.interaction_id "
        "WHERE i.message_key = 'm5@acme'"
    )
    assert [r[0] for r in w.sql(copies_of_m5)] == [w.mailbox_b]
    # Alice's INBOX holds 4 messages: 2 stored, 2 taken off by the rule (m1 with its interaction)
    assert w.sql(
        "SELECT messages, removed FROM folderstate WHERE mailbox_id = :m AND name = 'INBOX'", m=w.mailbox_a
    ) == [(2, 2)]


def test_rules_are_validated(world):
    w = world
    for kind, value in (
        ("domain", "ourco.com"),
        ("domain", "eu.ourco.com"),
        ("address", "alice@ourco.com"),
        ("domain", "nodot"),
        ("address", "not an address"),
        ("bogus", "x.com"),
    ):
        with pytest.raises(Invalid):
            rules.add_rule(w.rt, Actor.operator(w.org_id), kind=kind, value=value)


def test_a_rule_keeps_the_contacts_reps_worked_on_and_the_mail_comes_back_to_them(world):
    """A rule took every contact left without mail, with the stage, owner and tags reps had given
    them: removing the rule brought the mail back to a bare new contact."""
    w = world
    jane = w.scalar("SELECT contact_id FROM contactaddress WHERE address = 'jane@acme.com'")
    with w.rt.engine.begin() as conn:
        conn.execute(
            text("UPDATE contact SET stage = 'qualified', tags = :t, owner_id = :u WHERE id = :c"),
            {"t": '["renewal"]', "u": w.alice, "c": jane},
        )

    rule = rules.add_rule(w.rt, Actor.operator(w.org_id), kind="domain", value="acme.com")
    assert keys(w) == {"m3@other"}
    assert contacts(w) == {"pat@other.com", "jane@acme.com"}  # Joe, whom nobody worked on, went
    assert w.sql("SELECT stage, owner_id FROM contact WHERE id = :c", c=jane) == [("qualified", w.alice)]
    rules.remove_rule(w.rt, Actor.operator(w.org_id), rule["id"])
    for mid in (w.mailbox_a, w.mailbox_b):
        assert w.sync(mid).ok
    assert keys(w) == {"m1@acme", "m2@acme", "m3@other", "m4@acme", "m5@acme"}
    assert w.scalar("SELECT contact_id FROM contactaddress WHERE address = 'jane@acme.com'") == jane
    assert w.scalar("SELECT count(DISTINCT interaction_id) FROM participant WHERE contact_id = :c", c=jane) == 3


def test_a_rule_keeps_a_key_account_company_whose_contacts_all_go(world):
    w = world
    with w.rt.engine.begin() as conn:
        conn.execute(text("UPDATE company SET key_account = true WHERE domain = 'acme.com'"))
    acme = w.scalar("SELECT id FROM company WHERE domain = 'acme.com'")
    rules.add_rule(w.rt, Actor.operator(w.org_id), kind="domain", value="acme.com")
    assert contacts(w) == {"pat@other.com"}
    assert w.sql("SELECT id, key_account FROM company WHERE domain = 'acme.com'") == [(acme, True)]
