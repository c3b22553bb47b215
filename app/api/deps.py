"""Shared FastAPI dependencies: runtime, database connection, the calling user."""

from __future__ import annotations

import asyncio
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Callable, Iterator

import anyio
from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Connection
from starlette.datastructures import QueryParams

from app.db import PostgresReaders, raw_rows, read_only
from app.models import ApiToken, User
from app.runtime import Runtime
from app.services.orgs import TOKEN_PREFIX, hash_token

_bearer = HTTPBearer(auto_error=False, description="A personal access token (`threadline user token EMAIL`).")
T, U = ApiToken.__table__, User.__table__


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime


# async on purpose: FastAPI runs a plain `def` dependency on its thread pool,
# and that hop cost the lookup more than its SQL (bench/api_lookup.py).
async def get_runtime(request: Request) -> Runtime:
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


async def get_caller(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    """The calling user, from a personal access token or (Outlook add-in) a Microsoft Entra ID access token."""
    return await caller_from(request.app.state.runtime, creds)


def _is_entra(rt: Runtime, token: str) -> bool:
    if not rt.settings.entra_client_id or token.startswith(TOKEN_PREFIX):
        return False
    from app.auth import entra

    return entra.looks_like_jwt(token)


def _missing_token() -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})


def _invalid_token() -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, "invalid or revoked token", headers={"WWW-Authenticate": "Bearer"}
    )


async def caller_from(rt: Runtime, creds: HTTPAuthorizationCredentials | None) -> Caller:
    if creds is None or not creds.credentials:
        raise _missing_token()
    token = creds.credentials
    if _is_entra(rt, token):
        from app.auth import entra

        try:
            # May fetch the tenant's signing keys: off the event loop.
            user = await run_in_threadpool(entra.authenticate, rt.engine, rt.settings, token)
        except entra.EntraError as exc:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                f"Microsoft sign-in refused: {exc}",
                headers={"WWW-Authenticate": "Bearer"},
            ) from None
        return Caller(user.user_id, user.org_id, user.email, user.role)
    row = await run_db(rt, _token_owner, hash_token(token), snapshot=False)
    if row is None:
        raise _invalid_token()
    return Caller(*row)


@dataclass(frozen=True)
class PendingToken:
    """A personal access token not checked yet: run_db_as checks it in the endpoint's own read."""

    token_hash: str


def caller_checked_with_read(query_ok: Callable[[QueryParams], bool]):
    """A dependency for a hot read endpoint: the caller, or their personal access token still
    to be checked in the same database call as the endpoint's read (run_db_as). On PostgreSQL
    each call is a thread-pool hop and a connection, and a lookup made two of them (three for
    an unknown address) before this.

    A refused token must still answer 401 before the query is validated (422), as every other
    endpoint does: so the check is left for later only when query_ok says the query string
    will pass validation; any other request checks the token first, as before."""

    async def dependency(
        request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Caller | PendingToken:
        rt = request.app.state.runtime
        if creds is None or not creds.credentials:
            raise _missing_token()
        if _is_entra(rt, creds.credentials) or not query_ok(request.query_params):
            return await caller_from(rt, creds)
        return PendingToken(hash_token(creds.credentials))

    return dependency


_REFUSED = object()


async def run_db_as(rt: Runtime, who: Caller | PendingToken, func, *args):
    """func(conn, caller, *args) as run_db runs a read, a pending token checked first in the
    same call (on SQLite in the same snapshot): 401 if it is refused."""

    def call(conn):
        caller = who
        if isinstance(who, PendingToken):
            row = _token_owner(conn, who.token_hash)
            if row is None:
                return _REFUSED
            caller = Caller(*row)
        return func(conn, caller, *args)

    result = await run_db(rt, call)
    if result is _REFUSED:
        raise _invalid_token()
    return result


_TOKEN_SQL = (
    "SELECT u.id, u.org_id, u.email, u.role FROM apitoken t JOIN app_user u ON u.id = t.user_id "
    "WHERE t.token_hash = ? AND t.revoked_at IS NULL AND u.active = ?"
)


def _token_owner(conn, token_hash: str):
    rows = raw_rows(conn, _TOKEN_SQL, (token_hash, True))
    return rows[0] if rows else None


async def run_db(rt: Runtime, func, *args, snapshot: bool = True):
    """Run a short read. On SQLite it runs inline on this thread's plain
    connection (app/db.py SqliteReader): a few index probes of CPU, where a hop
    to the thread pool or SQLAlchemy's machinery cost more than the query. On
    PostgreSQL it runs on the thread pool, since it waits on the network, on a
    plain connection too (app/db.py PostgresReaders), in autocommit: each statement
    reads the latest committed state, as before (PostgresReader says why a snapshot
    was left out). snapshot=False for a single statement, which is consistent on its own."""
    reader = rt.sqlite_reader()
    if reader is not None:
        if not snapshot:
            return func(reader, *args)
        with reader.snapshot():
            return func(reader, *args)
    readers = rt.postgres_readers()
    if readers is not None:
        return await anyio.to_thread.run_sync(readers.run, func, *args, limiter=_reader_limiter())

    def call():
        with read_only(rt.engine) as conn:
            return func(conn, *args)

    return await run_in_threadpool(call)


_reader_limiters: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _reader_limiter() -> anyio.CapacityLimiter:
    """At most PostgresReaders.MAX_OPEN reads at once per event loop, not the thread pool's 40:
    each further connection prepares and plans its statements again and adds a server process
    competing for the same cores. 32 clients back to back on 20,000 contacts: 40 at once cost
    1.60-1.66 ms of the API's CPU and 1.50-1.55 ms of PostgreSQL's per lookup, 8 at once
    1.38-1.57 and 1.10-1.25, 3 at once 1.41-1.43 and 1.03-1.11, at the same throughput
    (docs/performance.md, section 8). A request past the limit waits on the event loop."""
    loop = asyncio.get_running_loop()
    limiter = _reader_limiters.get(loop)
    if limiter is None:
        limiter = _reader_limiters[loop] = anyio.CapacityLimiter(PostgresReaders.MAX_OPEN)
    return limiter


CallerDep = Annotated[Caller, Depends(get_caller)]


async def require_admin(caller: CallerDep) -> Caller:
    if not caller.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "admin role required")
    return caller


AdminDep = Annotated[Caller, Depends(require_admin)]
