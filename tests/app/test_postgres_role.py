"""Threadline on PostgreSQL as production runs it: an ordinary role (no superuser, cannot create
databases or roles) owning its database, with PUBLIC's privileges on that database revoked, as
hardened servers do. Migrations from the first revision, a first import through the bulk paths
(COPY into session temporary tables), and the sidebar's lookup on its plain readers all work as
that role; README.md's "PostgreSQL" section sets it up the same way. And a server whose time
zone is not UTC (the host's, by default) answers every session in UTC all the same."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone

import psycopg2
import pytest
from fastapi.testclient import TestClient

from app.api import create_app
from app.db import PostgresReaders, session
from app.models import User
from tests import factories
from tests.servers import Postgres, free_port
from tests.world import make_world, message


def test_an_ordinary_role_owning_its_database_migrates_imports_and_serves_lookups(postgres, imap_user, tmp_path):
    role = "tl_" + secrets.token_hex(4)
    dbname = role + "_db"
    admin = psycopg2.connect(postgres.dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
        cur.execute(f"CREATE DATABASE {dbname} OWNER {role}")
        cur.execute(f"REVOKE ALL ON DATABASE {dbname} FROM PUBLIC")  # no CONNECT or TEMP for anyone else
    admin.close()
    url = f"postgresql+psycopg2://{role}@{postgres.host}:{postgres.port}/{dbname}"

    world = make_world(tmp_path, url=url)  # every migration, from the first revision, as the role
    # Enough rows for the staged bulk paths (app/db.py: STAGE_FROM), through the fetch child.
    imap_user.deliver_many(
        [
            message(
                f"Buyer {i % 30} <buyer{i % 30}@acme{i % 3}.com>", "alice@ourco.com", f"Quote {i}", msgid=f"r{i}@acme"
            )
            for i in range(400)
        ]
    )
    mid = world.add_imap("alice@ourco.com", imap_user)
    report = world.sync(mid, fetch_in_child=True)
    assert report is not None and report.ok and report.imported == 400, report
    assert world.scalar("SELECT count(*) FROM participant") >= 800
    assert world.scalar("SELECT current_user") == role
    assert world.scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is False

    with session(world.rt.engine) as s:
        token = factories.issue_token(s, s.query(User).filter(User.email == "alice@ourco.com").one(), name="t")
    with TestClient(create_app(world.rt)) as client:
        found = client.get("/api/lookup?email=buyer7@acme1.com", headers={"Authorization": f"Bearer {token}"})
    assert found.status_code == 200, found.text
    assert found.json()["contact"]["email"] == "buyer7@acme1.com"


@pytest.fixture(scope="module")
def far_east_postgres(tmp_path_factory):
    """A server whose TimeZone is the host's, and the host 14 hours ahead of UTC."""
    server = Postgres(
        tmp_path_factory.mktemp("kiritimati"), port=free_port(), settings={"timezone": "Pacific/Kiritimati"}
    )
    yield server.start()
    server.stop()


def test_every_session_reads_times_in_utc_whatever_the_servers_time_zone(far_east_postgres, imap_user, tmp_path):
    url = far_east_postgres.url_for("tz_" + secrets.token_hex(4))
    far_east_postgres.create_database(url.rsplit("/", 1)[-1])
    world = make_world(tmp_path, url=url)
    at = datetime(2026, 12, 1, 3, 0, tzinfo=timezone.utc)
    imap_user.deliver(message("Carla <carla@acme.com>", "alice@ourco.com", "Demo", msgid="tz1@acme", when=at))
    assert world.sync(world.add_imap("alice@ourco.com", imap_user)).ok

    assert world.scalar("SHOW TimeZone") == "UTC"
    stored = world.scalar("SELECT occurred_at FROM interaction")
    assert stored.utcoffset() == timedelta(0) and str(stored)[:19] == "2026-12-01 03:00:00"
    readers = PostgresReaders(world.rt.engine)
    try:
        assert readers.run(lambda r: r.rows("SELECT current_setting('TimeZone')")) == [("UTC",)]
        assert readers.run(lambda r: r.rows("SELECT occurred_at FROM interaction"))[0][0] == stored
    finally:
        readers.close()
