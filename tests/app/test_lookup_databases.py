"""The sidebar's lookup reads hand-written SQL with a dialect-specific part
(the contact's addresses in the card statement): the same mailbox gives the
same answer on SQLite and on PostgreSQL. The API runs it on plain driver
connections (app/db.py SqliteReader, PostgresReaders): they answer as the
SQLAlchemy connection does, keep to the caller's organisation, check the token
in the same call, and survive a PostgreSQL restart."""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.api import create_app
from app.db import PostgresReaders, read_only, session, write_transaction
from app.services import timeline
from tests import factories
from tests.servers import Postgres, free_port
from tests.world import NOW, make_world, message


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request):
    return request.getfixturevalue("postgres_migrated_url") if request.param == "postgresql" else None


def carol_world(tmp_path, imap_user_factory, db_url):
    """Alice's mail with Carol and Dan at Acme; Carol has a second address."""
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
    return world, carol


def test_lookup_reads_the_same_on_both_databases(tmp_path, imap_user_factory, db_url):
    world, carol = carol_world(tmp_path, imap_user_factory, db_url)
    day = timedelta(days=1)

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


def on_reader(rt, func, *args):
    """func(conn, *args) as the API runs it: on the plain reader of this database."""
    if (reader := rt.sqlite_reader()) is not None:
        with reader.snapshot():
            return func(reader, *args)
    return rt.postgres_readers().run(func, *args)


def on_orm(rt, func, *args):
    with read_only(rt.engine) as conn:
        return func(conn, *args)


ADDRESSES = [
    "carol@acme.com",
    "Carol.B@ACME-mail.com",
    "dan@acme.com",
    "erin.young@acme.com",  # no contact, at a known company
    "someone@elsewhere.example",  # nothing known
    "not an address",
]


def second_org(world) -> int:
    """Another organisation in the same database, with its own Carol (same address) and no mail."""
    with session(world.rt.engine) as s:
        other = factories.create_org(s, "OtherCo", ["otherco.com"])
        factories.add_user(s, other, "olga@otherco.com", name="Olga Other")
        other_id = other.id
    with write_transaction(world.rt.engine) as conn:
        cid = conn.execute(
            text(
                "INSERT INTO contact (org_id, name, search_name, primary_email, tags, created_at) "
                "VALUES (:o, 'Carol Elsewhere', 'carol elsewhere', 'carol@acme.com', '[]', :t) RETURNING id"
            ),
            {"o": other_id, "t": NOW},
        ).scalar_one()
        conn.execute(
            text("INSERT INTO contactaddress (org_id, contact_id, address) VALUES (:o, :c, 'carol@acme.com')"),
            {"o": other_id, "c": cid},
        )
    return other_id


def test_the_plain_readers_answer_as_the_orm_path_and_keep_to_the_organisation(tmp_path, imap_user_factory, db_url):
    world, carol = carol_world(tmp_path, imap_user_factory, db_url)
    other = second_org(world)
    rt = world.rt
    for org in (world.org_id, other):
        for address in ADDRESSES:
            for func in (timeline.lookup, timeline.unknown_address):
                assert on_reader(rt, func, org, address) == on_orm(rt, func, org, address), (org, address, func)
        assert on_reader(rt, timeline.contact_card, org, carol) == on_orm(rt, timeline.contact_card, org, carol)

    mine = on_reader(rt, timeline.lookup, world.org_id, "carol@acme.com")
    theirs = on_reader(rt, timeline.lookup, other, "carol@acme.com")
    assert mine["contact"]["name"] == "Carol Buyer" and len(mine["timeline"]["items"]) == 2
    # The other organisation's Carol: none of the first one's mail, colleagues, company or addresses.
    assert theirs["contact"]["name"] == "Carol Elsewhere" and theirs["contact"]["emails"] == ["carol@acme.com"]
    assert theirs["timeline"]["items"] == [] and theirs["summary"]["colleagues"] == []
    assert theirs["contact"]["company"] is None and theirs["company_contacts"] == []
    assert on_reader(rt, timeline.contact_card, other, carol) is None
    assert on_reader(rt, timeline.unknown_address, other, "erin.young@acme.com")["company"] is None
    assert on_reader(rt, timeline.lookup, other, "dan@acme.com") is None


def test_the_lookup_checks_its_token_in_its_own_database_call(tmp_path, imap_user_factory, db_url, monkeypatch):
    world, _ = carol_world(tmp_path, imap_user_factory, db_url)
    other = second_org(world)
    with session(world.rt.engine) as s:
        from app.services.orgs import find_user

        alice = find_user(s, world.org_id, "alice@ourco.com")
        token = factories.issue_token(s, alice)
        olga_token = factories.issue_token(s, find_user(s, other, "olga@otherco.com"))
        revoked = factories.issue_token(s, find_user(s, world.org_id, "bob@ourco.com"))
        factories.revoke_tokens(s, find_user(s, world.org_id, "bob@ourco.com"))
    calls = []
    if db_url:  # PostgreSQL: count the thread-pool hops, each one call of the readers
        real_run = PostgresReaders.run

        def counted(self, *a, **kw):
            calls.append(a[0])
            return real_run(self, *a, **kw)

        monkeypatch.setattr(PostgresReaders, "run", counted)

    def get(query: str, tok: str | None = token):
        headers = {"Authorization": f"Bearer {tok}"} if tok else {}
        calls.clear()
        return client.get(f"/api/lookup?{query}", headers=headers)

    with TestClient(create_app(world.rt)) as client:
        found = get("email=carol@acme.com")
        assert found.status_code == 200 and found.json()["contact"]["name"] == "Carol Buyer"
        assert len(calls) == (1 if db_url else 0)
        unknown = get("email=erin.young@acme.com")
        assert unknown.status_code == 404 and unknown.json()["unknown"]["company"]["domain"] == "acme.com"
        assert len(calls) == (1 if db_url else 0)
        # The token says whose organisation is read, in that same call.
        theirs = get("email=carol@acme.com", olga_token)
        assert theirs.status_code == 200 and theirs.json()["contact"]["name"] == "Carol Elsewhere"
        assert get("email=dan@acme.com", olga_token).json()["unknown"]["company"] is None

        # Refusals as on every endpoint: 401 before the query is looked at, then 422.
        for tok, query in [
            (None, "email=carol@acme.com"),
            (None, "limit=0"),
            ("tl_nonsense", "email=carol@acme.com"),
            ("tl_nonsense", "limit=0"),
            ("tl_nonsense", "email=carol@acme.com&limit=101"),
            ("tl_nonsense", "email=" + "x" * 321),
            (revoked, "email=carol@acme.com"),
            (revoked, "limit=abc"),
        ]:
            r = get(query, tok)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (tok, query, r.text)
        assert get("limit=0").status_code == 422
        assert get("email=carol@acme.com&limit=101").status_code == 422
        assert get("email=carol@acme.com&limit=5").status_code == 200


@pytest.fixture(scope="module")
def own_postgres(tmp_path_factory):
    """A cluster of this module's own: restarting it breaks no other test's connections."""
    server = Postgres(tmp_path_factory.mktemp("own-postgres"), port=free_port(), keep_data=True).start()
    yield server
    server.keep_data = False
    server.stop()


@pytest.mark.parametrize("db", ["postgresql"])  # its own cluster: not run again in the PostgreSQL pass
def test_the_postgresql_readers_reconnect_once_after_a_restart(own_postgres, tmp_path, imap_user_factory, db):
    world, _ = carol_world(tmp_path, imap_user_factory, own_postgres.create_database())
    rt = world.rt
    readers = rt.postgres_readers()
    opened = []
    real_connect = readers._connect
    readers._connect = lambda: opened.append(1) or real_connect()
    before = on_reader(rt, timeline.lookup, world.org_id, "carol@acme.com")
    assert before == on_orm(rt, timeline.lookup, world.org_id, "carol@acme.com")
    # Three readers idle, as after a burst of requests.
    held = [readers._take() for _ in range(3)]
    for r in held:
        readers._give(r)
    opened.clear()

    own_postgres.stop()
    with pytest.raises(psycopg2.OperationalError):  # down: an error at once, not a hang
        on_reader(rt, timeline.lookup, world.org_id, "carol@acme.com")
    own_postgres.start()

    # Every idle reader went with the old server: the first call drops them all and runs
    # once more on one new connection; the calls after it reuse that one.
    opened.clear()
    assert on_reader(rt, timeline.lookup, world.org_id, "carol@acme.com") == before
    assert len(opened) == 1
    for _ in range(3):
        assert on_reader(rt, timeline.lookup, world.org_id, "carol@acme.com") == before
    assert len(opened) == 1

    # Restarted under the API: its next lookups answer, none fails.
    with session(rt.engine) as s:
        from app.services.orgs import find_user

        token = factories.issue_token(s, find_user(s, world.org_id, "alice@ourco.com"))
    with TestClient(create_app(rt)) as client:
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/lookup?email=carol@acme.com", headers=headers).status_code == 200
        own_postgres.stop()
        own_postgres.start()
        for _ in range(3):
            r = client.get("/api/lookup?email=carol@acme.com", headers=headers)
            assert r.status_code == 200 and r.json()["contact"]["name"] == "Carol Buyer"


def test_a_postgresql_reader_is_read_only_and_statement_errors_keep_it(postgres_url, tmp_path):
    world = make_world(tmp_path, url=postgres_url)
    readers = world.rt.postgres_readers()
    for _ in range(2):
        with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
            readers.run(lambda r: r.rows("UPDATE organisation SET name = ? WHERE id = ?", ("x", world.org_id)))
        with pytest.raises(psycopg2.errors.UndefinedTable):
            readers.run(lambda r: r.rows("SELECT * FROM no_such_table"))
    # Still usable, out of any transaction, and the same connection: nothing was reopened.
    assert len(readers._idle) == 1
    for _ in range(3):  # prepared the first time, executed after
        assert readers.run(lambda r: r.rows("SELECT name FROM organisation WHERE id = ?", (world.org_id,))) == [
            ("OurCo",)
        ]
    assert readers.run(lambda r: r.rows("SELECT 1")) == [(1,)]
    assert readers.run(lambda r: r.rows("SELECT count(*) FROM pg_prepared_statements"))[0][0] >= 2
    assert readers.run(lambda r: r.rows("SELECT now() = statement_timestamp()")) == [(True,)]  # no open transaction
    # Threads at once get readers of their own.
    barrier = threading.Barrier(4)
    pids = []

    def backend(r):
        barrier.wait(10)
        return r.rows("SELECT pg_backend_pid()")[0][0]

    threads = [threading.Thread(target=lambda: pids.append(readers.run(backend))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(pids)) == 4
    assert world.scalar("SELECT name FROM organisation WHERE id = :o", o=world.org_id) == "OurCo"


def test_a_reader_whose_prepared_statements_went_stops_preparing(tmp_path, imap_user_factory, postgres_url):
    """DISCARD ALL (or a pooler handing over another server session) takes a session's
    prepared statements: the call runs again, unprepared, with the same answer."""
    world, _ = carol_world(tmp_path, imap_user_factory, postgres_url)
    rt = world.rt
    expected = on_orm(rt, timeline.lookup, world.org_id, "carol@acme.com")
    assert on_reader(rt, timeline.lookup, world.org_id, "carol@acme.com") == expected
    readers = rt.postgres_readers()
    reader = readers._idle[0]
    assert reader.prepare and reader._prepared
    reader._cur.execute("DEALLOCATE ALL")
    assert on_reader(rt, timeline.lookup, world.org_id, "carol@acme.com") == expected
    assert readers._idle == [reader] and not reader.prepare and not reader._prepared
    assert on_reader(rt, timeline.lookup, world.org_id, "carol@acme.com") == expected


def test_lookups_at_once_share_a_few_postgresql_connections(tmp_path, imap_user_factory, postgres_url):
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    world, _ = carol_world(tmp_path, imap_user_factory, postgres_url)
    with session(world.rt.engine) as s:
        from app.services.orgs import find_user

        token = factories.issue_token(s, find_user(s, world.org_id, "alice@ourco.com"))
    readers = world.rt.postgres_readers()
    opened = []
    real_connect = readers._connect
    readers._connect = lambda: opened.append(1) or real_connect()

    async def burst():
        transport = httpx.ASGITransport(app=create_app(world.rt))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            headers = {"Authorization": f"Bearer {token}"}
            return await asyncio.gather(
                *(client.get("/api/lookup", params={"email": "carol@acme.com"}, headers=headers) for _ in range(40))
            )

    # On a thread of its own: an earlier test may leave an event loop running on this one.
    with ThreadPoolExecutor(1) as pool:
        answers = pool.submit(asyncio.run, burst()).result()
    assert [r.status_code for r in answers] == [200] * 40
    assert 1 <= len(opened) <= PostgresReaders.MAX_OPEN


@pytest.mark.sqlite
def test_the_lookups_colleagues_are_read_by_the_contacts_key_not_through_the_organisations_rows(
    tmp_path, imap_user_factory
):
    # Without table statistics (a database no sync has analysed yet: one filled by an import or
    # a restore) SQLite took the reports' (org, colleague, contact) index on contactcolleague for
    # the lookup's colleagues and read every row of the organisation per lookup (5.5-9 ms at
    # 20,000 contacts, bench/lookup_cpu.py). Many contacts, no statistics.
    from app.models import Contact, ContactColleague
    from tests.sqlplans import sqlite_plan, statements

    world, carol = carol_world(tmp_path, imap_user_factory, None)
    with session(world.rt.engine) as db:
        org_users = text("SELECT id FROM app_user WHERE org_id = :o")
        users = [r[0] for r in db.connection().execute(org_users, {"o": world.org_id})]
        contacts = [Contact(org_id=world.org_id, name="", primary_email=f"c{n}@many.example") for n in range(3000)]
        db.add_all(contacts)
        db.flush()
        db.add_all(
            ContactColleague(contact_id=c.id, user_id=u, org_id=world.org_id, interactions=1, last_at=NOW)
            for c in contacts
            for u in users
        )
        db.commit()
    with write_transaction(world.rt.engine) as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS sqlite_stat1")
    world.rt.engine.dispose()  # connections read the statistics when they open
    with statements(world.rt.engine) as seen, read_only(world.rt.engine) as conn:
        colleagues = timeline.summary(conn, world.org_id, carol)["colleagues"]
    assert [c["email"] for c in colleagues] == ["alice@ourco.com"]
    ((sql, params),) = [(s, p) for s, p in seen if "FROM contactcolleague k" in s]
    plan = sqlite_plan(world.rt.engine, sql, params)
    assert "ix_contactcolleague_org_user" not in plan, plan
    assert "SEARCH k USING" in plan and "contact_id=?" in plan, plan
