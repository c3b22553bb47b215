"""Smoke tests for the real-server fixtures in tests/servers/ + conftest.py."""

from __future__ import annotations

import datetime as dt
import imaplib
import os
import socket
import threading
import time

import imapclient
import pytest
from imapclient.exceptions import IMAPClientError

from tests.servers import Dovecot, _pid_alive, _pids_with_title_prefix, free_port, wait_for_port

pytestmark = pytest.mark.servers  # real servers or the CLI in subprocesses

MSG = (
    b"From: Alice <alice@example.com>\n"
    b"To: rep@corp.example\n"
    b"Subject: Quarterly numbers\n"
    b"Message-ID: <q1@example.com>\n"
    b"Date: Thu, 02 Jan 2020 03:04:05 +0000\n"
    b"\n"
    b"Hello there.\n"
)


def crlf(b: bytes) -> bytes:
    return b.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_login_list_fetch(imap_user):
    when = dt.datetime(2020, 1, 2, 3, 4, 5)
    imap_user.deliver(MSG, internaldate=when, flags="\\Seen \\Flagged")
    imap_user.create_folder("Archive/2024")
    c = imap_user.connect()
    try:
        assert b"IDLE" in c.capabilities()
        assert b"CONDSTORE" in c.capabilities() and b"QRESYNC" in c.capabilities()
        assert b"SPECIAL-USE" not in c.capabilities()
        folders = {name: flags for flags, _sep, name in c.list_folders()}
        assert set(folders) == {"INBOX", "Archive", "Archive/2024"}
        assert all(b"\\Noselect" not in f for f in folders.values())
        sel = c.select_folder("INBOX")
        assert sel[b"EXISTS"] == 1
        uids = c.search("ALL")
        assert uids == [1]
        res = c.fetch(uids, ["RFC822", "RFC822.SIZE", "INTERNALDATE", "FLAGS"])[1]
        assert res[b"RFC822"] == crlf(MSG)
        assert res[b"RFC822.SIZE"] == len(crlf(MSG))
        assert res[b"INTERNALDATE"] == when
        assert set(res[b"FLAGS"]) >= {b"\\Seen", b"\\Flagged"}
    finally:
        c.logout()


def test_wrong_password_is_rejected_quickly(imap_user):
    c = imap_user.connect(login=False)
    t = time.monotonic()
    with pytest.raises(imapclient.exceptions.LoginError):
        c.login(imap_user.username, "wrong")
    assert time.monotonic() - t < 1.5  # no 2s auth_failure_delay / anvil penalty
    # and the IP is not penalised for the next (correct) login
    c2 = imap_user.connect()
    c2.logout()


def test_special_use(imap_user_factory, dovecot_special_use, dovecot):
    u = imap_user_factory(dovecot_special_use)
    for name in ("Sent", "Drafts", "Trash", "Junk", "Archive", "Sent Items"):
        u.create_folder(name)
    c = u.connect()
    try:
        assert b"SPECIAL-USE" in c.capabilities()
        flags = {name: set(f) for f, _sep, name in c.list_folders()}
        assert b"\\Sent" in flags["Sent"]
        assert b"\\Drafts" in flags["Drafts"]
        assert b"\\Trash" in flags["Trash"]
        assert b"\\Junk" in flags["Junk"]
        assert b"\\Archive" in flags["Archive"]
        assert not flags["Sent Items"] & {b"\\Sent", b"\\Drafts", b"\\Trash", b"\\Junk", b"\\Archive"}
        assert c.find_special_folder(b"\\Sent") == "Sent"
        # RFC 6154 LIST ... RETURN (SPECIAL-USE)
        typ, data = c._imap._simple_command("LIST", '""', '"*"', "RETURN", "(SPECIAL-USE)")
        assert typ == "OK"
        lines = c._imap.untagged_responses.pop("LIST", [])
        assert any(b"\\Sent" in line and line.endswith(b"Sent") for line in lines)
    finally:
        c.logout()

    plain = imap_user_factory(dovecot)
    plain.create_folder("Sent")
    c = plain.connect()
    try:
        assert b"SPECIAL-USE" not in c.capabilities()
        flags = {name: set(f) for f, _sep, name in c.list_folders()}
        assert b"\\Sent" not in flags["Sent"]
    finally:
        c.logout()


def test_disk_folder_changes_visible_in_open_session(imap_user):
    c = imap_user.connect()
    try:
        assert [n for _f, _s, n in c.list_folders()] == ["INBOX"]
        imap_user.create_folder("Prospects")
        assert "Prospects" in [n for _f, _s, n in c.list_folders()]
        imap_user.delete_folder("Prospects")
        assert "Prospects" not in [n for _f, _s, n in c.list_folders()]
    finally:
        c.logout()


def test_condstore(imap_user):
    imap_user.deliver(MSG)
    imap_user.deliver(MSG.replace(b"q1@", b"q2@"))
    c = imap_user.connect()
    try:
        c.enable("CONDSTORE")
        sel = c.select_folder("INBOX")
        modseq = sel[b"HIGHESTMODSEQ"]
        c.add_flags([2], [b"\\Seen"])
        changed = c.fetch([1, 2], ["FLAGS"], modifiers=[f"CHANGEDSINCE {modseq}"])
        assert list(changed) == [2]
        assert changed[2][b"MODSEQ"][0] > modseq
        c.unselect_folder()
        assert c.select_folder("INBOX")[b"HIGHESTMODSEQ"] > modseq
    finally:
        c.logout()
    # SELECT ... (CONDSTORE) without ENABLE also works
    c = imap_user.connect()
    try:
        typ, _ = c._imap._simple_command("SELECT", "INBOX", "(CONDSTORE)")
        assert typ == "OK"
        assert any(b"HIGHESTMODSEQ" in r for r in c._imap.untagged_responses.get("OK", []))
    finally:
        c.logout()


def test_idle_push_on_delivery(imap_user):
    imap_user.deliver(MSG)
    c = imap_user.connect()
    try:
        c.select_folder("INBOX")
        c.idle()
        time.sleep(0.1)
        t = time.monotonic()
        imap_user.deliver(MSG.replace(b"q1@", b"q2@"))
        responses = []
        while time.monotonic() - t < 20 and not responses:  # a bound for a loaded machine, not a speed
            responses = c.idle_check(timeout=0.2)
        c.idle_done()
        assert (2, b"EXISTS") in responses, responses
    finally:
        c.logout()


def test_deliver_many_keeps_order(imap_user):
    base = dt.datetime(2023, 1, 1)
    items = [
        (b"Subject: m%d\n\nbody %d\n" % (i, i), "Bulk", base - dt.timedelta(hours=i), "S" if i % 2 else "")
        for i in range(300)
    ]
    paths = imap_user.deliver_many(items)
    assert len(paths) == 300
    assert all(os.stat(p).st_uid == imap_user.dovecot._uid for p in paths[:5])
    c = imap_user.connect()
    try:
        c.select_folder("Bulk", readonly=True)
        uids = c.search("ALL")
        assert uids == list(range(1, 301))
        res = c.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]", "INTERNALDATE", "FLAGS"])
        for i, uid in enumerate(uids):
            assert res[uid][b"BODY[HEADER.FIELDS (SUBJECT)]"].strip() == b"Subject: m%d" % i
            assert res[uid][b"INTERNALDATE"] == base - dt.timedelta(hours=i)
            assert (b"\\Seen" in res[uid][b"FLAGS"]) == bool(i % 2)
    finally:
        c.logout()


@pytest.mark.parametrize("method", ["fs", "doveadm"])
def test_recreate_folder_changes_uidvalidity(imap_user, method):
    imap_user.create_folder("Clients")
    imap_user.deliver(MSG, folder="Clients")
    imap_user.deliver(MSG, folder="Clients")
    c = imap_user.connect()
    try:
        before = c.select_folder("Clients")
        assert before[b"EXISTS"] == 2
        c.unselect_folder()
        imap_user.recreate_folder("Clients", method=method)
        imap_user.deliver(MSG.replace(b"q1@", b"q3@"), folder="Clients")
        after = c.select_folder("Clients")  # same session
        assert after[b"UIDVALIDITY"] != before[b"UIDVALIDITY"]
        assert after[b"EXISTS"] == 1
        assert c.search("ALL") == [1]
    finally:
        c.logout()


def test_recreate_inbox_changes_uidvalidity(imap_user):
    imap_user.deliver(MSG)
    c = imap_user.connect()
    try:
        before = c.select_folder("INBOX")[b"UIDVALIDITY"]
    finally:
        c.logout()
    imap_user.recreate_folder("INBOX")
    c = imap_user.connect()
    try:
        sel = c.select_folder("INBOX")
        assert sel[b"UIDVALIDITY"] != before and sel[b"EXISTS"] == 0
    finally:
        c.logout()


def test_fault_proxy_cut_after(imap_user, fault_proxy):
    big = MSG + b"x" * 200 + b"\n" + (b"y" * 76 + b"\n") * 3000  # ~230 KB
    imap_user.deliver(big)
    proxy = fault_proxy(imap_user)
    c = imap_user.connect(port=proxy.port, host=proxy.host)
    c.select_folder("INBOX")
    proxy.cut_after(10_000)
    with pytest.raises((imaplib.IMAP4.abort, OSError, IMAPClientError)):
        c.fetch([1], ["RFC822"])
    assert proxy.cuts == 1
    # once=True: the next connection is healthy again
    c2 = imap_user.connect(port=proxy.port, host=proxy.host)
    c2.select_folder("INBOX")
    assert c2.fetch([1], ["RFC822"])[1][b"RFC822"] == crlf(big)
    c2.logout()
    assert proxy.connections_total == 2


def test_fault_proxy_cut_all_and_refuse(imap_user, fault_proxy):
    proxy = fault_proxy(imap_user.host, imap_user.port)
    c = imap_user.connect(port=proxy.port)
    c.select_folder("INBOX")
    assert proxy.connections_open == 1
    assert proxy.cut_all() == 1
    with pytest.raises((imaplib.IMAP4.abort, OSError, IMAPClientError)):
        c.noop()
    proxy.refuse(True)
    with pytest.raises((imaplib.IMAP4.abort, OSError, IMAPClientError, EOFError)):
        imap_user.connect(port=proxy.port, timeout=3)
    assert proxy.connections_refused == 1
    proxy.refuse(False)
    imap_user.connect(port=proxy.port).logout()


def test_fault_proxy_reset_and_stall(imap_user, fault_proxy):
    proxy = fault_proxy(imap_user)
    c = imap_user.connect(port=proxy.port)
    proxy.stall(True)
    c._imap.sock.settimeout(0.5)
    with pytest.raises((socket.timeout, imaplib.IMAP4.abort, OSError)):
        c.noop()
    proxy.heal()
    c2 = imap_user.connect(port=proxy.port)
    proxy.cut_after(0, once=False, reset=True)
    with pytest.raises((imaplib.IMAP4.abort, OSError, IMAPClientError)):
        c2.noop()
    proxy.stop()
    assert proxy.connections_open == 0
    time.sleep(0.1)
    assert not [t for t in threading.enumerate() if t.name.startswith("FaultProxy") and t.is_alive()]


def test_free_port_and_wait_for_port():
    p1, p2 = free_port(), free_port()
    assert p1 != p2
    with pytest.raises(TimeoutError):
        wait_for_port("127.0.0.1", p1, timeout=0.3)
    with socket.socket() as s:
        s.bind(("127.0.0.1", p1))
        s.listen()
        wait_for_port("127.0.0.1", p1, timeout=2)


def test_dovecot_lifecycle_leaves_nothing_behind(tmp_path):
    with Dovecot(tmp_path) as dv:
        dv.add_user("solo", "pw")
        c = imapclient.IMAPClient(dv.host, dv.port, ssl=False, timeout=10)
        c.login("solo", "pw")
        c.select_folder("INBOX")
        master = dv._master_pid
        assert master and _pid_alive(master)
        title = f"dovecot-{dv.root.name}/"
        root = dv.root
        assert _pids_with_title_prefix(title)
    assert not _pid_alive(master)
    assert _pids_with_title_prefix(title) == []
    assert not root.exists()  # runtime dir lived in /tmp (tmp_path is 0700)
    assert (tmp_path / "dovecot.log").exists()


def test_postgres(postgres, postgres_url):
    import sqlalchemy as sa

    assert postgres.url == f"postgresql+psycopg2://postgres@127.0.0.1:{postgres.port}/postgres"
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            assert conn.execute(sa.text("select 1")).scalar() == 1
            conn.execute(sa.text("create table t (id serial primary key, v text)"))
            conn.execute(sa.text("insert into t (v) values ('a'), ('b')"))
        with engine.connect() as conn:
            assert conn.execute(sa.text("select count(*) from t")).scalar() == 2
            assert conn.execute(sa.text("select current_database()")).scalar() == postgres_url.rsplit("/", 1)[1]
    finally:
        engine.dispose()
