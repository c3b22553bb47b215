"""The audit log: every admin action, who did it and when, readable by admins."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from app.models import AuditEvent, User
from app.models.base import utcnow

A, U = AuditEvent.__table__, User.__table__


def record(
    conn: Connection, org_id: int, actor_id: int | None, action: str, target: str = "", detail: dict | None = None
) -> None:
    """Write one event in the caller's transaction (so it commits with the change it describes).

    Never put a secret (password, token) in `detail`: the log is shown to admins.
    """
    conn.execute(
        insert(A).values(
            org_id=org_id,
            actor_id=actor_id,
            action=action,
            target=str(target)[:500],
            detail=dict(detail or {}),
            at=utcnow(),
        )
    )


def list_events(
    conn: Connection, org_id: int, *, limit: int = 100, action: str | None = None, before_id: int | None = None
) -> list[dict]:
    query = (
        select(A, U.c.email.label("actor_email"))
        .outerjoin(U, U.c.id == A.c.actor_id)
        .where(A.c.org_id == org_id)
        .order_by(A.c.id.desc())
        .limit(max(1, min(int(limit), 1000)))
    )
    if action:
        query = query.where(A.c.action.like(action.rstrip("*") + "%") if action.endswith("*") else A.c.action == action)
    if before_id is not None:
        query = query.where(A.c.id < before_id)
    out = []
    for row in conn.execute(query).mappings():
        at: datetime = row["at"]
        out.append(
            {
                "id": row["id"],
                "at": at,
                "actor_id": row["actor_id"],
                "actor": row["actor_email"] or ("system" if row["actor_id"] is None else None),
                "action": row["action"],
                "target": row["target"],
                "detail": dict(row["detail"] or {}),
            }
        )
    return out
