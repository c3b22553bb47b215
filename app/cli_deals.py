"""`threadline deal ...` and `threadline pipeline ...`: deals and pipelines for admins at the
server (as the operator: every deal, audited as "system"). Names and subjects come from
mail: printed as plain text (the consoles have markup off)."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Optional

import typer
from rich.table import Table

from app.cli import OrgOpt, _json_default, _operator, _rt, app, out
from app.db import read_only
from app.services import deals, orgs as org_service
from app.services.errors import Invalid

deal_app = typer.Typer(help="Deals: list, show, create, move.", no_args_is_help=True)
pipeline_app = typer.Typer(help="Pipelines and their stages.", no_args_is_help=True)
app.add_typer(deal_app, name="deal")
app.add_typer(pipeline_app, name="pipeline")
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _json(data) -> None:
    def default(value):
        return value.isoformat() if isinstance(value, date) else _json_default(value)

    out.print_json(json.dumps(data, default=default))


def _stage_id(conn, org_id: int, pipeline_id: int | None, name: str) -> int:
    for p in deals.pipelines(conn, org_id):
        if pipeline_id is not None and p["id"] != pipeline_id:
            continue
        for s in p["stages"]:
            if s["name"].lower() == name.strip().lower():
                return s["id"]
    raise Invalid(f"no stage called {name!r}", field="stage")


@deal_app.command("list")
def deal_list(
    status: Annotated[str, typer.Option(help="open | won | lost | all")] = "open",
    pipeline: Annotated[Optional[int], typer.Option(help="Pipeline id (all pipelines when omitted).")] = None,
    owner: Annotated[Optional[str], typer.Option(help="Only this rep's deals.")] = None,
    org: OrgOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The organisation's deals, by stage."""
    rt = _rt()
    actor = _operator(rt, org)
    with read_only(rt.engine) as conn:
        owner_id = org_service.user_id_by_email(conn, actor.org_id, owner, "owner") if owner else None
        rows = deals.list_deals(conn, actor, pipeline_id=pipeline, status=status, owner_id=owner_id, limit=1000)
    if as_json:
        _json(rows)
        return
    table = Table("id", "deal", "company", "stage", "amount", "close", "owner")
    for d in rows:
        table.add_row(
            str(d["id"]),
            d["name"],
            (d["company"] or {}).get("name") or "",
            d["stage"]["name"],
            d["amount"],
            d["close_date"].isoformat() if d["close_date"] else "",
            d["owner"]["email"] or "",
        )
    out.print(table)


@deal_app.command("show")
def deal_show(deal_id: int, org: OrgOpt = None, as_json: JsonOpt = False) -> None:
    """One deal: its people, linked threads and stage history."""
    rt = _rt()
    actor = _operator(rt, org)
    with read_only(rt.engine) as conn:
        d = deals.deal(conn, actor, deal_id)
    if as_json:
        _json(d)
        return
    lines = [
        f"deal {d['id']}: {d['name']}",
        f"stage: {d['stage']['name']} ({d['stage']['probability']}%)",
        f"amount: {d['amount']}",
        f"company: {(d['company'] or {}).get('name') or '-'}",
        f"owner: {d['owner']['email']}",
        f"expected close: {d['close_date'] or '-'}",
    ]
    if d["lost_reason"]:
        lines.append(f"lost because: {d['lost_reason']}")
    lines.append("contacts: " + (", ".join(f"{c['name'] or c['email']} <{c['email']}>" for c in d["contacts"]) or "-"))
    lines.append(f"linked threads: {len(d['thread_keys'])}")
    lines.append("history:")
    for h in d["history"]:
        who = (h["user"] or {}).get("name") or "system"
        came = f"{h['from_stage']['name']} -> " if h["from_stage"] else "created in "
        lines.append(f"  {h['at']:%Y-%m-%d %H:%M} {came}{h['to_stage']['name']} by {who}")
    for line in lines:
        out.print(line, highlight=False)


@deal_app.command("create")
def deal_create(
    name: Annotated[str, typer.Option(help="What is being sold, e.g. 'Acme: 200 seats'.")],
    owner: Annotated[str, typer.Option(help="The rep who owns the deal.")],
    contact: Annotated[Optional[list[str]], typer.Option(help="A contact's email (repeat for several).")] = None,
    amount: Annotated[str, typer.Option(help="e.g. 12500.00")] = "0",
    currency: Annotated[str, typer.Option(help="ISO 4217 code.")] = "EUR",
    close_date: Annotated[Optional[str], typer.Option("--close-date", help="Expected close, YYYY-MM-DD.")] = None,
    stage: Annotated[Optional[str], typer.Option(help="Stage name (the first open stage when omitted).")] = None,
    pipeline: Annotated[Optional[int], typer.Option(help="Pipeline id (the first when omitted).")] = None,
    org: OrgOpt = None,
) -> None:
    """Create a deal for a rep."""
    rt = _rt()
    actor = _operator(rt, org)
    minor = deals.parse_amount(amount, currency)
    with read_only(rt.engine) as conn:
        owner_id = org_service.user_id_by_email(conn, actor.org_id, owner, "owner")
        contact_ids = [deals.contact_id_by_email(conn, actor.org_id, e) for e in contact or ()]
        stage_id = _stage_id(conn, actor.org_id, pipeline, stage) if stage else None
    d = deals.create_deal(
        rt,
        actor,
        name=name,
        owner_id=owner_id,
        contact_ids=contact_ids,
        amount_minor=minor,
        currency=currency,
        close_date=close_date,
        stage_id=stage_id,
        pipeline_id=pipeline,
    )
    out.print(f"deal {d['id']} created in {d['stage']['name']}: {d['name']} ({d['amount']})", highlight=False)


@deal_app.command("move")
def deal_move(
    deal_id: int,
    stage: Annotated[str, typer.Option(help="The stage's name.")],
    reason: Annotated[Optional[str], typer.Option(help="Why it was lost (a lost stage needs one).")] = None,
    org: OrgOpt = None,
) -> None:
    """Move a deal to another stage of its pipeline."""
    rt = _rt()
    actor = _operator(rt, org)
    with read_only(rt.engine) as conn:
        pipeline_id = deals.deal(conn, actor, deal_id)["pipeline_id"]
        stage_id = _stage_id(conn, actor.org_id, pipeline_id, stage)
    changes: dict = {"stage_id": stage_id}
    if reason:
        changes["lost_reason"] = reason
    d = deals.update_deal(rt, actor, deal_id, changes)
    out.print(f"deal {d['id']} is now in {d['stage']['name']}", highlight=False)


@pipeline_app.command("list")
def pipeline_list(org: OrgOpt = None, as_json: JsonOpt = False) -> None:
    """Pipelines and their stages, in order."""
    rt = _rt()
    actor = _operator(rt, org)
    with read_only(rt.engine) as conn:
        rows = deals.pipelines(conn, actor.org_id)
    if as_json:
        _json(rows)
        return
    for p in rows:
        stages = ", ".join(f"{s['name']} ({s['kind']}, {s['probability']}%)" for s in p["stages"])
        out.print(f"{p['id']} {p['name']}: {stages}", highlight=False)


@pipeline_app.command("create")
def pipeline_create(
    name: str,
    stage: Annotated[
        Optional[list[str]],
        typer.Option(help="NAME[:open|won|lost[:PROBABILITY]], in order (repeat); the usual six when omitted."),
    ] = None,
    org: OrgOpt = None,
) -> None:
    """Create a pipeline."""
    stages = None
    if stage:
        stages = []
        for spec in stage:
            parts = spec.split(":")
            item: dict = {"name": parts[0], "kind": parts[1] if len(parts) > 1 else "open"}
            if len(parts) > 2:
                try:
                    item["probability"] = int(parts[2])
                except ValueError:
                    raise Invalid(f"not a percentage: {parts[2]!r}", field="stage") from None
            stages.append(item)
    rt = _rt()
    p = deals.create_pipeline(rt, _operator(rt, org), name=name, stages=stages)
    out.print(f"pipeline {p['id']} {p['name']}: {len(p['stages'])} stages", highlight=False)
