"""The minimal IDLE session that one selector thread holds by the thousand (connectors/imapidle.py)."""

from __future__ import annotations

import selectors
import time

import pytest

from connectors.base import AuthError
from connectors.imap import ImapSettings
from connectors.imapidle import IdleSession
from tests.world import message


def _session(user, password=None) -> IdleSession:
    settings = ImapSettings(host=user.host, port=user.port, security="none", username=user.username, timeout=5)
    return IdleSession(settings, user.password if password is None else password)


def _wait(session: IdleSession, until, timeout: float = 5.0) -> bool:
    """Drive the session as the hub does until until(news) is true."""
    sel = selectors.DefaultSelector()
    sel.register(session, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if sel.select(0.1) and until(session.on_readable()):
                return True
        return False
    finally:
        sel.close()


def test_an_idle_session_announces_new_mail_and_keeps_idling_across_renewals(imap_user):
    session = _session(imap_user)
    session.open()
    try:
        assert session.state == "idling"
        imap_user.deliver(message("a@cust.com", "alice@ourco.com", msgid="i1@cust"))
        assert _wait(session, lambda news: news), "no EXISTS announced"
        for _ in range(3):  # the heartbeat: DONE, tagged OK, IDLE, continuation
            session.renew()
            assert session.state == "renewing"
            assert _wait(session, lambda news: session.state == "idling"), "the renewal was not answered"
        imap_user.deliver(message("b@cust.com", "alice@ourco.com", msgid="i2@cust"))
        assert _wait(session, lambda news: news), "no EXISTS after renewals"
    finally:
        session.close()


def test_a_refused_login_is_an_auth_error_that_never_repeats_the_password(imap_user):
    session = _session(imap_user, password="wrong-Pa55word")
    with pytest.raises(AuthError) as refused:
        session.open()
    assert "login refused" in str(refused.value) and "wrong-Pa55word" not in str(refused.value)
    assert session.sock is None


def test_a_non_ascii_password_is_sent_as_a_literal(imap_user_factory):
    user = imap_user_factory(password="pässwörd-ünïcode")
    session = _session(user)
    session.open()
    try:
        assert session.state == "idling"
    finally:
        session.close()


def test_response_lines_are_split_with_their_literals():
    session = IdleSession(ImapSettings("h", 1, "none", "u"), "p")
    session._buf += b"* 1 FETCH (X {5}\r\na\r\nbc)\r\n* 2 EXIS"
    assert session._take_line() == b"* 1 FETCH (X {5}\r\na\r\nbc)"
    assert session._take_line() is None  # incomplete: waits for more
    session._buf += b"TS\r\n"
    assert session._take_line() == b"* 2 EXISTS"
