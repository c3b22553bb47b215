"""A lean UID FETCH: the hot path of every initial sync.

imapclient (and imaplib under it) handle each response line through layers of
general-purpose parsing, which caps a header-only sync at a few thousand
messages a second. Here the command is sent with imaplib's public send() and
the answer read with its public readline()/read(), parsing only the shapes a
FETCH answer can take: atoms, numbers, quoted strings, NIL, literals.
"""
from __future__ import annotations

import imaplib
import itertools
import re
from datetime import datetime, timedelta, timezone

_counter = itertools.count(1)
_FETCH_START = re.compile(rb"^\* \d+ FETCH \(", re.I)
_LITERAL_END = re.compile(rb"\{(\d+)\}\r\n$")
_UID = re.compile(rb"\bUID (\d+)", re.I)
_INTERNALDATE = re.compile(rb'\bINTERNALDATE "([^"]+)"', re.I)
# The section a value belongs to: BODY[...] or BODY[...]<origin>, then its value.
_SECTION_VALUE = re.compile(rb'(BODY\[[^\]]*\](?:<\d+>)?) (?:"((?:[^"\\]|\\.)*)"|NIL)', re.I)
_SECTION_BEFORE_LITERAL = re.compile(rb"(BODY\[[^\]]*\](?:<\d+>)?) \{\d+\}\r\n$", re.I)
_MONTHS = {m: i for i, m in enumerate(
    (b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec"), 1)}
_DATE = re.compile(rb"^\s*(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)")


class FetchFailed(imaplib.IMAP4.error):
    pass


def parse_internaldate(value: bytes) -> datetime | None:
    m = _DATE.match(value)
    if not m:
        return None
    day, mon, year, hh, mm, ss, sign, oh, om = m.groups()
    month = _MONTHS.get(mon.lower())
    if month is None:
        return None
    try:
        local = datetime(int(year), month, int(day), int(hh), int(mm), int(ss), tzinfo=timezone.utc)
    except ValueError:
        return None
    offset = (int(oh) * 60 + int(om)) * 60
    return local - timedelta(seconds=offset if sign == b"+" else -offset)


def _uid_set(uids: list[int]) -> str:
    """Compact sequence set: 1:5,7,9:12."""
    parts, start, prev = [], None, None
    for uid in sorted(uids):
        if start is None:
            start = prev = uid
        elif uid == prev + 1:
            prev = uid
        else:
            parts.append(f"{start}:{prev}" if start != prev else str(start))
            start = prev = uid
    if start is not None:
        parts.append(f"{start}:{prev}" if start != prev else str(start))
    return ",".join(parts)


def uid_fetch(imap: imaplib.IMAP4, uids: list[int], items: str) -> dict[int, dict]:
    """UID FETCH `items` for `uids`; returns uid -> {b"INTERNALDATE": raw bytes, section: bytes}."""
    return read_fetch(imap, send_fetch(imap, uids, items))


def send_fetch(imap: imaplib.IMAP4, uids: list[int], items: str) -> bytes:
    """Send the command only. Sending the next batch's FETCH before reading this
    one's answer lets the server work while we parse (IMAP pipelining)."""
    tag = b"TL%d" % next(_counter)
    imap.send(tag + b" UID FETCH " + _uid_set(uids).encode() + b" (" + items.encode() + b")\r\n")
    return tag


def read_fetch(imap: imaplib.IMAP4, tag: bytes) -> dict[int, dict]:
    out: dict[int, dict] = {}
    readline, read = imap.readline, imap.read
    while True:
        line = readline()
        if not line:
            raise imaplib.IMAP4.abort("connection closed during FETCH")
        if line.startswith(tag + b" "):
            status = line[len(tag) + 1:].split(b" ", 1)[0].upper()
            if status != b"OK":
                raise FetchFailed(line.decode("utf-8", "replace").strip())
            return out
        if not _FETCH_START.match(line):
            # Another untagged response (EXISTS, EXPUNGE, FLAGS): may still carry a literal.
            m = _LITERAL_END.search(line)
            while m:
                read(int(m.group(1)))
                line = readline()
                m = _LITERAL_END.search(line)
            continue
        text_parts = []
        values: dict = {}
        while True:
            m = _LITERAL_END.search(line)
            if not m:
                text_parts.append(line)
                break
            section = _SECTION_BEFORE_LITERAL.search(line)
            literal = read(int(m.group(1)))
            if section:
                values[section.group(1).upper()] = literal
            text_parts.append(line[:m.start()])
            line = readline()
        text = b" ".join(text_parts)
        uid = _UID.search(text)
        if not uid:
            continue  # an unsolicited FETCH (flag change) without UID
        for sm in _SECTION_VALUE.finditer(text):
            values.setdefault(sm.group(1).upper(), sm.group(2) or b"")
        date = _INTERNALDATE.search(text)
        if date:
            values[b"INTERNALDATE"] = date.group(1)
        out[int(uid.group(1))] = values
