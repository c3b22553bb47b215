"""The IMAP connector on its own: folder roles, batches and cursors, errors."""

from __future__ import annotations

from datetime import timedelta

import pytest

from connectors.base import AuthError, Fix, TransientError
from connectors.imap import ImapConnector, ImapSettings, classify_folder
from tests.world import NOW, message


@pytest.mark.parametrize(
    "name,flags,delim,role",
    [
        ("INBOX", (), "/", "inbox"),
        ("Sent Items", (), "/", "sent"),
        ("Gesendete Elemente", (), "/", "sent"),
        ("[Gmail]/Sent Mail", (b"\\Sent",), "/", "sent"),
        ("[Gmail]/All Mail", (b"\\All",), "/", "archive"),
        ("[Gmail]/Starred", (b"\\Flagged",), "/", "skip"),
        ("[Gmail]/Important", (b"\\Important",), "/", "skip"),
        ("Archive", (), ".", "archive"),
        ("Deleted Items", (), "/", "skip"),
        ("Junk E-mail", (), "/", "skip"),
        ("Trash/Old deals", (), "/", "skip"),
        ("Weird", (b"\\Noselect",), "/", "skip"),
        ("Customers/Acme", (), "/", "other"),
        ("Stuff", (b"\\Junk",), "/", "skip"),
        # Servers without SPECIAL-USE, in other languages: drafts would otherwise pass for sent mail.
        ("INBOX.Concepten", (), ".", "skip"),
        ("Rascunhos", (), "/", "skip"),
        ("Borradores", (), "/", "skip"),
        ("INBOX/Éléments supprimés", (), "/", "skip"),
        ("Verwijderde items", (), "/", "skip"),
        ("Lixo Eletrônico", (), "/", "skip"),
        ("Itens Enviados", (), "/", "sent"),
        ("INBOX.Verzonden items", (), ".", "sent"),
    ],
)
def test_folder_roles(name, flags, delim, role):
    assert classify_folder(name, flags, delim) == role


def _connector(imap_user, **kw) -> ImapConnector:
    settings = ImapSettings(imap_user.host, imap_user.port, "none", imap_user.username, batch_size=kw.pop("batch", 3))
    return ImapConnector(settings, kw.pop("password", imap_user.password), **kw)


def test_batches_new_mail_first_then_backfill_newest_first(imap_user):
    for i in range(7):
        imap_user.deliver(
            message(f"p{i}@cust.com", "me@ourco.com", f"M{i}", msgid=f"b{i}@x"),
            internaldate=NOW - timedelta(days=7 - i),
        )
    conn = _connector(imap_user)
    inbox = next(f for f in conn.list_folders() if f.role == "inbox")
    since = NOW - timedelta(days=365)
    batches = list(conn.fetch_changes(inbox, {}, since))
    keys = [[r.message_key for r in b.records] for b in batches]
    assert keys[:3] == [["b6@x", "b5@x", "b4@x"], ["b3@x", "b2@x", "b1@x"], ["b0@x"]]
    assert batches[-1].backfill_done and batches[-1].cursor["backfill_done"]
    cursor = batches[-1].cursor
    assert list(conn.fetch_changes(inbox, cursor, since)) == []  # nothing changed: no work at all

    imap_user.deliver(message("new@cust.com", "me@ourco.com", "New", msgid="b7@x"))
    more = list(conn.fetch_changes(inbox, cursor, since))
    assert [r.message_key for b in more for r in b.records] == ["b7@x"]
    conn.close()


def test_snippet_is_fetched_only_when_wanted(imap_user):
    imap_user.deliver(message("p@cust.com", "me@ourco.com", "S", msgid="s@x", body="The snippet text.\n"))
    for want, expected in ((True, "The snippet text."), (False, None)):
        conn = _connector(imap_user, want_snippet=want)
        inbox = next(f for f in conn.list_folders() if f.role == "inbox")
        (batch, *_rest) = list(conn.fetch_changes(inbox, {}, NOW - timedelta(days=30)))
        assert batch.records[0].snippet == expected
        conn.close()


def test_wrong_password_is_an_auth_error_whose_fix_is_the_password(imap_user):
    with pytest.raises(AuthError, match="login refused") as info:
        _connector(imap_user, password="wrong").list_folders()
    assert info.value.fix == Fix.PASSWORD


def test_closed_port_is_transient(imap_user):
    from tests.servers import free_port

    settings = ImapSettings("127.0.0.1", free_port(), "none", "x")
    with pytest.raises(TransientError, match="refused"):
        ImapConnector(settings, "pw").list_folders()


def test_tls_to_a_plain_server_is_transient(imap_user):
    settings = ImapSettings(imap_user.host, imap_user.port, "tls", imap_user.username, timeout=5)
    with pytest.raises(TransientError):
        ImapConnector(settings, imap_user.password).list_folders()


def _login_bytes(imap_user, proxy) -> tuple[int, int]:
    """Bytes the server sends through the proxy before LOGIN (greeting, capabilities)
    and up to the end of its answer to LOGIN."""
    import time

    client = imap_user.connect(login=False, port=proxy.port)
    time.sleep(0.2)  # the proxy counts a chunk after passing it on
    before = proxy.bytes_s2c
    client.login(imap_user.username, imap_user.password)
    time.sleep(0.2)
    after = proxy.bytes_s2c
    client.logout()
    return before, after


def test_a_connection_cut_during_login_is_transient_not_a_wrong_password(imap_user, fault_proxy):
    proxy = fault_proxy(imap_user)
    before, after = _login_bytes(imap_user, proxy)
    assert after > before + 10
    settings = ImapSettings(proxy.host, proxy.port, "none", imap_user.username, timeout=10)
    for offset in (before, before + 1, before + 5, (before + after) // 2, after - 2, after - 1):
        proxy.cut_after(offset)  # counted from the start of the next connection
        with pytest.raises(TransientError) as caught:
            ImapConnector(settings, imap_user.password).list_folders()
        assert "password" not in str(caught.value), (offset, caught.value)
        assert proxy.cuts, offset
        proxy.heal()
        proxy.cuts = 0
    # The server's own refusal through the same proxy is still an auth error.
    with pytest.raises(AuthError) as refused:
        ImapConnector(settings, "not-the-password").list_folders()
    assert refused.value.fix == Fix.PASSWORD  # the fix (check the password) travels as a value


def _aged(imap_user, ages: tuple[int, ...]) -> None:
    """One message per age in days, delivered in this order (UIDs follow it), "<n> days" its subject."""
    for days in ages:
        imap_user.deliver(
            message("p@cust.com", "me@ourco.com", f"{days} days", msgid=f"aged{days}@x"),
            internaldate=NOW - timedelta(days=days),
        )


def test_a_wider_backfill_window_is_read_newest_first_and_an_interrupted_pass_resumes_where_it_stood(imap_user):
    _aged(imap_user, (400, 80, 70, 60, 50, 40, 2))  # delivered oldest first, as mail arrives
    conn = _connector(imap_user, batch=2)
    inbox = next(f for f in conn.list_folders() if f.role == "inbox")
    cursor = list(conn.fetch_changes(inbox, {}, NOW - timedelta(days=30)))[-1].cursor
    wider = NOW - timedelta(days=365)
    first = next(iter(conn.fetch_changes(inbox, cursor, wider)))
    conn.close()  # the run stops after one batch
    assert [r.subject for r in first.records] == ["40 days", "50 days"] and first.first_reading
    conn = _connector(imap_user, batch=2)
    try:
        rest = list(conn.fetch_changes(inbox, first.cursor, wider))
        assert [r.subject for b in rest for r in b.records] == ["60 days", "70 days", "80 days"]
        done = rest[-1]
        assert done.backfill_done and done.cursor["since"] == wider.date().isoformat()
        assert done.cursor["server_count"] == 6 and not {"widen_to", "widen_below"} & set(done.cursor)
        assert list(conn.fetch_changes(inbox, done.cursor, wider)) == []  # nothing owed any more
    finally:
        conn.close()


def test_a_window_made_wider_during_the_first_import_still_reads_what_the_uids_above_its_low_mark_hold(imap_user):
    """The backfill went on with the new first day, but only below the lowest UID read: mail above it
    from the days between (moved in before the first import, so its UID is high) was never read."""
    _aged(imap_user, (400, 60, 10, 5, 3, 50))  # the last one was moved in from another folder
    conn = _connector(imap_user, batch=2)
    inbox = next(f for f in conn.list_folders() if f.role == "inbox")
    first = next(iter(conn.fetch_changes(inbox, {}, NOW - timedelta(days=30))))
    conn.close()  # the first import stops after one batch
    assert [r.subject for r in first.records] == ["3 days", "5 days"]
    conn = _connector(imap_user, batch=2)
    try:
        rest = list(conn.fetch_changes(inbox, first.cursor, NOW - timedelta(days=365)))
    finally:
        conn.close()
    read = sorted(r.subject for b in rest for r in b.records)
    assert read == ["10 days", "50 days", "60 days"]
    assert rest[-1].backfill_done and rest[-1].cursor["server_count"] == 5


def test_an_expunge_during_an_interrupted_widening_pass_is_told_for_what_it_read(imap_user):
    """VANISHED was asked from the low mark up, and a widening pass reads below it: a message it
    read, expunged before the pass ended, kept its copy for good."""
    _aged(imap_user, (80, 70, 60, 50, 3))
    conn = _connector(imap_user, batch=2)
    inbox = next(f for f in conn.list_folders() if f.role == "inbox")
    cursor = list(conn.fetch_changes(inbox, {}, NOW - timedelta(days=30)))[-1].cursor
    first = next(iter(conn.fetch_changes(inbox, cursor, NOW - timedelta(days=365))))
    conn.close()  # the pass stops after one batch: 50 and 60 days read
    assert [r.subject for r in first.records] == ["50 days", "60 days"] and first.cursor["low_uid"] == 5
    gone = next(r.remote_id for r in first.records if r.subject == "60 days")
    client = imap_user.connect()
    client.select_folder("INBOX")
    client.delete_messages([int(gone.rpartition("/")[2])])
    client.expunge()
    client.logout()
    conn = _connector(imap_user, batch=2)
    try:
        rest = list(conn.fetch_changes(inbox, first.cursor, NOW - timedelta(days=365)))
    finally:
        conn.close()
    assert gone in [x for b in rest for x in b.removed]
    assert sorted(r.subject for b in rest for r in b.records) == ["70 days", "80 days"]
