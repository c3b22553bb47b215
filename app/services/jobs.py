"""The periodic work of the services, for the scheduler of `serve` and `worker`.

sync/scheduler.py runs mailboxes, leases and subscriptions itself; what belongs to the
services (sync may not import them, docs/architecture.md) is handed to it from here by
the two composition roots, so both run the same jobs."""

from __future__ import annotations

from app.services import digest, duplicates


def scheduled_jobs(rt) -> list:
    """(id, function, seconds) for each job: duplicate candidates and the daily digest."""
    return [*duplicates.scheduled_jobs(rt), digest.job(rt)]
