"""Contacts: look a person up by email, search, page through their timeline."""
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from app.api.deps import CallerDep, ConnDep
from app.api.schemas import ContactCard, ContactHit, Lookup, TimelinePage
from app.services import timeline

router = APIRouter(tags=["contacts"])


@router.get("/api/lookup", response_model=Lookup, summary="Everything known about one email address")
def lookup(caller: CallerDep, conn: ConnDep, email: Annotated[str, Query(max_length=320)],
           limit: Annotated[int, Query(ge=1, le=100)] = 20):
    data = timeline.lookup(conn, caller.org_id, email, limit)
    if data is None:
        raise HTTPException(404, "no contact with this address")
    return data


@router.get("/api/contacts", response_model=list[ContactHit], summary="Search contacts by name or email prefix")
def search(caller: CallerDep, conn: ConnDep, q: Annotated[str, Query(min_length=1, max_length=200)],
           limit: Annotated[int, Query(ge=1, le=100)] = 20):
    return timeline.search_contacts(conn, caller.org_id, q, limit)


@router.get("/api/contacts/{contact_id}", response_model=ContactCard)
def card(caller: CallerDep, conn: ConnDep, contact_id: int):
    data = timeline.contact_card(conn, caller.org_id, contact_id)
    if data is None:
        raise HTTPException(404, "no such contact")
    return data


@router.get("/api/contacts/{contact_id}/timeline", response_model=TimelinePage)
def contact_timeline(caller: CallerDep, conn: ConnDep, contact_id: int, cursor: str | None = None,
                     limit: Annotated[int, Query(ge=1, le=100)] = 20):
    if timeline.contact_card(conn, caller.org_id, contact_id) is None:
        raise HTTPException(404, "no such contact")
    try:
        return timeline.contact_timeline(conn, caller.org_id, contact_id, cursor, limit)
    except timeline.BadCursor as exc:
        raise HTTPException(400, str(exc)) from exc
