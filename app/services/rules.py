""" "Never log" rules: addresses and domains (subdomains included), org-wide or for one rep.

Adding a rule also removes what is already stored: an org-wide rule every
interaction with a matching participant; a rep's rule the matching interactions
that were seen only through that rep's mailboxes. Contacts left with no
participation go too. The ingest side (sync/exclusions.py) keeps new mail out.

Removing a rule resets the folder cursors of the mailboxes it covered, so the
next sync reads them again and brings the excluded mail back (rows are keyed, so
nothing already stored is duplicated).
"""

from __future__ import annotations

from sqlalchemy import and_, delete, exists, func, insert, select
from sqlalchemy.engine import Connection

from app.models import (
    ExclusionRule,
    Interaction,
    InteractionKind,
    InteractionSource,
    Mailbox,
    Organisation,
    Participant,
    User,
    UserAlias,
)
from app.services import audit
from app.services.actor import Actor, changing
from app.services.admin import address_matches, remove_copies_of, remove_from_timeline
from app.services.errors import Invalid, NotFound
from app.services.orgs import clean_address, clean_domain
from sync import exclusions

R, P, S, M = ExclusionRule.__table__, Participant.__table__, InteractionSource.__table__, Mailbox.__table__
I = Interaction.__table__
U, UA, O = User.__table__, UserAlias.__table__, Organisation.__table__
KINDS = ("address", "domain")


def guess_kind(value: str) -> str:
    return "address" if "@" in value.strip().lstrip("@") else "domain"


def normalise_rule(kind: str, value: str) -> str:
    if kind not in KINDS:
        raise Invalid(f"kind must be one of {', '.join(KINDS)}", field="kind")
    if kind == "address":
        return clean_address(value, "value")
    domain = clean_domain(value.strip().removeprefix("*."), "value")
    if "@" in domain:
        raise Invalid(f"not a domain name: {value!r}", field="value")
    return domain


def _check_not_internal(conn: Connection, org_id: int, kind: str, value: str) -> None:
    domains = conn.execute(select(O.c.internal_domains).where(O.c.id == org_id)).scalar_one_or_none()
    if domains is None:
        raise NotFound(f"no organisation {org_id}")
    target = value.rpartition("@")[2]
    for d in domains:
        d = d.lower()
        if target == d or target.endswith("." + d):
            raise Invalid(
                f"{value} is internal to the organisation: internal mail is never logged anyway", field="value"
            )
    if kind == "address":
        own = (
            conn.execute(select(U.c.id).where(U.c.org_id == org_id, U.c.email == value)).first()
            or conn.execute(select(UA.c.id).where(UA.c.org_id == org_id, UA.c.address == value)).first()
        )
        if own:
            raise Invalid(f"{value} is a colleague's address, not an external one", field="value")


def _rule_dict(row) -> dict:
    return {
        "id": row.id,
        "kind": row.kind,
        "value": row.value,
        "user_id": row.user_id,
        "created_by": row.created_by,
        "created_at": row.created_at,
    }


def add_rule(rt, actor: Actor, *, value: str, kind: str | None = None, user_id: int | None = None) -> dict:
    """An admin's rule, org-wide or (user_id) for one rep's mailboxes."""
    with changing(rt.engine, actor) as conn:
        return store_rule(conn, actor, kind=kind or guess_kind(value), value=value, user_id=user_id)


def _matching(org_id: int, kind: str, value: str, user_id: int | None):
    """The ids of the stored interactions a rule removes."""
    # Mail and meetings only: notes and tasks are the reps' own work, and a rule
    # (which can be removed again) must never destroy it.
    synced = select(I.c.id).where(I.c.org_id == org_id, I.c.kind.in_((InteractionKind.EMAIL, InteractionKind.MEETING)))
    match = and_(
        P.c.org_id == org_id,
        P.c.user_id.is_(None),
        address_matches(P.c.address, kind, value),
        P.c.interaction_id.in_(synced),
    )
    query = select(P.c.interaction_id).distinct().where(match)
    if user_id is not None:
        theirs = select(M.c.id).where(M.c.org_id == org_id, M.c.owner_id == user_id)
        query = query.where(
            exists().where(S.c.interaction_id == P.c.interaction_id, S.c.mailbox_id.in_(theirs)),
            ~exists().where(S.c.interaction_id == P.c.interaction_id, S.c.mailbox_id.not_in(theirs)),
        )
    return query


def rule_consequence(conn: Connection, org_id: int, *, kind: str, value: str, user_id: int | None) -> dict:
    """What adding the rule would delete, before anyone confirms it: the stored emails
    and meetings it matches (for a rep's rule, those seen only through their mailboxes)."""
    value = normalise_rule(kind, value)
    _check_not_internal(conn, org_id, kind, value)
    ids = _matching(org_id, kind, value, user_id).subquery()
    counts = dict(
        conn.execute(
            select(I.c.kind, func.count()).where(I.c.id.in_(select(ids.c.interaction_id))).group_by(I.c.kind)
        ).all()
    )
    # Counts only: the caller knows what it asked about (and echoing it would look like a leak).
    return {"emails": counts.get("email", 0), "meetings": counts.get("meeting", 0)}


def store_rule(conn: Connection, actor: Actor, *, kind: str, value: str, user_id: int | None) -> dict:
    """Add a rule (idempotent) and remove the matching interactions already stored, in the
    caller's checked transaction; writes the one audit record."""
    org_id, actor_id = actor.org_id, actor.user_id
    value = normalise_rule(kind, value)
    exclusions.hold_to_change(conn, org_id)  # no batch in flight writes by the old rules
    _check_not_internal(conn, org_id, kind, value)
    if user_id is not None:
        if conn.execute(select(U.c.id).where(U.c.id == user_id, U.c.org_id == org_id)).first() is None:
            raise NotFound(f"no user {user_id} in this organisation", field="user_id")
    scope = R.c.user_id.is_(None) if user_id is None else R.c.user_id == user_id
    existing = conn.execute(
        select(R.c.id).where(R.c.org_id == org_id, scope, R.c.kind == kind, R.c.value == value)
    ).scalar()
    if existing is None:
        existing = conn.execute(
            insert(R).values(org_id=org_id, user_id=user_id, kind=kind, value=value, created_by=actor_id)
        ).inserted_primary_key[0]
    ids = list(conn.execute(_matching(org_id, kind, value, user_id)).scalars())
    outcome = remove_from_timeline(conn, org_id, ids)
    if user_id is not None:
        # What the rule matches that colleagues' mailboxes hold too stays on the timeline through
        # theirs; the rep's own copies of it go, as a clean sync under the rule would skip them.
        theirs = select(M.c.id).where(M.c.org_id == org_id, M.c.owner_id == user_id)
        outcome["removed_copies"] = remove_copies_of(conn, org_id, _matching(org_id, kind, value, None), theirs)
    audit.record(
        conn, org_id, actor_id, "rule.add", f"{kind}:{value}", {"rule_id": existing, "user_id": user_id, **outcome}
    )
    return {
        "id": existing,
        "kind": kind,
        "value": value,
        "user_id": user_id,
        "removed_interactions": outcome["removed_interactions"],
    }


def remove_rule(rt, actor: Actor, rule_id: int) -> None:
    """Delete the rule; the mailboxes it covered are read again from the start at their next sync,
    which brings the mail it kept out back (keyed rows: nothing is duplicated)."""
    with changing(rt.engine, actor) as conn:
        _remove_rule(conn, actor.org_id, rule_id, actor.user_id)


def _remove_rule(conn: Connection, org_id: int, rule_id: int, actor_id: int | None) -> None:
    # No batch in flight advances a cursor past mail it left out by this rule after the reset below.
    exclusions.hold_to_change(conn, org_id)
    row = conn.execute(select(R).where(R.c.id == rule_id, R.c.org_id == org_id)).first()
    if row is None:
        raise NotFound(f"no rule {rule_id}")
    conn.execute(delete(R).where(R.c.id == rule_id, R.c.org_id == org_id))
    query = select(M.c.id).where(M.c.org_id == org_id)
    if row.user_id is not None:
        query = query.where(M.c.owner_id == row.user_id)
    from app.services.mailboxes import reset_folders

    mailbox_ids = list(conn.execute(query).scalars())
    reset_folders(conn, org_id, mailbox_ids)
    audit.record(
        conn,
        org_id,
        actor_id,
        "rule.remove",
        f"{row.kind}:{row.value}",
        {"rule_id": rule_id, "user_id": row.user_id, "resynced_mailboxes": mailbox_ids},
    )


def list_rules(conn: Connection, org_id: int, user_id: int | None = None) -> list[dict]:
    """Every rule of the organisation, or (with user_id) the org-wide ones plus that rep's."""
    query = (
        select(R, U.c.email.label("user_email"))
        .outerjoin(U, U.c.id == R.c.user_id)
        .where(R.c.org_id == org_id)
        .order_by(R.c.user_id.is_not(None), R.c.kind, R.c.value)
    )
    if user_id is not None:
        query = query.where((R.c.user_id.is_(None)) | (R.c.user_id == user_id))
    return [{**_rule_dict(r), "user_email": r.user_email} for r in conn.execute(query)]
