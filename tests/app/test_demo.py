"""`threadline serve --demo`: the generated company is synced through the real
engine into its own data folder, seeding twice changes nothing, every start
replaces the previous start's token, a busy port fails before anything is done,
and the printed links sign in."""

from __future__ import annotations

import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import typer
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.api import create_app
from app.runtime import open_runtime
from app.services import demo
from app.settings import demo_settings, get_settings, load_settings
from tests.cli import CliResult, cli_env, run_cli
from tests.servers import free_port
from tests.world import runtime_env


@pytest.mark.parametrize("hour", [4, 14])
def test_the_demo_has_deals_at_every_stage_whatever_the_hour_it_is_generated(tmp_path, monkeypatch, hour):
    """A small demo's mail names some companies only at some hours: the deals go to companies
    whose people made it onto the timeline (at 600 messages, 04:07 and 14:07 left a stage empty)."""
    monkeypatch.setattr(demo, "DEMO_MESSAGES", 600)
    rt = open_runtime(load_settings(runtime_env(tmp_path, THREADLINE_IDLE="0")))
    yesterday = datetime.now(timezone.utc).replace(hour=hour, minute=7, second=0, microsecond=0) - timedelta(days=1)
    demo.seed_demo(rt, now=yesterday)
    with rt.engine.connect() as conn:
        per_stage = conn.execute(
            text(
                "SELECT s.name, count(DISTINCT d.id), count(t.deal_id) FROM pipelinestage s "
                "LEFT JOIN deal d ON d.stage_id = s.id LEFT JOIN dealthread t ON t.deal_id = d.id "
                "GROUP BY s.name, s.position ORDER BY s.position"
            )
        ).all()
    rt.engine.dispose()
    assert len(per_stage) == 6 and all(deals >= 3 and threads >= 3 for _, deals, threads in per_stage), per_stage


def test_demo_seed_builds_a_usable_timeline_once(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "DEMO_MESSAGES", 600)
    rt = open_runtime(load_settings(runtime_env(tmp_path, THREADLINE_IDLE="0")))
    info = demo.seed_demo(rt)
    token = info["token"]

    def counts():
        with rt.engine.connect() as conn:
            return tuple(
                conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()
                for t in ("organisation", "mailbox", "interaction", "contact")
            )

    first = counts()
    assert first[0] == 1 and first[1] == 6 and first[2] > 100 and first[3] > 10
    with rt.engine.connect() as conn:
        status = conn.execute(text("SELECT DISTINCT status FROM mailbox")).scalars().all()
        email = conn.execute(text("SELECT primary_email FROM contact ORDER BY id LIMIT 1")).scalar()
    assert status == ["active"]
    with rt.engine.connect() as conn:  # the demo pipeline has deals at every stage, with their mail threads
        per_stage = conn.execute(
            text(
                "SELECT s.name, count(d.id), count(t.deal_id) FROM pipelinestage s LEFT JOIN deal d ON d.stage_id = s.id "
                "LEFT JOIN dealthread t ON t.deal_id = d.id GROUP BY s.name, s.position ORDER BY s.position"
            )
        ).all()
    assert [name for name, *_ in per_stage][-2:] == ["Won", "Lost"]
    assert all(deals > 0 and threads > 0 for _, deals, threads in per_stage), per_stage

    again = demo.seed_demo(rt)
    assert counts() == first
    with rt.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM pipeline")).scalar() == 1  # seeded once

    client = TestClient(create_app(rt))
    # Each start issues a token and revokes the previous start's: old ones stop working.
    gone = client.get("/api/lookup", params={"email": email}, headers={"Authorization": f"Bearer {token}"})
    assert gone.status_code == 401
    token = again["token"]
    found = client.get("/api/lookup", params={"email": email}, headers={"Authorization": f"Bearer {token}"})
    assert found.status_code == 200 and found.json()["timeline"]["items"]
    # The customer the demo points at is a real one: at a company, with history.
    card = client.get(
        "/api/lookup", params={"email": again["customer"]}, headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert card["contact"]["company"] and len(card["timeline"]["items"]) >= 5
    # Meetings too, past and upcoming, each once however many reps were on it.
    with rt.engine.connect() as conn:
        meetings = conn.execute(
            text("SELECT message_key, occurred_at > CURRENT_TIMESTAMP FROM interaction WHERE kind = 'meeting'")
        ).all()
        invited = conn.execute(
            text(
                "SELECT c.primary_email FROM participant p JOIN contact c ON c.id = p.contact_id "
                "JOIN interaction i ON i.id = p.interaction_id WHERE i.kind = 'meeting' "
                "AND i.occurred_at > CURRENT_TIMESTAMP LIMIT 1"
            )
        ).scalar()
    assert meetings and len({k for k, _ in meetings}) == len(meetings)
    assert any(up for _, up in meetings) and not all(up for _, up in meetings)
    card = client.get("/api/lookup", params={"email": invited}, headers={"Authorization": f"Bearer {token}"}).json()
    assert card["next_meeting"]["kind"] == "meeting" and card["summary"]["meetings"] >= 1


# -- `serve --demo` itself, in this process, up to a real listening server -------------------------


class Served:
    def __init__(self, printed: str, server, thread: threading.Thread, port: int):
        self.printed, self.server, self.thread, self.port = printed, server, thread, port

    def link(self, marker: str) -> str:
        return next(w for w in self.printed.split() if marker in w)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def serve_demo(tmp_path, monkeypatch, capsys):
    """`threadline serve --demo --port P` on tmp_path as its data dir: returns once the app answers."""
    import uvicorn

    from app.cli import serve_cmd

    monkeypatch.setattr(demo, "DEMO_MESSAGES", 600)
    monkeypatch.setenv("THREADLINE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("THREADLINE_IDLE", "0")
    get_settings.cache_clear()
    running: list[Served] = []
    real_run = uvicorn.Server.run

    def start(port: int) -> Served:
        box: dict = {}

        def run_in_background(server, sockets=None):
            box["server"] = server
            box["thread"] = threading.Thread(target=real_run, args=(server, sockets), daemon=True)
            box["thread"].start()

        monkeypatch.setattr(uvicorn.Server, "run", run_in_background)
        serve_cmd(host="127.0.0.1", port=port, demo=True, scheduler=False, https=False)
        served = Served(capsys.readouterr().out, box["server"], box["thread"], port)
        running.append(served)
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    return served
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the demo server did not answer"
            time.sleep(0.1)

    yield start
    for served in running:
        served.stop()
    get_settings.cache_clear()


def test_the_demo_keeps_its_own_data_folder_and_prints_links_that_sign_in(tmp_path, serve_demo, page):
    first = serve_demo(free_port())
    assert (tmp_path / "demo" / "threadline.db").exists() and not (tmp_path / "threadline.db").exists()
    old_token = first.link("/admin/login#token=").split("#token=")[1]
    first.stop()

    served = serve_demo(free_port())
    console, panel = served.link("/admin/login#token="), served.link("/panel?email=")
    token = console.split("#token=")[1]
    assert token != old_token and panel.endswith("#token=" + token)
    base = f"http://127.0.0.1:{served.port}"
    assert httpx.get(base + "/api/contacts", headers={"Authorization": f"Bearer {old_token}"}).status_code == 401
    # The console link signs in (the token never reaches the server's address or the history).
    page.set_viewport_size({"width": 1200, "height": 800})
    page.goto(console)
    page.wait_for_url(base + "/admin")
    assert page.inner_text("#org") == "Northwind Analytics"
    assert "#token" not in page.url
    # The sidebar link opens a real customer, signed in.
    customer = panel.split("?email=")[1].split("#")[0]
    page.goto(panel)
    page.wait_for_selector("body[data-state=ready]", timeout=15000)
    assert customer in page.inner_text("body") and token not in page.url
    # The board link shows the demo pipeline's open deals, signed in.
    board = served.link("/board#token=")
    assert board.endswith("#token=" + token)
    page.goto(board)
    page.wait_for_selector("body[data-state=ready] .card", timeout=15000)
    assert page.locator(".column").count() == 6 and token not in page.url


def test_a_busy_port_fails_at_once_with_a_clear_error_and_issues_no_token(tmp_path, monkeypatch, capsys):
    from app.cli import serve_cmd

    monkeypatch.setenv("THREADLINE_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        with pytest.raises(typer.Exit) as stopped:
            serve_cmd(host="127.0.0.1", port=port, demo=True, scheduler=False, https=False)
    finally:
        taken.close()
        get_settings.cache_clear()
    printed = capsys.readouterr()
    assert stopped.value.exit_code == 1
    assert f"port {port} on 127.0.0.1 is already in use" in " ".join(printed.err.split())
    assert "tl_" not in printed.out + printed.err and "running" not in printed.out
    assert not (tmp_path / "demo").exists()  # nothing was seeded


def _cli(data_dir: Path, *args: str) -> CliResult:
    return run_cli(args, cli_env(data_dir))


def test_the_team_set_up_after_the_demo_gets_its_own_database_and_a_second_org_needs_another(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "DEMO_MESSAGES", 300)
    demo_rt = open_runtime(demo_settings(load_settings({"THREADLINE_DATA_DIR": str(tmp_path), "THREADLINE_IDLE": "0"})))
    demo.seed_demo(demo_rt)
    # The README's set-up, in the same folder the demo ran in.
    init = _cli(tmp_path, "org", "init", "--name", "Our Company", "--domain", "ourco.com")
    assert init.returncode == 0, init.stderr
    added = _cli(tmp_path, "user", "add", "alice@ourco.com", "--admin")
    assert added.returncode == 0, added.stderr  # no "several organisations exist"
    with demo_rt.engine.connect() as conn:
        assert conn.execute(text("SELECT name FROM organisation")).scalars().all() == ["Northwind Analytics"]

    again = _cli(tmp_path, "org", "init", "--name", "Other", "--domain", "other.example")
    said = " ".join(again.stderr.split())
    assert again.returncode == 5 and "already has the organisation 'Our Company'" in said and "--another" in said
    another = _cli(tmp_path, "org", "init", "--name", "Other", "--domain", "other.example", "--another")
    assert another.returncode == 0, another.stderr


def test_org_init_in_a_database_the_old_demo_filled_says_how_to_leave_the_demo(tmp_path, monkeypatch):
    from app.services import orgs
    from app.services.errors import Conflict

    monkeypatch.setattr(demo, "DEMO_MESSAGES", 100)
    # Before the demo had its own folder it seeded the main database.
    rt = open_runtime(load_settings({"THREADLINE_DATA_DIR": str(tmp_path), "THREADLINE_IDLE": "0"}))
    demo.seed_demo(rt)
    with pytest.raises(Conflict) as refused:
        orgs.create_org(rt, "Our Company", ["ourco.com"])
    assert "demo company 'Northwind Analytics'" in refused.value.reason
    assert str(tmp_path / "demo") in refused.value.reason and "THREADLINE_DATA_DIR" in refused.value.reason
