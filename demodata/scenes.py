"""Mail patterns that give the demo's first rep one follow-up of each kind on first open.

The generated stream answers nearly every email (its threads run to a reply), so on its own
it leaves a rep's queue to chance. These few emails, at three customers of their own (so no
reply elsewhere in the stream closes them), make sure `./run demo` shows all three kinds:

- *waiting on them*: the rep sent a proposal six days ago and heard nothing (due after 3
  business days: overdue);
- *you owe a reply*: a customer asked something four days ago, unanswered;
- *going quiet*: a key account (the demo marks it so, and gives the rep an open deal with
  it) the rep last exchanged mail with 40 days ago (the organisation's default is 30 days).

Deterministic for a corpus and `now`; the shapes are those of demodata.model.Message.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from email.utils import format_datetime

from demodata.model import Corpus, Message

# (company, domain, contact name, contact address)
WAITING = ("Bluepeak Outdoor", "bluepeak-outdoor.com", "Nora Lindqvist", "nora.lindqvist@bluepeak-outdoor.com")
OWE = ("Cedar & Stone Architects", "cedarstone-arch.com", "Tomas Ferreira", "tomas.ferreira@cedarstone-arch.com")
QUIET = ("Halvorsen Marine", "halvorsen-marine.no", "Ingrid Halvorsen", "ingrid@halvorsen-marine.no")
KEY_ACCOUNT_DOMAINS = (QUIET[1],)
QUIET_DAYS_AGO = 40  # the quiet key account's last email


def _raw(frm: str, to: str, subject: str, when: datetime, msgid: str, body: str, extra: str = "") -> bytes:
    lines = [
        f"From: {frm}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {format_datetime(when)}",
        f"Message-ID: <{msgid}>",
    ]
    if extra:
        lines.append(extra)
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "", body]
    return "\r\n".join(lines).encode()


def followup_scenes(corpus: Corpus, now: datetime) -> list[Message]:
    """The scenes' emails, oldest first, as copies in the first rep's mailbox."""
    rep = corpus.reps[0]
    me = f"{rep.name} <{rep.email}>"
    day = now.replace(hour=10, minute=0, second=0, microsecond=0)
    received = "Received: from mail.{domain} by mx.northwind.io; {date}"
    out: list[Message] = []

    def add(raw: bytes, folder: str, when: datetime, msgid: str, reply_to: str | None = None) -> None:
        out.append(Message(raw, rep.email, folder, when, msgid, "external", reply_to))

    # Going quiet: a short exchange 40 days ago, nothing since.
    company, domain, name, address = QUIET
    sent, answered = day - timedelta(days=QUIET_DAYS_AGO + 1), day - timedelta(days=QUIET_DAYS_AGO)
    add(
        _raw(
            me,
            f"{name} <{address}>",
            "Next season's fleet analytics",
            sent,
            "scene-quiet-1@northwind.io",
            f"Hi {name.split()[0]},\n\nas promised, the figures for next season. Shall we talk in a month?\n\n{rep.name}\n",
        ),
        "Sent",
        sent,
        "scene-quiet-1@northwind.io",
    )
    add(
        _raw(
            f"{name} <{address}>",
            me,
            "Re: Next season's fleet analytics",
            answered,
            f"scene-quiet-2@{domain}",
            f"Thanks, let's talk then.\n\n{name}\n{company}\n",
            "In-Reply-To: <scene-quiet-1@northwind.io>\r\n"
            + received.format(domain=domain, date=format_datetime(answered)),
        ),
        "INBOX",
        answered,
        f"scene-quiet-2@{domain}",
        "scene-quiet-1@northwind.io",
    )
    # Waiting on them: a proposal six days ago, no answer.
    company, domain, name, address = WAITING
    sent = day - timedelta(days=6)
    add(
        _raw(
            me,
            f"{name} <{address}>",
            f"Proposal for {company}",
            sent,
            "scene-waiting-1@northwind.io",
            f"Hi {name.split()[0]},\n\nplease find our proposal attached. Any questions, just ask.\n\n{rep.name}\n",
        ),
        "Sent",
        sent,
        "scene-waiting-1@northwind.io",
    )
    # You owe a reply: a question four days ago, unanswered (due after 8 business hours: overdue
    # whatever the weekday, as the three days after it hold at least one working day).
    company, domain, name, address = OWE
    asked = day - timedelta(days=4)
    add(
        _raw(
            f"{name} <{address}>",
            me,
            "Question about the renewal",
            asked,
            f"scene-owe-1@{domain}",
            f"Hello,\n\ncould you send me the renewal terms before Friday?\n\n{name}\n{company}\n",
            received.format(domain=domain, date=format_datetime(asked)),
        ),
        "INBOX",
        asked,
        f"scene-owe-1@{domain}",
    )
    return out
