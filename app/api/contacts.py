"""Contacts: look a person up by email, search, page through their timeline."""

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Response

from app.api.deps import Caller, CallerDep, PendingToken, RuntimeDep, caller_checked_with_read, read_conn, run_db_as
from app.api.schemas import ContactCard, ContactHit, Lookup, LookupMiss, TimelinePage
from app.services import timeline

router = APIRouter(tags=["contacts"])

MAX_EMAIL = 320
MAX_LIMIT = 100
_LIMITS = frozenset(str(n) for n in range(1, MAX_LIMIT + 1))


def _lookup_query_ok(query) -> bool:
    """The lookup's query string will pass validation: `email` present and short enough,
    `limit` absent or written plainly in range. Anything else (rare: the sidebar sends only
    the address) has its token checked before validation, as every endpoint does."""
    email, limit = query.get("email"), query.get("limit")
    return email is not None and len(email) <= MAX_EMAIL and (limit is None or limit in _LIMITS)


def _lookup_or_unknown(conn, caller: Caller, email: str, limit: int) -> tuple[dict | None, dict | None]:
    """(the lookup, None), or (None, what is known around the address) when it is no contact."""
    data = timeline.lookup(conn, caller.org_id, email, limit)
    if data is None:
        return None, timeline.unknown_address(conn, caller.org_id, email)
    return data, None


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
    caller: Annotated[Caller | PendingToken, Depends(caller_checked_with_read(_lookup_query_ok))],
    rt: RuntimeDep,
    email: Annotated[str, Query(max_length=MAX_EMAIL)],
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
):
    # The token check, the lookup and (for an unknown address) what is known around it: one
    # database call (on PostgreSQL one thread-pool hop and connection, where it was two, three
    # for an unknown address).
    data, about = await run_db_as(rt, caller, _lookup_or_unknown, email, limit)
    if data is None:
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
