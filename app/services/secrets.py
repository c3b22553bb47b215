"""Secrets at rest: rotating the key that encrypts every stored password and token."""

from __future__ import annotations

from sqlalchemy import select

from app.crypto import rotate_key
from app.models import Organisation
from app.services import audit


def rotate(rt) -> dict:
    """A new key; every stored secret re-encrypted in one transaction (app/crypto.py), then
    one audit record per organisation, since every organisation's secrets changed. Only the
    server's operator can do this (it needs the key file), so there is no Actor."""
    counts = rotate_key(rt.settings, rt.engine)
    with rt.engine.begin() as conn:
        for (oid,) in conn.execute(select(Organisation.__table__.c.id)):
            audit.record(conn, oid, None, "secrets.rotate_key", "secret.key", counts)
    return counts
