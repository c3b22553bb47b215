"""Header parsing: the fast paths agree with the standard library, and bad
input becomes a clear BadDataError, never a crash."""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import getaddresses

import pytest
from hypothesis import given, settings, strategies as st

from connectors.base import BadDataError
from connectors.imapfetch import _uid_set, parse_internaldate
from connectors.mailparse import (
    addresses,
    decode_words,
    header_fields,
    is_bulk,
    parse_date,
    parse_message_headers,
    snippet_from_body,
)
from demodata import generate, malformed_messages

INTERNAL = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_simple_message():
    rec = parse_message_headers(
        "1/7",
        b"From: =?utf-8?q?Zo=C3=AB_M=C3=BCller?= <zoe@example.de>\r\n"
        b"To: a@x.com,\r\n b@y.com\r\nSubject: =?utf-8?b?R3LDvMOfZQ==?= and more\r\n"
        b"Date: Tue, 3 Nov 2026 10:00:00 +0100\r\nMessage-ID: <abc@host>\r\n"
        b"References: <r1@h> <r2@h>\r\nIn-Reply-To: <r2@h>\r\n\r\n",
        INTERNAL,
    )
    assert rec.from_ == [("Zoë Müller", "zoe@example.de")]
    assert [a for _, a in rec.to] == ["a@x.com", "b@y.com"]
    assert rec.subject == "Grüße and more"
    assert rec.date == datetime(2026, 11, 3, 9, 0, tzinfo=timezone.utc)
    assert rec.message_key == "abc@host" and rec.references == ["r1@h", "r2@h"] and rec.in_reply_to == "r2@h"


@pytest.mark.parametrize(
    "value",
    [
        'Bob <b@x.com>, "Smith, J" <j@y.com>, plain@z.org',
        "a@b.com (a comment)",
        "Group: one@x.com, two@y.com;",
        '"Quoted \\" name" <q@x.com>',
        "Foo Bar <foo@bar.com>,",
        "<x@y.com>",
        "undisclosed-recipients:;",
    ],
)
def test_address_fast_path_matches_standard_library(value):
    expected = [(n, a) for n, a in getaddresses([value]) if a and "@" in a]
    assert [a for _, a in addresses(value)] == [a for _, a in expected]


@pytest.mark.parametrize(
    "value,expected",
    [
        ("Mon, 2 Nov 2026 10:00:00 +0100", datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)),
        ("2 Nov 2026 10:00 -0500", datetime(2026, 11, 2, 15, 0, tzinfo=timezone.utc)),
        ("Mon, 02 Nov 2026 10:00:00 GMT", datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc)),
        ("Monday, November 2, 2026", None),
        ("garbage", None),
    ],
)
def test_dates(value, expected):
    assert parse_date(value) == expected


def test_missing_date_uses_internaldate_and_missing_id_gets_stable_key():
    block = b"From: a@x.com\r\nTo: b@y.com\r\nSubject: hi\r\n\r\n"
    one = parse_message_headers("1/1", block, INTERNAL)
    two = parse_message_headers("9/9", block, lambda: INTERNAL)
    assert one.date == INTERNAL == two.date
    assert one.message_key == two.message_key and one.message_key.startswith("sha256:")


@pytest.mark.parametrize(
    "block,reason",
    [
        (b"", "no header block"),
        (b"To: b@y.com\r\nSubject: x\r\n\r\n", "missing From"),
        (b"From: not an address\r\nTo: b@y.com\r\n\r\n", "invalid From"),
        (b"From: a@x.com\r\n\r\n", "no usable Date"),
    ],
)
def test_bad_headers_say_why(block, reason):
    with pytest.raises(BadDataError, match=reason):
        parse_message_headers("1/1", block, None)


def test_bulk_detection():
    assert is_bulk({"list-unsubscribe": "<mailto:x>"})
    assert is_bulk({"precedence": "bulk"})
    assert is_bulk({"auto-submitted": "auto-generated"})
    assert not is_bulk({"auto-submitted": "no"})
    assert not is_bulk({"subject": "hello"})


def test_encoded_words_with_unknown_charset_or_bad_base64_degrade_to_text():
    assert decode_words("=?x-unknown?q?abc?= def") == "abc def"
    assert isinstance(decode_words("=?utf-8?b?!!!?="), str)


def test_header_fields_unfold_and_keep_the_first():
    fields = header_fields(b"Subject: a\r\n  folded\r\nSubject: second\r\nX-Other: y\r\n\r\nbody")
    assert fields == {"subject": "a  folded"}


@pytest.mark.parametrize(
    "ctype,cte,body,expected",
    [
        (
            "text/plain; charset=utf-8",
            "quoted-printable",
            b"Gr=C3=BC=C3=9Fe aus Berlin=\r\n!\r\n> quoted\r\n",
            "Grüße aus Berlin!",
        ),
        ("text/plain", "base64", b"SGVsbG8gd29ybGQ=\r\n", "Hello world"),
        (
            'multipart/alternative; boundary="b1"',
            "7bit",
            b"--b1\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--b1\r\nContent-Type: text/plain\r\n\r\nplain text\r\n--b1--",
            "plain text",
        ),
        (
            'multipart/mixed; boundary="b2"',
            "7bit",
            b"--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>only <b>html</b></p>\r\n--b2--",
            "only html",
        ),
        ("application/pdf", "base64", b"JVBERi0=", None),
    ],
)
def test_snippets(ctype, cte, body, expected):
    assert snippet_from_body({"content-type": ctype, "content-transfer-encoding": cte}, body) == expected


def test_generated_corpus_parses_completely():
    _, messages = generate(seed=5, n_messages=300)
    for m in messages:
        head, _, body = m.raw.partition(b"\r\n\r\n")
        rec = parse_message_headers("1/1", head + b"\r\n\r\n", m.internaldate, body)
        assert rec.message_key == m.message_id.strip("<>")
        assert rec.from_


def test_malformed_samples_never_crash():
    for name, raw in malformed_messages():
        head, sep, body = raw.partition(b"\r\n\r\n")
        try:
            parse_message_headers("1/1", head + sep, INTERNAL, body)
        except BadDataError as exc:
            assert str(exc), name


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.binary(max_size=500))
def test_arbitrary_bytes_never_raise_anything_but_bad_data(head, body):
    try:
        parse_message_headers("1/1", head, INTERNAL, body)
    except BadDataError:
        pass


def test_internaldate_and_uid_sets():
    assert parse_internaldate(b"02-Nov-2026 10:00:00 +0100") == datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
    assert parse_internaldate(b"nonsense") is None
    assert _uid_set([5, 1, 2, 3, 9, 10, 7]) == "1:3,5,7,9:10"


@pytest.mark.parametrize(
    "msgid,weak",
    [
        ("1@localhost", True),
        ("12345", True),
        ("42@mail.acme.com", True),
        ("abcdef@[10.0.0.1]", True),
        ("abc@::1", True),
        ("CAF=abc123@mail.gmail.com", False),
        ("20261102.ABC@ourco.com", False),
        ("x1@acme", False),
        ("4f2a9c@2fa.example.org", False),
    ],
)
def test_which_message_ids_senders_reuse(msgid, weak):
    from connectors.mailparse import is_weak_message_id

    assert is_weak_message_id(msgid) is weak


def test_every_authentication_results_field_is_kept_newest_first_up_to_a_bound():
    from connectors.mailparse import MAX_REPEATS, authentication_results

    head = "".join(
        f"Authentication-Results: mx{n}.ourco.com;\r\n dmarc=pass header.from=ourco.com\r\n"
        for n in range(MAX_REPEATS + 3)
    )
    block = (
        head + "From: Bob <bob@ourco.com>\r\nTo: a@acme.com\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000\r\n"
        "Message-ID: <ar@x>\r\n\r\n"
    ).encode()
    record = parse_message_headers("1/1", block, INTERNAL)
    assert [authentication_results(v)[0] for v in record.auth_results] == [
        f"mx{n}.ourco.com" for n in range(MAX_REPEATS)
    ]
    assert record.relayed is None  # a HEADER.FIELDS subset cannot tell; the IMAP connector says


def test_authentication_results_are_read_through_comments_quotes_and_spacing():
    from connectors.mailparse import authentication_results

    assert authentication_results(
        'mx.ourco.com 1; dkim = pass (good; signature) header . d = "ourco.com" header.s=s1;'
        ' spf=pass (mx.ourco.com: domain of "x;y" (nested) designates 10.0.0.8) smtp.mailfrom=bob@ourco.com;'
        ' dmarc=fail reason="policy; quarantine" header.from=ourco.com'
    ) == (
        "mx.ourco.com",
        [
            ("dkim", "pass", {"header.d": "ourco.com", "header.s": "s1"}),
            ("spf", "pass", {"smtp.mailfrom": "bob@ourco.com"}),
            ("dmarc", "fail", {"header.from": "ourco.com"}),
        ],
    )
    assert authentication_results("mx.google.com; none") == ("mx.google.com", [])
    # Exchange Online writes no authserv-id: nothing says whose verdict it is.
    assert authentication_results("spf=pass (sender IP is 40.107.1.1) smtp.mailfrom=ourco.com") is None


@pytest.mark.parametrize(
    "field, count, kept, not_kept",
    [
        ("To", 499, 499, 0),
        ("To", 700, 500, 200),
        ("Cc", 10_000, 500, 9_500),  # 350 KB: cut at MAX_FIELD, the rest counted by its "@"
        ("Bcc", 2_000, 500, 1_500),
    ],
)
def test_recipients_beyond_the_kept_500_of_a_field_are_counted_not_dropped_silently(field, count, kept, not_kept):
    crowd = ", ".join(f"Person {i} <p{i}@crowd{i % 97}.example>" for i in range(count))
    rec = parse_message_headers(
        "1/9",
        f"From: a@x.com\r\n{field}: {crowd}\r\nSubject: all hands\r\nDate: Tue, 3 Nov 2026 10:00:00 +0100\r\n"
        "Message-ID: <crowd@x.com>\r\n\r\n".encode(),
        INTERNAL,
    )
    assert len(getattr(rec, field.lower())) == kept
    assert rec.recipients_not_kept == not_kept


def test_a_recipient_named_twice_is_counted_once_and_a_kept_one_never():
    crowd = [f"p{i}@crowd.example" for i in range(500)]
    rec = parse_message_headers(
        "1/10",
        (
            f"From: a@x.com\r\nTo: {', '.join(crowd + crowd[:100])}\r\nCc: {', '.join(crowd[:3])}, extra@crowd.example"
            "\r\nSubject: again\r\nDate: Tue, 3 Nov 2026 10:00:00 +0100\r\nMessage-ID: <again@x.com>\r\n\r\n"
        ).encode(),
        INTERNAL,
    )
    assert len(rec.to) == 500 and len(rec.cc) == 4
    assert rec.recipients_not_kept == 0


def test_thousands_of_nested_brackets_in_a_field_keep_the_message_and_its_addresses():
    """The standard parser recurses once per "(": past about a thousand it raised RecursionError
    and the message was skipped as unreadable. The addresses are then read by their shape."""
    assert addresses("Ann <ann@acme.com>, bob@acme.com " + "(" * 3000) == [("", "ann@acme.com"), ("", "bob@acme.com")]
    crowd = ", ".join(f"p{i}@crowd.example" for i in range(5_000)) + " " + "(" * 3_000
    rec = parse_message_headers(
        "1/11",
        f"From: a@x.com\r\nTo: {crowd}\r\nSubject: s\r\nDate: Tue, 3 Nov 2026 10:00:00 +0100\r\n"
        "Message-ID: <nested@x.com>\r\n\r\n".encode(),
        INTERNAL,
    )
    assert len(rec.to) == 500 and rec.recipients_not_kept == 4_500
