"""Console pages for contacts: the list with its segment picker and filter (save it as a segment,
export it), and the import page (mapping, preview, dry run, import), which calls the two JSON
actions below from app/admin/static/import.js so the chosen file stays chosen between steps."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from app.api.admin_pages import ADMIN_DIR, Console, _form, console, refused, render
from app.api.deps import runtime_of
from app.db import read_only
from app.models import User
from app.services import exports, imports, segments
from app.services.errors import ServiceError, http_status
from app.services.people import STAGES

router = APIRouter(prefix="/admin", include_in_schema=False, default_response_class=HTMLResponse)
U = User.__table__
FILTER_FIELDS = segments.FILTER_KEYS


def _raw_filters(params) -> dict:
    return {k: params.get(k) for k in FILTER_FIELDS if params.get(k) not in (None, "")}


@router.get("/contacts")
def contacts_page(request: Request, con: Console = Depends(console)) -> HTMLResponse:
    rt = runtime_of(request)
    params = request.query_params
    entity = params.get("entity") or "contacts"
    chosen = None
    status, error, error_field = 200, None, None
    page = {"items": [], "next_after": None}
    raw = _raw_filters(params)
    with read_only(rt.engine) as conn:
        saved = segments.list_segments(conn, con.actor)
        users = conn.execute(
            U.select().with_only_columns(U.c.id, U.c.email).where(U.c.org_id == con.org_id).order_by(U.c.email)
        ).all()
        try:
            if params.get("segment"):
                seg_id = int(params["segment"]) if params["segment"].isdigit() else -1
                chosen = segments.get_segment(conn, con.actor, seg_id)
                entity, filters = chosen["entity"], chosen["filters"]
                raw = dict(filters)
            else:
                filters = segments.clean_filters(raw)
            after = int(params.get("after") or 0) if (params.get("after") or "0").isdigit() else 0
            page = segments.query(conn, con.org_id, entity, filters, after_id=after, limit=50, viewer=con.actor)
        except ServiceError as exc:
            status, error, error_field = http_status(exc), exc.reason, exc.field
    shown = {k: (", ".join(v) if isinstance(v, list) else ("" if v is None else str(v))) for k, v in raw.items()}
    return render(
        request,
        "contacts.html",
        con,
        status=status,
        error=error,
        error_field=error_field,
        entity=entity,
        saved=saved,
        chosen=chosen,
        filters=shown,
        page=page,
        stages=STAGES,
        users=users,
        query=str(request.url.query),
    )


@router.post("/segments")
async def save_segment(request: Request, con: Console = Depends(console)) -> Response:
    form = await _form(request)
    raw = _raw_filters(form)
    try:
        seg = segments.create_segment(
            runtime_of(request),
            con.actor,
            name=str(form.get("name", "")),
            entity=str(form.get("entity") or "contacts"),
            filters=raw,
            shared=form.get("shared") == "1",
        )
    except ServiceError as exc:
        with read_only(runtime_of(request).engine) as conn:
            saved = segments.list_segments(conn, con.actor)
        return render(
            request,
            "contacts.html",
            con,
            **refused(exc),
            entity=str(form.get("entity") or "contacts"),
            saved=saved,
            chosen=None,
            filters={k: str(v) for k, v in raw.items()},
            page={"items": [], "next_after": None},
            stages=STAGES,
            users=[],
            query="",
        )
    return RedirectResponse(f"/admin/contacts?segment={seg['id']}", status_code=303)


@router.get("/contacts/export")
def export_contacts(request: Request, con: Console = Depends(console)) -> Response:
    params = request.query_params
    fmt = params.get("format") or "csv"
    seg = params.get("segment")
    name, chunks = exports.export_segment(
        runtime_of(request),
        con.actor,
        segment_id=int(seg) if seg and seg.isdigit() else None,
        entity=params.get("entity") or "contacts",
        filters=None if seg else _raw_filters(params),
        fmt=fmt,
    )
    ext, media = ("csv", "text/csv; charset=utf-8") if fmt == "csv" else ("vcf", "text/vcard; charset=utf-8")
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)[:60] or "contacts"
    return StreamingResponse(
        (c.encode("utf-8") for c in chunks),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{safe}.{ext}"'},
    )


@router.get("/import")
def import_page(request: Request, con: Console = Depends(console)) -> HTMLResponse:
    return render(request, "import.html", con, fields=imports.ENTITY_FIELDS)


@router.get("/static/import.js")
def import_script() -> Response:
    return Response(
        (ADMIN_DIR / "static" / "import.js").read_text(),
        media_type="text/javascript",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )
