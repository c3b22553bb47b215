"""Microsoft Graph answering storms of 429, 503 and 410 (an expired delta state)
in the middle of an import: each run that fails fails as throttled or
transient, and the import that finally completes equals a clean import of the
same mailbox, row for row, meetings included."""

from __future__ import annotations

from datetime import timedelta

from tests.faults.backfill import chance, fault_seed
from tests.faults.timeline import assert_same_timeline, timeline
from tests.sync.test_graph_sync import ALICE, add_tenant_mailbox
from tests.world import NOW, make_world

THROTTLED = {"error": {"code": "ApplicationThrottled", "message": "Application is over its MailboxConcurrency limit."}}
UNAVAILABLE = {"error": {"code": "ServiceUnavailable", "message": "Service Unavailable"}}
EXPIRED = {"error": {"code": "SyncStateNotFound", "message": "The sync state generation is not found."}}
# Where a storm hits: folder listings, every delta page, only continuation pages, the calendar.
TARGETS = ["/mailFolders", "/messages/delta", "$skiptoken", "/calendarView/delta", "/events/"]


def _fill_tenant_mailbox(graph, rnd) -> None:
    customers = [(f"Customer {i}", f"c{i}@cust{i % 7}.com") for i in range(25)]
    for i in range(90):
        who = rnd.choice(customers)
        sent = NOW - timedelta(days=rnd.randint(1, 200), minutes=i)
        if i % 3:
            graph.add_message(
                ALICE,
                internet_message_id=f"<in{i}@x.com>",
                subject=f"In {i}",
                sender=who,
                to=[("Alice", ALICE)],
                cc=[rnd.choice(customers)],
                sent=sent,
                preview=f"About order {i}",
            )
        else:
            graph.add_message(
                ALICE,
                "sentitems",
                internet_message_id=f"<out{i}@ourco.com>",
                subject=f"Re: {i}",
                sender=("Alice Rep", ALICE),
                to=[who],
                sent=sent,
            )
    for i in range(8):
        graph.add_event(
            ALICE,
            subject=f"Call {i}",
            start=NOW + timedelta(days=i - 4, hours=i),
            organizer=("Alice Rep", ALICE),
            attendees=[(*rnd.choice(customers), "required", "accepted")],
            ical_uid=f"UID-STORM-{i}",
        )


def _pages_of(world, mailbox_id: int, size: int) -> None:
    from sqlalchemy import select, update

    from app.models import Mailbox

    mb = Mailbox.__table__
    with world.rt.engine.begin() as conn:
        cfg = conn.execute(select(mb.c.config).where(mb.c.id == mailbox_id)).scalar()
        conn.execute(update(mb).where(mb.c.id == mailbox_id).values(config={**cfg, "page_size": size}))


def test_an_import_through_storms_of_429_503_and_410_ends_as_a_clean_import(graph, tmp_path):
    seed = fault_seed(1509)
    rnd = chance(seed)
    _fill_tenant_mailbox(graph, rnd)
    clean = make_world(tmp_path / "clean")
    assert clean.sync(add_tenant_mailbox(clean, graph)).ok
    expected = timeline(clean)
    assert expected["meetings"] and len(expected["interactions"]) > 90

    world = make_world(tmp_path / "storm")
    mid = add_tenant_mailbox(world, graph)
    _pages_of(world, mid, 10)  # the backfill spans pages: a storm can land in the middle of it
    storms, reports = [], []
    # First a 429 storm, then a 503 one, on continuation pages of the first import, each longer
    # than the client's own retries: both fail a run mid-backfill, with part of the mail stored.
    for status, body in ((429, THROTTLED), (503, UNAVAILABLE)):
        graph.inject("$skiptoken", status, body, headers={"Retry-After": "0"}, times=4)
        storms.append((status, "$skiptoken", 4))
        report = world.sync(mid)
        reports.append(report)
        stored = world.scalar("SELECT count(*) FROM interaction WHERE kind = 'email'")
        assert report.error_kind == "throttled" and 0 < stored < 90, (seed, status, report, stored)
    for _ in range(12):
        status = rnd.choice([429, 503, 410])
        # Graph answers 410 only for a delta state (a folder listing has none).
        target, times = (
            rnd.choice([t for t in TARGETS if status != 410 or "delta" in t or "token" in t]),
            rnd.randint(1, 9),
        )
        body = {429: THROTTLED, 503: UNAVAILABLE, 410: EXPIRED}[status]
        headers = {"Retry-After": "0"} if status != 410 else {"Location": graph.graph_url}
        graph.inject(target, status, body, headers=headers, times=times)
        storms.append((status, target, times))
        report = world.sync(mid)
        reports.append(report)
        assert report.ok or report.error_kind in ("throttled", "transient"), (seed, storms, report)
    with graph.lock:
        graph.faults.clear()  # the storm passes
    for _ in range(3):
        report = world.sync(mid)
        if report.ok and not report.folders_failed:
            break
    assert report.ok and not report.folders_failed, (seed, storms, report)
    assert any(not r.ok or r.folders_failed for r in reports), (seed, storms)  # the storms did hit
    assert_same_timeline(timeline(world), expected, seed=seed, what=f"storms {storms}")
