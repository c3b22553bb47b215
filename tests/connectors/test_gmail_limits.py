"""Gmail's documented limits, against a real Dovecot behind a shim that answers as Gmail
does when an account is over them (tests/fakes/google/imapshim.py): each answer is the
throttling error kind, and the engine waits before the next run (30 s doubling; an hour
for over-quota); an OK [THROTTLED] keeps the batch it answered and stops before the next."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from connectors.base import ErrorKind, Folder, ThrottledError
from connectors.imap import OVERQUOTA_WAIT, ImapConnector, ImapSettings
from tests.fakes.google.imapshim import OVERQUOTA, THROTTLED_NO, GmailLimitsShim
from tests.world import make_world, message


@pytest.fixture
def shim(imap_user):
    s = GmailLimitsShim(imap_user.host, imap_user.port)
    yield s
    s.stop()


def connector(shim, user, batch_size: int = 1000) -> ImapConnector:
    settings = ImapSettings(
        host=shim.host, port=shim.port, security="none", username=user.username, batch_size=batch_size
    )
    return ImapConnector(settings, user.password, want_snippet=False)


def deliver(user, n: int) -> None:
    for i in range(n):
        user.dovecot.deliver(user.username, message("carla@acme.com", "alice@ourco.com", msgid=f"m{i}@acme.com"))


def read_all(conn: ImapConnector) -> list:
    since = datetime.now(timezone.utc) - timedelta(days=30)
    return list(conn.fetch_changes(Folder("INBOX", "inbox"), {}, since))


def test_too_many_simultaneous_connections_at_login_is_throttling_not_a_wrong_password(shim, imap_user):
    shim.refuse_login = True
    with pytest.raises(ThrottledError) as caught:
        connector(shim, imap_user).list_folders()
    assert caught.value.kind == ErrorKind.THROTTLED and caught.value.fix is None
    assert caught.value.retry_after is None  # the engine's backoff: 30 s, doubling
    assert "Too many simultaneous connections" in str(caught.value)


def test_overquota_is_throttling_for_an_hour_and_no_throttled_for_the_engines_backoff(shim, imap_user):
    deliver(imap_user, 3)
    shim.fetch_answer = OVERQUOTA
    conn = connector(shim, imap_user)
    with pytest.raises(ThrottledError) as caught:
        read_all(conn)
    assert caught.value.retry_after == OVERQUOTA_WAIT == 3600 and "over its quota" in str(caught.value)
    conn.close()

    shim.fetch_answer = THROTTLED_NO
    conn = connector(shim, imap_user)
    with pytest.raises(ThrottledError) as caught:
        read_all(conn)
    assert caught.value.retry_after is None and "[THROTTLED]" in str(caught.value)
    conn.close()

    shim.fetch_answer = None  # the limit lifted: everything is read
    conn = connector(shim, imap_user)
    assert sum(len(b.records) for b in read_all(conn)) == 3
    conn.close()


def test_ok_throttled_keeps_the_batch_read_then_stops_the_run(shim, imap_user):
    deliver(imap_user, 5)
    shim.throttle_ok = True
    conn = connector(shim, imap_user, batch_size=2)
    batches = []
    with pytest.raises(ThrottledError):
        for batch in conn.fetch_changes(Folder("INBOX", "inbox"), {}, datetime.now(timezone.utc) - timedelta(days=30)):
            batches.append(batch)
    assert [len(b.records) for b in batches] == [2]  # the first batch came, no second FETCH was sent
    # The shim records each command line before forwarding it, so once a NOOP has been
    # answered every line sent before it is in the record: a second FETCH would be there.
    conn.connect().noop()
    assert sum("FETCH" in c for c in shim.commands) == 1 and "NOOP" in shim.commands[-1]
    conn.close()


def test_the_engine_backs_off_30_s_doubling_and_an_hour_over_quota_then_reads_everything(shim, imap_user, tmp_path):
    deliver(imap_user, 5)
    w = make_world(tmp_path)
    mb = w.add_imap("alice@ourco.com", imap_user, port=shim.port)

    def state():
        row = w.sql(
            "SELECT status, last_error_kind, failure_count, next_sync_at, last_error FROM mailbox WHERE id = :i", i=mb
        )[0]
        nxt = row[3] if isinstance(row[3], datetime) else datetime.fromisoformat(str(row[3]))
        wait = (nxt.replace(tzinfo=timezone.utc) - datetime.now(timezone.utc)).total_seconds()
        return row[0], row[1], row[2], wait, row[4]

    shim.refuse_login = True
    assert not w.sync(mb, fetch_in_child=False).ok
    status, kind, failures, wait, error = state()
    assert (status, kind, failures) == ("failed", "throttled", 1) and 20 < wait <= 30
    assert "Too many simultaneous connections" in error

    shim.refuse_login, shim.fetch_answer = False, THROTTLED_NO
    assert not w.sync(mb, fetch_in_child=False, force=True).ok
    status, kind, failures, wait, _ = state()
    assert (kind, failures) == ("throttled", 2) and 50 < wait <= 60  # doubled

    shim.fetch_answer = OVERQUOTA
    assert not w.sync(mb, fetch_in_child=False, force=True).ok
    status, kind, failures, wait, _ = state()
    assert (kind, failures) == ("throttled", 3) and 3500 < wait <= 3600

    shim.fetch_answer = None
    assert w.sync(mb, fetch_in_child=False, force=True).ok
    assert w.sql("SELECT status, failure_count FROM mailbox WHERE id = :i", i=mb)[0] == ("active", 0)
    assert w.sql("SELECT COUNT(*) FROM interaction")[0][0] == 5
