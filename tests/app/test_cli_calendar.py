"""`threadline calendar ...` against a temporary data directory and the test Radicale,
run in-process through the console script's entry point (tests/cli.py)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tests.cli import CliResult, cli_env, run_cli
from tests.connectors.test_ical import event, stamp, vcalendar

SOON = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) + timedelta(days=2)


def cli(data_dir: Path, *args: str, password: str | None = None) -> CliResult:
    env = cli_env(data_dir)
    if password is not None:
        env["THREADLINE_CALDAV_PASSWORD"] = password
    return run_cli(args, env)


def test_add_caldav_sync_and_list(tmp_path, caldav_user):
    caldav_user.put(
        "demo.ics",
        vcalendar(event("demo@ourco.com", stamp(SOON), summary="Demo", attendees=(("jane@acme.com", "ACCEPTED"),))),
    )
    d = tmp_path / "data"
    assert cli(d, "org", "init", "--name", "OurCo", "--domain", "ourco.com").returncode == 0
    assert cli(d, "user", "add", "alice@ourco.com", "--name", "Alice").returncode == 0
    add = [
        "calendar",
        "add-caldav",
        "--owner",
        "alice@ourco.com",
        "--url",
        caldav_user.url,
        "--username",
        caldav_user.username,
    ]

    wrong = cli(d, *add, password="not-the-password")
    assert wrong.returncode == 2 and "auth" in wrong.stderr and "username and password" in wrong.stderr
    no_password = cli(d, *add)
    assert no_password.returncode == 1 and "THREADLINE_CALDAV_PASSWORD" in no_password.stderr
    assert json.loads(cli(d, "calendar", "list", "--json").stdout) == []  # nothing stored

    ok = cli(d, *add, password=caldav_user.password)
    assert ok.returncode == 0, ok.stderr
    assert f"/{caldav_user.username}/calendar/" in ok.stdout and "calendar account 1 added" in ok.stdout
    assert caldav_user.password not in ok.stdout + ok.stderr

    synced = cli(d, "sync", "--once")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    rows = json.loads(cli(d, "calendar", "list", "--json").stdout)
    assert len(rows) == 1
    row = rows[0]
    assert (row["owner"], row["url"], row["username"], row["status"], row["meetings_imported"]) == (
        "alice@ourco.com",
        caldav_user.url,
        caldav_user.username,
        "active",
        1,
    )
    assert [(c["name"], c["status"], c["synced"], c["mode"]) for c in row["calendars"]] == [
        (f"/{caldav_user.username}/calendar/", "ok", True, "sync")
    ]
    assert "password" not in json.dumps(row)

    timeline = json.loads(cli(d, "timeline", "jane@acme.com", "--json").stdout)
    # The meeting is ahead: listed apart from the timeline, which holds what already happened.
    assert [i["subject"] for i in timeline["upcoming"]] == ["Demo"] and timeline["timeline"]["items"] == []
    assert timeline["next_meeting"]["subject"] == "Demo"
    text = cli(d, "timeline", "jane@acme.com").stdout
    assert "upcoming:" in text and "Demo" in text
    table = cli(d, "calendar", "list")
    assert table.returncode == 0 and "alice@ourco.com" in table.stdout and "active" in table.stdout
