"""Deterministic generator of a realistic email corpus for a small company.

Used by the demo mode, the tests and the benchmarks. Standard library only.

The world (:class:`Corpus`) is a small B2B vendor, *Northwind Analytics*
(``northwind.io``), whose reps talk to contacts at customer companies. The
stream (:func:`generate`) yields one :class:`Message` per *mailbox copy*: an
email a rep sends to a contact with a colleague on Cc is yielded twice, with
the same Message-ID and the very same ``raw`` bytes object, once for the
sender's ``Sent`` folder and once for the colleague's ``INBOX``. That is what
the product's cross-mailbox dedupe has to cope with.

Properties of the stream:

* deterministic for a given ``seed`` and ``now`` (``random.Random`` seeded
  from strings, no hash-order dependence);
* streaming: only the currently open threads are held in memory;
* nearly chronological: thread starts follow a business-hour-biased,
  recency-biased time distribution, replies are merged in by time through a
  heap, so ``Date`` never goes backwards (``internaldate`` of an INBOX copy is
  a few seconds after ``Date``);
* exactly ``n_messages`` copies are yielded; when the budget left cannot hold
  all copies of the next email, a single-copy bulk email is produced instead,
  so a shared email is never yielded to only some of its mailboxes.

``python -m demodata --n 1000`` prints statistics.

Modules: ``model`` (the public shapes), ``vocabulary`` (the words), ``world``
(people and companies), ``clock`` (when mail is sent), ``stream`` (threads,
replies, bulk mail, copies), ``render`` (one email's bytes), ``encoding``
(RFC 2047, folding, quoted-printable, dates), ``hostile`` (malformed samples),
``maildir`` (writing a Maildir++ tree), ``cli`` (``python -m demodata``).
"""

from demodata.cli import main
from demodata.hostile import malformed_messages
from demodata.maildir import write_maildir
from demodata.model import Company, Contact, Corpus, Message, Rep
from demodata.stream import generate

__all__ = [
    "Rep",
    "Company",
    "Contact",
    "Corpus",
    "Message",
    "generate",
    "malformed_messages",
    "write_maildir",
    "main",
]
