"""The stream of messages: threads started and answered in time order, bulk mail, one copy per mailbox."""

from __future__ import annotations

import base64
import bisect
import heapq
import time
from datetime import datetime, timezone
from typing import Iterator

from demodata.clock import _business_hours, _Clock
from demodata.draw import _cum, _FastRandom, _wchoice
from demodata.encoding import _phrase, _quote_date
from demodata.model import Corpus, Message
from demodata.render import _Renderer
from demodata.vocabulary import (
    _BULK_NEWS,
    _BULK_NOTIFY,
    _FIRST,
    _LAST,
    _MONTHS_LONG,
    _NEWS_TOPICS,
    _NOTIFY_LINES,
    _SUBJ_IN,
    _SUBJ_INTERNAL,
    _SUBJ_OUT,
    _SUBJ_OUT_DE,
)
from demodata.world import _build_world, _Person

UTC = timezone.utc


class _Thread:
    __slots__ = (
        "kind",
        "subject",
        "subject_key",
        "ctx",
        "ids",
        "last_sender",
        "last_to",
        "last_cc",
        "last_ts",
        "last_text",
        "rounds",
        "max_rounds",
        "rep",
        "contact",
        "cc_contact",
        "cc_colleague",
        "company",
        "ooo_done",
        "lang",
    )


_ROUNDS = [1] * 35 + [2] * 28 + [3] * 17 + [4] * 10 + [5] * 5 + [6, 6, 7, 8, 9]


class _Generator(_Renderer):
    def __init__(self, seed, n_messages, n_reps, companies, days, now):
        if n_messages < 0:
            raise ValueError("n_messages must be >= 0")
        if n_reps < 1:
            raise ValueError("reps must be >= 1")
        if days < 1:
            raise ValueError("days must be >= 1")
        if now is None:
            now = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        elif now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        now = now.astimezone(UTC)
        self.now = now
        self.now_ts = int(now.timestamp())
        self.n = n_messages
        self.days = days
        (self.corpus, self.reps, self.comp_rows, self.company_meta, self.contacts_by_company) = _build_world(
            seed, n_reps, companies, days, now
        )
        self.rng = _FastRandom("mailgen-stream:%s" % seed)
        self.clock = _Clock(self.now_ts, days)
        self.seq = 0
        rng = self.rng
        # Activity per company: a few key accounts get most of the mail.
        w = [1.0 / (i + 1) ** 0.8 for i in range(len(self.comp_rows))]
        rng.shuffle(w)
        self.company_cum = _cum(w)
        self.subj_out_cum = _cum(s[2] for s in _SUBJ_OUT)
        self.subj_out_de_cum = _cum(s[2] for s in _SUBJ_OUT_DE)
        self.subj_in_cum = _cum(s[2] for s in _SUBJ_IN)
        self.subj_int_cum = _cum(s[2] for s in _SUBJ_INTERNAL)
        self.subj_cache: dict[tuple[str, int], str] = {}
        self.b64pool = base64.b64encode(self._rand(48 * 1024)).decode()
        self.hexpool = self._rand(16 * 1024).hex()
        self.dkim_pool = []
        for _ in range(256):  # signature tails, reused (nobody verifies them)
            b = self._b64(386)
            self.dkim_pool.append(
                ";\r\n        h=to:subject:message-id:date:from:mime-version;\r\n"
                f"        bh={b[:43]}=;\r\n        b={b[43:113]}\r\n         {b[113:183]}\r\n"
                f"         {b[183:253]}\r\n         {b[253:323]}\r\n         {b[323:377]}==\r\n"
            )
        self._make_ctx_pool()
        self.recent_ext: list[tuple] = []  # ring buffer for forwards
        self.bulk_people = {}
        for n_, e_, host in _BULK_NEWS:
            self.bulk_people[e_] = (_Person(n_, e_, "", n_, 0, "bulk", False, ""), host)
        for n_, e_, _ in _BULK_NOTIFY:
            self.bulk_people[e_] = (_Person(n_, e_, "", n_, 0, "bulk", False, ""), None)

    # ---- copies ------------------------------------------------------------

    def _copies(
        self, raw: bytes, mid: str, sender: _Person, rcpts: list[_Person], ts: int, kind: str, irt: str | None
    ) -> list[Message]:
        rnd = self.rng.random
        out = []
        if sender.internal:
            out.append(Message(raw, sender.email, "Sent", datetime.fromtimestamp(ts, UTC), mid, kind, irt))
            seen = [sender.email]
        else:
            seen = []
        for p in rcpts:
            if p.internal and p.email not in seen:
                seen.append(p.email)
                its = ts + 1 + int(rnd() * 90)
                if its > self.now_ts:
                    its = self.now_ts
                out.append(
                    Message(
                        raw,
                        p.email,
                        "Archive" if rnd() < 0.04 else "INBOX",
                        datetime.fromtimestamp(its, UTC),
                        mid,
                        kind,
                        irt,
                    )
                )
        return out

    @staticmethod
    def _n_copies(sender: _Person, rcpts: list[_Person]) -> int:
        emails = [p.email for p in rcpts if p.internal and p is not sender]
        return len(set(emails)) + (1 if sender.internal else 0)

    # ---- kinds of mail -----------------------------------------------------

    def _pick_company(self) -> int:
        cum = self.company_cum
        i = bisect.bisect_right(cum, self.rng.random() * cum[-1])
        return i if i < len(cum) else len(cum) - 1

    def _bulk(self, ts: int) -> list[Message]:
        rng = self.rng
        rep = rng.choice(self.reps)
        ctx = self._ctx(None)
        ctx["contact"] = "%s %s" % (rng.choice(_FIRST), rng.choice(_LAST))
        lu_host = None
        if rng.random() < 0.45:  # newsletter
            if rng.random() < 0.3:  # a customer's own newsletter
                ci = self._pick_company()
                cname, domain, _ = self.comp_rows[ci]
                key = "news@" + domain
                if key not in self.bulk_people:
                    if len(self.bulk_people) > 5000:
                        self.bulk_people.clear()
                    self.bulk_people[key] = (_Person(cname, key, "", cname, 0, "bulk", False, ""), "email." + domain)
                sender, lu_host = self.bulk_people[key]
                tm = time.gmtime(ts)
                subject = "%s Newsletter – %s %d" % (self.short_names[ci], _MONTHS_LONG[tm.tm_mon - 1], tm.tm_year)
            else:
                n_, e_, _ = _BULK_NEWS[rng.randrange(len(_BULK_NEWS))]
                sender, lu_host = self.bulk_people[e_]
                subject = "%s #%d: %s" % (n_, rng.randint(40, 320), rng.choice(_NEWS_TOPICS).format_map(ctx))
            token = self._hex(24)
            extra = (
                "List-Unsubscribe: <mailto:unsubscribe-%s@%s>,\r\n <https://%s/u/%s>\r\n"
                "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
                "List-Id: %s <newsletter.%s>\r\nPrecedence: bulk\r\n"
                "X-Campaign-Id: %d\r\nFeedback-ID: %d:newsletter:esp\r\n"
                % (
                    token,
                    lu_host,
                    lu_host,
                    token,
                    _phrase(sender.name, 0),
                    sender.domain,
                    rng.randint(10000, 99999),
                    rng.randint(100, 999),
                )
            )
            text = (
                "Hi %s,\r\n\r\nThis week:\r\n%s.\r\nRead the full story on our blog:\r\n"
                "https://%s/p/%s\r\nPlus: three short reads picked by our editors.\r\n\r\n"
                "You're receiving this because you subscribed at\r\n%s.\r\n"
                "Unsubscribe: https://%s/u/%s"
                % (rep.first, subject.split(": ", 1)[-1], sender.domain, token[:10], sender.domain, lu_host, token)
            )
            html_extra = (
                '\r\n<table width="100%%" cellpadding="0" cellspacing="0">\r\n'
                '<tr><td style="padding:24px;\r\nfont-family:Helvetica,Arial,sans-serif">'
                '\r\n<a href="https://%s/p/%s">\r\nRead more</a></td></tr></table>\r\n'
                '<p style="font-size:11px;color:#888">\r\n'
                '<a href="https://%s/u/%s">\r\nUnsubscribe</a></p>' % (sender.domain, token[:10], lu_host, token)
            )
        else:  # notification
            n_, e_, subj_t = _BULK_NOTIFY[rng.randrange(len(_BULK_NOTIFY))]
            sender = self.bulk_people[e_][0]
            subject = subj_t.format_map(ctx)
            text = "Hello %s,\r\n\r\n%s.\r\n%s\r\n\r\n%s\r\n\r\nThe %s team" % (
                rep.first,
                subject,
                rng.choice(_NOTIFY_LINES).format_map(ctx),
                rng.choice(_NOTIFY_LINES).format_map(ctx),
                n_,
            )
            html_extra = ""
            extra = "Auto-Submitted: auto-generated\r\nX-Auto-Response-Suppress: All\r\n"
            if rng.random() < 0.3:
                extra += "Precedence: bulk\r\n"
        self.seq += 1
        mid = "<%s.%x.%d@%s>" % (self._hex(20), self.seq, ts, lu_host or ("mail." + sender.domain))
        raw = self._assemble(
            sender,
            [rep],
            [],
            subject,
            ts,
            mid,
            None,
            [],
            text,
            None,
            extra=extra,
            inbound_trace=True,
            html_extra=html_extra,
        )
        return self._copies(raw, mid, sender, [rep], ts, "bulk", None)

    def _start(self, ts: int, budget: int) -> list[Message]:
        r = self.rng.random()
        if r < 0.18 or budget < 2 and r < 0.5:
            return self._bulk(ts)
        if r < 0.25 and len(self.reps) > 1:
            return self._start_internal(ts, budget)
        return self._start_external(ts, budget)

    def _new_thread(self, kind: str) -> _Thread:
        th = _Thread()
        th.kind = kind
        th.rounds = 1
        th.ooo_done = False
        th.cc_contact = None
        th.cc_colleague = None
        th.contact = None
        th.company = None
        th.lang = "en"
        return th

    def _start_external(self, ts: int, budget: int) -> list[Message]:
        rng = self.rng
        rnd = rng.random
        ci = self._pick_company()
        people = self.contacts_by_company[ci]
        meta = self.company_meta[ci]
        contact = people[0] if rnd() < 0.4 else rng.choice(people)
        rep = meta["owner"] if rnd() < 0.8 else rng.choice(self.reps)
        th = self._new_thread("external")
        th.company = ci
        th.rep = rep
        th.contact = contact
        th.lang = contact.lang
        th.ctx = ctx = self._ctx(ci)
        ctx["contact"] = contact.name
        ctx["title"] = contact.title
        ctx["cfirst"] = contact.first
        if len(people) > 1 and rnd() < 0.15:
            th.cc_contact = rng.choice([p for p in people if p is not contact])
        if len(self.reps) > 1 and rnd() < 0.15:
            th.cc_colleague = rng.choice([p for p in self.reps if p is not rep])
            ctx["colleague"] = th.cc_colleague.first
        th.max_rounds = rng.choice(_ROUNDS)
        if rnd() < 0.3:
            key, subj_t, _ = _wchoice(rng, _SUBJ_IN, self.subj_in_cum)
            sender, to = contact, [rep]
        elif th.cc_colleague is not None and rnd() < 0.4:
            key = "intro"
            subj_t = "Intro: {cfirst} ({company}) <> {colleague} ({org})"
            sender, to = rep, [contact]
        else:
            if contact.lang == "de" and rnd() < 0.5:
                key, subj_t, _ = _wchoice(rng, _SUBJ_OUT_DE, self.subj_out_de_cum)
            else:
                key, subj_t, _ = _wchoice(rng, _SUBJ_OUT, self.subj_out_cum)
            sender, to = rep, [contact]
        th.subject = subj_t.format_map(ctx)
        th.subject_key = key
        cc = [p for p in (th.cc_contact, th.cc_colleague) if p is not None]
        rcpts = to + cc if cc else to
        if budget < 3 and self._n_copies(sender, rcpts) > budget:
            return self._bulk(ts)
        text = self._text(key, ctx, sender, to[0].first, th.lang, rnd() < 0.6, True)
        mid = self._message_id(sender)
        raw = self._assemble(
            sender, to, cc, th.subject, ts, mid, None, [], text, None, inbound_trace=not sender.internal
        )
        th.ids = [mid]
        th.last_sender, th.last_to, th.last_cc, th.last_ts = sender, to, cc, ts
        th.last_text = text
        self._remember(mid, th.subject, sender, to, cc, ts, text)
        self._schedule(th, ts)
        return self._copies(raw, mid, sender, rcpts, ts, "external", None)

    def _remember(self, mid, subject, sender, to, cc, ts, text):
        rec = self.recent_ext
        rec.append((mid, subject, sender, to, cc, ts, text))
        if len(rec) > 64:
            del rec[:32]

    def _start_internal(self, ts: int, budget: int) -> list[Message]:
        rng = self.rng
        rnd = rng.random
        fwd = None
        insiders: list[_Person] = []
        if self.recent_ext and rnd() < 0.25:
            # forward a recent customer email from the mailbox of someone who had it
            fwd = rng.choice(self.recent_ext)
            insiders = [p for p in (fwd[2], *fwd[3], *fwd[4]) if p.internal]
        sender = rng.choice(insiders) if insiders else rng.choice(self.reps)
        others = [p for p in self.reps if p is not sender and p not in insiders] or [
            p for p in self.reps if p is not sender
        ]
        to = [rng.choice(others)]
        if len(others) > 2 and rnd() < 0.2:
            to.append(rng.choice([p for p in others if p is not to[0]]))
        cc = []
        rest = [p for p in others if p not in to]
        if rest and rnd() < 0.15:
            cc.append(rng.choice(rest))
        if self._n_copies(sender, to + cc) > budget:
            return self._bulk(ts)
        th = self._new_thread("internal")
        th.rep = sender
        ci = self._pick_company()
        th.ctx = ctx = self._ctx(ci)
        ctx["contact"] = rng.choice(self.contacts_by_company[ci]).name
        th.max_rounds = rng.choice((1, 1, 2, 2, 2, 3, 4))
        if fwd is not None:
            th.subject = "Fwd: " + fwd[1]
        else:
            _, subj_t, _ = _wchoice(rng, _SUBJ_INTERNAL, self.subj_int_cum)
            th.subject = subj_t.format_map(ctx)
        th.subject_key = "int"
        text = self._text("int", ctx, sender, to[0].first, "en", False, True)
        th.last_text = text
        if fwd is not None:
            f_mid, f_subj, f_sender, f_to, _, f_ts, f_text = fwd
            text = (
                "%s,\r\n\r\nFYI, see below. Can you take this one?\r\n\r\n%s\r\n\r\n"
                "---------- Forwarded message ---------\r\nFrom: %s <%s>\r\nDate: %s\r\n"
                "Subject: %s\r\nTo: %s\r\n\r\n%s"
                % (
                    to[0].first,
                    sender.first,
                    f_sender.name,
                    f_sender.email,
                    _quote_date(f_ts, sender.off, "gmail"),
                    f_subj,
                    ", ".join("%s <%s>" % (p.name, p.email) for p in f_to),
                    f_text,
                )
            )
            th.last_text = text.split("\r\n---------- Forwarded", 1)[0]
        mid = self._message_id(sender)
        raw = self._assemble(sender, to, cc, th.subject, ts, mid, None, [], text, None)
        th.ids = [mid]
        th.last_sender, th.last_to, th.last_cc, th.last_ts = sender, to, cc, ts
        self._schedule(th, ts)
        return self._copies(raw, mid, sender, to + cc, ts, "internal", None)

    def _schedule(self, th: _Thread, ts: int, delay: float | None = None) -> None:
        if th.rounds >= th.max_rounds:
            return
        rng = self.rng
        rnd = rng.random
        if delay is None:
            r = rnd()
            if r < 0.3:
                delay = 300 + rnd() * 3300  # within the hour
            elif r < 0.7:
                delay = 3600 + rnd() * 7 * 3600  # same day
            elif r < 0.95:
                delay = 86400 + rnd() * 2 * 86400  # a day or two
            else:
                delay = 4 * 86400 + rnd() * 10 * 86400
        # who answers next
        if th.kind == "external":
            if th.last_sender.internal:
                replier = th.contact
                cc_c = th.cc_contact
                if cc_c is not None and rnd() < 0.25 and (cc_c in th.last_cc or cc_c in th.last_to):
                    replier = cc_c
            else:
                replier = th.rep
                cc_r = th.cc_colleague
                if cc_r is not None and rnd() < 0.2 and (cc_r in th.last_cc or cc_r in th.last_to):
                    replier = cc_r
        else:
            cands = [p for p in th.last_to + th.last_cc if p is not th.last_sender]
            replier = rng.choice(cands) if cands else th.rep
        t = _business_hours(rng, ts + delay, replier.off)
        if t >= self.now_ts:
            return
        self._seq_heap += 1
        heapq.heappush(self.heap, (int(t), self._seq_heap, th, replier))

    def _reply(self, ts: int, th: _Thread, replier: _Person, budget: int) -> list[Message]:
        rng = self.rng
        rnd = rng.random
        parent = th.ids[-1]
        prev_sender = th.last_sender
        # Out-of-office auto reply from a contact (does not advance the thread).
        if th.kind == "external" and not replier.internal and not th.ooo_done and prev_sender.internal and rnd() < 0.04:
            th.ooo_done = True
            if self._n_copies(replier, [prev_sender]) > budget:
                return self._bulk(ts)
            mid = self._message_id(replier)
            text = (
                "Thank you for your email.\r\n\r\nI am out of the office until %s %s with"
                " limited access to email.\r\nFor urgent matters please contact our office."
                "\r\n\r\n%s" % (th.ctx["month"], th.ctx["day"], replier.name)
            )
            refs = th.ids if len(th.ids) <= 10 else th.ids[:1] + th.ids[-9:]
            raw = self._assemble(
                replier,
                [prev_sender],
                [],
                "Automatic reply: " + th.subject,
                ts,
                mid,
                parent,
                refs,
                text,
                None,
                extra="Auto-Submitted: auto-replied\r\nX-Auto-Response-Suppress: All\r\n",
                inbound_trace=True,
            )
            self._schedule(th, ts, delay=2 * 86400 + rnd() * 4 * 86400)
            return self._copies(raw, mid, replier, [prev_sender], ts, "auto", parent)

        to = [prev_sender]
        cc = [p for p in th.last_to + th.last_cc if p is not replier and p is not prev_sender]
        if cc and rnd() < 0.1:
            cc = []  # "reply" instead of "reply all"
        insert = ""
        if th.kind == "external" and not replier.internal and th.cc_contact is None and rnd() < 0.08:
            others = [p for p in self.contacts_by_company[th.company] if p is not replier and p is not th.contact]
            if others:
                looping = th.cc_contact = rng.choice(others)
                cc.append(looping)
                insert = "Looping in %s, who handles procurement on our side." % looping.first
        rcpts = to + cc if cc else to
        if budget < 4 and self._n_copies(replier, rcpts) > budget:
            return self._bulk(ts)
        th.rounds += 1
        if th.kind == "external":
            intent = "reply_rep" if replier.internal else "reply_contact"
        else:
            intent = "int"
        text = self._text(intent, th.ctx, replier, prev_sender.first, th.lang, rnd() < 0.3, False, insert)
        base = th.subject
        if base.startswith(("Re: ", "RE: ")):
            subject = base
        else:
            subject = ("RE: " if replier.mailer == "outlook" else "Re: ") + base
        mid = self._message_id(replier)
        ids = th.ids
        refs = ids if len(ids) <= 10 else ids[:1] + ids[-9:]
        quote = (prev_sender, th.last_ts, th.last_text, th.subject) if rnd() < 0.65 else None
        raw = self._assemble(
            replier, to, cc, subject, ts, mid, parent, refs, text, quote, inbound_trace=not replier.internal
        )
        ids.append(mid)
        th.last_sender, th.last_to, th.last_cc, th.last_ts = replier, to, cc, ts
        th.last_text = text
        if th.kind == "external":
            self._remember(mid, subject, replier, to, cc, ts, text)
        self._schedule(th, ts)
        return self._copies(raw, mid, replier, rcpts, ts, th.kind, parent)

    # ---- main loop ---------------------------------------------------------

    def stream(self) -> Iterator[Message]:
        n = self.n
        self.heap = heap = []
        self._seq_heap = 0
        rnd = self.rng.random
        at = self.clock.at
        heappop = heapq.heappop
        used = 0
        next_start = None
        while used < n:
            if next_start is None:
                next_start = int(at((used + rnd()) / n))
            if heap and heap[0][0] <= next_start:
                ts, _, th, replier = heappop(heap)
                msgs = self._reply(ts, th, replier, n - used)
            else:
                msgs = self._start(next_start, n - used)
                next_start = None
            yield from msgs
            used += len(msgs)


def generate(
    seed: int = 1, n_messages: int = 2000, reps: int = 6, companies=None, days: int = 365, now: datetime | None = None
) -> tuple[Corpus, Iterator[Message]]:
    """Build the world and return ``(corpus, iterator of Message)``.

    ``n_messages`` is the exact number of mailbox copies yielded. ``companies``
    is a count (default 40) or a sequence of ``(name, domain)`` pairs.
    ``now`` (aware, or naive meaning UTC) ends the time window; ``None`` means
    today at 00:00 UTC, so pass it explicitly for output that is
    byte-for-byte reproducible across days. The iterator is lazy.
    """
    g = _Generator(seed, n_messages, reps, companies, days, now)
    return g.corpus, g.stream()
