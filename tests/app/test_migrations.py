"""Migrations: a fresh SQLite file and a fresh PostgreSQL database both reach
head, a second upgrade changes nothing, and the migrated schema is exactly
what the models declare (what `alembic revision --autogenerate` would see)."""

from __future__ import annotations

import json
from contextlib import contextmanager

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

import app.models  # noqa: F401 - registers every table
from app.db import alembic_config, make_engine, upgrade


def _snapshot(engine) -> dict:
    insp = inspect(engine)
    out = {}
    for table in sorted(insp.get_table_names()):
        out[table] = {
            "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)],
            "pk": insp.get_pk_constraint(table).get("constrained_columns"),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(table)
            ),
            "uniques": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table)),
            "fks": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
                for f in insp.get_foreign_keys(table)
            ),
        }
    return out


def _version(engine) -> list[str]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))]


def _diff(engine) -> list:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(ctx, SQLModel.metadata)


def _check(url: str) -> None:
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    upgrade(url)
    engine = make_engine(url)
    try:
        assert _version(engine) == [head]
        first = _snapshot(engine)
        assert set(first) == set(SQLModel.metadata.tables) | {"alembic_version"}
        with engine.begin() as conn:  # data must survive a second upgrade untouched
            conn.execute(
                text(
                    "INSERT INTO organisation (name, internal_domains, contact_policy, visibility, "
                    "backfill_days, sync_interval_seconds, bulk_detection, created_at) VALUES "
                    "('Keep', '[\"keep.com\"]', 'exchanged', 'snippet', 365, 300, true, "
                    "'2024-01-01 00:00:00')"
                )
            )
        upgrade(url)  # the app runs this on every start
        assert _version(engine) == [head]
        assert _snapshot(engine) == first
        with engine.connect() as conn:
            assert conn.execute(text("SELECT name FROM organisation")).scalars().all() == ["Keep"]
        diff = _diff(engine)
        assert diff == [], f"the migrated schema differs from the models: {diff}"
    finally:
        engine.dispose()


def test_sqlite_upgrade_fresh_twice_and_matches_models(tmp_path):
    _check(f"sqlite:///{tmp_path / 'fresh.db'}")


def test_postgres_upgrade_fresh_twice_and_matches_models(postgres_url):
    _check(postgres_url)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_downgrade_to_base_and_back(backend, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'round.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    upgrade(url)
    command.downgrade(alembic_config(url), "base")
    engine = make_engine(url)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        upgrade(url)
        assert _diff(engine) == []
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_every_revision_goes_up_down_and_up_again_one_at_a_time(backend, tmp_path, request):
    """From the first revision on: each step's downgrade undoes exactly its upgrade (the
    round trip above only proves the whole chain does)."""
    url = f"sqlite:///{tmp_path / 'steps.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    cfg = alembic_config(url)
    revisions = [r.revision for r in reversed(list(ScriptDirectory.from_config(cfg).walk_revisions()))]
    engine = make_engine(url)
    try:
        for rev in revisions:
            before = _schema(engine)
            command.upgrade(cfg, rev)
            after = _schema(engine)
            command.downgrade(cfg, "-1")
            assert _schema(engine) == before, f"downgrade of {rev} left a different schema"
            command.upgrade(cfg, rev)
            assert _schema(engine) == after, f"{rev} upgraded twice gives a different schema"
        assert _diff(engine) == []
    finally:
        engine.dispose()


def _schema(engine) -> dict:
    """Tables with their columns and indexes, as the database reports them.

    Read for all tables at once (get_multi_*): table by table, PostgreSQL's catalog queries
    made up 9.5 s of this test's 13.9 s (four reads per revision), all at once 0.02 s a read
    against 0.16 s (measured on the head schema, same result)."""
    insp = inspect(engine)
    insp.clear_cache()
    columns, indexes = insp.get_multi_columns(), insp.get_multi_indexes()
    return {
        t: (
            sorted((c["name"], str(c["type"]), c["nullable"]) for c in columns[(schema, t)]),
            sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in indexes[(schema, t)]),
        )
        for schema, t in columns
        if t != "alembic_version"
    }


def _org_and_alice(at: str) -> tuple[str, str]:
    return (
        "INSERT INTO organisation (id, name, internal_domains, contact_policy, visibility, backfill_days, "
        "sync_interval_seconds, bulk_detection, created_at) VALUES (1, 'Old', '[\"ourco.com\"]', 'exchanged', "
        f"'snippet', 365, 300, true, {at})",
        f"INSERT INTO app_user (id, org_id, email, name, role, active, created_at) VALUES "
        f"(1, 1, 'alice@ourco.com', 'Alice', 'rep', true, {at})",
    )


@contextmanager
def _old_database(backend: str, tmp_path, request, revision: str, rows):
    """A database migrated to `revision` and filled by `rows` (INSERT statements): yields (url, engine)."""
    url = f"sqlite:///{tmp_path / 'old.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    command.upgrade(alembic_config(url), revision)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for sql in rows:
                conn.execute(text(sql))
        yield url, engine
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_0002_computes_summaries_of_an_existing_timeline(backend, tmp_path, request):
    """A database filled under 0001 gets its contact summaries on upgrade."""
    t = "'2026-01-0{d} 10:00:00'"
    rows = (
        *_org_and_alice(t.format(d=1)),
        f"INSERT INTO contact (id, org_id, name, search_name, primary_email, tags, created_at) VALUES "
        f"(1, 1, 'Carol', 'carol', 'carol@acme.com', '[]', {t.format(d=1)})",
        *(
            f"INSERT INTO interaction (id, org_id, kind, message_key, occurred_at, direction, thread_key, "
            f"created_at) VALUES ({i}, 1, 'email', 'm{i}', {t.format(d=i)}, '{d}', 'm{i}', {t.format(d=i)})"
            for i, d in ((1, "in"), (2, "out"), (3, "in"))
        ),
        *(
            f"INSERT INTO participant (org_id, interaction_id, occurred_at, address, role, contact_id, user_id) "
            f"VALUES (1, {i}, {t.format(d=i)}, '{a}', 'to', {c}, {u})"
            for i in (1, 2, 3)
            for a, c, u in (("carol@acme.com", 1, "NULL"), ("alice@ourco.com", "NULL", 1))
        ),
    )
    with _old_database(backend, tmp_path, request, "0001", rows) as (url, engine):
        upgrade(url)
        with engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT emails_in, emails_out, meetings, first_email_at, last_email_at "
                    "FROM contactstats WHERE contact_id = 1"
                )
            ).one()
            colleague = conn.execute(text("SELECT user_id, interactions FROM contactcolleague")).all()
    assert row[:3] == (2, 1, 0)
    assert str(row[3]).startswith("2026-01-01") and str(row[4]).startswith("2026-01-03")
    assert colleague == [(1, 3)]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_0005_recounts_folder_messages_from_the_copies_stored(backend, tmp_path, request):
    """Counts that grew past the copies (removals never subtracted) are set right on upgrade."""
    t = "'2026-01-01 10:00:00'"
    rows = (
        *_org_and_alice(t),
        "INSERT INTO mailbox (id, org_id, owner_id, kind, config, sync_stage, status, failure_count, "
        f"messages_imported, skipped, created_at) VALUES (1, 1, 1, 'imap', '{{}}', 'idle', 'active', 0, 9, '{{}}', {t})",
        *(
            f"INSERT INTO folderstate (id, org_id, mailbox_id, name, role, selected, cursor, backfill_done, "
            f"messages, status) VALUES ({i}, 1, 1, '{name}', 'other', true, '{{}}', true, {n}, 'ok')"
            for i, name, n in ((1, "INBOX", 5), (2, "Archive", 1), (3, "Empty", 0))
        ),
        *(
            f"INSERT INTO interaction (id, org_id, kind, message_key, occurred_at, direction, thread_key, "
            f"created_at) VALUES ({i}, 1, 'email', 'm{i}', {t}, 'in', 'm{i}', {t})"
            for i in (1, 2, 3)
        ),
        *(
            f"INSERT INTO interactionsource (org_id, interaction_id, mailbox_id, folder_id, remote_id) "
            f"VALUES (1, {i}, 1, {f}, '1/{i}')"
            for i, f in ((1, 1), (2, 1), (3, 2))
        ),
    )
    with _old_database(backend, tmp_path, request, "0004", rows) as (url, engine):
        upgrade(url)
        with engine.connect() as conn:
            counts = conn.execute(text("SELECT name, messages FROM folderstate ORDER BY id")).all()
    assert counts == [("INBOX", 2), ("Archive", 1), ("Empty", 0)]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_0024_keeps_every_copy_without_gmail_ids_and_its_downgrade_keeps_them_without_the_columns(
    backend, tmp_path, request
):
    t = "'2026-01-01 10:00:00'"
    rows = (
        *_org_and_alice(t),
        "INSERT INTO mailbox (id, org_id, owner_id, kind, config, sync_stage, status, failure_count, "
        f"messages_imported, skipped, created_at) VALUES (1, 1, 1, 'gmail', '{{}}', 'idle', 'active', 0, 2, '{{}}', {t})",
        "INSERT INTO folderstate (id, org_id, mailbox_id, name, role, selected, cursor, backfill_done, "
        "messages, skipped, removed, status) VALUES (1, 1, 1, 'All Mail', 'archive', true, '{}', true, 2, '{}', 0, 'ok')",
        *(
            f"INSERT INTO interaction (id, org_id, kind, message_key, occurred_at, direction, thread_key, "
            f"created_at) VALUES ({i}, 1, 'email', 'm{i}', {t}, 'in', 'm{i}', {t})"
            for i in (1, 2)
        ),
        *(
            f"INSERT INTO interactionsource (org_id, interaction_id, mailbox_id, folder_id, remote_id) "
            f"VALUES (1, {i}, 1, 1, '7/{i}')"
            for i in (1, 2)
        ),
    )
    with _old_database(backend, tmp_path, request, "0023", rows) as (url, engine):
        upgrade(url)
        with engine.connect() as conn:
            got = conn.execute(
                text("SELECT remote_id, provider_id, provider_thread FROM interactionsource ORDER BY remote_id")
            ).all()
        assert [tuple(r) for r in got] == [("7/1", None, None), ("7/2", None, None)]
        with engine.begin() as conn:  # one message id per folder: a second copy of it there is refused
            conn.execute(
                text("UPDATE interactionsource SET provider_id = '18446744073709551615' WHERE remote_id = '7/1'")
            )
            with pytest.raises(Exception, match="(?i)unique"):
                with conn.begin_nested():
                    conn.execute(
                        text(
                            "UPDATE interactionsource SET provider_id = '18446744073709551615' WHERE remote_id = '7/2'"
                        )
                    )
        command.downgrade(alembic_config(url), "0023")
        assert "provider_id" not in {c["name"] for c in inspect(engine).get_columns("interactionsource")}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM interactionsource")).scalar() == 2


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_0029_takes_an_invitations_parts_out_of_the_skipped_counts(backend, tmp_path, request):
    """A weekly internal invitation's 20 occurrences were counted as 20 skipped messages, and an
    unreadable invitation part as an unreadable one: the upgrade takes back what their rows added."""
    t = "'2026-01-01 10:00:00'"
    counts = '{"internal meeting": 20, "internal": 1, "unreadable": 2}'
    rows = (
        *_org_and_alice(t),
        "INSERT INTO mailbox (id, org_id, owner_id, kind, config, sync_stage, status, failure_count, "
        f"messages_imported, skipped, created_at) VALUES (1, 1, 1, 'imap', '{{}}', 'idle', 'active', 0, 0, "
        f"'{counts}', {t})",
        "INSERT INTO folderstate (id, org_id, mailbox_id, name, role, selected, cursor, backfill_done, "
        f"messages, skipped, removed, status) VALUES (1, 1, 1, 'INBOX', 'inbox', true, '{{}}', true, 0, "
        f"'{counts}', 0, 'ok')",
        *(
            "INSERT INTO skippeditem (org_id, mailbox_id, folder, remote_id, reason, created_at) "
            f"VALUES (1, 1, 'INBOX', '{rid}', '{why}', {t})"
            for rid, why in [
                *((f"7/1#ics#2026-01-{d:02d}T10:00:00Z", "internal meeting") for d in range(1, 21)),
                ("7/1", "internal"),
            ]
        ),
        "INSERT INTO syncissue (org_id, mailbox_id, folder, remote_id, reason, created_at) "
        f"VALUES (1, 1, 'INBOX', '7/2#ics', 'invitation ignored', {t})",
        "INSERT INTO syncissue (org_id, mailbox_id, folder, remote_id, reason, created_at) "
        f"VALUES (1, 1, 'INBOX', '7/3', 'unreadable message', {t})",
    )
    with _old_database(backend, tmp_path, request, "0028", rows) as (url, engine):
        upgrade(url)
        with engine.connect() as conn:
            folder = conn.execute(text("SELECT skipped FROM folderstate")).scalar()
            mailbox = conn.execute(text("SELECT skipped FROM mailbox")).scalar()
    as_dict = lambda v: json.loads(v) if isinstance(v, str) else v  # noqa: E731
    assert as_dict(folder) == as_dict(mailbox) == {"internal": 1, "unreadable": 1}
