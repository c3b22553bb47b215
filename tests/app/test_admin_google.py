"""Google Workspace in the admin console, next to Microsoft 365: the connection test
names the step that failed, nothing is stored until it passes, the key is never shown,
reps' Gmail is added for the whole domain, and a withdrawn delegation says what to do."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi.testclient import TestClient

from app.api import create_app
from app.db import session
from app.services import orgs
from connectors.googleauth import CALENDAR_SCOPE, MAIL_SCOPE, SCOPES
from sync.engine import sync_mailbox
from tests import factories
from tests.world import make_world

ALICE, BOB = "alice@ourco.com", "bob@ourco.com"


@pytest.fixture
def console(tmp_path):
    w = make_world(tmp_path)
    admin = w.add_user("boss@ourco.com", "Boss", admin=True)
    with session(w.rt.engine) as s:
        token = factories.issue_token(s, s.get(orgs.User, admin))
    client = TestClient(create_app(w.rt))
    client.headers["Authorization"] = f"Bearer {token}"
    yield w, client
    client.close()


def steps_of(page: str) -> dict[str, str]:
    """step -> passed | failed | skipped, as the page's test list shows them."""
    import re

    return {
        m.group(2): m.group(1)
        for m in re.finditer(r'<li class="step (passed|failed|skipped)" data-step="([a-z]+)">', page)
    }


def test_add_google_workspace_tests_each_step_then_adds_every_reps_gmail(console, google, caplog):
    caplog.set_level(logging.DEBUG)
    w, client = console
    key = google.service_account()
    client_id = json.loads(key)["client_id"]
    private = json.loads(key)["private_key"].splitlines()[1]
    for rep in (ALICE, BOB):
        google.add_user(rep)
    form = {"domain": "ourco.com", "key": key, "check_user": ALICE}
    seen = []

    page = client.get("/admin/mailboxes/new?kind=google")
    assert page.status_code == 200 and "Connect a Google Workspace" in page.text
    assert 'href="/admin/mailboxes/new?kind=m365"' in page.text  # beside Microsoft 365
    seen.append(client.get("/admin/mailboxes/new?kind=m365"))
    assert 'href="/admin/mailboxes/new?kind=google"' in seen[-1].text

    # Before the admin authorises the client id: the test stops at the delegation step.
    seen.append(client.post("/admin/google/test", data=form))
    assert seen[-1].status_code == 200
    assert steps_of(seen[-1].text) == {"key": "passed", "token": "passed", "delegation": "failed"}
    assert "Manage Domain Wide Delegation" in seen[-1].text and client_id in seen[-1].text
    seen.append(client.post("/admin/google/workspaces", data=form, follow_redirects=False))
    assert seen[-1].status_code == 422 and "Nothing was saved" in seen[-1].text
    assert steps_of(seen[-1].text)["delegation"] == "failed"
    assert w.scalar("SELECT COUNT(*) FROM googleworkspace") == 0

    google.delegate(client_id, ["https://www.googleapis.com/auth/drive.readonly"])  # the wrong scope
    seen.append(client.post("/admin/google/test", data=form))
    assert steps_of(seen[-1].text)["delegation"] == "failed"  # Google says the same for a missing scope
    google.delegate(client_id, [MAIL_SCOPE])  # Gmail's scope only: the scopes step names the calendar's
    seen.append(client.post("/admin/google/test", data=form))
    assert steps_of(seen[-1].text)["scopes"] == "failed" and CALENDAR_SCOPE in seen[-1].text
    google.delegate(client_id, SCOPES)
    seen.append(client.post("/admin/google/test", data={**form, "check_user": "stranger@ourco.com"}))
    assert steps_of(seen[-1].text)["user"] == "failed" and "not a user of the Google Workspace" in seen[-1].text
    seen.append(client.post("/admin/google/test", data={**form, "key": '{"type": "authorized_user"}'}))
    assert steps_of(seen[-1].text) == {"key": "failed"}

    seen.append(client.post("/admin/google/workspaces", data=form, follow_redirects=False))
    assert seen[-1].status_code == 303 and seen[-1].headers["location"].endswith("ok=workspace")
    seen.append(client.get(seen[-1].headers["location"]))
    assert "Google Workspace connected" in seen[-1].text and client_id in seen[-1].text
    assert 'id="add-gmail"' in seen[-1].text

    ws = w.scalar("SELECT id FROM googleworkspace")
    seen.append(
        client.post("/admin/mailboxes/google", data={"workspace": str(ws), "owner": "*"}, follow_redirects=False)
    )
    assert seen[-1].status_code == 303 and "gmail_all" in seen[-1].headers["location"]
    rows = w.sql("SELECT config, id FROM mailbox WHERE kind = 'gmail'")
    boxes = {(c if isinstance(c, dict) else json.loads(c))["user"]: i for c, i in rows}
    assert set(boxes) == {ALICE, BOB, "boss@ourco.com"}  # every enabled user of the domain
    seen.append(client.get("/admin"))
    assert "Google Workspace ourco.com" in seen[-1].text

    # The admin withdraws the delegation: the mailbox fails with the step to take.
    google.undelegate(client_id)
    assert not sync_mailbox(w.rt.engine, w.rt.box, boxes[ALICE]).ok
    seen.append(client.get(f"/admin/mailboxes/{boxes[ALICE]}"))
    assert "Reconnect Google Workspace" in seen[-1].text and "Manage Domain Wide Delegation" in seen[-1].text

    for response in seen:
        assert "PRIVATE KEY" not in response.text and private not in response.text
    assert private not in caplog.text
    dump = str(w.sql("SELECT secret_enc, config FROM googleworkspace"))
    assert private not in dump and "PRIVATE KEY" not in dump
    assert {e.action for e in w.sql("SELECT action FROM auditevent")} >= {"google.workspace_add", "mailbox.add"}


def test_the_admin_api_adds_a_workspace_only_after_its_test_passes_and_never_echoes_the_key(console, google):
    w, client = console
    key = google.service_account()
    client_id = json.loads(key)["client_id"]
    private = json.loads(key)["private_key"].splitlines()[1]
    google.add_user(ALICE)
    seen = [client.post("/api/admin/google/test", json={"key": key, "user": ALICE})]
    test = seen[-1].json()
    assert seen[-1].status_code == 200 and test["ok"] is False
    failed = [s for s in test["steps"] if s["ok"] is False]
    assert [s["step"] for s in failed] == ["delegation"] and "Manage Domain Wide Delegation" in failed[0]["fix"]
    seen.append(
        client.post("/api/admin/google/workspaces", json={"domain": "ourco.com", "key": key, "check_user": ALICE})
    )
    refused = seen[-1].json()
    assert seen[-1].status_code == 422 and refused["field"] == "key" and "delegation step" in refused["detail"]
    assert [s["step"] for s in refused["steps"] if s["ok"] is False] == ["delegation"]
    assert client.get("/api/admin/google/workspaces").json() == []

    google.delegate(client_id, SCOPES)
    seen.append(
        client.post("/api/admin/google/workspaces", json={"domain": "ourco.com", "key": key, "check_user": ALICE})
    )
    assert seen[-1].status_code == 201 and seen[-1].json()["client_id"] == client_id
    seen.append(client.post("/api/admin/mailboxes/google", json={"all_reps": True}))
    added = seen[-1].json()
    assert seen[-1].status_code == 201 and {m["user"] for m in added["added"]} == {ALICE, BOB, "boss@ourco.com"}
    assert all(m["kind"] == "gmail" and m["location"] == "Google Workspace ourco.com" for m in added["added"])
    seen.append(client.get("/api/admin/google/workspaces"))
    assert [(x["domain"], x["mailboxes"]) for x in seen[-1].json()] == [("ourco.com", 3)]
    seen.append(client.delete("/api/admin/google/workspaces/ourco.com"))
    assert seen[-1].status_code == 409
    for response in seen:
        assert private not in response.text and "PRIVATE KEY" not in response.text
