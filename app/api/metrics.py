"""/metrics in the Prometheus text format, and the API latency middleware.

Served metrics: mailboxes by organisation id and status (read from the database
at scrape time), the sync counters and duration histogram (sync/metrics.py) and
API request latency by method, route template and status class. Labels never
carry an address, a name or a subject.

Set THREADLINE_METRICS_TOKEN to require `Authorization: Bearer <that token>`
on /metrics. Without it, /metrics answers only scrapers on this host or a
private network that reach the app directly: a request that came through a
reverse proxy (X-Forwarded-For, Forwarded) is refused, since the app's public
address is usually such a proxy (any of the forwarding headers proxies and CDNs
add: see FORWARDING_HEADERS). Read at request time.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import time

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from app.db import read_only
from app.models import Mailbox
from app.models.mail import MailboxStatus
from app.services import reconcile
from sync.metrics import REGISTRY

router = APIRouter(tags=["ops"])

API_LATENCY = Histogram(
    "threadline_http_request_duration_seconds",
    "API request latency.",
    ["method", "route", "status"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class RequestLatency:
    """Pure ASGI middleware timing every HTTP request; labelled by route template, not the raw path."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            API_LATENCY.labels(
                method=scope.get("method", ""), route=template, status=f"{status['code'] // 100}xx"
            ).observe(time.perf_counter() - started)


class _MailboxCollector:
    def __init__(self, engine):
        self.engine = engine

    def collect(self):
        gauge = GaugeMetricFamily(
            "threadline_mailboxes", "Mailboxes by organisation and status.", labels=["org", "status"]
        )
        M = Mailbox.__table__
        with read_only(self.engine) as conn:
            rows = conn.execute(select(M.c.org_id, M.c.status, func.count()).group_by(M.c.org_id, M.c.status)).all()
            attention = reconcile.needing_attention(conn)
        counts = {(str(o), s): n for o, s, n in rows}
        for org in sorted({o for o, _ in counts}):
            for status in MailboxStatus:
                gauge.add_metric([org, status], counts.get((org, status), 0))
        yield gauge
        flagged = GaugeMetricFamily(
            "threadline_mailboxes_needing_attention",
            "Mailboxes whose numbers do not add up: messages on the server neither stored nor skipped, "
            "or contacts whose kept summaries disagree with the latest recount.",
            labels=["org"],
        )
        for org in sorted({o for o, _ in counts}):
            flagged.add_metric([org], attention.get(int(org), 0))
        yield flagged


def _authorised(request: Request) -> bool:
    expected = os.environ.get("THREADLINE_METRICS_TOKEN")
    if not expected:
        return _direct_and_private(request)
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), expected.encode())


# Headers a reverse proxy, load balancer or CDN adds to say whom it forwards for.
# nginx's usual set-up sends only X-Real-IP, Cloudflare CF-Connecting-IP, Akamai
# True-Client-IP, Fastly Fastly-Client-IP: any one of them (or any X-Forwarded-*)
# means the request came through a proxy, so the peer address is the proxy's.
FORWARDING_HEADERS = frozenset(
    {
        "forwarded",
        "via",
        "x-real-ip",
        "true-client-ip",
        "cf-connecting-ip",
        "fastly-client-ip",
        "x-client-ip",
        "x-cluster-client-ip",
        "client-ip",
        "x-original-forwarded-for",
        "x-proxyuser-ip",
        "x-envoy-external-address",
        "x-azure-clientip",
        "x-azure-socketip",
        "x-appengine-user-ip",
        "x-remote-ip",
        "x-remote-addr",
        "x-originating-ip",
    }
)


def came_through_proxy(headers) -> bool:
    return any(name in FORWARDING_HEADERS or name.startswith("x-forwarded-") for name in headers.keys())


def _direct_and_private(request: Request) -> bool:
    if came_through_proxy(request.headers):
        return False
    try:
        client = ipaddress.ip_address(request.client.host if request.client else "")
    except ValueError:
        return False
    return client.is_loopback or client.is_private


@router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse, include_in_schema=False)
def metrics(request: Request) -> Response:
    if not _authorised(request):
        raise HTTPException(
            401,
            "metrics token required (THREADLINE_METRICS_TOKEN), or scrape from this host "
            "or a private network without a proxy in between",
            headers={"WWW-Authenticate": "Bearer"},
        )
    local = CollectorRegistry(auto_describe=False)
    local.register(_MailboxCollector(request.app.state.runtime.engine))
    body = generate_latest(REGISTRY) + generate_latest(local)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
