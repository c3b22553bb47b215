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
