"""Secrets at rest: no password, client secret or token in the database file, the logs or
any API response; key rotation re-encrypts everything and the old key goes away."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import insert

from app.api import create_app
from app.crypto import rotate_key, secret_box
from app.db import session, write_transaction
from app.models import M365Tenant
from app.runtime import open_runtime
from app.services import orgs
from tests import factories
from tests.world import make_world, message

CLIENT_SECRET = "client-secret-Zq7Wv3xK"


def test_no_secret_leaks_and_key_rotation(tmp_path, imap_user, caplog):
    caplog.set_level(logging.DEBUG)
    w = make_world(tmp_path)
    admin = w.add_user("boss@ourco.com", admin=True)
    with session(w.rt.engine) as s:
        pat = factories.issue_token(s, s.get(orgs.User, admin))
    imap_user.deliver(message("Jane <jane@acme.com>", "alice@ourco.com", "Hello", msgid="s1@acme"))
    mid = w.add_imap("alice@ourco.com", imap_user)
    with write_transaction(w.rt.engine) as conn:
        conn.execute(
            insert(M365Tenant.__table__).values(
                org_id=w.org_id,
                tenant_id="t1",
                client_id="c1",
                auth_kind="secret",
                config={},
                secret_enc=w.rt.box.encrypt(CLIENT_SECRET),
            )
        )
    assert w.sync(mid).ok
    client = TestClient(create_app(w.rt), client=("127.0.0.1", 50000))  # local, so /metrics answers too
    h = {"Authorization": f"Bearer {pat}"}
    bodies = [
        client.get(u, headers=h).text
        for u in (
            "/api/admin/mailboxes",
            f"/api/admin/mailboxes/{mid}",
            "/api/admin/users",
            "/api/admin/audit",
            "/api/mailboxes",
            "/metrics",
            "/openapi.json",
        )
    ]
    bodies.append(client.post("/api/admin/users/%d/tokens" % admin, headers=h, json={"name": "x"}).text)
    bodies.append(
        client.put(f"/api/admin/mailboxes/{mid}/password", headers=h, json={"password": imap_user.password}).text
    )
    bodies.append(
        client.post(
            "/api/admin/mailboxes/test-imap",
            headers=h,
            json={
                "host": imap_user.host,
                "port": imap_user.port,
                "security": "none",
                "username": imap_user.username,
                "password": imap_user.password,
            },
        ).text
    )
    secrets = [imap_user.password, CLIENT_SECRET, pat]
    data_dir = Path(w.rt.settings.data_dir)
    w.rt.engine.dispose()
    raw = b"".join(p.read_bytes() for p in data_dir.glob("threadline.db*"))
    logs = caplog.text + "".join(r.getMessage() for r in caplog.records)
    for secret in secrets:
        assert secret.encode() not in raw, "a secret is stored in clear in the database"
        assert secret not in logs
        for body in bodies:
            assert secret not in body
    assert '"ok":true' in bodies[-1].replace(" ", "")  # the test really logged in

    # Rotation: new key, every secret re-encrypted, the old key file removed at the end.
    key_file = data_dir / "secret.key"
    old_key = key_file.read_bytes()
    before = w.sql("SELECT secret_enc FROM mailbox UNION ALL SELECT secret_enc FROM m365tenant")
    counts = rotate_key(w.rt.settings, w.rt.engine)
    assert counts["mailbox.secret_enc"] == 1 and counts["m365tenant.secret_enc"] == 1
    assert key_file.read_bytes() != old_key and not (data_dir / "secret.key.old").exists()
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    after = w.sql("SELECT secret_enc FROM mailbox UNION ALL SELECT secret_enc FROM m365tenant")
    assert set(before).isdisjoint(after)
    fresh = open_runtime(w.rt.settings)
    assert fresh.box.decrypt(after[1][0]) == CLIENT_SECRET
    from cryptography.fernet import Fernet, InvalidToken

    try:
        Fernet(old_key.strip()).decrypt(after[0][0].encode())
        raise AssertionError("the old key still decrypts")
    except InvalidToken:
        pass
    # the rotated mailbox still syncs with the new key
    from sync.engine import sync_mailbox

    assert sync_mailbox(fresh.engine, fresh.box, mid).ok


def test_every_encrypted_column_of_the_models_is_rotated():
    from sqlmodel import SQLModel

    from app.crypto import ENCRYPTED_COLUMNS

    declared = {
        (table.name, column.name)
        for table in SQLModel.metadata.tables.values()
        for column in table.columns
        if column.name.endswith("_enc")
    }
    assert declared == {(table, column) for table, _, column in ENCRYPTED_COLUMNS}


def test_an_interrupted_rotation_leaves_secrets_readable(tmp_path):
    w = make_world(tmp_path)
    token = w.rt.box.encrypt("pw")
    data_dir = Path(w.rt.settings.data_dir)
    # crash after the new key was written and the database re-encrypted, before the rename
    from cryptography.fernet import Fernet

    new = Fernet.generate_key()
    (data_dir / "secret.key.new").write_bytes(new)
    (data_dir / "secret.key.old").write_bytes((data_dir / "secret.key").read_bytes())
    assert secret_box(w.rt.settings).decrypt(Fernet(new).encrypt(b"pw").decode()) == "pw"
    assert secret_box(w.rt.settings).decrypt(token) == "pw"


def test_a_caldav_url_holding_a_password_is_refused_and_never_echoed(tmp_path):
    """The URL is kept in clear (the mailbox's settings, the audit log, the console); a password
    pasted into it would sit there unencrypted."""
    import pytest

    from app.services import calendars
    from app.services.actor import Actor
    from app.services.errors import Invalid

    w = make_world(tmp_path)
    for url in (
        "https://alice:S3cret-Pw@dav.example.com/cal/",
        "https://alice@dav.example.com/cal/",
        "htps://alice:S3cret-Pw@dav.example.com/cal/",  # a mistyped scheme: not echoed either
    ):
        with pytest.raises(Invalid) as refused:
            calendars.add_caldav(
                w.rt,
                Actor.operator(w.org_id),
                owner="alice@ourco.com",
                url=url,
                username="alice",
                password="pw",
                check=False,
            )
        assert refused.value.field == "url" and "own fields" in str(refused.value)
        assert "S3cret-Pw" not in str(refused.value)
    assert w.scalar("SELECT count(*) FROM mailbox") == 0
    assert w.scalar("SELECT count(*) FROM auditevent") == 0
