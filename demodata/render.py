"""Rendering one email: Message-IDs, subjects, plain-text bodies and the MIME message as each mailer writes it.

_Renderer is the part of the generator (stream._Generator) that turns a decision (who writes what to
whom, when) into bytes; it uses the generator's random stream and counters, so it is a base class
rather than a separate object (the draws, and so the corpus, stay exactly as they were).
"""

from __future__ import annotations

import binascii
from html import escape as _html_escape

from demodata.encoding import (
    CRLF,
    CRLF_Q,
    CRLF_SP,
    _b_words,
    _date_hdr,
    _fold_addrs,
    _fold_ascii,
    _fold_words,
    _q_words,
    _qp,
    _quote_date,
)
from demodata.vocabulary import (
    _AREAS,
    _CITIES,
    _CLOSE,
    _CLOSE_DE,
    _GREET,
    _GREET_DE,
    _HTML_OUTLOOK_OPEN,
    _HTML_QUOTE_MID,
    _HTML_QUOTE_OPEN,
    _LINES,
    _LINES_DE,
    _MAILER_UA,
    _MONTHS_LONG,
    _PRODUCTS,
    _TIMES,
    _WEEKDAY_NAMES,
)
from demodata.world import _Person


class _Renderer:
    """Expects the generator's rng, seq, now, comp_rows, subj_cache, b64pool, hexpool and dkim_pool."""

    # ---- ids, dates, encodings -------------------------------------------

    def _idbytes(self, n: int) -> bytes:
        self.seq += 1
        # random bytes + a bijective scramble of the sequence number: unique, random-looking
        return self.rng.getrandbits(8 * (n - 4)).to_bytes(n - 4, "big") + (
            (self.seq * 0x9E3779B1) & 0xFFFFFFFF
        ).to_bytes(4, "big")

    def _message_id(self, sender: _Person) -> str:
        m = sender.mailer
        if m == "gmail":
            tail = binascii.b2a_base64(self._idbytes(30), newline=False).decode("ascii")
            return "<CA%s@mail.gmail.com>" % tail.replace("/", "_")
        if m == "outlook":
            srv, host = sender.outlook_srv
            return "<%s%s@%s>" % (srv, self._idbytes(16).hex().upper(), host)
        if m in ("apple", "thunderbird"):
            h = self._idbytes(16).hex()
            u = "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])
            return "<%s@%s>" % (u.upper() if m == "apple" else u, sender.domain)
        return "<%s.%s@%s>" % (self._idbytes(12).hex(), "%x" % self.seq, "mail." + sender.domain)

    def _subject_hdr(self, subject: str, style: int) -> str:
        key = (subject, style)
        v = self.subj_cache.get(key)
        if v is None:
            if subject.isascii() and style != 3:
                v = _fold_ascii(9, subject)
            else:
                # keep a leading "Re: " / "Fwd: " readable, like most clients do
                pre = ""
                for p in ("Re: ", "RE: ", "Fwd: ", "FW: ", "Automatic reply: "):
                    if subject.startswith(p):
                        pre, subject_ = p, subject[len(p) :]
                        break
                else:
                    subject_ = subject
                if style == 0 or style == 3:
                    words = _q_words(subject_)
                else:
                    words = _b_words(subject_, upper=style == 2)
                v = pre + _fold_words("Subject: " + pre, words)
            if len(self.subj_cache) > 20000:
                self.subj_cache.clear()
            self.subj_cache[key] = v
        return v

    def _b64(self, n: int) -> str:
        """n random-looking base64 characters (a window into a pre-drawn pool)."""
        off = int(self.rng.random() * (len(self.b64pool) - n))
        return self.b64pool[off : off + n]

    def _hex(self, n: int) -> str:
        off = int(self.rng.random() * (len(self.hexpool) - n))
        return self.hexpool[off : off + n]

    # ---- bodies ------------------------------------------------------------

    def _make_ctx_pool(self) -> None:
        """Pre-draw the per-thread placeholder values (a thread copies one of these)."""
        rng = self.rng
        shorts = []
        for cname, _, _ in self.comp_rows:
            short = cname
            for suf in (
                " Inc.",
                " LLC",
                " Corp.",
                " Ltd",
                " plc",
                " GmbH",
                " AG",
                " SE",
                " Pty Ltd",
                " SAS",
                " SA",
                " B.V.",
                " Ltd.",
                " A/S",
                " ApS",
                " S.L.",
                " S.A.",
                " DAC",
                " LLP",
            ):
                if short.endswith(suf):
                    short = short[: -len(suf)]
                    break
            shorts.append(short)
        self.short_names = shorts
        pool = []
        for _ in range(512):
            q = rng.randint(1, 4)
            pool.append(
                {
                    "company": "",
                    "org": "Northwind",
                    "product": rng.choice(_PRODUCTS),
                    "quarter": "Q%d" % q,
                    "q": str(q),
                    "year": str(self.now.year),
                    "seats": str(rng.choice([10, 15, 20, 25, 40, 50, 75, 100, 150, 250])),
                    "price": str(rng.choice([180, 240, 290, 320, 360, 420])),
                    "pct": str(rng.choice([10, 12, 15, 20, 25, 30, 40])),
                    "n": str(rng.randint(2, 5)),
                    "inv": "INV-%05d" % rng.randint(1000, 99999),
                    "po": "PO-%06d" % rng.randint(100000, 999999),
                    "area": rng.choice(_AREAS),
                    "month": rng.choice(_MONTHS_LONG),
                    "day": str(rng.randint(1, 28)),
                    "othercompany": "",
                    "weekday": rng.choice(_WEEKDAY_NAMES),
                    "time": rng.choice(_TIMES),
                    "city": rng.choice(_CITIES),
                    "first": "",
                    "me": "",
                    "colleague": "",
                    "contact": "",
                    "title": "",
                    "cfirst": "",
                    "hex": "%016x" % rng.getrandbits(64),
                }
            )
        self.ctx_pool = pool

    def _ctx(self, company_idx: int | None) -> dict:
        rnd = self.rng.random
        shorts = self.short_names
        ctx = self.ctx_pool[int(rnd() * 512)].copy()
        if company_idx is None:
            company_idx = int(rnd() * len(shorts))
        ctx["company"] = shorts[company_idx]
        ctx["othercompany"] = shorts[int(rnd() * len(shorts))].split(" ")[0]
        return ctx

    def _text(
        self,
        intent: str,
        ctx: dict,
        sender: _Person,
        recipient_first: str,
        lang: str,
        signature: bool,
        first_msg: bool,
        insert: str = "",
    ) -> str:
        """Plain-text body (CRLF line breaks, no trailing CRLF)."""
        rnd = self.rng.random
        ctx["first"] = recipient_first
        if rnd() < 0.3:
            ctx["weekday"] = _WEEKDAY_NAMES[int(rnd() * 5)]
            ctx["time"] = _TIMES[int(rnd() * len(_TIMES))]
        if lang == "de" and intent in _LINES_DE:
            pool, greet, close = _LINES_DE[intent], _GREET_DE, _CLOSE_DE
        else:
            pool, greet, close = _LINES[intent], _GREET, _CLOSE
        n = len(pool)
        lo, hi = (2, 5) if first_msg else (1, 4)
        if hi > n:
            hi = n
        k = lo + int(rnd() * (hi - lo + 1))
        start = 0 if first_msg and rnd() < 0.6 else int(rnd() * (n - k + 1))
        # consecutive template lines read like one coherent email
        if k > 3:
            body = "\r\n".join(pool[start : start + 2]) + "\r\n\r\n" + "\r\n".join(pool[start + 2 : start + k])
        else:
            body = "\r\n".join(pool[start : start + k])
        text = (
            greet[int(rnd() * len(greet))] + "\r\n\r\n" + body + "\r\n\r\n" + close[int(rnd() * len(close))]
        ).format_map(ctx)
        if insert:
            i = text.index("\r\n\r\n") + 4
            text = text[:i] + insert + "\r\n" + text[i:]
        if signature:
            return text + "\r\n" + sender.first + "\r\n" + sender.sig
        if rnd() < 0.05:
            return text + "\r\n" + sender.first + "\r\n\r\nSent from my iPhone"
        return text + "\r\n" + sender.first

    # ---- MIME assembly -----------------------------------------------------

    def _assemble(
        self,
        sender: _Person,
        to: list[_Person],
        cc: list[_Person],
        subject: str,
        ts: int,
        mid: str,
        irt: str | None,
        refs: list[str],
        text: str,
        quote: tuple | None,
        extra: str = "",
        inbound_trace: bool = False,
        html_extra: str = "",
    ) -> bytes:
        rnd = self.rng.random
        m = sender.mailer
        if m == "gmail":
            style = 2
        elif (m == "apple" or m == "bulk") and rnd() < 0.5:
            style = 1
        else:
            style = 3 if rnd() < 0.02 else 0  # 3: encode even an ASCII subject
        date = _date_hdr(ts, sender.off, sender.offstr, m == "outlook" or m == "bulk")
        pool = self.dkim_pool
        dkim = pool[int(rnd() * len(pool))]
        if inbound_trace:
            x = int(rnd() * 3758096384) + 335544320
            ip = f"{x >> 24}.{(x >> 16) & 255}.{(x >> 8) & 255}.{(x & 255) or 1}"
            head = [sender.trace % (ip, f"{dkim[-12:-6]}{ts % 99991:x}", date, ip), sender.dkim_head, str(ts), dkim]
        else:
            head = [sender.dkim_head, str(ts), dkim]
        if m == "apple":
            head.append(
                "Content-Type: text/plain; charset=utf-8\r\n"
                "Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3774.500.171.1.1\\))\r\n"
            )
        else:
            head.append("MIME-Version: 1.0\r\n")
        head.append(f"Date: {date}\r\nMessage-ID: {mid}\r\n")
        if irt:
            head.append(f"In-Reply-To: {irt}\r\nReferences: {CRLF_SP.join(refs)}\r\n")
        pst = 2 if style == 2 else (1 if style == 1 else 0)
        subj = self.subj_cache.get((subject, style))
        if subj is None:
            subj = self._subject_hdr(subject, style)
        head.append(f"Subject: {subj}\r\n")
        head.append(sender.from_line[pst])
        head.append(to[0].to_line[pst] if len(to) == 1 else f"To: {_fold_addrs(4, [p.addr[pst] for p in to])}\r\n")
        if cc:
            head.append(f"Cc: {_fold_addrs(4, [p.addr[pst] for p in cc])}\r\n")
        if m == "outlook":
            topic = subject[4:] if subject.startswith(("Re: ", "RE: ")) else subject
            head.append(
                f"Thread-Topic: {self._subject_hdr(topic, 0)}\r\n"
                f"Thread-Index: {self._b64(30)}==\r\nX-MS-Has-Attach: \r\n"
                "X-MS-TNEF-Correlator: \r\nContent-Language: en-US\r\n"
            )
        else:
            ua = _MAILER_UA.get(m)
            if ua is not None:
                head.append(ua)
        if extra:
            head.append(extra)

        # body
        if quote is not None:
            q_sender, q_ts, q_text, q_subject = quote
            if m == "outlook":
                attr = (
                    f"From: {q_sender.name} <{q_sender.email}>\r\n"
                    f"Sent: {_quote_date(q_ts, sender.off, 'x')}\r\nSubject: {q_subject}"
                )
                full = f"{text}\r\n\r\n________________________________\r\n{attr}\r\n\r\n{q_text}\r\n"
            else:
                attr = (
                    f"On {_quote_date(q_ts, sender.off, 'gmail' if m == 'gmail' else 'x')}"
                    f" {q_sender.name} <{q_sender.email}> wrote:"
                )
                full = f"{text}\r\n\r\n{attr}\r\n\r\n> {q_text.replace(CRLF, CRLF_Q)}\r\n"
        else:
            full = text + "\r\n"
        # About 45% of mail is multipart/alternative: HTML-composing clients
        # (Gmail, Outlook in their default mode), newsletters; the rest is
        # plain text (plain-text mode, Apple Mail, Thunderbird, web mail).
        if (
            (m == "bulk" and (extra[:4] == "List" or rnd() < 0.5))
            or (m == "gmail" and rnd() < 0.55)
            or (m == "outlook" and rnd() < 0.6)
            or (m == "generic" and rnd() < 0.2)
        ):
            if m == "gmail":
                bnd = "000000000000" + self._hex(14)
            elif m == "outlook":
                bnd = f"_000_{self._hex(24).upper()}_"
            else:
                bnd = f"----=_Part_{int(rnd() * 90000) + 10000}_{self._hex(8)}.{ts}"
            html = _html_escape(text, False).replace("\r\n", "<br>\r\n")
            if quote is not None:
                html += (
                    _HTML_QUOTE_OPEN
                    + _html_escape(attr.replace(" <", "\r\n<"), False).replace("\r\n", "<br>\r\n")
                    + _HTML_QUOTE_MID
                    + _html_escape(q_text, False).replace("\r\n", "<br>\r\n")
                    + "\r\n</blockquote></div>"
                )
            if m == "outlook":
                html = f"{_HTML_OUTLOOK_OPEN}{html}{html_extra}\r\n</div>\r\n</body>\r\n</html>\r\n"
            else:
                html = f'<div dir="ltr">{html}{html_extra}</div>\r\n'
            # Outlook always uses QP; Gmail and most others only when the part
            # is not plain ASCII (our lines are short, so 7bit is valid).
            always_qp = m == "outlook"
            if always_qp or not full.isascii():
                p1, cte1 = _qp(full), "quoted-printable"
            else:
                p1, cte1 = full.encode(), "7bit"
            if always_qp:
                p2, cte2 = _qp(html), "quoted-printable"
            elif html.isascii():
                p2, cte2 = html.encode(), "7bit"
            elif m == "gmail" or m == "bulk":
                # HTML can carry non-ASCII as character references (&#233;): 7bit
                p2, cte2 = html.encode("ascii", "xmlcharrefreplace"), "7bit"
            else:
                p2, cte2 = _qp(html), "quoted-printable"
            head.append(
                f'Content-Type: multipart/alternative;\r\n\tboundary="{bnd}"\r\n\r\n'
                f'--{bnd}\r\nContent-Type: text/plain; charset="UTF-8"\r\n'
                f"Content-Transfer-Encoding: {cte1}\r\n\r\n"
            )
            return b"".join(
                (
                    "".join(head).encode("ascii"),
                    p1,
                    f'\r\n--{bnd}\r\nContent-Type: text/html; charset="UTF-8"\r\n'
                    f"Content-Transfer-Encoding: {cte2}\r\n\r\n".encode("ascii"),
                    p2,
                    f"\r\n--{bnd}--\r\n".encode("ascii"),
                )
            )
        data = full.encode()
        if m == "thunderbird":
            head.append(
                "Content-Type: text/plain; charset=UTF-8; format=flowed\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
                if data.isascii()
                else "Content-Type: text/plain; charset=UTF-8; format=flowed\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            )
        elif m == "apple" or rnd() < 0.5:
            head.append(
                "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
                if m == "apple"
                else "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
            )
            data = _qp(full)
        else:
            head.append(
                "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
                if data.isascii()
                else "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            )
        return "".join(head).encode("ascii") + data

    def _rand(self, n: int) -> bytes:
        return self.rng.getrandbits(8 * n).to_bytes(n, "big")
