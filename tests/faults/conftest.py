from __future__ import annotations

import pytest

from tests.faults.backfill import fill, world_for
from tests.faults.timeline import timeline
from tests.world import migrated_database


@pytest.fixture(params=["sqlite", "postgresql"])
def new_database(request):
    """Makes a fresh database for each world of a test: its URL (at the newest schema, copied from
    the migrated template), or None for SQLite in the world's folder."""
    if request.param == "sqlite":
        return lambda: None
    postgres = request.getfixturevalue("postgres")
    return lambda: migrated_database(postgres)


@pytest.fixture
def mailbox(imap_user, tmp_path):
    """(corpus, the timeline of a clean import) for one rep's share of a 1,500-message generated company
    (about 690 messages, some skipped by rule), delivered to imap_user's mailbox."""
    corpus = fill(imap_user, 1500)
    clean = world_for(tmp_path, corpus, "clean")
    clean_id = clean.add_imap(corpus.reps[0][1], imap_user)
    assert clean.sync(clean_id).ok
    return corpus, timeline(clean)
