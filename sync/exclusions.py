"""What must never reach the timeline: "never log" rules and erased people.

Rules come in two scopes: the whole organisation, or one rep (their own
mailboxes only). A domain rule covers its subdomains. An erased person is known
only by a keyed hash of their address (HMAC-SHA256 under a random per-organisation
key kept encrypted with the secret box), so the tombstone does not keep who they
were, and a copy of the database alone cannot test a guessed address against it.
The key is stored rather than derived from the box's key, so that rotating
THREADLINE_SECRET_KEY re-encrypts it and never orphans a tombstone.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Literal, overload

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from app.crypto import SecretBox
from app.db import advisory_locks
from app.models import ErasedPerson, ExclusionRule, Organisation

KEYED_PREFIX = "k1:"
ORG = Organisation.__table__


def erased_hash(key: bytes, org_id: int, address: str) -> str:
    digest = hmac.new(key, f"{org_id}:{address.strip().lower()}".encode(), hashlib.sha256).hexdigest()
    return KEYED_PREFIX + digest


def legacy_erased_hash(org_id: int, address: str) -> str:
    """The unkeyed form written before migration 0003; still matched, never written."""
    return hashlib.sha256(f"threadline-erased:{org_id}:{address.strip().lower()}".encode()).hexdigest()


@overload
def erasure_key(conn: Connection, box: SecretBox, org_id: int, *, create: Literal[True]) -> bytes: ...
@overload
def erasure_key(conn: Connection, box: SecretBox, org_id: int, *, create: bool = False) -> bytes | None: ...
def erasure_key(conn: Connection, box: SecretBox, org_id: int, *, create: bool = False) -> bytes | None:
    """The organisation's tombstone key; with create, made on first use (in the caller's transaction)."""
    stored = conn.execute(select(ORG.c.erasure_key_enc).where(ORG.c.id == org_id)).scalar()
    if stored:
        return bytes.fromhex(box.decrypt(stored))
    if not create:
        return None
    key = secrets.token_bytes(32)
    conn.execute(
        update(ORG)
        .where(ORG.c.id == org_id, ORG.c.erasure_key_enc.is_(None))
        .values(erasure_key_enc=box.encrypt(key.hex()))
    )
    # Another writer may have made one first: use whichever is stored.
    return bytes.fromhex(
        box.decrypt(conn.execute(select(ORG.c.erasure_key_enc).where(ORG.c.id == org_id)).scalar_one())
    )


def person_tag(conn: Connection, box: SecretBox, org_id: int, address: str) -> str:
    """How the audit log names a person without their address: the start of their keyed hash."""
    return erased_hash(erasure_key(conn, box, org_id, create=True), org_id, address)[len(KEYED_PREFIX) :][:16]


def tombstone_hashes(key: bytes | None, org_id: int, address: str) -> list[str]:
    """Every form a tombstone of this address may have been written in."""
    forms = [legacy_erased_hash(org_id, address)]
    if key is not None:
        forms.insert(0, erased_hash(key, org_id, address))
    return forms


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
    erasure_key: bytes | None = field(default=None, repr=False)
    # What they were loaded from, as stamp_of() reads it: a sync run compares it with every
    # batch's, so a rule or an erasure made while it runs holds from its next batch on.
    stamp: tuple = ()

    def excluded(self, address: str, owner_id: int | None) -> bool:
        """A message involving this address is not logged (for this owner's mailbox)."""
        if self.org.matches(address):
            return True
        rules = self.by_user.get(owner_id) if owner_id is not None else None
        return rules is not None and rules.matches(address)  # an empty RuleSet matches nothing

    def is_erased(self, org_id: int, address: str) -> bool:
        if not self.erased:
            return False
        return any(h in self.erased for h in tombstone_hashes(self.erasure_key, org_id, address))


def stamp_of(org_id) -> list:
    """Scalar subqueries whose values change with the organisation's rules and tombstones
    (`org_id` a value or a column to correlate with): tombstones are only ever added; rules are
    added or removed, never edited, so a change moves their count or their latest creation time
    (not their highest id: SQLite gives a removed highest id to the next rule)."""
    rule, erased = ExclusionRule.__table__, ErasedPerson.__table__
    return [
        select(func.count()).select_from(erased).where(erased.c.org_id == org_id).scalar_subquery(),
        select(func.count()).select_from(rule).where(rule.c.org_id == org_id).scalar_subquery(),
        select(func.max(rule.c.created_at)).where(rule.c.org_id == org_id).scalar_subquery(),
    ]


def _gate(org_id: int) -> int:
    digest = hashlib.blake2b(f"exclusions\0{org_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# The threat: on PostgreSQL a batch reads the rules and tombstones (stamp_of, in its fencing
# UPDATE) and writes for a second or so afterwards. An erasure or a new rule that commits in
# between deleted the person's stored mail, and the batch then wrote their mail back, from the
# rules it had read. The same holds for every other writer that applies them (an email logged by
# hand, a contact created, a file imported, a merge undone). So each of those holds the
# organisation's exclusions gate shared from its first statement to its commit, and every change
# to the exclusions holds it exclusively from its first statement: the change waits for the
# writers in flight (and removes what they wrote), and writers begun meanwhile wait for it and
# read the new rules. Each side takes the gate before any other lock, so neither can hold
# something the other waits for (no deadlock), and no one upgrades it. SQLite has one writer at
# a time: nothing to do there.


def hold_to_apply(conn: Connection, org_id: int) -> None:
    """The gate, shared, until commit: the first statement of a writer that applies the rules
    and tombstones (a sync batch, a logged email, a new contact, an import, an undone merge)."""
    advisory_locks(conn, [(_gate(org_id), False)])


def hold_to_change(conn: Connection, org_id: int) -> None:
    """The gate, exclusively, until commit: the first statement of a change to the rules or
    tombstones (PostgreSQL)."""
    advisory_locks(conn, [(_gate(org_id), True)])


def load(conn: Connection, org_id: int, box: SecretBox) -> Exclusions:
    rule = ExclusionRule.__table__
    org_rules: dict[str, set[str]] = {"address": set(), "domain": set()}
    users: dict[int, dict[str, set[str]]] = {}
    stamp = tuple(conn.execute(select(*stamp_of(org_id))).one())
    for user_id, kind, value in conn.execute(
        select(rule.c.user_id, rule.c.kind, rule.c.value).where(rule.c.org_id == org_id)
    ):
        target = org_rules if user_id is None else users.setdefault(user_id, {"address": set(), "domain": set()})
        if kind in target:
            target[kind].add(value.lower())
    erased = ErasedPerson.__table__
    hashes = frozenset(conn.execute(select(erased.c.address_hash).where(erased.c.org_id == org_id)).scalars())
    return Exclusions(
        org=RuleSet(frozenset(org_rules["address"]), frozenset(org_rules["domain"])),
        by_user={u: RuleSet(frozenset(r["address"]), frozenset(r["domain"])) for u, r in users.items()},
        erased=hashes,
        erasure_key=erasure_key(conn, box, org_id) if hashes else None,
        stamp=stamp,
    )
