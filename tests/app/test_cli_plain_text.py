"""Whatever came from a server or a mail is printed by the CLI exactly as it is:
folder names, server errors, subjects and people's names that look like rich
markup ("[/old]", "[bold]x[/bold]") or emoji codes (":calendar:") are neither
styled, replaced nor allowed to crash a command. Run through the CLI's entry point
(in-process, tests/cli.py) on the world's data directory, with a Microsoft 365 mailbox on the Graph fake and
a login refused by Dovecot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text

from app.db import write_transaction
from tests.cli import CliResult, cli_env, run_cli
from tests.sync.test_graph_sync import add_tenant_mailbox
from tests.world import make_world

ALICE = "alice@ourco.com"
FOLDER = "[/old] [bold]x[/bold] :calendar:"  # a mail folder's name
FOLDER_ERROR = "calendar:Calendar: boom [/old]"  # what the server says about that folder
CALENDAR_ERROR = "[bold]x[/bold] :calendar: [/b]"  # ... and about the calendar
SUBJECT = "[bold]Deal[/bold] :calendar: [/old]"
SENDER = "Carla [/old] :smile:"
ORG = "Acme [/i] :calendar:"
REP = "Bob [bold]x[/bold] [/old]"


def run(data_dir: Path, *args: str, **env: str) -> CliResult:
    """The CLI on the world's data directory; env adds variables (passwords)."""
    return run_cli(args, cli_env(data_dir, **env))


def flat(value: str) -> str:
    return " ".join(value.split())


@pytest.fixture
def printed(tmp_path, graph, imap_user):
    """Every command that prints server or mail text, run once on a world full of such text."""
    world = make_world(tmp_path, reps=((ALICE, "Alice"), ("bob@ourco.com", REP)))
    mid = add_tenant_mailbox(world, graph)
    graph.add_folder(ALICE, FOLDER)
    graph.add_message(
        ALICE,
        internet_message_id="<deal@acme.com>",
        subject=SUBJECT,
        sender=(SENDER, "carla@acme.com"),
        to=[("Alice", ALICE)],
    )
    graph.inject(
        f"mailFolders/{graph.folder_id(ALICE, FOLDER)}/messages/delta",
        400,
        {"error": {"code": "ErrorX", "message": FOLDER_ERROR}},
    )
    graph.inject("calendarView/delta", 400, {"error": {"code": "ErrorY", "message": CALENDAR_ERROR}})
    data = tmp_path / "data"
    writers = {
        "sync": lambda: run(data, "sync", "--once", "--mailbox", str(mid)),
        "org set": lambda: run(data, "org", "set", "--name", ORG),
        "calendar add": lambda: run(
            data,
            "calendar",
            "add-caldav",
            "--owner",
            ALICE,
            "--url",
            "https://dav.example.com/",
            "--username",
            "alice",
            "--no-check",
            THREADLINE_CALDAV_PASSWORD="pw",
        ),
    }
    out = {name: call() for name, call in writers.items()}
    # What a CalDAV server said about a calendar it names like that.
    with write_transaction(world.rt.engine) as conn:
        account = conn.execute(text("SELECT id FROM mailbox WHERE kind = 'caldav'")).scalar_one()
        conn.execute(
            text(
                "INSERT INTO folderstate (org_id, mailbox_id, name, role, selected, cursor, backfill_done, "
                "messages, status, last_error) VALUES (:o, :m, :n, 'calendar', true, '{}', false, 0, "
                "'error', :e)"
            ),
            {"o": world.org_id, "m": account, "n": FOLDER, "e": CALENDAR_ERROR},
        )
        conn.execute(
            text("UPDATE mailbox SET status = 'failed', last_error = :e WHERE id = :m"),
            {"e": FOLDER_ERROR, "m": account},
        )
    commands = {
        "mailbox list": ("mailbox", "list"),
        "calendar list": ("calendar", "list"),
        "timeline": ("timeline", "carla@acme.com"),
        "timeline of markup": ("timeline", "[/old]"),
        "user list": ("user", "list"),
        "org show": ("org", "show"),
        "audit": ("audit",),
        "calendar list json": ("calendar", "list", "--json"),
    }
    out.update((name, run(data, *args)) for name, args in commands.items())
    out["mailbox test"] = run(
        data,
        "mailbox",
        "test",
        "--host",
        imap_user.host,
        "--port",
        str(imap_user.port),
        "--security",
        "none",
        "--username",
        imap_user.username,
        THREADLINE_IMAP_PASSWORD="wrong",
    )
    return out


def test_every_command_prints_server_and_mail_text_verbatim(printed):
    for name, proc in printed.items():
        assert "Traceback" not in proc.stderr and "MarkupError" not in proc.stderr, (name, proc.stderr)
        assert "📆" not in proc.stdout + proc.stderr and "😄" not in proc.stdout + proc.stderr, name
    sync = printed["sync"]
    assert sync.returncode == 0, sync.stderr
    summary = flat(sync.stdout)
    assert f"folders failed: {FOLDER}: " in summary and f"(ErrorX: {FOLDER_ERROR})" in summary
    assert "calendar:Calendar: " in summary and f"(ErrorY: {CALENDAR_ERROR})" in summary

    assert printed["mailbox list"].returncode == 0
    assert f"some folders could not be synced: {FOLDER}" in flat(printed["mailbox list"].stdout)
    calendar = flat(printed["calendar list"].stdout)
    assert f"{FOLDER} (error)" in calendar and FOLDER_ERROR in calendar
    listed = json.loads(printed["calendar list json"].stdout)
    assert listed[0]["calendars"][0]["name"] == FOLDER and listed[0]["last_error"] == FOLDER_ERROR

    timeline = printed["timeline"]
    assert timeline.returncode == 0, timeline.stderr
    assert timeline.stdout.startswith(f"{SENDER} <carla@acme.com>") and SUBJECT in flat(timeline.stdout)
    missing = printed["timeline of markup"]
    assert missing.returncode == 2 and flat(missing.stderr) == "error: no contact with the address [/old]"

    assert printed["calendar add"].returncode == 0, printed["calendar add"].stderr
    assert f"name={ORG}" in flat(printed["org set"].stdout)
    assert REP in flat(printed["user list"].stdout)
    assert f"name: {ORG}" in printed["org show"].stdout
    assert ORG in flat(printed["audit"].stdout)  # in the org.update event's detail
    # Dovecot's refusal, its response code in brackets included, as the server said it.
    assert "[AUTHENTICATIONFAILED]" in printed["mailbox test"].stdout
