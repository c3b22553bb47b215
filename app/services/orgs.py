"""Organisations, users, aliases and personal access tokens."""
from __future__ import annotations

import re

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


# -- administration (console, API and CLI share these) ----------------------------

from sqlalchemy import delete as _delete, insert as _insert, select as _select, update as _update  # noqa: E402
from sqlalchemy.engine import Connection  # noqa: E402

from app.models.org import CONTACT_POLICIES, VISIBILITY_LEVELS  # noqa: E402

_O, _U, _UA, _T = Organisation.__table__, User.__table__, UserAlias.__table__, ApiToken.__table__
ROLES = ("rep", "admin")
ORG_FIELDS = ("name", "internal_domains", "contact_policy", "visibility", "backfill_days", "sync_interval_seconds",
              "bulk_detection", "free_mail_domains", "calendar_past_days", "calendar_future_days", "entra_tenant_id")


def org_settings(conn: Connection, org_id: int) -> dict:
    row = conn.execute(_select(_O).where(_O.c.id == org_id)).mappings().first()
    if row is None:
        raise NotFound(f"no organisation {org_id}")
    out = {"id": row["id"], **{k: row[k] for k in ORG_FIELDS}}
    out["internal_domains"] = list(out["internal_domains"] or [])
    out["free_mail_domains"] = None if out["free_mail_domains"] is None else list(out["free_mail_domains"])
    return out


def _int_in(name: str, value, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise Invalid(f"{name} must be a whole number") from None
    if not low <= number <= high:
        raise Invalid(f"{name} must be between {low} and {high}")
    return number


def clean_org_changes(changes: dict) -> dict:
    """Validate and normalise a partial update of the organisation's settings."""
    out: dict = {}
    for key, value in changes.items():
        if value is None and key != "free_mail_domains":
            continue
        if key not in ORG_FIELDS:
            raise Invalid(f"unknown setting {key!r}")
        if key == "name":
            if not str(value).strip():
                raise Invalid("the organisation needs a name")
            out[key] = str(value).strip()
        elif key == "internal_domains":
            domains = sorted({clean_domain(d) for d in value if str(d).strip()})
            if not domains:
                raise Invalid("give at least one internal domain")
            out[key] = domains
        elif key == "contact_policy":
            if value not in CONTACT_POLICIES:
                raise Invalid(f"contact policy must be one of {', '.join(CONTACT_POLICIES)}")
            out[key] = value
        elif key == "visibility":
            if value not in VISIBILITY_LEVELS:
                raise Invalid(f"visibility must be one of {', '.join(VISIBILITY_LEVELS)}")
            out[key] = value
        elif key == "backfill_days":
            out[key] = _int_in("the backfill window (days)", value, 1, 3650)
        elif key == "sync_interval_seconds":
            out[key] = _int_in("the sync interval (seconds)", value, 30, 86400)
        elif key in ("calendar_past_days", "calendar_future_days"):
            out[key] = _int_in(key.replace("_", " "), value, 0, 3650)
        elif key == "bulk_detection":
            out[key] = bool(value)
        elif key == "free_mail_domains":
            out[key] = None if value is None else sorted({clean_domain(d) for d in value if str(d).strip()})
        elif key == "entra_tenant_id":
            # The Microsoft Entra directory (tenant) id whose signed-in users belong here.
            tid = str(value).strip().lower()
            if tid and not re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", tid):
                raise Invalid("the Entra tenant id is a GUID (Directory (tenant) ID in the Entra admin centre)")
            out[key] = tid or None
    return out


def update_org(conn: Connection, org_id: int, changes: dict, *, actor_id: int | None) -> dict:
    from app.services import audit

    before = org_settings(conn, org_id)
    values = clean_org_changes(changes)
    changed = {k: v for k, v in values.items() if before.get(k) != v}
    if changed:
        conn.execute(_update(_O).where(_O.c.id == org_id).values(**changed))
        audit.record(conn, org_id, actor_id, "org.update", before["name"],
                     {"changed": {k: {"from": before.get(k), "to": v} for k, v in changed.items()}})
    return org_settings(conn, org_id)


def list_users(conn: Connection, org_id: int) -> list[dict]:
    aliases: dict[int, list[dict]] = {}
    for row in conn.execute(_select(_UA).where(_UA.c.org_id == org_id).order_by(_UA.c.address)):
        aliases.setdefault(row.user_id, []).append({"id": row.id, "address": row.address})
    tokens: dict[int, list[dict]] = {}
    for row in conn.execute(_select(_T.c.id, _T.c.user_id, _T.c.name, _T.c.created_at, _T.c.last_used_at,
                                    _T.c.revoked_at).where(_T.c.org_id == org_id).order_by(_T.c.id)):
        tokens.setdefault(row.user_id, []).append(
            {"id": row.id, "name": row.name, "created_at": row.created_at, "last_used_at": row.last_used_at,
             "revoked_at": row.revoked_at, "active": row.revoked_at is None})
    return [{"id": r.id, "email": r.email, "name": r.name, "role": r.role, "active": r.active,
             "created_at": r.created_at, "aliases": aliases.get(r.id, []), "tokens": tokens.get(r.id, [])}
            for r in conn.execute(_select(_U).where(_U.c.org_id == org_id).order_by(_U.c.email))]


def get_user(conn: Connection, org_id: int, user_id: int):
    row = conn.execute(_select(_U).where(_U.c.id == user_id, _U.c.org_id == org_id)).first()
    if row is None:
        raise NotFound(f"no user {user_id}")
    return row


def user_id_by_email(conn: Connection, org_id: int, email: str) -> int:
    address = clean_address(email)
    uid = conn.execute(_select(_U.c.id).where(_U.c.org_id == org_id, _U.c.email == address)).scalar()
    if uid is None:
        raise NotFound(f"no user {address} in this organisation")
    return uid


def _address_taken(conn: Connection, org_id: int, address: str) -> bool:
    return bool(conn.execute(_select(_U.c.id).where(_U.c.org_id == org_id, _U.c.email == address)).first()
                or conn.execute(_select(_UA.c.id).where(_UA.c.org_id == org_id, _UA.c.address == address)).first())


def create_user(conn: Connection, org_id: int, email: str, *, name: str = "", role: str = "rep",
                aliases: list[str] = (), actor_id: int | None) -> int:
    from app.services import audit

    if role not in ROLES:
        raise Invalid(f"role must be one of {', '.join(ROLES)}")
    address = clean_address(email)
    if _address_taken(conn, org_id, address):
        raise Invalid(f"{address} is already a user or an alias")
    uid = conn.execute(_insert(_U).values(org_id=org_id, email=address, name=name.strip(), role=role,
                                          active=True, created_at=utcnow_())).inserted_primary_key[0]
    for alias in aliases:
        add_alias(conn, org_id, uid, alias, actor_id=None)
    audit.record(conn, org_id, actor_id, "user.add", address, {"role": role, "user_id": uid})
    return uid


def utcnow_():
    from app.models.base import utcnow

    return utcnow()


def _active_admins(conn: Connection, org_id: int) -> list[int]:
    return list(conn.execute(_select(_U.c.id).where(_U.c.org_id == org_id, _U.c.role == "admin",
                                                    _U.c.active.is_(True))).scalars())


def update_user(conn: Connection, org_id: int, user_id: int, *, name: str | None = None, role: str | None = None,
                active: bool | None = None, actor_id: int | None) -> None:
    """Change a user's name, role or active flag. Deactivating revokes their tokens and pauses
    their mailboxes; the last active admin cannot be demoted or deactivated."""
    from app.services import audit

    row = get_user(conn, org_id, user_id)
    values: dict = {}
    if name is not None and name.strip() != row.name:
        values["name"] = name.strip()
    if role is not None and role != row.role:
        if role not in ROLES:
            raise Invalid(f"role must be one of {', '.join(ROLES)}")
        values["role"] = role
    if active is not None and active != row.active:
        values["active"] = active
    losing_admin = row.role == "admin" and row.active and (values.get("role") == "rep" or values.get("active") is False)
    if losing_admin and _active_admins(conn, org_id) == [user_id]:
        raise Invalid("this is the last active admin: make someone else an admin first")
    if not values:
        return
    conn.execute(_update(_U).where(_U.c.id == user_id, _U.c.org_id == org_id).values(**values))
    detail = {k: v for k, v in values.items()}
    if values.get("active") is False:
        from app.models import Mailbox

        mb = Mailbox.__table__
        detail["tokens_revoked"] = conn.execute(
            _update(_T).where(_T.c.user_id == user_id, _T.c.org_id == org_id, _T.c.revoked_at.is_(None))
            .values(revoked_at=utcnow_())).rowcount
        detail["mailboxes_paused"] = conn.execute(
            _update(mb).where(mb.c.owner_id == user_id, mb.c.org_id == org_id).values(status="paused")).rowcount
    action = "user.deactivate" if values.get("active") is False else (
        "user.reactivate" if values.get("active") is True else "user.update")
    audit.record(conn, org_id, actor_id, action, row.email, detail)


def add_alias(conn: Connection, org_id: int, user_id: int, address: str, *, actor_id: int | None) -> int:
    from app.services import audit

    row = get_user(conn, org_id, user_id)
    address = clean_address(address)
    if _address_taken(conn, org_id, address):
        raise Invalid(f"{address} is already a user or an alias")
    aid = conn.execute(_insert(_UA).values(org_id=org_id, user_id=user_id, address=address)).inserted_primary_key[0]
    if actor_id is not None:
        audit.record(conn, org_id, actor_id, "user.alias_add", row.email, {"alias": address})
    return aid


def remove_alias(conn: Connection, org_id: int, alias_id: int, *, actor_id: int | None) -> None:
    from app.services import audit

    row = conn.execute(_select(_UA, _U.c.email).join(_U, _U.c.id == _UA.c.user_id)
                       .where(_UA.c.id == alias_id, _UA.c.org_id == org_id)).first()
    if row is None:
        raise NotFound(f"no alias {alias_id}")
    conn.execute(_delete(_UA).where(_UA.c.id == alias_id, _UA.c.org_id == org_id))
    audit.record(conn, org_id, actor_id, "user.alias_remove", row.email, {"alias": row.address})


def create_token(conn: Connection, org_id: int, user_id: int, name: str = "", *, actor_id: int | None) -> dict:
    """A new personal access token; only its hash is stored, so the value is shown once."""
    from app.services import audit

    row = get_user(conn, org_id, user_id)
    if not row.active:
        raise Invalid(f"{row.email} is deactivated")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    tid = conn.execute(_insert(_T).values(org_id=org_id, user_id=user_id, name=name.strip()[:100],
                                          token_hash=hash_token(token), created_at=utcnow_())).inserted_primary_key[0]
    audit.record(conn, org_id, actor_id, "token.issue", row.email, {"token_id": tid, "name": name.strip()[:100]})
    return {"id": tid, "user_id": user_id, "name": name, "token": token}


def revoke_token(conn: Connection, org_id: int, token_id: int, *, actor_id: int | None) -> None:
    from app.services import audit

    row = conn.execute(_select(_T.c.id, _T.c.revoked_at, _U.c.email).join(_U, _U.c.id == _T.c.user_id)
                       .where(_T.c.id == token_id, _T.c.org_id == org_id)).first()
    if row is None:
        raise NotFound(f"no token {token_id}")
    if row.revoked_at is None:
        conn.execute(_update(_T).where(_T.c.id == token_id).values(revoked_at=utcnow_()))
        audit.record(conn, org_id, actor_id, "token.revoke", row.email, {"token_id": token_id})
