"""The sidebar's lookup reads hand-written SQL with a dialect-specific part
(the contact's addresses in the card statement): the same mailbox gives the
same answer on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from app.db import read_only, write_transaction
from app.services import timeline
from tests.world import NOW, make_world, message


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request):
    return request.getfixturevalue("postgres_migrated_url") if request.param == "postgresql" else None


def test_lookup_reads_the_same_on_both_databases(tmp_path, imap_user_factory, db_url):
    world = make_world(tmp_path, url=db_url)
    alice = imap_user_factory()
    box = world.add_imap("alice@ourco.com", alice)
    day = timedelta(days=1)
    alice.deliver(
        message(
            "Carol Buyer <carol@acme.com>",
            "alice@ourco.com",
            "Pricing",
            msgid="p1@acme.com",
            when=NOW - 5 * day,
            cc="Dan <dan@acme.com>",
        )
    )
    alice.deliver(
        message("alice@ourco.com", "carol@acme.com", "Re: Pricing", msgid="p2@ourco.com", when=NOW - 4 * day),
        folder="Sent",
    )
    alice.deliver(message("Dan <dan@acme.com>", "alice@ourco.com", "Hello", msgid="d1@acme.com", when=NOW - 3 * day))
    assert world.sync(box).ok
    with write_transaction(world.rt.engine) as conn:
        carol = conn.execute(text("SELECT id FROM contact WHERE primary_email = 'carol@acme.com'")).scalar_one()
        # A second address, added after the first: listed after it.
        conn.execute(
            text("INSERT INTO contactaddress (org_id, contact_id, address) VALUES (:o, :c, :a)"),
            {"o": world.org_id, "c": carol, "a": "carol.b@acme-mail.com"},
        )

    with read_only(world.rt.engine) as conn:
        found = timeline.lookup(conn, world.org_id, "Carol.B@ACME-mail.com")
        card = timeline.contact_card(conn, world.org_id, carol)
        other_org = timeline.lookup(conn, world.org_id + 1, "carol@acme.com")
        newcomer = timeline.unknown_address(conn, world.org_id, "erin.young@acme.com")

    assert other_org is None
    assert card == found["contact"]
    assert found["contact"]["emails"] == ["carol@acme.com", "carol.b@acme-mail.com"]
    assert found["contact"]["name"] == "Carol Buyer"
    assert found["contact"]["company"]["domain"] == "acme.com"
    assert [c["email"] for c in found["company_contacts"]] == ["dan@acme.com"]
    s = found["summary"]
    assert (s["emails_in"], s["emails_out"], s["meetings"]) == (1, 1, 0)
    assert s["first_interaction_at"] == NOW - 5 * day and s["last_interaction_at"] == NOW - 4 * day
    assert [c["email"] for c in s["colleagues"]] == ["alice@ourco.com"]
    items = found["timeline"]["items"]
    assert [(i["subject"], i["direction"]) for i in items] == [("Re: Pricing", "out"), ("Pricing", "in")]
    assert items[1]["sender"] == {"address": "carol@acme.com", "name": "Carol Buyer"}
    assert items[0]["occurred_at"] == NOW - 4 * day and items[0]["occurred_at"].tzinfo is not None
    # An address that is no contact, at Acme: the same context on both databases.
    assert newcomer["name"] == "Erin Young" and newcomer["company"]["domain"] == "acme.com"
    assert [c["email"] for c in newcomer["company_contacts"]] == ["carol@acme.com", "dan@acme.com"]
    # summed per person: Pricing counts for Carol and for Dan
    assert [(c["email"], c["interactions"]) for c in newcomer["colleagues"]] == [("alice@ourco.com", 4)]
    assert newcomer["colleagues"][0]["last_interaction_at"] == NOW - 3 * day
    assert newcomer["last_interaction"]["subject"] == "Hello"
