"""Every route of the app, enumerated from app.routes, called with no token, a rep,
an admin, and an admin of another organisation.

A route missing from EXPECT fails the test: whoever adds a route decides here who
may call it. Path ids always point at the first organisation's objects (fresh ones
per call, so destructive routes can run), which the other organisation must never
reach (404/403) and whose data must never appear in its responses.
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert

from app.api import create_app
from app.db import session, write_transaction
from app.models import Company, Contact, ContactAddress, FollowUp, Interaction, Participant
from app.services import deals, digest, google, m365, mailboxes, orgs, rules, segments
from app.services.actor import Actor
from tests import factories
from tests.servers.base import free_port
from tests.world import make_world

PUBLIC, USER, ADMIN, CONSOLE, WEBHOOK = "public", "user", "admin", "console", "webhook"
ORG1_MARKERS = ("ourco.com", "acme-org1.com", "Org1 secret subject")
_n = itertools.count(1)


def uniq(prefix: str = "n") -> str:
    return f"{prefix}{next(_n)}"


def imap_body():
    return {"host": "127.0.0.1", "port": 1, "security": "none", "username": "u", "password": "pw-matrix"}


def caldav_body():  # check off: nothing listens there
    return {"owner": "rep@ourco.com", "url": "http://127.0.0.1:1/", "username": "u", "password": "pw-matrix"}


MATRIX_TENANT = "matrix-tenant"  # connected for the first organisation by the env fixture
MATRIX_WORKSPACE = "matrix-ws.example"  # a Google Workspace, likewise


def service_account_key() -> str:
    """A service account key's JSON as the Google Cloud console gives it (never used to sign here)."""
    name = uniq("sa")
    return json.dumps(
        {
            "type": "service_account",
            "client_email": f"{name}@matrix.iam.gserviceaccount.com",
            "client_id": "1234567890",
            "private_key_id": name,
            "private_key": "-----BEGIN PRIVATE KEY-----\nunused\n-----END PRIVATE KEY-----\n",
        }
    )


SMTP_PORT = free_port()  # nothing listens there
EXPECT: dict[tuple[str, str], dict] = {
    ("GET", "/openapi.json"): {"auth": PUBLIC},
    ("GET", "/docs"): {"auth": PUBLIC},
    ("GET", "/docs/oauth2-redirect"): {"auth": PUBLIC},
    ("GET", "/redoc"): {"auth": PUBLIC},
    ("GET", "/healthz"): {"auth": PUBLIC},
    ("GET", "/livez"): {"auth": PUBLIC},
    ("GET", "/metrics"): {"auth": PUBLIC},
    # the timeline and the rep's own tools
    ("GET", "/api/lookup"): {"auth": USER, "query": {"email": "jane@acme-org1.com"}},
    ("GET", "/api/contacts"): {"auth": USER, "query": {"q": "jane"}},
    ("GET", "/api/contacts/{contact_id}"): {"auth": USER},
    ("GET", "/api/contacts/{contact_id}/timeline"): {"auth": USER},
    ("GET", "/api/companies/{company_id}"): {"auth": USER},
    ("GET", "/api/companies/{company_id}/timeline"): {"auth": USER},
    ("GET", "/api/mailboxes"): {"auth": USER},
    ("GET", "/api/mailboxes/{mailbox_id}"): {"auth": USER, "rep_ok": (404,)},  # a rep sees only their own
    ("POST", "/api/mailboxes/{mailbox_id}/sync"): {"auth": USER, "rep_ok": (404,)},
    ("POST", "/api/contacts/{contact_id}/notes"): {"auth": USER, "json": {"body": "a note"}},
    ("POST", "/api/contacts/{contact_id}/tasks"): {"auth": USER, "json": {"body": "a task"}},
    ("PATCH", "/api/tasks/{task_id}"): {"auth": USER, "json": {"done": True}},
    ("POST", "/api/log-email"): {"auth": USER, "json": {}},
    ("GET", "/api/me"): {"auth": USER},
    ("GET", "/api/me/day"): {"auth": USER},
    ("PATCH", "/api/me/calendar"): {"auth": USER, "json": {"timezone": "Europe/Paris"}},
    ("GET", "/api/followups"): {"auth": USER},
    ("POST", "/api/followups/{followup_id}/snooze"): {"auth": USER, "json": {"span": "1d"}},
    ("POST", "/api/followups/{followup_id}/done"): {"auth": USER},
    # the first organisation's company is row 1 (made first by the env fixture)
    ("POST", "/api/key-accounts"): {"auth": USER, "json": {"kind": "company", "id": 1}, "other": (404,)},
    ("GET", "/api/companies"): {"auth": USER},
    ("GET", "/api/stages"): {"auth": USER},  # the fixed list of pipeline stages
    ("POST", "/api/contacts"): {"auth": USER, "json": {}},
    ("PATCH", "/api/contacts/{contact_id}"): {"auth": USER, "json": {}},
    ("POST", "/api/never-log"): {"auth": USER, "json": {}},
    # deals: reps create and edit the deals they see; pipelines and visibility are the admins'
    # saved segments, import and export (app/api/segments.py): segments are everyone's, a private
    # one only its author's; importing and the organisation export are the admins'
    ("GET", "/api/segments"): {"auth": USER},
    ("POST", "/api/segments"): {"auth": USER, "json": lambda: {"name": uniq("Segment"), "filters": {"tags": ["vip"]}}},
    ("GET", "/api/segment-query"): {"auth": USER, "query": {"domain": "acme-org1.com"}},
    ("GET", "/api/segments/{segment_id}/items"): {"auth": USER},
    ("PATCH", "/api/segments/{segment_id}"): {"auth": USER, "json": {"name": "Renamed"}, "rep_ok": (403,)},
    ("DELETE", "/api/segments/{segment_id}"): {"auth": USER, "rep_ok": (403,)},
    ("GET", "/api/export/segments/{segment_id}"): {"auth": USER},
    ("GET", "/api/export/org"): {"auth": ADMIN, "other": (200,)},
    ("POST", "/api/contacts/import"): {
        "auth": ADMIN,
        "files": lambda: {"file": ("new.csv", b"email,name\nnew@matrix-import.com,New\n", "text/csv")},
        "form": {"dry_run": "true"},
        "other": (200,),
    },
    ("POST", "/api/contacts/import/preview"): {
        "auth": ADMIN,
        "files": lambda: {"file": ("new.csv", b"email,name\nnew@matrix-import.com,New\n", "text/csv")},
        "other": (200,),
    },
    ("GET", "/api/pipelines"): {"auth": USER},
    ("POST", "/api/pipelines"): {"auth": ADMIN, "json": lambda: {"name": uniq("Pipeline")}},
    ("PATCH", "/api/deal-settings"): {"auth": ADMIN, "json": {"deal_visibility": "all"}},
    ("GET", "/api/deals"): {"auth": USER},
    # the other organisation's admin creates a deal in their own pipeline, or is told there is none
    ("POST", "/api/deals"): {"auth": USER, "json": lambda: {"name": uniq("Deal")}, "other": (201, 422)},
    ("GET", "/api/deal-prefill"): {"auth": USER, "query": {"email": "jane@acme-org1.com", "message_id": "<m1@x>"}},
    ("GET", "/api/deals/{deal_id}"): {"auth": USER},
    ("PATCH", "/api/deals/{deal_id}"): {"auth": USER, "json": {"amount_minor": 1000}},
    ("POST", "/api/deals/{deal_id}/threads"): {"auth": USER, "json": {"thread_key": "m1@acme-org1.com"}},
    ("GET", "/api/deals/{deal_id}/timeline"): {"auth": USER},
    ("GET", "/api/board"): {"auth": USER, "other": (200, 404)},  # their own pipeline, or none yet
    ("GET", "/board"): {"auth": PUBLIC},
    ("GET", "/api/never-log"): {"auth": USER, "query": {"email": "jane@acme-org1.com"}},
    # reports: every user; a rep gets their own numbers, managers and admins everyone's
    ("GET", "/api/reports/activity"): {"auth": USER},
    ("GET", "/api/reports/response-times"): {"auth": USER},
    ("GET", "/api/reports/new-contacts"): {"auth": USER},
    ("GET", "/api/reports/cold-accounts"): {"auth": USER},
    ("GET", "/api/reports/pipeline"): {"auth": USER},
    ("GET", "/api/reports/{report}.svg"): {"auth": USER, "params": {"report": "cold-accounts"}},
    ("GET", "/api/reports/{report}.csv"): {"auth": USER, "params": {"report": "cold-accounts"}},
    ("GET", "/reports"): {"auth": PUBLIC},  # the page; its data comes from /api/reports/...
    ("GET", "/reports/static/{name}"): {"auth": PUBLIC},
    # Outlook add-in and sidebar assets (the sidebar authenticates its API calls itself)
    ("GET", "/addin/icon-{size}.png"): {"auth": PUBLIC},
    ("GET", "/addin/manifest.xml"): {"auth": PUBLIC},
    ("GET", "/panel"): {"auth": PUBLIC},
    ("GET", "/home"): {"auth": PUBLIC},  # the page; its data comes from /api/me/day
    ("GET", "/panel/contact/{contact_id}"): {"auth": PUBLIC},
    ("GET", "/panel/outlook"): {"auth": PUBLIC},
    ("GET", "/panel/signin"): {"auth": PUBLIC},
    ("GET", "/panel/static/{name}"): {"auth": PUBLIC},
    ("GET", "/panel/config.json"): {"auth": PUBLIC},
    # Microsoft Graph calls these; they authenticate by clientState, not by user
    ("POST", "/graph/notifications"): {"auth": WEBHOOK},
    ("POST", "/graph/lifecycle"): {"auth": WEBHOOK},
    # administration API
    ("GET", "/api/admin/org"): {"auth": ADMIN},
    ("PATCH", "/api/admin/org"): {"auth": ADMIN, "json": {"backfill_days": 200}},
    # the digest's SMTP server: nothing listens on SMTP_PORT, so a test email fails at "connect" (200)
    ("GET", "/api/admin/smtp"): {"auth": ADMIN},
    ("PUT", "/api/admin/smtp"): {
        "auth": ADMIN,
        "json": lambda: {"host": "127.0.0.1", "port": SMTP_PORT, "security": "none", "from_address": "crm@example.com"},
    },
    ("POST", "/api/admin/smtp/test"): {"auth": ADMIN, "json": {"to": "x@example.com"}, "other": (200, 422)},
    ("DELETE", "/api/admin/smtp"): {"auth": ADMIN},
    ("GET", "/api/admin/users"): {"auth": ADMIN},
    ("POST", "/api/admin/users"): {"auth": ADMIN, "json": lambda: {"email": f"{uniq()}@ourco.com"}},
    ("PATCH", "/api/admin/users/{user_id}"): {"auth": ADMIN, "json": {"name": "Renamed"}},
    ("POST", "/api/admin/users/{user_id}/deactivate"): {"auth": ADMIN},
    ("POST", "/api/admin/users/{user_id}/aliases"): {
        "auth": ADMIN,
        "json": lambda: {"address": f"{uniq('a')}@ourco.com"},
    },
    ("DELETE", "/api/admin/aliases/{alias_id}"): {"auth": ADMIN},
    ("POST", "/api/admin/users/{user_id}/tokens"): {"auth": ADMIN, "json": {"name": "matrix"}},
    ("DELETE", "/api/admin/tokens/{token_id}"): {"auth": ADMIN},
    ("GET", "/api/admin/mailboxes"): {"auth": ADMIN},
    ("POST", "/api/admin/mailboxes/test-imap"): {"auth": ADMIN, "json": imap_body},
    ("POST", "/api/admin/mailboxes/imap"): {
        "auth": ADMIN,
        "json": lambda: {**imap_body(), "owner": "rep@ourco.com", "check": False},  # nothing listens there
        "other": (422,),
    },
    ("GET", "/api/admin/mailboxes/{mailbox_id}"): {"auth": ADMIN},
    ("POST", "/api/admin/mailboxes/{mailbox_id}/pause"): {"auth": ADMIN},
    ("POST", "/api/admin/mailboxes/{mailbox_id}/resume"): {"auth": ADMIN},
    ("POST", "/api/admin/mailboxes/{mailbox_id}/resync"): {"auth": ADMIN},
    ("POST", "/api/admin/mailboxes/{mailbox_id}/sync"): {"auth": ADMIN},
    ("PUT", "/api/admin/mailboxes/{mailbox_id}/password"): {"auth": ADMIN, "json": {"password": "pw-matrix"}},
    ("DELETE", "/api/admin/mailboxes/{mailbox_id}"): {"auth": ADMIN},
    ("POST", "/api/admin/mailboxes/caldav"): {
        "auth": ADMIN,
        "json": lambda: {**caldav_body(), "check": False},
        "other": (422,),
    },
    ("GET", "/api/admin/m365/tenants"): {"auth": ADMIN},
    ("POST", "/api/admin/m365/tenants"): {
        "auth": ADMIN,
        "json": lambda: {"tenant_id": uniq("tn"), "client_id": "app", "client_secret": "s-matrix", "check": False},
    },
    ("DELETE", "/api/admin/m365/tenants/{tenant}"): {"auth": ADMIN, "other": (404,)},
    ("POST", "/api/admin/mailboxes/m365"): {
        "auth": ADMIN,
        "json": {"tenant": MATRIX_TENANT, "all_reps": True},
        "other": (422,),
    },
    ("GET", "/api/admin/google/workspaces"): {"auth": ADMIN},
    ("POST", "/api/admin/google/test"): {"auth": ADMIN, "json": {"key": "{}", "user": "rep@ourco.com"}},
    ("POST", "/api/admin/google/workspaces"): {
        "auth": ADMIN,
        "json": lambda: {"domain": "matrix-add.example", "key": service_account_key()},
    },
    ("DELETE", "/api/admin/google/workspaces/{workspace}"): {"auth": ADMIN, "other": (404,)},
    ("POST", "/api/admin/mailboxes/google"): {
        "auth": ADMIN,
        "json": {"workspace": MATRIX_WORKSPACE, "all_reps": True},
        "other": (422,),
    },
    ("POST", "/api/admin/mailboxes/google/sign-in"): {
        "auth": ADMIN,
        "json": {"owner": "rep@ourco.com", "client_id": "1-matrix.apps.googleusercontent.com"},
        "other": (422,),
    },
    # A sign-in the first organisation's admin started and the rep allowed (at the fake Google):
    # another organisation's admin cannot finish it.
    ("POST", "/api/admin/mailboxes/google/sign-in/finish"): {
        "auth": ADMIN,
        "json": lambda: google_sign_in_allowed(),
        "other": (422,),
    },
    ("GET", "/api/admin/rules"): {"auth": ADMIN},
    ("POST", "/api/admin/rules"): {"auth": ADMIN, "json": lambda: {"value": f"{uniq('d')}.example"}},
    ("DELETE", "/api/admin/rules/{rule_id}"): {"auth": ADMIN},
    ("POST", "/api/admin/privacy/export"): {"auth": ADMIN, "json": {"email": "jane@acme-org1.com"}},
    ("POST", "/api/admin/privacy/erase"): {
        "auth": ADMIN,
        "json": lambda: {"email": f"{uniq('x')}@gone.example", "confirm": True},
    },
    ("GET", "/api/admin/audit"): {"auth": ADMIN},
    ("GET", "/api/admin/duplicates"): {"auth": ADMIN},
    ("POST", "/api/admin/duplicates/{contact_id}/dismiss/{other_id}"): {"auth": ADMIN},
    ("POST", "/api/admin/contacts/{contact_id}/merge/{other_id}"): {"auth": ADMIN},
    ("GET", "/api/admin/merges"): {"auth": ADMIN},
    ("POST", "/api/admin/merges/{audit_id}/undo"): {"auth": ADMIN},
    ("GET", "/api/admin/summaries"): {"auth": ADMIN},
    ("POST", "/api/admin/summaries/check"): {"auth": ADMIN},
    ("POST", "/api/admin/summaries/repair"): {"auth": ADMIN},
    # the console
    ("GET", "/admin/login"): {"auth": PUBLIC},
    ("POST", "/admin/login"): {"auth": PUBLIC},  # without the sign-in form's cookie: 403 for everyone
    ("GET", "/admin/static/admin.css"): {"auth": PUBLIC},
    ("GET", "/admin/static/admin.js"): {"auth": PUBLIC},
    ("GET", "/admin/static/login.js"): {"auth": PUBLIC},
    ("GET", "/admin/static/import.js"): {"auth": PUBLIC},
    ("POST", "/admin/logout"): {"auth": CONSOLE},
    ("GET", "/admin"): {"auth": CONSOLE},
    ("GET", "/admin/start"): {"auth": CONSOLE},
    ("POST", "/admin/start/domains"): {"auth": CONSOLE},  # saved unchanged
    ("POST", "/admin/start/reps"): {"auth": CONSOLE, "form": lambda: {"reps": f"{uniq('w')}@reps.example"}},
    ("POST", "/admin/start/mailbox"): {
        "auth": CONSOLE,
        "form": {**imap_body(), "owner": "rep@ourco.com"},
        "other": (422,),
    },
    ("POST", "/admin/start/sidebar"): {"auth": CONSOLE, "other": (409,)},
    ("GET", "/admin/mailboxes/new"): {"auth": CONSOLE},
    ("POST", "/admin/mailboxes/test"): {"auth": CONSOLE, "form": {**imap_body(), "owner": "rep@ourco.com"}},
    ("POST", "/admin/mailboxes"): {"auth": CONSOLE, "form": {**imap_body(), "owner": "rep@ourco.com"}, "other": (422,)},
    ("GET", "/admin/mailboxes/{mailbox_id}"): {"auth": CONSOLE},
    ("POST", "/admin/mailboxes/caldav"): {"auth": CONSOLE, "form": caldav_body, "other": (422,)},
    ("POST", "/admin/m365/tenants"): {
        "auth": CONSOLE,
        "form": lambda: {"tenant_id": uniq("tn"), "client_id": "app", "client_secret": "s-matrix"},
    },
    ("POST", "/admin/m365/tenants/{tenant_id}/remove"): {"auth": CONSOLE},
    ("POST", "/admin/mailboxes/m365"): {
        "auth": CONSOLE,
        "form": {"tenant": MATRIX_TENANT, "owner": "*"},
        "other": (422,),
    },
    ("POST", "/admin/google/test"): {
        "auth": CONSOLE,
        "form": {"domain": "matrix-add.example", "key": "{}", "check_user": "rep@ourco.com"},
    },
    ("POST", "/admin/google/workspaces"): {
        "auth": CONSOLE,
        "form": lambda: {"domain": "matrix-add.example", "key": service_account_key()},
    },
    ("POST", "/admin/google/workspaces/{workspace_id}/remove"): {"auth": CONSOLE},
    ("POST", "/admin/mailboxes/google"): {
        "auth": CONSOLE,
        "form": {"workspace": MATRIX_WORKSPACE, "owner": "*"},
        "other": (422,),
    },
    ("POST", "/admin/google/sign-in"): {
        "auth": CONSOLE,
        "form": {"owner": "rep@ourco.com", "client_id": "1-matrix.apps.googleusercontent.com"},
        "other": (422,),
    },
    ("POST", "/admin/google/sign-in/finish"): {
        "auth": CONSOLE,
        "form": lambda: google_sign_in_allowed(),
        "other": (422,),
    },
    ("POST", "/admin/mailboxes/{mailbox_id}/{action}"): {"auth": CONSOLE, "params": {"action": "pause"}},
    ("GET", "/admin/org"): {"auth": CONSOLE},
    ("POST", "/admin/org"): {"auth": CONSOLE, "form": {"backfill_days": "300"}},
    ("POST", "/admin/smtp"): {
        "auth": CONSOLE,
        "form": lambda: {
            "host": "127.0.0.1",
            "port": str(SMTP_PORT),
            "security": "none",
            "from_address": "crm@example.com",
        },
    },
    ("POST", "/admin/smtp/test"): {"auth": CONSOLE, "form": {"to": "x@example.com"}, "other": (200, 422)},
    ("GET", "/admin/users"): {"auth": CONSOLE},
    ("POST", "/admin/users"): {"auth": CONSOLE, "form": lambda: {"email": f"{uniq()}@ourco.com"}},
    ("POST", "/admin/users/{user_id}/{action}"): {
        "auth": CONSOLE,
        "params": {"action": "update"},
        "form": {"name": "Renamed"},
    },
    ("POST", "/admin/aliases/{alias_id}/delete"): {"auth": CONSOLE},
    ("POST", "/admin/tokens/{token_id}/revoke"): {"auth": CONSOLE},
    ("GET", "/admin/rules"): {"auth": CONSOLE},
    ("POST", "/admin/rules"): {"auth": CONSOLE, "form": lambda: {"value": f"{uniq('d')}.example"}},
    ("POST", "/admin/rules/settings"): {"auth": CONSOLE, "form": {"bulk_detection": "1", "free_mail_builtin": "1"}},
    ("POST", "/admin/rules/{rule_id}/delete"): {"auth": CONSOLE},
    ("GET", "/admin/privacy"): {"auth": CONSOLE},
    ("POST", "/admin/privacy/export"): {"auth": CONSOLE, "form": {"email": "jane@acme-org1.com"}},
    ("POST", "/admin/privacy/erase"): {
        "auth": CONSOLE,
        "form": lambda: {"email": f"{uniq('x')}@gone.example", "confirm": "1"},
    },
    ("GET", "/admin/audit"): {"auth": CONSOLE},
    ("GET", "/admin/duplicates"): {"auth": CONSOLE},
    ("POST", "/admin/duplicates/{contact_id}/merge/{other_id}"): {"auth": CONSOLE, "form": {"confirm": "1"}},
    ("POST", "/admin/duplicates/{contact_id}/dismiss/{other_id}"): {"auth": CONSOLE},
    ("POST", "/admin/merges/{audit_id}/undo"): {"auth": CONSOLE},
    ("POST", "/admin/summaries/{action}"): {"auth": CONSOLE, "params": {"action": "repair"}},
    ("GET", "/admin/deals"): {"auth": CONSOLE},
    ("GET", "/admin/contacts"): {"auth": CONSOLE, "query": {"domain": "acme-org1.com"}},
    ("POST", "/admin/segments"): {
        "auth": CONSOLE,
        "form": lambda: {"name": uniq("Segment"), "domain": "acme-org1.com"},
    },
    ("GET", "/admin/contacts/export"): {"auth": CONSOLE, "query": {"domain": "acme-org1.com"}},
    ("GET", "/admin/import"): {"auth": CONSOLE},
    ("POST", "/admin/import/run"): {
        "auth": CONSOLE,
        "files": lambda: {"file": ("new.csv", b"email,name\nnew@matrix-import.com,New\n", "text/csv")},
        "form": {"action": "dry_run"},
    },
    ("POST", "/admin/deals"): {"auth": CONSOLE, "form": lambda: {"name": uniq("Deal")}},
    ("POST", "/admin/deals/pipelines"): {"auth": CONSOLE, "form": lambda: {"name": uniq("Pipeline")}},
    ("POST", "/admin/deals/visibility"): {"auth": CONSOLE, "form": {"deal_visibility": "all"}},
}


def all_routes(routes, prefix: str = ""):
    """(method, path) of every route, including those of included routers."""
    for r in routes:
        if hasattr(r, "original_router"):  # FastAPI's lazily included router
            yield from all_routes(r.original_router.routes, prefix + r.include_context.prefix)
        elif hasattr(r, "routes") and not hasattr(r, "methods"):  # a Mount
            yield from all_routes(r.routes, prefix + getattr(r, "path", ""))
        else:
            for method in sorted(set(getattr(r, "methods", None) or {"WEBSOCKET"}) - {"HEAD"}):
                yield method, prefix + r.path


_SIGN_IN: dict = {}  # the fake Google and the admin who starts the rep's sign-in (set by env)


def google_sign_in_allowed() -> dict:
    """The finish request of a rep's own Google sign-in started by the first organisation's admin."""
    w, fake, (client_id, secret) = _SIGN_IN["w"], _SIGN_IN["fake"], _SIGN_IN["client"]
    started = google.start_rep_sign_in(
        w.rt,
        Actor(org_id=w.org_id, user_id=_SIGN_IN["admin_id"], role="admin"),
        owner="rep@ourco.com",
        client_id=client_id,
        client_secret=secret,
        auth_uri=fake.auth_uri,
        token_uri=fake.token_uri,
    )
    return {"state": started["state"], "redirected_url": fake.consent(started["url"], "rep@ourco.com")}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from tests.fakes.google.server import FakeGoogle

    fake = FakeGoogle().start()
    fake.add_user("rep@ourco.com")
    patch = pytest.MonkeyPatch()
    patch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the fake's token endpoint is plain HTTP on loopback
    try:
        yield from _env(tmp_path_factory, fake)
    finally:
        patch.undo()
        fake.stop()
        _SIGN_IN.clear()


def _env(tmp_path_factory, fake):
    w = make_world(tmp_path_factory.mktemp("matrix"), reps=(("rep@ourco.com", "Rep One"),))
    admin_id = w.add_user("boss@ourco.com", "Boss", admin=True)
    with session(w.rt.engine) as s:
        org2 = factories.create_org(s, "Other Org", ["other.org"])
        other_admin = factories.add_user(s, org2, "admin@other.org", admin=True)
        rep = orgs.find_user(s, w.org_id, "rep@ourco.com")
        manager = factories.add_user(s, s.get(orgs.Organisation, w.org_id), "manager@ourco.com", name="Manager")
        manager.role = "manager"
        s.add(manager)
        s.commit()
        _SIGN_IN.update(w=w, admin_id=admin_id, fake=fake, client=fake.desktop_client())
        tokens = {
            "rep": factories.issue_token(s, rep),
            "manager": factories.issue_token(s, manager),
            "admin": factories.issue_token(s, s.get(orgs.User, admin_id)),
            "other": factories.issue_token(s, other_admin),
        }
    m365.add_tenant(
        w.rt, Actor.operator(w.org_id), tenant_id=MATRIX_TENANT, client_id="matrix-app", secret="s-matrix", check=False
    )
    google.add_workspace(w.rt, Actor.operator(w.org_id), key_json=service_account_key(), domain=MATRIX_WORKSPACE)
    digest.set_smtp(
        w.rt,
        Actor.operator(w.org_id),
        host="127.0.0.1",
        port=SMTP_PORT,
        security="none",
        from_address="crm@example.com",
    )
    now = datetime.now(timezone.utc)
    with write_transaction(w.rt.engine) as conn:
        company = conn.execute(
            insert(Company.__table__).values(org_id=w.org_id, domain="acme-org1.com", name="Acme Org1", created_at=now)
        ).inserted_primary_key[0]
        contact = conn.execute(
            insert(Contact.__table__).values(
                org_id=w.org_id,
                name="Jane Org1",
                search_name="jane org1",
                primary_email="jane@acme-org1.com",
                company_id=company,
                tags=[],
                created_at=now,
            )
        ).inserted_primary_key[0]
        conn.execute(
            insert(ContactAddress.__table__).values(org_id=w.org_id, contact_id=contact, address="jane@acme-org1.com")
        )
        iid = conn.execute(
            insert(Interaction.__table__).values(
                org_id=w.org_id,
                kind="email",
                message_key="m1@acme-org1.com",
                occurred_at=now,
                direction="in",
                subject="Org1 secret subject",
                thread_key="m1@acme-org1.com",
                from_address="jane@acme-org1.com",
                created_at=now,
            )
        ).inserted_primary_key[0]
        conn.execute(
            insert(Participant.__table__).values(
                org_id=w.org_id,
                interaction_id=iid,
                occurred_at=now,
                address="jane@acme-org1.com",
                role="from",
                contact_id=contact,
                company_id=company,
            )
        )
        task = conn.execute(
            insert(Interaction.__table__).values(
                org_id=w.org_id,
                kind="task",
                message_key="note:matrix-task",
                occurred_at=now,
                direction="out",
                body="Org1 secret subject task",
                thread_key="note:matrix-task",
                author_id=admin_id,
                created_at=now,
            )
        ).inserted_primary_key[0]
    deals.create_pipeline(w.rt, Actor.operator(w.org_id), name="Sales")
    client = TestClient(create_app(w.rt))
    yield {"w": w, "client": client, "tokens": tokens, "contact": contact, "company": company, "task": task}
    client.close()


def fresh_param(env, name: str):
    w = env["w"]
    if name == "contact_id":
        return env["contact"]
    if name == "company_id":
        return env["company"]
    if name == "task_id":
        return env["task"]
    if name in ("other_id", "audit_id"):  # a fresh contact of the first organisation (merged, for an undo)
        from app.services import duplicates

        with write_transaction(w.rt.engine) as conn:
            address = f"{uniq('dup')}@acme-org1.com"
            other = conn.execute(
                insert(Contact.__table__).values(
                    org_id=w.org_id,
                    name="Jane Org1",
                    search_name="jane org1",
                    primary_email=address,
                    tags=[],
                    created_at=datetime.now(timezone.utc),
                )
            ).inserted_primary_key[0]
            conn.execute(insert(ContactAddress.__table__).values(org_id=w.org_id, contact_id=other, address=address))
        if name == "other_id":
            return other
        return duplicates.merge(w.rt, Actor.operator(w.org_id), env["contact"], other)["audit_id"]
    if name == "followup_id":  # a fresh follow-up of the first organisation's rep
        with write_transaction(w.rt.engine) as conn:
            rep = orgs.user_id_by_email(conn, w.org_id, "rep@ourco.com")
            now = datetime.now(timezone.utc)
            return conn.execute(
                insert(FollowUp.__table__).values(
                    org_id=w.org_id,
                    thread_key=uniq("t"),
                    kind="waiting",
                    user_id=rep,
                    address="jane@acme-org1.com",
                    contact_id=env["contact"],
                    since=now,
                    due_at=now,
                    status="open",
                    updated_at=now,
                )
            ).inserted_primary_key[0]
    op = Actor.operator(w.org_id)
    if name in ("tenant", "tenant_id"):  # a fresh tenant app of organisation 1, without mailboxes
        t = m365.add_tenant(w.rt, op, tenant_id=uniq("tr"), client_id="app", secret="s-matrix", check=False)
        return t["tenant_id"] if name == "tenant" else t["id"]
    if name in ("workspace", "workspace_id"):  # a fresh Google Workspace of organisation 1, without mailboxes
        ws = google.add_workspace(w.rt, op, key_json=service_account_key(), domain="matrix-fresh.example")
        return ws["id"]
    if name == "mailbox_id":
        return mailboxes.add_imap(
            w.rt,
            op,
            owner="rep@ourco.com",
            host="127.0.0.1",
            port=1,
            security="none",
            username="matrix",
            password="pw-matrix",
        )["id"]
    if name == "user_id":
        return orgs.create_user(w.rt, op, f"{uniq('u')}@ourco.com")["id"]
    if name == "alias_id":
        with write_transaction(w.rt.engine) as conn:
            uid = orgs.user_id_by_email(conn, w.org_id, "rep@ourco.com")
        return orgs.add_alias(w.rt, op, uid, f"{uniq('al')}@ourco.com")["id"]
    if name == "token_id":
        uid = orgs.create_user(w.rt, op, f"{uniq('t')}@ourco.com")["id"]
        return orgs.create_token(w.rt, op, uid, "m")["id"]
    if name == "deal_id":
        with write_transaction(w.rt.engine) as conn:
            rep = orgs.user_id_by_email(conn, w.org_id, "rep@ourco.com")
        return deals.create_deal(w.rt, op, name=uniq("Deal"), owner_id=rep, contact_ids=[env["contact"]])["id"]
    if name == "segment_id":  # a fresh shared segment of organisation 1, made at the CLI
        return segments.create_segment(w.rt, op, name=uniq("Seg"), filters={"domain": "acme-org1.com"})["id"]
    if name == "rule_id":
        return rules.add_rule(w.rt, op, kind="domain", value=f"{uniq('r')}.example")["id"]
    return {"size": "64", "name": "panel.css"}.get(name, "x")


def call(env, method: str, path: str, spec: dict, who: str | None):
    params = dict(spec.get("params", {}))
    names = [seg[1:-1] for seg in path.replace("}", "}/").split("/") if seg.startswith("{")]
    url = path
    has_ids = False
    for name in names:
        value = params.get(name)
        if value is None:
            value = fresh_param(env, name)
            has_ids = has_ids or name.endswith("_id")
        url = url.replace("{" + name + "}", str(value))
    kwargs = {"params": spec.get("query"), "follow_redirects": False}
    body = spec.get("json")
    if body is not None:
        kwargs["json"] = body() if callable(body) else body
    files = spec.get("files")
    if files is not None:
        kwargs["files"] = files()
    form = spec.get("form")
    if form is not None:
        kwargs["data"] = form() if callable(form) else form
    elif method in ("POST", "PUT", "PATCH") and body is None and spec["auth"] == CONSOLE:
        kwargs["data"] = {}
    headers = {"Authorization": f"Bearer {env['tokens'][who]}"} if who else {}
    resp = env["client"].request(method, url, headers=headers, **kwargs)
    return resp, has_ids


def test_every_route_has_an_expectation(env):
    app = env["client"].app
    routes = set(all_routes(app.routes))
    missing = sorted(routes - set(EXPECT))
    assert not missing, f"routes without an access expectation (add them to EXPECT): {missing}"
    assert ("GET", "/admin") in routes and ("GET", "/api/admin/org") in routes


@pytest.mark.parametrize("key", sorted(EXPECT), ids=lambda k: f"{k[0]} {k[1]}")
def test_access(env, key):
    method, path = key
    if key not in set(all_routes(env["client"].app.routes)):
        pytest.fail(f"{method} {path} is in EXPECT but not a route any more: remove it")
    spec = EXPECT[key]
    auth = spec["auth"]
    results = {who: call(env, method, path, spec, who) for who in (None, "rep", "manager", "other", "admin")}
    status = {who: r.status_code for who, (r, _) in results.items()}
    assert all(s < 500 for s in status.values()), status
    anon, _ = results[None]
    if auth == PUBLIC:
        assert status[None] not in (401,) or path == "/metrics", status
        return
    if auth == WEBHOOK:
        assert len({s // 100 for s in status.values()}) == 1, f"a webhook must not depend on the caller: {status}"
        return
    if auth == CONSOLE:
        assert status[None] == 303 and anon.headers["location"] == "/admin/login", status
    else:
        assert status[None] == 401, status
    rep_ok = spec.get("rep_ok", ())
    if auth in (ADMIN, CONSOLE):
        assert status["rep"] == 403, status
        assert status["manager"] == 403, status  # a manager sees every rep's reports, nothing an admin does
        assert 200 <= status["admin"] < 400, (status, results["admin"][0].text[:300])
    else:
        assert status["rep"] not in (401, 403) or status["rep"] in rep_ok, status
        # on a rep's own things (follow-ups, mailboxes) a manager is another rep: refused is right
        mine = results["manager"][1]
        assert status["manager"] != 401 and (mine or status["manager"] != 403 or status["manager"] in rep_ok), status
        assert status["admin"] not in (401, 403), status
    other, has_ids = results["other"]
    if has_ids:
        assert status["other"] in ((404, 403, 422) if auth == USER else (404, 403)), status
    elif "other" in spec:
        assert status["other"] in spec["other"], status
    sent = str(other.request.url) + other.request.content.decode("utf-8", "replace")
    for marker in (m for m in ORG1_MARKERS if m not in sent):  # echoing the caller's own input is no leak
        assert marker not in other.text, f"{method} {path} leaked {marker!r} to another organisation"


def test_a_deactivated_user_and_a_revoked_token_get_nothing(env):
    w, client = env["w"], env["client"]
    op = Actor.operator(w.org_id)
    uid = orgs.create_user(w.rt, op, f"{uniq('gone')}@ourco.com", role="admin")["id"]
    token = orgs.create_token(w.rt, op, uid, "t")
    h = {"Authorization": f"Bearer {token['token']}"}
    assert client.get("/api/admin/org", headers=h).status_code == 200
    orgs.revoke_token(w.rt, op, token["id"])
    assert client.get("/api/admin/org", headers=h).status_code == 401
    assert client.get("/admin", headers=h, follow_redirects=False).status_code == 401
    rows = w.sql("SELECT token_hash FROM apitoken WHERE id = :i", i=token["id"])
    assert rows and token["token"] not in rows[0][0]
