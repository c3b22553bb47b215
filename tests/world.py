"""Small builders shared by the tests: a runtime on a temp database, an
organisation with reps, IMAP mailboxes on the test Dovecot, messages, and a
canonical snapshot of the whole timeline for exact comparisons."""

from __future__ import annotations

import secrets
import shutil
import threading
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

from sqlalchemy import text

from app.db import read_only, session
from app.runtime import Runtime, open_runtime
from app.services import mailboxes, orgs
from app.services.actor import Actor
from app.settings import load_settings
from sync.engine import sync_mailbox
from tests import factories

NOW = datetime.now(timezone.utc).replace(microsecond=0)

# The database a test's runtime (or CLI) gets when the test names none. By default the
# product's own default, SQLite in the data dir; with `pytest --database=postgresql`
# (conftest calls use_postgres) a database of its own on the session's PostgreSQL
# cluster, one per data dir so a CLI subprocess and the test share it.
_postgres = None
_template: str | None = None
_databases: dict[str, str] = {}
# On SQLite, the same idea as a file: a data dir's database starts as a copy of one migrated
# in this session (use_sqlite_template), made on first use.
_sqlite_template: Path | None = None
_sqlite_lock = threading.Lock()


_migrated: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # cluster -> its migrated template


def migrated_template(cluster) -> str:
    """The name of a database on `cluster` migrated to head, made once per cluster, to copy."""
    if cluster not in _migrated:
        from app.db import upgrade

        name = "t_template_" + secrets.token_hex(4)
        cluster.create_database(name)
        upgrade(cluster.url_for(name))
        _migrated[cluster] = name
    return _migrated[cluster]


def migrated_database(cluster, name: str | None = None) -> str:
    """A new database on `cluster` (named `name`, or at random) copied from the migrated
    template: the URL of a database at the newest schema, for tests not about migrating."""
    return cluster.create_database(name, template=migrated_template(cluster))


def use_postgres(cluster) -> None:
    """Give every data dir from now on a fresh database on `cluster`, copied from one
    migrated template: CREATE DATABASE ... TEMPLATE is one file copy, where migrating
    each test's database from the first revision would cost every test the upgrade."""
    global _postgres, _template
    _template = migrated_template(cluster)
    _postgres = cluster


def use_sqlite_template(path) -> None:
    """Start each data dir's SQLite database from now on as a copy of one migrated to head at
    `path` (made when first needed). Migrating an empty file from the first revision costs
    0.7-2 s a test (measured: 0.66-0.73 s on an idle core, 2 s for the first, cold one); a copy
    costs a few milliseconds, and the upgrade every start still runs finds nothing to do. The
    migrations themselves are tested from the first revision in tests/app/test_migrations.py."""
    global _sqlite_template
    _sqlite_template = Path(path)


def _sqlite_from_template(data_dir) -> None:
    if _sqlite_template is None:
        return
    db = Path(data_dir) / "threadline.db"
    if db.exists():
        return
    from app.db import upgrade

    with _sqlite_lock:  # runtime_env is called from threads (tests/app/test_cli.py)
        if not _sqlite_template.exists():
            made = _sqlite_template.with_name(_sqlite_template.name + ".new")
            upgrade(f"sqlite:///{made}")  # its engine is disposed: the WAL is checkpointed into the file
            assert not made.with_name(made.name + "-wal").exists()
            made.rename(_sqlite_template)
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_sqlite_template, db)


def database_url_for(data_dir) -> str | None:
    """The suite's database for `data_dir`; None means SQLite in the data dir."""
    if _postgres is None:
        return None
    key = str(Path(data_dir).resolve())
    if key not in _databases:
        _databases[key] = migrated_database(_postgres, "t_" + secrets.token_hex(6))
    return _databases[key]


def drop_databases_except(keep: set[str]) -> None:
    """Drop the databases made for data dirs other than `keep` (a test's, when it ends)."""
    for key in set(_databases) - keep:
        url = _databases.pop(key)
        _postgres.drop_database(url.rsplit("/", 1)[-1])


def database_rows(data_dir, query: str, **params) -> list[tuple]:
    """Rows of `query` on the database of `data_dir` (what a CLI run there wrote)."""
    from app.db import make_engine

    engine = make_engine(database_url_for(data_dir) or f"sqlite:///{Path(data_dir) / 'threadline.db'}")
    try:
        with read_only(engine) as conn:
            return [tuple(r) for r in conn.execute(text(query), params)]
    finally:
        engine.dispose()


def database_bytes(data_dir) -> bytes:
    """Everything the database of `data_dir` holds, for looking for a secret in it: SQLite's
    files (the WAL and shared memory too), or pg_dump's output on PostgreSQL."""
    import subprocess

    url = database_url_for(data_dir)
    if url is None:
        files = sorted(p for p in Path(data_dir).iterdir() if p.name.startswith("threadline.db"))
        assert any(p.name == "threadline.db" for p in files)
        return b"".join(p.read_bytes() for p in files)
    dump = [_postgres._bin("pg_dump"), "-h", _postgres.host, "-p", str(_postgres.port), "-U", _postgres.user]
    return subprocess.run([*dump, url.rsplit("/", 1)[-1]], capture_output=True, check=True, timeout=60).stdout


def json_value(value):
    """A JSON column read with raw SQL: text on SQLite, already decoded on PostgreSQL."""
    import json

    return json.loads(value) if isinstance(value, str) else value


def runtime_env(data_dir, **env) -> dict:
    """Settings for a runtime or CLI on `data_dir`, on the suite's database."""
    env = {"THREADLINE_DATA_DIR": str(data_dir), **env}
    if "THREADLINE_DATABASE_URL" not in env:
        if url := database_url_for(data_dir):
            env["THREADLINE_DATABASE_URL"] = url
        else:
            _sqlite_from_template(data_dir)
    return env


@dataclass
class World:
    rt: Runtime
    org_id: int

    def add_user(self, email: str, name: str = "", admin: bool = False, aliases=()) -> int:
        with session(self.rt.engine) as s:
            org = orgs.the_org(s, self.org_id)
            return factories.add_user(s, org, email, name=name, admin=admin, aliases=list(aliases)).id

    def add_imap(self, owner: str, imap_user, *, port: int | None = None, password: str | None = None) -> int:
        mb = mailboxes.add_imap(
            self.rt,
            Actor.operator(self.org_id),
            owner=owner,
            host=imap_user.host,
            port=port or imap_user.port,
            security="none",
            username=imap_user.username,
            password=password or imap_user.password,
        )
        return mb["id"]

    def sync(self, mailbox_id: int, **kw):
        return sync_mailbox(self.rt.engine, self.rt.box, mailbox_id, **kw)

    def sql(self, query: str, **params):
        with read_only(self.rt.engine) as conn:
            return conn.execute(text(query), params).all()

    def scalar(self, query: str, **params):
        with read_only(self.rt.engine) as conn:
            return conn.execute(text(query), params).scalar()

    def set_org(self, **values) -> None:
        sets = ", ".join(f"{k} = :{k}" for k in values)
        with self.rt.engine.begin() as conn:
            conn.execute(text(f"UPDATE organisation SET {sets} WHERE id = :org"), {**values, "org": self.org_id})

    def snapshot(self) -> dict:
        return snapshot(self.rt.engine, self.org_id)

    def seconds_to_next_poll(self, *mailbox_ids: int) -> float:
        """How long until the scheduler would sync any of these mailboxes on its own. A push
        test checks that this is far beyond its bound: then only the push can have brought the
        mail, and the test proves the push, not a speed (bench/fleet.py measures the speed)."""
        from sqlalchemy import func, select

        from app.models import Mailbox
        from app.models.base import utcnow

        mb = Mailbox.__table__
        with read_only(self.rt.engine) as conn:
            soonest = conn.execute(select(func.min(mb.c.next_sync_at)).where(mb.c.id.in_(mailbox_ids))).scalar()
        if isinstance(soonest, str):  # SQLite through a bare aggregate: the column's type is not applied
            soonest = datetime.fromisoformat(soonest)
        return (soonest.replace(tzinfo=None) - utcnow().replace(tzinfo=None)).total_seconds()

    def set_batch_size(self, mailbox_id: int, size: int) -> None:
        """Smaller fetch batches: more commits, for faults to fall between."""
        from sqlalchemy import select, update

        from app.models import Mailbox

        mb = Mailbox.__table__
        with self.rt.engine.begin() as conn:
            cfg = conn.execute(select(mb.c.config).where(mb.c.id == mailbox_id)).scalar()
            conn.execute(update(mb).where(mb.c.id == mailbox_id).values(config={**cfg, "batch_size": size}))

    def kill_cli_sync_midway(self, mailbox_id: int, env: dict) -> None:
        """`threadline sync --once` for this mailbox, SIGKILLed once its first batch is committed."""
        import os
        import signal
        import subprocess
        import sys
        import time
        from pathlib import Path

        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "sync", "--once", "--mailbox", str(mailbox_id)],
            cwd=Path(__file__).resolve().parents[1],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.time() + 90
        while time.time() < deadline and not self.scalar(
            "SELECT messages_imported FROM mailbox WHERE id = :i", i=mailbox_id
        ):
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def make_world(
    tmp_path,
    *,
    url: str | None = None,
    name: str = "OurCo",
    domains=("ourco.com",),
    reps=(("alice@ourco.com", "Alice Rep"), ("bob@ourco.com", "Bob Rep")),
    env: dict[str, str] | None = None,
) -> World:
    """An organisation with its reps on a fresh database; `env`: more settings (THREADLINE_...)."""
    env = runtime_env(
        tmp_path / "data", THREADLINE_IDLE="0", **({"THREADLINE_DATABASE_URL": url} if url else {}), **(env or {})
    )
    rt = open_runtime(load_settings(env))
    with session(rt.engine) as s:
        org = factories.create_org(s, name, list(domains))
        for email, rep_name in reps:
            factories.add_user(s, org, email, name=rep_name)
        org_id = org.id
    return World(rt, org_id)


def snapshot(engine, org_id: int) -> dict:
    """Everything on the timeline, without surrogate ids, for comparing two runs."""

    def rows(sql):
        with read_only(engine) as conn:
            return sorted(tuple(r) for r in conn.execute(text(sql), {"org": org_id}).all())

    return {
        "interactions": rows(
            "SELECT message_key, kind, direction, subject, snippet, thread_key, occurred_at "
            "FROM interaction WHERE org_id = :org"
        ),
        "participants": rows(
            "SELECT i.message_key, p.address, p.role, p.user_id IS NOT NULL, p.contact_id IS NOT NULL "
            "FROM participant p JOIN interaction i ON i.id = p.interaction_id WHERE p.org_id = :org"
        ),
        "sources": rows(
            "SELECT i.message_key, s.mailbox_id, f.name, s.remote_id FROM interactionsource s "
            "JOIN interaction i ON i.id = s.interaction_id JOIN folderstate f ON f.id = s.folder_id "
            "WHERE s.org_id = :org"
        ),
        "contacts": rows(
            "SELECT a.address, c.name, co.domain FROM contactaddress a JOIN contact c ON c.id = a.contact_id "
            "LEFT JOIN company co ON co.id = c.company_id WHERE a.org_id = :org"
        ),
        "companies": rows("SELECT domain, name FROM company WHERE org_id = :org"),
    }


def message(
    frm: str,
    to: str,
    subject: str = "Hello",
    *,
    msgid: str | None = None,
    when: datetime | None = None,
    cc: str | None = None,
    body: str = "Hi there,\nthis is the body.\n",
    extra: str = "",
) -> bytes:
    when = when or NOW - timedelta(days=1)
    lines = [f"From: {frm}", f"To: {to}"]
    if cc:
        lines.append(f"Cc: {cc}")
    lines += [f"Subject: {subject}", f"Date: {format_datetime(when)}"]
    if msgid:
        lines.append(f"Message-ID: <{msgid}>")
    if extra:
        lines.append(extra.rstrip("\r\n"))
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "", body]
    return "\r\n".join(lines).encode()
