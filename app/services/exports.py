"""Exports: a segment (or any filter) as CSV or vCard, and the whole organisation as JSON for moving
to another system. Every export is a generator over pages read by id, so memory stays one page
whatever the size, and the web adapters stream it as it is produced.

CSV cells that a spreadsheet would run as a formula (starting with = + - @, a tab or a carriage
return: `=cmd|' /C calc'!A0`) get a leading apostrophe: the value reads the same, nothing runs.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime, timezone
from typing import Iterator

from sqlalchemy import select
from sqlalchemy.engine import Connection

from app.db import read_only, write_transaction
from app.models import (
    Company,
    Contact,
    ContactAddress,
    Deal,
    DealContact,
    Interaction,
    Organisation,
    Participant,
    Pipeline,
    PipelineStage,
    User,
)
from app.models.base import utcnow
from app.services import audit, segments
from app.services.actor import Actor, authorise
from app.services.errors import Invalid
from app.services.people import tags_cell
from app.services.vcard import write_card
from connectors.normalise import full_name

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
CONTACT_COLUMNS = (
    "email",
    "name",
    "title",
    "phone",
    "stage",
    "tags",
    "owner",
    "company",
    "company_domain",
    "last_interaction_at",
    "strength",
)
COMPANY_COLUMNS = ("domain", "name", "key_account", "contacts", "last_interaction_at", "strength")
CHUNK = 1000


def neutralise(value) -> str:
    """The cell as text a spreadsheet shows and never evaluates."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def _iso(value):
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _csv_line(cells) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow([neutralise(c) for c in cells])
    return buf.getvalue()


def _contact_cells(r: dict) -> list:
    company = r.get("company") or {}
    return [
        r["email"],
        full_name(r["name"], r.get("honorific", ""), r.get("name_suffix", "")),
        r.get("title"),
        r.get("phone"),
        r.get("stage"),
        tags_cell(r.get("tags") or []),
        r.get("owner_email"),
        company.get("name"),
        company.get("domain"),
        _iso(r.get("last_interaction_at")),
        r.get("strength"),
    ]


def _company_cells(r: dict) -> list:
    return [
        r["domain"],
        r["name"],
        "yes" if r.get("key_account") else "no",
        r.get("contacts"),
        _iso(r.get("last_interaction_at")),
        r.get("strength"),
    ]


def _matches(rt, actor: Actor, entity: str, filters: dict, now: datetime) -> Iterator[list[dict]]:
    """The matches page by page, on a read connection held for the whole export."""
    with read_only(rt.engine) as conn:
        after = 0
        while True:
            page = segments.query(
                conn, actor.org_id, entity, filters, after_id=after, limit=segments.PAGE_MAX, now=now, viewer=actor
            )
            if page["items"]:
                yield page["items"]
            if page["next_after"] is None:
                return
            after = page["next_after"]


def _start(
    rt, actor: Actor, segment_id: int | None, entity: str, filters: dict | None, fmt: str
) -> tuple[str, dict, str]:
    """Checks done before the first byte is sent (so a refusal is a clean HTTP error, not a cut
    stream): the actor, the segment's visibility, the filter, the format. Audited."""
    if fmt not in ("csv", "vcard", "vcard3"):
        raise Invalid("format must be csv, vcard or vcard3", field="format")
    with write_transaction(rt.engine) as conn:
        authorise(conn, actor, admin=False)
        if segment_id is not None:
            seg = segments.get_segment(conn, actor, segment_id)
            entity, filters, name = seg["entity"], seg["filters"], seg["name"]
        else:
            if entity not in segments.ENTITIES:
                raise Invalid("entity must be contacts or companies", field="entity")
            filters, name = segments.clean_filters(filters), entity
        if fmt != "csv" and entity != "contacts":
            raise Invalid("vCards hold contacts: export companies as CSV", field="format")
        audit.record(
            conn,
            actor.org_id,
            actor.user_id,
            "segment.export",
            f"segment:{segment_id}" if segment_id is not None else entity,
            {"format": fmt, "filters": sorted(filters)},  # which filters, not their values
        )
    return entity, filters, name


def export_segment(
    rt,
    actor: Actor,
    *,
    segment_id: int | None = None,
    entity: str = "contacts",
    filters: dict | None = None,
    fmt: str = "csv",
) -> tuple[str, Iterator[str]]:
    """(file name stem, text chunks) of a saved segment or an unsaved filter."""
    entity, filters, name = _start(rt, actor, segment_id, entity, filters, fmt)
    now = utcnow()

    def csv_rows() -> Iterator[str]:
        columns, cells = (
            (CONTACT_COLUMNS, _contact_cells) if entity == "contacts" else (COMPANY_COLUMNS, _company_cells)
        )
        yield _csv_line(columns)
        for page in _matches(rt, actor, entity, filters, now):
            yield "".join(_csv_line(cells(r)) for r in page)

    def cards() -> Iterator[str]:
        version = "3.0" if fmt == "vcard3" else "4.0"
        with read_only(rt.engine) as conn:
            for page in _matches(rt, actor, entity, filters, now):
                extra: dict[int, list[str]] = {}
                ca = ContactAddress.__table__
                for cid, address in conn.execute(
                    select(ca.c.contact_id, ca.c.address)
                    .where(ca.c.org_id == actor.org_id, ca.c.contact_id.in_([r["id"] for r in page]))
                    .order_by(ca.c.id)
                ):
                    extra.setdefault(cid, []).append(address)
                yield "".join(write_card({**r, "addresses": extra.get(r["id"], [])}, version) for r in page)

    return name, (csv_rows() if fmt == "csv" else cards())


# -- the organisation as JSON -----------------------------------------------------------------------


def _rows(conn: Connection, table, org_id: int, columns=None) -> Iterator[dict]:
    """Every row of one organisation's table, by id, CHUNK at a time."""
    after = 0
    cols = columns or list(table.c)
    while True:
        batch = (
            conn.execute(
                select(*cols).where(table.c.org_id == org_id, table.c.id > after).order_by(table.c.id).limit(CHUNK)
            )
            .mappings()
            .all()
        )
        if not batch:
            return
        yield from batch
        after = batch[-1]["id"]


def _dump(value) -> str:
    return json.dumps(value, default=_iso, ensure_ascii=False)


def export_org(rt, actor: Actor) -> Iterator[str]:
    """The organisation as one JSON document, produced as chunks: users (no tokens), companies,
    contacts (with all their addresses), interactions' metadata (kind, time, direction, subject,
    thread and participants; no mail bodies), notes, tasks, pipelines and deals. Admins only;
    audited before the first byte."""
    with write_transaction(rt.engine) as conn:
        authorise(conn, actor, admin=True)
        audit.record(conn, actor.org_id, actor.user_id, "org.export", f"org:{actor.org_id}", {"format": "json"})
    org_id = actor.org_id
    O, U, K, C, CA = (
        Organisation.__table__,
        User.__table__,
        Company.__table__,
        Contact.__table__,
        ContactAddress.__table__,
    )
    I, P, PL, PS, D, DC = (
        Interaction.__table__,
        Participant.__table__,
        Pipeline.__table__,
        PipelineStage.__table__,
        Deal.__table__,
        DealContact.__table__,
    )

    def section(name: str, items: Iterator[dict], first: bool = False) -> Iterator[str]:
        yield ("" if first else ",\n") + _dump(name) + ": ["
        sep = "\n"
        for item in items:
            yield sep + _dump(item)
            sep = ",\n"
        yield "\n]"

    def generate() -> Iterator[str]:
        with read_only(rt.engine) as conn:
            if conn.dialect.name == "postgresql":
                # One snapshot for the whole document: rows written meanwhile never half-appear.
                conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            org = conn.execute(select(O.c.id, O.c.name, O.c.internal_domains).where(O.c.id == org_id)).mappings().one()
            yield "{" + _dump("format") + ": " + _dump("threadline-org-export") + ", " + _dump("version") + ": 1,\n"
            yield _dump("exported_at") + ": " + _dump(utcnow()) + ",\n"
            yield (
                _dump("organisation")
                + ": "
                + _dump({"id": org["id"], "name": org["name"], "domains": list(org["internal_domains"] or [])})
            )
            yield from section(
                "users",
                (
                    {k: r[k] for k in ("id", "email", "name", "role", "active")}
                    for r in _rows(conn, U, org_id, [U.c.id, U.c.email, U.c.name, U.c.role, U.c.active])
                ),
            )
            yield from section(
                "companies",
                (
                    dict(r)
                    for r in _rows(conn, K, org_id, [K.c.id, K.c.domain, K.c.name, K.c.key_account, K.c.created_at])
                ),
            )

            def contacts() -> Iterator[dict]:
                for r in _rows(conn, C, org_id):
                    yield {
                        k: r[k]
                        for k in (
                            "id",
                            "name",
                            "primary_email",
                            "company_id",
                            "title",
                            "phone",
                            "stage",
                            "tags",
                            "owner_id",
                            "key_account",
                            "created_at",
                        )
                    }

            # Addresses come as their own list (one row each) so contacts stay one read per chunk.
            yield from section("contacts", contacts())
            yield from section(
                "contact_addresses",
                (dict(r) for r in _rows(conn, CA, org_id, [CA.c.id, CA.c.contact_id, CA.c.address])),
            )

            def interactions(kinds: tuple[str, ...], fields: tuple[str, ...]) -> Iterator[dict]:
                after = 0
                while True:
                    batch = (
                        conn.execute(
                            select(*[I.c[f] for f in ("id", *fields)])
                            .where(I.c.org_id == org_id, I.c.kind.in_(kinds), I.c.id > after)
                            .order_by(I.c.id)
                            .limit(CHUNK)
                        )
                        .mappings()
                        .all()
                    )
                    if not batch:
                        return
                    people: dict[int, list] = {}
                    for p in conn.execute(
                        select(P.c.interaction_id, P.c.address, P.c.role, P.c.contact_id, P.c.user_id)
                        .where(P.c.org_id == org_id, P.c.interaction_id.in_([b["id"] for b in batch]))
                        .order_by(P.c.interaction_id, P.c.id)
                    ).mappings():
                        people.setdefault(p["interaction_id"], []).append(
                            {k: p[k] for k in ("address", "role", "contact_id", "user_id")}
                        )
                    for b in batch:
                        yield {**dict(b), "participants": people.get(b["id"], [])}
                    after = batch[-1]["id"]

            meta = ("kind", "occurred_at", "direction", "subject", "thread_key", "from_address", "ends_at", "status")
            yield from section("interactions", interactions(("email", "meeting"), meta))
            yield from section("notes", interactions(("note",), ("occurred_at", "body", "author_id", "created_at")))
            yield from section(
                "tasks",
                interactions(("task",), ("occurred_at", "body", "author_id", "due_at", "done_at", "created_at")),
            )
            yield from section(
                "pipelines", (dict(r) for r in _rows(conn, PL, org_id, [PL.c.id, PL.c.name, PL.c.position]))
            )
            yield from section(
                "pipeline_stages",
                (
                    dict(r)
                    for r in _rows(
                        conn,
                        PS,
                        org_id,
                        [PS.c.id, PS.c.pipeline_id, PS.c.name, PS.c.position, PS.c.kind, PS.c.probability],
                    )
                ),
            )

            def deals() -> Iterator[dict]:
                batch: list[dict] = []

                def flush() -> Iterator[dict]:
                    people: dict[int, list[int]] = {}
                    for deal_id, contact_id in conn.execute(
                        select(DC.c.deal_id, DC.c.contact_id)
                        .where(DC.c.org_id == org_id, DC.c.deal_id.in_([b["id"] for b in batch]))
                        .order_by(DC.c.deal_id, DC.c.contact_id)
                    ):
                        people.setdefault(deal_id, []).append(contact_id)
                    for b in batch:
                        yield {**b, "contact_ids": people.get(b["id"], [])}

                for r in _rows(conn, D, org_id):
                    batch.append(dict(r))
                    if len(batch) == CHUNK:
                        yield from flush()
                        batch = []
                if batch:
                    yield from flush()

            yield from section("deals", deals())
            yield "\n}\n"

    return generate()
