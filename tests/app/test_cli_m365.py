"""`threadline mailbox add-m365-tenant` / `add-m365` against a temporary data directory and
the fake Graph + Entra authority, run in-process through the CLI's entry point (tests/cli.py)."""

from __future__ import annotations

from pathlib import Path

from tests.cli import CliResult, cli_env, run_cli
from tests.world import database_bytes, database_rows, make_world


def run(data_dir: Path, *args: str, secret: str | None = None) -> CliResult:
    env = cli_env(data_dir)
    if secret is not None:
        env["THREADLINE_M365_CLIENT_SECRET"] = secret
    return run_cli(args, env)


def flat(text: str) -> str:
    return " ".join(text.split())


def both(*calls):
    """Two independent CLI runs, one after the other."""
    return [call[0](*call[1:]) for call in calls]


def test_connect_a_tenant_and_a_delegated_mailbox_then_sync(graph, tmp_path):
    make_world(tmp_path, reps=(("alice@ourco.com", "Alice"), ("bob@ourco.com", "Bob"), ("carol@ourco.com", "Carol")))
    data = tmp_path / "data"  # the world's data directory: the CLI works on the same database and key
    for user in ("alice@ourco.com", "bob@ourco.com", "carol@ourco.com"):
        graph.add_message(
            user,
            internet_message_id=f"<hello-{user}>",
            subject="Hello",
            to=[("", user)],
            sender=("Carla", "carla@acme.com"),
        )
    client_id, secret = graph.register_app()
    where = ("--authority", graph.authority, "--graph-url", graph.graph_url)
    tenant_args = ("mailbox", "add-m365-tenant", "--tenant-id", graph.tenant, "--client-id", client_id, *where)

    no_secret, wrong = both((run, data, *tenant_args), (lambda: run(data, *tenant_args, secret="wrong-secret-value"),))
    assert no_secret.returncode == 1 and "THREADLINE_M365_CLIENT_SECRET" in flat(no_secret.stderr)
    assert wrong.returncode == 2 and "invalid_client" in flat(wrong.stderr)
    assert "wrong-secret-value" not in wrong.stdout + wrong.stderr

    ok = run(data, *tenant_args, secret=secret)
    assert ok.returncode == 0, ok.stderr
    assert f"ready: {graph.tenant}" in flat(ok.stdout) and secret not in ok.stdout + ok.stderr

    one = run(data, "mailbox", "add-m365", "--owner", "alice@ourco.com", "--tenant", graph.tenant)
    assert one.returncode == 0 and "for alice@ourco.com through tenant" in flat(one.stdout), one.stderr
    rest = run(data, "mailbox", "add-m365", "--tenant", graph.tenant, "--all-reps")
    assert rest.returncode == 0 and flat(rest.stdout).count("added for") == 2  # bob and carol; alice had one

    graph.device_user = "carol@ourco.com"
    public = graph.register_public_client()
    again, signed = both(
        (run, data, "mailbox", "add-m365", "--owner", "alice@ourco.com", "--tenant", graph.tenant),
        (
            run,
            data,
            "mailbox",
            "add-m365",
            "--owner",
            "carol@ourco.com",
            "--client-id",
            public,
            "--tenant-id",
            graph.tenant,
            *where,
        ),
    )
    assert again.returncode == 5 and "already has" in flat(again.stderr)
    assert signed.returncode == 0, signed.stderr
    assert "enter the code" in flat(signed.stderr) and "signed in as carol@ourco.com" in flat(signed.stdout)

    graph.device_user = "bob@ourco.com"  # signs in with the wrong account for carol
    mismatch, synced = both(
        (
            run,
            data,
            "mailbox",
            "add-m365",
            "--owner",
            "carol@ourco.com",
            "--client-id",
            public,
            "--tenant-id",
            graph.tenant,
            *where,
        ),
        (run, data, "sync", "--once"),
    )
    assert mismatch.returncode == 2 and "not carol@ourco.com" in flat(mismatch.stderr)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert flat(synced.stdout).count(": ok") == 4

    kinds = database_rows(data, "SELECT kind, tenant_ref IS NOT NULL, secret_enc IS NOT NULL FROM mailbox ORDER BY id")
    assert kinds == [("m365", 1, 0)] * 3 + [("m365", 0, 1)]
    assert database_rows(data, "SELECT count(*) FROM interaction") == [(3,)]
    assert database_rows(data, "SELECT secret_enc FROM m365tenant")[0][0]
    dump = database_bytes(data)
    assert secret.encode() not in dump and b"RefreshToken" not in dump

    # The tenant is listed with its mailboxes; it cannot be removed while they read through it.
    listed = run(data, "mailbox", "list-m365-tenants")
    assert (
        listed.returncode == 0 and f"{graph.tenant}" in flat(listed.stdout) and "3 mailbox(es)" in flat(listed.stdout)
    )
    refused = run(data, "mailbox", "remove-m365-tenant", graph.tenant)
    assert refused.returncode == 5 and "remove them first" in flat(refused.stderr)
    for mailbox_id in (1, 2, 3):
        assert run(data, "mailbox", "remove", str(mailbox_id)).returncode == 0
    removed = run(data, "mailbox", "remove-m365-tenant", graph.tenant)
    assert removed.returncode == 0 and "removed with its credential" in flat(removed.stdout), removed.stderr
    assert database_rows(data, "SELECT count(*) FROM m365tenant") == [(0,)]
    assert database_rows(data, "SELECT count(*) FROM auditevent WHERE action = 'm365.tenant_remove'") == [(1,)]
