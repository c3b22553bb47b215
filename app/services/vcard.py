"""A small vCard 3.0 / 4.0 reader and writer (RFC 2426, RFC 6350), for contact import and export.

Written here rather than taken from PyPI: the well-kept parser (vobject) targets vCard 3 and
iCalendar and gives vCard 4's `VALUE=uri` phones and `PREF=1` parameters back as raw strings
anyway, and import needs only eight properties. Reading is by card, so one bad card is one error
(its number and first line) and never stops the others. Photos (inline base64 or binary, or a
URI) are skipped, and each card says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from connectors.normalise import full_name

MAX_CARD_LINES = 100_000
_PROPERTY = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)?[;:]")
_BINARY = ("PHOTO", "LOGO", "SOUND", "KEY")  # a card longer than this is refused rather than held in memory


@dataclass
class Card:
    number: int  # 1-based position in the file
    line: int  # its BEGIN line
    version: str = ""
    fields: dict = field(default_factory=dict)  # name, email, emails, title, phone, company, tags
    notes: list[str] = field(default_factory=list)
    error: str | None = None


def unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            nxt = value[i + 1]
            out.append("\n" if nxt in "nN" else nxt)
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def split_unescaped(value: str, sep: str) -> list[str]:
    parts, current, i = [], [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            current.append(value[i : i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def _logical_lines(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    """Unfold: a line starting with a space or tab continues the previous one. Yields (first line
    number, text)."""
    pending: str | None = None
    start = 0
    for number, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        if line[:1] in (" ", "\t") and pending is not None:
            pending += line[1:]
            continue
        if pending is not None:
            yield start, pending
        pending, start = line, number
    if pending is not None:
        yield start, pending


def _split_property(line: str) -> tuple[str, dict[str, str], str]:
    """NAME;PARAM=value;TYPE=a,b:VALUE (a group prefix "item1." is dropped; quoted parameter
    values may hold ':' and ';')."""
    in_quote, colon = False, -1
    for i, ch in enumerate(line):
        if ch == '"':
            in_quote = not in_quote
        elif ch == ":" and not in_quote:
            colon = i
            break
    if colon < 0:
        raise ValueError("a line without ':'")
    head, value = line[:colon], line[colon + 1 :]
    bits = head.split(";")
    name = bits[0].rpartition(".")[2].upper()
    params: dict[str, str] = {}
    for bit in bits[1:]:
        key, eq, val = bit.partition("=")
        if eq and key.upper() == "TYPE":  # TYPE may repeat (Apple: type=INTERNET;type=pref): all count
            params["TYPE"] = ",".join(p for p in (params.get("TYPE", ""), val.strip('"')) if p)
        elif eq:
            params[key.upper()] = val.strip('"')
        else:  # vCard 2.1/3 bare types: TEL;WORK;VOICE
            params.setdefault("TYPE", "")
            params["TYPE"] = ",".join(p for p in (params["TYPE"], key) if p)
    return name, params, value


def _pref(params: dict[str, str]) -> bool:
    types = params.get("TYPE", "").lower().split(",")
    return "pref" in types or params.get("PREF", "") == "1"


def _apply(card: Card, name: str, params: dict[str, str], value: str) -> None:
    f = card.fields
    if name == "VERSION":
        card.version = value.strip()
        # Said at once: the rest of a vCard 2.1 (quoted-printable, other charsets) would otherwise be
        # refused line by line as "not a vCard property" or "not valid UTF-8 text".
        card.error = _unsupported(card.version)
    elif name == "FN":
        f["name"] = unescape(value).strip()
    elif name == "N" and "n" not in f:
        parts = [unescape(p).strip() for p in split_unescaped(value, ";")] + [""] * 5
        family, given, middle, prefix, suffix = parts[:5]
        f["n"] = " ".join(p for p in (prefix, given, middle, family, suffix) if p)
    elif name == "EMAIL":
        address = unescape(value).strip()
        if address.lower().startswith("mailto:"):
            address = address[7:]
        if address:
            emails = f.setdefault("emails", [])
            if _pref(params):
                emails.insert(0, address)
            else:
                emails.append(address)
    elif name == "TEL" and ("phone" not in f or _pref(params)):
        number = unescape(value).strip()
        if number.lower().startswith("tel:"):
            number = number[4:]
        if number:
            f["phone"] = number
    elif name == "TITLE":
        f["title"] = unescape(value).strip()
    elif name == "ORG":
        f["company"] = unescape(split_unescaped(value, ";")[0]).strip()
    elif name == "CATEGORIES":
        f.setdefault("tags", []).extend(t for t in (unescape(p).strip() for p in split_unescaped(value, ",")) if t)
    elif name in ("PHOTO", "LOGO", "SOUND", "KEY"):
        note = f"{name.lower()} ignored"
        if note not in card.notes:
            card.notes.append(note)


def read_cards(lines: Iterable[str]) -> Iterator[Card]:
    """The cards of a vCard stream, in order. A card that cannot be read has `error` set; text
    outside cards is an error card of its own."""
    card: Card | None = None
    number = 0
    for line_no, line in _logical_lines(lines):
        if not line.strip():
            continue
        upper = line.strip().upper()
        if upper == "BEGIN:VCARD":
            if card is not None:
                card.error = card.error or "no END:VCARD before the next card"
                yield card
            number += 1
            card = Card(number=number, line=line_no)
            card_lines, in_binary = 0, False
            continue
        if card is None:
            number += 1
            yield Card(number=number, line=line_no, error="text outside BEGIN:VCARD … END:VCARD")
            # Skip the rest until the next card starts: one error for the stray block.
            card = Card(number=number, line=line_no, error="skip")
            continue
        if upper == "END:VCARD":
            if card.error != "skip":
                _finish(card)
                yield card
            card = None
            continue
        if card.error:
            continue
        card_lines += 1
        if card_lines > MAX_CARD_LINES:
            card.error = f"more than {MAX_CARD_LINES} lines in one card"
            continue
        if in_binary and not _PROPERTY.match(line):
            continue  # raw bytes of a photo that broke its line: skipped with the photo
        in_binary = False
        name = line.split(":", 1)[0].split(";", 1)[0].rpartition(".")[2].upper()
        if name in _BINARY:
            _apply(card, name, {}, "")
            in_binary = True
            continue
        if any("\udc80" <= ch <= "\udcff" for ch in line):
            # Bytes that are not UTF-8 (read with surrogateescape) outside a photo.
            card.error = f"line {line_no}: {name or 'a property'} is not valid UTF-8 text"
            continue
        try:
            name, params, value = _split_property(line)
        except ValueError:
            card.error = f"line {line_no}: not a vCard property"
            continue
        _apply(card, name, params, value)
    if card is not None and card.error != "skip":
        card.error = card.error or "the file ends inside a card (no END:VCARD)"
        yield card


def _unsupported(version: str) -> str | None:
    if version in ("3.0", "4.0"):
        return None
    return f"vCard version {version or '(none)'} is not supported: 3.0 and 4.0 are (export as vCard 3.0 or CSV)"


def _finish(card: Card) -> None:
    if card.error:
        return
    card.error = _unsupported(card.version)
    if card.error:
        return
    f = card.fields
    if not f.get("name") and f.get("n"):
        f["name"] = f["n"]
    f.pop("n", None)
    emails = f.get("emails") or []
    if not emails:
        card.error = "the card has no EMAIL"
        return
    f["email"] = emails[0]


# -- writing ----------------------------------------------------------------------------------------


def escape(value: str) -> str:
    return (
        str(value)
        .replace("\\", "\\\\")
        .replace("\r\n", "\n")
        .replace("\r", "\n")
        .replace("\n", "\\n")
        .replace(",", "\\,")
        .replace(";", "\\;")
    )


def fold(line: str) -> str:
    """Lines of at most 75 octets, continued with a leading space, never splitting a character."""
    if len(line.encode("utf-8")) <= 75:
        return line
    parts, current, size = [], [], 0
    for ch in line:
        n = len(ch.encode("utf-8"))
        if size + n > (75 if not parts else 74):
            parts.append("".join(current))
            current, size = [], 0
        current.append(ch)
        size += n
    parts.append("".join(current))
    return "\r\n ".join(parts)


def write_card(contact: dict, version: str = "4.0") -> str:
    """One contact (a segment row: name, email, addresses, title, phone, tags, company) as a vCard."""
    if version not in ("3.0", "4.0"):
        raise ValueError("version must be 3.0 or 4.0")
    honorific, suffix = contact.get("honorific") or "", contact.get("name_suffix") or ""
    name = full_name(contact.get("name") or "", honorific, suffix) or contact["email"]
    bits = (contact.get("name") or "").split()
    family = bits[-1] if len(bits) > 1 else ""
    given = " ".join(bits[:-1]) if len(bits) > 1 else (contact.get("name") or "")
    # N is family;given;additional;prefixes;suffixes (RFC 6350 6.2.2).
    n = ";".join(escape(part) for part in (family, given, "", honorific, suffix))
    lines = ["BEGIN:VCARD", f"VERSION:{version}", f"FN:{escape(name)}", f"N:{n}"]
    addresses = [contact["email"]] + [a for a in contact.get("addresses") or [] if a != contact["email"]]
    for i, address in enumerate(addresses):
        if version == "4.0":
            lines.append(f"EMAIL{';PREF=1' if i == 0 else ''}:{escape(address)}")
        else:
            lines.append(f"EMAIL;TYPE=INTERNET{',PREF' if i == 0 else ''}:{escape(address)}")
    if contact.get("phone"):
        if version == "4.0":
            lines.append(f"TEL;VALUE=uri:tel:{escape(contact['phone'])}")
        else:
            lines.append(f"TEL:{escape(contact['phone'])}")
    if contact.get("title"):
        lines.append(f"TITLE:{escape(contact['title'])}")
    company = contact.get("company")
    if company and company.get("name"):
        lines.append(f"ORG:{escape(company['name'])}")
    if contact.get("tags"):
        lines.append("CATEGORIES:" + ",".join(escape(t) for t in contact["tags"]))
    lines.append("END:VCARD")
    return "\r\n".join(fold(line) for line in lines) + "\r\n"
