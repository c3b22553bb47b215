"""Header and body encoding as real mailers write it: RFC 2047 words, folding, quoted-printable, dates."""

from __future__ import annotations

import binascii
import time
import unicodedata

from demodata.vocabulary import _MON, _WD

CRLF = "\r\n"
CRLF_SP = "\r\n "
CRLF_Q = "\r\n> "
b2a_qp = binascii.b2a_qp


_TRANSLIT = str.maketrans(
    {
        "ä": "ae",
        "ö": "oe",
        "ü": "ue",
        "ß": "ss",
        "ø": "o",
        "Ø": "O",
        "å": "aa",
        "Å": "Aa",
        "æ": "ae",
        "Æ": "Ae",
        "ł": "l",
        "Ł": "L",
        "đ": "d",
        "þ": "th",
    }
)


def _ascii_slug(text: str) -> str:
    text = text.translate(_TRANSLIT)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in text.lower() if ch.isalnum())


_Q_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!*+-/")
_QMAP = tuple(chr(b) if b in _Q_SAFE else ("_" if b == 32 else "=%02X" % b) for b in range(256))


_QCHAR: dict[str, str] = {}


def _q_words(text: str, upper: bool = False) -> list[str]:
    """RFC 2047 Q encoded-words (phrase-safe), each at most 75 characters."""
    head = "=?UTF-8?Q?" if upper else "=?utf-8?q?"
    whole = "".join(map(_QMAP.__getitem__, text.encode("utf-8")))
    if len(whole) <= 63:
        return [head + whole + "?="]
    words, cur, curlen = [], [], 0
    for ch in text:
        enc = _QCHAR.get(ch)
        if enc is None:
            enc = _QCHAR[ch] = "".join(map(_QMAP.__getitem__, ch.encode("utf-8")))
        if cur and curlen + len(enc) > 63:
            words.append(head + "".join(cur) + "?=")
            cur, curlen = [], 0
        cur.append(enc)
        curlen += len(enc)
    if cur:
        words.append(head + "".join(cur) + "?=")
    return words


def _b_words(text: str, upper: bool = False) -> list[str]:
    """RFC 2047 B encoded-words, at most 45 octets (60 base64 chars) each."""
    head = "=?UTF-8?B?" if upper else "=?utf-8?b?"
    data = text.encode("utf-8")
    if len(data) <= 45:
        return [head + binascii.b2a_base64(data, newline=False).decode("ascii") + "?="]
    words, cur = [], bytearray()
    for ch in text:
        b = ch.encode("utf-8")
        if cur and len(cur) + len(b) > 45:
            words.append(head + binascii.b2a_base64(bytes(cur), newline=False).decode("ascii") + "?=")
            cur = bytearray()
        cur += b
    if cur:
        words.append(head + binascii.b2a_base64(bytes(cur), newline=False).decode("ascii") + "?=")
    return words


_SPECIALS = frozenset('()<>[]:;@\\,."')


def _phrase(name: str, style: int) -> str:
    """Display name as it appears in a header. style 0: Q, 1: B, 2: B upper-case."""
    if name.isascii():
        if any(c in _SPECIALS for c in name):
            return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return name
    if style == 0:
        return " ".join(_q_words(name))
    return " ".join(_b_words(name, upper=style == 2))


def _fold_words(prefix: str, words: list[str]) -> str:
    """Header value made of encoded words, folded one word per line if long."""
    if len(prefix) + sum(len(w) + 1 for w in words) <= 78:
        return " ".join(words)
    return "\r\n ".join(words)


def _fold_ascii(prefix_len: int, text: str) -> str:
    if prefix_len + len(text) <= 78:
        return text
    out, line = [], ""
    for word in text.split(" "):
        if line and prefix_len + len(line) + 1 + len(word) > 78:
            out.append(line)
            line, prefix_len = word, 1
        else:
            line = word if not line else line + " " + word
    out.append(line)
    return "\r\n ".join(out)


def _fold_addrs(prefix_len: int, addrs: list[str]) -> str:
    joined = ", ".join(addrs)
    if prefix_len + len(joined) <= 78:
        return joined
    return ",\r\n ".join(addrs)


def _qp(text: str) -> bytes:
    """Quoted-printable encoding of a CRLF text.

    Plain ASCII with short lines (most of our bodies: templates are
    hard-wrapped) only needs "=" escaped, done with C-level str methods;
    everything else goes through binascii's encoder.
    """
    if text.isascii() and "\t" not in text and text[-1:] != " ":
        s = text.replace("=", "=3D").replace(" \r\n", "=20\r\n")
        if max(map(len, s.split("\r\n"))) <= 76:
            return s.encode("ascii")
    return b2a_qp(text.encode("utf-8"))


def _offstr(minutes: int) -> str:
    sign = "+" if minutes >= 0 else "-"
    m = abs(minutes)
    return "%s%02d%02d" % (sign, m // 60, m % 60)


_DAY_CACHE: dict[tuple[int, bool], str] = {}


def _date_hdr(ts: int, off_min: int, offstr: str, pad: bool) -> str:
    local = ts + off_min * 60
    day, secs = divmod(local, 86400)
    key = (day, pad)
    d = _DAY_CACHE.get(key)
    if d is None:
        tm = time.gmtime(day * 86400)
        d = "%s, %s %s %d " % (
            _WD[tm.tm_wday],
            ("%02d" % tm.tm_mday) if pad else tm.tm_mday,
            _MON[tm.tm_mon - 1],
            tm.tm_year,
        )
        if len(_DAY_CACHE) > 100000:
            _DAY_CACHE.clear()
        _DAY_CACHE[key] = d
    h, rem = divmod(secs, 3600)
    mi, se = divmod(rem, 60)
    return f"{d}{h:02d}:{mi:02d}:{se:02d} {offstr}"


def _quote_date(ts: int, off_min: int, style: str) -> str:
    tm = time.gmtime(ts + off_min * 60)
    if style == "gmail":
        h = tm.tm_hour % 12 or 12
        return "%s, %s %d, %d at %d:%02d %s" % (
            _WD[tm.tm_wday],
            _MON[tm.tm_mon - 1],
            tm.tm_mday,
            tm.tm_year,
            h,
            tm.tm_min,
            "AM" if tm.tm_hour < 12 else "PM",
        )
    return "%d %s %d, at %02d:%02d" % (tm.tm_mday, _MON[tm.tm_mon - 1], tm.tm_year, tm.tm_hour, tm.tm_min)
