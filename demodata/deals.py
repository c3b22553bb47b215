"""The demo company's pipeline: deals at every stage with the customers it mails.

Plain values only (the app seeds them through its use cases, app/services/demo_deals.py).
Deterministic for a corpus: companies are taken in the corpus's order, so a deal's people
are contacts who really exchange mail with the reps in the generated stream."""

from __future__ import annotations

import random
from typing import NamedTuple

from demodata.model import Corpus

# The stages of the demo pipeline, in board order: (name, kind, win probability).
STAGES = (
    ("Qualified", "open", 10),
    ("Meeting booked", "open", 25),
    ("Proposal sent", "open", 50),
    ("Negotiation", "open", 75),
    ("Won", "won", 100),
    ("Lost", "lost", 0),
)
PRODUCTS = ("Analytics Suite", "Data Connectors", "Forecasting add-on", "Team licences", "Onboarding package")
LOST_REASONS = ("chose a competitor", "no budget this year", "project postponed", "went quiet after the demo")


class DealPlan(NamedTuple):
    name: str
    company_domain: str
    contact_emails: tuple[str, ...]
    owner_email: str
    stage: str
    amount_minor: int  # cents
    currency: str
    opened_days_ago: int
    days_in_stage: int
    close_in_days: int  # negative: the expected close date has passed
    lost_reason: str | None


def deal_plan(corpus: Corpus, per_stage: int = 3, known: set[str] | None = None) -> list[DealPlan]:
    """Deals at every stage with the corpus's companies. `known`: the contacts' addresses that
    made it onto the timeline (a small demo's mail names some companies only at some hours of
    the day); only companies with one of them get a deal, so every stage has its deals."""
    rng = random.Random(f"deals:{corpus.seed}")
    people: dict[str, list[str]] = {}
    for contact in corpus.contacts:
        if not contact.is_freemail and (known is None or contact.email.lower() in known):
            people.setdefault(contact.company_domain, []).append(contact.email)
    companies = [c for c in corpus.companies if people.get(c.domain)]
    plans = []
    for n in range(per_stage * len(STAGES)):
        if not companies:
            break
        stage, kind, _ = STAGES[n % len(STAGES)]
        company = companies[n % len(companies)]
        emails = tuple(people[company.domain][: 1 + n % 2])
        opened = rng.randint(20, 120)
        in_stage = rng.randint(0, min(opened, 40))
        plans.append(
            DealPlan(
                name=f"{company.name}: {PRODUCTS[n % len(PRODUCTS)]}",
                company_domain=company.domain,
                contact_emails=emails,
                owner_email=corpus.account_owner.get(company.domain) or corpus.reps[n % len(corpus.reps)].email,
                stage=stage,
                amount_minor=rng.randrange(40, 2500) * 10_000,  # 4,000.00 to 250,000.00
                currency="EUR" if n % 4 else "USD",
                opened_days_ago=opened,
                days_in_stage=in_stage,
                close_in_days=rng.randint(-10, 90) if kind == "open" else -in_stage,
                lost_reason=LOST_REASONS[n % len(LOST_REASONS)] if kind == "lost" else None,
            )
        )
    return plans
