"""Calendars (CalDAV) and Microsoft 365 in the admin API and console: added through the
same services as the CLI, against the real test Radicale and the fake Graph/Entra;
audited, scoped to the admin's organisation, and never echoing a password or secret."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from app.api import create_app
from app.db import session
from app.services import orgs
from sync.engine import sync_mailbox
from tests import factories
from tests.connectors.test_ical import event, stamp, vcalendar
from tests.world import make_world

ALICE, BOB = "alice@ourco.com", "bob@ourco.com"
SOON = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) + timedelta(days=2)


@pytest.fixture
def env(tmp_path):
    w = make_world(tmp_path)
    admin = w.add_user("boss@ourco.com", "Boss", admin=True)
    with session(w.rt.engine) as s:
        token = factories.issue_token(s, s.get(orgs.User, admin))
        other = factories.create_org(s, "Other Org", ["other.org"])
        other_token = factories.issue_token(s, factories.add_user(s, other, "admin@other.org", admin=True))
    client = TestClient(create_app(w.rt))
    client.headers["Authorization"] = f"Bearer {token}"
    yield w, client, token, {"Authorization": f"Bearer {other_token}"}
    client.close()


def no_secret(secret: str, *responses) -> None:
    for r in responses:
        assert secret not in r.text, f"{r.request.method} {r.request.url} echoed the secret"


def test_caldav_account_through_the_api_checks_stores_and_syncs(env, caldav_user, caplog):
    caplog.set_level(logging.DEBUG)
    w, client, _, other = env
    caldav_user.put(
        "demo.ics",
        vcalendar(event("demo@ourco.com", stamp(SOON), summary="Demo", attendees=(("jane@acme.com", "ACCEPTED"),))),
    )
    body = {"owner": ALICE, "url": caldav_user.url, "username": caldav_user.username, "password": caldav_user.password}
    seen = []

    wrong = client.post("/api/admin/mailboxes/caldav", json={**body, "password": "Wrong-pass-1234"})
    assert wrong.status_code == 422 and "(auth)" in wrong.json()["detail"], wrong.text
    no_secret("Wrong-pass-1234", wrong)
    assert client.get("/api/admin/mailboxes").json() == []  # nothing stored
    seen.append(client.post("/api/admin/mailboxes/caldav", json={**body, "owner": "nobody@ourco.com"}))
    assert seen[-1].status_code == 422 and seen[-1].json()["field"] == "owner"
    seen.append(client.post("/api/admin/mailboxes/caldav", json={**body, "url": "ftp://x"}))
    assert seen[-1].status_code == 422
    seen.append(client.post("/api/admin/mailboxes/caldav", json={"password": caldav_user.password}))
    assert seen[-1].status_code == 422  # a validation error without the body echoed back
    # another organisation cannot add one for this organisation's rep
    seen.append(client.post("/api/admin/mailboxes/caldav", json=body, headers=other))
    assert seen[-1].status_code == 422 and seen[-1].json()["field"] == "owner"

    added = client.post("/api/admin/mailboxes/caldav", json=body)
    assert added.status_code == 201, added.text
    mb = added.json()
    mid = mb["id"]
    assert (mb["kind"], mb["owner"], mb["url"], mb["username"]) == (
        "caldav",
        ALICE,
        caldav_user.url,
        caldav_user.username,
    )
    assert mb["calendars"] == [f"/{caldav_user.username}/calendar/"]
    seen.append(added)
    stored = w.sql("SELECT kind, secret_enc, config FROM mailbox WHERE id = :i", i=mid)[0]
    assert stored.kind == "caldav" and caldav_user.password not in stored.secret_enc + str(stored.config)

    report = sync_mailbox(w.rt.engine, w.rt.box, mid)
    assert report.ok, report
    detail = client.get(f"/api/admin/mailboxes/{mid}")
    d = detail.json()
    assert (d["status"], d["health"], d["messages_imported"], d["url"], d["location"]) == (
        "active",
        "healthy",
        1,
        caldav_user.url,
        caldav_user.url,
    )
    assert [f["name"] for f in d["folders"]] == [f"/{caldav_user.username}/calendar/"]
    assert w.scalar("SELECT subject FROM interaction WHERE kind = 'meeting'") == "Demo"
    health = client.get("/api/admin/mailboxes")
    assert [(r["kind"], r["account"]) for r in health.json()] == [("caldav", caldav_user.username)]
    assert client.get(f"/api/admin/mailboxes/{mid}", headers=other).status_code == 404
    seen += [detail, health]

    # the shared operations work on a calendar account too
    for action in ("pause", "resume", "resync"):
        r = client.post(f"/api/admin/mailboxes/{mid}/{action}")
        assert r.status_code == 200, (action, r.text)
    seen.append(client.get("/admin", follow_redirects=False))
    page = client.get(f"/admin/mailboxes/{mid}")
    seen.append(page)
    assert "Calendar (CalDAV)" in seen[-2].text and caldav_user.url in seen[-2].text
    assert caldav_user.url in page.text and caldav_user.username in page.text
    assert 'name="password"' in page.text  # the password can be replaced from the page
    events = client.get("/api/admin/audit").json()
    seen.append(client.get("/admin/audit"))
    adds = [e for e in events if e["action"] == "mailbox.add"]
    assert len(adds) == 1 and adds[0]["target"] == f"mailbox {mid} (caldav {caldav_user.username})"
    assert adds[0]["detail"] == {"url": caldav_user.url, "owner": ALICE, "checked": True}
    assert {"mailbox.pause", "mailbox.resume", "mailbox.resync"} <= {e["action"] for e in events}
    no_secret(caldav_user.password, *seen)
    assert caldav_user.password not in caplog.text and "Wrong-pass-1234" not in caplog.text

    assert client.delete(f"/api/admin/mailboxes/{mid}").status_code == 200
    assert client.get("/api/admin/mailboxes").json() == []


def test_m365_tenant_and_mailboxes_through_the_api(env, graph, caplog):
    caplog.set_level(logging.DEBUG, logger="app")
    w, client, _, other = env
    client_id, secret = graph.register_app()
    graph.mailbox(ALICE)
    tenant = {
        "tenant_id": graph.tenant,
        "client_id": client_id,
        "client_secret": secret,
        "authority": graph.authority,
        "graph_url": graph.graph_url,
    }
    seen = []

    wrong = client.post("/api/admin/m365/tenants", json={**tenant, "client_secret": "Not-the-secret-99"})
    assert wrong.status_code == 422 and "Entra" in wrong.json()["detail"], wrong.text
    no_secret("Not-the-secret-99", wrong)
    assert client.get("/api/admin/m365/tenants").json() == []
    seen.append(client.post("/api/admin/m365/tenants", json={"client_secret": secret}))
    assert seen[-1].status_code == 422

    added = client.post("/api/admin/m365/tenants", json=tenant)
    assert added.status_code == 201, added.text
    t = added.json()
    assert (t["tenant_id"], t["client_id"], t["auth_kind"], t["authority"]) == (
        graph.tenant,
        client_id,
        "secret",
        graph.authority,
    )
    tenants = client.get("/api/admin/m365/tenants")
    assert [(x["id"], x["mailboxes"]) for x in tenants.json()] == [(t["id"], 0)]
    assert client.get("/api/admin/m365/tenants", headers=other).json() == []
    seen += [added, tenants]
    assert secret not in w.scalar("SELECT secret_enc FROM m365tenant")

    one = client.post("/api/admin/mailboxes/m365", json={"tenant": graph.tenant, "owner": ALICE})
    assert one.status_code == 201, one.text
    [row] = one.json()
    assert (row["kind"], row["owner"], row["tenant"], row["user"], row["mode"], row["protocol"]) == (
        "m365",
        ALICE,
        graph.tenant,
        ALICE,
        "app",
        "graph",
    )
    again = client.post("/api/admin/mailboxes/m365", json={"tenant": graph.tenant, "owner": ALICE})
    assert again.status_code == 409 and "already" in again.json()["detail"]  # Conflict: fine request, existing state
    nope = client.post("/api/admin/mailboxes/m365", json={"tenant": "nope", "owner": ALICE})
    assert nope.status_code == 422 and nope.json()["field"] == "tenant"  # a value in the body, not the resource
    assert client.post("/api/admin/mailboxes/m365", json={"tenant": graph.tenant}).status_code == 422
    assert (
        client.post(
            "/api/admin/mailboxes/m365", json={"tenant": graph.tenant, "all_reps": True}, headers=other
        ).status_code
        == 422
    )
    rest = client.post("/api/admin/mailboxes/m365", json={"tenant": str(t["id"]), "all_reps": True})
    assert rest.status_code == 201
    assert BOB in {r["owner"] for r in rest.json()} and ALICE not in {r["owner"] for r in rest.json()}

    graph.add_message(
        ALICE,
        internet_message_id="<m365-admin@acme.com>",
        subject="Pricing",
        sender=("Carla", "carla@acme.com"),
        to=[("Alice", ALICE)],
    )
    report = sync_mailbox(w.rt.engine, w.rt.box, row["id"])
    assert report.ok, report
    health = client.get("/api/admin/mailboxes")
    alice = next(r for r in health.json() if r["id"] == row["id"])
    assert (alice["status"], alice["location"], alice["account"]) == ("active", f"tenant {graph.tenant}", ALICE)
    home = client.get("/admin")
    assert "Microsoft 365" in home.text and f"tenant {graph.tenant}" in home.text
    page = client.get(f"/admin/mailboxes/{row['id']}")
    assert graph.tenant in page.text and 'name="password"' not in page.text
    new = client.get("/admin/mailboxes/new?kind=m365")
    assert "threadline mailbox add-m365 --owner REP --client-id APP" in new.text and graph.tenant in new.text
    seen += [one, rest, health, home, page, new, client.get("/admin/audit")]

    # the console form: a wrong secret is refused and never shown back
    form = {
        "tenant_id": graph.tenant,
        "client_id": client_id,
        "client_secret": "Form-wrong-secret-7",
        "authority": graph.authority,
        "graph_url": graph.graph_url,
        "check": "1",
    }
    refused = client.post("/admin/m365/tenants", data=form)
    assert refused.status_code == 422 and "Entra" in refused.text and graph.authority in refused.text
    no_secret("Form-wrong-secret-7", refused)
    ok = client.post("/admin/m365/tenants", data={**form, "client_secret": secret}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/admin/mailboxes/new?kind=m365&ok=tenant"

    events = client.get("/api/admin/audit").json()
    assert [e["action"] for e in events].count("m365.tenant_add") == 2
    adds = [e for e in events if e["action"] == "mailbox.add"]
    # one use case, one record: the single mailbox, then every rep's at once (listed in one entry)
    assert len(adds) == 2 and all(e["detail"]["tenant"] == graph.tenant for e in adds)
    assert sorted(adds[0]["detail"]["mailboxes"]) == sorted(m["id"] for m in rest.json())
    no_secret(secret, *seen, ok)
    assert secret not in caplog.text and "Not-the-secret-99" not in caplog.text

    # Removing the tenant: refused while mailboxes read through it, then its credential is gone.
    boxes = sorted([row["id"]] + [r["id"] for r in rest.json()])
    busy = client.delete(f"/api/admin/m365/tenants/{graph.tenant}")
    assert busy.status_code == 409 and all(str(i) in busy.json()["detail"] for i in boxes), busy.text
    assert client.delete(f"/api/admin/m365/tenants/{graph.tenant}", headers=other).status_code == 404
    page = client.post(f"/admin/m365/tenants/{t['id']}/remove", data={})
    assert page.status_code == 409 and "remove them first" in page.text
    assert 'action="/admin/m365/tenants/' not in client.get("/admin/mailboxes/new?kind=m365").text
    for mailbox_id in boxes:
        assert client.delete(f"/api/admin/mailboxes/{mailbox_id}").status_code == 200
    assert f'action="/admin/m365/tenants/{t["id"]}/remove"' in client.get("/admin/mailboxes/new?kind=m365").text
    removed = client.post(f"/admin/m365/tenants/{t['id']}/remove", data={}, follow_redirects=False)
    assert removed.status_code == 303 and removed.headers["location"].endswith("ok=tenant_removed")
    assert client.get("/api/admin/m365/tenants").json() == []
    assert w.scalar("SELECT count(*) FROM m365tenant") == 0
    assert client.delete(f"/api/admin/m365/tenants/{graph.tenant}").status_code == 404
    gone = [e for e in client.get("/api/admin/audit").json() if e["action"] == "m365.tenant_remove"]
    assert len(gone) == 1 and graph.tenant in gone[0]["target"]


def test_console_adds_a_caldav_account(tmp_path, caldav_user, live_app, page):
    w = make_world(tmp_path)
    admin = w.add_user("boss@ourco.com", "Boss", admin=True)
    with session(w.rt.engine) as s:
        token = factories.issue_token(s, s.get(orgs.User, admin))
    base = live_app(w)
    page.set_viewport_size({"width": 1200, "height": 900})
    page.goto(base + "/admin/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/admin")

    page.click("text=Add mailbox")
    page.click("text=Calendar (CalDAV)")
    page.wait_for_url("**/admin/mailboxes/new?kind=caldav")
    assert page.is_checked("#add-caldav input[name=check]")
    page.select_option("#add-caldav select[name=owner]", ALICE)
    page.fill("#add-caldav input[name=url]", caldav_user.url)
    page.fill("#add-caldav input[name=username]", caldav_user.username)
    page.fill("#add-caldav input[name=password]", "Console-wrong-55")
    page.click("#add-caldav-button")
    assert "(auth)" in page.inner_text("p.error")
    assert "Console-wrong-55" not in page.content()
    assert page.input_value("#add-caldav input[name=username]") == caldav_user.username

    page.fill("#add-caldav input[name=password]", caldav_user.password)
    page.click("#add-caldav-button")
    page.wait_for_url("**/admin/mailboxes/*?ok=caldav_added")
    assert "Calendar account added" in page.inner_text("main")
    assert page.inner_text("#caldav-url") == caldav_user.url
    page.goto(base + "/admin")
    row = page.inner_text("#health tbody tr")
    assert "Calendar (CalDAV)" in row and caldav_user.username in row and caldav_user.url in row and ALICE in row
    assert caldav_user.password not in page.content()
    page.goto(base + "/admin/audit")
    assert "mailbox.add" in page.inner_text("#audit") and caldav_user.password not in page.content()
    assert w.scalar("SELECT count(*) FROM mailbox WHERE kind = 'caldav'") == 1
