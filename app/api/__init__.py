"""The FastAPI application."""

from __future__ import annotations

from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.api import (
    activity,
    addin,
    admin,
    admin_contacts,
    admin_deals,
    admin_duplicates,
    admin_import,
    admin_pages,
    companies,
    contacts,
    deals,
    duplicates,
    followups,
    graph_webhooks,
    mailboxes,
    metrics,
    panel,
    people,
    reports,
    segments,
)
from app.api.panel import OUTLOOK_ORIGINS
from app.api.schemas import Health, Unhealthy
from app.db import read_only
from app.dberrors import DATABASE_ERRORS, database_trouble
from app.runtime import Runtime
from app.services.errors import ServiceError, http_status

ROUTERS = (
    contacts,
    segments,
    companies,
    deals,
    followups,
    mailboxes,
    activity,
    people,
    addin,
    panel,
    admin,
    duplicates,
    admin_deals,
    admin_duplicates,
    admin_pages,
    admin_contacts,
    admin_import,
    graph_webhooks,
    metrics,
    reports,
)


def create_app(rt: Runtime, *, run_scheduler: bool = False) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service = None
        if run_scheduler:
            from app.services.jobs import scheduled_jobs
            from sync.scheduler import SyncService

            service = SyncService(rt, jobs=scheduled_jobs(rt))
            service.start()
        app.state.sync_service = service
        yield
        if service is not None:
            service.stop()
        rt.close_readers()

    app = FastAPI(
        title="Threadline",
        version="0.1.0",
        lifespan=lifespan,
        description="The shared contact timeline built from your team's mailboxes.",
    )
    app.state.runtime = rt
    app.add_middleware(metrics.RequestLatency)  # API latency histogram, served at /metrics
    # Cross-origin calls only from the app's own origin and Outlook's hosts (the
    # sidebar itself is same-origin); bearer tokens, never cookies.
    own = urlsplit(rt.settings.public_url)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=[f"{own.scheme}://{own.netloc}", *OUTLOOK_ORIGINS],
        allow_methods=["GET", "POST", "PATCH", "DELETE"],
        allow_headers=["Authorization", "Content-Type"],
        allow_credentials=False,
        max_age=600,
    )
    for module in ROUTERS:
        app.include_router(module.router)

    # The one place a service's refusal becomes HTTP (app/services/errors.py): nothing was committed.
    @app.exception_handler(ServiceError)
    async def service_error(request, exc: ServiceError):
        return JSONResponse(exc.as_dict(), status_code=http_status(exc))

    # The database itself in trouble (full, read-only, unreachable: app/dberrors.py) is neither the
    # request's fault nor a fault in Threadline: 503 with the reason, never the driver's text (it
    # quotes SQL and parameters). Any other database error stays a 500, logged with its traceback.
    async def database_error(request, exc: Exception):
        trouble = database_trouble(exc)
        if trouble is None:
            raise exc
        return JSONResponse(
            {"detail": f"{trouble}; try again later, or tell your administrator", "error": "database"},
            status_code=503,
            headers={"Retry-After": "30"},
        )

    for kind in DATABASE_ERRORS:
        app.add_exception_handler(kind, database_error)

    @app.get(
        "/healthz",
        tags=["ops"],
        summary="Health for load balancers: 503 when the database is unreachable",
        response_model=Health,
        responses={503: {"model": Unhealthy, "description": "the database is unreachable"}},
    )
    def healthz() -> Health | JSONResponse:
        try:
            with read_only(rt.engine) as conn:
                conn.execute(text("SELECT 1"))
        except Exception:  # noqa: BLE001 - any failure means not healthy
            return JSONResponse({"ok": False, "database": "unreachable"}, status_code=503)
        return Health(ok=True)

    # The benchmark's baseline (bench/api_lookup.py). A response model costs it
    # nothing measurable: ~40 us per request with or without one (a bare
    # FastAPI app driven in-process, best of 30 rounds).
    @app.get("/livez", tags=["ops"], summary="Liveness: the process answers (no database work)")
    async def livez() -> Health:
        return Health(ok=True)

    return app
