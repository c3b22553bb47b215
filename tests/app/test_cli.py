"""The `threadline` command line against a temporary data directory and a real Dovecot.

The scenarios run once per module and the tests below check what they recorded. Their
commands run in-process through the console script's entry point (tests/cli.py); every
command's --help runs in one real `python -m app.cli` process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests import factories
from tests.app._mail import new_imap_user, remove_imap_users, rfc5322
from tests.cli import CliResult, cli_env, run_cli
from tests.world import database_bytes, database_rows, runtime_env

ROOT = Path(__file__).resolve().parents[2]
JANE = "jane@sub.acme.co.uk"
LONG_SUBJECT = "Quarterly review" + " and a very long subject line" * 6


@dataclass
class Scenario:
    data_dir: Path
    imap: object
    steps: dict[str, CliResult] = field(default_factory=dict)

    def run(self, name: str, *args: str, password: str | None = None) -> CliResult:
        env = cli_env(self.data_dir)
        if password is not None:
            env["THREADLINE_IMAP_PASSWORD"] = password
        proc = run_cli(args, env)
        self.steps[name] = proc
        return proc


def _flat(text: str) -> str:
    """Rich wraps at the console width when not on a terminal; compare text with whitespace collapsed."""
    return " ".join(text.split())


def _add_imap_args(s: Scenario) -> list[str]:
    return [
        "mailbox",
        "add-imap",
        "--owner",
        "alice@ourco.com",
        "--host",
        s.imap.host,
        "--port",
        str(s.imap.port),
        "--security",
        "none",
        "--username",
        s.imap.username,
    ]


def _main_scenario(s: Scenario) -> None:
    s.run("org_init", "org", "init", "--name", "OurCo", "--domain", "ourco.com", "--domain", "ourco.co.uk")
    s.run(
        "user_add",
        "user",
        "add",
        "alice@ourco.com",
        "--name",
        "Alice Adams",
        "--admin",
        "--alias",
        "alice.adams@ourco.com",
    )
    s.run("user_token", "user", "token", "alice@ourco.com")
    s.run("add", *_add_imap_args(s), password=s.imap.password)
    s.run("sync", "sync", "--once")
    s.run("list", "mailbox", "list")
    s.run("list_json", "mailbox", "list", "--json")
    s.run("timeline_json", "timeline", JANE, "--json")
    s.run("timeline", "timeline", JANE)


def _wrong_password_scenario(s: Scenario) -> None:
    # Set up through the services (the main scenario covers those commands).
    from app.db import session
    from app.runtime import open_runtime
    from app.services import mailboxes, orgs
    from app.services.actor import Actor
    from app.settings import load_settings

    rt = open_runtime(load_settings(runtime_env(s.data_dir)))
    with session(rt.engine) as db:
        org_id = factories.create_org(db, "OurCo", ["ourco.com"]).id
        factories.add_user(db, db.get(orgs.Organisation, org_id), "alice@ourco.com")
    s.run("add_no_env", *_add_imap_args(s))
    s.run("add_refused", *_add_imap_args(s), password=s.imap.password + "-wrong")
    mailboxes.add_imap(
        rt,
        Actor.operator(org_id),
        owner="alice@ourco.com",
        host=s.imap.host,
        port=s.imap.port,
        security="none",
        username=s.imap.username,
        password=s.imap.password + "-wrong",
    )
    rt.engine.dispose()
    s.run("sync", "sync", "--once")
    s.run("list_json", "mailbox", "list", "--json")


HELP_DRIVER = r"""
import contextlib, io, json, runpy, sys
results = {}
for argv in json.loads(sys.argv[1]):
    sys.argv = ["threadline", *argv]
    buf = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(buf):
        try:
            runpy.run_module("app.cli", run_name="__main__", alter_sys=False)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    results[" ".join(argv)] = [code, buf.getvalue()]
with open(OUT, "w") as fh:
    json.dump(results, fh)
"""


def _command_paths() -> list[list[str]]:
    """Every group and command of the CLI, read from its click tree (so new commands are covered)."""
    import typer.main

    from app.cli import app

    paths: list[list[str]] = [[]]

    def walk(cmd, prefix):
        if hasattr(cmd, "commands"):  # a group (typer may vendor its own click)
            for name, sub in cmd.commands.items():
                paths.append(prefix + [name])
                walk(sub, prefix + [name])

    walk(typer.main.get_command(app), [])
    return paths


def _help_run(tmp: Path) -> dict:
    out = tmp / "help.json"
    argvs = [p + ["--help"] for p in _command_paths()]
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADLINE_")}
    env.update(runtime_env(tmp / "help-data", THREADLINE_IDLE="0"))
    driver = f"OUT = {str(out)!r}\n" + HELP_DRIVER
    proc = subprocess.run(
        [sys.executable, "-c", driver, json.dumps(argvs)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return {"results": json.loads(out.read_text()), "paths": argvs}


@pytest.fixture(scope="module")
def cli(dovecot, tmp_path_factory):
    created: list[str] = []
    base = (datetime.now(timezone.utc) - timedelta(days=10)).replace(microsecond=0)
    main = Scenario(tmp_path_factory.mktemp("cli-main"), new_imap_user(dovecot, created))
    wrong = Scenario(tmp_path_factory.mktemp("cli-wrong"), new_imap_user(dovecot, created))
    u = main.imap
    u.create_folder("Sent")
    u.deliver(
        rfc5322(
            frm='"Jane Doe" <jane@sub.acme.co.uk>',
            to="alice@ourco.com",
            subject=LONG_SUBJECT,
            date=base,
            mid="c1@acme",
            body="Can we meet next week?\r\n",
        ),
        internaldate=base,
    )
    u.deliver(
        rfc5322(
            frm="Alice Adams <alice@ourco.com>",
            to='"Jane Doe" <jane@sub.acme.co.uk>',
            subject="Re: Quarterly review",
            date=base + timedelta(days=1),
            mid="c2@ourco",
            in_reply_to="c1@acme",
        ),
        folder="Sent",
        internaldate=base + timedelta(days=1),
    )
    u.deliver(
        rfc5322(
            frm="Pat <pat@gmail.com>",
            to="alice.adams@ourco.com",
            subject="Hi",
            date=base + timedelta(days=2),
            mid="c3@gmail",
        ),
        internaldate=base + timedelta(days=2),
    )
    u.deliver(
        rfc5322(
            frm="news@acme.co.uk",
            to="alice@ourco.com",
            subject="Newsletter",
            date=base,
            mid="c4@acme",
            headers=("Precedence: bulk",),
        ),
        internaldate=base,
    )
    u.deliver(
        rfc5322(frm=None, to="alice@ourco.com", subject="Nobody sent this", date=base, mid="c5@x"), internaldate=base
    )
    wrong.imap.deliver(
        rfc5322(frm="jane@sub.acme.co.uk", to="alice@ourco.com", subject="x", date=base, mid="w1@x"), internaldate=base
    )
    with ThreadPoolExecutor(1) as pool:  # the help process runs while the scenarios do
        helps = pool.submit(_help_run, tmp_path_factory.mktemp("cli-help"))
        _main_scenario(main)
        _wrong_password_scenario(wrong)
        helps = helps.result()
    yield {"main": main, "wrong": wrong, "help": helps}
    remove_imap_users(dovecot, created)


def _ok(s: Scenario, name: str) -> str:
    proc = s.steps[name]
    assert proc.returncode == 0, (name, proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


# -- setup commands -------------------------------------------------------------------


def test_org_init(cli):
    out = _flat(_ok(cli["main"], "org_init"))
    assert re.search(r"organisation \d+ created: OurCo \(ourco\.co\.uk, ourco\.com\)", out), out


def test_user_add_with_admin_and_alias(cli):
    out = _flat(_ok(cli["main"], "user_add"))
    assert re.search(r"user \d+ added: alice@ourco\.com \(admin\)", out), out
    users = database_rows(cli["main"].data_dir, "SELECT email, role FROM app_user")
    aliases = database_rows(
        cli["main"].data_dir, "SELECT a.address, u.email FROM useralias a JOIN app_user u ON u.id = a.user_id"
    )
    assert users == [("alice@ourco.com", "admin")]
    assert aliases == [("alice.adams@ourco.com", "alice@ourco.com")]


def test_user_token_is_a_working_api_token(cli):
    from fastapi.testclient import TestClient

    from app.api import create_app
    from app.runtime import open_runtime
    from app.settings import load_settings

    token = _ok(cli["main"], "user_token").strip()
    assert re.fullmatch(r"tl_[A-Za-z0-9_-]{20,}", token), token
    rt = open_runtime(load_settings(runtime_env(cli["main"].data_dir)))
    try:
        with TestClient(create_app(rt)) as client:
            r = client.get("/api/lookup", params={"email": JANE}, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text
            assert r.json()["contact"]["email"] == JANE
            assert (
                client.get(
                    "/api/lookup", params={"email": JANE}, headers={"Authorization": "Bearer tl_wrong"}
                ).status_code
                == 401
            )
    finally:
        rt.engine.dispose()


def test_mailbox_add_imap(cli):
    out = _flat(_ok(cli["main"], "add"))
    assert re.search(r"mailbox \d+ added for alice@ourco\.com", out), out


def test_mailbox_add_imap_without_password_and_terminal_fails_clearly(cli):
    proc = cli["wrong"].steps["add_no_env"]
    assert proc.returncode != 0
    text = _flat(proc.stdout + proc.stderr)
    assert "THREADLINE_IMAP_PASSWORD" in text, text
    assert "Traceback" not in proc.stderr
    # and it did not add a mailbox anyway: the only one is the one added after, with the wrong password
    rows = json.loads(_ok(cli["wrong"], "list_json"))
    assert len(rows) == 1


# -- the password stays secret ------------------------------------------------------------


def test_password_never_stored_or_printed_in_clear(cli):
    for scenario in (cli["main"], cli["wrong"]):
        secrets = [scenario.imap.password, scenario.imap.password + "-wrong"]
        data = database_bytes(scenario.data_dir)  # on SQLite with its WAL / shared-memory files
        for secret in secrets:
            assert secret.encode() not in data
        for name, proc in scenario.steps.items():
            for secret in secrets:
                assert secret not in proc.stdout + proc.stderr, name


# -- sync ------------------------------------------------------------------------------------


def test_sync_once_prints_a_summary_with_counts(cli):
    out = _flat(_ok(cli["main"], "sync"))
    m = re.search(
        r"mailbox (\d+): ok — (\d+) copies imported \((\d+) new interactions\), (\d+) skipped, "
        r"(\d+) unreadable",
        out,
    )
    assert m, out
    # INBOX: jane, pat, bulk newsletter (skipped), no From (unreadable); Sent: the reply
    assert tuple(int(g) for g in m.groups()[1:]) == (3, 3, 1, 1), out
    assert "error" not in out.lower()


def test_sync_summary_is_one_line_per_mailbox(cli):
    """A summary line is what cron mails and log collectors keep: it must not be cut into pieces
    when stdout is not a terminal (rich then assumes 80 columns)."""
    lines = [line for line in _ok(cli["main"], "sync").splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert re.match(r"mailbox \d+: ok — .* unreadable, .*msg/s\)$", lines[0]), lines


def test_mailbox_list_table(cli):
    """The human table, as printed to a pipe or a log (80 columns): who owns the mailbox, its
    server and its state must be readable, not cut to 'alice@…'."""
    main = cli["main"]
    text = _ok(main, "list")
    assert "active" in text and "syncing now" not in text, text  # the stage shows only while a sync runs
    for expected in ("alice@ourco.com", f"{main.imap.host}:{main.imap.port}"):
        assert expected in text, (expected, text)


def test_mailbox_list_json(cli):
    main = cli["main"]
    rows = json.loads(_ok(main, "list_json"))
    assert len(rows) == 1
    row = rows[0]
    assert row["owner"] == "alice@ourco.com"
    assert row["username"] == main.imap.username
    assert row["server"] == f"{main.imap.host}:{main.imap.port}"
    assert (row["status"], row["stage"], row["healthy"]) == ("active", "idle", True)
    assert row["messages_imported"] == 3
    assert row["skipped"] == {"bulk or automated": 1, "unreadable": 1}
    assert row["last_error"] is None
    assert datetime.fromisoformat(row["last_success_at"]).year >= 2000


def test_timeline_json(cli):
    data = json.loads(_ok(cli["main"], "timeline_json"))
    card = data["contact"]
    assert (card["email"], card["name"]) == (JANE, "Jane Doe")
    assert card["company"]["domain"] == "acme.co.uk"
    assert data["summary"]["emails_in"] == 1 and data["summary"]["emails_out"] == 1
    assert [c["email"] for c in data["summary"]["colleagues"]] == ["alice@ourco.com"]
    items = data["timeline"]["items"]
    assert [i["subject"] for i in items] == ["Re: Quarterly review", LONG_SUBJECT]  # long values survive intact
    assert [i["direction"] for i in items] == ["out", "in"]
    stamps = [datetime.fromisoformat(i["occurred_at"]) for i in items]
    assert stamps == sorted(stamps, reverse=True)


def test_timeline_human_readable(cli):
    out = _flat(_ok(cli["main"], "timeline"))
    assert "Jane Doe" in out and JANE in out and "Acme" in out
    assert "emails in 1, out 1" in out
    assert "Alice Adams (2)" in out


# -- a wrong password ----------------------------------------------------------------------------


def test_wrong_password_sync_fails_with_a_readable_reason(cli):
    proc = cli["wrong"].steps["sync"]
    assert proc.returncode != 0, proc.stdout
    out = _flat(proc.stdout + proc.stderr)
    assert "FAILED" in out, out
    assert "login refused" in out and "username and password" in out, out
    assert "Traceback" not in proc.stderr


def test_wrong_password_shows_in_mailbox_list(cli):
    rows = json.loads(_ok(cli["wrong"], "list_json"))
    assert len(rows) == 1
    row = rows[0]
    assert row["status"] == "failed"
    assert row["stage"] == "idle"
    assert row["healthy"] is False
    assert row["last_error_kind"] == "auth"
    assert "login refused" in row["last_error"] and "username and password" in row["fix"]
    assert row["messages_imported"] == 0


def test_add_imap_tests_the_login_first_and_saves_nothing_when_it_is_refused(cli):
    proc = cli["wrong"].steps["add_refused"]
    said = _flat(proc.stderr)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "nothing was saved" in said and "failed at the login step" in said, said
    assert "wrong username or password" in said and "Authentication failed" in said, said
    assert "b'" not in said and cli["wrong"].imap.password not in said and "Traceback" not in said
    assert len(json.loads(_ok(cli["wrong"], "list_json"))) == 1  # only the mailbox added without the check


def test_wrong_password_error_is_words_and_its_fix_is_given_once(cli):
    row = json.loads(_ok(cli["wrong"], "list_json"))[0]
    assert "b'" not in row["last_error"] and "[AUTHENTICATIONFAILED]" in row["last_error"], row["last_error"]
    assert "set-password" in row["fix"] and "set-password" not in row["last_error"]
    assert "Fix" not in row["last_error"]


def test_wrong_password_advice_names_a_real_command(cli):
    """The fix printed for an auth failure must be a command this CLI actually has."""
    import typer.main

    from app.cli import app

    row = json.loads(_ok(cli["wrong"], "list_json"))[0]
    hinted = re.findall(r"threadline ((?:[a-z][a-z-]*)(?: [a-z][a-z-]*)*)", row["last_error"] + " " + row["fix"])
    cmd = typer.main.get_command(app)
    for phrase in hinted:
        node = cmd
        for word in phrase.split():
            if not hasattr(node, "commands"):
                break
            assert word in node.commands, f"last_error advises `threadline {phrase}`, but there is no {word!r} command"
            node = node.commands[word]


# -- help ---------------------------------------------------------------------------------------------


def test_help_of_every_command(cli):
    results = cli["help"]["results"]
    assert len(results) >= 14, sorted(results)
    for argv, (code, text) in results.items():
        assert code == 0, (argv, code, text)
        assert "Usage" in text, (argv, text)
    for expected in (
        "org init --help",
        "user add --help",
        "user token --help",
        "mailbox add-imap --help",
        "mailbox list --help",
        "sync --help",
        "timeline --help",
        "serve --help",
        "worker --help",
    ):
        assert expected in results, expected
    add_help = _flat(results["mailbox add-imap --help"][1])
    assert "--password" not in add_help  # never on argv
    assert "THREADLINE_IMAP_PASSWORD" in add_help


def test_org_set_entra_tenant_connects_microsoft_sign_in(cli):
    s = cli["main"]
    tid = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    bad = s.run("entra_bad", "org", "set", "--entra-tenant", "not-a-guid")
    assert bad.returncode != 0 and "GUID" in _flat(bad.stderr)
    s.run("entra", "org", "set", "--entra-tenant", tid.upper())
    _ok(s, "entra")
    assert database_rows(s.data_dir, "SELECT entra_tenant_id FROM organisation") == [(tid,)]


def test_mailbox_list_keeps_owner_error_and_fix_whole_on_a_100_column_terminal():
    import io

    from rich.console import Console

    from app.cli import mailbox_blocks

    error = (
        "connection refused while connecting: is the host and port right? The server at "
        "imap.a-rather-long-hostname.example.com:993 did not accept the connection."
    )
    row = {
        "id": 7,
        "kind": "imap",
        "owner": "bartholomew.longname@sales.ourcompany.example",
        "status": "failed",
        "stage": "idle",
        "server": "imap.a-rather-long-hostname.example.com:993",
        "username": "bartholomew.longname@sales.ourcompany.example",
        "messages_imported": 1234,
        "skipped": {"bulk": 3},
        "last_success_at": None,
        "last_error": error,
        "last_error_kind": "transient",
        "fix": "Check that the server is up and that its name, port and security setting are right; "
        "Threadline retries by itself.",
    }
    buf = io.StringIO()
    console = Console(file=buf, width=100, color_system=None)
    for block in mailbox_blocks([row]):
        console.print(block)
    text = buf.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 100, text
    flat = _flat(text)
    for whole in (row["owner"], error, row["fix"], "1,234 imported"):
        assert _flat(whole) in flat, text
