"""PostgreSQL restarted while a batch is being written: the batch's transaction
is lost with its connection, the run says so, and the next run writes that
batch again so that the timeline equals a clean import's, row for row. The
cluster is this module's own: restarting it breaks no other test's connections."""

from __future__ import annotations

import pytest

import sync.engine as engine_module
from tests.faults.backfill import chance, fault_seed, fill, world_for
from tests.faults.timeline import assert_same_timeline, timeline
from tests.servers import Postgres, free_port
from tests.world import migrated_database


@pytest.fixture(scope="module")
def own_postgres(tmp_path_factory):
    server = Postgres(tmp_path_factory.mktemp("own-postgres"), port=free_port(), keep_data=True).start()
    yield server
    server.keep_data = False
    server.stop()


@pytest.mark.parametrize("in_child", [True, False], ids=["child-fetch", "inline-fetch"])
def test_postgresql_restarted_mid_batch_loses_only_that_batch_and_the_next_run_ends_as_a_clean_import(
    own_postgres, imap_user, tmp_path, monkeypatch, in_child
):
    seed = fault_seed(1508)
    corpus = fill(imap_user, 1500)
    clean = world_for(tmp_path, corpus, "clean-pg", url=migrated_database(own_postgres))
    assert clean.sync(clean.add_imap(corpus.reps[0][1], imap_user)).ok
    expected = timeline(clean)

    world = world_for(tmp_path, corpus, "restarted-pg", url=migrated_database(own_postgres))
    mid = world.add_imap(corpus.reps[0][1], imap_user)
    world.set_batch_size(mid, 20)
    real_ingest, calls, restarted = engine_module.ingest, [], []
    at = chance(seed).randint(2, 15)

    def ingest_then_restart(conn, *args, **kw):
        result = real_ingest(conn, *args, **kw)  # the batch's rows are written, not committed
        calls.append(1)
        if len(calls) == at:
            own_postgres.stop()
            own_postgres.start()
            restarted.append(at)
        return result

    monkeypatch.setattr(engine_module, "ingest", ingest_then_restart)
    first = world.sync(mid, fetch_in_child=in_child)
    monkeypatch.setattr(engine_module, "ingest", real_ingest)

    assert restarted and not (first.ok and not first.folders_failed), (seed, first)
    failed = first.folders_failed or [first.error]
    assert any("database" in reason.lower() or "connection" in reason.lower() for reason in failed), (seed, failed)
    for _ in range(5):
        report = world.sync(mid, fetch_in_child=in_child)
        if report.ok and not report.folders_failed:
            break
    assert report.ok and not report.folders_failed, (seed, report)
    assert_same_timeline(timeline(world), expected, seed=seed, what=f"PostgreSQL restarted in batch {at}")
