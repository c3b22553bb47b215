"""Small builders shared by the tests: a runtime on a temp database, an
organisation with reps, IMAP mailboxes on the test Dovecot, messages, and a
canonical snapshot of the whole timeline for exact comparisons."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

from sqlalchemy import text

from app.db import read_only, session
from app.runtime import Runtime, open_runtime
from app.services import mailboxes, orgs
from app.services.actor import Actor
from app.settings import load_settings
from sync.engine import sync_mailbox
from tests import factories

NOW = datetime.now(timezone.utc).replace(microsecond=0)


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
) -> World:
    env = {"THREADLINE_DATA_DIR": str(tmp_path / "data"), "THREADLINE_IDLE": "0"}
    if url:
        env["THREADLINE_DATABASE_URL"] = url
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
