"""Rows for arranging a test (and a benchmark): an organisation, users, tokens, written
straight into the database in the caller's Session, with no audit record.

These are not the product's way in: the use cases in app/services (validated, audited)
are, and tests of those call them. These only set the stage quickly."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone

from sqlmodel import Session, select

from app.models import ApiToken, Organisation, User, UserAlias
from app.services.orgs import TOKEN_PREFIX, clean_address, clean_domain, hash_token


def create_org(session: Session, name: str, domains: list[str]) -> Organisation:
    org = Organisation(name=name, internal_domains=sorted({clean_domain(d) for d in domains}))
    session.add(org)
    session.commit()
    session.refresh(org)
    return org


def add_user(
    session: Session, org: Organisation, email: str, *, name: str = "", admin: bool = False, aliases: list[str] = ()
) -> User:
    user = User(org_id=org.id, email=clean_address(email), name=name.strip(), role="admin" if admin else "rep")
    session.add(user)
    session.flush()
    for alias in aliases:
        session.add(UserAlias(org_id=org.id, user_id=user.id, address=clean_address(alias)))
    session.commit()
    session.refresh(user)
    return user


def issue_token(session: Session, user: User, name: str = "") -> str:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(org_id=user.org_id, user_id=user.id, name=name, token_hash=hash_token(token)))
    session.commit()
    return token


def revoke_tokens(session: Session, user: User) -> int:
    rows = session.exec(select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))).all()
    for row in rows:
        row.revoked_at = datetime.now(timezone.utc)
        session.add(row)
    session.commit()
    return len(rows)
