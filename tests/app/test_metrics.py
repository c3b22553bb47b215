"""/metrics (Prometheus text) and /healthz."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.api import create_app
from tests.world import make_world, message


def _samples(text: str) -> dict:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_and_health(tmp_path, imap_user, monkeypatch):
    w = make_world(tmp_path)
    imap_user.deliver(message("Jane <jane@acme.com>", "alice@ourco.com", "Secret subject", msgid="x1@acme"))
    ok_box = w.add_imap("alice@ourco.com", imap_user)
    bad_box = w.add_imap("bob@ourco.com", imap_user, password="wrong")
    app = create_app(w.rt)
    client = TestClient(app, client=("127.0.0.1", 50000))  # a scraper on this host
    before = _samples(client.get("/metrics").text)
    good, bad = w.sync(ok_box), w.sync(bad_box)
    assert good.ok and not bad.ok
    # the engine calls sync.metrics.observe_run after every run
    client.get("/healthz")
    resp = client.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    after = _samples(resp.text)
    org = str(w.org_id)
    assert after[("threadline_mailboxes", (("org", org), ("status", "active")))] == 1
    assert after[("threadline_mailboxes", (("org", org), ("status", "failed")))] == 1

    def delta(name, labels=()):
        return after.get((name, labels), 0) - before.get((name, labels), 0)

    assert delta("threadline_sync_messages_total") == good.imported >= 1
    assert delta("threadline_sync_errors_total", (("kind", "auth"),)) == 1
    assert delta("threadline_sync_duration_seconds_count") == 2
    assert (
        delta(
            "threadline_http_request_duration_seconds_count",
            (("method", "GET"), ("route", "/healthz"), ("status", "2xx")),
        )
        == 1
    )
    assert "jane" not in resp.text and "Secret subject" not in resp.text and "acme" not in resp.text

    # Without a token: not through a reverse proxy, not from the internet.
    assert client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 401
    assert TestClient(app, client=("8.8.8.8", 50000)).get("/metrics").status_code == 401
    assert TestClient(app, client=("10.1.2.3", 50000)).get("/metrics").status_code == 200

    monkeypatch.setenv("THREADLINE_METRICS_TOKEN", "scrape-me")
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-me"}).status_code == 200

    assert client.get("/healthz").json() == {"ok": True}
    w.rt.engine.dispose()
    from sqlalchemy import create_engine

    w.rt.engine = create_engine(f"sqlite:///{tmp_path}/missing-dir/x.db")
    assert client.get("/healthz").status_code == 503


# Every header a common reverse proxy, load balancer or CDN adds to name the client.
PROXY_HEADERS = (
    "X-Forwarded-For",
    "Forwarded",
    "X-Real-IP",
    "True-Client-IP",
    "CF-Connecting-IP",
    "Fastly-Client-IP",
    "X-Client-IP",
    "X-Cluster-Client-IP",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
    "X-Forwarded-Port",
    "X-Forwarded-Server",
    "Via",
    "Client-IP",
    "X-Original-Forwarded-For",
    "X-Envoy-External-Address",
    "X-Azure-ClientIP",
    "X-AppEngine-User-IP",
)


@pytest.fixture(scope="module")
def local_scraper(tmp_path_factory):
    w = make_world(tmp_path_factory.mktemp("metrics-proxy"))
    yield TestClient(create_app(w.rt), client=("127.0.0.1", 50000))
    w.rt.engine.dispose()


def test_a_local_scraper_without_forwarding_headers_is_answered(local_scraper, monkeypatch):
    monkeypatch.delenv("THREADLINE_METRICS_TOKEN", raising=False)
    assert local_scraper.get("/metrics").status_code == 200


@pytest.mark.parametrize("header", PROXY_HEADERS)
def test_a_request_carrying_any_proxy_forwarding_header_is_refused_without_a_token(local_scraper, monkeypatch, header):
    # The proxy itself connects from this host; the header says it forwards someone else.
    monkeypatch.delenv("THREADLINE_METRICS_TOKEN", raising=False)
    value = "for=203.0.113.9" if header == "Forwarded" else ("1.1 proxy" if header == "Via" else "203.0.113.9")
    resp = local_scraper.get("/metrics", headers={header: value})
    assert resp.status_code == 401, header
    assert "threadline_mailboxes" not in resp.text
