"""IMAP servers configured unlike the suite's plain Dovecot: each a real Dovecot with
its own settings (connection limits, shared and public namespaces, ...), checking that
the connector reads what a plain server gives, or fails with the reason that fixes it."""

from __future__ import annotations

import pytest

from connectors.base import AuthError, ErrorKind, Fix
from connectors.imap import ImapConnector, ImapSettings
from connectors.imapidle import IdleSession
from tests.conftest import _IN_MEMORY, _start_or_fail
from tests.servers import Dovecot


def _connector(user, **kw) -> ImapConnector:
    settings = ImapSettings(user.host, user.port, "none", user.username, batch_size=kw.pop("batch", 3), timeout=10)
    return ImapConnector(settings, kw.pop("password", user.password), **kw)


# -- one connection per user and address ------------------------------------------------


@pytest.fixture(scope="module")
def dovecot_one_connection(tmp_path_factory):
    """mail_max_userip_connections = 1: while IDLE (or another mail client on the same
    host) holds the one connection, a second login is refused with NO [LIMIT]."""
    server = _start_or_fail(
        Dovecot(tmp_path_factory.mktemp("dovecot-one-conn"), max_userip_connections=1, in_memory=_IN_MEMORY),
        "Dovecot (one connection per user)",
    )
    yield server
    server.stop()


def test_a_login_refused_for_too_many_connections_is_a_wait_not_a_wrong_password(
    imap_user_factory, dovecot_one_connection
):
    user = imap_user_factory(server=dovecot_one_connection)
    holder = user.connect()  # the IDLE session, or the rep's own mail client
    try:
        with pytest.raises(Exception) as caught:
            _connector(user).list_folders()
    finally:
        holder.logout()
    assert not isinstance(caught.value, AuthError), caught.value
    assert caught.value.kind in (ErrorKind.THROTTLED, ErrorKind.TRANSIENT)
    assert caught.value.fix != Fix.PASSWORD
    assert "connections" in str(caught.value)
    _connector(user).list_folders()  # once the other connection is gone, the same login works


def test_an_idle_session_refused_for_too_many_connections_is_a_wait_not_a_wrong_password(
    imap_user_factory, dovecot_one_connection
):
    user = imap_user_factory(server=dovecot_one_connection)
    holder = user.connect()
    session = IdleSession(ImapSettings(user.host, user.port, "none", user.username, timeout=5), user.password)
    try:
        with pytest.raises(Exception) as caught:
            session.open()
    finally:
        session.close()
        holder.logout()
    assert not isinstance(caught.value, AuthError), caught.value
    assert caught.value.kind in (ErrorKind.THROTTLED, ErrorKind.TRANSIENT)


# -- other users' and public namespaces ---------------------------------------------------


@pytest.fixture(scope="module")
def dovecot_shared_namespaces(tmp_path_factory):
    """A server with two more namespaces (RFC 2342), as Dovecot, Cyrus and Courier sites set
    them up: `shared/<user>/` shows what colleagues shared with the rep (ACLs), `Public/`
    the organisation's public folders."""
    config = """
namespace shared {
  type = shared
  separator = /
  prefix = shared/%%u/
  location = maildir:%h/../%%u
  list = yes
  subscriptions = no
}
namespace public {
  type = public
  separator = /
  prefix = Public/
  location = maildir:%h/../.public-folders
  list = yes
  subscriptions = no
}
mail_plugins = $mail_plugins acl
protocol imap {
  mail_plugins = $mail_plugins imap_acl
}
plugin {
  acl = vfile
  acl_shared_dict = file:%h/../.shared-mailboxes.db
}
"""
    server = _start_or_fail(
        Dovecot(tmp_path_factory.mktemp("dovecot-shared"), extra_config=config), "Dovecot (shared namespaces)"
    )
    # Public folders live beside the users' Maildirs; everyone may look and read.
    public = server.mail_root / ".public-folders"
    for sub in ("", "cur", "new", "tmp", ".Support", ".Support/cur", ".Support/new", ".Support/tmp"):
        server._makedirs_owned(public / sub)
    for acl in (public / "dovecot-acl", public / ".Support" / "dovecot-acl"):
        acl.write_text("anyone lr\n")
    yield server
    server.stop()


def test_colleagues_shared_mailboxes_and_public_folders_are_not_imported_as_the_reps_own_mail(
    imap_user_factory, dovecot_shared_namespaces
):
    from datetime import timedelta

    from tests.world import NOW, message

    server = dovecot_shared_namespaces
    alice, bob = imap_user_factory(server=server), imap_user_factory(server=server)
    alice.create_folder("Clients")
    alice.deliver(message("carla@cust.com", "alice@ourco.com", msgid="a1@cust"), internaldate=NOW - timedelta(days=2))
    bob.deliver(message("dan@cust.com", "bob@ourco.com", msgid="b1@cust"), internaldate=NOW - timedelta(days=2))
    server.doveadm("acl", "set", "-u", bob.username, "INBOX", f"user={alice.username}", "lookup", "read")

    conn = _connector(alice)
    try:
        roles = {f.name: f.role for f in conn.list_folders()}
        shared_inbox = f"shared/{bob.username}"
        assert shared_inbox in roles and "Public/Support" in roles  # the server does show them
        mine = {name for name, role in roles.items() if role != "skip"}
        assert mine == {"INBOX", "Clients"}, roles
    finally:
        conn.close()


def test_a_shared_folder_read_before_namespaces_were_known_stops_being_read_and_loses_its_copies(
    imap_user_factory, dovecot_shared_namespaces, tmp_path, monkeypatch
):
    """A mailbox first synced by a version that did not ask for namespaces had stored the
    colleague's shared folder as its own: the next run skips it and drops its copies."""
    from datetime import timedelta

    from tests.world import NOW, make_world, message

    server = dovecot_shared_namespaces
    alice, bob = imap_user_factory(server=server), imap_user_factory(server=server)
    alice.deliver(message("carla@cust.com", "alice@ourco.com", msgid="s1@cust"), internaldate=NOW - timedelta(days=2))
    bob.deliver(message("dan@cust.com", "bob@ourco.com", msgid="s2@cust"), internaldate=NOW - timedelta(days=2))
    server.doveadm("acl", "set", "-u", bob.username, "INBOX", f"user={alice.username}", "lookup", "read")
    world = make_world(tmp_path)
    mid = world.add_imap("alice@ourco.com", alice)
    shared = f"shared/{bob.username}"
    copies_in = "SELECT count(*) FROM interactionsource s JOIN folderstate f ON f.id = s.folder_id WHERE f.name = :n"

    with monkeypatch.context() as m:
        m.setattr(ImapConnector, "_foreign_namespaces", lambda self, client: [])  # as before
        assert world.sync(mid, fetch_in_child=False).ok
    assert world.sql("SELECT role <> 'skip', selected FROM folderstate WHERE name = :n", n=shared) == [(True, True)]
    assert world.scalar(copies_in, n=shared) == 1

    bob.deliver(message("erin@cust.com", "bob@ourco.com", msgid="s3@cust"), internaldate=NOW - timedelta(hours=2))
    report = world.sync(mid, fetch_in_child=False)
    assert report.ok, report
    assert world.sql("SELECT role, selected FROM folderstate WHERE name = :n", n=shared) == [("skip", False)]
    assert world.scalar(copies_in, n=shared) == 0
    assert world.scalar("SELECT count(*) FROM interaction WHERE message_key LIKE '%s3@cust%'") == 0
    assert world.scalar("SELECT messages_imported FROM mailbox") == 1  # Carla's, the rep's own


def test_a_server_that_refuses_namespace_is_read_as_one_without(imap_user, monkeypatch):
    # It advertises NAMESPACE and answers NO: the rep's folders are listed all the same.
    import imaplib

    from imapclient import IMAPClient

    def refuse(self):
        raise imaplib.IMAP4.error("NAMESPACE failed: not now")

    monkeypatch.setattr(IMAPClient, "namespace", refuse)
    imap_user.create_folder("Clients")
    conn = _connector(imap_user)
    try:
        roles = {f.name: f.role for f in conn.list_folders()}
    finally:
        conn.close()
    assert roles.get("INBOX") == "inbox" and roles.get("Clients") == "other", roles
