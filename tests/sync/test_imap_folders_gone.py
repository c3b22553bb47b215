"""Folders that leave the server's listing (renamed, deleted, gone between LIST and
SELECT), against a real Dovecot: the timeline and the mailbox's state end as a first
import of the server as it is now gives them."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest

from connectors.base import Folder
from connectors.factory import build_connector
from tests.faults.timeline import assert_same_timeline, timeline
from tests.world import NOW, make_world, message


@pytest.fixture
def world(tmp_path):
    return make_world(tmp_path / "incremental")


def _fill(imap_user) -> None:
    imap_user.create_folder("Projects")
    imap_user.deliver(
        message("carla@acme.com", "alice@ourco.com", "Hi", msgid="in1@acme"), internaldate=NOW - timedelta(days=3)
    )
    for i in range(3):
        imap_user.deliver(
            message(f"p{i}@client.io", "alice@ourco.com", f"Project {i}", msgid=f"pr{i}@client.io"),
            folder="Projects",
            internaldate=NOW - timedelta(days=2),
        )


def _clean_import(tmp_path, imap_user) -> dict:
    fresh = make_world(tmp_path / "fresh")
    mid = fresh.add_imap("alice@ourco.com", imap_user)
    assert fresh.sync(mid).ok
    return timeline(fresh, skip=("unreadable", "skipped_items"))


def test_a_folder_renamed_between_two_syncs_ends_with_the_timeline_of_a_first_import(world, imap_user, tmp_path):
    _fill(imap_user)
    mid = world.add_imap("alice@ourco.com", imap_user)
    assert world.sync(mid).ok
    client = imap_user.connect()
    client.rename_folder("Projects", "Clients/Projects 2026")
    client.logout()

    report = world.sync(mid)

    assert report.ok and not report.folders_failed
    assert world.sql("SELECT status, last_error FROM mailbox") == [("active", None)]
    assert_same_timeline(
        timeline(world, skip=("unreadable", "skipped_items")),
        _clean_import(tmp_path, imap_user),
        what="an incremental sync after a folder was renamed",
    )


def test_a_folder_that_failed_and_then_left_the_server_does_not_keep_the_mailbox_importing(world, imap_user):
    _fill(imap_user)
    path = imap_user.dovecot.folder_path(imap_user.username, "Projects")
    os.chmod(path / "cur", 0)  # the first import cannot read it (it is being moved meanwhile)
    try:
        mid = world.add_imap("alice@ourco.com", imap_user)
        first = world.sync(mid)
    finally:
        os.chmod(path / "cur", 0o700)
    assert first.ok and first.folders_failed
    imap_user.delete_folder("Projects")

    report = world.sync(mid)

    assert report.ok and not report.folders_failed
    assert world.sql("SELECT status, last_error FROM mailbox") == [("active", None)]
    assert [r[0] for r in world.sql("SELECT name FROM folderstate")] == ["INBOX"]


class Relabelled:
    """The real IMAP connector, with some folders listed as skipped (a \\Junk flag set on them
    for a while, say): a source whose classification of a folder changes between runs."""

    def __init__(self, inner, skipped: set[str]):
        self.inner, self.skipped = inner, skipped

    def list_folders(self):
        return [
            Folder(f.name, "skip", f.flags, f.remote_id) if f.name in self.skipped else f
            for f in self.inner.list_folders()
        ]

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_folder_skipped_for_a_while_is_read_again_once_listed_as_mail(world, imap_user, tmp_path):
    """Its row came back as a skipped one, and the stored row was never updated: the folder stayed
    unselected for good, and its mail never reached the timeline."""
    _fill(imap_user)
    mid = world.add_imap("alice@ourco.com", imap_user)
    assert world.sync(mid).ok
    assert world.sync(mid, connector_factory=lambda spec: Relabelled(build_connector(spec), {"Projects"})).ok
    assert world.sql("SELECT role, selected FROM folderstate WHERE name = 'Projects'") == [("skip", False)]
    assert world.sync(mid).ok
    assert world.sql("SELECT role, selected FROM folderstate WHERE name = 'Projects'") == [("other", True)]
    assert_same_timeline(
        timeline(world, skip=("unreadable", "skipped_items")),
        _clean_import(tmp_path, imap_user),
        what="an incremental sync after a folder was skipped for a while",
    )
