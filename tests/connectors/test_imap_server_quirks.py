"""Answers other IMAP servers give that Dovecot does not: the connector's FETCH
reader and batch loop driven by a scripted server stream. (Everything Dovecot
can show is tested against Dovecot; these shapes come from Gmail, Yahoo and
older servers.)"""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from connectors.base import Folder, TransientError
from connectors.imap import ImapConnector, ImapSettings
from connectors.imapfetch import HEADER_FIELDS_KEY, FetchFailed, read_fetch, send_fetch
from connectors.mailparse import parse_message_headers

HEADERS = (
    b"From: Ann <ann@acme.com>\r\nTo: me@ourco.com\r\nSubject: Hello\r\n"
    b"Date: Mon, 02 Nov 2026 10:00:00 +0000\r\nMessage-ID: <m%d@acme.com>\r\n\r\n"
)


class ScriptedServer:
    """The part of imaplib.IMAP4 the lean reader uses: send(), readline(), read().
    answer(uids) gives the response lines (bytes, literals inline) for one UID FETCH."""

    def __init__(self, answer):
        self.answer, self.sent, self._buffer = answer, [], b""

    def send(self, data: bytes) -> None:
        self.sent.append(data)
        tag, _, rest = data.partition(b" UID FETCH ")
        uid_set = rest.split(b" ", 1)[0].decode()
        uids = []
        for part in uid_set.split(","):
            lo, _, hi = part.partition(":")
            uids += list(range(int(lo), int(hi or lo) + 1))
        self._buffer += self.answer(tag, uids)

    def readline(self) -> bytes:
        line, sep, rest = self._buffer.partition(b"\r\n")
        self._buffer = rest
        return line + sep

    def read(self, size: int) -> bytes:
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def fetch_line(uid: int, header_section: bytes = b"BODY[HEADER.FIELDS (FROM TO)]", extra: bytes = b"") -> bytes:
    block = HEADERS % uid
    return (
        b'* %d FETCH (UID %d FLAGS (\\Seen)%s INTERNALDATE "02-Nov-2026 10:00:00 +0000" %s {%d}\r\n'
        % (uid, uid, extra, header_section, len(block))
        + block
        + b")\r\n"
    )


def test_header_section_echoed_quoted_or_reordered_and_snippet_with_length():
    def answer(tag, uids):
        out = fetch_line(1, b'BODY[HEADER.FIELDS ("FROM" "TO")]')
        out += fetch_line(2, b"body[header.fields (to from)]")
        out += b'* 3 FETCH (UID 3 BODY[TEXT]<0.1024> "Hi Ann, see you soon" FLAGS (\\Seen))\r\n'
        return out + tag + b" OK done\r\n"

    server = ScriptedServer(answer)
    got = read_fetch(server, send_fetch(server, [1, 2, 3], "UID FLAGS"))
    assert got[1][HEADER_FIELDS_KEY] == HEADERS % 1 and got[2][HEADER_FIELDS_KEY] == HEADERS % 2
    assert got[3][b"BODY[TEXT]<0>"] == b"Hi Ann, see you soon"


def test_split_and_unsolicited_fetch_responses_are_merged_not_replaced():
    def answer(tag, uids):
        return (
            fetch_line(7)
            + b"* 7 FETCH (UID 7 FLAGS (\\Seen \\Answered) MODSEQ (12))\r\n"  # a flag change meanwhile
            + tag
            + b" OK done\r\n"
        )

    server = ScriptedServer(answer)
    got = read_fetch(server, send_fetch(server, [7], "UID"))
    assert got[7][HEADER_FIELDS_KEY] == HEADERS % 7 and got[7][b"INTERNALDATE"]


def test_drafts_by_flag_or_gmail_label_are_marked():
    def answer(tag, uids):
        return (
            fetch_line(1, extra=b" X-GM-LABELS (\\Inbox)")
            + fetch_line(2, extra=b' X-GM-LABELS ("\\\\Draft" "Clients (old)")')
            + fetch_line(3).replace(b"FLAGS (\\Seen)", b"FLAGS (\\Draft)")
            + tag
            + b" OK done\r\n"
        )

    server = ScriptedServer(answer)
    got = read_fetch(server, send_fetch(server, [1, 2, 3], "UID"))
    assert [bool(got[u].get(b"DRAFT")) for u in (1, 2, 3)] == [False, True, True]


GMAIL_ID = 1278455344230334865  # the X-GM-MSGID of Google's own example
BIGGEST = 2**64 - 1


def test_gmail_message_and_thread_ids_are_read_as_unsigned_64_bit_numbers_wherever_they_stand():
    def answer(tag, uids):
        return (
            # before the header literal, as Gmail answers
            fetch_line(1, extra=b" X-GM-MSGID %d X-GM-THRID %d" % (GMAIL_ID, BIGGEST))
            # after the literal, on the closing line, in lower case, the thread id padded
            + fetch_line(2).replace(b")\r\n", b" x-gm-thrid 000042 x-gm-msgid 18446744073709551614)\r\n")
            # split over two FETCH responses
            + fetch_line(3)
            + b'* 3 FETCH (UID 3 X-GM-MSGID 9 X-GM-LABELS (\\Inbox "X-GM-THRID 1"))\r\n'
            + tag
            + b" OK Success\r\n"
        )

    server = ScriptedServer(answer)
    got = read_fetch(server, send_fetch(server, [1, 2, 3], "UID X-GM-MSGID X-GM-THRID"))
    ids = {u: (got[u].get(b"X-GM-MSGID"), got[u].get(b"X-GM-THRID")) for u in (1, 2, 3)}
    assert ids == {
        1: (b"1278455344230334865", b"18446744073709551615"),
        2: (b"18446744073709551614", b"42"),
        3: (b"9", None),  # a label named like the item is not one
    }
    assert all(got[u][HEADER_FIELDS_KEY] == HEADERS % u for u in (1, 2, 3))


@pytest.mark.parametrize(
    "items",
    [
        b" X-GM-MSGID 18446744073709551616",  # 2**64: past 64 bits
        b" X-GM-MSGID 123456789012345678901",  # 21 digits
        b" X-GM-MSGID -5",
        b" X-GM-MSGID 0",
        b" X-GM-MSGID 0x11bc2",
        b' X-GM-MSGID "12345"',
        b" X-GM-MSGID NIL",
        b" X-GM-MSGID 12.5",
        b" X-GM-MSGID",
        b' BODY[TEXT]<0> "quoting X-GM-MSGID 77 in the text"',
    ],
)
def test_anything_else_sent_as_a_gmail_id_is_left_out_and_the_message_kept(items):
    def answer(tag, uids):
        return fetch_line(1, extra=items) + tag + b" OK Success\r\n"

    server = ScriptedServer(answer)
    got = read_fetch(server, send_fetch(server, [1], "UID X-GM-MSGID"))
    assert b"X-GM-MSGID" not in got[1] and got[1][HEADER_FIELDS_KEY] == HEADERS % 1


@pytest.mark.parametrize("gmail", [True, False])
def test_gmail_ids_are_asked_for_only_where_x_gm_ext_1_is_advertised_and_carried_on_the_record(gmail):
    def answer(tag, uids):
        extra = b" X-GM-MSGID %d X-GM-THRID %d" % (GMAIL_ID, GMAIL_ID + 1) if gmail else b""
        return b"".join(fetch_line(u, extra=extra) for u in uids) + tag + b" OK Success\r\n"

    server = ScriptedServer(answer)
    conn = _connector_on(server)
    if gmail:
        conn.capabilities.add(b"X-GM-EXT-1")
    [(_, records, bad)] = list(conn._batches(FOLDER, 77, [3]))
    assert (b"X-GM-MSGID X-GM-THRID" in server.sent[0]) is gmail and not bad
    [record] = records
    expected = (str(GMAIL_ID), str(GMAIL_ID + 1)) if gmail else (None, None)
    assert (record.provider_id, record.provider_thread) == expected


def _connector_on(server) -> ImapConnector:
    conn = ImapConnector(ImapSettings("imap.example", 993, "tls", "me", batch_size=10), "pw")
    conn.capabilities = {b"IMAP4REV1"}

    class Client:
        _imap = server

    conn._client = Client()
    return conn


FOLDER = Folder(name="[Gmail]/All Mail", role="archive", flags=())


def test_a_fetch_refused_for_one_message_keeps_the_rest_and_records_that_one():
    def answer(tag, uids):
        if uids == [4]:  # alone, message 4 is still refused: it is broken on the server's side
            return tag + b" NO Some messages could not be FETCHed (Failure)\r\n"
        out = b"".join(fetch_line(u) for u in uids if u != 4)
        return out + tag + b" NO Some messages could not be FETCHed (Failure)\r\n"

    server = ScriptedServer(answer)
    [(chunk, records, bad)] = list(_connector_on(server)._batches(FOLDER, 77, [3, 4, 5]))
    assert sorted(r.message_key for r in records) == ["m3@acme.com", "m5@acme.com"]
    assert [b.remote_id for b in bad] == ["77/4"] and "would not send" in bad[0].reason
    assert len(server.sent) == 2  # the batch, then message 4 alone


def test_a_refusal_that_means_try_later_skips_nothing():
    def answer(tag, uids):
        return fetch_line(uids[0]) + tag + b" NO [UNAVAILABLE] Temporary backend failure\r\n"

    with pytest.raises(TransientError, match="for now"):
        list(_connector_on(ScriptedServer(answer))._batches(FOLDER, 77, [3, 4, 5]))


def test_every_message_refused_is_a_transient_failure_not_a_batch_of_bad_records():
    def answer(tag, uids):
        return tag + b" NO Server error\r\n"

    with pytest.raises(TransientError, match="every message"):
        list(_connector_on(ScriptedServer(answer))._batches(FOLDER, 77, [3, 4, 5]))


def test_fetch_failed_carries_what_came_before():
    def answer(tag, uids):
        return fetch_line(1) + tag + b" NO partial\r\n"

    server = ScriptedServer(answer)
    with pytest.raises(FetchFailed) as caught:
        read_fetch(server, send_fetch(server, [1, 2], "UID"))
    assert list(caught.value.partial) == [1]


@pytest.mark.parametrize(
    "date_header,expected",
    [
        ("Mon, 01 Jan 2099 00:00:00 +0000", datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc)),  # a broken clock
        ("Thu, 01 Jan 1970 00:00:00 +0000", datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc)),  # epoch zero
        ("Sun, 01 Nov 2026 09:00:00 +0000", datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)),  # plausible: kept
    ],
)
def test_implausible_dates_give_way_to_the_server_date(date_header, expected):
    block = re.sub(rb"Date: [^\r]*", b"Date: " + date_header.encode(), HEADERS % 1)
    received = datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc)
    assert parse_message_headers("1/1", block, received).date == expected
