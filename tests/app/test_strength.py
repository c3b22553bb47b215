"""Relationship strength read from its per-day summary (contactcolleagueday) equals strength
read from every interaction of the 90 days, whatever the time of day the window starts at:
emails both ways, meetings cancelled, past and ahead, two colleagues on one email, one
colleague under two addresses; and only for the caller's organisation."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import insert, text

from app.db import read_only, write_transaction
from app.models import Contact, Interaction, Participant
from app.services import strength
from sync import stats
from tests import factories
from tests.world import make_world

NOW = datetime(2026, 11, 30, 15, 0, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request):
    return request.getfixturevalue("postgres_url") if request.param == "postgresql" else None


def _contact(conn, org_id: int, email: str) -> int:
    return conn.execute(
        insert(Contact.__table__).values(
            org_id=org_id, name=email, search_name=email, primary_email=email, tags=[], created_at=NOW
        )
    ).inserted_primary_key[0]


def _interaction(conn, org_id, n, at, kind, direction, status, people) -> None:
    iid = conn.execute(
        insert(Interaction.__table__).values(
            org_id=org_id,
            kind=kind,
            message_key=f"m{n}@strength",
            occurred_at=at,
            direction=direction,
            status=status,
            subject=f"#{n}",
            thread_key=f"m{n}@strength",
            created_at=NOW,
        )
    ).inserted_primary_key[0]
    for k, (address, contact_id, user_id) in enumerate(people):
        conn.execute(
            insert(Participant.__table__).values(
                org_id=org_id,
                interaction_id=iid,
                occurred_at=at,
                address=address,
                role="from" if k == 0 else "to",
                contact_id=contact_id,
                user_id=user_id,
            )
        )


def test_strength_from_the_day_summary_equals_strength_from_the_timeline(tmp_path, db_url):
    world = make_world(tmp_path, url=db_url)
    rng = random.Random(15)
    with write_transaction(world.rt.engine) as conn:
        alice, bob = (
            conn.execute(text("SELECT id FROM app_user WHERE email = :e"), {"e": e}).scalar_one()
            for e in ("alice@ourco.com", "bob@ourco.com")
        )
        carol, dan = _contact(conn, world.org_id, "carol@acme.com"), _contact(conn, world.org_id, "dan@acme.com")
        # Mail spread over 120 days back and 10 ahead, at every hour, so that the window's first
        # (partial) day always holds some.
        for n in range(600):
            at = NOW - timedelta(hours=rng.randrange(-240, 120 * 24), minutes=rng.randrange(60))
            kind = "meeting" if n % 7 == 0 else "email"
            direction = rng.choice(["in", "out"])
            status = rng.choice([None, "cancelled", "confirmed"]) if kind == "meeting" else None
            people = [(f"{c}@acme.com", cid, None) for c, cid in (("carol", carol), ("dan", dan)) if rng.random() < 0.7]
            colleagues = rng.choice(
                [
                    [("alice@ourco.com", alice)],
                    [("bob@ourco.com", bob)],
                    [],
                    [("alice@ourco.com", alice), ("bob@ourco.com", bob)],
                    [("alice@ourco.com", alice), ("alice.alias@ourco.com", alice)],  # one colleague, two rows
                ]
            )
            people += [(address, None, uid) for address, uid in colleagues]
            _interaction(conn, world.org_id, n, at, kind, direction, status, people)
        stats.recompute(conn, world.org_id, [carol, dan])
    assert world.scalar("SELECT count(*) FROM contactcolleagueday") > 100

    def both(conn, contact_id, now):
        return strength.colleagues(conn, world.org_id, contact_id, now), strength.colleagues_from_timeline(
            conn, world.org_id, contact_id, now
        )

    nows = [NOW + timedelta(hours=h, minutes=rng.randrange(60)) for h in range(-30, 30, 1)]
    nows += [datetime.combine(NOW.date(), datetime.min.time(), timezone.utc)]  # the window starts at midnight
    with read_only(world.rt.engine) as conn:
        for contact_id in (carol, dan):
            for now in nows:
                summary, timeline = both(conn, contact_id, now)
                assert summary == timeline, (contact_id, now)
                assert set(summary) == {alice, bob}
        # The plain readers the API uses answer the same.
        reader = world.rt.sqlite_reader()
    if reader is not None:
        with reader.snapshot():
            summary, timeline = both(reader, carol, NOW)
    else:
        summary, timeline = world.rt.postgres_readers().run(lambda r: both(r, carol, NOW))
    assert summary == timeline and set(summary) == {alice, bob}


def test_the_day_summary_keeps_to_its_organisation(tmp_path, db_url):
    world = make_world(tmp_path, url=db_url)
    with write_transaction(world.rt.engine) as conn:
        alice = conn.execute(text("SELECT id FROM app_user WHERE email = 'alice@ourco.com'")).scalar_one()
        carol = _contact(conn, world.org_id, "carol@acme.com")
        _interaction(
            conn,
            world.org_id,
            1,
            NOW - timedelta(days=3),
            "email",
            "in",
            None,
            [("carol@acme.com", carol, None), ("alice@ourco.com", None, alice)],
        )
        stats.recompute(conn, world.org_id, [carol])
    from app.db import session

    with session(world.rt.engine) as s:
        other_org = factories.create_org(s, "OtherCo", ["otherco.com"]).id
    with read_only(world.rt.engine) as conn:
        assert set(strength.colleagues(conn, world.org_id, carol, NOW)) == {alice}
        assert strength.colleagues(conn, other_org, carol, NOW) == {}
