"""The console's duplicates page (/admin/duplicates): contacts that look like one person with
the evidence and a confidence, a merge button (with confirmation) and "not the same person",
and the latest merges with their undo. Each form calls its use case in
app/services/duplicates.py; a refusal shows the page again with the reason."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from app.api.admin_pages import OK_MESSAGES, Console, _form, back, console, refused, render
from app.api.deps import runtime_of
from app.db import read_only
from app.services import duplicates
from app.services.errors import Invalid, ServiceError

router = APIRouter(prefix="/admin", include_in_schema=False, default_response_class=HTMLResponse)

# This page's flash messages, registered beside the console's own (back() names them by key).
OK_MESSAGES.update(
    {
        "merged": "Contacts merged. The merge can be undone below or from the audit log.",
        "unmerged": "Merge undone: the contact is back with its addresses and mail.",
        "dismissed": "Noted: these two are not proposed again.",
    }
)

KIND_LABELS = {
    "address_change": "announced a new address",
    "same_name_same_company": "same name, same company",
    "same_name_linked_companies": "same name, companies of the same name",
    "same_name_in_thread": "same name, both addresses in one thread",
    "same_name_on_message": "same name, both addresses on one message",
}


def _page(request: Request, con: Console, status: int = 200, **ctx) -> HTMLResponse:
    rt = runtime_of(request)
    found = duplicates.candidates(rt, con.org_id)
    with read_only(rt.engine) as conn:
        ctx.update(
            candidates=found,
            fresh=duplicates.freshness(conn, con.org_id),
            merges=duplicates.merges_of(conn, con.org_id),
            labels=KIND_LABELS,
        )
    return render(request, "duplicates.html", con, status=status, **ctx)


@router.get("/duplicates")
def duplicates_page(request: Request, con: Console = Depends(console)) -> HTMLResponse:
    return _page(request, con)


def _done(request: Request, con: Console, change, ok: str) -> Response:
    try:
        change(runtime_of(request))
    except ServiceError as exc:
        return _page(request, con, **refused(exc))
    return back("/admin/duplicates", ok)


@router.post("/duplicates/{contact_id}/merge/{other_id}")
async def merge(request: Request, contact_id: int, other_id: int, con: Console = Depends(console)) -> Response:
    form = await _form(request)

    def change(rt):
        if form.get("confirm") != "1":
            raise Invalid("tick the box to confirm the merge", field="confirm")
        duplicates.merge(rt, con.actor, contact_id, other_id)

    return _done(request, con, change, "merged")


@router.post("/duplicates/{contact_id}/dismiss/{other_id}")
async def dismiss(request: Request, contact_id: int, other_id: int, con: Console = Depends(console)) -> Response:
    await _form(request)
    return _done(request, con, lambda rt: duplicates.dismiss(rt, con.actor, contact_id, other_id), "dismissed")


@router.post("/merges/{audit_id}/undo")
async def undo(request: Request, audit_id: int, con: Console = Depends(console)) -> Response:
    await _form(request)
    return _done(request, con, lambda rt: duplicates.unmerge(rt, con.actor, audit_id), "unmerged")
