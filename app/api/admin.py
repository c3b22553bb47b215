"""Administration API under /api/admin (admins only): organisation, users and tokens,
mailboxes and their health, "never log" rules, privacy requests and the audit log.

Each route is an adapter: it parses the request, calls the one service function of
its use case (app/services, which validates, commits and audits) and returns the
answer. Refusals (app/services/errors.py) become HTTP once, in app/api/__init__.py.
The console (admin_pages.py) and the CLI call the same services."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Literal, Optional

from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from app.api.admin_schemas import (
    AliasOut,
    AuditEventOut,
    ConnectionStep,
    ConnectionTest,
    ErasureOut,
    GmailAdded,
    IssuedToken,
    MailboxRow,
    Ok,
    OrgSettings,
    RemovedCounts,
    RuleOut,
    SummaryCheckOut,
    SyncStarted,
    TenantOut,
    UserOut,
    WorkspaceOut,
)
from app.api.deps import AdminDep, RuntimeDep, read_conn
from app.services import audit, calendars, digest, google, m365, mailboxes, orgs, privacy, reconcile, rules
from app.services.actor import Actor


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


def scheduler_of(request: Request):
    """This process's scheduler, when it runs one (serve without --no-scheduler)."""
    return getattr(request.app.state, "sync_service", None)


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
    phone_region: Optional[str] = Field(
        None, max_length=2, description="default region of signature phone numbers without a country code (GB, US)"
    )


@router.get("/org", summary="The organisation's settings")
def get_org(caller: AdminDep, rt: RuntimeDep) -> OrgSettings:
    with read_conn(rt) as conn:
        return orgs.org_settings(conn, caller.org_id)


@router.patch("/org", summary="Change the organisation's settings")
def patch_org(caller: AdminDep, rt: RuntimeDep, body: OrgUpdate) -> OrgSettings:
    return orgs.update_org(rt, Actor.of(caller), body.model_dump(exclude_unset=True))


# -- the digest's SMTP server -------------------------------------------------------------


class SmtpIn(BaseModel):
    host: str = Field(max_length=253)
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = Field(
        "starttls", description="starttls (usually port 587), tls: implicit TLS (465), none: plain (tests, relays)"
    )
    username: Optional[str] = Field(None, max_length=320)
    password: Optional[str] = Field(
        None, max_length=1000, description="null keeps the stored one, an empty string removes it; never returned"
    )
    from_address: str = Field(max_length=320)


class SmtpOut(BaseModel):
    configured: bool
    host: Optional[str]
    port: Optional[int]
    security: Optional[str]
    username: Optional[str]
    from_address: Optional[str]
    password_set: bool
    last_error: Optional[str]
    last_error_at: Optional[datetime]
    last_sent_at: Optional[datetime]


class SmtpTestIn(BaseModel):
    to: Optional[str] = Field(None, max_length=320, description="default: the admin's own address")


class SmtpTestOut(BaseModel):
    ok: bool
    failed_step: Optional[str] = Field(None, description="connect, tls, auth, sender, recipient or data")
    detail: str
    steps: list[ConnectionStep]


@router.get("/smtp", summary="The SMTP server the daily digest goes through (never the password)")
def get_smtp(caller: AdminDep, rt: RuntimeDep) -> SmtpOut:
    with read_conn(rt) as conn:
        return SmtpOut(**digest.smtp_settings(conn, caller.org_id))


@router.put("/smtp", summary="Set the SMTP server the daily digest goes through")
def put_smtp(caller: AdminDep, rt: RuntimeDep, body: SmtpIn) -> SmtpOut:
    return SmtpOut(**digest.set_smtp(rt, Actor.of(caller), **body.model_dump()))


@router.delete("/smtp", summary="Remove the SMTP server: no digest is sent")
def delete_smtp(caller: AdminDep, rt: RuntimeDep) -> SmtpOut:
    return SmtpOut(**digest.clear_smtp(rt, Actor.of(caller)))


@router.post("/smtp/test", summary="Send a test email; says which step failed (connect, tls, auth, recipient)")
def test_smtp(caller: AdminDep, rt: RuntimeDep, body: SmtpTestIn) -> SmtpTestOut:
    return SmtpTestOut(**digest.send_test(rt, Actor.of(caller), body.to))


# -- users, aliases, tokens -----------------------------------------------------------


class NewUser(BaseModel):
    email: str
    name: str = ""
    role: Literal["rep", "manager", "admin"] = "rep"
    aliases: list[str] = []


class UserUpdate(BaseModel):
    name: Optional[str] = None
    role: Optional[Literal["rep", "manager", "admin"]] = None
    active: Optional[bool] = None


class NewAlias(BaseModel):
    address: str


class NewToken(BaseModel):
    name: str = ""


@router.get("/users", summary="Users with their aliases and tokens (never the token values)")
def list_users(caller: AdminDep, rt: RuntimeDep) -> list[UserOut]:
    with read_conn(rt) as conn:
        return orgs.list_users(conn, caller.org_id)


@router.post("/users", status_code=201, summary="Add a rep or an admin")
def add_user(caller: AdminDep, rt: RuntimeDep, body: NewUser) -> UserOut:
    return orgs.create_user(rt, Actor.of(caller), body.email, name=body.name, role=body.role, aliases=body.aliases)


@router.patch("/users/{user_id}", summary="Rename, change role, deactivate (active=false) or reactivate")
def patch_user(caller: AdminDep, rt: RuntimeDep, user_id: int, body: UserUpdate) -> UserOut:
    return orgs.update_user(rt, Actor.of(caller), user_id, name=body.name, role=body.role, active=body.active)


@router.post("/users/{user_id}/deactivate", summary="Deactivate: revokes their tokens and pauses their mailboxes")
def deactivate_user(caller: AdminDep, rt: RuntimeDep, user_id: int) -> Ok:
    orgs.update_user(rt, Actor.of(caller), user_id, active=False)
    return Ok()


@router.post("/users/{user_id}/aliases", status_code=201, summary="Add another address of this user")
def add_alias(caller: AdminDep, rt: RuntimeDep, user_id: int, body: NewAlias) -> AliasOut:
    return orgs.add_alias(rt, Actor.of(caller), user_id, body.address)


@router.delete("/aliases/{alias_id}", status_code=204, summary="Remove an alias")
def remove_alias(caller: AdminDep, rt: RuntimeDep, alias_id: int) -> Response:
    orgs.remove_alias(rt, Actor.of(caller), alias_id)
    return Response(status_code=204)


@router.post(
    "/users/{user_id}/tokens",
    status_code=201,
    summary="Issue a personal access token (the value is in this response only)",
)
def issue_token(caller: AdminDep, rt: RuntimeDep, user_id: int, body: NewToken) -> IssuedToken:
    return orgs.create_token(rt, Actor.of(caller), user_id, body.name)


@router.delete("/tokens/{token_id}", status_code=204, summary="Revoke a personal access token")
def revoke_token(caller: AdminDep, rt: RuntimeDep, token_id: int) -> Response:
    orgs.revoke_token(rt, Actor.of(caller), token_id)
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
    check: bool = Field(
        True, description="Connect and log in first; nothing is stored if that fails (422 with every step in `steps`)"
    )


class NewPassword(BaseModel):
    password: str


@router.get("/mailboxes", summary="Sync health: one row per mailbox")
def health(caller: AdminDep, rt: RuntimeDep) -> list[MailboxRow]:
    return mailboxes.health_page(rt.engine, caller.org_id)


@router.post("/mailboxes/test-imap", summary="Try DNS, TCP, TLS, login and folder listing; report each step")
def test_imap(caller: AdminDep, body: ImapSettingsIn) -> ConnectionTest:
    steps = mailboxes.test_imap_connection(body.host, body.port, body.security, body.username, body.password)
    return {"ok": all(s["ok"] for s in steps), "steps": steps}


@router.post("/mailboxes/imap", status_code=201, summary="Add an IMAP mailbox (the password is stored encrypted)")
def add_imap(caller: AdminDep, rt: RuntimeDep, body: NewImapMailbox) -> MailboxRow:
    return mailboxes.add_imap(
        rt,
        Actor.of(caller),
        owner=body.owner,
        host=body.host,
        port=body.port,
        security=body.security,
        username=body.username,
        password=body.password,
        check=body.check,
    )


class NewCalDavAccount(BaseModel):
    owner: str = Field(..., description="The rep's email address")
    url: str = Field(..., description="CalDAV server or account URL (http:// or https://)")
    username: str
    password: str = Field(..., json_schema_extra={"writeOnly": True})
    check: bool = Field(True, description="Log in and list the calendars first; nothing is stored if that fails")
    sync: Literal["auto", "ctag"] = "auto"


@router.post(
    "/mailboxes/caldav",
    status_code=201,
    summary="Add a rep's CalDAV calendar account (check=true logs in and lists the calendars first; "
    "the password is stored encrypted)",
)
def add_caldav(caller: AdminDep, rt: RuntimeDep, body: NewCalDavAccount) -> MailboxRow:
    return calendars.add_caldav(
        rt,
        Actor.of(caller),
        owner=body.owner,
        url=body.url,
        username=body.username,
        password=body.password,
        check=body.check,
        sync=body.sync,
    )


class NewM365Tenant(BaseModel):
    tenant_id: str = Field(..., description="Directory (tenant) id or domain")
    client_id: str = Field(..., description="Application (client) id of the app registration")
    client_secret: str = Field(..., json_schema_extra={"writeOnly": True})
    authority: Optional[str] = Field(
        None, description="Sign-in authority URL (national clouds); default https://login.microsoftonline.com/TENANT"
    )
    graph_url: Optional[str] = Field(
        None, description="Graph endpoint (national clouds); default https://graph.microsoft.com/v1.0"
    )
    check: bool = Field(True, description="Fetch a token from Microsoft Entra first; nothing is stored if that fails")


class NewM365Mailboxes(BaseModel):
    tenant: str = Field(..., description="A connected tenant: its tenant id or its number")
    owner: Optional[str] = Field(None, description="The rep's email address (or all_reps=true)")
    all_reps: bool = Field(False, description="Every enabled rep without a mailbox through this tenant yet")
    user: Optional[str] = Field(None, description="The mailbox address if it differs from the rep's address")
    imap: bool = Field(False, description="Read mail over Exchange Online IMAP instead of Graph (no calendar)")


@router.get("/m365/tenants", summary="Connected Microsoft 365 tenant apps (never their credentials)")
def list_m365_tenants(caller: AdminDep, rt: RuntimeDep) -> list[TenantOut]:
    return m365.tenants(rt.engine, caller.org_id)


@router.post(
    "/m365/tenants",
    status_code=201,
    summary="Connect a Microsoft 365 tenant app (application permissions) or replace its secret; "
    "check=true fetches a token first",
)
def add_tenant(caller: AdminDep, rt: RuntimeDep, body: NewM365Tenant) -> TenantOut:
    return m365.add_tenant(
        rt,
        Actor.of(caller),
        tenant_id=body.tenant_id,
        client_id=body.client_id,
        secret=body.client_secret,
        authority=body.authority or None,
        graph_url=body.graph_url or None,
        check=body.check,
    )


@router.delete(
    "/m365/tenants/{tenant}",
    status_code=204,
    summary="Forget a tenant app and its credential (refused while mailboxes read through it)",
)
def remove_tenant(caller: AdminDep, rt: RuntimeDep, tenant: str) -> Response:
    m365.remove_tenant(rt, Actor.of(caller), tenant)
    return Response(status_code=204)


@router.post(
    "/mailboxes/m365",
    status_code=201,
    summary="Add Microsoft 365 mailboxes read through a connected tenant app: one rep, or all_reps "
    "(a rep's own device-code sign-in is CLI only: threadline mailbox add-m365 --client-id)",
)
def add_m365(caller: AdminDep, rt: RuntimeDep, body: NewM365Mailboxes) -> list[MailboxRow]:
    return m365.add_tenant_mailboxes(
        rt,
        Actor.of(caller),
        tenant=body.tenant,
        owner=body.owner,
        all_reps=body.all_reps,
        user=body.user,
        imap=body.imap,
    )


class NewGoogleWorkspace(BaseModel):
    domain: str = Field(..., description="The Workspace's primary domain, e.g. ourco.com")
    key: str = Field(
        ...,
        description="The service account's JSON key as the Google Cloud console downloads it",
        json_schema_extra={"writeOnly": True},
    )
    check_user: Optional[str] = Field(
        None, description="Run the connection test for this address first; nothing is stored if a step fails"
    )


class GoogleTestIn(BaseModel):
    key: str = Field(..., json_schema_extra={"writeOnly": True})
    user: str = Field(..., description="A rep's address in the Workspace's domain")


class NewGmailMailboxes(BaseModel):
    workspace: Optional[str] = Field(None, description="Its domain or number (needed only when several)")
    owner: Optional[str] = Field(None, description="The rep's email address (or all_reps=true)")
    all_reps: bool = Field(False, description="Every enabled rep of the domain without Gmail through it yet")
    user: Optional[str] = Field(None, description="The Gmail address if it differs from the rep's address")


@router.get("/google/workspaces", summary="Connected Google Workspaces (never their service account keys)")
def list_google_workspaces(caller: AdminDep, rt: RuntimeDep) -> list[WorkspaceOut]:
    return google.list_workspaces(rt.engine, caller.org_id)


@router.post(
    "/google/test",
    summary="Test a service account key for one address: key, token, domain-wide delegation, scopes, user",
)
def test_google(caller: AdminDep, body: GoogleTestIn) -> ConnectionTest:
    steps = google.connection_test(body.key, body.user)
    return {"ok": all(s["ok"] for s in steps), "steps": steps}


@router.post(
    "/google/workspaces",
    status_code=201,
    summary="Connect a Google Workspace (service account with domain-wide delegation) or replace its key; "
    "with check_user the connection test runs first",
)
def add_google_workspace(caller: AdminDep, rt: RuntimeDep, body: NewGoogleWorkspace) -> WorkspaceOut:
    return google.add_workspace(
        rt, Actor.of(caller), key_json=body.key, domain=body.domain, check_user=body.check_user or None
    )


@router.delete(
    "/google/workspaces/{workspace}",
    status_code=204,
    summary="Forget a Google Workspace and its key (refused while Gmail mailboxes read through it)",
)
def remove_google_workspace(caller: AdminDep, rt: RuntimeDep, workspace: str) -> Response:
    google.remove_workspace(rt, Actor.of(caller), workspace)
    return Response(status_code=204)


@router.post(
    "/mailboxes/google",
    status_code=201,
    summary="Add reps' Gmail read through a connected Google Workspace: one rep, or all_reps of its domain",
)
def add_gmail(caller: AdminDep, rt: RuntimeDep, body: NewGmailMailboxes) -> GmailAdded:
    return google.add_workspace_mailboxes(
        rt, Actor.of(caller), workspace=body.workspace, owner=body.owner, all_reps=body.all_reps, user=body.user
    )


class GoogleSignInIn(BaseModel):
    owner: str = Field(..., description="The rep whose Gmail and Google Calendar this is")
    client_id: str = Field(..., description="The OAuth client id of the Desktop app (Google Cloud console, Clients)")
    client_secret: Optional[str] = Field(
        None, description="The Desktop client's secret, as Google issued it", json_schema_extra={"writeOnly": True}
    )
    user: Optional[str] = Field(None, description="The Gmail address if it differs from the rep's address")


class GoogleSignInStarted(BaseModel):
    url: str  # the consent page the rep opens, signed in to their own Google account
    state: str  # give it back with the redirected address (it expires after expires_in seconds)
    redirect_uri: str  # where the browser goes after the consent; nothing listens there
    owner: str
    user: str
    expires_in: int


class GoogleSignInFinish(BaseModel):
    state: str = Field(..., description="The state the start answered")
    redirected_url: str = Field(
        ...,
        description="The whole address the browser went to after the rep allowed access (or its code)",
        json_schema_extra={"writeOnly": True},
    )


@router.post(
    "/mailboxes/google/sign-in",
    summary="Start a rep's own Google sign-in (installed app with PKCE): the consent URL for the rep to open",
)
def start_google_sign_in(caller: AdminDep, rt: RuntimeDep, body: GoogleSignInIn) -> GoogleSignInStarted:
    return google.start_rep_sign_in(
        rt,
        Actor.of(caller),
        owner=body.owner,
        client_id=body.client_id,
        client_secret=body.client_secret or "",
        user=body.user,
    )


@router.post(
    "/mailboxes/google/sign-in/finish",
    status_code=201,
    summary="Finish a rep's own Google sign-in: the redirected address is exchanged for a refresh token, "
    "stored encrypted; the rep's Gmail mailbox is added (or reconnected)",
)
def finish_google_sign_in(caller: AdminDep, rt: RuntimeDep, body: GoogleSignInFinish) -> MailboxRow:
    return google.finish_rep_sign_in(rt, Actor.of(caller), state=body.state, redirected=body.redirected_url)


@router.get("/mailboxes/{mailbox_id}", summary="One mailbox: health, folders with cursors, unreadable messages")
def mailbox_detail(caller: AdminDep, rt: RuntimeDep, mailbox_id: int) -> MailboxRow:
    return mailboxes.mailbox_detail(rt.engine, caller.org_id, mailbox_id)


def _check_out(check: dict | None) -> SummaryCheckOut:
    return SummaryCheckOut(**{k: v for k, v in (check or {}).items() if k != "org_id"})


@router.get("/summaries", summary="The latest recount of the per-contact summaries")
def summaries(caller: AdminDep, rt: RuntimeDep) -> SummaryCheckOut:
    with read_conn(rt) as conn:
        return _check_out(reconcile.summary_check(conn, caller.org_id))


@router.post("/summaries/check", summary="Recount the per-contact summaries now and store the result")
def check_summaries(caller: AdminDep, rt: RuntimeDep) -> SummaryCheckOut:
    return _check_out(reconcile.check_summaries(rt, caller.org_id))


@router.post("/summaries/repair", summary="Rebuild every contact's summaries from the timeline, then recount")
def repair_summaries(caller: AdminDep, rt: RuntimeDep) -> SummaryCheckOut:
    return _check_out(reconcile.repair_summaries(rt, Actor.of(caller)))


@router.post("/mailboxes/{mailbox_id}/pause", summary="Stop syncing this mailbox")
def pause(caller: AdminDep, rt: RuntimeDep, mailbox_id: int) -> Ok:
    mailboxes.pause(rt, Actor.of(caller), mailbox_id)
    return Ok()


@router.post("/mailboxes/{mailbox_id}/resume", summary="Sync this mailbox again")
def resume(caller: AdminDep, rt: RuntimeDep, mailbox_id: int) -> Ok:
    mailboxes.resume(rt, Actor.of(caller), mailbox_id)
    return Ok()


@router.post(
    "/mailboxes/{mailbox_id}/resync",
    summary="Re-sync from scratch: folder cursors reset, stored interactions stay (no duplicates)",
)
def resync(caller: AdminDep, rt: RuntimeDep, mailbox_id: int) -> Ok:
    mailboxes.resync(rt, Actor.of(caller), mailbox_id)
    return Ok()


@router.post("/mailboxes/{mailbox_id}/sync", status_code=202, summary="Sync now")
def sync_now(caller: AdminDep, rt: RuntimeDep, request: Request, mailbox_id: int) -> SyncStarted:
    return {"sync": mailboxes.sync_now(rt, Actor.of(caller), mailbox_id, scheduler=scheduler_of(request))}


@router.put("/mailboxes/{mailbox_id}/password", summary="Replace the mailbox password")
def set_password(caller: AdminDep, rt: RuntimeDep, mailbox_id: int, body: NewPassword) -> Ok:
    mailboxes.set_password(rt, Actor.of(caller), mailbox_id, body.password)
    return Ok()


@router.delete(
    "/mailboxes/{mailbox_id}", summary="Remove a mailbox; purge=true also removes the interactions seen only through it"
)
def remove_mailbox(caller: AdminDep, rt: RuntimeDep, mailbox_id: int, purge: bool = False) -> RemovedCounts:
    return mailboxes.remove(rt, Actor.of(caller), mailbox_id, purge=purge)


# -- rules -------------------------------------------------------------------------------


class NewRule(BaseModel):
    value: str = Field(..., description="An address (never log this person) or a domain (subdomains included)")
    kind: Optional[Literal["address", "domain"]] = None
    user_id: Optional[int] = Field(None, description="Only this rep's mailboxes; null: the whole organisation")


@router.get("/rules", summary='"Never log" rules')
def list_rules(caller: AdminDep, rt: RuntimeDep, user_id: Optional[int] = None) -> list[RuleOut]:
    with read_conn(rt) as conn:
        return rules.list_rules(conn, caller.org_id, user_id)


@router.post("/rules", status_code=201, summary="Add a rule; what it matches is removed from the timeline")
def add_rule(caller: AdminDep, rt: RuntimeDep, body: NewRule) -> RuleOut:
    return rules.add_rule(rt, Actor.of(caller), value=body.value, kind=body.kind, user_id=body.user_id)


@router.delete("/rules/{rule_id}", status_code=204, summary="Remove a rule; the next sync brings the mail back")
def remove_rule(caller: AdminDep, rt: RuntimeDep, rule_id: int) -> Response:
    rules.remove_rule(rt, Actor.of(caller), rule_id)
    return Response(status_code=204)


# -- privacy -------------------------------------------------------------------------------


class PersonRequest(BaseModel):
    email: str
    format: Literal["json", "vcard"] = "json"


class EraseRequest(BaseModel):
    email: str
    confirm: bool = Field(False, description="Must be true: erasing cannot be undone")


def export_download(data: dict, fmt: str) -> Response:
    """A privacy export as a file download (the API and the console)."""
    stem = "person-export"
    if fmt == "vcard":
        return Response(
            privacy.to_vcard(data),
            media_type="text/vcard; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{stem}.vcf"'},
        )
    return Response(
        json.dumps(data, indent=2, default=str),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{stem}.json"'},
    )


@router.post(
    "/privacy/export",
    summary="Everything stored about one address (JSON or vCard 4.0)",
    response_class=Response,
    responses={
        200: {
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/vcard": {"schema": {"type": "string"}},
            },
            "description": "A file: the person's data as JSON, or their vCard",
        }
    },
)
def export_person(caller: AdminDep, rt: RuntimeDep, body: PersonRequest) -> Response:
    return export_download(privacy.export_person(rt, Actor.of(caller), body.email, body.format), body.format)


@router.post("/privacy/erase", summary="Erase a person and keep them out of later syncs")
def erase_person(caller: AdminDep, rt: RuntimeDep, body: EraseRequest) -> ErasureOut:
    return privacy.erase_person(rt, Actor.of(caller), body.email, confirm=body.confirm)


# -- audit -----------------------------------------------------------------------------------


@router.get("/audit", summary="The audit log, newest first")
def audit_log(
    caller: AdminDep,
    rt: RuntimeDep,
    limit: int = Query(100, ge=1, le=1000),
    action: Optional[str] = None,
    before_id: Optional[int] = None,
) -> list[AuditEventOut]:
    with read_conn(rt) as conn:
        return audit.list_events(conn, caller.org_id, limit=limit, action=action, before_id=before_id)
