"""The admin commands as an admin runs them (`threadline ...` on a fresh data directory,
in-process: tests/cli.py): rules, privacy and the audit log they write."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli import CliResult, cli_env, run_cli


def _cli(data_dir: Path, *args: str) -> CliResult:
    return run_cli(args, cli_env(data_dir))


def _ok(data_dir: Path, *args: str) -> str:
    proc = _cli(data_dir, *args)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc.stdout


def test_rules_privacy_and_audit_from_the_command_line(tmp_path):
    _ok(tmp_path, "org", "init", "--name", "OurCo", "--domain", "ourco.com")
    _ok(tmp_path, "user", "add", "alice@ourco.com", "--admin")
    _ok(tmp_path, "rule", "add", "Spam.Example.com")
    rules = json.loads(_ok(tmp_path, "rule", "list", "--json"))
    assert [(r["kind"], r["value"], r["user_id"]) for r in rules] == [("domain", "spam.example.com", None)]
    refused = _cli(tmp_path, "rule", "add", "ourco.com")
    assert refused.returncode != 0  # the organisation's own domain is never a "never log" rule

    exported = json.loads(_ok(tmp_path, "privacy", "export", "jane@acme.com"))
    assert (exported["address"], exported["contact"], exported["interactions"], exported["erased_at"]) == (
        "jane@acme.com",
        None,
        [],
        None,
    )
    assert _cli(tmp_path, "privacy", "erase", "jane@acme.com").returncode != 0  # needs --yes
    _ok(tmp_path, "privacy", "erase", "jane@acme.com", "--yes")

    audit = _ok(tmp_path, "audit")
    assert "rule.add" in audit and "person.erase" in audit
    assert "jane@acme.com" not in audit  # the erasure is logged without the address
    after = json.loads(_ok(tmp_path, "privacy", "export", "jane@acme.com"))
    assert after["erased_at"] is not None
