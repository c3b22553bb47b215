"""Shared FastAPI dependencies: runtime, database connection, the calling user."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Iterator

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.engine import Connection

from app.db import read_only
from app.models import ApiToken, User
from app.runtime import Runtime
from app.services.orgs import TOKEN_PREFIX, hash_token

_bearer = HTTPBearer(auto_error=False, description="A personal access token (`threadline user token EMAIL`).")
T, U = ApiToken.__table__, User.__table__


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


# Connections are opened inside each endpoint (read_conn), not by a `yield`
# dependency: FastAPI tears those down on its thread pool, so under overload
# requests holding pooled connections would wait for threads held by requests
# waiting for connections.
@contextmanager
def read_conn(rt: Runtime) -> Iterator[Connection]:
    with read_only(rt.engine) as conn:
        yield conn


@dataclass(frozen=True)
class Caller:
    user_id: int
    org_id: int
    email: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def get_caller(rt: RuntimeDep, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Caller:
    """The calling user, from a personal access token or (Outlook add-in) a Microsoft Entra ID access token."""
    if creds is None or not creds.credentials:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing bearer token",
                            headers={"WWW-Authenticate": "Bearer"})
    token = creds.credentials
    if rt.settings.entra_client_id and not token.startswith(TOKEN_PREFIX):
        from app.auth import entra

        if entra.looks_like_jwt(token):
            try:
                user = entra.authenticate(rt.engine, rt.settings, token)
            except entra.EntraError as exc:
                raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"Microsoft sign-in refused: {exc}",
                                    headers={"WWW-Authenticate": "Bearer"}) from None
            return Caller(user.user_id, user.org_id, user.email, user.role)
    with read_only(rt.engine) as conn:
        row = conn.execute(
            select(U.c.id, U.c.org_id, U.c.email, U.c.role)
            .join(T, T.c.user_id == U.c.id)
            .where(T.c.token_hash == hash_token(token), T.c.revoked_at.is_(None), U.c.active.is_(True))
        ).first()
    if row is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid or revoked token",
                            headers={"WWW-Authenticate": "Bearer"})
    return Caller(row.id, row.org_id, row.email, row.role)


CallerDep = Annotated[Caller, Depends(get_caller)]


def require_admin(caller: CallerDep) -> Caller:
    if not caller.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "admin role required")
    return caller


AdminDep = Annotated[Caller, Depends(require_admin)]
