"""Administration API under /api/admin (admins only): organisation, users and tokens,
mailboxes and their health, "never log" rules, privacy requests and the audit log.

The console (admin_pages.py) and the CLI (cli_admin.py) call the same services."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator, Literal, Optional

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from sqlmodel import Session

from app.api.deps import AdminDep, RuntimeDep, read_conn
from app.db import write_transaction
from app.services import audit, calendars, mailboxes, orgs, privacy, rules
from app.services.orgs import Invalid, NotFound


class RedactedRoute(APIRoute):
    """Validation errors without the `input` FastAPI echoes by default: on these routes
    a request body can carry a password or a client secret, which must never come back
    in a response (a missing field's `input` is the whole body)."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                errors = [{k: v for k, v in e.items() if k != "input"} for e in exc.errors()]
                raise RequestValidationError(errors) from None

        return route


router = APIRouter(prefix="/api/admin", tags=["admin"], route_class=RedactedRoute)


@contextmanager
def tx(rt) -> Iterator:
    """A write transaction whose service errors become HTTP errors (nothing is committed then)."""
    try:
        with write_transaction(rt.engine) as conn:
            yield conn
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except Invalid as exc:
        raise HTTPException(422, str(exc)) from exc


@contextmanager
def reading(rt) -> Iterator:
    try:
        with read_conn(rt) as conn:
            yield conn
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except Invalid as exc:
        raise HTTPException(422, str(exc)) from exc


def start_sync(request: Request, rt, org_id: int, mailbox_id: int, actor_id: int | None, *,
               background: bool = True) -> str:
    """'Sync now': wake the scheduler when this process runs one, else sync in a background thread."""
    with tx(rt) as conn:
        row = mailboxes._one(conn, org_id, mailbox_id)
        if row.status == "paused":
            raise HTTPException(409, "the mailbox is paused: resume it first")
        audit.record(conn, org_id, actor_id, "mailbox.sync_now", mailboxes._target(row))
    from sync.engine import request_sync, sync_mailbox

    request_sync(rt.engine, mailbox_id)
    service = getattr(request.app.state, "sync_service", None)
    if service is not None:
        service.wake()
        return "queued"

    def run() -> None:  # the engine records the run's metrics itself (sync/metrics.py)
        sync_mailbox(rt.engine, rt.box, mailbox_id, worker=rt.settings.worker_id,
                     lease_seconds=rt.settings.sync_lease_seconds)

    if background:
        threading.Thread(target=run, name=f"sync-now-{mailbox_id}", daemon=True).start()
        return "started"
    run()
    return "done"


# -- organisation -----------------------------------------------------------------

class OrgUpdate(BaseModel):
    name: Optional[str] = None
    internal_domains: Optional[list[str]] = None
    contact_policy: Optional[Literal["exchanged", "sent", "all", "none"]] = None
    visibility: Optional[Literal["metadata", "subject", "snippet"]] = None
    backfill_days: Optional[int] = None
    sync_interval_seconds: Optional[int] = None
    bulk_detection: Optional[bool] = None
    free_mail_domains: Optional[list[str]] = Field(None, description="null: the built-in list")
    calendar_past_days: Optional[int] = None
    calendar_future_days: Optional[int] = None


@router.get("/org", summary="The organisation's settings")
def get_org(caller: AdminDep, rt: RuntimeDep) -> dict:
    with reading(rt) as conn:
        return orgs.org_settings(conn, caller.org_id)


@router.patch("/org", summary="Change the organisation's settings")
def patch_org(caller: AdminDep, rt: RuntimeDep, body: OrgUpdate) -> dict:
    changes = body.model_dump(exclude_unset=True)
    with tx(rt) as conn:
        return orgs.update_org(conn, caller.org_id, changes, actor_id=caller.user_id)


# -- users, aliases, tokens -----------------------------------------------------------

class NewUser(BaseModel):
    email: str
    name: str = ""
    role: Literal["rep", "admin"] = "rep"
    aliases: list[str] = []


class UserUpdate(BaseModel):
    name: Optional[str] = None
    role: Optional[Literal["rep", "admin"]] = None
    active: Optional[bool] = None


class NewAlias(BaseModel):
    address: str


class NewToken(BaseModel):
    name: str = ""


@router.get("/users", summary="Users with their aliases and tokens (never the token values)")
def list_users(caller: AdminDep, rt: RuntimeDep) -> list[dict]:
    with reading(rt) as conn:
        return orgs.list_users(conn, caller.org_id)


@router.post("/users", status_code=201, summary="Add a rep or an admin")
def add_user(caller: AdminDep, rt: RuntimeDep, body: NewUser) -> dict:
    with tx(rt) as conn:
        uid = orgs.create_user(conn, caller.org_id, body.email, name=body.name, role=body.role,
                               aliases=body.aliases, actor_id=caller.user_id)
    with reading(rt) as conn:
        return next(u for u in orgs.list_users(conn, caller.org_id) if u["id"] == uid)


@router.patch("/users/{user_id}", summary="Rename, change role, deactivate (active=false) or reactivate")
def patch_user(caller: AdminDep, rt: RuntimeDep, user_id: int, body: UserUpdate) -> dict:
    with tx(rt) as conn:
        orgs.update_user(conn, caller.org_id, user_id, name=body.name, role=body.role, active=body.active,
                         actor_id=caller.user_id)
    with reading(rt) as conn:
        return next(u for u in orgs.list_users(conn, caller.org_id) if u["id"] == user_id)


@router.post("/users/{user_id}/deactivate", summary="Deactivate: revokes their tokens and pauses their mailboxes")
def deactivate_user(caller: AdminDep, rt: RuntimeDep, user_id: int) -> dict:
    with tx(rt) as conn:
        orgs.update_user(conn, caller.org_id, user_id, active=False, actor_id=caller.user_id)
    return {"ok": True}


@router.post("/users/{user_id}/aliases", status_code=201, summary="Add another address of this user")
def add_alias(caller: AdminDep, rt: RuntimeDep, user_id: int, body: NewAlias) -> dict:
    with tx(rt) as conn:
        aid = orgs.add_alias(conn, caller.org_id, user_id, body.address, actor_id=caller.user_id)
    return {"id": aid, "user_id": user_id, "address": orgs.clean_address(body.address)}


@router.delete("/aliases/{alias_id}", status_code=204, summary="Remove an alias")
def remove_alias(caller: AdminDep, rt: RuntimeDep, alias_id: int) -> Response:
    with tx(rt) as conn:
        orgs.remove_alias(conn, caller.org_id, alias_id, actor_id=caller.user_id)
    return Response(status_code=204)


@router.post("/users/{user_id}/tokens", status_code=201,
             summary="Issue a personal access token (the value is in this response only)")
def issue_token(caller: AdminDep, rt: RuntimeDep, user_id: int, body: NewToken) -> dict:
    with tx(rt) as conn:
        return orgs.create_token(conn, caller.org_id, user_id, body.name, actor_id=caller.user_id)


@router.delete("/tokens/{token_id}", status_code=204, summary="Revoke a personal access token")
def revoke_token(caller: AdminDep, rt: RuntimeDep, token_id: int) -> Response:
    with tx(rt) as conn:
        orgs.revoke_token(conn, caller.org_id, token_id, actor_id=caller.user_id)
    return Response(status_code=204)


# -- mailboxes ------------------------------------------------------------------------

class ImapSettingsIn(BaseModel):
    host: str
    port: int = 993
    security: Literal["tls", "starttls", "none"] = "tls"
    username: str
    password: str = Field(..., json_schema_extra={"writeOnly": True})


class NewImapMailbox(ImapSettingsIn):
    owner: str = Field(..., description="The rep's email address")


class NewPassword(BaseModel):
    password: str


def with_sources(session: Session, org_id: int, rows: list[dict]) -> list[dict]:
    """Add to health rows what identifies each mailbox's source, per kind, never a secret:
    `account` (who signs in) and `location` (where), plus for CalDAV the `url`, for
    Microsoft 365 the `tenant`, `user`, `mode` (app | delegated) and `protocol`."""
    for row in rows:
        mb = mailboxes.get_mailbox(session, org_id, row["id"])
        if mb.kind == "caldav":
            row.update(calendars.account_facts(mb))
            row["account"], row["location"] = row["username"], row["url"]
        elif mb.kind == "m365":
            from app.services import m365

            row.update(m365.mailbox_facts(session, mb))
            row["account"] = row["user"]
            row["location"] = (f"tenant {row['tenant']}" if row["mode"] == "app"
                               else f"delegated sign-in ({row['tenant'] or 'organizations'})")
        else:
            row["account"], row["location"] = row.get("username"), row.get("server")
    return rows


@router.get("/mailboxes", summary="Sync health: one row per mailbox")
def health(caller: AdminDep, rt: RuntimeDep) -> list[dict]:
    with Session(rt.engine) as s:
        return with_sources(s, caller.org_id, mailboxes.health(s, caller.org_id))


@router.post("/mailboxes/test-imap", summary="Try DNS, TCP, TLS, login and folder listing; report each step")
def test_imap(caller: AdminDep, body: ImapSettingsIn) -> dict:
    steps = mailboxes.test_imap_connection(body.host, body.port, body.security, body.username, body.password)
    return {"ok": all(s["ok"] for s in steps), "steps": steps}


@router.post("/mailboxes/imap", status_code=201, summary="Add an IMAP mailbox (the password is stored encrypted)")
def add_imap(caller: AdminDep, rt: RuntimeDep, body: NewImapMailbox) -> dict:
    with Session(rt.engine, expire_on_commit=False) as s:
        try:
            org = orgs.the_org(s, caller.org_id)
            mb = mailboxes.add_imap(s, rt.box, org, owner=body.owner, host=body.host, port=body.port,
                                    security=body.security, username=body.username, password=body.password)
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        except Invalid as exc:
            raise HTTPException(422, str(exc)) from exc
        result = mailboxes.describe(s, mb)
    # The session is closed first: on SQLite it would hold the write lock the audit entry needs.
    with tx(rt) as conn:
        audit.record(conn, caller.org_id, caller.user_id, "mailbox.add",
                     f"mailbox {mb.id} (imap {body.username})", {"host": body.host, "owner": body.owner})
    return result


class NewCalDavAccount(BaseModel):
    owner: str = Field(..., description="The rep's email address")
    url: str = Field(..., description="CalDAV server or account URL (http:// or https://)")
    username: str
    password: str = Field(..., json_schema_extra={"writeOnly": True})
    check: bool = Field(True, description="Log in and list the calendars first; nothing is stored if that fails")
    sync: Literal["auto", "ctag"] = "auto"


def add_caldav_account(rt, caller, *, owner: str, url: str, username: str, password: str, check: bool,
                       sync: str = "auto") -> dict:
    """Shared by the API and the console; Invalid/NotFound propagate (nothing stored then)."""
    with Session(rt.engine, expire_on_commit=False) as s:
        org = orgs.the_org(s, caller.org_id)
        mb, found = calendars.connect_caldav(s, rt.box, org, owner=owner, url=url, username=username,
                                             password=password, check=check, sync=sync)
        result = with_sources(s, caller.org_id, [mailboxes.describe(s, mb)])[0]
    # The session is closed first: on SQLite it would hold the write lock the audit entry needs.
    with write_transaction(rt.engine) as conn:
        audit.record(conn, caller.org_id, caller.user_id, "mailbox.add",
                     f"mailbox {mb.id} (caldav {mb.config['username']})",
                     {"url": mb.config["url"], "owner": owner, "checked": check})
    return {**result, "calendars": found}


@router.post("/mailboxes/caldav", status_code=201,
             summary="Add a rep's CalDAV calendar account (check=true logs in and lists the calendars first; "
                     "the password is stored encrypted)")
def add_caldav(caller: AdminDep, rt: RuntimeDep, body: NewCalDavAccount) -> dict:
    try:
        return add_caldav_account(rt, caller, owner=body.owner, url=body.url, username=body.username,
                                  password=body.password, check=body.check, sync=body.sync)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except Invalid as exc:
        raise HTTPException(422, str(exc)) from exc


class NewM365Tenant(BaseModel):
    tenant_id: str = Field(..., description="Directory (tenant) id or domain")
    client_id: str = Field(..., description="Application (client) id of the app registration")
    client_secret: str = Field(..., json_schema_extra={"writeOnly": True})
    authority: Optional[str] = Field(None, description="Sign-in authority URL (national clouds); "
                                                       "default https://login.microsoftonline.com/TENANT")
    graph_url: Optional[str] = Field(None, description="Graph endpoint (national clouds); "
                                                       "default https://graph.microsoft.com/v1.0")
    check: bool = Field(True, description="Fetch a token from Microsoft Entra first; nothing is stored if that fails")


class NewM365Mailboxes(BaseModel):
    tenant: str = Field(..., description="A connected tenant: its tenant id or its number")
    owner: Optional[str] = Field(None, description="The rep's email address (or all_reps=true)")
    all_reps: bool = Field(False, description="Every enabled rep without a mailbox through this tenant yet")
    user: Optional[str] = Field(None, description="The mailbox address if it differs from the rep's address")
    imap: bool = Field(False, description="Read mail over Exchange Online IMAP instead of Graph (no calendar)")


def add_m365_tenant(rt, caller, *, tenant_id: str, client_id: str, secret: str, authority: str | None,
                    graph_url: str | None, check: bool) -> dict:
    """Connect (or re-key) a tenant app; shared by the API and the console."""
    from app.services import m365

    with Session(rt.engine, expire_on_commit=False) as s:
        org = orgs.the_org(s, caller.org_id)
        s.commit()  # on SQLite a transaction holds the write lock: not over the request to Microsoft
        tenant = m365.add_tenant(s, rt.box, org, tenant_id=tenant_id, client_id=client_id, secret=secret,
                                 authority=authority or None, graph_url=graph_url or None, check=check)
        result = m365.describe_tenant(tenant)
    with write_transaction(rt.engine) as conn:
        audit.record(conn, caller.org_id, caller.user_id, "m365.tenant_add",
                     f"m365 tenant {tenant.id} ({tenant.tenant_id})",
                     {"client_id": tenant.client_id, "auth_kind": tenant.auth_kind, "checked": check})
    return result


def add_m365_mailboxes(rt, caller, *, tenant: str, owner: str | None, all_reps: bool, user: str | None = None,
                       imap: bool = False) -> list[dict]:
    """A rep's tenant-wide mailbox, or one for every enabled rep; shared by the API and the console."""
    from app.services import m365

    if not all_reps and not (owner or "").strip():
        raise Invalid("give the rep (owner) or choose all reps")
    with Session(rt.engine, expire_on_commit=False) as s:
        org = orgs.the_org(s, caller.org_id)
        t = m365.find_tenant(s, caller.org_id, tenant)
        if all_reps:
            added = m365.add_all_reps(s, org, t)
        else:
            added = [m365.add_tenant_mailbox(s, org, owner=owner, tenant=t, user=user or None, imap=imap)]
        result = with_sources(s, caller.org_id, [mailboxes.describe(s, mb) for mb in added])
        tenant_name = t.tenant_id
    with write_transaction(rt.engine) as conn:
        for mb, row in zip(added, result):
            audit.record(conn, caller.org_id, caller.user_id, "mailbox.add", f"mailbox {mb.id} (m365 {row['user']})",
                         {"tenant": tenant_name, "owner": row["owner"], "protocol": row["protocol"],
                          "all_reps": all_reps})
    return result


@router.get("/m365/tenants", summary="Connected Microsoft 365 tenant apps (never their credentials)")
def list_m365_tenants(caller: AdminDep, rt: RuntimeDep) -> list[dict]:
    from app.services import m365

    with Session(rt.engine) as s:
        return m365.list_tenants(s, caller.org_id)


@router.post("/m365/tenants", status_code=201,
             summary="Connect a Microsoft 365 tenant app (application permissions) or replace its secret; "
                     "check=true fetches a token first")
def add_tenant(caller: AdminDep, rt: RuntimeDep, body: NewM365Tenant) -> dict:
    try:
        return add_m365_tenant(rt, caller, tenant_id=body.tenant_id, client_id=body.client_id,
                               secret=body.client_secret, authority=body.authority, graph_url=body.graph_url,
                               check=body.check)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except Invalid as exc:
        raise HTTPException(422, str(exc)) from exc


@router.delete("/m365/tenants/{tenant}", status_code=204,
               summary="Forget a tenant app and its credential (refused while mailboxes read through it)")
def remove_tenant(caller: AdminDep, rt: RuntimeDep, tenant: str) -> Response:
    remove_m365_tenant(rt, caller, tenant)
    return Response(status_code=204)


def remove_m365_tenant(rt, caller, tenant: str) -> dict:
    """Shared by the API and the console: 404 unknown, 409 while mailboxes use it."""
    from app.services import m365

    with Session(rt.engine) as s:
        try:
            facts = m365.remove_tenant(s, caller.org_id, tenant)
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        except Invalid as exc:
            raise HTTPException(409, str(exc)) from exc
        audit.record(s.connection(), caller.org_id, caller.user_id, "m365.tenant_remove",
                     f"m365 tenant {facts['id']} ({facts['tenant_id']})", {"client_id": facts["client_id"]})
        s.commit()
    return facts


@router.post("/mailboxes/m365", status_code=201,
             summary="Add Microsoft 365 mailboxes read through a connected tenant app: one rep, or all_reps "
                     "(a rep's own device-code sign-in is CLI only: threadline mailbox add-m365 --client-id)")
def add_m365(caller: AdminDep, rt: RuntimeDep, body: NewM365Mailboxes) -> list[dict]:
    try:
        return add_m365_mailboxes(rt, caller, tenant=body.tenant, owner=body.owner, all_reps=body.all_reps,
                                  user=body.user, imap=body.imap)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except Invalid as exc:
        raise HTTPException(422, str(exc)) from exc


@router.get("/mailboxes/{mailbox_id}", summary="One mailbox: health, folders with cursors, unreadable messages")
def mailbox_detail(caller: AdminDep, rt: RuntimeDep, mailbox_id: int) -> dict:
    with Session(rt.engine) as s:
        rows = mailboxes.health(s, caller.org_id, mailbox_id)
        if not rows:
            raise HTTPException(404, f"no mailbox {mailbox_id}")
        with_sources(s, caller.org_id, rows)
        detail = mailboxes.describe(s, mailboxes.get_mailbox(s, caller.org_id, mailbox_id), with_folders=True)
        return {**rows[0], **{k: detail[k] for k in ("folders", "unreadable")}}


def _mailbox_action(caller, rt, mailbox_id: int, action) -> dict:
    with tx(rt) as conn:
        action(conn, caller.org_id, mailbox_id, actor_id=caller.user_id)
    return {"ok": True}


@router.post("/mailboxes/{mailbox_id}/pause", summary="Stop syncing this mailbox")
def pause(caller: AdminDep, rt: RuntimeDep, mailbox_id: int) -> dict:
    return _mailbox_action(caller, rt, mailbox_id, mailboxes.pause)


@router.post("/mailboxes/{mailbox_id}/resume", summary="Sync this mailbox again")
def resume(caller: AdminDep, rt: RuntimeDep, mailbox_id: int) -> dict:
    return _mailbox_action(caller, rt, mailbox_id, mailboxes.resume)


@router.post("/mailboxes/{mailbox_id}/resync",
             summary="Re-sync from scratch: folder cursors reset, stored interactions stay (no duplicates)")
def resync(caller: AdminDep, rt: RuntimeDep, mailbox_id: int) -> dict:
    return _mailbox_action(caller, rt, mailbox_id, mailboxes.resync)


@router.post("/mailboxes/{mailbox_id}/sync", status_code=202, summary="Sync now")
def sync_now(caller: AdminDep, rt: RuntimeDep, request: Request, mailbox_id: int) -> dict:
    return {"sync": start_sync(request, rt, caller.org_id, mailbox_id, caller.user_id)}


@router.put("/mailboxes/{mailbox_id}/password", summary="Replace the mailbox password")
def set_password(caller: AdminDep, rt: RuntimeDep, mailbox_id: int, body: NewPassword) -> dict:
    with tx(rt) as conn:
        mailboxes.set_password(conn, rt.box, caller.org_id, mailbox_id, body.password, actor_id=caller.user_id)
    return {"ok": True}


@router.delete("/mailboxes/{mailbox_id}", summary="Remove a mailbox; purge=true also removes the interactions "
                                                   "seen only through it")
def remove_mailbox(caller: AdminDep, rt: RuntimeDep, mailbox_id: int, purge: bool = False) -> dict:
    with tx(rt) as conn:
        return mailboxes.remove(conn, caller.org_id, mailbox_id, purge=purge, actor_id=caller.user_id)


# -- rules -------------------------------------------------------------------------------

class NewRule(BaseModel):
    value: str = Field(..., description="An address (never log this person) or a domain (subdomains included)")
    kind: Optional[Literal["address", "domain"]] = None
    user_id: Optional[int] = Field(None, description="Only this rep's mailboxes; null: the whole organisation")


@router.get("/rules", summary='"Never log" rules')
def list_rules(caller: AdminDep, rt: RuntimeDep, user_id: Optional[int] = None) -> list[dict]:
    with reading(rt) as conn:
        return rules.list_rules(conn, caller.org_id, user_id)


@router.post("/rules", status_code=201, summary="Add a rule; what it matches is removed from the timeline")
def add_rule(caller: AdminDep, rt: RuntimeDep, body: NewRule) -> dict:
    with tx(rt) as conn:
        return rules.add_rule(conn, caller.org_id, kind=body.kind or rules.guess_kind(body.value), value=body.value,
                              user_id=body.user_id, actor_id=caller.user_id)


@router.delete("/rules/{rule_id}", status_code=204, summary="Remove a rule; the next sync brings the mail back")
def remove_rule(caller: AdminDep, rt: RuntimeDep, rule_id: int) -> Response:
    with tx(rt) as conn:
        rules.remove_rule(conn, caller.org_id, rule_id, actor_id=caller.user_id)
    return Response(status_code=204)


# -- privacy -------------------------------------------------------------------------------

class PersonRequest(BaseModel):
    email: str
    format: Literal["json", "vcard"] = "json"


class EraseRequest(BaseModel):
    email: str
    confirm: bool = Field(False, description="Must be true: erasing cannot be undone")


def export_response(rt, caller, email: str, fmt: str) -> Response:
    from sync.exclusions import person_tag

    with tx(rt) as conn:
        data = privacy.export_person(conn, caller.org_id, email, rt.box)
        audit.record(conn, caller.org_id, caller.user_id, "person.export",
                     f"person {person_tag(conn, rt.box, caller.org_id, data['address'])}", {"format": fmt})
    import json

    stem = "person-export"
    if fmt == "vcard":
        return Response(privacy.to_vcard(data), media_type="text/vcard; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{stem}.vcf"'})
    return Response(json.dumps(data, indent=2, default=str), media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{stem}.json"'})


@router.post("/privacy/export", summary="Everything stored about one address (JSON or vCard 4.0)")
def export_person(caller: AdminDep, rt: RuntimeDep, body: PersonRequest) -> Response:
    return export_response(rt, caller, body.email, body.format)


@router.post("/privacy/erase", summary="Erase a person and keep them out of later syncs")
def erase_person(caller: AdminDep, rt: RuntimeDep, body: EraseRequest) -> dict:
    if not body.confirm:
        raise HTTPException(422, "erasing cannot be undone: send confirm=true")
    with tx(rt) as conn:
        return privacy.erase_person(conn, caller.org_id, body.email, actor_id=caller.user_id, box=rt.box)


# -- audit -----------------------------------------------------------------------------------

@router.get("/audit", summary="The audit log, newest first")
def audit_log(caller: AdminDep, rt: RuntimeDep, limit: int = Query(100, ge=1, le=1000),
              action: Optional[str] = None, before_id: Optional[int] = None) -> list[dict]:
    with reading(rt) as conn:
        return audit.list_events(conn, caller.org_id, limit=limit, action=action, before_id=before_id)
