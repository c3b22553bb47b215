"""The typed contracts between connectors and the engine hold across the fetch
child's pipe: events, error kinds and fix codes arrive as values."""

from __future__ import annotations

import pytest

from connectors.base import AuthError, ConnectorSpec, ErrorKind, Fix, FolderBatch, FolderDone, FolderFailed
from sync.fixes import RunError, explain, fix_text
from tests.world import make_world, message


def test_folders_named_like_the_pipes_own_messages_import_through_the_fetch_child(tmp_path, imap_user):
    # The child's control messages are tagged tuples ("folders", "secret", "done",
    # "fatal"); a folder's events start with its name, and must never be read as one.
    names = ("done", "secret", "fatal", "folders")
    for n, name in enumerate(names):
        imap_user.deliver(
            message("carol@acme.com", "alice@ourco.com", f"In {name}", msgid=f"<{n}@acme.com>"), folder=name
        )
    world = make_world(tmp_path)
    mid = world.add_imap("alice@ourco.com", imap_user)
    report = world.sync(mid, fetch_in_child=True)
    assert report.ok and not report.folders_failed, report
    assert report.new_interactions == len(names)
    assert sorted(world.sql("SELECT name, status FROM folderstate WHERE name <> 'INBOX'")) == [
        (name, "ok") for name in sorted(names)
    ]


def test_an_error_in_the_fetch_child_keeps_its_kind_and_fix():
    from sync.pipeline import ChildFetcher

    # A delegated Microsoft 365 mailbox without an app registration: the child's
    # factory refuses it before any network access.
    child = ChildFetcher(ConnectorSpec("m365", {}, owner="alice@ourco.com"))
    try:
        with pytest.raises(AuthError) as info:
            child.list_folders()
    finally:
        child.close()
    assert info.value.kind == ErrorKind.AUTH and info.value.fix == Fix.SIGN_IN
    assert "no app registration" in str(info.value)


def test_events_and_specs_are_values():
    spec = ConnectorSpec("caldav", {"url": "https://dav.example/"}, secret="hunter2")
    assert "hunter2" not in repr(spec)
    with pytest.raises(AttributeError):
        spec.kind = "imap"  # frozen: a run cannot change what its connector was built from
    assert FolderFailed("INBOX", ErrorKind.BAD_DATA, "x") != FolderFailed("INBOX", None, "x")
    assert FolderDone("INBOX").folder == FolderBatch("INBOX", None).folder == "INBOX"


@pytest.mark.parametrize(
    "kind,source,fix,expected",
    [
        (ErrorKind.AUTH, "imap", None, "set-password"),
        (ErrorKind.AUTH, "caldav", Fix.PASSWORD, "username and password"),
        (ErrorKind.AUTH, "m365", None, "add-m365"),
        (ErrorKind.AUTH, "imap", Fix.SIGN_IN, "add-m365 --owner"),  # the code wins over the source's default
        (ErrorKind.AUTH, "gmail", Fix.DELEGATION, "Manage Domain Wide Delegation"),
        (ErrorKind.AUTH, "gmail", Fix.NO_MAILBOX, "user (not an alias or a group) of the Google Workspace"),
        (ErrorKind.AUTH, "m365", Fix.NO_MAILBOX, "address and licence"),  # a source's own words only for it
        (ErrorKind.AUTH, "gmail", None, "add-google-workspace"),
        (ErrorKind.TRANSIENT, "imap", None, "retries automatically"),
        (ErrorKind.THROTTLED, "m365", None, "slow down"),
        (RunError.FOLDER, "imap", None, "some folders failed"),
        ("no-such-kind", "imap", None, "Sync now"),
    ],
)
def test_one_table_gives_every_fix(kind, source, fix, expected):
    text = fix_text(kind, source, fix)
    assert expected.lower() in text.lower() and text[0].isupper() and text.endswith(".")
    assert explain("login refused", kind, source, fix) == f"login refused. {text}"
    assert fix_text(None, source) is None


def test_every_fix_code_has_words_for_any_source():
    from sync.fixes import ANY, TEXTS

    assert [fix for fix in Fix if (fix, ANY) not in TEXTS] == []


def test_an_unreadable_stored_secret_fails_the_run_and_releases_the_mailbox(tmp_path, imap_user):
    # The spec is built (and the secret decrypted) before the connector: a secret
    # the key cannot open must still end as a failed run an admin sees.
    world = make_world(tmp_path)
    mid = world.add_imap("alice@ourco.com", imap_user)
    with world.rt.engine.begin() as conn:
        from sqlalchemy import text

        conn.execute(text("UPDATE mailbox SET secret_enc = 'not-a-fernet-token' WHERE id = :m"), {"m": mid})
    report = world.sync(mid)
    assert not report.ok and report.error_kind == RunError.INTERNAL
    status, stage, kind, error = world.sql("SELECT status, sync_stage, last_error_kind, last_error FROM mailbox")[0]
    assert (status, stage, kind) == ("failed", "idle", "internal") and "THREADLINE_SECRET_KEY" in error


def test_a_message_record_crosses_the_pipe_from_the_fetch_child_with_every_field():
    # The pipe rebuilds records by a positional constructor call (sync/pipeline.py): every
    # field, each with a value of its own, must arrive in its place.
    import dataclasses
    import pickle
    from datetime import datetime, timezone

    from connectors.base import MessageRecord
    from sync.pipeline import _dumps

    values = {}
    for i, f in enumerate(dataclasses.fields(MessageRecord)):
        values[f.name] = {
            "date": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
            "from_": [("F", f"f{i}@x.com")],
            "to": [("T", f"t{i}@x.com")],
            "cc": [("C", f"c{i}@x.com")],
            "bcc": [("B", f"b{i}@x.com")],
            "references": [f"r{i}@x.com"],
            "reply_to": [("R", f"rt{i}@x.com")],
            "bulk_signals": (f"s{i}",),
            "auth_results": (f"a{i}",),
            "bulk": True,
            "auto_reply": True,
            "relayed": True,
            "internal_submission": True,
        }.get(f.name, f"{f.name}-{i}")
    record = MessageRecord(**values)
    assert pickle.loads(_dumps(record)) == record
