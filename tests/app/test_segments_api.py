"""Segments, import and export over HTTP with real tokens: private segments stay private, bad
filters are 422 naming the field, exports stream with their media type, an import's dry run lists
row errors, and the organisation export is for admins."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.api import create_app
from app.db import session
from app.services import orgs
from tests import factories
from tests.world import make_world


@pytest.fixture
def api(tmp_path):
    w = make_world(tmp_path)
    w.add_user("boss@ourco.com", "Boss", admin=True)
    with session(w.rt.engine) as s:
        tokens = {
            who: factories.issue_token(s, orgs.find_user(s, w.org_id, f"{who}@ourco.com"))
            for who in ("alice", "bob", "boss")
        }
    client = TestClient(create_app(w.rt))
    client.h = {who: {"Authorization": f"Bearer {t}"} for who, t in tokens.items()}
    client.w = w
    yield client
    client.close()


def test_segments_imports_and_exports_over_the_api(api):
    csv_body = b"email,name,tags\nann@acmecorp.com,=cmd|' /C calc'!A0,vip\nben@acmecorp.com,Ben,vip\nnope,Nope,\n"
    files = {"file": ("people.csv", csv_body, "text/csv")}
    dry = api.post("/api/contacts/import", files=files, data={"dry_run": "true"}, headers=api.h["boss"])
    assert dry.status_code == 200 and dry.json()["errors"] == [
        {"row": 4, "field": "email", "reason": "not a valid email address: 'nope'"}
    ]
    assert api.post("/api/contacts/import", files=files, headers=api.h["alice"]).status_code == 403
    done = api.post("/api/contacts/import", files=files, data={"skip_invalid": "true"}, headers=api.h["boss"])
    assert done.json()["created"] == 2 and done.json()["written"]

    bad = api.get("/api/segment-query", params={"stage": "prospect"}, headers=api.h["alice"])
    assert bad.status_code == 422 and bad.json()["field"] == "stage"
    mine = api.post(
        "/api/segments", json={"name": "My VIPs", "filters": {"tags": ["vip"]}}, headers=api.h["alice"]
    ).json()
    assert mine["shared"] is False and mine["filters"] == {"tags": ["vip"]}
    items = api.get(f"/api/segments/{mine['id']}/items", headers=api.h["alice"]).json()["items"]
    assert sorted(i["email"] for i in items) == ["ann@acmecorp.com", "ben@acmecorp.com"]
    assert api.get(f"/api/segments/{mine['id']}/items", headers=api.h["bob"]).status_code == 404
    assert api.get(f"/api/export/segments/{mine['id']}", headers=api.h["bob"]).status_code == 404
    assert [s["name"] for s in api.get("/api/segments", headers=api.h["bob"]).json()] == []
    api.patch(f"/api/segments/{mine['id']}", json={"shared": True}, headers=api.h["alice"])
    assert [s["name"] for s in api.get("/api/segments", headers=api.h["bob"]).json()] == ["My VIPs"]

    exported = api.get(f"/api/export/segments/{mine['id']}", headers=api.h["bob"])
    assert exported.headers["content-type"].startswith("text/csv")
    assert "'=cmd|' /C calc'!A0" in exported.text
    vcards = api.get(f"/api/export/segments/{mine['id']}", params={"format": "vcard"}, headers=api.h["bob"])
    assert vcards.headers["content-type"].startswith("text/vcard") and vcards.text.count("BEGIN:VCARD") == 2

    assert api.get("/api/export/org", headers=api.h["alice"]).status_code == 403
    org = api.get("/api/export/org", headers=api.h["boss"])
    assert org.status_code == 200 and len(org.json()["contacts"]) == 2
