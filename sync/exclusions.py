"""What must never reach the timeline: "never log" rules and erased people.

Rules come in two scopes: the whole organisation, or one rep (their own
mailboxes only). A domain rule covers its subdomains. An erased person is known
only by a hash of their address, so the tombstone does not keep who they were.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.engine import Connection

from app.models import ErasedPerson, ExclusionRule


def erased_hash(org_id: int, address: str) -> str:
    return hashlib.sha256(f"threadline-erased:{org_id}:{address.strip().lower()}".encode()).hexdigest()


@dataclass(frozen=True)
class RuleSet:
    addresses: frozenset[str] = frozenset()
    domains: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.addresses or self.domains)

    def matches(self, address: str) -> bool:
        if address in self.addresses:
            return True
        if not self.domains:
            return False
        domain = address.rpartition("@")[2]
        while domain:
            if domain in self.domains:
                return True
            domain = domain.partition(".")[2]
        return False


@dataclass(frozen=True)
class Exclusions:
    org: RuleSet = RuleSet()
    by_user: dict[int, RuleSet] = field(default_factory=dict)
    erased: frozenset[str] = frozenset()

    def excluded(self, address: str, owner_id: int | None) -> bool:
        """A message involving this address is not logged (for this owner's mailbox)."""
        if self.org.matches(address):
            return True
        rules = self.by_user.get(owner_id) if owner_id is not None else None
        return bool(rules) and rules.matches(address)

    def is_erased(self, org_id: int, address: str) -> bool:
        return bool(self.erased) and erased_hash(org_id, address) in self.erased


def load(conn: Connection, org_id: int) -> Exclusions:
    rule = ExclusionRule.__table__
    org_rules: dict[str, set[str]] = {"address": set(), "domain": set()}
    users: dict[int, dict[str, set[str]]] = {}
    for user_id, kind, value in conn.execute(select(rule.c.user_id, rule.c.kind, rule.c.value)
                                             .where(rule.c.org_id == org_id)):
        target = org_rules if user_id is None else users.setdefault(user_id, {"address": set(), "domain": set()})
        if kind in target:
            target[kind].add(value.lower())
    erased = ErasedPerson.__table__
    hashes = frozenset(conn.execute(select(erased.c.address_hash).where(erased.c.org_id == org_id)).scalars())
    return Exclusions(
        org=RuleSet(frozenset(org_rules["address"]), frozenset(org_rules["domain"])),
        by_user={u: RuleSet(frozenset(r["address"]), frozenset(r["domain"])) for u, r in users.items()},
        erased=hashes,
    )
