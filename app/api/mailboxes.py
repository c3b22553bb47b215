"""Mailbox sync status. Reps see their own mailboxes; admins see every one."""

from typing import Any

from fastapi import APIRouter, HTTPException
from sqlmodel import Session, select

from app.api.deps import CallerDep, RuntimeDep
from app.api.schemas import MailboxDetail, MailboxStatus, Queued
from app.models import Mailbox
from app.services import mailboxes
from app.services.actor import Actor
from app.services.orgs import NotFound

router = APIRouter(tags=["mailboxes"])


def _visible(caller, mailbox: Mailbox) -> bool:
    return mailbox.org_id == caller.org_id and (caller.is_admin or mailbox.owner_id == caller.user_id)


@router.get("/api/mailboxes", response_model=list[MailboxStatus], summary="Sync status of the mailboxes you may see")
def list_mailboxes(caller: CallerDep, rt: RuntimeDep) -> Any:
    with Session(rt.engine) as s:
        query = select(Mailbox).where(Mailbox.org_id == caller.org_id).order_by(Mailbox.id)
        if not caller.is_admin:
            query = query.where(Mailbox.owner_id == caller.user_id)
        return [mailboxes.describe(s, m) for m in s.exec(query).all()]


@router.get(
    "/api/mailboxes/{mailbox_id}",
    response_model=MailboxDetail,
    summary="One mailbox with its folders, cursors, unreadable messages and items skipped with their reason",
)
def get_mailbox(caller: CallerDep, rt: RuntimeDep, mailbox_id: int) -> Any:
    with Session(rt.engine) as s:
        try:
            mailbox = mailboxes.get_mailbox(s, caller.org_id, mailbox_id)
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        if not _visible(caller, mailbox):
            raise HTTPException(404, f"no mailbox {mailbox_id}")
        return mailboxes.describe(s, mailbox, with_folders=True)


@router.post("/api/mailboxes/{mailbox_id}/sync", status_code=202, summary="Sync this mailbox as soon as possible")
def sync_now(caller: CallerDep, rt: RuntimeDep, mailbox_id: int) -> Queued:
    mailboxes.sync_now(rt, Actor.of(caller), mailbox_id, start=False)
    return Queued(queued=True)
