"""Organisations, users, aliases and personal access tokens.

Use cases (each: validation, one transaction, one audit record) take the runtime
and an Actor (app/services/actor.py); the readers take a connection.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from sqlalchemy import delete as _delete, insert as _insert, select as _select, update as _update
from sqlalchemy.engine import Connection
from sqlmodel import Session, select

from app.db import write_transaction
from app.models import ApiToken, Mailbox, Organisation, User, UserAlias
from app.models.base import utcnow
from app.models.org import CONTACT_POLICIES, VISIBILITY_LEVELS
from app.services import audit
from app.services.actor import Actor, changing
from app.services.errors import Conflict, Forbidden, Invalid, NotFound  # noqa: F401 - re-exported
from connectors.normalise import valid_region
from sync.addresses import normalise

TOKEN_PREFIX = "tl_"


def clean_address(value: str, field: str = "email") -> str:
    address = normalise(value)
    if address is None:
        raise Invalid(f"not a valid email address: {value!r}", field=field)
    return address


def clean_domain(value: str, field: str = "domain") -> str:
    domain = value.strip().lower().lstrip("@")
    if not domain or "." not in domain or any(c.isspace() for c in domain):
        raise Invalid(f"not a domain name: {value!r}", field=field)
    return domain


_O, _U, _UA, _T = Organisation.__table__, User.__table__, UserAlias.__table__, ApiToken.__table__
# A manager sees every rep's reports (app/services/reports.py) and otherwise has a rep's rights.
ROLES = ("rep", "manager", "admin")
ORG_FIELDS = (
    "name",
    "internal_domains",
    "contact_policy",
    "visibility",
    "backfill_days",
    "sync_interval_seconds",
    "bulk_detection",
    "free_mail_domains",
    "calendar_past_days",
    "calendar_future_days",
    "entra_tenant_id",
    "phone_region",
)


def create_org(rt, name: str, domains: list[str], *, another: bool = False) -> dict:
    """The first step of every installation (`threadline org init`): there is no actor
    yet, so the operator is recorded, as for every CLI action.

    A database normally holds one organisation: with a second one, every command
    needs --org. So a second one is created only when asked for (`another`); the
    refusal says what is already there, and whether it is the demo company."""
    if not name.strip():
        raise Invalid("the organisation needs a name", field="name")
    if not domains:
        raise Invalid("give at least one internal domain (--domain ourco.com)", field="internal_domains")
    cleaned = sorted({clean_domain(d) for d in domains})
    with write_transaction(rt.engine) as conn:
        existing = conn.execute(_select(_O.c.id, _O.c.name).order_by(_O.c.id).limit(1)).first()
        if existing is not None and not another:
            raise Conflict(_second_org_refusal(conn, existing, rt.settings.data_dir), field="org")
        org_id = conn.execute(_insert(_O).values(name=name.strip(), internal_domains=cleaned)).inserted_primary_key[0]
        audit.record(conn, org_id, None, "org.create", name.strip(), {"internal_domains": cleaned})
        return org_settings(conn, org_id)


def _second_org_refusal(conn: Connection, existing, data_dir) -> str:
    mb = Mailbox.__table__
    demo = conn.execute(_select(mb.c.id).where(mb.c.org_id == existing.id, mb.c.kind == "demo").limit(1)).first()
    where = f"this database ({data_dir})"
    if demo is not None:
        return (
            f"{where} holds the demo company {existing.name!r} (organisation {existing.id}), made by an earlier "
            f"`./run demo`; the demo now keeps its own data in {data_dir / 'demo'}. Move the old data away "
            f"(for example `mv {data_dir} {data_dir}.demo-old`) or set THREADLINE_DATA_DIR to a new folder, "
            "then run `org init` again"
        )
    return (
        f"{where} already has the organisation {existing.name!r} (id {existing.id}): one database normally "
        "serves one organisation, and with two every command needs --org ID. Use `threadline org set` to "
        "change it, or add --another to create a second organisation on purpose"
    )


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
        raise Invalid("several organisations exist: pass --org ID", field="org")
    return orgs[0]


def the_org_id(rt, org_id: int | None = None) -> int:
    with Session(rt.engine) as s:
        return the_org(s, org_id).id


def find_user(session: Session, org_id: int, email: str) -> User:
    address = clean_address(email)
    user = session.exec(select(User).where(User.org_id == org_id, User.email == address)).first()
    if user is None:
        raise NotFound(f"no user {address} in this organisation")
    return user


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# -- administration (console, API and CLI share these) ----------------------------


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
        if value is None and key not in ("free_mail_domains", "phone_region"):  # null clears these two
            continue
        if key not in ORG_FIELDS:
            raise Invalid(f"unknown setting {key!r}", field=key)
        try:
            out.update(_clean_org_value(key, value))
        except Invalid as exc:
            exc.field = exc.field if exc.field not in (None, "domain") else key
            raise
    return out


def _clean_org_value(key: str, value) -> dict:
    out: dict = {}
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
    elif key == "phone_region":
        # Signatures' phone numbers written without a country code, from a .com sender (sync/enrichment.py).
        region = str(value or "").strip().upper()
        if region and not valid_region(region):
            raise Invalid(f"{region!r} is not a region code for phone numbers (ISO 3166, e.g. GB, DE, US)")
        out[key] = region or None
    elif key == "entra_tenant_id":
        # The Microsoft Entra directory (tenant) id whose signed-in users belong here.
        tid = str(value).strip().lower()
        if tid and not re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", tid):
            raise Invalid("the Entra tenant id is a GUID (Directory (tenant) ID in the Entra admin centre)")
        out[key] = tid or None
    return out


def update_org(rt, actor: Actor, changes: dict) -> dict:
    with changing(rt.engine, actor) as conn:
        before = org_settings(conn, actor.org_id)
        values = clean_org_changes(changes)
        changed = {k: v for k, v in values.items() if before.get(k) != v}
        if changed:  # a form saved unchanged is not an event
            conn.execute(_update(_O).where(_O.c.id == actor.org_id).values(**changed))
            audit.record(
                conn,
                actor.org_id,
                actor.user_id,
                "org.update",
                before["name"],
                {"changed": {k: {"from": before.get(k), "to": v} for k, v in changed.items()}},
            )
        return org_settings(conn, actor.org_id)


def list_users(conn: Connection, org_id: int, user_id: int | None = None) -> list[dict]:
    """The organisation's users with their aliases and tokens (never token values); only
    `user_id`'s when given, read by index rather than filtered from everyone."""
    alias_q = _select(_UA).where(_UA.c.org_id == org_id).order_by(_UA.c.address)
    token_q = (
        _select(_T.c.id, _T.c.user_id, _T.c.name, _T.c.created_at, _T.c.last_used_at, _T.c.revoked_at)
        .where(_T.c.org_id == org_id)
        .order_by(_T.c.id)
    )
    user_q = _select(_U).where(_U.c.org_id == org_id).order_by(_U.c.email)
    if user_id is not None:
        alias_q, token_q = alias_q.where(_UA.c.user_id == user_id), token_q.where(_T.c.user_id == user_id)
        user_q = user_q.where(_U.c.id == user_id)
    aliases: dict[int, list[dict]] = {}
    for row in conn.execute(alias_q):
        aliases.setdefault(row.user_id, []).append({"id": row.id, "address": row.address})
    tokens: dict[int, list[dict]] = {}
    for row in conn.execute(token_q):
        tokens.setdefault(row.user_id, []).append(
            {
                "id": row.id,
                "name": row.name,
                "created_at": row.created_at,
                "last_used_at": row.last_used_at,
                "revoked_at": row.revoked_at,
                "active": row.revoked_at is None,
            }
        )
    return [
        {
            "id": r.id,
            "email": r.email,
            "name": r.name,
            "role": r.role,
            "active": r.active,
            "created_at": r.created_at,
            "aliases": aliases.get(r.id, []),
            "tokens": tokens.get(r.id, []),
        }
        for r in conn.execute(user_q)
    ]


def user_summary(conn: Connection, org_id: int, user_id: int) -> dict:
    found = list_users(conn, org_id, user_id)
    if not found:
        raise NotFound(f"no user {user_id}")
    return found[0]


def get_user(conn: Connection, org_id: int, user_id: int):
    row = conn.execute(_select(_U).where(_U.c.id == user_id, _U.c.org_id == org_id)).first()
    if row is None:
        raise NotFound(f"no user {user_id}")
    return row


def user_id_by_email(conn: Connection, org_id: int, email: str, field: str = "email") -> int:
    address = clean_address(email, field)
    uid = conn.execute(_select(_U.c.id).where(_U.c.org_id == org_id, _U.c.email == address)).scalar()
    if uid is None:
        raise NotFound(f"no user {address} in this organisation", field=field)
    return uid


def _address_taken(conn: Connection, org_id: int, address: str) -> bool:
    return bool(
        conn.execute(_select(_U.c.id).where(_U.c.org_id == org_id, _U.c.email == address)).first()
        or conn.execute(_select(_UA.c.id).where(_UA.c.org_id == org_id, _UA.c.address == address)).first()
    )


def _insert_alias(conn: Connection, org_id: int, user_id: int, address: str) -> tuple[int, str]:
    address = clean_address(address, "address")
    if _address_taken(conn, org_id, address):
        raise Conflict(f"{address} is already a user or an alias", field="address")
    aid = conn.execute(_insert(_UA).values(org_id=org_id, user_id=user_id, address=address)).inserted_primary_key[0]
    return aid, address


def create_user(rt, actor: Actor, email: str, *, name: str = "", role: str = "rep", aliases: list[str] = ()) -> dict:
    """A rep or an admin, with their other addresses; refused when any address is taken."""
    if role not in ROLES:
        raise Invalid(f"role must be one of {', '.join(ROLES)}", field="role")
    address = clean_address(email)
    with changing(rt.engine, actor) as conn:
        if _address_taken(conn, actor.org_id, address):
            raise Conflict(f"{address} is already a user or an alias", field="email")
        uid = conn.execute(
            _insert(_U).values(
                org_id=actor.org_id, email=address, name=name.strip(), role=role, active=True, created_at=utcnow()
            )
        ).inserted_primary_key[0]
        added = [_insert_alias(conn, actor.org_id, uid, alias)[1] for alias in aliases]
        audit.record(
            conn, actor.org_id, actor.user_id, "user.add", address, {"role": role, "user_id": uid, "aliases": added}
        )
        return user_summary(conn, actor.org_id, uid)


def _active_admins(conn: Connection, org_id: int) -> list[int]:
    return list(
        conn.execute(
            _select(_U.c.id).where(_U.c.org_id == org_id, _U.c.role == "admin", _U.c.active.is_(True))
        ).scalars()
    )


def update_user(
    rt, actor: Actor, user_id: int, *, name: str | None = None, role: str | None = None, active: bool | None = None
) -> dict:
    """Change a user's name, role or active flag. Deactivating revokes their tokens and pauses
    their mailboxes; the last active admin cannot be demoted or deactivated."""
    with changing(rt.engine, actor) as conn:
        org_id = actor.org_id
        row = get_user(conn, org_id, user_id)
        values: dict = {}
        if name is not None and name.strip() != row.name:
            values["name"] = name.strip()
        if role is not None and role != row.role:
            if role not in ROLES:
                raise Invalid(f"role must be one of {', '.join(ROLES)}", field="role")
            values["role"] = role
        if active is not None and active != row.active:
            values["active"] = active
        losing_admin = (
            row.role == "admin"
            and row.active
            and (values.get("role", "admin") != "admin" or values.get("active") is False)
        )
        if losing_admin and _active_admins(conn, org_id) == [user_id]:
            raise Conflict("this is the last active admin: make someone else an admin first")
        if not values:
            return user_summary(conn, org_id, user_id)
        conn.execute(_update(_U).where(_U.c.id == user_id, _U.c.org_id == org_id).values(**values))
        detail = dict(values)
        if values.get("active") is False:
            mb = Mailbox.__table__
            detail["tokens_revoked"] = conn.execute(
                _update(_T)
                .where(_T.c.user_id == user_id, _T.c.org_id == org_id, _T.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            ).rowcount
            detail["mailboxes_paused"] = conn.execute(
                _update(mb).where(mb.c.owner_id == user_id, mb.c.org_id == org_id).values(status="paused")
            ).rowcount
        action = (
            "user.deactivate"
            if values.get("active") is False
            else ("user.reactivate" if values.get("active") is True else "user.update")
        )
        audit.record(conn, org_id, actor.user_id, action, row.email, detail)
        return user_summary(conn, org_id, user_id)


def add_alias(rt, actor: Actor, user_id: int, address: str) -> dict:
    with changing(rt.engine, actor) as conn:
        row = get_user(conn, actor.org_id, user_id)
        aid, address = _insert_alias(conn, actor.org_id, user_id, address)
        audit.record(conn, actor.org_id, actor.user_id, "user.alias_add", row.email, {"alias": address})
        return {"id": aid, "user_id": user_id, "address": address}


def remove_alias(rt, actor: Actor, alias_id: int) -> None:
    with changing(rt.engine, actor) as conn:
        row = conn.execute(
            _select(_UA, _U.c.email)
            .join(_U, _U.c.id == _UA.c.user_id)
            .where(_UA.c.id == alias_id, _UA.c.org_id == actor.org_id)
        ).first()
        if row is None:
            raise NotFound(f"no alias {alias_id}")
        conn.execute(_delete(_UA).where(_UA.c.id == alias_id, _UA.c.org_id == actor.org_id))
        audit.record(conn, actor.org_id, actor.user_id, "user.alias_remove", row.email, {"alias": row.address})


def _new_token(conn: Connection, actor: Actor, user, name: str) -> tuple[int, str]:
    """Insert a token for an active user: (id, value). Only its hash is stored."""
    if not user.active:
        raise Conflict(f"{user.email} is deactivated: reactivate them first")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    tid = conn.execute(
        _insert(_T).values(
            org_id=actor.org_id, user_id=user.id, name=name, token_hash=hash_token(token), created_at=utcnow()
        )
    ).inserted_primary_key[0]
    return tid, token


def create_token(rt, actor: Actor, user_id: int, name: str = "") -> dict:
    """A new personal access token; only its hash is stored, so the value is shown once."""
    name = name.strip()[:100]
    with changing(rt.engine, actor) as conn:
        row = get_user(conn, actor.org_id, user_id)
        tid, token = _new_token(conn, actor, row, name)
        audit.record(conn, actor.org_id, actor.user_id, "token.issue", row.email, {"token_id": tid, "name": name})
        return {"id": tid, "user_id": user_id, "email": row.email, "name": name, "token": token}


def replace_token(rt, actor: Actor, user_id: int, name: str) -> dict:
    """A new token named `name` for the user, revoking the user's earlier tokens of that name
    in the same transaction (each `serve --demo` start prints a fresh one: the old ones must
    not stay valid). Shown once, like every token."""
    name = name.strip()[:100]
    if not name:
        raise Invalid("a token to replace needs a name", field="name")
    with changing(rt.engine, actor) as conn:
        row = get_user(conn, actor.org_id, user_id)
        old = _T.c.user_id == user_id, _T.c.org_id == actor.org_id, _T.c.name == name, _T.c.revoked_at.is_(None)
        replaced = list(conn.execute(_select(_T.c.id).where(*old).order_by(_T.c.id)).scalars())
        conn.execute(_update(_T).where(*old).values(revoked_at=utcnow()))
        tid, token = _new_token(conn, actor, row, name)
        audit.record(
            conn,
            actor.org_id,
            actor.user_id,
            "token.issue",
            row.email,
            {"token_id": tid, "name": name, "replaced": replaced},
        )
        return {"id": tid, "user_id": user_id, "email": row.email, "name": name, "token": token, "replaced": replaced}


def revoke_token(rt, actor: Actor, token_id: int) -> None:
    with changing(rt.engine, actor) as conn:
        row = conn.execute(
            _select(_T.c.id, _T.c.revoked_at, _U.c.email)
            .join(_U, _U.c.id == _T.c.user_id)
            .where(_T.c.id == token_id, _T.c.org_id == actor.org_id)
        ).first()
        if row is None:
            raise NotFound(f"no token {token_id}")
        if row.revoked_at is None:
            conn.execute(_update(_T).where(_T.c.id == token_id).values(revoked_at=utcnow()))
            audit.record(conn, actor.org_id, actor.user_id, "token.revoke", row.email, {"token_id": token_id})


def revoke_user_tokens(rt, actor: Actor, user_id: int) -> int:
    """Every token of one user (the CLI's `user revoke-token EMAIL`)."""
    with changing(rt.engine, actor) as conn:
        row = get_user(conn, actor.org_id, user_id)
        count = conn.execute(
            _update(_T)
            .where(_T.c.user_id == user_id, _T.c.org_id == actor.org_id, _T.c.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        ).rowcount
        audit.record(conn, actor.org_id, actor.user_id, "token.revoke", row.email, {"all": True, "count": count})
        return count
