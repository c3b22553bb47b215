"""`threadline mailbox add-google-workspace` / `add-google --all-reps`, run in-process through
the CLI's entry point (tests/cli.py) against a temporary data directory, the fake Google and a
Gmail-shaped Dovecot."""

from __future__ import annotations

import json

from connectors.googleauth import SCOPES
from tests.app.test_cli_m365 import both, flat, run
from tests.world import database_bytes, database_rows, make_world, message

REPS = (("alice@ourco.com", "Alice"), ("bob@ourco.com", "Bob"), ("pat@partner.org", "Pat"))


def test_connect_a_workspace_add_every_rep_and_sync(google, dovecot_gmail, tmp_path):
    make_world(tmp_path, reps=REPS)
    data = tmp_path / "data"
    key = google.service_account()
    client_id = json.loads(key)["client_id"]
    key_file = tmp_path / "key.json"
    key_file.write_text(key)
    for rep, _ in REPS[:2]:
        google.add_user(rep)
        dovecot_gmail.add_user(rep, "not-the-way-in")
        dovecot_gmail.deliver(rep, message("carla@acme.com", rep, msgid=f"hi-{rep}"), folder="All Mail")
    imap = ("--imap-host", dovecot_gmail.host, "--imap-port", str(dovecot_gmail.port), "--imap-security", "none")
    imap += ("--calendar-url", google.calendar_url)
    add = ("mailbox", "add-google-workspace", "--domain", "ourco.com", "--key", str(key_file), *imap)

    # Before the admin authorises the client id, the test names that step and saves nothing.
    refused, unknown = both(
        (run, data, *add, "--check-user", "alice@ourco.com"),
        (run, data, "mailbox", "add-google", "--all-reps"),
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "failed at the delegation step" in flat(refused.stderr) and client_id in flat(refused.stderr)
    assert "Manage Domain Wide Delegation" in flat(refused.stderr)
    assert unknown.returncode == 2 and "add-google-workspace" in flat(unknown.stderr)
    assert database_rows(data, "SELECT count(*) FROM googleworkspace") == [(0,)]

    google.delegate(client_id, SCOPES)
    ok = run(data, *add, "--check-user", "alice@ourco.com")
    assert ok.returncode == 0 and "Google Workspace ourco.com ready" in flat(ok.stdout), ok.stderr
    added = run(data, "mailbox", "add-google", "--all-reps")
    assert added.returncode == 0, added.stderr
    assert flat(added.stdout).count("added for") == 2 and "left out: pat@partner.org" in flat(added.stdout)

    tested = run(data, "mailbox", "test-google-workspace", "--user", "nobody@ourco.com")
    synced = run(data, "sync", "--once")
    assert tested.returncode == 1 and "user FAILED" in flat(tested.stdout)
    assert synced.returncode == 0 and flat(synced.stdout).count(": ok") == 2, synced.stdout + synced.stderr
    assert database_rows(data, "SELECT count(*) FROM interaction") == [(2,)]

    # The key is stored encrypted and never printed.
    private_key = json.loads(key)["private_key"]
    dump = database_bytes(data)
    assert b"BEGIN PRIVATE KEY" not in dump and private_key.splitlines()[1].encode() not in dump
    for result in (refused, ok, added, tested, synced):
        assert "PRIVATE KEY" not in result.stdout + result.stderr

    listed = run(data, "mailbox", "list-google-workspaces")
    assert "ourco.com" in flat(listed.stdout) and "2 mailbox(es)" in flat(listed.stdout)
    kept = run(data, "mailbox", "remove-google-workspace", "ourco.com")
    assert kept.returncode == 5 and "remove them first" in flat(kept.stderr)
    for rep, _ in REPS[:2]:
        dovecot_gmail.remove_user(rep)
