"""The generated world's public shapes: reps, companies, contacts, the corpus and one message copy."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from demodata.vocabulary import FREEMAIL_DOMAINS


class Rep(NamedTuple):
    name: str
    email: str


class Company(NamedTuple):
    name: str
    domain: str


class Contact(NamedTuple):
    """A person at a customer company.

    ``company_domain`` is the domain of the company the person works for (the
    ground truth); ``email`` uses that domain, or a free-mail domain
    (gmail.com, outlook.com, ...) for about 10% of contacts.
    """

    name: str
    email: str
    company_domain: str
    title: str
    phone: str

    @property
    def email_domain(self) -> str:
        return self.email.rpartition("@")[2]

    @property
    def is_freemail(self) -> bool:
        return self.email_domain in FREEMAIL_DOMAINS


@dataclass
class Corpus:
    """The invented world the messages are drawn from."""

    org_name: str = "Northwind Analytics"
    internal_domains: list[str] = field(default_factory=lambda: ["northwind.io"])
    reps: list[Rep] = field(default_factory=list)
    companies: list[Company] = field(default_factory=list)
    contacts: list[Contact] = field(default_factory=list)
    admins: list[str] = field(default_factory=list)  # rep emails with the admin role
    account_owner: dict[str, str] = field(default_factory=dict)  # company domain -> rep email
    bulk_senders: list[tuple[str, str]] = field(default_factory=list)  # (name, email)
    seed: int = 1
    days: int = 365
    now: datetime | None = None

    @property
    def rep_emails(self) -> list[str]:
        return [r.email for r in self.reps]

    @property
    def admin_email(self) -> str:
        return self.admins[0] if self.admins else self.reps[0].email

    def is_internal(self, address: str) -> bool:
        return address.rpartition("@")[2].lower() in self.internal_domains

    def company_of(self, contact_email: str) -> Company | None:
        """Ground-truth company of a contact address (also for free-mail contacts)."""
        by_domain = {c.domain: c for c in self.companies}
        for ct in self.contacts:
            if ct.email == contact_email:
                return by_domain.get(ct.company_domain)
        return None


@dataclass(slots=True)
class Message:
    """One copy of an email in one rep's mailbox.

    Copies of the same email share ``message_id`` and the identical ``raw``
    bytes object. ``kind`` is "external" (rep <-> contacts), "internal"
    (between reps only), "bulk" (newsletters, notifications) or "auto"
    (out-of-office auto replies); ``in_reply_to`` is the parent's Message-ID.
    """

    raw: bytes
    mailbox: str
    folder: str
    internaldate: datetime
    message_id: str
    kind: str = "external"
    in_reply_to: str | None = None
