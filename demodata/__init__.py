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
"""
from __future__ import annotations

import argparse
import base64
import binascii
import bisect
import heapq
import math
import os
import random
import sys
import textwrap
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape as _html_escape
from typing import Iterable, Iterator, NamedTuple, Sequence

__all__ = [
    "Rep", "Company", "Contact", "Corpus", "Message",
    "generate", "malformed_messages", "write_maildir", "main",
]

UTC = timezone.utc
CRLF = "\r\n"
CRLF_SP = "\r\n "
CRLF_Q = "\r\n> "
b2a_qp = binascii.b2a_qp


# --------------------------------------------------------------------------
# Public data model
# --------------------------------------------------------------------------

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
    admins: list[str] = field(default_factory=list)          # rep emails with the admin role
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


# --------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------

ORG_NAME = "Northwind Analytics"
ORG_DOMAIN = "northwind.io"
HQ_OFFSET_MIN = -300  # New York, DST ignored

FREEMAIL_DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "hotmail.co.uk",
                    "icloud.com", "gmx.de", "web.de", "proton.me")
_FREEMAIL_WEIGHTS = (40, 20, 12, 6, 8, 5, 4, 5)
_FREEMAIL_MAILER = {"gmail.com": "gmail", "outlook.com": "outlook", "hotmail.co.uk": "outlook",
                    "icloud.com": "apple"}

_REP_POOL = [
    ("Alice Nguyen", "Head of Sales"),
    ("Ben Carter", "Senior Account Executive"),
    ("Priya Raman", "Account Executive"),
    ("Diego Fernández", "Account Executive"),
    ("Hannah Schmidt", "Customer Success Manager"),
    ("Marcus Webb", "Solutions Engineer"),
    ("Olivia Brooks", "Sales Development Rep"),
    ("Kenji Watanabe", "Account Executive"),
    ("Fatima Zahra", "Customer Success Manager"),
    ("Liam O'Brien", "Sales Development Rep"),
    ("Chloé Martin", "Account Executive"),
    ("Tomás Ribeiro", "Solutions Engineer"),
]
_REP_TZ = [-300, -300, -300, -480, 0, -300, -360, -480, 60, 0, 60, -300]
_REP_MAILER = ["gmail", "gmail", "apple", "gmail", "outlook", "thunderbird", "gmail",
               "gmail", "apple", "gmail", "gmail", "outlook"]

_FIRST = [
    "James", "Emma", "Olivia", "Noah", "Sophie", "Lucas", "Mia", "Ethan", "Chloé", "Amelia",
    "Jack", "Isla", "Oliver", "Grace", "Henry", "Ava", "Leo", "Nora", "Felix", "Lena",
    "Jonas", "Anna", "Mateo", "Lucía", "Sofía", "François", "Amélie", "Björn", "Åsa",
    "Łukasz", "Anaïs", "Renée", "Siobhán", "Niamh", "Raj", "Aisha", "Wei", "Mei", "Yuki",
    "Hiroshi", "Omar", "Layla", "Tomás", "Inês", "Dmitri", "Katarzyna", "Eero", "Maëlle",
    "David", "Sarah", "Michael", "Laura", "Daniel", "Rachel", "Tom", "Kate", "Sam",
    "Priyanka", "Arjun", "Chen", "Kwame", "Ngozi", "Lars", "Ingrid", "Pablo", "Carmen",
    "Jürgen", "Eleanor", "Rory", "Zara", "Nikolai", "Beatriz", "Hugo", "Matilda", "Ruth",
]
_LAST = [
    "Smith", "Johnson", "Williams", "Brown", "Taylor", "Wilson", "Davies", "Evans", "Thomas",
    "Roberts", "Müller", "Schneider", "Fischer", "Weber", "Becker", "Álvarez", "García",
    "Martínez", "Fernández", "Núñez", "Østergaard", "Jørgensen", "Lindqvist", "Åkesson",
    "Dubois", "Lefèvre", "Moreau", "Rossi", "Bianchi", "Kowalski", "Wiśniewski", "Dvořák",
    "Novák", "O'Connor", "O'Sullivan", "Ó Briain", "MacLeod", "Patel", "Sharma", "Chen",
    "Wang", "Tanaka", "Sato", "Kim", "Nguyen", "Okafor", "Mensah", "van der Berg", "de Vries",
    "Jansen", "Costa", "Silva", "Santos", "Ivanova", "Petrov", "Cohen", "Haddad", "Murphy",
    "Kelly", "Walsh", "Anderson", "Clark", "Lewis", "Walker", "Hall", "Young", "King",
    "Wright", "Hughes", "Green", "Baker", "Adams", "Nelson", "Mitchell", "Brennan", "Lund",
]
# Names that must exist in every corpus (non-ASCII handling is tested on them).
_FIXED_CONTACTS = [("Zoë Müller", ".de"), ("José Álvarez", ".es"), ("Søren Kierkegaard", ".dk")]

_TITLES = [
    "VP of Sales", "Head of Procurement", "CTO", "CFO", "Operations Manager",
    "Director of Finance", "Head of Data", "IT Manager", "Chief Revenue Officer",
    "Procurement Specialist", "Marketing Director", "Product Manager", "Senior Buyer", "COO",
    "Head of Partnerships", "Data Engineer", "Office Manager", "General Counsel",
    "Founder & CEO", "Revenue Operations Lead", "BI Analyst", "Head of Customer Success",
]

_CO_PREFIX = [
    "Bluefin", "Harbor", "Kestrel", "Pemberton", "Wattle", "Granite", "Lumen", "Cobalt",
    "Tidewater", "Redwood", "Silverline", "Brightpath", "Ironbark", "Meridian", "Oakhurst",
    "Quarry", "Sable", "Juniper", "Vantage", "Fjord", "Alder", "Beacon", "Cinder", "Driftwood",
    "Elmstead", "Foxglove", "Gilded", "Halcyon", "Ivory", "Larkspur", "Marlowe", "Nimbus",
    "Orchid", "Pinnacle", "Quill", "Rookwood", "Saffron", "Thistle", "Umber", "Verdant",
    "Willow", "Yarrow", "Zephyr", "Aurora", "Bramble", "Copperleaf", "Dunmore", "Evergreen",
    "Helix", "Kite", "Mistral", "Nordlicht", "Osprey", "Paragon", "Riverbend", "Stonegate",
    "Tern", "Upland", "Vireo", "Wren", "Atlas", "Basalt", "Corvid", "Delta Rose", "Ember",
]
_CO_SECTOR = [
    "Logistics", "Health", "Robotics", "Foods", "Capital", "Energy", "Labs", "Retail",
    "Software", "Freight", "Pharma", "Insurance", "Media", "Manufacturing", "Biotech",
    "Outdoor", "Telecom", "Systems", "Supply", "Motors", "Textiles", "Hospitality",
    "Learning", "Security", "Aerospace", "Water", "Homes", "Payments", "Dental", "Brewing",
]
# tld, legal suffixes, weight, tz offsets (minutes), phone style, outlook region, language
_TLDS = [
    (".com", ["Inc.", "", "LLC", "Corp."], 34, [-300, -300, -360, -480, -420], "us", "namprd", "en"),
    (".io", ["", "Inc."], 9, [-480, -300, 0, 60], "us", "namprd", "en"),
    (".co.uk", ["Ltd", "plc", "Ltd"], 12, [0], "uk", "eurprd", "en"),
    (".de", ["GmbH", "AG", "SE", "GmbH"], 10, [60], "de", "eurprd", "de"),
    (".com.au", ["Pty Ltd"], 7, [600], "au", "ausprd", "en"),
    (".fr", ["SAS", "SA"], 4, [60], "fr", "eurprd", "en"),
    (".nl", ["B.V."], 4, [60], "nl", "eurprd", "en"),
    (".ca", ["Inc.", "Ltd."], 4, [-300, -480], "us", "namprd", "en"),
    (".ai", ["", "Inc."], 3, [-480, -300], "us", "namprd", "en"),
    (".dk", ["A/S", "ApS"], 3, [60], "dk", "eurprd", "en"),
    (".es", ["S.L.", "S.A."], 3, [60], "es", "eurprd", "en"),
    (".ie", ["Ltd", "DAC"], 3, [0], "uk", "eurprd", "en"),
    (".co", ["", "Inc."], 2, [-300, -480], "us", "namprd", "en"),
    (".ch", ["AG", "GmbH"], 2, [60], "de", "eurprd", "de"),
]
_TLD_BY_NAME = {t[0]: t for t in _TLDS}

_PRODUCTS = ["Northwind Insights", "Pipeline Pro", "the Analytics Suite", "Forecast Studio",
             "Northwind Connect", "the Data Hub"]
_AREAS = ["pipeline", "revenue", "churn", "inventory", "marketing attribution", "finance",
          "ops", "supply chain", "customer health", "sales forecast"]
_WEEKDAY_NAMES = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
_TIMES = ["9:30", "10am", "11:00", "1pm", "2:30pm", "3pm", "4:00", "noon"]
_CITIES = ["London", "Berlin", "Sydney", "Toronto", "Austin", "Dublin", "München", "Zürich",
           "Malmö", "São Paulo"]
_MONTHS_LONG = ["January", "February", "March", "April", "May", "June", "July", "August",
                "September", "October", "November", "December"]

# Subjects. Keys double as body intents.
_SUBJ_OUT = [
    ("pricing", "Pricing for {quarter} rollout", 6),
    ("followup", "Follow-up on our call", 8),
    ("followup", "Following up on {weekday}'s call", 4),
    ("proposal", "Proposal: {product} for {company}", 5),
    ("nextsteps", "{org} <> {company} – next steps", 4),
    ("renewal", "{company} renewal {year}", 4),
    ("demo", "Demo recording + slides", 4),
    ("demo", "Demo of {product} — {weekday} at {time}?", 3),
    ("question", "Quick question about your {area} reporting", 4),
    ("security", "Security questionnaire for {company}", 2),
    ("contract", "Contract redlines v{n}", 3),
    ("onboarding", "Onboarding kickoff – {product}", 3),
    ("checkin", "Checking in", 4),
    ("meeting", "Meeting next week?", 4),
    ("meeting", "Coffee in {city}?", 2),
    ("case", "Case study: how {othercompany} cut reporting time by {pct}%", 2),
    ("pricing", "Updated quote ({seats} seats)", 3),
]
_SUBJ_OUT_DE = [
    ("pricing", "Angebot für {company} – {product}", 3),
    ("meeting", "Termin nächste Woche?", 2),
    ("followup", "Rückfragen zu unserem Gespräch", 2),
]
_SUBJ_IN = [
    ("invoice", "Question about invoice {inv}", 3),
    ("rfq", "Request for quote: {seats} seats", 3),
    ("support", "Issue with the {area} dashboard export", 3),
    ("reschedule", "Can we move our call to {weekday}?", 3),
    ("eval", "Evaluating {product} – a few questions", 3),
    ("question", "Quick question", 2),
    ("rfq", "Pricing request – {company}", 2),
]
_SUBJ_INTERNAL = [
    ("int", "Pipeline review {weekday}", 3),
    ("int", "Handover: {company}", 3),
    ("int", "Can you cover my {weekday} call with {company}?", 3),
    ("int", "Q{q} forecast", 2),
    ("int", "Discount approval for {company} ({pct}%)", 3),
    ("int", "Lunch?", 1),
    ("int", "Team offsite – dates", 1),
    ("int", "Notes from {company} call", 3),
]

_GREET = ["Hi {first},", "Hi {first},", "Hello {first},", "{first},", "Hey {first},",
          "Dear {first},", "Hi {first}!", "Morning {first},"]
_GREET_DE = ["Hallo {first},", "Liebe/r {first},", "Hi {first},"]
_CLOSE = ["Best,", "Thanks,", "Cheers,", "Kind regards,", "Best regards,", "Thanks!", "Talk soon,"]
_CLOSE_DE = ["Viele Grüße,", "Beste Grüße,", "Danke und Grüße,"]

_LINES = {
    "pricing": [
        "As discussed, here is the pricing for the {quarter} rollout of {product}.",
        "For {seats} seats we can do ${price} per seat per year on a 24-month term.",
        "That includes onboarding, SSO and the {area} dashboards your team asked about.",
        "The quote is valid until the end of {month}.",
        "If procurement needs a formal PDF I can send one over today.",
        "Happy to walk your finance team through the numbers on a quick call.",
        "We can also phase the rollout: {seats} seats now and the rest in {quarter}.",
    ],
    "followup": [
        "Thanks again for your time on {weekday}, great to hear how {company} runs {area}.",
        "As promised, I'm sending over the deck and a short summary of what we covered.",
        "Next step on our side is a technical session with your data team.",
        "Could you let me know who else should be in that conversation?",
        "I've also included the case study from {othercompany} we talked about.",
        "Would {weekday} at {time} work for a 30-minute follow-up?",
    ],
    "proposal": [
        "Please find our proposal for {product} attached.",
        "It covers {seats} seats, implementation support and a dedicated CSM.",
        "We priced it at ${price} per seat per year, billed annually.",
        "Let me know if the scope matches what you had in mind.",
        "I'd love to get your feedback before your budget meeting in {month}.",
    ],
    "nextsteps": [
        "Quick recap of where we landed: pilot with {seats} users in {quarter}.",
        "On our side: security review docs and a draft order form by {weekday}.",
        "On your side: confirm the pilot team and the success criteria.",
        "Does that match your notes?",
        "Shout if anything is missing.",
    ],
    "renewal": [
        "Your subscription for {product} renews on {day} {month}.",
        "Usage grew nicely this year – {pct}% more weekly active users than last year.",
        "I'd like to set up 20 minutes to review the renewal and a few new features.",
        "We can keep pricing flat if we sign before the end of {month}.",
    ],
    "demo": [
        "Here is the recording of {weekday}'s demo and the slides.",
        "The part about the {area} dashboards starts around minute 14.",
        "I've also set up a sandbox for your team to try {product}.",
        "Let me know if any questions come up from the wider team.",
        "Would {weekday} at {time} work for the demo?",
    ],
    "question": [
        "Quick question: how does your team currently report on {area}?",
        "We see a lot of teams at your stage stitching spreadsheets together.",
        "If that rings a bell, I'd be happy to show you how {othercompany} solved it.",
        "No pressure either way, just let me know.",
    ],
    "security": [
        "Attached is our completed security questionnaire.",
        "We are SOC 2 Type II certified; the report is available under NDA.",
        "Data is hosted in the EU or US depending on your preference.",
        "Let me know if your security team needs anything else.",
    ],
    "contract": [
        "Attached is v{n} of the contract with our comments on your redlines.",
        "We accepted the changes to the liability cap and the payment terms.",
        "Section 7.2 (data retention) still needs a decision from your legal team.",
        "Could we aim to sign by {weekday}?",
    ],
    "onboarding": [
        "Welcome aboard! We're excited to get {company} started with {product}.",
        "I've scheduled the kickoff for {weekday} at {time} (invite to follow).",
        "Please bring whoever owns your {area} data.",
        "Before the call, it would help to have read-only access to your warehouse.",
    ],
    "checkin": [
        "Just checking in to see how things are going with {product}.",
        "Anything I can help with before the end of the quarter?",
        "We've just shipped scheduled exports, which I think your team asked for.",
        "Let me know if a quick call would be useful.",
    ],
    "meeting": [
        "Would you have 30 minutes next week to catch up?",
        "I'm free {weekday} at {time} or Thursday afternoon.",
        "I'll be in {city} on {weekday} if you'd rather meet in person.",
        "Feel free to suggest another time that works better.",
    ],
    "case": [
        "Thought this might be relevant: {othercompany} cut their reporting time by {pct}%.",
        "They had a very similar setup to yours on the {area} side.",
        "Happy to connect you with their Head of Data if you want to hear it first-hand.",
    ],
    "invoice": [
        "We received invoice {inv} but the PO number is missing.",
        "Could you reissue it with PO {po}?",
        "Our accounts payable team can't process it otherwise.",
        "Thanks for sorting this out.",
    ],
    "rfq": [
        "We're looking at {product} for roughly {seats} users.",
        "Could you send over a quote, including onboarding?",
        "We'd need it by {weekday} for our internal review.",
        "Also, do you offer discounts for multi-year terms?",
    ],
    "support": [
        "Since {weekday} the {area} dashboard export fails with a timeout.",
        "It happens for every date range longer than a month.",
        "Is this a known issue? Our board pack is due on {day} {month}.",
        "Screenshots are below, let me know if you need more details.",
    ],
    "reschedule": [
        "Something came up on my side, could we move our call to {weekday}?",
        "{time} would work best for me, but I'm flexible.",
        "Apologies for the short notice.",
    ],
    "eval": [
        "We're evaluating {product} alongside two other vendors.",
        "How do you handle row-level permissions?",
        "Can we connect more than one warehouse?",
        "And is there an on-premise option?",
        "A short call with a solutions engineer would help.",
    ],
    "reply_contact": [
        "Thanks {first}, this looks good.",
        "Thanks for sending this over.",
        "Let me review with the team and come back to you by {weekday}.",
        "Could you send over the updated quote with {seats} seats?",
        "We're aligned on the scope; procurement will reach out about the contract.",
        "{weekday} at {time} works for me.",
        "Unfortunately {weekday} doesn't work. How about the week after?",
        "One question: does the price include SSO?",
        "I shared the deck internally and the feedback was positive.",
        "Our budget for this is approved for {quarter}.",
        "Can we get a sandbox to test with our own data?",
        "I'll loop in our IT team for the security review.",
        "Sounds great, thanks!",
    ],
    "reply_rep": [
        "Thanks {first}, really appreciate the quick reply.",
        "Great, I've sent a calendar invite for {weekday} at {time}.",
        "Yes, SSO is included in all plans.",
        "Updated quote attached: {seats} seats at ${price} per seat.",
        "I've set up the sandbox; credentials will arrive in a separate email.",
        "No problem at all, {weekday} works.",
        "I'll check with our product team and get back to you today.",
        "Good question: yes, multiple warehouses are supported.",
        "Let me know if there's anything else you need from us.",
        "I've added {colleague} from our solutions team who can help with the technical side.",
    ],
    "intro": [
        "As promised, I'm introducing {colleague}, who leads our solutions team.",
        "{colleague} has helped {othercompany} with a very similar {area} setup.",
        "I'll let you two find a time – {colleague}, over to you!",
        "{first} is {title} at {company} and is looking at options for {area} reporting.",
    ],
    "int": [
        "Can you take a look at the {company} deal before {weekday}?",
        "They're asking for {pct}% off a 2-year term. I think we can justify it.",
        "I'm out on {weekday}; could you cover the call with {company}?",
        "Notes are in the shared doc, the main open point is {area}.",
        "Pipeline for {quarter} looks healthy, but two deals slipped.",
        "Let's sync on this after standup.",
        "FYI: {contact} at {company} mentioned they're also talking to a competitor.",
        "Happy to help, send me the invite.",
        "Sure, I'll take it.",
    ],
}
_LINES_DE = {
    "pricing": [
        "anbei wie besprochen unser Angebot für {product}.",
        "Für {seats} Nutzer liegen wir bei {price} € pro Nutzer und Jahr.",
        "Das Angebot ist bis Ende {month} gültig.",
        "Gerne gehe ich die Details in einem kurzen Telefonat mit Ihnen durch.",
    ],
    "meeting": [
        "hätten Sie nächste Woche 30 Minuten Zeit für ein kurzes Gespräch?",
        "Mir würde {weekday} um {time} gut passen.",
        "Alternativ gerne auch Donnerstagnachmittag.",
    ],
    "followup": [
        "vielen Dank für das Gespräch am {weekday}.",
        "Anbei die Präsentation und eine kurze Zusammenfassung.",
        "Als nächsten Schritt schlage ich einen technischen Termin mit Ihrem Datenteam vor.",
        "Wer sollte aus Ihrer Sicht noch dabei sein?",
    ],
}



def _wrap_templates(pools: dict) -> None:
    """Hard-wrap template sentences like plain-text mailers do (~72 columns once
    the placeholders are filled in), so bodies rarely need QP soft breaks."""
    for key, lines in pools.items():
        pools[key] = [textwrap.fill(ln, width=58, break_long_words=False,
                                    break_on_hyphens=False).replace("\n", "\r\n")
                      for ln in lines]


_wrap_templates(_LINES)
_wrap_templates(_LINES_DE)

_BULK_NEWS = [
    ("SaaS Weekly", "newsletter@saasweekly.com", "mail.saasweekly.com"),
    ("The Revenue Letter", "hello@revenueletter.co", "send.revenueletter.co"),
    ("B2B Growth Digest", "digest@b2bgrowth.io", "em.b2bgrowth.io"),
    ("Pipeline Insider", "news@pipelineinsider.com", "mail.pipelineinsider.com"),
    ("DataOps Monthly", "editors@dataopsmonthly.com", "bounce.dataopsmonthly.com"),
]
_NEWS_TOPICS = [
    "Why forecast accuracy is the new north star", "10 cold email subject lines that still work",
    "The state of RevOps in {year}", "Pricing pages that convert", "What we learned from 500 demos",
    "Webinar: building a data-driven sales team", "Your {month} product update",
    "AI in the sales stack: hype vs. reality", "How to run a QBR your customers enjoy",
]
_BULK_NOTIFY = [
    ("Ledgerly Billing", "no-reply@billing.ledgerly.io", "Your invoice {inv} from Ledgerly is ready"),
    ("CalendarHub", "no-reply@calendarhub.com", "Invitation: {company} <> {org} @ {weekday} {time}"),
    ("SignFlow", "no-reply@signflow.com", "Completed: Order form – {company}"),
    ("Zoomly", "no-reply@zoomly.us", "Cloud recording – {company} sync is now available"),
    ("LinkedOut", "notifications-noreply@linkedout.com", "{contact} viewed your profile"),
    ("Expensio", "no-reply@expensio.com", "Your expense report “{city} trip” was approved"),
    ("DocuDrive", "drive-shares-noreply@docudrive.com", "{contact} shared “{company} – {quarter} plan” with you"),
    ("Statuspage", "no-reply@status.cloudwarehouse.net", "[Resolved] Elevated query latency in eu-west-1"),
]
_NOTIFY_LINES = [
    "This is an automated message, please do not reply.",
    "You are receiving this email because of your account settings.",
    "View it in your browser: https://app.example.net/n/{hex}",
    "Manage notification preferences: https://app.example.net/settings/notifications",
    "Questions? Visit our help center.",
]

_MAILER_UA = {
    "apple": "X-Mailer: Apple Mail (2.3774.500.171.1.1)\r\n",
    "thunderbird": "User-Agent: Mozilla Thunderbird\r\n",
    "generic": "X-Mailer: Roundcube Webmail/1.6.6\r\n",
}

_HTML_QUOTE_OPEN = ('<br>\r\n<div class="gmail_quote">\r\n<div dir="ltr" '
                    'class="gmail_attr">\r\n')
_HTML_QUOTE_MID = ('<br></div>\r\n<blockquote class="gmail_quote"\r\n style="margin:0px 0px 0px'
                   ' 0.8ex;\r\n border-left:1px solid rgb(204,204,204);\r\n padding-left:1ex">\r\n')
_HTML_OUTLOOK_OPEN = ('<html><head>\r\n<meta http-equiv="Content-Type"\r\n content="text/html;'
                      ' charset=utf-8">\r\n</head>\r\n<body>\r\n<div style="font-family:'
                      ' Calibri,\r\n Arial, Helvetica, sans-serif; font-size: 11pt;">\r\n')

_WD = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MON = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------

_TRANSLIT = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "ø": "o", "Ø": "O",
                           "å": "aa", "Å": "Aa", "æ": "ae", "Æ": "Ae", "ł": "l", "Ł": "L",
                           "đ": "d", "þ": "th"})


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
        d = "%s, %s %s %d " % (_WD[tm.tm_wday], ("%02d" % tm.tm_mday) if pad else tm.tm_mday,
                               _MON[tm.tm_mon - 1], tm.tm_year)
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
        return "%s, %s %d, %d at %d:%02d %s" % (_WD[tm.tm_wday], _MON[tm.tm_mon - 1], tm.tm_mday,
                                               tm.tm_year, h, tm.tm_min,
                                               "AM" if tm.tm_hour < 12 else "PM")
    return "%d %s %d, at %02d:%02d" % (tm.tm_mday, _MON[tm.tm_mon - 1], tm.tm_year,
                                       tm.tm_hour, tm.tm_min)


def _wchoice(rng: random.Random, items: Sequence, cum: Sequence[float]):
    return items[bisect.bisect_right(cum, rng.random() * cum[-1])]


def _cum(weights: Iterable[float]) -> list[float]:
    out, s = [], 0.0
    for w in weights:
        s += w
        out.append(s)
    return out


# --------------------------------------------------------------------------
# People
# --------------------------------------------------------------------------

class _FastRandom(random.Random):
    """random.Random with cheap float-based choice/randint/randrange.

    The stdlib versions go through ``_randbelow`` (several Python calls per
    draw); they dominate the generator's profile. The tiny modulo bias of the
    float method is irrelevant here. Still fully deterministic per seed.
    """

    def choice(self, seq):
        return seq[int(self.random() * len(seq))]

    def randint(self, a, b):
        return a + int(self.random() * (b - a + 1))

    def randrange(self, start, stop=None, step=1):
        if stop is None and step == 1:
            return int(self.random() * start)
        return super().randrange(start, stop, step)


class _Person:
    __slots__ = ("name", "email", "first", "domain", "off", "offstr", "mailer", "internal",
                 "sig", "addr", "title", "company", "outlook_srv", "idx", "lang", "from_line",
                 "to_line", "dkim_head", "trace")

    def __init__(self, name, email, title, company, off, mailer, internal, phone, lang="en",
                 display=None, outlook_srv=""):
        self.name = name
        self.email = email
        self.first = name.split(" ")[0]
        self.domain = email.rpartition("@")[2]
        self.off = off
        self.offstr = _offstr(off)
        self.mailer = mailer
        self.internal = internal
        self.title = title
        self.company = company
        self.lang = lang
        self.outlook_srv = outlook_srv
        self.idx = 0
        shown = display if display is not None else name
        if shown:
            self.addr = tuple("%s <%s>" % (_phrase(shown, s), email) for s in (0, 1, 2))
        else:
            self.addr = (email, email, email)
        self.sig = "-- \r\n%s\r\n%s | %s\r\n%s\r\n" % (name, title, company, phone)
        # pre-rendered header pieces (the hot path only concatenates)
        self.from_line = tuple("From: %s\r\n" % a for a in self.addr)
        self.to_line = tuple("To: %s\r\n" % a for a in self.addr)
        dom = self.domain
        self.dkim_head = ("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=%s;\r\n"
                          "        s=%s; t=" % (dom, "google" if dom == ORG_DOMAIN else "selector1"))
        self.trace = ("Return-Path: <" + email + ">\r\nReceived: from mail-" + dom + " (mail-" + dom
                      + " [%s])\r\n        by mx.northwind.io with ESMTPS id %s\r\n"
                      "        (version=TLS1_3 cipher=TLS_AES_256_GCM_SHA384);\r\n        %s\r\n"
                      "Authentication-Results: mx.northwind.io;\r\n       dkim=pass header.d="
                      + dom + ";\r\n       spf=pass (domain of " + email + " designates %s as"
                      " permitted sender) smtp.mailfrom=" + email + ";\r\n       dmarc=pass"
                      " header.from=" + dom + "\r\n")


class _Clock:
    """Maps a fraction u in [0, 1) to a UTC timestamp, monotonically.

    Density: 55% uniform over the window plus 45% exponential with a mean of
    ~18 days back from ``now``; weekends at 12%; hours weighted by business
    hours at HQ (UTC-5).
    """
    HW = (0.3, 0.2, 0.15, 0.15, 0.2, 0.4, 1.0, 2.5, 5.0, 8.0, 9.0, 9.0,
          7.5, 8.0, 9.0, 8.5, 7.0, 5.0, 3.0, 2.2, 1.8, 1.4, 1.0, 0.6)

    def __init__(self, now_ts: float, days: int, hq_off_min: int = HQ_OFFSET_MIN):
        off = hq_off_min * 60
        self.HC = _cum(self.HW)
        ht = self.HC[-1]
        local_now = now_ts + off
        local_start = local_now - days * 86400  # the window is exactly [now - days, now]
        today0 = local_now - (local_now % 86400)
        recency = min(18.0, max(days / 4.0, 1.0))
        starts, weights, hmin, hmax = [], [], [], []
        for age in range(days, -1, -1):
            start_local = today0 - age * 86400
            lo = 0.0
            hi = ht
            if start_local < local_start:   # oldest, partial day
                lo = self._hcum(local_start - start_local)
            if age == 0:                    # today, up to now
                hi = self._hcum(local_now - today0)
            if hi - lo <= 0:
                continue
            w = 0.55 / days + 0.45 * math.exp(-(age + 0.5) / recency) / recency
            if time.gmtime(start_local).tm_wday >= 5:
                w *= 0.12
            starts.append(start_local - off)
            weights.append(w * (hi - lo) / ht)
            hmin.append(lo)
            hmax.append(hi)
        self.starts, self.weights, self.hmin, self.hmax = starts, weights, hmin, hmax
        self.C = _cum(weights)
        self.total = self.C[-1]
        self.now_ts = now_ts
        self.start_ts = now_ts - days * 86400

    def _hcum(self, secs: float) -> float:
        h = int(secs // 3600)
        if h >= 24:
            return self.HC[-1]
        return (self.HC[h - 1] if h else 0.0) + self.HW[h] * (secs - h * 3600) / 3600.0

    def at(self, u: float) -> float:
        x = u * self.total
        C = self.C
        k = bisect.bisect_right(C, x)
        if k >= len(C):
            k = len(C) - 1
        prev = C[k - 1] if k else 0.0
        f = (x - prev) / self.weights[k]
        f = 0.0 if f < 0 else (0.999999 if f >= 1 else f)
        lo = self.hmin[k]
        target = lo + f * (self.hmax[k] - lo)
        HC = self.HC
        h = bisect.bisect_right(HC, target)
        if h > 23:
            h = 23
        hprev = HC[h - 1] if h else 0.0
        within = (target - hprev) / self.HW[h]
        within = 0.0 if within < 0 else (0.999999 if within >= 1 else within)
        t = self.starts[k] + (h + within) * 3600.0
        if t >= self.now_ts:
            return self.now_ts - 1
        return t if t >= self.start_ts else self.start_ts


def _business_hours(rng: random.Random, ts: float, off_min: int) -> float:
    """Push a reply sent at night or on a weekend to the next working morning (mostly)."""
    local = ts + off_min * 60
    tm = time.gmtime(local)
    if 7 <= tm.tm_hour < 20 and tm.tm_wday < 5:
        return ts
    if rng.random() < 0.15:  # some people do answer at night
        return ts
    day0 = local - (local % 86400)
    if tm.tm_hour >= 7 or tm.tm_wday >= 5:
        day0 += 86400
    while time.gmtime(day0).tm_wday >= 5:
        day0 += 86400
    return day0 + (8 * 3600 + rng.random() * 2.5 * 3600) - off_min * 60


# --------------------------------------------------------------------------
# Corpus construction
# --------------------------------------------------------------------------

def _build_world(seed: int, n_reps: int, companies, days: int, now: datetime):
    rng = random.Random("mailgen-corpus:%s" % seed)
    org_domain = ORG_DOMAIN

    # reps
    reps: list[_Person] = []
    used_local: set[str] = set()
    pool = list(_REP_POOL)
    for i in range(n_reps):
        if i < len(pool):
            name, title = pool[i]
        else:
            while True:
                name = "%s %s" % (rng.choice(_FIRST), rng.choice(_LAST))
                if all(name != r.name for r in reps):
                    break
            title = rng.choice(["Account Executive", "Sales Development Rep",
                                "Customer Success Manager", "Solutions Engineer"])
        first = _ascii_slug(name.split(" ")[0])
        local = first
        if local in used_local:
            local = first + "." + _ascii_slug(name.split(" ", 1)[1])
        n = 2
        while local in used_local:
            local = "%s%d" % (first, n)
            n += 1
        used_local.add(local)
        reps.append(_Person(name, "%s@%s" % (local, org_domain), title, ORG_NAME,
                            _REP_TZ[i % len(_REP_TZ)], _REP_MAILER[i % len(_REP_MAILER)], True,
                            "+1 (646) 555-01%02d" % (10 + i % 90)))

    # companies
    tld_items = [t[0] for t in _TLDS]
    tld_cum = _cum(t[2] for t in _TLDS)
    comp_rows: list[tuple[str, str, str]] = []  # name, domain, tld
    if companies is None:
        companies = 40
    if isinstance(companies, int):
        used_domains: set[str] = set()
        used_names: set[str] = set()
        attempts = 0
        # every corpus has these TLDs (the first companies get one each)
        forced = [".com", ".co.uk", ".de", ".io", ".com.au", ".es", ".dk"]
        while len(comp_rows) < companies:
            attempts += 1
            if len(comp_rows) < len(forced):
                tld = forced[len(comp_rows)]
            else:
                tld = _wchoice(rng, tld_items, tld_cum)
            meta = _TLD_BY_NAME[tld]
            suffix = rng.choice(meta[1])
            if rng.random() < 0.12:
                a, b = rng.sample(_LAST[:20] + _LAST[35:], 2)
                base = "%s & %s" % (a, b)
                suffix = {"": "", "Inc.": "LLP", "LLC": "LLP", "Corp.": "LLP"}.get(suffix, suffix)
                dom = _ascii_slug(a) + _ascii_slug(b)
            else:
                p, s = rng.choice(_CO_PREFIX), rng.choice(_CO_SECTOR)
                base = "%s %s" % (p, s)
                r = rng.random()
                if tld in (".io", ".ai", ".co") and r < 0.6:
                    dom = _ascii_slug(p)
                elif r < 0.3:
                    dom = _ascii_slug(p) + "-" + _ascii_slug(s)
                else:
                    dom = _ascii_slug(p) + _ascii_slug(s)
            domain = dom + tld
            if attempts > 30:  # name space getting crowded (thousands of companies)
                domain = "%s%d%s" % (dom, len(comp_rows), tld)
                base = "%s %d" % (base, len(comp_rows))
            if domain in used_domains or base in used_names:
                continue
            attempts = 0
            used_domains.add(domain)
            used_names.add(base)
            name = base + (" " + suffix if suffix else "")
            comp_rows.append((name, domain, tld))
        rng.shuffle(comp_rows)
    else:
        for name, domain in companies:
            tld = next((t for t in sorted(tld_items, key=len, reverse=True) if domain.endswith(t)),
                       ".com")
            comp_rows.append((name, domain, tld))
    if not comp_rows:
        raise ValueError("at least one company is required")

    # per company: mail system, timezone, outlook tenant, owner rep
    company_meta = []
    for ci, (cname, domain, tld) in enumerate(comp_rows):
        meta = _TLD_BY_NAME.get(tld, _TLDS[0])
        system = rng.choices(["outlook", "gmail", "apple", "generic"], [45, 38, 7, 10])[0]
        srv = "%s%02dMB%04d" % (rng.choice(["DM6PR", "BN7PR", "CH2PR", "SA1PR", "AM0PR", "DB9PR",
                                            "PA4PR", "SY4PR", "LO2P", "MW4PR"]),
                                rng.randint(1, 19), rng.randint(1000, 9999))
        outlook_host = "%s.%s%02d.prod.outlook.com" % (srv, meta[5], rng.randint(1, 12))
        company_meta.append({
            "system": system, "off": rng.choice(meta[3]), "phone": meta[4],
            "outlook": (srv, outlook_host), "lang": meta[6],
            "owner": reps[ci % len(reps)] if len(reps) < 3 else reps[(ci % (len(reps) - 1)) + 1],
        })

    # contacts
    freemail_cum = _cum(_FREEMAIL_WEIGHTS)
    contacts_by_company: list[list[_Person]] = [[] for _ in comp_rows]
    contacts: list[_Person] = []
    contact_rows: list[Contact] = []
    used_emails: set[str] = set(r.email for r in reps)

    fixed_for: dict[int, list[str]] = {}
    taken: set[int] = set()
    for fname, pref_tld in _FIXED_CONTACTS:
        cands = [i for i, row in enumerate(comp_rows) if row[2] == pref_tld and i not in taken]
        if not cands:
            cands = [i for i in range(len(comp_rows)) if i not in taken] or [0]
        ci = cands[0]
        taken.add(ci)
        fixed_for.setdefault(ci, []).append(fname)

    def phone_for(style: str) -> str:
        if style == "uk":
            return "+44 20 7946 0%03d" % rng.randint(0, 999)
        if style == "de":
            return "+49 30 %d %d" % (rng.randint(1000, 9999), rng.randint(100, 999))
        if style == "au":
            return "+61 2 5550 %04d" % rng.randint(0, 9999)
        if style == "fr":
            return "+33 1 99 00 %02d %02d" % (rng.randint(0, 99), rng.randint(0, 99))
        if style == "nl":
            return "+31 20 %03d %04d" % (rng.randint(100, 999), rng.randint(0, 9999))
        if style == "dk":
            return "+45 %02d %02d %02d %02d" % tuple(rng.randint(10, 99) for _ in range(4))
        if style == "es":
            return "+34 91 %03d %02d %02d" % (rng.randint(100, 999), rng.randint(0, 99),
                                               rng.randint(0, 99))
        return "+1 (%d) 555-01%02d" % (rng.choice([212, 415, 617, 312, 512, 206, 303, 646]),
                                        rng.randint(0, 99))

    for ci, (cname, domain, tld) in enumerate(comp_rows):
        meta = company_meta[ci]
        k = rng.choice([2, 2, 3, 3, 3, 4, 4, 5, 6])
        names = list(fixed_for.get(ci, []))
        while len(names) < k:
            nm = "%s %s" % (rng.choice(_FIRST), rng.choice(_LAST))
            if nm not in names:
                names.append(nm)
        for j, name in enumerate(names):
            first, _, last = name.partition(" ")
            f, l = _ascii_slug(first), _ascii_slug(last)
            freemail = (j > 0 or ci not in fixed_for) and rng.random() < 0.10
            if freemail:
                dom = _wchoice(rng, FREEMAIL_DOMAINS, freemail_cum)
                local = rng.choice(["%s.%s", "%s%s", "%s_%s"]) % (f, l)
                if rng.random() < 0.6:
                    local += str(rng.randint(1, 99))
                mailer = _FREEMAIL_MAILER.get(dom, "generic")
            else:
                dom = domain
                r = rng.random()
                if r < 0.55:
                    local = "%s.%s" % (f, l)
                elif r < 0.75:
                    local = f[0] + l
                elif r < 0.85:
                    local = f
                elif r < 0.92:
                    local = "%s_%s" % (f, l)
                else:
                    local = f + l[0]
                mailer = meta["system"]
                if rng.random() < 0.12:
                    mailer = rng.choice(["apple", "thunderbird"])
            email = "%s@%s" % (local, dom)
            n = 2
            while email in used_emails:
                email = "%s%d@%s" % (local, n, dom)
                n += 1
            used_emails.add(email)
            title = rng.choice(_TITLES)
            phone = phone_for(meta["phone"])
            display = name
            r = rng.random()
            if mailer == "outlook" and r < 0.15 and last:
                display = "%s, %s" % (last, first)
            elif r < 0.04:
                display = ""  # bare address, no display name
            p = _Person(name, email, title, cname, meta["off"], mailer, False, phone,
                        lang=meta["lang"], display=display, outlook_srv=meta["outlook"])
            p.idx = ci
            contacts_by_company[ci].append(p)
            contacts.append(p)
            contact_rows.append(Contact(name, email, domain, title, phone))

    for r_ in reps:
        r_.outlook_srv = ("DM6PR04MB%04d" % rng.randint(1000, 9999),
                          "DM6PR04MB%04d.namprd04.prod.outlook.com" % rng.randint(1000, 9999))

    corpus = Corpus(
        org_name=ORG_NAME,
        internal_domains=[org_domain],
        reps=[Rep(r.name, r.email) for r in reps],
        companies=[Company(n, d) for n, d, _ in comp_rows],
        contacts=contact_rows,
        admins=[reps[0].email],
        account_owner={comp_rows[i][1]: company_meta[i]["owner"].email for i in range(len(comp_rows))},
        bulk_senders=[(n, e) for n, e, _ in _BULK_NEWS] + [(n, e) for n, e, _ in _BULK_NOTIFY],
        seed=seed, days=days, now=now,
    )
    return corpus, reps, comp_rows, company_meta, contacts_by_company


# --------------------------------------------------------------------------
# The stream
# --------------------------------------------------------------------------

class _Thread:
    __slots__ = ("kind", "subject", "subject_key", "ctx", "ids", "last_sender", "last_to",
                 "last_cc", "last_ts", "last_text", "rounds", "max_rounds", "rep", "contact",
                 "cc_contact", "cc_colleague", "company", "ooo_done", "lang")


_ROUNDS = [1] * 35 + [2] * 28 + [3] * 17 + [4] * 10 + [5] * 5 + [6, 6, 7, 8, 9]


class _Generator:
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
        (self.corpus, self.reps, self.comp_rows, self.company_meta,
         self.contacts_by_company) = _build_world(seed, n_reps, companies, days, now)
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
                f"         {b[183:253]}\r\n         {b[253:323]}\r\n         {b[323:377]}==\r\n")
        self._make_ctx_pool()
        self.recent_ext: list[tuple] = []  # ring buffer for forwards
        self.bulk_people = {}
        for n_, e_, host in _BULK_NEWS:
            self.bulk_people[e_] = (_Person(n_, e_, "", n_, 0, "bulk", False, ""), host)
        for n_, e_, _ in _BULK_NOTIFY:
            self.bulk_people[e_] = (_Person(n_, e_, "", n_, 0, "bulk", False, ""), None)

    # ---- ids, dates, encodings -------------------------------------------

    def _idbytes(self, n: int) -> bytes:
        self.seq += 1
        # random bytes + a bijective scramble of the sequence number: unique, random-looking
        return self.rng.getrandbits(8 * (n - 4)).to_bytes(n - 4, "big") + \
            ((self.seq * 0x9E3779B1) & 0xFFFFFFFF).to_bytes(4, "big")

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
                        pre, subject_ = p, subject[len(p):]
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
        return self.b64pool[off:off + n]

    def _hex(self, n: int) -> str:
        off = int(self.rng.random() * (len(self.hexpool) - n))
        return self.hexpool[off:off + n]

    # ---- bodies ------------------------------------------------------------

    def _make_ctx_pool(self) -> None:
        """Pre-draw the per-thread placeholder values (a thread copies one of these)."""
        rng = self.rng
        shorts = []
        for cname, _, _ in self.comp_rows:
            short = cname
            for suf in (" Inc.", " LLC", " Corp.", " Ltd", " plc", " GmbH", " AG", " SE",
                        " Pty Ltd", " SAS", " SA", " B.V.", " Ltd.", " A/S", " ApS", " S.L.",
                        " S.A.", " DAC", " LLP"):
                if short.endswith(suf):
                    short = short[: -len(suf)]
                    break
            shorts.append(short)
        self.short_names = shorts
        pool = []
        for _ in range(512):
            q = rng.randint(1, 4)
            pool.append({
                "company": "", "org": "Northwind", "product": rng.choice(_PRODUCTS),
                "quarter": "Q%d" % q, "q": str(q), "year": str(self.now.year),
                "seats": str(rng.choice([10, 15, 20, 25, 40, 50, 75, 100, 150, 250])),
                "price": str(rng.choice([180, 240, 290, 320, 360, 420])),
                "pct": str(rng.choice([10, 12, 15, 20, 25, 30, 40])),
                "n": str(rng.randint(2, 5)), "inv": "INV-%05d" % rng.randint(1000, 99999),
                "po": "PO-%06d" % rng.randint(100000, 999999), "area": rng.choice(_AREAS),
                "month": rng.choice(_MONTHS_LONG), "day": str(rng.randint(1, 28)),
                "othercompany": "", "weekday": rng.choice(_WEEKDAY_NAMES),
                "time": rng.choice(_TIMES), "city": rng.choice(_CITIES), "first": "", "me": "",
                "colleague": "", "contact": "", "title": "", "cfirst": "",
                "hex": "%016x" % rng.getrandbits(64),
            })
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

    def _text(self, intent: str, ctx: dict, sender: _Person, recipient_first: str,
              lang: str, signature: bool, first_msg: bool, insert: str = "") -> str:
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
            body = "\r\n".join(pool[start:start + 2]) + "\r\n\r\n" + \
                "\r\n".join(pool[start + 2:start + k])
        else:
            body = "\r\n".join(pool[start:start + k])
        text = (greet[int(rnd() * len(greet))] + "\r\n\r\n" + body + "\r\n\r\n"
                + close[int(rnd() * len(close))]).format_map(ctx)
        if insert:
            i = text.index("\r\n\r\n") + 4
            text = text[:i] + insert + "\r\n" + text[i:]
        if signature:
            return text + "\r\n" + sender.first + "\r\n" + sender.sig
        if rnd() < 0.05:
            return text + "\r\n" + sender.first + "\r\n\r\nSent from my iPhone"
        return text + "\r\n" + sender.first

    # ---- MIME assembly -----------------------------------------------------

    def _assemble(self, sender: _Person, to: list[_Person], cc: list[_Person], subject: str,
                  ts: int, mid: str, irt: str | None, refs: list[str], text: str,
                  quote: tuple | None, extra: str = "", inbound_trace: bool = False,
                  html_extra: str = "") -> bytes:
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
            head = [sender.trace % (ip, f"{dkim[-12:-6]}{ts % 99991:x}", date, ip),
                    sender.dkim_head, str(ts), dkim]
        else:
            head = [sender.dkim_head, str(ts), dkim]
        if m == "apple":
            head.append("Content-Type: text/plain; charset=utf-8\r\n"
                        "Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3774.500.171.1.1\\))\r\n")
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
        head.append(to[0].to_line[pst] if len(to) == 1 else
                    f"To: {_fold_addrs(4, [p.addr[pst] for p in to])}\r\n")
        if cc:
            head.append(f"Cc: {_fold_addrs(4, [p.addr[pst] for p in cc])}\r\n")
        if m == "outlook":
            topic = subject[4:] if subject.startswith(("Re: ", "RE: ")) else subject
            head.append(f"Thread-Topic: {self._subject_hdr(topic, 0)}\r\n"
                        f"Thread-Index: {self._b64(30)}==\r\nX-MS-Has-Attach: \r\n"
                        "X-MS-TNEF-Correlator: \r\nContent-Language: en-US\r\n")
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
                attr = (f"From: {q_sender.name} <{q_sender.email}>\r\n"
                        f"Sent: {_quote_date(q_ts, sender.off, 'x')}\r\nSubject: {q_subject}")
                full = (f"{text}\r\n\r\n________________________________\r\n{attr}\r\n\r\n"
                        f"{q_text}\r\n")
            else:
                attr = (f"On {_quote_date(q_ts, sender.off, 'gmail' if m == 'gmail' else 'x')}"
                        f" {q_sender.name} <{q_sender.email}> wrote:")
                full = f"{text}\r\n\r\n{attr}\r\n\r\n> {q_text.replace(CRLF, CRLF_Q)}\r\n"
        else:
            full = text + "\r\n"
        # About 45% of mail is multipart/alternative: HTML-composing clients
        # (Gmail, Outlook in their default mode), newsletters; the rest is
        # plain text (plain-text mode, Apple Mail, Thunderbird, web mail).
        if (m == "bulk" and (extra[:4] == "List" or rnd() < 0.5)) or \
                (m == "gmail" and rnd() < 0.55) or (m == "outlook" and rnd() < 0.6) or \
                (m == "generic" and rnd() < 0.2):
            if m == "gmail":
                bnd = "000000000000" + self._hex(14)
            elif m == "outlook":
                bnd = f"_000_{self._hex(24).upper()}_"
            else:
                bnd = f"----=_Part_{int(rnd() * 90000) + 10000}_{self._hex(8)}.{ts}"
            html = _html_escape(text, False).replace("\r\n", "<br>\r\n")
            if quote is not None:
                html += (_HTML_QUOTE_OPEN
                         + _html_escape(attr.replace(" <", "\r\n<"), False).replace("\r\n", "<br>\r\n")
                         + _HTML_QUOTE_MID
                         + _html_escape(q_text, False).replace("\r\n", "<br>\r\n")
                         + "\r\n</blockquote></div>")
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
            head.append(f'Content-Type: multipart/alternative;\r\n\tboundary="{bnd}"\r\n\r\n'
                        f'--{bnd}\r\nContent-Type: text/plain; charset="UTF-8"\r\n'
                        f"Content-Transfer-Encoding: {cte1}\r\n\r\n")
            return b"".join((
                "".join(head).encode("ascii"),
                p1,
                f'\r\n--{bnd}\r\nContent-Type: text/html; charset="UTF-8"\r\n'
                f"Content-Transfer-Encoding: {cte2}\r\n\r\n".encode("ascii"),
                p2,
                f"\r\n--{bnd}--\r\n".encode("ascii"),
            ))
        data = full.encode()
        if m == "thunderbird":
            head.append("Content-Type: text/plain; charset=UTF-8; format=flowed\r\n"
                        "Content-Transfer-Encoding: 7bit\r\n\r\n" if data.isascii() else
                        "Content-Type: text/plain; charset=UTF-8; format=flowed\r\n"
                        "Content-Transfer-Encoding: 8bit\r\n\r\n")
        elif m == "apple" or rnd() < 0.5:
            head.append("Content-Transfer-Encoding: quoted-printable\r\n\r\n" if m == "apple" else
                        "Content-Type: text/plain; charset=utf-8\r\n"
                        "Content-Transfer-Encoding: quoted-printable\r\n\r\n")
            data = _qp(full)
        else:
            head.append("Content-Type: text/plain; charset=utf-8\r\n"
                        "Content-Transfer-Encoding: 7bit\r\n\r\n" if data.isascii() else
                        "Content-Type: text/plain; charset=utf-8\r\n"
                        "Content-Transfer-Encoding: 8bit\r\n\r\n")
        return "".join(head).encode("ascii") + data

    def _rand(self, n: int) -> bytes:
        return self.rng.getrandbits(8 * n).to_bytes(n, "big")

    # ---- copies ------------------------------------------------------------

    def _copies(self, raw: bytes, mid: str, sender: _Person, rcpts: list[_Person], ts: int,
                kind: str, irt: str | None) -> list[Message]:
        rnd = self.rng.random
        out = []
        if sender.internal:
            out.append(Message(raw, sender.email, "Sent", datetime.fromtimestamp(ts, UTC), mid,
                               kind, irt))
            seen = [sender.email]
        else:
            seen = []
        for p in rcpts:
            if p.internal and p.email not in seen:
                seen.append(p.email)
                its = ts + 1 + int(rnd() * 90)
                if its > self.now_ts:
                    its = self.now_ts
                out.append(Message(raw, p.email, "Archive" if rnd() < 0.04 else "INBOX",
                                   datetime.fromtimestamp(its, UTC), mid, kind, irt))
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
                    self.bulk_people[key] = (_Person(cname, key, "", cname, 0, "bulk", False, ""),
                                             "email." + domain)
                sender, lu_host = self.bulk_people[key]
                tm = time.gmtime(ts)
                subject = "%s Newsletter – %s %d" % (self.short_names[ci],
                                                     _MONTHS_LONG[tm.tm_mon - 1], tm.tm_year)
            else:
                n_, e_, _ = _BULK_NEWS[rng.randrange(len(_BULK_NEWS))]
                sender, lu_host = self.bulk_people[e_]
                subject = "%s #%d: %s" % (n_, rng.randint(40, 320),
                                          rng.choice(_NEWS_TOPICS).format_map(ctx))
            token = self._hex(24)
            extra = ("List-Unsubscribe: <mailto:unsubscribe-%s@%s>,\r\n <https://%s/u/%s>\r\n"
                     "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
                     "List-Id: %s <newsletter.%s>\r\nPrecedence: bulk\r\n"
                     "X-Campaign-Id: %d\r\nFeedback-ID: %d:newsletter:esp\r\n" % (
                         token, lu_host, lu_host, token, _phrase(sender.name, 0),
                         sender.domain, rng.randint(10000, 99999), rng.randint(100, 999)))
            text = ("Hi %s,\r\n\r\nThis week:\r\n%s.\r\nRead the full story on our blog:\r\n"
                    "https://%s/p/%s\r\nPlus: three short reads picked by our editors.\r\n\r\n"
                    "You're receiving this because you subscribed at\r\n%s.\r\n"
                    "Unsubscribe: https://%s/u/%s" % (
                        rep.first, subject.split(": ", 1)[-1], sender.domain, token[:10],
                        sender.domain, lu_host, token))
            html_extra = ('\r\n<table width="100%%" cellpadding="0" cellspacing="0">\r\n'
                          '<tr><td style="padding:24px;\r\nfont-family:Helvetica,Arial,sans-serif">'
                          '\r\n<a href="https://%s/p/%s">\r\nRead more</a></td></tr></table>\r\n'
                          '<p style="font-size:11px;color:#888">\r\n'
                          '<a href="https://%s/u/%s">\r\nUnsubscribe</a></p>' % (
                              sender.domain, token[:10], lu_host, token))
        else:  # notification
            n_, e_, subj_t = _BULK_NOTIFY[rng.randrange(len(_BULK_NOTIFY))]
            sender = self.bulk_people[e_][0]
            subject = subj_t.format_map(ctx)
            text = "Hello %s,\r\n\r\n%s.\r\n%s\r\n\r\n%s\r\n\r\nThe %s team" % (
                rep.first, subject, rng.choice(_NOTIFY_LINES).format_map(ctx),
                rng.choice(_NOTIFY_LINES).format_map(ctx), n_)
            html_extra = ""
            extra = "Auto-Submitted: auto-generated\r\nX-Auto-Response-Suppress: All\r\n"
            if rng.random() < 0.3:
                extra += "Precedence: bulk\r\n"
        self.seq += 1
        mid = "<%s.%x.%d@%s>" % (self._hex(20), self.seq, ts, lu_host or ("mail." + sender.domain))
        raw = self._assemble(sender, [rep], [], subject, ts, mid, None, [], text, None,
                             extra=extra, inbound_trace=True, html_extra=html_extra)
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
        raw = self._assemble(sender, to, cc, th.subject, ts, mid, None, [], text, None,
                             inbound_trace=not sender.internal)
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
        others = [p for p in self.reps if p is not sender and p not in insiders] or \
            [p for p in self.reps if p is not sender]
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
            text = ("%s,\r\n\r\nFYI, see below. Can you take this one?\r\n\r\n%s\r\n\r\n"
                    "---------- Forwarded message ---------\r\nFrom: %s <%s>\r\nDate: %s\r\n"
                    "Subject: %s\r\nTo: %s\r\n\r\n%s" % (
                        to[0].first, sender.first, f_sender.name, f_sender.email,
                        _quote_date(f_ts, sender.off, "gmail"), f_subj,
                        ", ".join("%s <%s>" % (p.name, p.email) for p in f_to), f_text))
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
                delay = 300 + rnd() * 3300            # within the hour
            elif r < 0.7:
                delay = 3600 + rnd() * 7 * 3600       # same day
            elif r < 0.95:
                delay = 86400 + rnd() * 2 * 86400     # a day or two
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
        if (th.kind == "external" and not replier.internal and not th.ooo_done
                and prev_sender.internal and rnd() < 0.04):
            th.ooo_done = True
            if self._n_copies(replier, [prev_sender]) > budget:
                return self._bulk(ts)
            mid = self._message_id(replier)
            text = ("Thank you for your email.\r\n\r\nI am out of the office until %s %s with"
                    " limited access to email.\r\nFor urgent matters please contact our office."
                    "\r\n\r\n%s" % (th.ctx["month"], th.ctx["day"], replier.name))
            refs = th.ids if len(th.ids) <= 10 else th.ids[:1] + th.ids[-9:]
            raw = self._assemble(replier, [prev_sender], [], "Automatic reply: " + th.subject, ts,
                                 mid, parent, refs, text, None,
                                 extra="Auto-Submitted: auto-replied\r\n"
                                       "X-Auto-Response-Suppress: All\r\n",
                                 inbound_trace=True)
            self._schedule(th, ts, delay=2 * 86400 + rnd() * 4 * 86400)
            return self._copies(raw, mid, replier, [prev_sender], ts, "auto", parent)

        to = [prev_sender]
        cc = [p for p in th.last_to + th.last_cc if p is not replier and p is not prev_sender]
        if cc and rnd() < 0.1:
            cc = []  # "reply" instead of "reply all"
        insert = ""
        if (th.kind == "external" and not replier.internal and th.cc_contact is None
                and rnd() < 0.08):
            others = [p for p in self.contacts_by_company[th.company]
                      if p is not replier and p is not th.contact]
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
        text = self._text(intent, th.ctx, replier, prev_sender.first, th.lang, rnd() < 0.3,
                          False, insert)
        base = th.subject
        if base.startswith(("Re: ", "RE: ")):
            subject = base
        else:
            subject = ("RE: " if replier.mailer == "outlook" else "Re: ") + base
        mid = self._message_id(replier)
        ids = th.ids
        refs = ids if len(ids) <= 10 else ids[:1] + ids[-9:]
        quote = (prev_sender, th.last_ts, th.last_text, th.subject) if rnd() < 0.65 else None
        raw = self._assemble(replier, to, cc, subject, ts, mid, parent, refs, text, quote,
                             inbound_trace=not replier.internal)
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


def generate(seed: int = 1, n_messages: int = 2000, reps: int = 6, companies=None,
             days: int = 365, now: datetime | None = None) -> tuple[Corpus, Iterator[Message]]:
    """Build the world and return ``(corpus, iterator of Message)``.

    ``n_messages`` is the exact number of mailbox copies yielded. ``companies``
    is a count (default 40) or a sequence of ``(name, domain)`` pairs.
    ``now`` (aware, or naive meaning UTC) ends the time window; ``None`` means
    today at 00:00 UTC, so pass it explicitly for output that is
    byte-for-byte reproducible across days. The iterator is lazy.
    """
    g = _Generator(seed, n_messages, reps, companies, days, now)
    return g.corpus, g.stream()


# --------------------------------------------------------------------------
# Hostile samples
# --------------------------------------------------------------------------

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
    add("garbage_date", msg(base_from, base_to, "Date: sometime last tuesday-ish, around noon",
                            mid(4), "Subject: garbage date"))
    add("out_of_range_date", msg(base_from, base_to, "Date: Mon, 32 Foo 99999 25:61:61 +9999",
                                 mid(5), "Subject: impossible date"))
    add("date_without_timezone", msg(base_from, base_to, "Date: 2025-03-04 14:02:11", mid(6),
                                     "Subject: iso date"))
    add("from_not_an_address", msg("From: not an address", base_to, base_date, mid(7),
                                    "Subject: bad from"))
    add("from_double_at", msg("From: a@@b", base_to, base_date, mid(8), "Subject: a@@b"))
    add("from_empty_angle", msg("From: <>", base_to, base_date, mid(9), "Subject: null sender"))
    add("to_invalid_mixed", msg(base_from, 'To: "Broken" <@nowhere>, ,, a@@b, plain words, '
                                '<>, good@bluefin.de', base_date, mid(10), "Subject: bad to"))
    add("unicode_local_part", msg('From: Jürgen <jürgen@bücher.de>', 'To: δοκιμή@παράδειγμα.δοκιμή',
                                  base_date, mid(11), "Subject: SMTPUTF8 addresses"))
    add("encoded_word_in_address", msg("From: =?utf-8?q?ben=40northwind.io?=", base_to, base_date,
                                       mid(12), "Subject: encoded-word where an address belongs"))
    add("bad_charset", msg(base_from, base_to, base_date, mid(13), "Subject: bad charset",
                           "MIME-Version: 1.0", "Content-Type: text/plain; charset=x-unknown",
                           "Content-Transfer-Encoding: 8bit", body="")
        + "Gr\xfc\xdfe aus M\xfcnchen \u2013 caf\xe9\r\n".encode("utf-8") + b"\xff\xfe latin1: \xe9t\xe9\r\n")
    add("eight_bit_header_bytes", b"From: J\xe9r\xf4me <jerome@bluefin.fr>\r\n" + base_to.encode()
        + b"\r\n" + base_date.encode() + b"\r\n" + mid(14).encode()
        + b"\r\nSubject: R\xe9union \xe0 Paris \xff\xfe\r\n\r\nBonjour.\r\n")
    add("utf8_raw_header", msg("From: Zoë Müller <zoe.mueller@bluefin.de>", base_to, base_date,
                               mid(15), "Subject: Grüße – unencoded UTF-8"))
    add("rfc2047_invalid_base64", msg("From: =?utf-8?b?!!!not*base64###?= <x@bluefin.de>", base_to,
                                      base_date, mid(16), "Subject: =?utf-8?b?SGVsbG8gV29y?= "
                                      "=?utf-8?b?%%%===?="))
    add("rfc2047_unknown_charset", msg(base_from, base_to, base_date, mid(17),
                                       "Subject: =?x-klingon?q?Qapla=27?= =?utf-8?q?ok?="))
    add("rfc2047_truncated", msg(base_from, base_to, base_date, mid(18),
                                 "Subject: =?utf-8?q?unterminated_encoded_word"))
    add("broken_mime_boundary", msg(base_from, base_to, base_date, mid(19), "Subject: broken mime",
                                    "MIME-Version: 1.0",
                                    'Content-Type: multipart/alternative; boundary="XYZ"',
                                    body="--ABC\r\nContent-Type: text/plain\r\n\r\nwrong boundary\r\n"
                                         "--XYZ\r\nContent-Type: text/html\r\n\r\n<p>never closed"))
    add("multipart_without_boundary", msg(base_from, base_to, base_date, mid(20),
                                          "Subject: no boundary", "MIME-Version: 1.0",
                                          "Content-Type: multipart/mixed",
                                          body="--\r\n\r\nnothing\r\n"))
    add("invalid_base64_body", msg(base_from, base_to, base_date, mid(21), "Subject: bad b64",
                                   "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
                                   "Content-Transfer-Encoding: base64",
                                   body="SGVsbG8g!!!@@@ not base64 at all ===\r\nV29ybGQ\r\n"))
    refs = " ".join("<ref-%06d-%s@mail.gmail.com>" % (i, "x" * 12) for i in range(6000))
    add("huge_references", msg(base_from, base_to, base_date, mid(22), "Subject: Re: huge refs",
                               "In-Reply-To: <ref-005999-xxxxxxxxxxxx@mail.gmail.com>",
                               "References: " + refs))
    to = ",\r\n ".join("Recipient %d <r%d@bulk-recipients.example>" % (i, i) for i in range(5000))
    add("huge_to_5000_recipients", msg(base_from, "To: " + to, base_date, mid(23),
                                       "Subject: company-wide blast"))
    add("very_long_unfolded_line", msg(base_from, base_to, base_date, mid(24),
                                       "Subject: " + "long " * 2000))
    add("nul_in_header", b"From: Ben Carter <ben@north\x00wind.io>\r\n" + base_to.encode()
        + b"\r\n" + base_date.encode() + b"\r\n" + mid(25).encode()
        + b"\r\nSubject: nul\x00byte\r\n\r\nbody\x00with nul\r\n")
    add("headers_only_no_body", (base_from + "\r\n" + base_to + "\r\n" + base_date + "\r\n" + mid(26)
                                 + "\r\nSubject: no body").encode())
    add("headers_blank_line_no_body", msg(base_from, base_to, base_date, mid(27),
                                          "Subject: empty body", body=""))
    add("empty", b"")
    add("only_whitespace", b"\r\n\r\n   \r\n")
    add("mixed_line_endings", b"From: Ben Carter <ben@northwind.io>\r\nTo: zoe.mueller@bluefin.de\n"
        b"Date: Tue, 04 Mar 2025 14:02:11 -0500\r\n" + mid(28).encode()
        + b"\nSubject: mixed\r\n endings folded\n\r\nline one\nline two\r\nline three\rline four\n")
    add("duplicate_headers", msg(base_from, "From: Someone Else <else@bluefin.de>", base_to,
                                 base_date, "Date: Wed, 05 Mar 2025 09:00:00 +0000", mid(29),
                                 "Message-ID: <dup-second@northwind.io>", "Subject: one",
                                 "Subject: two"))
    add("message_id_without_brackets", msg(base_from, base_to, base_date,
                                           "Message-ID: no-brackets-here@northwind.io",
                                           "Subject: bare id"))
    add("message_id_garbage", msg(base_from, base_to, base_date,
                                  "Message-ID: <<<@@@>>> <a b c> \x7f", "Subject: junk id"))
    add("continuation_first_line", b" folded: without header\r\n" + msg(base_from, base_to,
                                                                         base_date, mid(30)))
    add("header_without_colon", msg(base_from, "This line has no colon", base_to, base_date,
                                    mid(31), "Subject: no colon"))
    add("mbox_from_line", b"From ben@northwind.io Tue Mar  4 14:02:11 2025\r\n"
        + msg(base_from, base_to, base_date, mid(32), "Subject: mbox separator"))
    add("binary_garbage", bytes(range(256)) * 8)
    add("in_reply_to_loop", msg(base_from, base_to, base_date, mid(33), "Subject: Re: loop",
                                "In-Reply-To: <malformed-33@northwind.io>",
                                "References: <malformed-33@northwind.io> <malformed-33@northwind.io>"))
    return out


# --------------------------------------------------------------------------
# Maildir
# --------------------------------------------------------------------------

class _MaildirWriter:
    """Writes one user's messages into a Maildir++ tree (INBOX at the root)."""

    def __init__(self, root, owner_uid: int | None = None, owner_gid: int | None = None,
                 crlf_to_lf: bool = False, host: str = "threadline-demo"):
        self.root = os.fspath(root)
        self.uid = owner_uid
        self.gid = -1 if owner_gid is None else owner_gid
        self.crlf_to_lf = crlf_to_lf
        self.host = host
        self.pid = os.getpid()
        self.token = "%08x" % random.SystemRandom().getrandbits(32)
        self.seq = 0
        self.dirs: dict[str, str] = {}
        self.counts: Counter = Counter()
        self.recent_ts = time.time() - 2 * 86400

    def _chown(self, path):
        if self.uid is not None:
            os.chown(path, self.uid, self.gid)

    def _folder_dir(self, folder: str) -> str:
        d = self.dirs.get(folder)
        if d is not None:
            return d
        if folder.upper() == "INBOX":
            base = self.root
        else:
            name = folder.replace(".", "_").replace("/", ".")
            base = os.path.join(self.root, "." + name)
        for sub in ("", "cur", "new", "tmp"):
            p = os.path.join(base, sub) if sub else base
            os.makedirs(p, exist_ok=True)
            self._chown(p)
        if base != self.root:
            marker = os.path.join(base, "maildirfolder")
            if not os.path.exists(marker):
                open(marker, "wb").close()
                self._chown(marker)
        d = self.dirs[folder] = os.path.join(base, "cur")
        return d

    def add(self, m: Message) -> str:
        d = self._folder_dir(m.folder)
        data = m.raw.replace(b"\r\n", b"\n") if self.crlf_to_lf else m.raw
        ts = m.internaldate.timestamp()
        flags = "S"
        if m.folder == "INBOX" and ts > self.recent_ts and (self.seq % 3 == 0):
            flags = ""
        while True:
            self.seq += 1
            name = "%d.M%06dP%dQ%dR%s.%s,S=%d:2,%s" % (int(ts), self.seq % 1000000, self.pid,
                                                        self.seq, self.token, self.host,
                                                        len(data), flags)
            path = os.path.join(d, name)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            break
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if self.uid is not None:
                os.fchown(fd, self.uid, self.gid)
        finally:
            os.close(fd)
        os.utime(path, (ts, ts))
        self.counts[m.folder] += 1
        return path

    def finish(self) -> None:
        folders = sorted(f for f in self.dirs if f.upper() != "INBOX")
        if folders:
            p = os.path.join(self.root, "subscriptions")
            with open(p, "w", encoding="utf-8") as fh:
                fh.write("".join(f + "\n" for f in folders))
            self._chown(p)


def write_maildir(root, messages: Iterable[Message], owner_uid: int | None = None, *,
                  owner_gid: int | None = None, mailbox: str | None = None,
                  crlf_to_lf: bool = False) -> dict[str, int]:
    """Write ONE user's messages into a Maildir++ tree at ``root``.

    INBOX is the root maildir, other folders are ``.Folder`` sub-maildirs
    (with a ``maildirfolder`` marker and a ``subscriptions`` file). Files go to
    ``cur/`` with unique names and mtime = ``internaldate``; INBOX mail from
    the last two days is partly left unseen. If ``mailbox`` is given, messages
    of other mailboxes are skipped; otherwise all messages must belong to the
    same mailbox (``ValueError`` if not). ``owner_uid``/``owner_gid`` chown
    what is written (needs privileges). ``crlf_to_lf`` stores LF line endings.
    Returns the number of messages written per folder.
    """
    w = _MaildirWriter(root, owner_uid, owner_gid, crlf_to_lf)
    os.makedirs(w.root, exist_ok=True)
    w._folder_dir("INBOX")
    owner = mailbox
    for m in messages:
        if owner is None:
            owner = m.mailbox
        elif m.mailbox != owner:
            if mailbox is not None:
                continue
            raise ValueError("write_maildir writes one user's mail: got %r after %r"
                             % (m.mailbox, owner))
        w.add(m)
    w.finish()
    return dict(w.counts)


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def _stats(seed, n, reps, companies, days, now) -> dict:
    _, it = generate(seed=seed, n_messages=n, reps=reps, companies=companies, days=days, now=now)
    t0, c0 = time.perf_counter(), time.process_time()
    count = 0
    for _ in it:
        count += 1
    gen_s = time.perf_counter() - t0
    cpu_s = time.process_time() - c0

    corpus, it = generate(seed=seed, n_messages=n, reps=reps, companies=companies, days=days,
                          now=now)
    per_folder, per_rep, kinds = Counter(), Counter(), Counter()
    unique_ids: dict[str, int] = {}
    sizes = []
    replies = 0
    last_30 = 0
    now_dt = corpus.now
    for m in it:
        per_folder[m.folder] += 1
        per_rep[m.mailbox] += 1
        if m.message_id not in unique_ids:
            unique_ids[m.message_id] = 1
            kinds[m.kind] += 1
            sizes.append(len(m.raw))
            replies += m.in_reply_to is not None
            last_30 += (now_dt - m.internaldate).days < 30
        else:
            unique_ids[m.message_id] += 1
    u = len(unique_ids) or 1
    sizes.sort()
    return {
        "copies": count, "unique": len(unique_ids), "seconds": gen_s,
        "rate": count / gen_s if gen_s else float("inf"),
        "cpu_rate": count / cpu_s if cpu_s else float("inf"),
        "per_folder": per_folder, "per_rep": per_rep, "kinds": kinds,
        "shared": sum(1 for v in unique_ids.values() if v > 1) / u,
        "replies": replies / u, "last_30": last_30 / u,
        "size_mean": sum(sizes) / len(sizes) if sizes else 0,
        "size_p5": sizes[len(sizes) // 20] if sizes else 0,
        "size_p95": sizes[len(sizes) * 19 // 20] if sizes else 0,
        "corpus": corpus,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m demodata",
                                 description="Generate the demo email corpus and print stats.")
    ap.add_argument("--n", type=int, default=2000, help="mailbox copies to generate")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--reps", type=int, default=6)
    ap.add_argument("--companies", type=int, default=None)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--now", default=None, help="ISO timestamp ending the window (default: today)")
    ap.add_argument("--maildir", default=None,
                    help="also write one Maildir++ per rep under DIR/<rep email>/")
    args = ap.parse_args(argv)
    now = datetime.fromisoformat(args.now) if args.now else None
    s = _stats(args.seed, args.n, args.reps, args.companies, args.days, now)
    c = s["corpus"]
    u = s["unique"] or 1
    print("%s (%s): %d reps, %d companies, %d contacts" % (
        c.org_name, ", ".join(c.internal_domains), len(c.reps), len(c.companies), len(c.contacts)))
    print("window: %d days ending %s" % (c.days, c.now.isoformat()))
    print("generated %d mailbox copies of %d unique emails in %.3fs: %.0f messages/s"
          " (%.0f messages/s of CPU time)" % (s["copies"], s["unique"], s["seconds"], s["rate"],
                                               s["cpu_rate"]))
    print("per folder: " + ", ".join("%s=%d" % kv for kv in sorted(s["per_folder"].items())))
    print("per rep:")
    admins = set(c.admins)
    for r in c.reps:
        print("  %-28s %6d%s" % (r.email, s["per_rep"].get(r.email, 0),
                                 "  (admin)" if r.email in admins else ""))
    k = s["kinds"]
    print("kinds (unique emails): external %.1f%%, internal %.1f%%, bulk %.1f%%, auto-reply %.1f%%"
          % tuple(100.0 * k.get(x, 0) / u for x in ("external", "internal", "bulk", "auto")))
    print("shared across mailboxes: %.1f%%, replies: %.1f%%, last 30 days: %.1f%%" % (
        100 * s["shared"], 100 * s["replies"], 100 * s["last_30"]))
    print("size: mean %.0f B, p5 %d B, p95 %d B" % (s["size_mean"], s["size_p5"], s["size_p95"]))
    if args.maildir:
        t0 = time.perf_counter()
        writers: dict[str, _MaildirWriter] = {}
        _, it = generate(seed=args.seed, n_messages=args.n, reps=args.reps,
                         companies=args.companies, days=args.days, now=now)
        for m in it:
            w = writers.get(m.mailbox)
            if w is None:
                w = writers[m.mailbox] = _MaildirWriter(os.path.join(args.maildir, m.mailbox))
            w.add(m)
        for w in writers.values():
            w.finish()
        print("wrote %d maildirs under %s in %.2fs" % (len(writers), args.maildir,
                                                       time.perf_counter() - t0))
    return 0

