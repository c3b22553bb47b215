"""Saved segments, contact and company import, and exports (segment CSV/vCard, the organisation as JSON)."""

from __future__ import annotations

from typing import Annotated, Optional

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import StreamingResponse

from app.api.deps import AdminDep, CallerDep, RuntimeDep, read_conn
from app.api.segment_schemas import (
    Deleted,
    ImportPreview,
    ImportResult,
    Segment,
    SegmentIn,
    SegmentPage,
    SegmentPatch,
)
from app.services import exports, imports, segments
from app.services.actor import Actor

router = APIRouter(tags=["segments"])

Limit = Annotated[int, Query(ge=1, le=segments.PAGE_MAX)]


def _filters(model) -> dict:
    return {k: v for k, v in model.model_dump().items() if v is not None}


@router.get("/api/segments", response_model=list[Segment], summary="Saved segments: shared ones and your own")
def list_segments(caller: CallerDep, rt: RuntimeDep, entity: Optional[str] = None):
    with read_conn(rt) as conn:
        return segments.list_segments(conn, Actor.of(caller), entity)


@router.post("/api/segments", response_model=Segment, status_code=201, summary="Save a filter by name")
def create_segment(caller: CallerDep, rt: RuntimeDep, body: SegmentIn):
    return segments.create_segment(
        rt, Actor.of(caller), name=body.name, entity=body.entity, filters=_filters(body.filters), shared=body.shared
    )


@router.get(
    "/api/segment-query",
    response_model=SegmentPage,
    summary="Contacts or companies matching a filter (unsaved), a page at a time",
)
def query(
    caller: CallerDep,
    rt: RuntimeDep,
    entity: str = "contacts",
    tags: Annotated[Optional[str], Query(description="comma-separated; all must be present")] = None,
    stage: Annotated[Optional[str], Query(description="comma-separated; any of them")] = None,
    owner_id: Optional[str] = None,
    domain: Optional[str] = None,
    last_before: Optional[str] = None,
    last_after: Optional[str] = None,
    min_strength: Optional[str] = None,
    max_strength: Optional[str] = None,
    has_open_deal: Optional[str] = None,
    q: Optional[str] = None,
    after: int = 0,
    limit: Limit = 50,
):
    raw = {
        "tags": tags,
        "stage": stage,
        "owner_id": owner_id,
        "domain": domain,
        "last_before": last_before,
        "last_after": last_after,
        "min_strength": min_strength,
        "max_strength": max_strength,
        "has_open_deal": has_open_deal,
        "q": q,
    }
    filters = segments.clean_filters(raw)
    with read_conn(rt) as conn:
        page = segments.query(
            conn, caller.org_id, entity, filters, after_id=after, limit=limit, viewer=Actor.of(caller)
        )
        return {**page, "segment": None}


@router.get("/api/segments/{segment_id}/items", response_model=SegmentPage, summary="A saved segment's matches")
def segment_items(caller: CallerDep, rt: RuntimeDep, segment_id: int, after: int = 0, limit: Limit = 50):
    with read_conn(rt) as conn:
        return segments.run_segment(conn, Actor.of(caller), segment_id, after_id=after, limit=limit)


@router.patch("/api/segments/{segment_id}", response_model=Segment)
def update_segment(caller: CallerDep, rt: RuntimeDep, segment_id: int, body: SegmentPatch):
    changes = body.model_dump(exclude_unset=True)
    if "filters" in changes and body.filters is not None:
        changes["filters"] = _filters(body.filters)
    return segments.update_segment(rt, Actor.of(caller), segment_id, changes)


@router.delete("/api/segments/{segment_id}", response_model=Deleted)
def delete_segment(caller: CallerDep, rt: RuntimeDep, segment_id: int):
    segments.delete_segment(rt, Actor.of(caller), segment_id)
    return {"deleted": segment_id}


# JSON, named as Threadline's own document so a client knows the shape it will get.
ORG_EXPORT_MEDIA = "application/vnd.threadline.org-export+json"
_MEDIA = {"csv": ("text/csv; charset=utf-8", "csv"), "vcard": ("text/vcard; charset=utf-8", "vcf")}


@router.get(
    "/api/export/segments/{segment_id}",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {
                "text/csv": {"schema": {"type": "string", "description": "a header row, then one row per match"}},
                "text/vcard": {"schema": {"type": "string", "description": "one vCard per contact"}},
            }
        }
    },
    summary="A saved segment as CSV (formulas neutralised) or vCard 4.0 (`vcard`) / 3.0 (`vcard3`), streamed",
)
def export_segment(caller: CallerDep, rt: RuntimeDep, segment_id: int, format: str = "csv"):
    name, chunks = exports.export_segment(rt, Actor.of(caller), segment_id=segment_id, fmt=format)
    media, ext = _MEDIA["csv" if format == "csv" else "vcard"]
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)[:60] or "segment"
    return StreamingResponse(
        (c.encode("utf-8") for c in chunks),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{safe}.{ext}"'},
    )


@router.get(
    "/api/export/org",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {
                ORG_EXPORT_MEDIA: {
                    "schema": {
                        "type": "string",
                        "description": "one JSON object: format, version, organisation, users, companies, contacts, "
                        "contact_addresses, interactions, notes, tasks, pipelines, pipeline_stages, deals",
                    }
                }
            }
        }
    },
    summary="The whole organisation as JSON (contacts, companies, interactions' metadata, notes, tasks, deals), streamed",
)
def export_org(caller: AdminDep, rt: RuntimeDep):
    chunks = exports.export_org(rt, Actor.of(caller))
    return StreamingResponse(
        (c.encode("utf-8") for c in chunks),
        media_type=ORG_EXPORT_MEDIA,
        headers={"Content-Disposition": 'attachment; filename="threadline-export.json"'},
    )


def _mapping(text: str | None) -> dict[str, str]:
    import json

    if text and text.strip().startswith("{"):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            from app.services.errors import Invalid

            raise Invalid("map must be a JSON object of field to column, or field=column pairs", field="map")
        return {str(k): str(v) for k, v in value.items()}
    return imports.parse_mapping(text)


@router.post(
    "/api/contacts/import",
    response_model=ImportResult,
    summary="Import contacts (or companies) from CSV or vCard in one transaction; dry_run rolls back",
)
def import_file(
    caller: AdminDep,
    rt: RuntimeDep,
    file: Annotated[UploadFile, File(description="the CSV or vCard file")],
    entity: Annotated[str, Form()] = "contacts",
    format: Annotated[str, Form()] = "csv",
    map: Annotated[
        Optional[str], Form(description='field=column pairs ("email=E-mail,name=Full name") or JSON')
    ] = None,
    encoding: Annotated[Optional[str], Form()] = None,
    dry_run: Annotated[bool, Form()] = False,
    skip_invalid: Annotated[bool, Form(description="import the good rows when some are in error")] = False,
):
    return imports.run_import(
        rt,
        Actor.of(caller),
        file.file,
        entity=entity,
        fmt=format,
        mapping=_mapping(map),
        encoding=encoding or None,
        dry_run=dry_run,
        skip_invalid=skip_invalid,
        source_name=file.filename or "",
    )


@router.post(
    "/api/contacts/import/preview",
    response_model=ImportPreview,
    summary="How a file would be read: encoding, columns, mapping and its first rows with their errors",
)
def import_preview(
    caller: AdminDep,
    rt: RuntimeDep,
    file: Annotated[UploadFile, File()],
    entity: Annotated[str, Form()] = "contacts",
    format: Annotated[str, Form()] = "csv",
    map: Annotated[Optional[str], Form()] = None,
    encoding: Annotated[Optional[str], Form()] = None,
):
    return imports.preview(
        rt, Actor.of(caller), file.file, entity=entity, fmt=format, mapping=_mapping(map), encoding=encoding or None
    )
