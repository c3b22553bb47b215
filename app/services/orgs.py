"""Organisations, users, aliases and personal access tokens."""
from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timezone

from sqlmodel import Session, select

from app.models import ApiToken, Organisation, User, UserAlias
from sync.addresses import normalise

TOKEN_PREFIX = "tl_"


class NotFound(LookupError):
    pass


class Invalid(ValueError):
    pass


def clean_address(value: str) -> str:
    address = normalise(value)
    if address is None:
        raise Invalid(f"not a valid email address: {value!r}")
    return address


def clean_domain(value: str) -> str:
    domain = value.strip().lower().lstrip("@")
    if not domain or "." not in domain or any(c.isspace() for c in domain):
        raise Invalid(f"not a domain name: {value!r}")
    return domain


def create_org(session: Session, name: str, domains: list[str]) -> Organisation:
    if not name.strip():
        raise Invalid("the organisation needs a name")
    if not domains:
        raise Invalid("give at least one internal domain (--domain ourco.com)")
    org = Organisation(name=name.strip(), internal_domains=sorted({clean_domain(d) for d in domains}))
    session.add(org)
    session.commit()
    session.refresh(org)
    return org


def the_org(session: Session, org_id: int | None = None) -> Organisation:
    """The organisation a CLI command acts on: the given one, or the only one."""
    if org_id is not None:
        org = session.get(Organisation, org_id)
        if org is None:
            raise NotFound(f"no organisation with id {org_id}")
        return org
    orgs = session.exec(select(Organisation).order_by(Organisation.id)).all()
    if not orgs:
        raise NotFound("no organisation yet: run `threadline org init --name NAME --domain ourco.com`")
    if len(orgs) > 1:
        raise Invalid("several organisations exist: pass --org ID")
    return orgs[0]


def add_user(session: Session, org: Organisation, email: str, *, name: str = "", admin: bool = False,
             aliases: list[str] = ()) -> User:
    address = clean_address(email)
    if session.exec(select(User).where(User.org_id == org.id, User.email == address)).first():
        raise Invalid(f"{address} is already a user")
    user = User(org_id=org.id, email=address, name=name.strip(), role="admin" if admin else "rep")
    session.add(user)
    session.flush()
    for alias in aliases:
        session.add(UserAlias(org_id=org.id, user_id=user.id, address=clean_address(alias)))
    session.commit()
    session.refresh(user)
    return user


def find_user(session: Session, org_id: int, email: str) -> User:
    address = clean_address(email)
    user = session.exec(select(User).where(User.org_id == org_id, User.email == address)).first()
    if user is None:
        raise NotFound(f"no user {address} in this organisation")
    return user


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, user: User, name: str = "") -> str:
    """A new personal access token; only its hash is stored, so it is shown once."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(org_id=user.org_id, user_id=user.id, name=name, token_hash=hash_token(token)))
    session.commit()
    return token


def user_for_token(session: Session, token: str) -> User | None:
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == hash_token(token),
                                              ApiToken.revoked_at.is_(None))).first()
    if row is None:
        return None
    user = session.get(User, row.user_id)
    if user is None or not user.active:
        return None
    return user


def revoke_tokens(session: Session, user: User) -> int:
    rows = session.exec(select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))).all()
    for row in rows:
        row.revoked_at = datetime.now(timezone.utc)
        session.add(row)
    session.commit()
    return len(rows)
