"""Notes, follow-up tasks and hand-logged emails, added from the sidebar."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from app.api.deps import CallerDep, RuntimeDep
from app.api.schemas import LoggedEmail, TimelineItem
from app.services import activity
from app.services.actor import Actor

router = APIRouter(tags=["activity"])


class NoteIn(BaseModel):
    body: Annotated[str, Field(min_length=1, max_length=activity.MAX_BODY)]


class TaskIn(BaseModel):
    title: Annotated[str, Field(min_length=1, max_length=activity.MAX_SUBJECT)]
    due_at: datetime | None = None
    body: Annotated[str | None, Field(max_length=activity.MAX_BODY)] = None


class TaskPatch(BaseModel):
    done: bool | None = None
    title: Annotated[str | None, Field(max_length=activity.MAX_SUBJECT)] = None
    due_at: datetime | None = None


class Address(BaseModel):
    name: Annotated[str, Field(max_length=300)] = ""
    email: Annotated[str, Field(max_length=320)]


class LogEmailIn(BaseModel):
    """The fields Office.js gives for the message being read (Office.context.mailbox.item)."""

    internet_message_id: Annotated[str, Field(min_length=1, max_length=1000)]
    subject: Annotated[str, Field(max_length=2000)] = ""
    sender: Address = Field(alias="from")
    # A mass mailing can be logged: 500 of each become participants, the rest are counted.
    to: Annotated[list[Address], Field(max_length=10_000)] = []
    cc: Annotated[list[Address], Field(max_length=10_000)] = []
    date: datetime | None = None
    conversation_id: Annotated[str | None, Field(max_length=1000)] = None
    snippet: Annotated[str | None, Field(max_length=2000)] = None

    model_config = {"populate_by_name": True}


@router.post(
    "/api/contacts/{contact_id}/notes",
    status_code=201,
    response_model=TimelineItem,
    summary="Add a note to a contact's timeline",
)
def add_note(caller: CallerDep, rt: RuntimeDep, contact_id: int, note: NoteIn) -> Any:
    return activity.add_note(rt, Actor.of(caller), contact_id, note.body)


@router.post(
    "/api/contacts/{contact_id}/tasks",
    status_code=201,
    response_model=TimelineItem,
    summary="Create a follow-up task for a contact",
)
def add_task(caller: CallerDep, rt: RuntimeDep, contact_id: int, task: TaskIn) -> Any:
    return activity.add_task(rt, Actor.of(caller), contact_id, task.title, task.due_at, task.body)


@router.patch(
    "/api/tasks/{task_id}",
    response_model=TimelineItem,
    summary="Mark a task done (or not), rename it, move its due date",
)
def update_task(caller: CallerDep, rt: RuntimeDep, task_id: int, patch: TaskPatch) -> Any:
    fields = patch.model_fields_set
    return activity.update_task(
        rt,
        Actor.of(caller),
        task_id,
        done=patch.done,
        title=patch.title,
        due_at=patch.due_at,
        clear_due="due_at" in fields and patch.due_at is None,
    )


@router.post(
    "/api/log-email",
    response_model=LoggedEmail,
    summary="Log the email being read to the timeline (its mailbox is not synced)",
)
def log_email(caller: CallerDep, rt: RuntimeDep, mail: LogEmailIn) -> Any:
    out = activity.log_email(
        rt,
        Actor.of(caller),
        internet_message_id=mail.internet_message_id,
        subject=mail.subject,
        sender=mail.sender.model_dump(),
        to=[a.model_dump() for a in mail.to],
        cc=[a.model_dump() for a in mail.cc],
        date=mail.date,
        snippet=mail.snippet,
    )
    return {"logged": out["interaction_id"] is not None, **out}
