"""The fast paths of header parsing give exactly what the line-by-line reader gives.

header_fields reads a block that looks like an IMAP server's (CRLF lines, a field
first, nothing longer than a field may be) in one pass over the unfolded text, and
hands everything else to _fields_by_line, the reader that accepts whatever comes.
These tests compare the two on generated blocks full of odd cases, on the demo
corpus and on its malformed samples, and compare whole MessageRecords parsed with
and without the fast path."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given, settings, strategies as st

from connectors import mailparse
from connectors.base import BadDataError
from connectors.mailparse import MAX_FIELD, _fields_by_line, _text, header_fields, parse_message_headers
from demodata import generate, malformed_messages

INTERNAL = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def by_line(block: bytes) -> dict[str, str]:
    """header_fields as it was before the fast path: cut at the blank line, decode, read line by line."""
    end = block.find(b"\r\n\r\n")
    if end < 0:
        end = block.find(b"\n\n")
    if end >= 0:
        block = block[:end]
    return _fields_by_line(_text(block))


NAMES = st.sampled_from(
    [
        "From",
        "to",
        "CC",
        "Subject",
        "Date",
        "Message-ID",
        "References",
        "Authentication-Results",
        "Content-Type",
        "X-Other",
        "DKIM-Signature",
        "From ",
        "Fr om",
        "Kontent-Type",  # K with a Kelvin sign lower-cases to "k"
        "Ｆrom",
        "",
    ]
)
VALUE = st.lists(
    st.sampled_from(list('ab <>@.,;:"()=?_\t é€\x00\x0b\ufffd\u2028') + ["=?utf-8?q?x=C3=A9?="]), max_size=40
).map("".join)
EOL = st.sampled_from(["\r\n", "\r\n", "\r\n", "\n", "\r"])


@st.composite
def header_blocks(draw) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["field", "field", "field", "continuation", "no colon", "blank"]))
        if kind == "field":
            line = draw(NAMES) + draw(st.sampled_from([":", ": ", " :", "\t: "])) + draw(VALUE)
        elif kind == "continuation":
            line = draw(st.sampled_from([" ", "\t", "  "])) + draw(VALUE)
        elif kind == "no colon":
            line = draw(VALUE).replace(":", "")
        else:
            line = ""
        lines.append(line + draw(EOL))
    ending = draw(st.sampled_from(["\r\n", "", "\r\nbody: not a header\r\n", "\n"]))
    encoding = draw(st.sampled_from(["utf-8", "latin-1"]))
    return "".join(lines).encode(encoding, "replace") + ending.encode()


@settings(max_examples=1500, deadline=None)
@given(header_blocks())
def test_the_fast_header_reader_agrees_with_the_line_by_line_reader_on_odd_blocks(block):
    assert header_fields(block) == by_line(block)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_the_fast_header_reader_agrees_on_arbitrary_bytes(block):
    assert header_fields(block) == by_line(block)


@pytest.mark.parametrize("block", [b"Sub\x80ject: hi\r\nFrom: a@b.c\r\n\r\n", b"\x80From: a@b.c\r\nTo: x@y.z\r\n"])
def test_a_nul_dovecot_passed_on_as_0x80_in_a_field_name_reads_the_same_on_both_paths(block):
    assert header_fields(block) == by_line(block)
    assert "a@b.c" == header_fields(block)["from"]


def test_the_fast_header_reader_agrees_on_long_repeated_and_folded_fields():
    blocks = [
        b"Subject: " + b"x" * (MAX_FIELD + 10) + b"\r\nFrom: a@x.com\r\n\r\n",
        b"Subject: a\r\n " + b"y" * MAX_FIELD + b"\r\n\r\n",
        b"".join(b"Authentication-Results: mx%d; spf=pass\r\n" % i for i in range(9)) + b"\r\n",
        b"Authentication-Results: mx;\r\n\tdkim=pass\r\nauthentication-results : mx2; spf=fail\r\n\r\n",
        b"To: a@x.com,\r\n b@y.com,\r\n\tc@z.com\r\nTo: second@x.com\r\n\r\n",
        b"\x00 From: hidden@x.com\r\nTo: a@x.com\r\n\r\n",
        b"From: a@x.com\r\n\x00 folded after a NUL\r\n\r\n",
        b"From:a@x.com\r\nSubject:\r\n\r\n",
    ]
    for block in blocks:
        assert header_fields(block) == by_line(block), block[:80]
    assert header_fields(blocks[0])["subject"] == "x" * (MAX_FIELD - 1)  # cut, not trusted whole


def demo_blocks():
    _, messages = generate(seed=11, n_messages=1500)
    for m in messages:
        head, _, body = m.raw.partition(b"\r\n\r\n")
        yield head + b"\r\n\r\n", body[:1024], m.internaldate
    for _name, raw in malformed_messages():
        head, sep, body = raw.partition(b"\r\n\r\n")
        yield head + sep, body[:1024], INTERNAL


def record_or_reason(block: bytes, body: bytes, internaldate):
    try:
        return parse_message_headers("1/1", block, internaldate, body)
    except BadDataError as exc:
        return str(exc)


def test_the_demo_corpus_and_its_malformed_samples_parse_the_same_with_and_without_the_fast_path(monkeypatch):
    cases = list(demo_blocks())
    fast = [record_or_reason(*case) for case in cases]
    assert sum(1 for r in fast if not isinstance(r, str)) > 1000  # the corpus really parsed
    monkeypatch.setattr(mailparse, "header_fields", by_line)
    slow = [record_or_reason(*case) for case in cases]
    assert fast == slow


@pytest.mark.parametrize(
    "text",
    ["  a \t b\r\n c  ", "\u2028x\u00a0y\x1c z\x85", "", " \ufffd a", "tab\tand\x0bvertical\x0cfeed"],
)
def test_whitespace_is_collapsed_as_a_regular_expression_would(text):
    import re

    assert " ".join(text.split()) == re.sub(r"\s+", " ", text).strip()


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_whitespace_is_collapsed_as_a_regular_expression_would_on_any_text(text):
    import re

    assert " ".join(text.split()) == re.sub(r"\s+", " ", text).strip()
