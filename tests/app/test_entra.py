"""Microsoft Entra ID access tokens (the Outlook add-in's sign-in), validated by
the API itself: tokens signed here with a local RSA key, whose JWKS a tiny
loopback HTTP server publishes the way login.microsoftonline.com does."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from jwt.algorithms import RSAAlgorithm
from sqlalchemy import text

from app.api import create_app
from app.auth import entra
from app.db import session
from app.runtime import open_runtime
from app.services import orgs
from app.settings import load_settings
from tests import factories
from tests.world import runtime_env

TENANT = str(uuid.UUID(int=0x11112222333344445555666677778888))
OTHER_TENANT = str(uuid.UUID(int=0x99990000AAAABBBBCCCCDDDDEEEEFFFF))
CLIENT_ID = "6e0c3a2f-5b1d-4c8e-9f70-1a2b3c4d5e6f"
KID = "test-key-1"


class FakeAuthority:
    """Serves GET /{tenant}/discovery/v2.0/keys for the tenants it knows."""

    def __init__(self, keys: dict[str, dict]):
        self.keys = keys
        self.hits: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.hits.append(self.path)
                tenant = self.path.strip("/").split("/")[0]
                if tenant in outer.keys and self.path.endswith("/discovery/v2.0/keys"):
                    body = json.dumps(outer.keys[tenant]).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def log_message(self, *args):  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def _jwk(private_key, kid: str) -> dict:
    jwk = json.loads(RSAAlgorithm.to_jwk(private_key.public_key()))
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    authority = FakeAuthority({TENANT: {"keys": [_jwk(key, KID)]}, OTHER_TENANT: {"keys": [_jwk(stranger, KID)]}})
    settings = load_settings(
        runtime_env(
            tmp_path_factory.mktemp("entra"),
            THREADLINE_ENTRA_CLIENT_ID=CLIENT_ID,
            THREADLINE_ENTRA_AUTHORITY=authority.url,
        )
    )
    rt = open_runtime(settings)
    with session(rt.engine) as s:
        org = factories.create_org(s, "OurCo", ["ourco.com"])
        org.entra_tenant_id = TENANT
        s.add(org)
        s.commit()
        alice = factories.add_user(s, org, "alice@ourco.com", name="Alice")
        bob = factories.add_user(s, org, "bob@ourco.com", name="Bob")
        pat = factories.issue_token(s, bob, "pat")
        other = factories.create_org(s, "Elsewhere", ["elsewhere.com"])
        factories.add_user(s, other, "alice@elsewhere.com")
        ids = {"alice": alice.id, "bob": bob.id, "org": org.id}
    entra.clear_key_cache()
    client = TestClient(create_app(rt))
    yield {"key": key, "stranger": stranger, "authority": authority, "client": client, "ids": ids, "pat": pat, "rt": rt}
    client.close()
    authority.stop()
    rt.engine.dispose()
    entra.clear_key_cache()


def _claims(env, **over) -> dict:
    now = int(time.time())
    claims = {
        "aud": CLIENT_ID,
        "iss": f"{env['authority'].url}/{TENANT}/v2.0",
        "tid": TENANT,
        "oid": "00000000-0000-0000-0000-00000000a11c",
        "preferred_username": "Alice@OurCo.com",
        "scp": "User.Read access_as_user",
        "iat": now - 10,
        "nbf": now - 10,
        "exp": now + 3600,
        "ver": "2.0",
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def _token(env, key=None, kid=KID, alg="RS256", **over) -> str:
    return jwt.encode(_claims(env, **over), key or env["key"], algorithm=alg, headers={"kid": kid})


def _me(env, token: str):
    return env["client"].get("/api/me", headers={"Authorization": f"Bearer {token}"})


def test_valid_token_maps_to_the_user_and_binds_the_object_id(env):
    r = _me(env, _token(env))
    assert r.status_code == 200, r.text
    assert r.json()["id"] == env["ids"]["alice"] and r.json()["email"] == "alice@ourco.com"
    with env["rt"].engine.connect() as conn:
        oid = conn.execute(
            text("SELECT entra_object_id FROM app_user WHERE id = :id"), {"id": env["ids"]["alice"]}
        ).scalar()
    assert oid == "00000000-0000-0000-0000-00000000a11c"
    # Later sign-ins are matched by the object id, even after a rename of the sign-in name.
    r = _me(env, _token(env, preferred_username="alice.renamed@ourco.com"))
    assert r.status_code == 200 and r.json()["id"] == env["ids"]["alice"]
    # The same user can act (a state-changing call) with it.
    made = env["client"].post(
        "/api/contacts", json={"email": "jane@acme.com"}, headers={"Authorization": f"Bearer {_token(env)}"}
    )
    assert made.status_code == 201, made.text


@pytest.mark.parametrize(
    "case",
    [
        "signature",
        "audience",
        "issuer",
        "expired",
        "not_yet_valid",
        "scope",
        "algorithm",
        "tenant_mismatch",
        "unknown_user",
    ],
)
def test_bad_tokens_are_refused(env, case):
    if case == "signature":
        token = _token(env, key=env["stranger"])  # same kid, another key
    elif case == "audience":
        token = _token(env, aud="00000003-0000-0000-c000-000000000000")  # a Graph token
    elif case == "issuer":
        token = _token(env, iss=f"https://sts.windows.net/{TENANT}/")
    elif case == "expired":
        token = _token(env, exp=int(time.time()) - 600, iat=int(time.time()) - 4000, nbf=int(time.time()) - 4000)
    elif case == "not_yet_valid":
        token = _token(env, nbf=int(time.time()) + 900)
    elif case == "scope":
        token = _token(env, scp="User.Read")
    elif case == "algorithm":
        token = jwt.encode(
            _claims(env), "a-shared-secret-that-is-long-enough-for-hs256", algorithm="HS256", headers={"kid": KID}
        )
    elif case == "tenant_mismatch":
        # Our tenant in tid, but issued by another tenant
        token = _token(env, iss=f"{env['authority'].url}/{OTHER_TENANT}/v2.0")
    else:
        token = _token(env, oid="00000000-0000-0000-0000-0000000000ff", preferred_username="nobody@ourco.com")
    r = _me(env, token)
    assert r.status_code == 401, (case, r.text)
    assert r.json()["detail"].startswith("Microsoft sign-in refused")
    assert token not in r.text


def test_unknown_tenant_is_refused_before_any_key_is_fetched(env):
    before = len(env["authority"].hits)
    token = _token(env, tid=OTHER_TENANT, iss=f"{env['authority'].url}/{OTHER_TENANT}/v2.0", key=env["stranger"])
    r = _me(env, token)
    assert r.status_code == 401 and "not connected" in r.json()["detail"]
    assert len(env["authority"].hits) == before


def test_personal_access_tokens_still_work_beside_entra(env):
    r = env["client"].get("/api/me", headers={"Authorization": f"Bearer {env['pat']}"})
    assert r.status_code == 200 and r.json()["id"] == env["ids"]["bob"]
    r = env["client"].get("/api/me", headers={"Authorization": "Bearer tl_revoked-or-made-up"})
    assert r.status_code == 401 and r.json()["detail"] == "invalid or revoked token"
    assert env["client"].get("/api/me").json()["detail"] == "missing bearer token"


def test_the_pane_signs_in_at_the_connected_tenant_or_any_work_account(env):
    """A single-tenant app registration refuses /common and /organizations (AADSTS50194):
    with one connected tenant the pane signs in there; with several, anywhere."""
    client, rt = env["client"], env["rt"]
    assert client.get("/panel/config.json").json()["entra"]["tenant"] == TENANT
    with session(rt.engine) as s:
        extra = factories.create_org(s, "Second", ["second.example"])
        extra.entra_tenant_id = OTHER_TENANT
        s.add(extra)
        s.commit()
        extra_id = extra.id
    try:
        assert client.get("/panel/config.json").json()["entra"]["tenant"] == "organizations"
    finally:
        with session(rt.engine) as s:
            s.delete(s.get(orgs.Organisation, extra_id))
            s.commit()
