"""The FastAPI application."""
from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api import companies, contacts, mailboxes
from app.runtime import Runtime


def create_app(rt: Runtime, *, run_scheduler: bool = False) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service = None
        if run_scheduler:
            from sync.scheduler import SyncService

            service = SyncService(rt)
            service.start()
        app.state.sync_service = service
        yield
        if service is not None:
            service.stop()

    app = FastAPI(title="Threadline", version="0.1.0", lifespan=lifespan,
                  description="The shared contact timeline built from your team's mailboxes.")
    app.state.runtime = rt
    for module in (contacts, companies, mailboxes):
        app.include_router(module.router)
    # Routers of the panel, the admin console and Microsoft Graph notifications
    # register themselves here as they are added.
    for name in ("activity", "people", "addin", "panel", "admin", "admin_pages", "graph_webhooks", "metrics"):
        try:
            module = __import__(f"app.api.{name}", fromlist=["router"])
        except ModuleNotFoundError as exc:
            if exc.name != f"app.api.{name}":
                raise
            continue
        app.include_router(module.router)

    @app.get("/healthz", tags=["ops"], summary="Liveness for load balancers")
    def healthz() -> dict:
        return {"ok": True}

    return app
