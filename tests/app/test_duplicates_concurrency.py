"""A merge while sync is writing mail of either address: the merge is one transaction that
waits for a batch already writing for the merged contact and takes its rows along; a batch
that read the contact before the merge cannot attach mail to the vanished contact (its
foreign key fails and the engine retries the batch, which then finds the survivor); and a
real sync racing a merge leaves every message of both addresses on the survivor."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from app.db import read_only, write_transaction
from app.models import Interaction, Participant
from app.services import duplicates
from app.services.actor import Actor
from sync import stats
from tests.app.test_duplicates import contact_of
from tests.world import NOW, make_world, message

I, P = Interaction.__table__, Participant.__table__


@pytest.fixture
def two_addresses(tmp_path, imap_user):
    w = make_world(tmp_path)
    imap_user.deliver(message("Rory Adams <rory.adams@acme.com>", "alice@ourco.com", "One", msgid="c1@acme"))
    imap_user.deliver(message("Rory Adams <radams@acme.com>", "alice@ourco.com", "Two", msgid="c2@acme"))
    mid = w.add_imap("alice@ourco.com", imap_user)
    assert w.sync(mid).ok
    return w, mid, contact_of(w, "rory.adams@acme.com"), contact_of(w, "radams@acme.com")


def _stray_row(conn, org_id: int, contact_id: int, key: str) -> None:
    """What an ingest batch writes for a known contact: an interaction and its participant."""
    iid = conn.execute(
        insert(I).values(
            org_id=org_id,
            kind="email",
            message_key=key,
            occurred_at=NOW,
            direction="in",
            thread_key=key,
            from_address="radams@acme.com",
            created_at=NOW,
        )
    ).inserted_primary_key[0]
    conn.execute(
        insert(P).values(
            org_id=org_id,
            interaction_id=iid,
            occurred_at=NOW,
            address="radams@acme.com",
            role="from",
            contact_id=contact_id,
        )
    )


def test_a_merge_waits_for_a_batch_writing_for_the_merged_contact_and_takes_its_rows(two_addresses):
    w, _, keep, gone = two_addresses
    done: dict = {}
    with write_transaction(w.rt.engine) as conn:
        _stray_row(conn, w.org_id, gone, "inflight@acme")
        merging = threading.Thread(
            target=lambda: done.update(duplicates.merge(w.rt, Actor.operator(w.org_id), keep, gone))
        )
        merging.start()
        time.sleep(1.0)
        assert merging.is_alive() and not done  # waiting for this batch to commit
    merging.join(60)
    assert done["survivor_id"] == keep
    assert w.sql("SELECT DISTINCT contact_id FROM participant WHERE address = 'radams@acme.com'") == [(keep,)]
    with read_only(w.rt.engine) as conn:
        assert stats.check(conn, w.org_id)[1] == []


def test_a_batch_that_read_the_contact_before_the_merge_cannot_attach_mail_to_it(two_addresses):
    w, _, keep, gone = two_addresses
    duplicates.merge(w.rt, Actor.operator(w.org_id), keep, gone)
    with pytest.raises(IntegrityError):  # the engine retries such a batch (sync/engine.py: _conflict)
        with write_transaction(w.rt.engine) as conn:
            _stray_row(conn, w.org_id, gone, "stale@acme")
    assert w.scalar("SELECT count(*) FROM interaction WHERE message_key = 'stale@acme'") == 0


def test_a_sync_racing_a_merge_leaves_every_message_on_the_survivor(two_addresses, imap_user):
    w, mid, keep, gone = two_addresses
    total = 240
    for n in range(total):
        frm = "Rory Adams <rory.adams@acme.com>" if n % 2 else "Rory Adams <radams@acme.com>"
        imap_user.deliver(
            message(frm, "alice@ourco.com", f"Race {n}", msgid=f"race{n}@acme", when=NOW - timedelta(minutes=n))
        )
    w.set_batch_size(mid, 10)
    before = w.scalar("SELECT messages_imported FROM mailbox WHERE id = :m", m=mid)
    syncing = threading.Thread(target=lambda: w.sync(mid))
    syncing.start()
    deadline = time.time() + 60
    while (
        time.time() < deadline and w.scalar("SELECT messages_imported FROM mailbox WHERE id = :m", m=mid) < before + 30
    ):
        time.sleep(0.01)
    assert syncing.is_alive()  # the merge meets the import half-way
    duplicates.merge(w.rt, Actor.operator(w.org_id), keep, gone)
    syncing.join(180)
    assert not syncing.is_alive()
    rows = w.sql(
        "SELECT contact_id, count(*) FROM participant WHERE address IN ('radams@acme.com', 'rory.adams@acme.com') "
        "GROUP BY contact_id"
    )
    assert rows == [(keep, total + 2)]
    assert w.scalar("SELECT count(*) FROM contact WHERE id = :c", c=gone) == 0
    with read_only(w.rt.engine) as conn:
        assert stats.check(conn, w.org_id)[1] == []
