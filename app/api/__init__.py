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
    from app.api.metrics import RequestLatency  # API latency histogram (served at /metrics)

    app.add_middleware(RequestLatency)
    # Cross-origin calls only from the app's own origin and Outlook's hosts (the
    # sidebar itself is same-origin); bearer tokens, never cookies.
    from fastapi.middleware.cors import CORSMiddleware
    from urllib.parse import urlsplit

    own = urlsplit(rt.settings.public_url)
    app.add_middleware(CORSMiddleware, allow_origins=[f"{own.scheme}://{own.netloc}", "https://outlook.office.com",
                                                      "https://outlook.office365.com", "https://outlook.live.com",
                                                      "https://outlook.cloud.microsoft"],
                       allow_methods=["GET", "POST", "PATCH", "DELETE"],
                       allow_headers=["Authorization", "Content-Type"], allow_credentials=False, max_age=600)
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

    @app.get("/healthz", tags=["ops"], summary="Liveness for load balancers: 503 when the database is unreachable")
    def healthz():
        from fastapi.responses import JSONResponse
        from sqlalchemy import text

        from app.db import read_only

        try:
            with read_only(rt.engine) as conn:
                conn.execute(text("SELECT 1"))
        except Exception:  # noqa: BLE001 - any failure means not healthy
            return JSONResponse({"ok": False, "database": "unreachable"}, status_code=503)
        return {"ok": True}

    return app
