"""A seeded hostile corpus: every message a sync may meet on a bad day, as raw
bytes with a name that says what is wrong with it. Generated, never stored:
`hostile_corpus(seed)` gives the same messages for the same seed."""

from __future__ import annotations

import base64
import codecs
import encodings
import encodings.aliases
import pkgutil
import random
from collections.abc import Iterator

from demodata import generate
from demodata.hostile import malformed_messages

ME = "alice@ourco.com"
DATE = "Date: Tue, 04 Mar 2025 14:02:11 +0000"
TEXT = "Grüße aus München – café, 東京, Ελλάδα, Москва ✓"


def _msg(n: str, *headers: str, body: bytes = b"Hello.\r\n", frm: str | None = None) -> bytes:
    lines = [frm or f"From: Sender <{n}@cust.example>", f"To: {ME}", DATE, f"Message-ID: <{n}@corpus.test>"]
    return ("\r\n".join(lines + list(headers)) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


def charsets() -> list[str]:
    """Every codec Python ships and every alias of one: encodings.aliases alone leaves out the
    codecs nobody gave an alias (cp737, cp874, koi8_u, mac_croatian, utf_8_sig...)."""
    shipped = {
        m.name
        for m in pkgutil.iter_modules(encodings.__path__)
        if m.name != "aliases" and not m.name.startswith("_") and _known(m.name)
    }
    return sorted(set(encodings.aliases.aliases) | set(encodings.aliases.aliases.values()) | shipped)


def _known(name: str) -> bool:
    try:
        codecs.lookup(name)
    except LookupError:  # a helper module of the package (mbcs off Windows, idna's tables...)
        return False
    return True


def _encoded(text: str, charset: str) -> bytes:
    try:
        return text.encode(charset, "replace")
    except (LookupError, TypeError, UnicodeError, ValueError):
        return text.encode("utf-8")  # a bytes-to-bytes codec (zlib_codec, hex...): the label lies


def by_charset() -> Iterator[tuple[str, bytes]]:
    for i, cs in enumerate(charsets()):
        words = base64.b64encode(_encoded(TEXT[: 10 + i % 30], cs)).decode()
        name = base64.b64encode(_encoded("Jürgen Müller", cs)).decode()
        body = _encoded(f"{TEXT}\r\nline two in {cs}\r\n", cs)
        yield (
            f"charset {cs}",
            _msg(
                f"cs{i}",
                f"Subject: =?{cs}?B?{words}?= ({cs})",
                "MIME-Version: 1.0",
                f'Content-Type: text/plain; charset="{cs}"',
                "Content-Transfer-Encoding: 8bit",
                frm=f"From: =?{cs}?B?{name}?= <cs{i}@cust{i % 40}.example>",
                body=body,
            ),
        )


def nested(depth: int, n: str) -> bytes:
    parts = [f"--b{d}\r\nContent-Type: multipart/mixed; boundary=b{d + 1}\r\n\r\n" for d in range(depth)]
    inner = f"--b{depth}\r\nContent-Type: text/plain\r\n\r\ndeepest text\r\n--b{depth}--\r\n"
    closes = "".join(f"\r\n--b{d}--\r\n" for d in reversed(range(depth)))
    return _msg(
        n,
        f"Subject: nested {depth} deep",
        "MIME-Version: 1.0",
        "Content-Type: multipart/mixed; boundary=b0",
        body=("".join(parts) + inner + closes).encode(),
    )


BROKEN_WORDS = [
    "=?utf-8?q?unterminated",
    "=?utf-8?b?!!!not-base64!!!?=",
    "=?utf-8?x?unknown-encoding?=",
    "=?no-such-charset?q?abc?=",
    "=??q?empty-charset?=",
    "=?utf-8??empty-encoding?=",
    "=?utf-8?q??=",
    "=?utf-8?b?w6k=?==?utf-8?b?w6k?=",
    "=?utf-8*en?q?with_language?=",
    "=?utf-8?q?=FF=FE=00?=",
    "=?utf-16?b?AAA?=",
    "=?utf-8?b?" + "QUFB" * 5000 + "?=",
    "=?iso-8859-1?q?caf=E9?=" * 200,
    "=?utf-8?q?a?= =?utf-8?q?b?= =?latin-1?q?=E9?=",
    "prefix=?utf-8?q?glued?=suffix",
    "=?utf-7?q?+AOk-?=",
    "=?zlib_codec?b?eJwLSS0uUUjLz1coSS0uUUjLzy9KAQBJ7Qdi?=",
    "=?rot13?q?uryyb?=",
]

BAD_DATES = [
    "Date: ",
    "Date: yesterday",
    "Date: Mon, 32 Foo 99999 25:61:61 +9999",
    "Date: Fri, 31 Feb 2025 10:00:00 +0000",
    "Date: Tue, 04 Mar 0000 14:02:11 +0000",
    "Date: Tue, 04 Mar 10000 14:02:11 +0000",
    "Date: Tue, 04 Mar 1 14:02:11 +0000",
    "Date: 2025-03-04T14:02:11",
    "Date: 1741096931",
    "Date: Tue, 04 Mar 2025 14:02:11 +2500",
    "Date: Tue, 04 Mar 2025 14:02:11 -9999",
    "Date: Tue, 04 Mar 2025 99:99:99 GMT",
    "Date: \x00\x00\x00",
    "Date: Tue, 04 Mar 2025 14:02:11 +0000, Wed, 05 Mar 2025 14:02:11 +0000",
    "Date: =?utf-8?q?Tue=2C_04_Mar_2025?=",
    "Date: Tue, 04 Mar -2025 14:02:11 +0000",
]


def named() -> Iterator[tuple[str, bytes]]:
    for depth in (2, 100, 101, 1000):
        yield f"multipart nested {depth} deep", nested(depth, f"nest{depth}")
    mb = 1 << 20
    yield "1 MB subject", _msg("big-subject", "Subject: " + "x" * mb)
    yield "1 MB folded subject", _msg("fold-subject", "Subject: " + "\r\n ".join(["word"] * (mb // 7)))
    yield "1 MB unknown header", _msg("big-x", "Subject: big x", "X-Junk: " + "y" * mb)
    yield (
        "1 MB references",
        _msg("big-refs", "Subject: refs", "References: " + " ".join(f"<r{i}@x.example>" for i in range(mb // 16))),
    )
    yield "1 MB of headers", _msg("many-headers", "Subject: many", *[f"X-H{i}: v" for i in range(mb // 12)])
    yield "1 MB To", _msg("big-to", "Subject: big to", "Cc: " + "z" * mb)
    yield "NUL in subject", _msg("nul-subject", "Subject: a\x00b\x00c")
    yield "NUL in from name", _msg("nul-from", "Subject: nul from", frm="From: Ev\x00il <nul-from@cust.example>")
    yield "NUL in address", _msg("nul-addr", "Subject: nul addr", frm="From: <nu\x00l@cust.example>")
    yield "NUL in message id", _msg("nul-id\x00x", "Subject: nul id")
    yield "NUL in body", _msg("nul-body", "Subject: nul body", body=b"a\x00b\r\n" * 1000)
    yield "NUL everywhere", b"\x00" * 5000
    yield "NULs between headers", _msg("nul-lines", "Subject: nul lines", "\x00\x00\x00", "X-A: \x00")
    for i, word in enumerate(BROKEN_WORDS):
        yield f"broken encoded-word {i}", _msg(f"ew{i}", f"Subject: {word}", frm=f"From: {word} <ew{i}@cust.example>")
    for i, date in enumerate(BAD_DATES):
        raw = _msg(f"date{i}", f"Subject: bad date {i}").replace(DATE.encode(), date.encode("utf-8", "replace"))
        yield f"invalid date {date!r}", raw
    crowd = ", ".join(f"Person {i} <p{i}@crowd{i % 97}.example>" for i in range(10_000))
    yield "10,000 recipients in", _msg("crowd-in", "Subject: all hands", f"Cc: {crowd}")
    yield (
        "10,000 recipients out",
        _msg("crowd-out", "Subject: newsletter", f"To: {crowd}", frm=f"From: Alice <{ME}>").replace(
            f"To: {ME}\r\n".encode(), b"", 1
        ),
    )
    yield from malformed_messages()


def big_message(size: int = 50 << 20) -> bytes:
    line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3\r\n"
    body = (
        b"--big\r\nContent-Type: text/plain\r\n\r\nThe attachment is large.\r\n--big\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + line * (size // len(line))
        + b"--big--\r\n"
    )
    return _msg(
        "fifty-mb", "Subject: 50 MB", "MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="big"', body=body
    )


def _mutate(raw: bytes, rnd: random.Random) -> tuple[str, bytes]:
    kind = rnd.choice(["truncate", "nul", "flip", "lf-only", "cr-only", "no-body-separator", "dup-headers", "8bit"])
    if kind == "truncate":
        return kind, raw[: rnd.randint(0, len(raw))]
    if kind == "nul":
        at = rnd.randint(0, len(raw))
        return kind, raw[:at] + b"\x00" * rnd.randint(1, 50) + raw[at:]
    if kind == "flip":
        data = bytearray(raw)
        for _ in range(rnd.randint(1, 40)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        return kind, bytes(data)
    if kind == "lf-only":
        return kind, raw.replace(b"\r\n", b"\n")
    if kind == "cr-only":
        return kind, raw.replace(b"\r\n", b"\r")
    if kind == "no-body-separator":
        return kind, raw.replace(b"\r\n\r\n", b"\r\n", 1)
    if kind == "dup-headers":
        head, _, body = raw.partition(b"\r\n\r\n")
        return kind, head + b"\r\n" + head + b"\r\n\r\n" + body
    head, _, body = raw.partition(b"\r\n\r\n")
    return kind, head + b"\r\nX-8bit: " + bytes(rnd.randrange(128, 256) for _ in range(60)) + b"\r\n\r\n" + body


def mutants(seed: int, n: int) -> Iterator[tuple[str, bytes]]:
    rnd = random.Random(seed)
    _, messages = generate(seed=seed, n_messages=n, reps=2)
    for i, m in enumerate(messages):
        if i >= n:
            break
        kind, raw = _mutate(m.raw, rnd)
        yield f"mutant {i} ({kind})", raw


def hostile_corpus(seed: int, mutant_count: int = 500) -> list[tuple[str, bytes]]:
    """The whole corpus but the 50 MB message (big_message) and the folder of tiny ones."""
    return [*named(), *by_charset(), *mutants(seed, mutant_count)]


def tiny_messages(n: int) -> Iterator[bytes]:
    for i in range(n):
        yield (
            f"From: t{i % 500}@tiny{i % 50}.example\r\nTo: {ME}\r\nSubject: {i}\r\n"
            f"Message-ID: <tiny{i}@corpus.test>\r\n{DATE}\r\n\r\nx\r\n"
        ).encode()
