"""The rep's day, the follow-up queue, key accounts and relationship strength."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from app.api.deps import CallerDep, RuntimeDep, read_conn
from app.services import day as day_service, followups, strength
from app.services.actor import Actor
from app.services.errors import Forbidden

router = APIRouter(tags=["followups"])


class FollowUpItem(BaseModel):
    id: int
    kind: Literal["waiting", "owe", "quiet"]
    label: str
    subject: str | None
    who: str
    address: str | None
    contact_id: int | None
    company_id: int | None
    interaction_id: int | None
    since: datetime
    due_at: datetime
    overdue: bool


class FollowUpState(BaseModel):
    id: int
    status: str
    due_at: datetime | None


class SnoozeIn(BaseModel):
    span: Literal["1d", "1w"] = "1d"


class TaskDue(BaseModel):
    id: int
    title: str
    due_at: datetime | None
    contact_id: int | None
    who: str | None


class Attendee(BaseModel):
    name: str
    address: str
    contact_id: int | None
    last_interaction_at: datetime | None


class DayMeeting(BaseModel):
    id: int
    subject: str
    starts_at: datetime
    ends_at: datetime | None
    location: str | None
    attendees: list[Attendee]


class DealAttention(BaseModel):
    id: int
    name: str
    reason: str


class Day(BaseModel):
    now: datetime
    timezone: str
    digest_hour: int | None = Field(description="the local hour the daily digest email goes out; null: no digest")
    followups: list[FollowUpItem]
    tasks: list[TaskDue]
    meetings_today: list[DayMeeting]
    meetings_tomorrow: list[DayMeeting]
    deals: list[DealAttention]


class KeyAccountIn(BaseModel):
    kind: Literal["contact", "company"]
    id: int
    key_account: bool = True


class KeyAccount(BaseModel):
    kind: str
    id: int
    key_account: bool


class CalendarIn(BaseModel):
    timezone: Annotated[str | None, Field(max_length=100)] = None
    working_days: Annotated[list[int] | None, Field(max_length=7)] = None
    work_start_hour: int | None = None
    work_end_hour: int | None = None
    digest_enabled: bool | None = None
    digest_hour: Annotated[int | None, Field(ge=0, le=23, description="local hour the daily digest is sent")] = None


class CalendarOut(BaseModel):
    user_id: int
    timezone: str
    working_days: list[int]
    work_start_hour: int
    work_end_hour: int
    digest_enabled: bool
    digest_hour: int


class CompanyStrength(BaseModel):
    id: int
    name: str
    domain: str
    key_account: bool
    score: int
    explanation: str


@router.get("/api/me/day", response_model=Day, summary="The rep's day: follow-ups due, tasks, meetings, deals")
def my_day(caller: CallerDep, rt: RuntimeDep):
    with read_conn(rt) as conn:
        return day_service.my_day(conn, caller.org_id, caller.user_id)


@router.get("/api/followups", response_model=list[FollowUpItem], summary="Follow-ups due by the end of the rep's day")
def due(caller: CallerDep, rt: RuntimeDep, rep: Annotated[str | None, Query(max_length=320)] = None):
    with read_conn(rt) as conn:
        user_id = caller.user_id
        if rep is not None:
            user_id = followups.user_id_by_email(conn, caller.org_id, rep)
            if user_id != caller.user_id and caller.role != "admin":
                raise Forbidden("a rep sees only their own follow-ups", field="rep")
        return followups.due(conn, caller.org_id, user_id)


@router.post("/api/followups/{followup_id}/snooze", response_model=FollowUpState)
def snooze(caller: CallerDep, rt: RuntimeDep, followup_id: int, body: SnoozeIn):
    return followups.snooze(rt, Actor.of(caller), followup_id, span=body.span)


@router.post("/api/followups/{followup_id}/done", response_model=FollowUpState)
def done(caller: CallerDep, rt: RuntimeDep, followup_id: int):
    return followups.dismiss(rt, Actor.of(caller), followup_id)


@router.post("/api/key-accounts", response_model=KeyAccount, summary="Mark a contact or company a key account")
def key_account(caller: CallerDep, rt: RuntimeDep, body: KeyAccountIn):
    return followups.set_key_account(
        rt, Actor.of(caller), kind=body.kind, target_id=body.id, key_account=body.key_account
    )


@router.patch("/api/me/calendar", response_model=CalendarOut, summary="The rep's time zone, working days and digest")
def calendar(caller: CallerDep, rt: RuntimeDep, body: CalendarIn):
    return followups.set_calendar(
        rt,
        Actor.of(caller),
        caller.user_id,
        tz=body.timezone,
        working_days=body.working_days,
        start_hour=body.work_start_hour,
        end_hour=body.work_end_hour,
        digest=body.digest_enabled,
        digest_hour=body.digest_hour,
    )


@router.get("/api/companies", response_model=list[CompanyStrength], summary="Companies, strongest relationship first")
def company_list(
    caller: CallerDep,
    rt: RuntimeDep,
    sort: Literal["strength", "name"] = "strength",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
):
    from app.models.base import utcnow

    with read_conn(rt) as conn:
        return strength.company_list(conn, caller.org_id, utcnow(), sort=sort, limit=limit)
