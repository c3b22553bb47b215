"""The ingest's bulk writes (app/db.py: COPY and a staging table on PostgreSQL,
plain INSERTs on SQLite) store every value exactly as given."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from app.db import STAGE_FROM, bulk_insert_ignore_returning, bulk_insert_new, db_time, insert_values, write_transaction
from sync.ingest import INTERACTION, INTERACTION_COLUMNS, PARTICIPANT, PARTICIPANT_COLUMNS
from tests.world import make_world

AWKWARD = ["tab\there", "new\nline\r\n", "back\\slash", "\\N", "", "comma, \"quote\" 'single'", "Zoë 日本"]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request):
    return request.getfixturevalue("postgres_migrated_url") if request.param == "postgresql" else None


def test_bulk_writes_keep_tabs_newlines_backslashes_and_nulls_as_written_and_return_only_new_rows(tmp_path, db_url):
    world = make_world(tmp_path, url=db_url)
    at = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=timezone.utc)
    with write_transaction(world.rt.engine) as conn:
        when = db_time(conn, at)

        def interaction(key, subject):
            return (world.org_id, "email", key, when, "in", subject, None, key, None, when, False, False, 0)

        first = bulk_insert_ignore_returning(
            conn, INTERACTION, INTERACTION_COLUMNS, [interaction("k0", None)], ("message_key", "id")
        )
        rows = [interaction(f"k{i}", s) for i, s in enumerate(AWKWARD, 1)]
        got = bulk_insert_ignore_returning(
            conn, INTERACTION, INTERACTION_COLUMNS, [interaction("k0", "again"), *rows], ("message_key", "id")
        )
        # Only the new rows come back, in the order given; the stored one is left alone.
        assert [k for k, _ in got] == [f"k{i}" for i in range(1, len(AWKWARD) + 1)]
        ids = dict(first + got)
        bulk_insert_new(
            conn,
            PARTICIPANT,
            PARTICIPANT_COLUMNS,
            [
                (world.org_id, ids[f"k{i}"], when, f"p{i}@ext.com", name, "from", None, None, None)
                for i, name in enumerate([None, *AWKWARD])
            ],
        )
    subjects = dict(world.sql("SELECT message_key, subject FROM interaction"))
    assert subjects == {"k0": None, **{f"k{i}": s for i, s in enumerate(AWKWARD, 1)}}
    names = dict(world.sql("SELECT address, name FROM participant"))
    assert names == {f"p{i}@ext.com": s for i, s in enumerate([None, *AWKWARD])}
    stored = world.scalar("SELECT occurred_at FROM participant WHERE address = 'p1@ext.com'")
    if isinstance(stored, str):  # SQLite keeps the text db_time wrote
        stored = datetime.fromisoformat(stored).replace(tzinfo=timezone.utc)
    assert stored == at


@pytest.mark.parametrize("size", [3, STAGE_FROM + 7])
def test_an_upsert_of_many_rows_adds_to_the_kept_ones_however_it_is_sent(tmp_path, db_url, size):
    # Below STAGE_FROM rows PostgreSQL gets one VALUES statement, from it on a COPY-staged INSERT ... SELECT.
    world = make_world(tmp_path, url=db_url)
    user = world.scalar("SELECT id FROM app_user ORDER BY id LIMIT 1")
    upsert = (
        "ON CONFLICT (org_id, user_id, day) DO UPDATE SET emails_out = repday.emails_out + excluded.emails_out, "
        "emails_in = repday.emails_in + excluded.emails_in, meetings = repday.meetings + excluded.meetings"
    )
    columns = ("org_id", "user_id", "day", "emails_out", "emails_in", "meetings")
    days = [f"2026-{n // 28 + 1:02d}-{n % 28 + 1:02d}" for n in range(size)]
    with write_transaction(world.rt.engine) as conn:
        insert_values(conn, "repday", columns, [(world.org_id, user, d, 1, 0, 0) for d in days], upsert)
    with write_transaction(world.rt.engine) as conn:
        # The same keys again (added to) and one new day, in one call.
        more = [(world.org_id, user, d, 2, 5, 1) for d in days] + [(world.org_id, user, "2027-06-01", 0, 1, 0)]
        insert_values(conn, "repday", columns, more, upsert)
    got = {d: (o, i, m) for d, o, i, m in world.sql("SELECT day, emails_out, emails_in, meetings FROM repday")}
    assert got == {**{d: (3, 5, 1) for d in days}, "2027-06-01": (0, 1, 0)}
