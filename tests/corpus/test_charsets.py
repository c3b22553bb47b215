"""Every charset name Python knows (its codecs and their aliases), in an encoded-word, a
display name and a body: read as that charset, or, for a name that is no text
encoding (zlib_codec, hex...), kept readable instead of failing the message."""

from __future__ import annotations

import codecs
from datetime import datetime, timezone

from connectors.mailparse import parse_message_headers
from tests.corpus.hostile import TEXT, by_charset, charsets


def _text_codec(charset: str) -> bool:
    try:
        return codecs.lookup(charset)._is_text_encoding
    except LookupError:
        return False


def _as_read(text: str, charset: str) -> str:
    """The text as a reader of that charset gets it back; a codec that cannot replace what it
    cannot encode (idna, undefined) got it as UTF-8 (hostile._encoded), read back as UTF-8."""
    try:
        return text.encode(charset, "replace").decode(charset)
    except (UnicodeError, ValueError, TypeError):
        return text


def test_every_charset_python_knows_is_read_as_that_charset_in_subject_name_and_snippet():
    wrong = []
    for i, ((name, raw), charset) in enumerate(zip(by_charset(), charsets(), strict=True)):
        head, sep, body = raw.partition(b"\r\n\r\n")
        record = parse_message_headers("1/1", head + sep, datetime(2026, 1, 1, tzinfo=timezone.utc), body)
        if not _text_codec(charset):
            assert record.subject and record.from_[0][1] == f"cs{i}@cust{i % 40}.example", name
            continue
        subject = _as_read(TEXT[: 10 + i % 30], charset).strip()
        person = _as_read("Jürgen Müller", charset)
        snippet = _as_read(TEXT, charset)[:20]
        got = (record.subject.rsplit(" (", 1)[0], record.from_[0][0], (record.snippet or "")[:20])
        if got != (subject, person, snippet):
            wrong.append((charset, got, (subject, person, snippet)))
    assert not wrong, wrong[:5]
