"""Bidirectional controls in values from mail ("\u202eGNP.exe" drawn as "exe.PNG") are
neutralised where they are shown (console, CLI; the sidebar in tests/app/test_panel.py),
and kept as they are in the data and the API."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.api import create_app
from app.db import session
from app.services import orgs
from app.textsafe import shown
from tests import factories
from tests.app.test_console_sessions import _sign_in
from tests.world import make_world, message, runtime_env

RLO, LRM, RLM, ALM, PDI = "\u202e", "\u200e", "\u200f", "\u061c", "\u2069"
BIDI = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def test_reordering_controls_become_visible_and_marks_go():
    assert shown(f"Invoice {RLO}GNP.exe") == "Invoice [U+202E]GNP.exe"
    assert (
        shown(f"{LRM}Dana{RLM} {ALM}x\u2066y{PDI}\u202a\u202b\u202c\u202d")
        == "Dana x[U+2066]y[U+2069][U+202A][U+202B][U+202C][U+202D]"
    )
    assert shown("plain, Ünïcödé and עברית stay as they are") == "plain, Ünïcödé and עברית stay as they are"
    assert shown(None) is None and shown(3) == 3


def test_the_cli_timeline_shows_a_reversed_name_and_subject_in_their_real_order(tmp_path, imap_user, monkeypatch):
    w = make_world(tmp_path)
    imap_user.deliver(
        message(f'"Anna {RLO}GNP.exe" <anna@bidi.io>', "alice@ourco.com", f"Invoice {RLO}GNP.exe", msgid="rlo1@bidi.io")
    )
    assert w.sync(w.add_imap("alice@ourco.com", imap_user)).ok
    # Stored as it came.
    assert w.sql("SELECT subject FROM interaction") == [(f"Invoice {RLO}GNP.exe",)]
    assert w.sql("SELECT name FROM contact") == [(f"Anna {RLO}GNP.exe",)]
    for key, value in runtime_env(tmp_path / "data").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("COLUMNS", "200")
    from app.cli import app

    result = CliRunner().invoke(app, ["timeline", "anna@bidi.io"])
    assert result.exit_code == 0, result.output
    assert not BIDI.search(result.output), repr(result.output)
    assert "Anna [U+202E]GNP.exe" in result.output and "Invoice [U+202E]GNP.exe" in result.output
    as_json = CliRunner().invoke(app, ["timeline", "anna@bidi.io", "--json"])
    assert f"Invoice {RLO}GNP.exe" in as_json.output or "Invoice \\u202eGNP.exe" in as_json.output  # data: the original


def test_the_console_shows_a_folder_named_with_controls_in_its_real_order(tmp_path, imap_user):
    w = make_world(tmp_path)
    admin = w.add_user("boss@ourco.com", "Boss", admin=True)
    with session(w.rt.engine) as s:
        token = factories.issue_token(s, s.get(orgs.User, admin))
    with imap_user.connect() as client:
        client.create_folder(f"Deals {RLO}FDP tcartnoc")
    mid = w.add_imap("alice@ourco.com", imap_user)
    assert w.sync(mid).ok
    assert (f"Deals {RLO}FDP tcartnoc",) in w.sql("SELECT name FROM folderstate")
    client = TestClient(create_app(w.rt))
    _sign_in(client, token)
    page = client.get(f"/admin/mailboxes/{mid}")
    assert page.status_code == 200
    assert "Deals [U+202E]FDP tcartnoc" in page.text and not BIDI.search(page.text)
