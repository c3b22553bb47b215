"""Contacts and companies filled in from the senders' own signatures.

Ingest hands over, per batch, the inbound messages whose sender is a contact and
whose text ended in a signature (connectors/signature.py). Per field (title, phone,
mobile, website, company as signed) the value of the latest message wins, and a value
a person typed (provenance "typed", or any value that was there before enrichment
kept provenance) is never replaced. Phones are stored in E.164: the country of the
sender's domain (.co.uk -> GB) is the default for numbers written without one, else
the organisation's phone_region; a number that cannot be read is left out.

A company's display name becomes the one its people sign with ("Aurora Telecom plc")
when it plausibly is that domain's company. Enrichment never costs a message: ingest
runs it in a savepoint and counts a failure as skipped enrichment, not a sync error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection

from app.models import Company, Contact
from connectors.base import Signature
from connectors.normalise import company_display, company_matches_domain, e164, region_of_domain
from sync import addresses as addr

log = logging.getLogger("threadline.sync")

CONTACT = Contact.__table__
COMPANY = Company.__table__
FIELDS = ("title", "phone", "mobile", "website", "company_name")
MAX_VALUE = 200
CHUNK = 500


@dataclass(frozen=True)
class Candidate:
    contact_id: int
    company_id: int | None
    occurred_at: datetime  # aware UTC
    interaction_id: int
    address: str  # the sender, normalised
    signature: Signature
    # The message's key breaks a tie between two signatures of the same second: the order batches
    # and copies come in, and interaction ids, differ between two imports of the same mail.
    message_key: str = ""

    def order(self) -> tuple[str, str]:
        return _iso(self.occurred_at), self.message_key


def _iso(at: datetime) -> str:
    at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
    return at.astimezone(timezone.utc).isoformat(timespec="seconds")


def values_from(sig: Signature, address: str, region: str | None) -> dict[str, str]:
    """The contact fields a signature gives, normalised; fields it cannot give are absent."""
    return dict(_values(sig, address.rpartition("@")[2], region))


@lru_cache(maxsize=4096)
def _values(sig: Signature, domain: str, region: str | None) -> tuple[tuple[str, str], ...]:
    # A contact signs every message alike: each batch would parse the same numbers again.
    default = region_of_domain(domain) or region
    out: dict[str, str] = {}
    if sig.title:
        out["title"] = " ".join(sig.title.split())[:MAX_VALUE]
    for field in ("phone", "mobile"):
        number = e164(getattr(sig, field), default)
        if number:
            out[field] = number
    if sig.website:
        site = sig.website.strip()
        out["website"] = (site if "://" in site else "https://" + site)[:MAX_VALUE]
    if sig.company:
        out["company_name"] = " ".join(sig.company.split())[:MAX_VALUE]
    return tuple(out.items())


def _later(prov: dict, c: Candidate) -> bool:
    """Whether candidate `c` is as late as the signature `prov` records, or later (same second: the
    greater message key; a provenance kept before the key was recorded loses a tie)."""
    return (str(prov.get("at", "")), str(prov.get("key", ""))) <= c.order()


def _mark(c: Candidate, **more) -> dict:
    return {
        "source": "signature",
        "at": _iso(c.occurred_at),
        "key": c.message_key,
        "interaction_id": c.interaction_id,
        **more,
    }


def _replaceable(current: object, prov: dict | None, c: Candidate) -> bool:
    """Whether candidate `c`'s signature may set a field holding `current` with provenance `prov`."""
    if prov is None:
        return not current  # a value from before enrichment was typed or imported by a person
    if prov.get("source") != "signature":
        return False
    return _later(prov, c)


def apply(conn: Connection, org_id: int, candidates: list[Candidate], region: str | None) -> int:
    """Apply the batch's signatures; returns how many contacts changed.

    Field by field, as across batches: a field takes the latest signature that gives it, so an
    older signature's phone stays when a newer one has no phone, whether or not both came in
    one batch (batches split differently when an import is resumed)."""
    best: dict[int, dict[str, tuple[str, Candidate]]] = {}  # contact -> field -> (value, its signature)
    named: dict[int, list[Candidate]] = {}  # company -> the signatures that name one
    for c in sorted(candidates, key=Candidate.order):
        values = values_from(c.signature, c.address, region)
        fields = best.setdefault(c.contact_id, {})
        for field, value in values.items():
            fields[field] = (value, c)
        if c.company_id is not None and "company_name" in values:
            named.setdefault(c.company_id, []).append(c)
    if not best:
        return 0
    ids = sorted(best)
    rows: dict = {}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        for stored in conn.execute(
            select(CONTACT.c.id, CONTACT.c.provenance, *(CONTACT.c[f] for f in FIELDS)).where(
                CONTACT.c.org_id == org_id, CONTACT.c.id.in_(chunk)
            )
        ):
            rows[stored.id] = stored
    changes: list[dict] = []
    for contact_id in ids:
        row = rows.get(contact_id)
        if row is None:
            continue
        provenance = dict(row.provenance or {})
        change = {}
        for field, (value, c) in best[contact_id].items():
            if not _replaceable(getattr(row, field), provenance.get(field), c):
                continue
            mark = _mark(c)
            if getattr(row, field) == value and provenance.get(field) == mark:
                continue
            change[field] = value
            provenance[field] = mark
        if change:
            changes.append({"b_id": contact_id, "b_provenance": provenance, **{f"b_{k}": v for k, v in change.items()}})
    # One UPDATE per set of changed columns (executemany needs the same parameters).
    by_shape: dict[tuple[str, ...], list[dict]] = {}
    for change in changes:
        by_shape.setdefault(tuple(sorted(k for k in change if k not in ("b_id", "b_provenance"))), []).append(change)
    for shape, params in by_shape.items():
        conn.execute(
            update(CONTACT)
            .where(CONTACT.c.id == bindparam("b_id"))
            .values(provenance=bindparam("b_provenance"), **{k[2:]: bindparam(k) for k in shape}),
            params,
        )
    if named:
        _name_companies(conn, org_id, named)
    return len(changes)


def _name_companies(conn: Connection, org_id: int, named: dict[int, list[Candidate]]) -> None:
    """Each company takes the name of the latest signature that plausibly is its own (a
    consultant's signature of another company, later, does not hide an employee's)."""
    ids = sorted(named)
    params = []
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        for cid, domain, name, provenance in conn.execute(
            select(COMPANY.c.id, COMPANY.c.domain, COMPANY.c.name, COMPANY.c.provenance).where(
                COMPANY.c.org_id == org_id, COMPANY.c.id.in_(chunk)
            )
        ):
            # Newest first: the first whose company is this domain's (not a consultant's or a
            # forwarded signature) is the one to weigh.
            c = next(
                (c for c in reversed(named[cid]) if company_matches_domain(c.signature.company or "", domain)), None
            )
            if c is None:
                continue
            signed = c.signature.company or ""
            prov = (provenance or {}).get("name")
            if prov is None and name != addr.company_name(domain):
                continue  # a name someone gave the company by hand
            if prov is not None and (prov.get("source") != "signature" or not _later(prov, c)):
                continue
            display = company_display(signed, domain)
            mark = _mark(c, contact_id=c.contact_id)
            if display == name and prov == mark:
                continue
            params.append({"b_id": cid, "b_name": display, "b_provenance": {**(provenance or {}), "name": mark}})
    if params:
        conn.execute(
            update(COMPANY)
            .where(COMPANY.c.id == bindparam("b_id"))
            .values(name=bindparam("b_name"), provenance=bindparam("b_provenance")),
            params,
        )
