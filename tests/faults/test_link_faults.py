"""The IMAP side failing under a running import: a link cut every K bytes, the
server restarted, the folder re-created with a new UIDVALIDITY. Each import is
retried until it succeeds and must then equal a clean import, row for row."""

from __future__ import annotations

import secrets

import pytest

from tests.conftest import ImapUser
from tests.faults.backfill import chance, fault_seed, fill, rep_mail, world_for
from tests.faults.timeline import assert_same_timeline, timeline
from tests.servers import Dovecot, free_port
from tests.world import make_world


def _sync_until_ok(world, mid, seed, attempts=200, **kw):
    reports = []
    for _ in range(attempts):
        report = world.sync(mid, **kw)
        reports.append(report)
        if report.ok and not report.folders_failed:
            return reports
        assert report.error_kind in (None, "transient"), (seed, report)
    raise AssertionError(f"seed {seed}: no complete sync in {attempts} attempts; last {reports[-1]}")


def _once_at(at: int, fired: list, action):
    """A progress callback that runs action once, after at least `at` copies are imported; fired gets that count."""

    def progress(report):
        if not fired and report.imported >= at:
            fired.append(report.imported)
            action()

    return progress


@pytest.mark.parametrize("in_child", [True, False], ids=["child-fetch", "inline-fetch"])
def test_an_import_whose_link_is_cut_every_k_bytes_ends_as_a_clean_import(
    mailbox, imap_user, fault_proxy, tmp_path, in_child
):
    seed = fault_seed(1505)
    every = chance(seed).randint(150_000, 300_000)
    corpus, expected = mailbox
    proxy = fault_proxy(imap_user)
    world = world_for(tmp_path, corpus, "cut")
    mid = world.add_imap(corpus.reps[0][1], imap_user, port=proxy.port)
    world.set_batch_size(mid, 20)
    proxy.cut_after(every, once=False)  # every connection, every time

    reports = _sync_until_ok(world, mid, seed, fetch_in_child=in_child)

    assert len(reports) > 2 and proxy.cuts >= len(reports) - 1, (seed, every, proxy.cuts)
    assert_same_timeline(timeline(world), expected, seed=seed, what=f"an import cut every {every} bytes")


@pytest.fixture
def own_dovecot(tmp_path):
    """A Dovecot of this test's own, on a fixed port and keeping its mail, so it can be restarted."""
    server = Dovecot(tmp_path / "dovecot", port=free_port(), keep_data=True).start()
    yield server
    server.keep_data = False
    server.stop()


@pytest.mark.parametrize("in_child", [True, False], ids=["child-fetch", "inline-fetch"])
def test_an_import_through_a_dovecot_restart_ends_as_a_clean_import(own_dovecot, tmp_path, in_child):
    seed = fault_seed(1506)
    user, password = f"r{secrets.token_hex(4)}", secrets.token_urlsafe(10)
    own_dovecot.add_user(user, password)
    box = ImapUser(own_dovecot.host, own_dovecot.port, user, password, own_dovecot)
    corpus = fill(box, 1500)
    clean = world_for(tmp_path, corpus, "clean")
    assert clean.sync(clean.add_imap(corpus.reps[0][1], box)).ok
    expected = timeline(clean)

    world = world_for(tmp_path, corpus, "restarted")
    mid = world.add_imap(corpus.reps[0][1], box)
    world.set_batch_size(mid, 20)
    restarts = []
    restart = _once_at(chance(seed).randint(20, 400), restarts, lambda: (own_dovecot.stop(), own_dovecot.start()))

    first = world.sync(mid, fetch_in_child=in_child, progress=restart)
    assert restarts and not (first.ok and not first.folders_failed), (seed, first)
    _sync_until_ok(world, mid, seed, fetch_in_child=in_child)
    assert_same_timeline(timeline(world), expected, seed=seed, what=f"Dovecot restarted after {restarts}")


@pytest.mark.parametrize("in_child", [False, True], ids=["inline", "fetch-child"])
def test_an_import_whose_folder_gets_a_new_uidvalidity_midway_ends_as_a_clean_import_of_the_new_folder(
    imap_user, tmp_path, in_child
):
    seed = fault_seed(1507)
    corpus, items = rep_mail(1500)
    imap_user.create_folder("Sent")
    imap_user.deliver_many(items)
    inbox = [item for item in items if item[1] == "INBOX"]
    world = world_for(tmp_path, corpus, "reset")
    mid = world.add_imap(corpus.reps[0][1], imap_user)
    world.set_batch_size(mid, 20)
    resets = []

    def reset():
        imap_user.recreate_folder("INBOX")  # the same mail under a new UIDVALIDITY
        imap_user.deliver_many(inbox)

    world.sync(mid, fetch_in_child=in_child, progress=_once_at(chance(seed).randint(20, 300), resets, reset))
    assert resets, seed
    _sync_until_ok(world, mid, seed, fetch_in_child=in_child)

    clean = world_for(tmp_path, corpus, "clean")  # a clean import of the mailbox as it is now
    assert clean.sync(clean.add_imap(corpus.reps[0][1], imap_user)).ok
    assert_same_timeline(timeline(world), timeline(clean), seed=seed, what=f"INBOX re-created after {resets} copies")


def test_the_hostile_corpus_cut_every_k_bytes_keeps_the_counts_and_reasons_of_a_clean_import(
    imap_user, fault_proxy, tmp_path
):
    """Skips and unreadable messages are counted in the batch's own transaction: a cut
    between batches neither loses nor repeats one."""
    from tests.corpus.hostile import hostile_corpus

    seed = fault_seed(1511)
    # Two messages a batch and the next batch fetched ahead: a cut must leave room for four 1 MB headers.
    every = chance(seed).randint(5_000_000, 6_000_000)
    imap_user.create_folder("Hostile")
    imap_user.deliver_many([(raw or b"\r\n", "Hostile") for _, raw in hostile_corpus(seed, mutant_count=200)])
    clean = make_world(tmp_path / "clean")
    assert clean.sync(clean.add_imap("alice@ourco.com", imap_user), fetch_in_child=False).ok
    expected = timeline(clean)
    assert expected["unreadable"] and expected["folders"] and expected["skipped_items"]

    proxy = fault_proxy(imap_user)
    world = make_world(tmp_path / "cut")
    mid = world.add_imap("alice@ourco.com", imap_user, port=proxy.port)
    world.set_batch_size(mid, 2)
    proxy.cut_after(every, once=False)
    reports = _sync_until_ok(world, mid, seed, attempts=60, fetch_in_child=False)

    assert len(reports) > 1, (seed, every)
    assert_same_timeline(timeline(world), expected, seed=seed, what=f"the hostile corpus cut every {every} bytes")
