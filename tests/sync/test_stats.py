"""Contact summaries kept at ingest equal a full recount, whatever the order of
mailboxes, batches and contact creation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from app.db import write_transaction
from sync import stats
from tests.world import NOW, make_world, message


def _tables(world):
    return {
        "stats": world.sql(
            "SELECT c.primary_email, s.emails_in, s.emails_out, s.meetings, s.first_email_at, "
            "s.last_email_at FROM contactstats s JOIN contact c ON c.id = s.contact_id "
            "ORDER BY c.primary_email"
        ),
        "colleagues": world.sql(
            "SELECT c.primary_email, u.email, k.interactions, k.last_at FROM contactcolleague k "
            "JOIN contact c ON c.id = k.contact_id JOIN app_user u ON u.id = k.user_id "
            "ORDER BY c.primary_email, u.email"
        ),
        "days": world.sql(
            "SELECT c.primary_email, k.day, u.email, k.emails_in, k.emails_out, k.meetings, k.last_at "
            "FROM contactcolleagueday k JOIN contact c ON c.id = k.contact_id JOIN app_user u ON u.id = k.user_id "
            "ORDER BY c.primary_email, k.day, u.email"
        ),
    }


def _recounted(world):
    with write_transaction(world.rt.engine) as conn:
        ids = [r[0] for r in conn.execute(text("SELECT id FROM contact WHERE org_id = :o"), {"o": world.org_id})]
        stats.recompute(conn, world.org_id, ids)
    return _tables(world)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request):
    return request.getfixturevalue("postgres_migrated_url") if request.param == "postgresql" else None


def test_incremental_summaries_equal_a_full_recount(tmp_path, imap_user_factory, db_url):
    world = make_world(tmp_path, url=db_url)
    alice, bob = imap_user_factory(), imap_user_factory()
    a_box = world.add_imap("alice@ourco.com", alice)
    b_box = world.add_imap("bob@ourco.com", bob)
    day = timedelta(days=1)
    # Carol writes to Alice and Bob (one message, two mailboxes); Dave is only
    # mentioned in Cc at first and becomes a contact when he writes himself.
    shared = message(
        "Carol <carol@acme.com>",
        "alice@ourco.com, bob@ourco.com",
        "Pricing",
        msgid="s1@acme.com",
        when=NOW - 5 * day,
        cc="dave@acme.com",
    )
    alice.deliver(shared)
    bob.deliver(shared)
    alice.deliver(
        message("alice@ourco.com", "carol@acme.com", "Re: Pricing", msgid="r1@ourco.com", when=NOW - 4 * day),
        folder="INBOX",
    )
    world.sync(a_box)
    first = _tables(world)
    assert [r[:3] for r in first["stats"]] == [("carol@acme.com", 1, 1)]
    world.sync(b_box)
    bob.deliver(message("Dave <dave@acme.com>", "bob@ourco.com", "Hello", msgid="d1@acme.com", when=NOW - 2 * day))
    world.sync(b_box)
    kept = _tables(world)
    by_email = {r[0]: r for r in kept["stats"]}
    assert by_email["carol@acme.com"][1:3] == (1, 1)
    # Dave's earlier Cc is counted once he is a contact.
    assert by_email["dave@acme.com"][1:3] == (2, 0)
    colleagues = {(r[0], r[1]): r[2] for r in kept["colleagues"]}
    assert colleagues[("carol@acme.com", "alice@ourco.com")] == 2
    assert colleagues[("carol@acme.com", "bob@ourco.com")] == 1
    assert colleagues[("dave@acme.com", "bob@ourco.com")] == 2
    assert kept == _recounted(world)
