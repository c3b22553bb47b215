"""Admin console sessions live on the server: signing out, revoking the token
signed in with, or deactivating the admin ends them, whatever the browser kept."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import text

from app.api import create_app
from app.db import session, write_transaction
from app.services import orgs
from tests import factories
from tests.world import make_world


def _sign_in(client: TestClient, token: str) -> str:
    page = client.get("/admin/login")
    nonce = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    resp = client.post("/admin/login", data={"csrf": nonce, "token": token}, follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/admin", resp.text
    return client.cookies.get("tl_admin")


def _csrf(client: TestClient) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', client.get("/admin").text).group(1)


def _opens_console(app, cookie: str) -> bool:
    other = TestClient(app)  # a second browser that copied the cookie
    other.cookies.set("tl_admin", cookie, path="/admin")
    resp = other.get("/admin", follow_redirects=False)
    if resp.status_code == 303:
        assert resp.headers["location"] == "/admin/login"
        return False
    assert resp.status_code == 200, resp.status_code
    return True


def test_sign_out_revocation_and_deactivation_end_sessions_on_the_server(tmp_path):
    w = make_world(tmp_path)
    boss = w.add_user("boss@ourco.com", "Boss", admin=True)
    with session(w.rt.engine) as s:
        user = s.get(orgs.User, boss)
        first, second, third = (factories.issue_token(s, user, name=n) for n in ("a", "b", "c"))
    app = create_app(w.rt)

    client = TestClient(app)
    cookie = _sign_in(client, first)
    assert first not in cookie and _opens_console(app, cookie)
    stored = w.scalar("SELECT session_hash FROM consolesession")
    assert stored and cookie not in stored  # only a hash of the cookie is kept

    # Signing out ends the session itself: a copy of the cookie no longer works.
    resp = client.post("/admin/logout", data={"csrf": _csrf(client)}, follow_redirects=False)
    assert resp.status_code == 303
    assert not _opens_console(app, cookie)

    # Revoking the token signed in with ends its sessions, and only those.
    by_second = _sign_in(TestClient(app), second)
    by_third = _sign_in(TestClient(app), third)
    with write_transaction(w.rt.engine) as conn:
        token_id = w.scalar("SELECT id FROM apitoken WHERE name = 'b'")
        conn.execute(text("UPDATE apitoken SET revoked_at = CURRENT_TIMESTAMP WHERE id = :i"), {"i": token_id})
    assert not _opens_console(app, by_second)
    assert _opens_console(app, by_third)

    # Deactivating the admin ends every session they have.
    with write_transaction(w.rt.engine) as conn:
        conn.execute(text("UPDATE app_user SET active = :f WHERE id = :u"), {"f": False, "u": boss})
    assert not _opens_console(app, by_third)

    # A made-up cookie opens nothing.
    assert not _opens_console(app, "x" * 43)
