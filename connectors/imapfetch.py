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
# The section a value belongs to: BODY[...] or BODY[...]<origin> (some servers
# echo <origin.length>), then its value.
_SECTION_VALUE = re.compile(rb'(BODY\[[^\]]*\](?:<\d+(?:\.\d+)?>)?) (?:"((?:[^"\\]|\\.)*)"|NIL)', re.I)
_SECTION_BEFORE_LITERAL = re.compile(rb"(BODY\[[^\]]*\](?:<\d+(?:\.\d+)?>)?) \{\d+\}\r\n$", re.I)
_PARTIAL = re.compile(rb"<(\d+)(?:\.\d+)?>$")
# FLAGS (...) and Gmail's X-GM-LABELS (...): lists of atoms and quoted strings.
_FLAG_LIST = re.compile(rb'\b(FLAGS|X-GM-LABELS) \(((?:[^()"]|"(?:[^"\\]|\\.)*")*)\)', re.I)
_DRAFT = re.compile(rb'(?:^|\s)"?\\{1,2}Draft"?(?=\s|$)', re.I)
# Gmail's X-GM-MSGID and X-GM-THRID: a 64-bit unsigned number each, in decimal
# (https://developers.google.com/gmail/imap/imap-extensions). Quoted strings are matched
# first and passed over, so text inside one (a header echoed as a quoted string) is never
# taken for an item; a value quoted, negative, longer than 20 digits or beyond 2**64 - 1
# is not one either (the message is then recognised by its Message-ID, as elsewhere).
_GMAIL_IDS = re.compile(rb'"(?:[^"\\]|\\.)*"|\bX-GM-(MSGID|THRID)[ \t]+(\d{1,20})(?![\w.+-])', re.I)
_U64 = 1 << 64
_MONTHS = {
    m: i
    for i, m in enumerate(
        (b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec"), 1
    )
}
_DATE = re.compile(rb"^\s*(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)")


HEADER_FIELDS_KEY = b"BODY[HEADER.FIELDS]"
# The first byte of the Received fields alone (see connectors/imap.py: RECEIVED_ITEM).
RECEIVED_KEY = b"BODY[HEADER.FIELDS (RECEIVED)]"


_SECTION_KEYS: dict[bytes, bytes] = {}


def section_key(raw: bytes) -> bytes:
    """One name per section, however the server echoes it: servers differ in case,
    in quoting or ordering the HEADER.FIELDS list, and in echoing <origin.length>."""
    key = _SECTION_KEYS.get(raw)
    if key is None:
        key = raw.upper()
        if key.startswith(b"BODY[HEADER.FIELDS"):
            names = key[key.find(b"(") + 1 : key.find(b")")].replace(b'"', b"").split()
            key = RECEIVED_KEY if names == [b"RECEIVED"] else HEADER_FIELDS_KEY
        else:
            key = _PARTIAL.sub(rb"<\1>", key)
        if len(_SECTION_KEYS) < 256:  # a session echoes a handful of distinct forms
            _SECTION_KEYS[raw] = key
    return key


class FetchFailed(imaplib.IMAP4.error):
    """The server ended a FETCH with NO or BAD. partial: what it did send before."""

    partial: dict = {}


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
    parts: list[str] = []
    start: int | None = None
    prev = 0  # read only once start is set
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


_THROTTLED_ATTR = "threadline_throttled"


def throttled(imap: imaplib.IMAP4) -> bool:
    """Whether a FETCH on this connection was answered OK [THROTTLED] (Gmail asking the
    client to slow down while still answering)."""
    return bool(getattr(imap, _THROTTLED_ATTR, False))


def uid_fetch(imap: imaplib.IMAP4, uids: list[int], items: str) -> dict[int, dict]:
    """UID FETCH `items` for `uids`; returns uid -> {b"INTERNALDATE": raw bytes, section: bytes}."""
    return read_fetch(imap, send_fetch(imap, uids, items))


def send_fetch(imap: imaplib.IMAP4, uids: list[int], items: str) -> bytes:
    """Send the command only. Sending the next batch's FETCH before reading this
    one's answer lets the server work while we parse (IMAP pipelining)."""
    tag = b"TL%d" % next(_counter)
    imap.send(tag + b" UID FETCH " + _uid_set(uids).encode() + b" (" + items.encode() + b")\r\n")
    return tag


def _responses(imap: imaplib.IMAP4, tag: bytes):
    """The untagged responses to the command `tag`, each as its lines and literals
    in order: [line, literal, line, ..., line] (a literal follows the line that
    announced it). Returns at the tagged OK; raises on NO/BAD or a closed link."""
    readline, read = imap.readline, imap.read
    while True:
        line = readline()
        if not line:
            raise imaplib.IMAP4.abort("connection closed during FETCH")
        if line.startswith(tag + b" "):
            status = line[len(tag) + 1 :].split(b" ", 1)[0].upper()
            if status != b"OK":
                raise FetchFailed(line.decode("utf-8", "replace").strip())
            if b"[THROTTLED]" in line.upper():  # Gmail: done, but slow down (see throttled())
                setattr(imap, _THROTTLED_ATTR, True)
            return
        parts = [line]
        # endswith first: most lines announce no literal, and the regex search over a
        # whole line cost more (the pattern matches only at "}\r\n" ending the line).
        m = _LITERAL_END.search(line) if line.endswith(b"}\r\n") else None
        while m:
            parts.append(read(int(m.group(1))))
            line = readline()
            parts.append(line)
            m = _LITERAL_END.search(line) if line.endswith(b"}\r\n") else None
        yield parts


def read_fetch(imap: imaplib.IMAP4, tag: bytes) -> dict[int, dict]:
    """uid -> {section key (see section_key): bytes, b"INTERNALDATE": raw, b"DRAFT": True
    when FLAGS or X-GM-LABELS say \\Draft, b"X-GM-MSGID" / b"X-GM-THRID": decimal bytes where
    Gmail sent them}. Raises FetchFailed (with .partial) on NO/BAD."""
    out: dict[int, dict] = {}
    try:
        for parts in _responses(imap, tag):
            if not _FETCH_START.match(parts[0]):
                continue  # another untagged response (EXISTS, EXPUNGE, FLAGS)
            lines = parts[0::2]
            values: dict = {}
            for announcing, literal in zip(lines, parts[1::2], strict=False):  # the closing line has no literal
                section = _SECTION_BEFORE_LITERAL.search(announcing)
                if section:
                    values[section_key(section.group(1))] = literal
            # Every line but the last announced the literal after it (see _responses).
            text = b" ".join([line[: line.rfind(b"{")] for line in lines[:-1]] + [lines[-1]])
            uid = _UID.search(text)
            if not uid:
                continue  # an unsolicited FETCH (flag change) without UID
            for sm in _SECTION_VALUE.finditer(text):
                values.setdefault(section_key(sm.group(1)), sm.group(2) or b"")
            date = _INTERNALDATE.search(text)
            if date:
                values[b"INTERNALDATE"] = date.group(1)
            if b"raft" in text and any(_DRAFT.search(m.group(2)) for m in _FLAG_LIST.finditer(text)):
                values[b"DRAFT"] = True
            if b"GM-" in text or b"gm-" in text:
                _gmail_ids(text, values)
            # A server may split one message's items over several FETCH responses, or
            # send an unsolicited one (a flag change, with CONDSTORE) after it: merge.
            out.setdefault(int(uid.group(1)), {}).update(values)
    except FetchFailed as exc:
        exc.partial = out
        raise
    return out


def _gmail_ids(text: bytes, values: dict) -> None:
    """X-GM-MSGID and X-GM-THRID of one FETCH response into values (b"X-GM-MSGID": b"<decimal>"),
    each as its canonical decimal (no leading zeros); 0 and values past 64 bits are left out."""
    for m in _GMAIL_IDS.finditer(text):
        name = m.group(1)
        if name is None:
            continue  # a quoted string
        number = int(m.group(2))
        if 0 < number < _U64:
            values[b"X-GM-" + name.upper()] = b"%d" % number


# --- BODYSTRUCTURE (invitations in mail) -------------------------------------------

_MAY_BE_CALENDAR = re.compile(rb'"(?:calendar|ics)"', re.I)
_TOKEN = re.compile(rb'\s*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|([^\s()"]+))')


def read_structures(imap: imaplib.IMAP4, tag: bytes) -> dict[int, list]:
    """Read the answer to `UID FETCH ... (BODYSTRUCTURE)`: uid -> the structure as
    nested lists (strings as bytes, NIL as None). Literals are kept in place."""
    out: dict[int, list] = {}
    for parts in _responses(imap, tag):
        if not _FETCH_START.match(parts[0]):
            continue
        # Lines lose the literal announcement; a literal is one string token.
        segments = [
            bytearray(p) if i % 2 else (p[: m.start()] if (m := _LITERAL_END.search(p)) else p)
            for i, p in enumerate(parts)
        ]
        # Most structures hold no calendar part: skip them without parsing.
        if not any(_MAY_BE_CALENDAR.search(seg) for seg in segments if not isinstance(seg, bytearray)):
            continue
        try:
            items = _parse_segments(segments)
        except (ValueError, IndexError):
            continue
        # items: ["*", n, "FETCH", [key, value, key, value...]]
        fetch = next((x for x in items if isinstance(x, list)), None)
        if not fetch:
            continue
        pairs = dict(zip(fetch[0::2], fetch[1::2], strict=False))  # a key without a value is dropped
        uid, structure = None, None
        for key, value in pairs.items():
            if isinstance(key, bytes) and key.upper() == b"UID":
                uid = int(value)
            elif isinstance(key, bytes) and key.upper() == b"BODYSTRUCTURE":
                structure = value
        if uid is not None and isinstance(structure, list):
            out[uid] = structure
    return out


def _parse_segments(segments: list) -> list:
    tokens: list = []
    for seg in segments:
        if isinstance(seg, bytearray):
            tokens.append(("s", bytes(seg)))
            continue
        pos, end = 0, len(seg.rstrip(b"\r\n"))
        while pos < end:
            m = _TOKEN.match(seg, pos)
            if not m or m.end() == pos:
                break
            pos = m.end()
            if m.group(1):
                tokens.append(("(", None))
            elif m.group(2):
                tokens.append((")", None))
            elif m.group(3) is not None:
                tokens.append(("s", re.sub(rb"\\(.)", rb"\1", m.group(3))))
            elif m.group(4):
                atom = m.group(4)
                tokens.append(("s", None if atom.upper() == b"NIL" else atom))
    stack: list[list] = [[]]
    for kind, value in tokens:
        if kind == "(":
            stack.append([])
        elif kind == ")":
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(value)
    while len(stack) > 1:  # unbalanced: close what is open
        done = stack.pop()
        stack[-1].append(done)
    return stack[0]


def calendar_part(structure: list, prefix: str = "") -> tuple[str, dict] | None:
    """The section ("2", "1.3") and details of the first text/calendar part of a
    BODYSTRUCTURE (application/ics if there is none), outside attached messages."""
    found = _find_parts(structure, prefix)
    for wanted in ((b"text", b"calendar"), (b"application", b"ics")):
        for section, info in found:
            if info["type"] == wanted:
                return section, info
    return None


def _find_parts(body: list, prefix: str) -> list[tuple[str, dict]]:
    if not body:
        return []
    if isinstance(body[0], list):  # multipart: children, then the subtype
        out = []
        n = 0
        for child in body:
            if not isinstance(child, list):
                break
            n += 1
            out += _find_parts(child, f"{prefix}{n}." if prefix else f"{n}.")
        return out
    section = prefix[:-1] if prefix else "1"
    mtype = (body[0] or b"").lower() if isinstance(body[0], bytes) else b""
    subtype = (body[1] or b"").lower() if len(body) > 1 and isinstance(body[1], bytes) else b""
    if (mtype, subtype) not in ((b"text", b"calendar"), (b"application", b"ics")):
        return []
    params = body[2] if len(body) > 2 and isinstance(body[2], list) else []
    pmap = {
        (k or b"").lower(): (v or b"") for k, v in zip(params[0::2], params[1::2], strict=False) if isinstance(k, bytes)
    }
    encoding = body[5] if len(body) > 5 and isinstance(body[5], bytes) else b"7bit"
    try:
        size = int(body[6]) if len(body) > 6 and body[6] is not None else 0
    except (TypeError, ValueError):
        size = 0
    return [
        (
            section,
            {
                "type": (mtype, subtype),
                "charset": pmap.get(b"charset", b"utf-8").decode("ascii", "replace"),
                "method": pmap.get(b"method", b"").decode("ascii", "replace").upper(),
                "encoding": encoding.decode("ascii", "replace").lower(),
                "size": size,
            },
        )
    ]
