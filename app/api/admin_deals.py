"""The console's deals page (/admin/deals): pipelines and their stages, the open deals,
creating a pipeline or a deal for a rep, and which deals reps see. Each form calls its use
case in app/services/deals.py; a refusal shows the page again with the reason and field."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from app.api.admin_pages import Console, _form, back, console, refused, render
from app.api.deps import runtime_of
from app.db import read_only
from app.services import deals, orgs
from app.services.errors import Invalid, ServiceError

router = APIRouter(prefix="/admin", include_in_schema=False, default_response_class=HTMLResponse)


def _page(request: Request, con: Console, status: int = 200, **ctx) -> HTMLResponse:
    with read_only(runtime_of(request).engine) as conn:
        ctx.update(
            pipelines=deals.pipelines(conn, con.org_id),
            deals=deals.list_deals(conn, con.actor, status="all", limit=500),
            users=[u for u in orgs.list_users(conn, con.org_id) if u["active"]],
            visibility=deals.visibility(conn, con.org_id),
            currencies=sorted(deals.CURRENCIES),
        )
    return render(request, "deals.html", con, status=status, **ctx)


@router.get("/deals")
def deals_page(request: Request, con: Console = Depends(console)) -> HTMLResponse:
    return _page(request, con)


def _stages(text: str) -> list[dict] | None:
    """One stage a line: NAME[, open|won|lost[, PROBABILITY]]."""
    out = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if not parts[0]:
            continue
        item: dict = {"name": parts[0], "kind": parts[1] if len(parts) > 1 and parts[1] else "open"}
        if len(parts) > 2 and parts[2]:
            if not parts[2].isdigit():
                raise Invalid(f"not a percentage: {parts[2]!r}", field="stages")
            item["probability"] = int(parts[2])
        out.append(item)
    return out or None


def _done(request: Request, con: Console, change, ok: str) -> Response:
    """Run a form's use case: back to the page with its message, or the page again with the refusal."""
    try:
        change(runtime_of(request))
    except ServiceError as exc:
        return _page(request, con, **refused(exc))
    return back("/admin/deals", ok)


@router.post("/deals/pipelines")
async def pipeline_add(request: Request, con: Console = Depends(console)) -> Response:
    form = await _form(request)
    name, stages = str(form.get("name", "")), str(form.get("stages", ""))
    return _done(
        request, con, lambda rt: deals.create_pipeline(rt, con.actor, name=name, stages=_stages(stages)), "pipeline"
    )


@router.post("/deals/visibility")
async def visibility_set(request: Request, con: Console = Depends(console)) -> Response:
    value = str((await _form(request)).get("deal_visibility", ""))
    return _done(request, con, lambda rt: deals.set_visibility(rt, con.actor, value), "deal_visibility")


@router.post("/deals")
async def deal_add(request: Request, con: Console = Depends(console)) -> Response:
    form = await _form(request)
    rt = runtime_of(request)
    try:
        currency = str(form.get("currency", "EUR"))
        amount = str(form.get("amount", "") or "0")
        owner = str(form.get("owner_id", ""))
        stage = str(form.get("stage_id", ""))
        with read_only(rt.engine) as conn:
            contacts = [
                deals.contact_id_by_email(conn, con.org_id, e) for e in str(form.get("contacts", "")).split() if e
            ]
        deals.create_deal(
            rt,
            con.actor,
            name=str(form.get("name", "")),
            owner_id=int(owner) if owner.isdigit() else None,
            stage_id=int(stage) if stage.isdigit() else None,
            contact_ids=contacts,
            amount_minor=deals.parse_amount(amount, currency),
            currency=currency,
            close_date=str(form.get("close_date") or "") or None,
        )
    except ServiceError as exc:
        return _page(request, con, **refused(exc))
    return back("/admin/deals", "deal")
