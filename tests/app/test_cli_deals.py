"""`threadline pipeline ...` and `threadline deal list|show|create|move` as an admin runs them
at the server: a fresh data directory, the CLI in-process (tests/cli.py), refusals as exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from tests.app.test_cli_admin import _cli, _ok


def test_pipelines_and_deals_from_the_command_line(tmp_path: Path):
    _ok(tmp_path, "org", "init", "--name", "OurCo", "--domain", "ourco.com")
    _ok(tmp_path, "user", "add", "alice@ourco.com")
    _ok(tmp_path, "pipeline", "create", "Sales")
    pipes = json.loads(_ok(tmp_path, "pipeline", "list", "--json"))
    assert [s["name"] for s in pipes[0]["stages"]][-2:] == ["Won", "Lost"]
    made = _ok(
        tmp_path,
        "deal",
        "create",
        "--name",
        "[bold]Acme[/bold]: 200 seats",
        "--owner",
        "alice@ourco.com",
        "--amount",
        "12,500.50",
        "--currency",
        "usd",
        "--stage",
        "proposal sent",
    )
    assert "[bold]Acme[/bold]: 200 seats" in made and "12,500.50 USD" in made  # printed as it is, no markup
    deal_id = json.loads(_ok(tmp_path, "deal", "list", "--json"))[0]["id"]
    refused = _cli(tmp_path, "deal", "move", str(deal_id), "--stage", "Lost")
    assert refused.returncode == 2 and "reason" in refused.stderr  # Invalid: a lost deal needs a reason
    _ok(tmp_path, "deal", "move", str(deal_id), "--stage", "Lost", "--reason", "budget cut")
    assert json.loads(_ok(tmp_path, "deal", "list", "--json")) == []  # open deals only by default
    shown = _ok(tmp_path, "deal", "show", str(deal_id))
    assert "Proposal sent -> Lost by system" in shown and "lost because: budget cut" in shown
    assert _cli(tmp_path, "deal", "show", "999").returncode == 3  # NotFound
    bad = _cli(tmp_path, "deal", "create", "--name", "X", "--owner", "alice@ourco.com", "--amount", "-5")
    assert bad.returncode == 2 and "negative" in bad.stderr
    assert "deal.create" in _ok(tmp_path, "audit")
