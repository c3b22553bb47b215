"""The database itself in trouble: its disk fills up, or it turns read-only. An import says what
is wrong in words an admin can act on (never the driver's message, which carries SQL and
addresses), loses nothing, and once the trouble is gone the next run ends as a clean import, row
for row. The API answers a refused write with 503 and the reason, the CLI with the reason."""

from __future__ import annotations

import sqlite3

import psycopg2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, IntegrityError

from app.api import create_app
from app.db import session
from app.dberrors import database_trouble
from app.models import User
from sync.fixes import RunError
from tests import factories
from tests.cli import run_cli
from tests.faults.backfill import cli_env, fill, world_for
from tests.faults.timeline import assert_same_timeline, timeline
from tests.servers import free_port
from tests.world import message, migrated_database


@pytest.mark.sqlite  # SQLite's own full disk; PostgreSQL's trouble is the read-only tests below
def test_a_sqlite_database_that_fills_up_mid_import_says_so_and_the_next_run_ends_as_a_clean_import(
    imap_user, tmp_path
):
    corpus = fill(imap_user, 1500)
    clean = world_for(tmp_path, corpus, "clean")
    assert clean.sync(clean.add_imap(corpus.reps[0][1], imap_user)).ok
    expected = timeline(clean)

    world = world_for(tmp_path, corpus, "full")
    mid = world.add_imap(corpus.reps[0][1], imap_user)
    world.set_batch_size(mid, 40)
    with world.rt.engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()

    # A full disk, as SQLite reports it (SQLITE_FULL): the file may not grow past ~600 KB more.
    def cap(dbapi_conn, _record):
        dbapi_conn.execute(f"PRAGMA max_page_count={pages + 150}")

    event.listen(world.rt.engine, "connect", cap)
    world.rt.engine.dispose()
    first = world.sync(mid)
    event.remove(world.rt.engine, "connect", cap)
    world.rt.engine.dispose()

    assert 0 < first.imported < len(expected["interactions"]), first
    assert first.folders_failed and all("the database's disk is full" in f for f in first.folders_failed), first
    status, error = world.sql("SELECT status, last_error FROM mailbox")[0]
    assert status == "importing" and "the database's disk is full" in error
    assert "INSERT" not in error and "@" not in error  # no SQL, no addresses

    second = world.sync(mid)  # space freed
    assert second.ok and not second.folders_failed, second
    assert_same_timeline(timeline(world), expected, what="an import whose database filled up")
    assert world.sql("SELECT status, last_error FROM mailbox")[0] == ("active", None)


def test_a_postgresql_database_set_read_only_fails_the_run_with_its_reason_and_fix_and_the_next_run_recovers(
    postgres, imap_user, tmp_path
):
    corpus = fill(imap_user, 300)
    url = migrated_database(postgres)
    world = world_for(tmp_path, corpus, "read-only", url=url)
    mid = world.add_imap(corpus.reps[0][1], imap_user)
    dbname = url.rsplit("/", 1)[-1]
    admin = psycopg2.connect(host=postgres.host, port=postgres.port, user=postgres.user, dbname="postgres")
    admin.autocommit = True

    def read_only(on: bool) -> None:
        # As on a standby, or a database an operator set read-only for maintenance.
        setting = "SET default_transaction_read_only = on" if on else "RESET default_transaction_read_only"
        with admin.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{dbname}" {setting}')
        world.rt.engine.dispose()

    try:
        read_only(True)
        first = world.sync(mid)
        assert first is not None and not first.ok, first
        assert first.error_kind == RunError.DATABASE and "the database is read-only" in first.error, first
        assert "UPDATE" not in first.error  # the driver's message, with its SQL, only in the log
        # The command line says it, with what to do (nothing could be written to the database).
        cli = run_cli(["sync", "--once", "--mailbox", str(mid)], cli_env(world))
        assert cli.returncode == 1, cli
        assert "FAILED" in cli.stdout and "the database is read-only" in cli.stdout, cli.stdout
        assert "nothing imported is lost" in cli.stdout, cli.stdout
        assert world.sql("SELECT lease_owner, messages_imported FROM mailbox") == [(None, 0)]

        read_only(False)
        second = world.sync(mid)
        assert second.ok and second.imported > 0, second
        assert world.sql("SELECT status, last_error FROM mailbox")[0] == ("active", None)
    finally:
        admin.close()


@pytest.mark.sqlite  # SQLite's own full disk; PostgreSQL's trouble is the read-only tests below
def test_a_disk_that_refuses_every_write_ends_the_run_with_the_reason_although_its_outcome_cannot_be_stored(
    mailbox, imap_user, tmp_path
):
    corpus, expected = mailbox
    world = world_for(tmp_path, corpus, "every-write-refused")
    mid = world.add_imap(corpus.reps[0][1], imap_user)
    world.set_batch_size(mid, 40)
    transactions = []

    # A real full disk: once a few batches are in, every write fails (the WAL cannot grow either),
    # the batch's, the folder's error and the run's outcome alike.
    def full_disk(conn, cursor, statement, *_):
        sql = statement.lstrip().upper()
        if sql.startswith("BEGIN IMMEDIATE"):  # every write transaction on SQLite (app/db.py)
            transactions.append(1)
        writes = sql.startswith(("BEGIN IMMEDIATE", "INSERT", "UPDATE", "DELETE"))
        if writes and len(transactions) > 6:
            error = sqlite3.OperationalError("database or disk is full")
            error.sqlite_errorcode = 13
            raise error

    event.listen(world.rt.engine, "before_cursor_execute", full_disk)
    try:
        first = world.sync(mid)
    finally:
        event.remove(world.rt.engine, "before_cursor_execute", full_disk)
    assert first is not None and not first.ok, first
    assert first.error_kind == RunError.DATABASE and "the database's disk is full" in first.error, first
    assert "INSERT" not in first.error and "@" not in first.error
    kept = world.scalar("SELECT count(*) FROM interaction")
    assert 0 < kept < len(expected["interactions"])

    second = world.sync(mid, force=True)  # the refused run could not release its lease
    assert second is not None and second.ok and not second.folders_failed, second
    assert_same_timeline(timeline(world), expected, what="an import whose disk refused every write")


def test_a_read_only_database_keeps_the_sidebar_readable_and_refuses_writes_with_the_reason(
    postgres, imap_user, tmp_path
):
    url = migrated_database(postgres)
    world = world_for(tmp_path, fill_one(imap_user), "api-read-only", url=url)
    assert world.sync(world.add_imap("alice@ourco.com", imap_user)).ok
    contact_id = world.scalar("SELECT contact_id FROM contactaddress WHERE address = 'carol@acme.com'")
    with session(world.rt.engine) as s:
        token = factories.issue_token(s, s.query(User).filter(User.email == "alice@ourco.com").one(), name="t")
    auth = {"Authorization": f"Bearer {token}"}
    dbname = url.rsplit("/", 1)[-1]
    admin = psycopg2.connect(postgres.dsn)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{dbname}" SET default_transaction_read_only = on')
        world.rt.engine.dispose()
        with TestClient(create_app(world.rt)) as client:
            assert client.get("/api/lookup?email=carol@acme.com", headers=auth).status_code == 200
            refused = client.post(f"/api/contacts/{contact_id}/notes", json={"body": "Call back"}, headers=auth)
        assert refused.status_code == 503 and refused.headers["retry-after"], refused.text
        assert refused.json()["error"] == "database" and "read-only" in refused.json()["detail"]
        assert "INSERT" not in refused.text
        cli = run_cli(["user", "add", "dora@ourco.com"], cli_env(world))
        assert cli.returncode == 1 and "error: the database is read-only" in cli.stderr, cli
        assert "Traceback" not in cli.stderr and "INSERT" not in cli.stderr
    finally:
        with admin.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{dbname}" RESET default_transaction_read_only')
        admin.close()
        world.rt.engine.dispose()
    assert world.scalar("SELECT count(*) FROM app_user WHERE email = 'dora@ourco.com'") == 0


def fill_one(imap_user):
    """One customer mail in the rep's INBOX; the corpus shape world_for wants."""
    imap_user.deliver(message("Carol Buyer <carol@acme.com>", "alice@ourco.com", "Quote", msgid="q1@acme"))

    class Corpus:
        internal_domains = ("ourco.com",)
        reps = [("Alice Rep", "alice@ourco.com")]

    return Corpus


def _error(orig: BaseException) -> DBAPIError:
    base = psycopg2.Error if isinstance(orig, psycopg2.Error) else sqlite3.Error
    return DBAPIError.instance("INSERT INTO contact VALUES (...)", {"a": "x@y.com"}, orig, base)


def test_only_the_databases_own_trouble_gets_words_and_a_constraint_violation_stays_a_fault_in_threadline(
    tmp_path,
):
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = 13
    extended_readonly = sqlite3.OperationalError("attempt to write a readonly database")
    extended_readonly.sqlite_errorcode = 8 | (1 << 8)  # SQLITE_READONLY_RECOVERY: the primary code counts
    assert isinstance(_error(full), DBAPIError)
    assert database_trouble(_error(full)) == "the database's disk is full"
    assert database_trouble(_error(extended_readonly)) == "the database file is read-only"
    same_connection = sqlite3.OperationalError("database table is locked")
    same_connection.sqlite_errorcode = 6  # SQLITE_LOCKED: a conflict inside one connection, our own fault
    assert database_trouble(_error(same_connection)) is None

    db = sqlite3.connect(tmp_path / "x.db")
    db.execute("CREATE TABLE t (a INTEGER PRIMARY KEY)")
    db.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.IntegrityError) as unique:
        db.execute("INSERT INTO t VALUES (1)")
    assert database_trouble(IntegrityError.instance("INSERT", {}, unique.value, sqlite3.Error)) is None
    assert database_trouble(ValueError("not a database error")) is None


def test_postgresql_conditions_are_read_from_the_sqlstate(postgres):
    conn = psycopg2.connect(host=postgres.host, port=postgres.port, user=postgres.user, dbname="postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cur, pytest.raises(psycopg2.Error) as read_only:
            cur.execute("SET default_transaction_read_only = on")
            cur.execute("CREATE TEMP TABLE t (a int)")
        assert read_only.value.pgcode == "25006"
        assert isinstance(_error(read_only.value), DBAPIError)
        assert database_trouble(_error(read_only.value)).startswith("the database is read-only")
        with conn.cursor() as cur, pytest.raises(psycopg2.Error) as division:
            cur.execute("SET default_transaction_read_only = off")
            cur.execute("SELECT 1/0")
        assert database_trouble(_error(division.value)) is None  # 22012, a fault of the statement
        # A closed cursor is a fault in the code, not a lost connection.
        cur = conn.cursor()
        cur.close()
        with pytest.raises(psycopg2.InterfaceError) as closed_cursor:
            cur.execute("SELECT 1")
        assert database_trouble(_error(closed_cursor.value)) is None
    finally:
        conn.close()
    with pytest.raises(psycopg2.OperationalError) as unreachable:
        psycopg2.connect(host=postgres.host, port=free_port(), user=postgres.user, dbname="postgres", connect_timeout=5)
    assert "could not be reached" in database_trouble(_error(unreachable.value))
