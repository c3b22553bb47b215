"""Named broken or hostile messages for parser robustness tests."""

from __future__ import annotations


def malformed_messages() -> list[tuple[str, bytes]]:
    """Named broken or hostile messages for parser robustness tests."""

    def msg(*headers: str, body: str = "Hello.\r\n", sep: bytes = b"\r\n") -> bytes:
        return sep.join(h.encode("utf-8") for h in headers) + sep + sep + body.encode("utf-8")

    base_from = "From: Ben Carter <ben@northwind.io>"
    base_to = "To: Zoe Mueller <zoe.mueller@bluefin.de>"
    base_date = "Date: Tue, 04 Mar 2025 14:02:11 -0500"
    mid = lambda n: "Message-ID: <malformed-%s@northwind.io>" % n  # noqa: E731

    out: list[tuple[str, bytes]] = []
    add = lambda name, raw: out.append((name, raw))  # noqa: E731

    add("missing_from", msg(base_to, base_date, mid(1), "Subject: no sender"))
    add("missing_date", msg(base_from, base_to, mid(2), "Subject: no date"))
    add("missing_message_id", msg(base_from, base_to, base_date, "Subject: no message id"))
    add("missing_to", msg(base_from, base_date, mid(3), "Subject: no recipients"))
    add(
        "garbage_date",
        msg(base_from, base_to, "Date: sometime last tuesday-ish, around noon", mid(4), "Subject: garbage date"),
    )
    add(
        "out_of_range_date",
        msg(base_from, base_to, "Date: Mon, 32 Foo 99999 25:61:61 +9999", mid(5), "Subject: impossible date"),
    )
    add("date_without_timezone", msg(base_from, base_to, "Date: 2025-03-04 14:02:11", mid(6), "Subject: iso date"))
    add("from_not_an_address", msg("From: not an address", base_to, base_date, mid(7), "Subject: bad from"))
    add("from_double_at", msg("From: a@@b", base_to, base_date, mid(8), "Subject: a@@b"))
    add("from_empty_angle", msg("From: <>", base_to, base_date, mid(9), "Subject: null sender"))
    add(
        "to_invalid_mixed",
        msg(
            base_from,
            'To: "Broken" <@nowhere>, ,, a@@b, plain words, <>, good@bluefin.de',
            base_date,
            mid(10),
            "Subject: bad to",
        ),
    )
    add(
        "unicode_local_part",
        msg(
            "From: Jürgen <jürgen@bücher.de>",
            "To: δοκιμή@παράδειγμα.δοκιμή",
            base_date,
            mid(11),
            "Subject: SMTPUTF8 addresses",
        ),
    )
    add(
        "encoded_word_in_address",
        msg(
            "From: =?utf-8?q?ben=40northwind.io?=",
            base_to,
            base_date,
            mid(12),
            "Subject: encoded-word where an address belongs",
        ),
    )
    add(
        "bad_charset",
        msg(
            base_from,
            base_to,
            base_date,
            mid(13),
            "Subject: bad charset",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=x-unknown",
            "Content-Transfer-Encoding: 8bit",
            body="",
        )
        + "Gr\xfc\xdfe aus M\xfcnchen \u2013 caf\xe9\r\n".encode("utf-8")
        + b"\xff\xfe latin1: \xe9t\xe9\r\n",
    )
    add(
        "eight_bit_header_bytes",
        b"From: J\xe9r\xf4me <jerome@bluefin.fr>\r\n"
        + base_to.encode()
        + b"\r\n"
        + base_date.encode()
        + b"\r\n"
        + mid(14).encode()
        + b"\r\nSubject: R\xe9union \xe0 Paris \xff\xfe\r\n\r\nBonjour.\r\n",
    )
    add(
        "utf8_raw_header",
        msg(
            "From: Zoë Müller <zoe.mueller@bluefin.de>", base_to, base_date, mid(15), "Subject: Grüße – unencoded UTF-8"
        ),
    )
    add(
        "rfc2047_invalid_base64",
        msg(
            "From: =?utf-8?b?!!!not*base64###?= <x@bluefin.de>",
            base_to,
            base_date,
            mid(16),
            "Subject: =?utf-8?b?SGVsbG8gV29y?= =?utf-8?b?%%%===?=",
        ),
    )
    add(
        "rfc2047_unknown_charset",
        msg(base_from, base_to, base_date, mid(17), "Subject: =?x-klingon?q?Qapla=27?= =?utf-8?q?ok?="),
    )
    add(
        "rfc2047_truncated", msg(base_from, base_to, base_date, mid(18), "Subject: =?utf-8?q?unterminated_encoded_word")
    )
    add(
        "broken_mime_boundary",
        msg(
            base_from,
            base_to,
            base_date,
            mid(19),
            "Subject: broken mime",
            "MIME-Version: 1.0",
            'Content-Type: multipart/alternative; boundary="XYZ"',
            body="--ABC\r\nContent-Type: text/plain\r\n\r\nwrong boundary\r\n"
            "--XYZ\r\nContent-Type: text/html\r\n\r\n<p>never closed",
        ),
    )
    add(
        "multipart_without_boundary",
        msg(
            base_from,
            base_to,
            base_date,
            mid(20),
            "Subject: no boundary",
            "MIME-Version: 1.0",
            "Content-Type: multipart/mixed",
            body="--\r\n\r\nnothing\r\n",
        ),
    )
    add(
        "invalid_base64_body",
        msg(
            base_from,
            base_to,
            base_date,
            mid(21),
            "Subject: bad b64",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: base64",
            body="SGVsbG8g!!!@@@ not base64 at all ===\r\nV29ybGQ\r\n",
        ),
    )
    refs = " ".join("<ref-%06d-%s@mail.gmail.com>" % (i, "x" * 12) for i in range(6000))
    add(
        "huge_references",
        msg(
            base_from,
            base_to,
            base_date,
            mid(22),
            "Subject: Re: huge refs",
            "In-Reply-To: <ref-005999-xxxxxxxxxxxx@mail.gmail.com>",
            "References: " + refs,
        ),
    )
    to = ",\r\n ".join("Recipient %d <r%d@bulk-recipients.example>" % (i, i) for i in range(5000))
    add("huge_to_5000_recipients", msg(base_from, "To: " + to, base_date, mid(23), "Subject: company-wide blast"))
    add("very_long_unfolded_line", msg(base_from, base_to, base_date, mid(24), "Subject: " + "long " * 2000))
    add(
        "nul_in_header",
        b"From: Ben Carter <ben@north\x00wind.io>\r\n"
        + base_to.encode()
        + b"\r\n"
        + base_date.encode()
        + b"\r\n"
        + mid(25).encode()
        + b"\r\nSubject: nul\x00byte\r\n\r\nbody\x00with nul\r\n",
    )
    add(
        "headers_only_no_body",
        (base_from + "\r\n" + base_to + "\r\n" + base_date + "\r\n" + mid(26) + "\r\nSubject: no body").encode(),
    )
    add("headers_blank_line_no_body", msg(base_from, base_to, base_date, mid(27), "Subject: empty body", body=""))
    add("empty", b"")
    add("only_whitespace", b"\r\n\r\n   \r\n")
    add(
        "mixed_line_endings",
        b"From: Ben Carter <ben@northwind.io>\r\nTo: zoe.mueller@bluefin.de\n"
        b"Date: Tue, 04 Mar 2025 14:02:11 -0500\r\n"
        + mid(28).encode()
        + b"\nSubject: mixed\r\n endings folded\n\r\nline one\nline two\r\nline three\rline four\n",
    )
    add(
        "duplicate_headers",
        msg(
            base_from,
            "From: Someone Else <else@bluefin.de>",
            base_to,
            base_date,
            "Date: Wed, 05 Mar 2025 09:00:00 +0000",
            mid(29),
            "Message-ID: <dup-second@northwind.io>",
            "Subject: one",
            "Subject: two",
        ),
    )
    add(
        "message_id_without_brackets",
        msg(base_from, base_to, base_date, "Message-ID: no-brackets-here@northwind.io", "Subject: bare id"),
    )
    add(
        "message_id_garbage",
        msg(base_from, base_to, base_date, "Message-ID: <<<@@@>>> <a b c> \x7f", "Subject: junk id"),
    )
    add("continuation_first_line", b" folded: without header\r\n" + msg(base_from, base_to, base_date, mid(30)))
    add(
        "header_without_colon",
        msg(base_from, "This line has no colon", base_to, base_date, mid(31), "Subject: no colon"),
    )
    add(
        "mbox_from_line",
        b"From ben@northwind.io Tue Mar  4 14:02:11 2025\r\n"
        + msg(base_from, base_to, base_date, mid(32), "Subject: mbox separator"),
    )
    add("binary_garbage", bytes(range(256)) * 8)
    add(
        "in_reply_to_loop",
        msg(
            base_from,
            base_to,
            base_date,
            mid(33),
            "Subject: Re: loop",
            "In-Reply-To: <malformed-33@northwind.io>",
            "References: <malformed-33@northwind.io> <malformed-33@northwind.io>",
        ),
    )
    return out
