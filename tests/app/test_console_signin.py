"""Console sign-in cannot be forced from another site on the same host (login CSRF).

Cookies do not separate ports, and a sibling subdomain can set cookies for its
parent domain, so a page the attacker serves next to the console can write the
console's cookies. The attacker here is an admin of another organisation on the
same Threadline: if the victim's browser ends up in the attacker's console, what
the victim then types there (a mailbox password, a rule) goes to the attacker.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from fastapi.testclient import TestClient

from app.api import admin_pages, create_app
from app.cli import _local_certificate
from app.db import session
from app.models import ApiToken, Organisation, User
from app.services.orgs import TOKEN_PREFIX, hash_token
from tests.servers import CHROMIUM, CHROMIUM_ARGS, LOOPBACK, AppServer, free_port
from tests.world import make_world

CONSOLE_HOST = "console.test"  # mapped to 127.0.0.1 inside Chromium; not a loopback name, so not "secure"
MALLORY = "boss@mallory.example"


def _token(s, org_id: int, user_id: int) -> str:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    s.add(ApiToken(org_id=org_id, user_id=user_id, token_hash=hash_token(token)))
    s.commit()
    return token


def _two_orgs(tmp_path):
    """Our organisation with its admin, and Mallory's on the same server. Returns (world, our token, hers, her org)."""
    w = make_world(tmp_path, name="OurCo")
    boss = w.add_user("boss@ourco.com", "Boss", admin=True)
    with session(w.rt.engine) as s:
        other = Organisation(name="Mallory Ltd", internal_domains=["mallory.example"])
        s.add(other)
        s.commit()
        mallory = User(org_id=other.id, email=MALLORY, role="admin")
        s.add(mallory)
        s.commit()
        return w, _token(s, w.org_id, boss), _token(s, other.id, mallory.id), other.id


@contextmanager
def _attacker_site(headers: list[tuple[str, str]], body: str):
    """The attacker's own web server on another port of 127.0.0.1: every GET answers `body` with `headers`."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            data = body.encode()
            self.send_response(200)
            for name, value in headers + [("Content-Type", "text/html"), ("Content-Length", str(len(data)))]:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((LOOPBACK, free_port()), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _sign_in_in_browser(page, base: str, token: str) -> None:
    page.goto(base + "/admin/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/admin")


def _sign_in_form(base: str) -> tuple[str, str, str]:
    """What anyone gets from the console's sign-in page: (cookie name, cookie value, the form's hidden value)."""
    with httpx.Client(verify=False) as client:
        resp = client.get(base + "/admin/login")
    field = re.search(r'name="csrf" value="([^"]+)"', resp.text).group(1)
    name, value = next((k, v) for k, v in resp.cookies.items() if k.endswith("tl_login"))
    return name, value, field


def test_a_page_on_another_port_cannot_sign_the_admin_in_to_another_organisation(tmp_path, live_app, page):
    w, ours, theirs, mallory_org = _two_orgs(tmp_path)
    base = live_app(w)
    _sign_in_in_browser(page, base, ours)
    assert page.inner_text("header #org") == "OurCo"

    # Mallory takes a genuine sign-in form from the console (anyone can), plants its cookie in the
    # victim's browser from her page on another port of the same host, and has the browser post the
    # console's sign-in form with her own token.
    name, value, field = _sign_in_form(base)
    attack = (
        f'<form method="post" action="{base}/admin/login"><input name="csrf" value="{field}">'
        f'<input name="token" value="{theirs}"></form><script>document.forms[0].submit()</script>'
    )
    with _attacker_site([("Set-Cookie", f"{name}={value}; Path=/admin")], attack) as port:
        page.goto(f"http://{LOOPBACK}:{port}/")
        page.wait_for_url(base + "/admin**")
        assert "came from elsewhere" in page.inner_text("main")

    page.goto(base + "/admin")
    header = page.inner_text("header")
    assert MALLORY not in header and "Mallory" not in header, header
    assert page.inner_text("header #org") == "OurCo"
    assert w.scalar("SELECT count(*) FROM consolesession WHERE org_id = :o", o=mallory_org) == 0


def test_over_https_a_session_cookie_planted_by_a_plain_http_page_on_the_same_host_is_not_honoured(tmp_path, browser):
    w, ours, theirs, _ = _two_orgs(tmp_path)
    cert = _local_certificate(tmp_path / "tls-data", CONSOLE_HOST)
    server = AppServer(create_app(w.rt), tls=cert).start()
    # Chromium treats loopback addresses as secure origins (they may set Secure cookies), so the test
    # gives both sites a real-looking host name: the console on https, Mallory's page on plain http.
    other = browser.browser_type.launch(
        executable_path=CHROMIUM, args=CHROMIUM_ARGS + [f"--host-resolver-rules=MAP {CONSOLE_HOST} {LOOPBACK}"]
    )
    try:
        context = other.new_context(ignore_https_errors=True)
        page = context.new_page()
        console = f"https://{CONSOLE_HOST}:{server.port}"

        # Mallory signs in to her own console and plants her session in the victim's browser, under
        # every name the console might read.
        with httpx.Client(verify=False) as client:
            name, value, field = _sign_in_form(server.url)
            resp = client.post(
                server.url + "/admin/login", data={"csrf": field, "token": theirs}, cookies={name: value}
            )
        assert resp.status_code == 303, resp.text
        planted = next(v for k, v in resp.cookies.items() if k.endswith("tl_admin"))
        cookies = [
            ("Set-Cookie", f"tl_admin={planted}; Path=/"),
            ("Set-Cookie", f"__Host-tl_admin={planted}; Path=/; Secure"),
        ]
        with _attacker_site(cookies, "<p>Nothing to see here</p>") as port:
            page.goto(f"http://{CONSOLE_HOST}:{port}/")
        # The browser refuses the prefixed cookie from a plain-http page: only a secure response from
        # the console's own host can set it.
        assert [c["name"] for c in context.cookies()] == ["tl_admin"]

        page.goto(console + "/admin")
        assert page.url == console + "/admin/login"
        assert MALLORY not in page.inner_text("body")

        _sign_in_in_browser(page, console, ours)
        assert page.inner_text("header #org") == "OurCo"
        session_cookie = next(c for c in context.cookies() if c["name"] == "__Host-tl_admin")
        assert session_cookie["secure"] and session_cookie["httpOnly"] and session_cookie["sameSite"] == "Strict"
        assert session_cookie["path"] == "/" and session_cookie["domain"] == CONSOLE_HOST
        context.close()
    finally:
        other.close()
        server.stop()


# -- the same rules, request by request -----------------------------------------------------------


def _set_cookies(resp) -> dict[str, str]:
    """Set-Cookie headers of a response by cookie name (the whole header line)."""
    return {line.split("=", 1)[0]: line for line in resp.headers.get_list("set-cookie")}


def _assert_host_cookie(line: str) -> None:
    attrs = [a.strip().lower() for a in line.split(";")[1:]]
    assert "httponly" in attrs and "secure" in attrs and "samesite=strict" in attrs and "path=/" in attrs, line
    assert not any(a.startswith("domain") for a in attrs), line


def test_over_https_console_cookies_are_host_prefixed_secure_httponly_and_strict(tmp_path):
    w, ours, _, _ = _two_orgs(tmp_path)
    behind_proxy = dataclasses.replace(
        w.rt, settings=dataclasses.replace(w.rt.settings, public_url="https://threadline.ourco.example")
    )
    # Served over https directly, or over http behind a TLS proxy named by THREADLINE_PUBLIC_URL.
    for client in (TestClient(create_app(w.rt), base_url="https://testserver"), TestClient(create_app(behind_proxy))):
        form = client.get("/admin/login")
        issued = _set_cookies(form)
        assert list(issued) == ["__Host-tl_login"], issued
        _assert_host_cookie(issued["__Host-tl_login"])
        value = issued["__Host-tl_login"].split(";")[0].split("=", 1)[1]
        field = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        client.cookies.clear()
        signed = client.post(
            "/admin/login",
            data={"csrf": field, "token": ours},
            follow_redirects=False,
            headers={"Cookie": f"__Host-tl_login={value}"},
        )
        assert signed.status_code == 303, signed.text
        issued = _set_cookies(signed)
        _assert_host_cookie(issued["__Host-tl_admin"])
        assert "max-age=0" in issued["__Host-tl_login"].lower()  # the pre-session value is dropped
        _assert_host_cookie(issued["__Host-tl_login"])  # (a __Host- cookie is only removed with its attributes)
        sid = issued["__Host-tl_admin"].split(";")[0].split("=", 1)[1]

        assert client.get("/admin", headers={"Cookie": f"__Host-tl_admin={sid}"}).status_code == 200
        # The same session id under the plain name could have been planted by any page on this host.
        refused = client.get("/admin", headers={"Cookie": f"tl_admin={sid}"}, follow_redirects=False)
        assert refused.status_code == 303 and refused.headers["location"] == "/admin/login"


def test_over_plain_http_the_console_cookies_stay_usable_for_local_use(tmp_path):
    w, ours, _, _ = _two_orgs(tmp_path)
    client = TestClient(create_app(w.rt))
    form = client.get("/admin/login")
    line = _set_cookies(form)["tl_login"].lower()
    assert "httponly" in line and "samesite=strict" in line and "secure" not in line
    field = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    resp = client.post("/admin/login", data={"csrf": field, "token": ours}, follow_redirects=False)
    assert resp.status_code == 303 and "secure" not in _set_cookies(resp)["tl_admin"].lower()
    assert client.get("/admin").status_code == 200


def test_a_sign_in_needs_a_pre_session_value_the_console_issued_to_a_form_of_its_own(tmp_path):
    w, ours, _, _ = _two_orgs(tmp_path)
    app = create_app(w.rt)

    def post(cookie: str, field: str, **headers):
        client = TestClient(app)
        client.cookies.set("tl_login", cookie, path="/admin")
        return client.post("/admin/login", data={"csrf": field, "token": ours}, headers=headers, follow_redirects=False)

    made_up = "made-up-by-mallory"
    assert post(made_up, made_up).status_code == 403
    genuine = admin_pages._new_login_value(w.rt)
    issued, nonce, mac = genuine.split(".")
    forged = f"{issued}.{nonce}x.{mac}"
    assert post(forged, forged).status_code == 403
    stale = admin_pages._new_login_value(w.rt, now=time.time() - admin_pages.LOGIN_SECONDS - 5)
    assert post(stale, stale).status_code == 403
    huge = "9" * 5000 + f".{nonce}.{mac}"  # int() refuses numbers this long: still a plain refusal
    assert post(huge, huge).status_code == 403
    assert post(genuine, admin_pages._new_login_value(w.rt)).status_code == 403  # the form must match the cookie
    # Posted by a page of another origin (another port, a sibling subdomain): refused even with a genuine value.
    assert post(genuine, genuine, **{"Sec-Fetch-Site": "same-site"}).status_code == 403
    assert post(genuine, genuine, Origin="http://testserver:8081").status_code == 403
    assert post(genuine, genuine, Origin="null").status_code == 403
    refused = post(genuine, genuine, **{"Sec-Fetch-Site": "cross-site"})
    assert refused.status_code == 403 and "came from elsewhere" in refused.text
    assert w.scalar("SELECT count(*) FROM consolesession") == 0

    assert post(genuine, genuine, **{"Sec-Fetch-Site": "same-origin"}).status_code == 303
    assert post(genuine, genuine, Origin="http://testserver").status_code == 303


def test_console_forms_still_need_the_sessions_csrf_token_and_an_odd_one_is_refused_not_a_crash(tmp_path):
    w, ours, _, _ = _two_orgs(tmp_path)
    client = TestClient(create_app(w.rt))
    form = client.get("/admin/login")
    field = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    assert client.post("/admin/login", data={"csrf": field, "token": ours}, follow_redirects=False).status_code == 303
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/admin/org").text).group(1)
    for wrong in ({}, {"csrf": "x" * len(csrf)}, {"csrf": "é"}):
        assert client.post("/admin/org", data={**wrong, "name": "Renamed"}).status_code == 403, wrong
    assert client.post("/admin/login", data={"csrf": "é", "token": ours}).status_code == 403
    assert w.scalar("SELECT name FROM organisation WHERE id = :o", o=w.org_id) == "OurCo"
    saved = client.post("/admin/org", data={"csrf": csrf, "name": "Renamed"}, follow_redirects=False)
    assert saved.status_code == 303 and w.scalar("SELECT name FROM organisation WHERE id = :o", o=w.org_id) == "Renamed"
    assert "Renamed" in client.get("/admin").text  # the header follows the organisation's name
