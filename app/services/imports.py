"""Contacts and companies from CSV or vCard: column mapping, a preview of the first rows, a dry run,
errors per row with its number, and idempotent re-import.

- The file is read as a stream (csv module over a decoding wrapper): 100,000 rows take one batch of
  memory, never the whole file.
- One transaction per import: any row error refuses the whole import (nothing written) unless the
  caller asks to skip the rows in error; a dry run does every step, then rolls back.
- Re-import is keyed by the contact's email address (any of their addresses) or the company's
  domain; an imported empty cell never overwrites a value; tags are added, never removed.
- An erased person (app/services/privacy.py) or an address under a "never log" rule is refused
  with its row number: import must not bring back what erasure removed.
- Encodings: a byte-order mark says UTF-8, UTF-16 or UTF-32; without one the file must be UTF-8,
  else it is read as Windows-1252 and the result says so (the preview shows the names as read);
  a file that stops being valid in its encoding half-way is refused at that row.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection

from app.models import Company, Contact, ContactAddress, User
from app.models.base import utcnow
from app.services import audit
from app.services.actor import Actor, changing
from app.services.errors import Invalid, ServiceError
from app.services.exports import FORMULA_START
from app.services.people import ENRICHED, STAGES, TEXT_LIMITS, clean_tags, tags_from_cell, typed
from app.services.vcard import read_cards
from connectors.normalise import person_name
from sync import addresses as addr, exclusions

C, CA, K, U = Contact.__table__, ContactAddress.__table__, Company.__table__, User.__table__

ENTITY_FIELDS = {
    "contacts": ("email", "name", "first_name", "last_name", "title", "phone", "stage", "tags", "owner", "company"),
    "companies": ("domain", "name", "key_account"),
}
REQUIRED = {"contacts": "email", "companies": "domain"}
# Header words matched when no mapping names the field (lower-cased, spaces and _ - . removed), the
# first alias that a header matches winning: Outlook's export has both "Title" (Mr., Ms.) and "Job
# Title". Outlook and Google name the first address "E-mail Address" and "E-mail 1 - Value".
ALIASES = {
    "email": ("email", "emailaddress", "e-mail", "mail", "primaryemail", "email1", "emailaddress1", "email1value"),
    "name": ("name", "fullname", "displayname", "contact", "contactname"),
    "first_name": ("firstname", "givenname", "first"),
    "last_name": ("lastname", "familyname", "surname", "last"),
    "title": ("jobtitle", "title", "position", "role", "organization1title", "organizationtitle"),
    "phone": (
        "phone",
        "phonenumber",
        "telephone",
        "tel",
        "businessphone",
        "primaryphone",
        "mobile",
        "mobilephone",
        "phone1value",
    ),
    "stage": ("stage", "lifecyclestage", "status"),
    "tags": ("tags", "tag", "labels", "categories"),
    "owner": ("owner", "owneremail", "contactowner", "accountowner"),
    "company": (
        "company",
        "companyname",
        "organisation",
        "organization",
        "organization1name",
        "organizationname",
        "account",
        "org",
    ),
    "domain": ("domain", "website", "companydomain", "url", "web"),
    "key_account": ("keyaccount", "key"),
}
# A companies file's "Company name" is the company's name (in a contacts file, the company's).
ENTITY_ALIASES = {"companies": {"name": ALIASES["name"] + ("companyname",)}}
BATCH = 500
MAX_ERRORS_KEPT = 1000  # the result lists this many; error_count counts them all
PREVIEW_ROWS = 5
_UNDECODED = re.compile("[\udc80-\udcff]")  # bytes the encoding could not read (surrogateescape)
MAX_CELL = 2000
# The contact fields an import sets, compared with what is stored to count a row unchanged.
_KEPT = ("name", "honorific", "name_suffix", "title", "phone", "stage", "owner_id")


class _RollBack(Exception):
    """Leaves the import's transaction without committing (dry run, or refused for row errors)."""

    def __init__(self, result: dict):
        super().__init__("rolled back")
        self.result = result


@dataclass
class Record:
    row: int
    values: dict = field(default_factory=dict)
    error: tuple[str | None, str] | None = None  # (field, reason)
    notes: list[str] = field(default_factory=list)


# -- reading ----------------------------------------------------------------------------------------


def detect_encoding(head: bytes, encoding: str | None) -> tuple[str, list[str]]:
    """The codec to read the file with, and what the reader should be told about it."""
    if encoding:
        try:
            name = codecs.lookup(encoding).name
        except LookupError:
            raise Invalid(f"unknown encoding {encoding!r}", field="encoding") from None
        if name == "utf-8" and head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig", []
        return name, []
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", []
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32", []
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", []
    sample = head[:4096]
    if sample and sample.count(0) * 4 >= len(sample):
        # Text with a NUL in every other byte and no byte-order mark: UTF-16, the order from where
        # the zeros sit.
        even = sample[0::2].count(0)
        odd = sample[1::2].count(0)
        return ("utf-16-be" if even > odd else "utf-16-le"), ["UTF-16 without a byte-order mark"]
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8", []
    except UnicodeDecodeError:
        pass
    try:
        head.decode("cp1252")
        guess = "cp1252"
    except UnicodeDecodeError:
        guess = "latin-1"
    return guess, [
        f"the file is not UTF-8: read as {'Windows-1252' if guess == 'cp1252' else 'Latin-1'}; "
        "check the names in the preview, or choose the encoding"
    ]


def _text(stream: BinaryIO, encoding: str | None, *, errors: str = "strict") -> tuple[io.TextIOWrapper, str, list]:
    stream.seek(0)
    head = stream.read(65536)
    stream.seek(0)
    used, notes = detect_encoding(head, encoding)
    return io.TextIOWrapper(stream, encoding=used, errors=errors, newline=""), used, notes


def _release(wrapper: io.TextIOWrapper) -> None:
    try:
        wrapper.detach()  # the caller's stream stays open (an upload is read twice: preview, import)
    except ValueError:
        pass


class _Read(csv.excel):
    """Excel's quoting ("…" with "" inside), whatever the sample suggests."""


def _dialect(sample: str):
    """Only the delimiter is taken from the sniffer. Its quote guesses come from the sample alone: a
    nickname in single quotes made ' the quote character, and a sample without a doubled "" turned
    doubling off for the rest of the file. Every spreadsheet and CRM export quotes as Excel does."""
    try:
        sniffed = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        # The sniffer wants as many delimiters on every line: rows ending in empty cells the header
        # does not have defeat it. The header line's own delimiter is then the best guess.
        header = re.sub(r'"[^"]*"', "", sample.splitlines()[0] if sample else "")
        counts = {d: header.count(d) for d in ",;\t|"}
        best = max(counts, key=lambda d: counts[d])
        if not counts[best]:
            return csv.excel
        return type("_Header", (_Read,), {"delimiter": best})
    return type("_Sniffed", (_Read,), {"delimiter": sniffed.delimiter, "skipinitialspace": sniffed.skipinitialspace})


def _norm_header(h: str) -> str:
    return "".join(ch for ch in h.strip().lower() if ch not in " _-.")


def resolve_mapping(
    entity: str, headers: list[str], mapping: dict[str, str] | None, *, require: bool = True
) -> dict[str, int]:
    """field -> column index: the mapping given (field -> header), then header names for the rest."""
    fields = ENTITY_FIELDS[entity]
    by_header: dict[str, int] = {}
    for i, h in enumerate(headers):
        # A repeated header names its first column, the one the preview's own choice shows: the
        # console sends the preview's mapping back by header name.
        by_header.setdefault(h.strip().lower(), i)
    out: dict[str, int] = {}
    for fld, header in (mapping or {}).items():
        if fld not in fields:
            raise Invalid(f"unknown field {fld!r}: {entity} have {', '.join(fields)}", field="map")
        if not header:
            continue
        if header.strip().lower() not in by_header:
            raise Invalid(f"no column {header!r} in the file (it has {', '.join(headers)})", field="map")
        out[fld] = by_header[header.strip().lower()]
    taken = set(out.values())
    normalised = [_norm_header(h) for h in headers]
    for fld in fields:
        if fld in out or fld in (mapping or {}):
            continue
        aliases = ENTITY_ALIASES.get(entity, {}).get(fld) or ALIASES.get(fld, ())
        for alias in (_norm_header(a) for a in aliases):
            i = next((i for i, h in enumerate(normalised) if h == alias and i not in taken), None)
            if i is not None:
                out[fld] = i
                taken.add(i)
                break
    required = REQUIRED[entity]
    if required not in out and require:
        raise Invalid(f'no column gives the {required}: map one (e.g. {required}="<column>")', field="map")
    return out


def _csv_records(text: io.TextIOWrapper, entity: str, mapping: dict | None, meta: dict) -> Iterator[Record]:
    sample = text.read(8192)
    text.seek(0)
    dialect = _dialect(sample)
    meta["delimiter"] = dialect.delimiter
    reader = csv.reader(text, dialect, strict=True)
    try:
        headers = next(reader)
    except StopIteration:
        raise Invalid("the file is empty", field="file") from None
    except csv.Error as exc:
        raise Invalid(f"row 1: the header cannot be read ({exc})", field="file") from None
    meta["headers"] = headers
    # The preview reads a file whose key column is not chosen yet: it shows the columns to choose from.
    columns = resolve_mapping(entity, headers, mapping, require=not meta.get("lenient"))
    meta["mapping"] = {fld: headers[i] for fld, i in columns.items()}
    record_no = 1  # row 1 is the header, as a spreadsheet numbers it
    while True:
        record_no += 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # Broken quoting cannot be resynchronised (the rest of the file is inside the quote).
            yield Record(row=record_no, error=(None, f"broken quoting (line {reader.line_num} of the file): {exc}"))
            return
        except UnicodeDecodeError:
            enc = meta["encoding"]
            yield Record(row=record_no, error=(None, f"not valid {enc} text from here: choose the file's encoding"))
            return
        if not any(c.strip() for c in cells):
            continue
        joined = "".join(cells)
        if not joined.isascii() and _UNDECODED.search(joined):
            enc = meta["encoding"]
            yield Record(row=record_no, error=(None, f"not valid {enc} text: choose the file's encoding"))
            continue
        if len(cells) > len(headers) and any(c.strip() for c in cells[len(headers) :]):
            yield Record(row=record_no, error=(None, f"{len(cells)} cells where the header has {len(headers)}"))
            continue
        values = {fld: _unneutralised(cells[i]) if i < len(cells) else "" for fld, i in columns.items()}
        yield Record(row=record_no, values=values)


def _unneutralised(cell: str) -> str:
    """The cell without the apostrophe a CSV export (ours, app/services/exports.py) puts before a
    value a spreadsheet would run as a formula: '+44 20 7946 0000 is the phone +44 20 7946 0000."""
    return cell[1:] if cell[:1] == "'" and cell[1:].startswith(FORMULA_START) else cell


def _vcard_records(text: io.TextIOWrapper, meta: dict) -> Iterator[Record]:
    meta["headers"], meta["mapping"] = [], {}
    for card in read_cards(text):
        if card.error:
            yield Record(row=card.number, error=(None, f"card at line {card.line}: {card.error}"), notes=card.notes)
            continue
        f = card.fields
        values = {
            "email": f.get("email", ""),
            "name": f.get("name", ""),
            "title": f.get("title", ""),
            "phone": f.get("phone", ""),
            "tags": list(f.get("tags", [])),
            "company": f.get("company", ""),
        }
        notes = list(card.notes)
        if len(f.get("emails", [])) > 1:
            notes.append(f"{len(f['emails']) - 1} more address(es) not imported")
        yield Record(row=card.number, values=values, notes=notes)


def _records(
    stream: BinaryIO, fmt: str, entity: str, mapping, encoding, meta: dict
) -> tuple[io.TextIOWrapper, Iterator[Record]]:
    if fmt == "csv":
        # Undecodable bytes become surrogates, found in the row that holds them (a decoding
        # wrapper raising instead would name the row where its read-ahead chunk began).
        text, used, notes = _text(stream, encoding, errors="surrogateescape")
        meta.update(encoding=used, notes=notes)
        return text, _csv_records(text, entity, mapping, meta)
    if fmt == "vcard":
        if entity != "contacts":
            raise Invalid("vCards hold contacts, not companies", field="entity")
        # Undecodable bytes are kept as surrogates so a binary photo costs its card a note, not the file.
        stream.seek(0)
        head = stream.read(4)
        if not encoding and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            encoding = "utf-8"  # vCard 4 is UTF-8 only; vCard 3 files are in practice
        text, used, notes = _text(stream, encoding, errors="surrogateescape")
        meta.update(encoding=used, notes=notes)
        return text, _vcard_records(text, meta)
    raise Invalid("format must be csv or vcard", field="format")


# -- cleaning one row -------------------------------------------------------------------------------


def _cell(value: str | None, limit: int) -> str:
    return " ".join((value or "").split())[:limit]


def _clean_contact(rec: Record, ctx: dict) -> None:
    v = rec.values
    if any(isinstance(x, str) and len(x) > MAX_CELL for x in v.values()):
        rec.error = (None, f"a cell longer than {MAX_CELL} characters")
        return
    email = (v.get("email") or "").strip()
    if " ::: " in email:  # Google's export: two addresses of one type in one cell
        email, _, more = email.partition(" ::: ")
        rec.notes.append(f"{more.count(' ::: ') + 1} more address(es) not imported")
    address = addr.normalise(email.strip())
    if address is None:
        rec.error = ("email", f"not a valid email address: {(v.get('email') or '')[:100]!r}")
        return
    org = ctx["org"]
    if address in org.users_by_address or addr.is_internal(address, org.internal_domains):
        rec.error = ("email", "this address belongs to your organisation, not to a contact")
        return
    if org.exclusions.is_erased(ctx["org_id"], address):
        rec.error = ("email", "this person asked to be erased; they cannot be imported again")
        return
    if org.exclusions.excluded(address, None):
        rec.error = ("email", 'a "never log" rule covers this address')
        return
    out: dict = {"email": address}
    if not _cell(v.get("name"), 1):
        # Outlook, Google and most CRMs export first and last names apart, some with no full name.
        v["name"] = " ".join(p for p in (_cell(v.get("first_name"), 200), _cell(v.get("last_name"), 200)) if p)
    for fld in ("name", "title", "phone"):
        text = _cell(v.get(fld), TEXT_LIMITS[fld])
        if text:
            out[fld] = text
    if "name" in out:
        # As mail does it: "Adams, Rory" is Rory Adams, "Dr." and "Jr." kept apart, so a file
        # exported from here (which writes them back in place) re-imports as unchanged.
        person = person_name(out["name"])
        out["name"], out["honorific"], out["name_suffix"] = person.name, person.honorific, person.suffix
    stage = (v.get("stage") or "").strip().lower()
    if stage:
        if stage not in STAGES:
            rec.error = ("stage", f"stage must be one of {', '.join(STAGES)}")
            return
        out["stage"] = stage
    tags_cell = v.get("tags") or ""
    raw_tags = tags_cell if isinstance(tags_cell, list) else tags_from_cell(tags_cell)
    if raw_tags:
        try:
            out["tags"] = clean_tags(raw_tags)
        except Invalid as exc:
            rec.error = ("tags", exc.reason)
            return
    owner = (v.get("owner") or "").strip().lower()
    if owner:
        if owner not in ctx["owners"]:
            rec.error = ("owner", f"no active user {owner!r} in this organisation")
            return
        out["owner_id"] = ctx["owners"][owner]
    company = _cell(v.get("company"), 200)
    if company:
        out["company"] = company
    if address in ctx["seen"]:
        rec.error = ("email", f"the same address as row {ctx['seen'][address]}")
        return
    ctx["seen"][address] = rec.row
    rec.values = out


def clean_domain(value: str) -> str | None:
    text = (value or "").strip().lower()
    for prefix in ("https://", "http://"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    text = text.split("/", 1)[0].split("?", 1)[0].rstrip(".")
    if text.startswith("www."):
        text = text[4:]
    if "@" in text:
        text = text.rpartition("@")[2]
    if not text or any(ch in text for ch in " _:%\\"):
        return None
    return addr.registrable_domain(text)


def _clean_company(rec: Record, ctx: dict) -> None:
    v = rec.values
    if any(len(x or "") > MAX_CELL for x in v.values()):
        rec.error = (None, f"a cell longer than {MAX_CELL} characters")
        return
    domain = clean_domain(v.get("domain") or "")
    if domain is None:
        rec.error = ("domain", f"not a company domain: {(v.get('domain') or '')[:100]!r}")
        return
    if domain in ctx["org"].internal_domains:
        rec.error = ("domain", "this is your organisation's own domain")
        return
    out: dict = {"domain": domain}
    name = _cell(v.get("name"), 200)
    if name:
        out["name"] = name
    key = (v.get("key_account") or "").strip().lower()
    if key:
        if key in ("1", "true", "yes", "y", "x"):
            out["key_account"] = True
        elif key in ("0", "false", "no", "n"):
            out["key_account"] = False
        else:
            rec.error = ("key_account", "key_account must be yes or no")
            return
    if domain in ctx["seen"]:
        rec.error = ("domain", f"the same domain as row {ctx['seen'][domain]}")
        return
    ctx["seen"][domain] = rec.row
    rec.values = out


# -- writing a batch --------------------------------------------------------------------------------


def _write_contacts(conn: Connection, ctx: dict, batch: list[Record], counts: dict) -> None:
    from sync import stats
    from sync.ingest import create_contacts

    org_id = ctx["org_id"]
    wanted = {r.values["email"]: r for r in batch}
    existing: dict[str, dict] = {}
    for row in conn.execute(
        select(CA.c.address, C.c.id, C.c.tags, C.c.company_id, *(C.c[k] for k in _KEPT))
        .join(C, C.c.id == CA.c.contact_id)
        .where(CA.c.org_id == org_id, CA.c.address.in_(list(wanted)))
    ).mappings():
        existing[row["address"]] = dict(row)
    new = {a: r.values.get("name", "") for a, r in wanted.items() if a not in existing}
    # The new contacts' fields go into their INSERT: an UPDATE of each after it was a round trip
    # per row on PostgreSQL, then a join that grew with the table (9.5 s of 100,000 rows).
    fields = {a: _fields_of(wanted[a].values) for a in new}
    made_here: set[str] = set()
    made = create_contacts(conn, ctx["org"], new, created=made_here, org_locked=True, columns=fields) if new else {}
    changes: list[dict] = []
    marked: dict[int, list[str]] = {}  # contact -> the fields a signature may have set that this file sets
    company_names: dict[int, str] = {}
    for address, rec in wanted.items():
        v = rec.values
        if address in existing:
            old = existing[address]
            marked[old["id"]] = [k for k in ENRICHED if k in _KEPT and k in v and v[k] != old[k]]
            merged = {k: old[k] for k in _KEPT}
            merged["tags"] = list(old["tags"] or [])
            for k in _KEPT:
                if k in v:
                    merged[k] = v[k]
            lower = {t.lower() for t in merged["tags"]}
            merged["tags"] = merged["tags"] + [t for t in v.get("tags", []) if t.lower() not in lower]
            company_id = old["company_id"]
            if merged == {
                **{k: old[k] for k in _KEPT},
                "tags": list(old["tags"] or []),
            }:
                counts["unchanged"] += 1
            else:
                counts["updated"] += 1
                changes.append({"b_id": old["id"], **{f"b_{k}": val for k, val in merged.items()}})
        else:
            contact_id, company_id = made[address]
            counts["created"] += 1
            if address not in made_here:  # another writer made it first: ours are changes to it
                changes.append(
                    {"b_id": contact_id, **{f"b_{k}": val for k, val in fields[address].items() if k != "search_name"}}
                )
                marked[contact_id] = [k for k in ENRICHED if fields[address].get(k)]
            ctx["created_ids"].append(contact_id)
        if v.get("company") and company_id:
            company_names[company_id] = v["company"]
    if changes and conn.dialect.name == "postgresql":
        _update_contacts_at_once(conn, org_id, changes)
    elif changes:
        conn.execute(
            update(C)
            .where(C.c.id == bindparam("b_id"), C.c.org_id == org_id)
            .values(
                name=bindparam("b_name"),
                honorific=bindparam("b_honorific"),
                name_suffix=bindparam("b_name_suffix"),
                search_name=bindparam("b_search"),
                title=bindparam("b_title"),
                phone=bindparam("b_phone"),
                stage=bindparam("b_stage"),
                owner_id=bindparam("b_owner_id"),
                tags=bindparam("b_tags"),
            ),
            [{**c, "b_search": (c["b_name"] or "").lower()} for c in changes],
        )
    _mark_typed(conn, org_id, ctx["actor_id"], {c: fs for c, fs in marked.items() if fs})
    if company_names:
        # A typed company name replaces only the one made from the domain ("Acmecorp"), never a
        # name someone set.
        rows = conn.execute(
            select(K.c.id, K.c.name, K.c.domain).where(K.c.org_id == org_id, K.c.id.in_(list(company_names)))
        ).all()
        fix = [
            {"b_id": r.id, "b_name": company_names[r.id]}
            for r in rows
            if r.name == addr.company_name(r.domain) and company_names[r.id] != r.name
        ]
        if fix:
            conn.execute(update(K).where(K.c.id == bindparam("b_id")).values(name=bindparam("b_name")), fix)
            counts["companies_named"] += len(fix)
    if ctx["created_ids"] and len(ctx["created_ids"]) >= BATCH:
        # Mail stored before these addresses became contacts is linked to them now: count it.
        stats.recompute(conn, org_id, ctx["created_ids"])
        ctx["created_ids"].clear()


def _mark_typed(conn: Connection, org_id: int, actor_id: int | None, marked: dict[int, list[str]]) -> None:
    """A title or phone from a file was given by a person: a later signature must keep off it
    (sync/enrichment.py) as off one typed in the sidebar, not take it back as its own. Contacts the
    file creates need nothing: a value without provenance already counts as typed."""
    if not marked:
        return
    rows = conn.execute(select(C.c.id, C.c.provenance).where(C.c.org_id == org_id, C.c.id.in_(list(marked))))
    conn.execute(
        update(C).where(C.c.id == bindparam("b_id")).values(provenance=bindparam("b_provenance")),
        [{"b_id": r.id, "b_provenance": typed(r.provenance, marked[r.id], actor_id)} for r in rows],
    )


def _fields_of(v: dict) -> dict:
    """A new contact's own columns from its cleaned row."""
    name = v.get("name", "")
    return {
        "name": name,
        "honorific": v.get("honorific", ""),
        "name_suffix": v.get("name_suffix", ""),
        "search_name": (name or "").lower(),
        "title": v.get("title"),
        "phone": v.get("phone"),
        "stage": v.get("stage"),
        "owner_id": v.get("owner_id"),
        "tags": v.get("tags", []),
    }


def _update_contacts_at_once(conn: Connection, org_id: int, changes: list[dict]) -> None:
    """The batch's field updates as one UPDATE ... FROM unnest(arrays) on PostgreSQL: psycopg2's
    executemany is one round trip per row (3.5 s of a 20,000-row import, bench/imports.py), and a
    VALUES list built by SQLAlchemy cost more in compiling its 4,000 parameters than it saved.
    Ten arrays are ten parameters. SQLite's executemany runs in-process and stays as it is."""
    conn.exec_driver_sql(
        "UPDATE contact SET name = v.name, honorific = v.honorific, name_suffix = v.name_suffix, "
        "search_name = v.search_name, title = v.title, phone = v.phone, "
        "stage = v.stage, owner_id = v.owner_id, tags = v.tags::json "
        "FROM unnest(%(id)s::integer[], %(name)s::text[], %(honorific)s::text[], %(name_suffix)s::text[], "
        "%(search_name)s::text[], %(title)s::text[], "
        "%(phone)s::text[], %(stage)s::text[], %(owner_id)s::integer[], %(tags)s::text[]) "
        "AS v(id, name, honorific, name_suffix, search_name, title, phone, stage, owner_id, tags) "
        "WHERE contact.id = v.id AND contact.org_id = %(org_id)s",
        {
            "org_id": org_id,
            "id": [c["b_id"] for c in changes],
            "name": [c["b_name"] for c in changes],
            "honorific": [c["b_honorific"] for c in changes],
            "name_suffix": [c["b_name_suffix"] for c in changes],
            "search_name": [(c["b_name"] or "").lower() for c in changes],
            "title": [c["b_title"] for c in changes],
            "phone": [c["b_phone"] for c in changes],
            "stage": [c["b_stage"] for c in changes],
            "owner_id": [c["b_owner_id"] for c in changes],
            "tags": [json.dumps(c["b_tags"]) for c in changes],
        },
    )


def _write_companies(conn: Connection, ctx: dict, batch: list[Record], counts: dict) -> None:
    org_id = ctx["org_id"]
    wanted = {r.values["domain"]: r.values for r in batch}
    existing = {
        r.domain: r
        for r in conn.execute(
            select(K.c.id, K.c.domain, K.c.name, K.c.key_account, K.c.provenance).where(
                K.c.org_id == org_id, K.c.domain.in_(list(wanted))
            )
        )
    }
    new_rows, changes = [], []
    for domain, v in wanted.items():
        if domain in existing:
            old = existing[domain]
            name = v.get("name", old.name)
            key = v.get("key_account", bool(old.key_account))
            if name == old.name and key == bool(old.key_account):
                counts["unchanged"] += 1
            else:
                counts["updated"] += 1
                # A name from the file is typed: a later signature must not rename the company back.
                provenance = typed(old.provenance, ["name"], ctx["actor_id"]) if name != old.name else old.provenance
                changes.append({"b_id": old.id, "b_name": name, "b_key": key, "b_provenance": provenance or {}})
        else:
            counts["created"] += 1
            new_rows.append(
                {
                    "org_id": org_id,
                    "domain": domain,
                    "name": v.get("name") or addr.company_name(domain),
                    "key_account": v.get("key_account", False),
                    "created_at": utcnow(),
                }
            )
    if new_rows:
        conn.execute(insert(K), new_rows)
    if changes:
        conn.execute(
            update(K)
            .where(K.c.id == bindparam("b_id"), K.c.org_id == org_id)
            .values(name=bindparam("b_name"), key_account=bindparam("b_key"), provenance=bindparam("b_provenance")),
            changes,
        )


# -- use cases --------------------------------------------------------------------------------------


def _context(conn: Connection, org_id: int, box, actor_id: int | None = None) -> dict:
    from sync.engine import org_context

    owners = {
        email.lower(): uid
        for uid, email in conn.execute(select(U.c.id, U.c.email).where(U.c.org_id == org_id, U.c.active.is_(True)))
    }
    return {
        "org_id": org_id,
        "actor_id": actor_id,  # who typed what the file gives (provenance)
        "org": org_context(conn, org_id, box),
        "owners": owners,
        "seen": {},
        "created_ids": [],
    }


def preview(
    rt, actor: Actor, stream: BinaryIO, *, entity: str = "contacts", fmt: str = "csv", mapping=None, encoding=None
) -> dict:
    """The file as it would be read: encoding, headers, the mapping used, and the first rows cleaned
    (with their errors). Reads only the first rows; writes nothing."""
    if entity not in ENTITY_FIELDS:
        raise Invalid("entity must be contacts or companies", field="entity")
    from app.db import read_only

    meta: dict = {"lenient": True}
    text, records = _records(stream, fmt, entity, mapping, encoding, meta)
    required = REQUIRED[entity]
    try:
        with read_only(rt.engine) as conn:
            ctx = _context(conn, actor.org_id, rt.box)
            rows = []
            for rec in records:
                if rec.error is None and required not in rec.values:
                    rec.error = ("map", f"no column gives the {required}: choose one")
                if rec.error is None:
                    (_clean_contact if entity == "contacts" else _clean_company)(rec, ctx)
                rows.append(_row_out(rec))
                if len(rows) >= PREVIEW_ROWS:
                    break
    finally:
        _release(text)
    return {
        "entity": entity,
        "format": fmt,
        "encoding": meta.get("encoding"),
        "delimiter": meta.get("delimiter"),
        "headers": meta.get("headers", []),
        "mapping": meta.get("mapping", {}),
        "fields": list(ENTITY_FIELDS[entity]),
        "rows": rows,
        "notes": meta.get("notes", []),
    }


def _row_out(rec: Record) -> dict:
    values = {k: v for k, v in rec.values.items()}
    return {
        "row": rec.row,
        "values": {
            k: (", ".join(v) if isinstance(v, list) else ("" if v is None else str(v))) for k, v in values.items()
        },
        "error": None if rec.error is None else {"field": rec.error[0], "reason": rec.error[1]},
        "notes": rec.notes,
    }


def run_import(
    rt,
    actor: Actor,
    stream: BinaryIO,
    *,
    entity: str = "contacts",
    fmt: str = "csv",
    mapping: dict | None = None,
    encoding: str | None = None,
    dry_run: bool = False,
    skip_invalid: bool = False,
    source_name: str = "",
) -> dict:
    """Import a file in one transaction (see the module's docstring). Returns what was (or, for a
    dry run or a refused import, would have been) created, updated and left unchanged, and each row
    error with its row number."""
    if entity not in ENTITY_FIELDS:
        raise Invalid("entity must be contacts or companies", field="entity")
    started = utcnow()
    meta: dict = {}
    counts = {"rows": 0, "created": 0, "updated": 0, "unchanged": 0, "companies_named": 0}
    errors: list[dict] = []
    error_count = 0
    notes_count: dict[str, int] = {}
    text, records = _records(stream, fmt, entity, mapping, encoding, meta)
    result: dict = {}
    try:
        with changing(rt.engine, actor) as conn:
            from sync.ingest import lock_organisation

            # First the exclusions gate (sync/exclusions.py), then one lock for the whole import
            # (PostgreSQL): per-address locks for 100,000 rows held to the commit would overflow
            # the server's lock table; syncs of this organisation wait.
            exclusions.hold_to_apply(conn, actor.org_id)
            lock_organisation(conn, actor.org_id)
            ctx = _context(conn, actor.org_id, rt.box, actor.user_id)
            clean = _clean_contact if entity == "contacts" else _clean_company
            write = _write_contacts if entity == "contacts" else _write_companies
            batch: list[Record] = []
            for rec in records:
                counts["rows"] += 1
                if rec.error is None:
                    clean(rec, ctx)
                for note in rec.notes:
                    notes_count[note] = notes_count.get(note, 0) + 1
                if rec.error is not None:
                    error_count += 1
                    if len(errors) < MAX_ERRORS_KEPT:
                        errors.append({"row": rec.row, "field": rec.error[0], "reason": rec.error[1]})
                    continue
                if error_count and not skip_invalid:
                    continue  # refused anyway: keep reading for every row's errors, write nothing more
                batch.append(rec)
                if len(batch) >= BATCH:
                    write(conn, ctx, batch, counts)
                    batch = []
            if batch and not (error_count and not skip_invalid):
                write(conn, ctx, batch, counts)
            if entity == "contacts" and ctx["created_ids"]:
                from sync import stats

                stats.recompute(conn, actor.org_id, ctx["created_ids"])
            refused = bool(error_count) and not skip_invalid
            result = {
                "entity": entity,
                "format": fmt,
                "encoding": meta.get("encoding"),
                "mapping": meta.get("mapping", {}),
                "dry_run": dry_run,
                "written": not dry_run and not refused,
                "rows": counts["rows"],
                "created": counts["created"],
                "updated": counts["updated"],
                "unchanged": counts["unchanged"],
                "skipped": error_count,
                "error_count": error_count,
                "errors": errors,
                "notes": list(meta.get("notes", []))
                + [f"{n} row(s): {note}" for note, n in sorted(notes_count.items())],
            }
            if refused:
                result["notes"].append("nothing was imported: fix the rows in error, or skip them")
                raise _RollBack(result)
            if dry_run:
                raise _RollBack(result)
            audit.record(
                conn,
                actor.org_id,
                actor.user_id,
                f"import.{entity}",
                source_name[:200] or fmt,
                {
                    "format": fmt,
                    "encoding": meta.get("encoding"),
                    **{k: result[k] for k in ("rows", "created", "updated", "unchanged", "skipped")},
                    "seconds": round((utcnow() - started).total_seconds(), 2),
                },
            )
    except _RollBack as done:
        return done.result
    except UnicodeDecodeError:
        raise Invalid(
            f"the file is not valid {meta.get('encoding')} text: choose its encoding", field="encoding"
        ) from None
    finally:
        _release(text)
    return result


def parse_mapping(text: str | None) -> dict[str, str]:
    """ "email=E-mail,name=Full name" (the CLI's --map) -> {field: header}."""
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        fld, eq, header = part.partition("=")
        if not eq:
            raise Invalid(f"--map takes field=column pairs, not {part!r}", field="map")
        out[fld.strip().lower()] = header.strip()
    return out


__all__ = ["ENTITY_FIELDS", "ServiceError", "detect_encoding", "parse_mapping", "preview", "run_import"]
