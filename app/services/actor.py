"""Who performs a use case, and the transaction every change runs in.

Every mutating service takes an `Actor` and opens its work with `changing()`:
one write transaction in which the actor is checked against the database first.
The check is in the same transaction as the change on purpose: a token revoked or
a user deactivated a moment ago must not get one more write through, and an actor
whose user belongs to another organisation than the one it claims (a forged or
stale Actor) is refused before anything is read in that organisation.

The CLI acts as the server's operator (`Actor.operator(org_id)`): whoever can run
it on the server already holds the database and the key, so there is no user to
check; its audit entries carry no actor id and show as "system".
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlmodel import Session

from app.db import write_transaction
from app.models import Organisation, User
from app.services.errors import Forbidden

_U, _O = User.__table__, Organisation.__table__


@dataclass(frozen=True)
class Actor:
    org_id: int
    user_id: int | None  # None: the operator at the CLI
    role: str = "admin"

    @classmethod
    def operator(cls, org_id: int) -> "Actor":
        return cls(org_id=org_id, user_id=None, role="admin")

    @classmethod
    def of(cls, caller) -> "Actor":
        """From an API or console caller (anything with org_id, user_id and role)."""
        return cls(org_id=caller.org_id, user_id=caller.user_id, role=caller.role)


def authorise(conn: Connection, actor: Actor, *, admin: bool = True) -> None:
    """Refuse an actor that may not act now: unknown organisation, a user of another
    organisation, a deactivated user, or a rep where an admin is needed."""
    if conn.execute(select(_O.c.id).where(_O.c.id == actor.org_id)).first() is None:
        raise Forbidden("this organisation does not exist")
    if actor.user_id is None:
        return
    row = conn.execute(select(_U.c.org_id, _U.c.active, _U.c.role).where(_U.c.id == actor.user_id)).first()
    if row is None or row.org_id != actor.org_id:
        raise Forbidden("this user does not belong to the organisation")
    if not row.active:
        raise Forbidden("this user is deactivated")
    if admin and row.role != "admin":
        raise Forbidden("admin role required")


@contextmanager
def changing(engine, actor: Actor, *, admin: bool = True) -> Iterator[Connection]:
    """The one transaction of a use case: the actor checked, then the change and its audit
    record committed together (or nothing, if anything raises)."""
    with write_transaction(engine) as conn:
        authorise(conn, actor, admin=admin)
        yield conn


@contextmanager
def changing_session(engine, actor: Actor, *, admin: bool = True) -> Iterator[Session]:
    """`changing()` for code written with ORM objects: the Session joins that one transaction
    (it flushes; the transaction commits when the block ends)."""
    with changing(engine, actor, admin=admin) as conn, Session(bind=conn) as session:
        yield session
        session.flush()
