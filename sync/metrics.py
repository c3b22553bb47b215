"""Prometheus metrics of the sync engine, served at /metrics (app/api/metrics.py).

The engine calls observe_run(report) after every run. Labels are kinds and
outcomes only: never a mailbox address, a contact or a subject.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from sync.fixes import RunError

REGISTRY = CollectorRegistry(auto_describe=True)

RUNS = Counter("threadline_sync_runs", "Mailbox sync runs, by outcome.", ["outcome"], registry=REGISTRY)
MESSAGES = Counter("threadline_sync_messages", "Message copies imported by the sync.", registry=REGISTRY)
NEW_INTERACTIONS = Counter(
    "threadline_sync_new_interactions", "New interactions added to the timeline.", registry=REGISTRY
)
SKIPPED = Counter(
    "threadline_sync_skipped_messages",
    "Messages deliberately not stored (bulk, internal, rules...).",
    registry=REGISTRY,
)
UNREADABLE = Counter("threadline_sync_unreadable_messages", "Messages that could not be parsed.", registry=REGISTRY)
ERRORS = Counter(
    "threadline_sync_errors",
    "Sync errors, by kind (auth, transient, throttled, folder, ...).",
    ["kind"],
    registry=REGISTRY,
)
DURATION = Histogram(
    "threadline_sync_duration_seconds",
    "Duration of one mailbox sync run.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
    registry=REGISTRY,
)


def observe_run(report) -> None:
    """Record one RunReport (sync/engine.py). Never raises: metrics must not break a sync."""
    try:
        RUNS.labels(outcome="ok" if report.ok else "failed").inc()
        MESSAGES.inc(max(0, report.imported))
        NEW_INTERACTIONS.inc(max(0, report.new_interactions))
        SKIPPED.inc(max(0, report.skipped))
        UNREADABLE.inc(max(0, report.bad))
        DURATION.observe(max(0.0, report.seconds))
        if not report.ok:
            ERRORS.labels(kind=report.error_kind or "unknown").inc()
        for _ in report.folders_failed:
            ERRORS.labels(kind=RunError.FOLDER).inc()
    except Exception:  # noqa: BLE001 - pragma: no cover
        pass
