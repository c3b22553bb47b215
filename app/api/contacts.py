"""Contacts: look a person up by email, search, page through their timeline."""

from typing import Annotated

import orjson
from fastapi import APIRouter, HTTPException, Query, Response

from app.api.deps import CallerDep, RuntimeDep, read_conn, run_db
from app.api.schemas import ContactCard, ContactHit, Lookup, LookupMiss, TimelinePage
from app.services import timeline

router = APIRouter(tags=["contacts"])


@router.get(
    "/api/lookup",
    response_model=Lookup,
    summary="Everything known about one email address",
    responses={
        404: {
            "model": LookupMiss,
            "description": "no contact with this address; `unknown` says what "
            "is known around it (its name, its company's people and colleagues)",
        }
    },
)
async def lookup(
    caller: CallerDep,
    rt: RuntimeDep,
    email: Annotated[str, Query(max_length=320)],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
):
    data = await run_db(rt, timeline.lookup, caller.org_id, email, limit)
    if data is None:
        about = await run_db(rt, timeline.unknown_address, caller.org_id, email)
        return Response(
            orjson.dumps({"detail": "no contact with this address", "unknown": about}),
            status_code=404,
            media_type="application/json",
        )
    # The sidebar's hot path: the service builds exactly the documented shape,
    # so it is encoded once here (orjson: datetimes as RFC 3339) instead of
    # validated field by field.
    return Response(orjson.dumps(data), media_type="application/json")


@router.get("/api/contacts", response_model=list[ContactHit], summary="Search contacts by name or email prefix")
def search(
    caller: CallerDep,
    rt: RuntimeDep,
    q: Annotated[str, Query(min_length=1, max_length=200)],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
):
    with read_conn(rt) as conn:
        return timeline.search_contacts(conn, caller.org_id, q, limit)


@router.get("/api/contacts/{contact_id}", response_model=ContactCard)
def card(caller: CallerDep, rt: RuntimeDep, contact_id: int):
    with read_conn(rt) as conn:
        data = timeline.contact_card(conn, caller.org_id, contact_id)
        if data is None:
            raise HTTPException(404, "no such contact")
        return data


@router.get("/api/contacts/{contact_id}/timeline", response_model=TimelinePage)
def contact_timeline(
    caller: CallerDep,
    rt: RuntimeDep,
    contact_id: int,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
):
    with read_conn(rt) as conn:
        if timeline.contact_card(conn, caller.org_id, contact_id) is None:
            raise HTTPException(404, "no such contact")
        try:
            return timeline.contact_timeline(conn, caller.org_id, contact_id, cursor, limit)
        except timeline.BadCursor as exc:
            raise HTTPException(400, str(exc)) from exc
