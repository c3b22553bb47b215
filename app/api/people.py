"""Contacts created and edited from the sidebar, and a rep's "never log"."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from app.api.deps import CallerDep, RuntimeDep, read_conn
from app.api.schemas import ContactCard, ContactConflict, Me, NeverLogConsequence, NeverLogRule
from app.models import Organisation, User
from app.services import people
from app.services.actor import Actor

router = APIRouter(tags=["contacts"])
Tag = Annotated[str, Field(max_length=200)]


class ContactIn(BaseModel):
    email: Annotated[str, Field(min_length=3, max_length=320)]
    name: Annotated[str, Field(max_length=300)] = ""
    title: Annotated[str | None, Field(max_length=300)] = None
    phone: Annotated[str | None, Field(max_length=100)] = None
    stage: str | None = None
    tags: Annotated[list[Tag], Field(max_length=100)] = []
    owner_id: int | None = None


class ContactPatch(BaseModel):
    """Fields sent are set and, for those signatures fill in, marked as typed: a later
    signature never replaces them."""

    name: Annotated[str | None, Field(max_length=300)] = None
    title: Annotated[str | None, Field(max_length=300)] = None
    phone: Annotated[str | None, Field(max_length=100)] = None
    mobile: Annotated[str | None, Field(max_length=100)] = None
    website: Annotated[str | None, Field(max_length=300)] = None
    company_name: Annotated[str | None, Field(max_length=300)] = None
    stage: str | None = None
    tags: Annotated[list[Tag] | None, Field(max_length=100)] = None
    owner_id: int | None = None


class NeverLogIn(BaseModel):
    email: Annotated[str, Field(min_length=3, max_length=320)]
    scope: Literal["address", "domain"] = "address"


@router.get("/api/me", summary="Who the token belongs to (the sidebar's sign-in check)")
def me(caller: CallerDep, rt: RuntimeDep) -> Me:
    with read_conn(rt) as conn:
        row = conn.execute(
            select(User.__table__.c.name, Organisation.__table__.c.name.label("org"))
            .join(Organisation.__table__, Organisation.__table__.c.id == User.__table__.c.org_id)
            .where(User.__table__.c.id == caller.user_id)
        ).first()
    return Me(
        id=caller.user_id,
        email=caller.email,
        name=row.name if row else "",
        organisation=row.org if row else "",
        organisation_id=caller.org_id,
        role=caller.role,
        stages=list(people.STAGES),
    )


@router.get("/api/stages", summary="The lifecycle stages, in order")
def stages(caller: CallerDep) -> list[str]:
    return list(people.STAGES)


@router.post(
    "/api/contacts",
    status_code=201,
    response_model=ContactCard,
    summary="Create a contact (company from the address's domain)",
    responses={409: {"model": ContactConflict, "description": "the address is already a contact"}},
)
def create(caller: CallerDep, rt: RuntimeDep, body: ContactIn) -> Any:
    return people.create_contact(
        rt,
        Actor.of(caller),
        email=body.email,
        name=body.name,
        title=body.title,
        phone=body.phone,
        stage=body.stage,
        tags=body.tags,
        owner_id=body.owner_id,
    )


@router.patch(
    "/api/contacts/{contact_id}", response_model=ContactCard, summary="Edit a contact's fields, tags, stage or owner"
)
def edit(caller: CallerDep, rt: RuntimeDep, contact_id: int, body: ContactPatch) -> Any:
    changes = {k: getattr(body, k) for k in body.model_fields_set}
    return people.update_contact(rt, Actor.of(caller), contact_id, changes)


@router.get(
    "/api/never-log",
    response_model=NeverLogConsequence,
    summary="What never logging this address (or domain) would delete from my mail",
)
def never_log_consequence(
    caller: CallerDep,
    rt: RuntimeDep,
    email: Annotated[str, Query(min_length=3, max_length=320)],
    scope: Literal["address", "domain"] = "address",
) -> Any:
    with read_conn(rt) as conn:
        return people.never_log_consequence(conn, caller.org_id, caller.user_id, email=email, scope=scope)


@router.post(
    "/api/never-log",
    status_code=201,
    response_model=NeverLogRule,
    summary="Never log this address (or domain) from my mail",
)
def never_log(caller: CallerDep, rt: RuntimeDep, body: NeverLogIn) -> Any:
    return people.never_log(rt, Actor.of(caller), email=body.email, scope=body.scope)
