"""Every JSON route declares the model of what it answers, /docs shows that
schema, and each model has exactly the fields its endpoint returns.

Routes are enumerated from the app as served, so a route added later is covered:
it declares a response model (response_model= or a return annotation), or it is
a declared non-JSON answer (an explicit non-JSON response_class, or 204).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.datastructures import DefaultPlaceholder
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from pydantic import TypeAdapter
from sqlalchemy import insert, text

from app.api import create_app, schemas
from app.api.deps import Caller
from app.db import write_transaction
from app.models import SyncIssue
from app.services import deals, people
from app.services.actor import Actor
from connectors.base import Attendee, MeetingRecord
from tests.app.test_activity_api import JANE, NOW, seed
from tests.sync.test_meetings import ScriptedCalendar, _calendar, batch

# -- the checks, as functions (also run on a deliberately bad app below) ------------------


def api_routes(app: FastAPI) -> list:
    """Every APIRoute as served, its router's prefix and settings applied. FastAPI
    includes routers lazily: app.routes lists the routers, not their routes."""
    return [c for c in iter_route_contexts(app.routes) if isinstance(c.original_route, APIRoute)]


def _json(route) -> bool:
    cls = route.response_class
    if isinstance(cls, DefaultPlaceholder):
        return True  # nothing declared: FastAPI answers JSON
    return issubclass(cls, JSONResponse)


def undeclared(app: FastAPI) -> list[str]:
    """Routes that answer JSON without saying its shape."""
    out = []
    for route in api_routes(app):
        if route.response_model is not None or route.status_code == 204 or not _json(route):
            continue
        out.append(f"{sorted(route.methods)} {route.path} ({route.endpoint.__module__}.{route.name})")
    return out


def _described(schema: dict, components: dict) -> bool:
    """A schema that says something: a model with properties, a list of such, a scalar."""
    if "$ref" in schema:
        model = components[schema["$ref"].rsplit("/", 1)[-1]]
        return bool(model.get("properties"))
    if "anyOf" in schema:
        return all(_described(s, components) for s in schema["anyOf"] if s.get("type") != "null")
    kind = schema.get("type")
    if kind == "array":
        return _described(schema.get("items", {}), components)
    return kind in ("string", "integer", "number", "boolean")


def undocumented(app: FastAPI) -> list[str]:
    """Routes in /docs whose success response has no schema there."""
    spec = app.openapi()
    components = spec.get("components", {}).get("schemas", {})
    out = []
    for route in api_routes(app):
        if not route.include_in_schema:
            continue
        for method in route.methods:
            status = str(route.status_code or 200)
            if status == "204":
                continue
            answer = spec["paths"][route.path][method.lower()]["responses"].get(status, {})
            content = answer.get("content", {})
            if _json(route):
                ok = _described(content.get("application/json", {}).get("schema", {}), components)
            else:
                ok = any(
                    media != "application/json" and _described(c.get("schema", {}), components)
                    for media, c in content.items()
                )
            if not ok:
                out.append(f"{method} {route.path} {status}: {answer}")
    return out


def shape(value: Any) -> Any:
    """The keys of a JSON value, nested; leaves reduced to None."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return None


def assert_exactly(model: Any, value: Any) -> None:
    """value validates as model, and has no field the model lacks and lacks none it declares."""
    adapter = TypeAdapter(model)
    assert shape(adapter.dump_python(adapter.validate_python(value), mode="json")) == shape(value)


# -- the application ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    """The sidebar's seed (Jane with mail from two reps), plus what the shapes must
    cover: meetings past and upcoming, a note, a done task, an owner, an unreadable
    message on a mailbox."""
    s = seed(tmp_path_factory.mktemp("openapi"), jane_messages=4)
    w = s.world
    box = _calendar(w, "alice@ourco.com")

    def meeting(uid, start):
        return MeetingRecord(
            remote_id=uid,
            uid=uid,
            recurrence_id=None,
            start=start,
            end=start + timedelta(hours=1),
            subject=uid,
            organizer=Attendee("alice@ourco.com", "Alice", "organizer"),
            attendees=[Attendee(JANE, "Jane Doe", "attendee", "accepted")],
            status="confirmed",
        )

    script = [batch(meeting("kickoff", NOW - timedelta(days=5)), meeting("review", NOW + timedelta(days=5)))]
    assert w.sync(box, connector_factory=lambda *a: ScriptedCalendar(script)).ok
    mbx = s.mailboxes["alice"][0]
    with write_transaction(w.rt.engine) as conn:
        conn.execute(
            insert(SyncIssue.__table__).values(
                org_id=w.org_id, mailbox_id=mbx, folder="INBOX", remote_id="1/99", reason="not RFC 5322", created_at=NOW
            )
        )
    yield s
    s.rt.engine.dispose()


@pytest.fixture(scope="module")
def client(sd):
    c = TestClient(create_app(sd.rt))
    yield c
    c.close()


@pytest.fixture(scope="module")
def ids(sd, client) -> dict[str, int]:
    """Jane (with an owner, a note and a done task), her company, the task, alice's mailbox."""
    h = sd.h("alice")
    contact = client.get("/api/lookup", params={"email": JANE}, headers=h).json()["contact"]
    jid = contact["id"]
    assert client.patch(f"/api/contacts/{jid}", json={"owner_id": sd.users["alice"]}, headers=h).status_code == 200
    assert client.post(f"/api/contacts/{jid}/notes", json={"body": "Met at the fair"}, headers=h).status_code == 201
    task = client.post(
        f"/api/contacts/{jid}/tasks",
        json={"title": "Send the quote", "due_at": (NOW + timedelta(days=2)).isoformat()},
        headers=h,
    )
    assert task.status_code == 201
    assert client.patch(f"/api/tasks/{task.json()['id']}", json={"done": True}, headers=h).status_code == 200
    calendar = sd.world.scalar("SELECT id FROM mailbox WHERE kind = 'caldav' OR status <> 'paused' ORDER BY id DESC")
    return {
        "contact": jid,
        "company": contact["company"]["id"],
        "task": task.json()["id"],
        "mailbox": sd.mailboxes["alice"][0],
        "calendar": calendar,
    }


# -- declared and documented --------------------------------------------------------------


def test_the_walk_sees_the_routes_of_every_router(client):
    found = {(m, r.path) for r in api_routes(client.app) for m in r.methods}
    assert {
        ("GET", "/api/lookup"),
        ("POST", "/api/log-email"),
        ("GET", "/panel/config.json"),
        ("GET", "/livez"),
        ("GET", "/api/admin/org"),
        ("GET", "/admin/login"),
    } <= found
    assert len(found) > 80


def test_every_json_route_declares_its_response_model(client):
    assert undeclared(client.app) == []


def test_openapi_shows_a_schema_for_every_success_response(client):
    assert undocumented(client.app) == []


def test_every_json_route_is_in_the_docs(client):
    hidden = [r.path for r in api_routes(client.app) if _json(r) and not r.include_in_schema]
    assert hidden == []


def test_the_panel_config_answers_through_its_model_with_the_pages_security_headers(client):
    from app.api.panel import SECURITY

    r = client.get("/panel/config.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert {k.lower(): v for k, v in SECURITY.items()}.items() <= dict(r.headers).items()
    assert_exactly(schemas.PanelConfig, r.json())
    assert r.json()["stages"] == list(people.STAGES)


def test_the_checks_flag_a_route_that_answers_an_undescribed_dict():
    app = FastAPI()

    @app.get("/bare")
    def bare():
        return {}

    @app.get("/dict")
    def loose() -> dict:
        return {}

    @app.get("/page", response_class=HTMLResponse)
    def page() -> str:
        return "<p>hi</p>"

    @app.get("/health")
    def health() -> schemas.Health:
        return schemas.Health(ok=True)

    assert [line.split(" (")[0] for line in undeclared(app)] == ["['GET'] /bare"]
    assert [line.split(" 200")[0] for line in undocumented(app)] == ["GET /bare", "GET /dict"]


# -- the models say exactly what comes back ---------------------------------------------


def test_the_lookup_body_has_exactly_the_shape_of_its_model(sd, client, ids):
    # The lookup is encoded by orjson, not through its model (app/api/contacts.py),
    # so nothing at run time holds its body to what /docs says.
    body = client.get("/api/lookup", params={"email": JANE}, headers=sd.h("alice")).json()
    assert {i["kind"] for i in body["timeline"]["items"]} == {"email", "meeting", "note", "task"}
    assert body["next_meeting"]["subject"] == "review" and body["last_meeting"]["subject"] == "kickoff"
    assert body["contact"]["owner"] and body["contact"]["company"] and body["company_contacts"]
    assert any(i["author"] for i in body["timeline"]["items"]) and body["summary"]["colleagues"]
    assert_exactly(schemas.Lookup, body)


def _calls(sd, ids: dict[str, int]) -> dict[tuple[str, str], dict]:
    """The arguments to call each JSON route's endpoint with, as alice."""
    from app.api.activity import LogEmailIn, NoteIn, TaskIn, TaskPatch
    from app.api.deals import DealIn, DealPatch, PipelineIn, SettingsPatch, ThreadLink
    from app.api.people import ContactIn, ContactPatch, NeverLogIn

    me = {"caller": Caller(sd.users["alice"], sd.world.org_id, "alice@ourco.com", "rep"), "rt": sd.rt}
    contact, company, mailbox = ids["contact"], ids["company"], ids["mailbox"]
    mail = LogEmailIn(
        internet_message_id="<logged@acme.com>",
        subject="Logged by hand",
        sender={"name": "Jane Doe", "email": JANE},
        to=[{"email": "alice@ourco.com"}],
        date=NOW,
    )
    from datetime import timedelta

    from sqlalchemy import insert

    from app.api.followups import CalendarIn, KeyAccountIn, SnoozeIn
    from app.db import write_transaction
    from app.models import FollowUp

    made = itertools.count(1)

    def followup() -> int:
        at = NOW - timedelta(days=5)
        with write_transaction(sd.rt.engine) as conn:
            return conn.execute(
                insert(FollowUp.__table__).values(
                    org_id=sd.world.org_id,
                    thread_key=f"openapi-followup-{next(made)}",
                    kind="waiting",
                    user_id=sd.users["alice"],
                    address=JANE,
                    contact_id=contact,
                    since=at,
                    due_at=at,
                    status="open",
                    updated_at=at,
                )
            ).inserted_primary_key[0]

    boss = sd.world.add_user(f"boss{len(sd.users)}@ourco.com", "Boss", admin=True)
    sd.users[f"boss{boss}"] = boss
    admin = {"caller": Caller(boss, sd.world.org_id, "boss@ourco.com", "admin"), "rt": sd.rt}
    pipe = deals.create_pipeline(sd.rt, Actor.of(admin["caller"]), name=f"Sales {boss}")
    deal = deals.create_deal(
        sd.rt,
        Actor.of(me["caller"]),
        name="Acme rollout",
        pipeline_id=pipe["id"],
        contact_ids=[contact],
        amount_minor=9,
    )
    deals.update_deal(sd.rt, Actor.of(me["caller"]), deal["id"], {"stage_id": pipe["stages"][1]["id"]})
    with write_transaction(sd.rt.engine) as conn:  # opened before Jane's mail, so the timeline has both kinds
        conn.execute(
            text("UPDATE deal SET opened_at = :t WHERE id = :i"), {"t": NOW - timedelta(days=90), "i": deal["id"]}
        )
    on_deal = {**me, "deal_id": deal["id"]}
    from app.api.reports import Filters

    team = {**admin, "f": Filters()}
    import io
    from types import SimpleNamespace

    from fastapi import UploadFile

    from app.api.admin_pages import Console
    from app.api.segment_schemas import SegmentFilters, SegmentIn, SegmentPatch
    from app.services import segments

    def segment_id() -> int:
        return segments.create_segment(
            sd.rt, Actor.of(me["caller"]), name=f"Seg {next(made)}", filters={"tags": ["x"]}
        )["id"]

    def upload() -> UploadFile:
        data = b"email,name,stage\nuna.import@newco.example,Una,lead\nbad,Bad,\n"
        return UploadFile(io.BytesIO(data), filename="people.csv")

    query = dict.fromkeys(
        (
            "tags",
            "stage",
            "owner_id",
            "domain",
            "last_before",
            "last_after",
            "min_strength",
            "max_strength",
            "has_open_deal",
            "q",
        )
    )
    to_import = dict(entity="contacts", format="csv", map=None, encoding=None)
    return {
        ("GET", "/api/reports/activity"): team,
        ("GET", "/api/reports/response-times"): team,
        ("GET", "/api/reports/new-contacts"): team,
        ("GET", "/api/reports/cold-accounts"): {**team, "sort": "strength", "limit": 25},
        ("GET", "/api/reports/pipeline"): {**team, "pipeline": None, "currency": None},
        ("GET", "/api/segments"): {**me, "entity": None},
        ("POST", "/api/segments"): {
            **me,
            "body": SegmentIn(name="Acme people", filters=SegmentFilters(domain="acme.com")),
        },
        ("GET", "/api/segment-query"): {
            **me,
            **query,
            "entity": "contacts",
            "domain": "acme.com",
            "after": 0,
            "limit": 50,
        },
        ("GET", "/api/segments/{segment_id}/items"): {**me, "segment_id": segment_id(), "after": 0, "limit": 50},
        ("PATCH", "/api/segments/{segment_id}"): {**me, "segment_id": segment_id(), "body": SegmentPatch(shared=True)},
        ("DELETE", "/api/segments/{segment_id}"): {**me, "segment_id": segment_id()},
        ("POST", "/api/contacts/import"): {
            **admin,
            **to_import,
            "file": upload(),
            "dry_run": True,
            "skip_invalid": False,
        },
        ("POST", "/api/contacts/import/preview"): {**admin, **to_import, "file": upload()},
        ("POST", "/admin/import/run"): {
            # the console's action: its request only carries the runtime (no session: no CSRF value)
            "request": SimpleNamespace(
                app=SimpleNamespace(state=SimpleNamespace(runtime=sd.rt)), state=SimpleNamespace()
            ),
            "con": Console(admin["caller"], None, "boss@ourco.com", "OurCo"),
            "file": upload(),
            "action": "dry_run",
            "entity": "contacts",
            "format": "csv",
            "encoding": "",
            "map": '{"email": "email"}',
            "csrf": "",
        },
        ("GET", "/api/pipelines"): me,
        ("POST", "/api/pipelines"): {**admin, "body": PipelineIn(name=f"Renewals {boss}")},
        ("PATCH", "/api/deal-settings"): {**admin, "body": SettingsPatch(deal_visibility="all")},
        ("GET", "/api/deals"): {
            **me,
            "pipeline_id": None,
            "status": "all",
            "owner_id": None,
            "limit": 100,
            "offset": 0,
        },
        ("POST", "/api/deals"): {**me, "body": DealIn(name="Second", contact_ids=[contact], message_id="<x@acme.com>")},
        ("GET", "/api/deal-prefill"): {**me, "message_id": "<x@acme.com>", "email": [JANE], "subject": "Re: Pricing"},
        ("GET", "/api/deals/{deal_id}"): on_deal,
        ("PATCH", "/api/deals/{deal_id}"): {**on_deal, "patch": DealPatch(close_date=NOW.date())},
        ("POST", "/api/deals/{deal_id}/threads"): {**on_deal, "body": ThreadLink(thread_key="t@acme.com")},
        ("GET", "/api/deals/{deal_id}/timeline"): {**on_deal, "cursor": None, "limit": 100},
        ("GET", "/api/board"): {**me, "pipeline_id": pipe["id"]},
        ("GET", "/api/me/day"): me,
        ("GET", "/api/followups"): {**me, "rep": None},
        ("POST", "/api/followups/{followup_id}/snooze"): {**me, "followup_id": followup(), "body": SnoozeIn(span="1d")},
        ("POST", "/api/followups/{followup_id}/done"): {**me, "followup_id": followup()},
        ("POST", "/api/key-accounts"): {**me, "body": KeyAccountIn(kind="contact", id=contact)},
        ("PATCH", "/api/me/calendar"): {**me, "body": CalendarIn(timezone="Europe/Paris")},
        ("GET", "/api/companies"): {**me, "sort": "strength", "limit": 100},
        ("GET", "/healthz"): {},
        ("GET", "/livez"): {},
        ("GET", "/panel/config.json"): {"rt": sd.rt, "response": Response()},
        ("GET", "/api/me"): me,
        **_duplicate_calls(sd),
        ("GET", "/api/stages"): {"caller": me["caller"]},
        ("GET", "/api/lookup"): {**me, "email": JANE, "limit": 100},
        ("GET", "/api/contacts"): {**me, "q": "ja", "limit": 20},
        ("POST", "/api/contacts"): {
            **me,
            "body": ContactIn(email="una@newco.example", name="Una", tags=["trade fair"]),
        },
        ("GET", "/api/contacts/{contact_id}"): {**me, "contact_id": contact},
        ("PATCH", "/api/contacts/{contact_id}"): {**me, "contact_id": contact, "body": ContactPatch(title="CTO")},
        ("GET", "/api/contacts/{contact_id}/timeline"): {**me, "contact_id": contact, "cursor": None, "limit": 100},
        ("POST", "/api/contacts/{contact_id}/notes"): {**me, "contact_id": contact, "note": NoteIn(body="Call back")},
        ("POST", "/api/contacts/{contact_id}/tasks"): {
            **me,
            "contact_id": contact,
            "task": TaskIn(title="Demo", due_at=NOW, body="Bring slides"),
        },
        ("PATCH", "/api/tasks/{task_id}"): {
            **me,
            "task_id": ids["task"],
            "patch": TaskPatch(title="Send the quote v2"),
        },
        ("POST", "/api/log-email"): {**me, "mail": mail},
        ("GET", "/api/never-log"): {**me, "email": JANE, "scope": "address"},
        ("POST", "/api/never-log"): {**me, "body": NeverLogIn(email="nobody@unrelated.example", scope="domain")},
        ("GET", "/api/companies/{company_id}"): {**me, "company_id": company},
        ("GET", "/api/companies/{company_id}/timeline"): {**me, "company_id": company, "cursor": None, "limit": 100},
        ("GET", "/api/mailboxes"): me,
        ("GET", "/api/mailboxes/{mailbox_id}"): {**me, "mailbox_id": mailbox},
        # the seed's mail mailboxes are paused (sync now refuses those: 409); alice's calendar is not
        ("POST", "/api/mailboxes/{mailbox_id}/sync"): {**me, "mailbox_id": ids["calendar"]},
    }


def _duplicate_calls(sd) -> dict[tuple[str, str], dict]:
    """The admin's duplicate routes, on contacts made for them: two Pat Lees at one company
    (a candidate with evidence), a pair to merge and a merge to undo."""
    from app.services import duplicates, people

    op = Actor.operator(sd.world.org_id)
    admin = {"caller": Caller(None, sd.world.org_id, "operator", "admin"), "rt": sd.rt}  # type: ignore[arg-type]
    made = [
        people.create_contact(sd.rt, op, email=f"{who}@dupes.example", name="Pat Lee")["id"]
        for who in ("pat", "plee", "p.lee", "pat.lee", "lee.p")
    ]
    undo = duplicates.merge(sd.rt, op, made[3], made[4])["audit_id"]
    return {
        ("GET", "/api/admin/duplicates"): {**admin, "limit": 100},
        ("POST", "/api/admin/duplicates/{contact_id}/dismiss/{other_id}"): {
            **admin,
            "contact_id": made[0],
            "other_id": made[1],
        },
        ("POST", "/api/admin/contacts/{contact_id}/merge/{other_id}"): {
            **admin,
            "contact_id": made[0],
            "other_id": made[2],
        },
        ("GET", "/api/admin/merges"): {**admin, "limit": 50},
        ("POST", "/api/admin/merges/{audit_id}/undo"): {**admin, "audit_id": undo},
    }


def _answer(route, kwargs: dict) -> Any:
    """What the endpoint itself returns, before FastAPI fits it to the model, as JSON."""
    value = route.endpoint(**kwargs)
    if inspect.iscoroutine(value):
        # On a thread of its own: an earlier test may leave an event loop running on this one.
        with ThreadPoolExecutor(1) as pool:
            value = pool.submit(asyncio.run, value).result()
    if isinstance(value, Response):
        return json.loads(value.body)
    return TypeAdapter(Any).dump_python(value, mode="json")


def test_every_json_route_answers_exactly_its_models_fields(sd, client, ids):
    # FastAPI drops without a word what a model lacks: a field a service adds must
    # be added to its model (app/api/schemas.py) to reach clients, and a model
    # must not promise a field nobody sends.
    # The admin API's rows allow fields per source kind (extra="allow", app/api/admin_schemas.py):
    # its shapes are checked by the admin tests; the reps' API is exact.
    routes = {
        (m, r.path): r
        for r in api_routes(client.app)
        for m in r.methods
        if r.response_model is not None and r.endpoint.__module__ != "app.api.admin"
    }
    calls = _calls(sd, ids)
    assert sorted(routes) == sorted(calls), "a new JSON route needs its call in _calls"
    answers = {key: _answer(routes[key], kwargs) for key, kwargs in calls.items()}
    mailbox = answers[("GET", "/api/mailboxes/{mailbox_id}")]
    assert mailbox["folders"] and mailbox["unreadable"] and answers[("GET", "/api/contacts")]
    kinds = {i["type"] for i in answers[("GET", "/api/deals/{deal_id}/timeline")]["items"]}
    assert kinds == {"interaction", "stage_change"} and answers[("GET", "/api/board")]["columns"][1]["deals"]
    assert answers[("GET", "/api/deal-prefill")]["deals"] and answers[("GET", "/api/deal-prefill")]["contacts"]
    assert answers[("GET", "/api/segment-query")]["items"][0]["company"]["domain"] == "acme.com"
    imported = answers[("POST", "/api/contacts/import")]
    assert imported["errors"][0]["row"] == 3 and imported["dry_run"]
    assert answers[("POST", "/api/contacts/import/preview")]["rows"][1]["error"]["field"] == "email"
    assert answers[("POST", "/admin/import/run")]["result"]["errors"][0]["row"] == 3
    task = answers[("PATCH", "/api/tasks/{task_id}")]
    assert task["done_at"] and task["author"] and answers[("POST", "/api/log-email")]["created"]
    for key, value in answers.items():
        try:
            assert_exactly(routes[key].response_model, value)
        except AssertionError as exc:
            raise AssertionError(f"{key}: {exc}") from None
