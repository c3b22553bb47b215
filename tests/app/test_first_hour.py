"""The first hour without guessing: a mailbox is added from its address and password
(the server found through DNS SRV, tested over STARTTLS before saving), Microsoft 365
is sent to its own sign-in, and the console's first-run page walks a new admin from
company domains to a real customer in the sidebar. Real Dovecot, real DNS messages
on loopback, real Chromium."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.app._discovery import start_mail_domain
from tests.cli import CliResult, cli_env, run_cli

pytestmark = pytest.mark.servers  # its own Dovecot, Chromium


@pytest.fixture(scope="module")
def mail_domain(tmp_path_factory):
    domain = start_mail_domain(tmp_path_factory.mktemp("mail-domain"))
    domain.dns.add("m365.example", "MX", "0 m365-example.mail.protection.outlook.com.")
    yield domain
    domain.stop()


def _cli(data_dir: Path, mail_domain, *args: str, password: str | None = None) -> CliResult:
    env = cli_env(data_dir, THREADLINE_DNS_SERVER=mail_domain.dns.address, SSL_CERT_FILE=str(mail_domain.ca_bundle))
    if password is not None:
        env["THREADLINE_IMAP_PASSWORD"] = password
    return run_cli(args, env)


def test_add_imap_finds_the_server_from_the_address_and_saves_only_what_logged_in(tmp_path, mail_domain):
    alice = mail_domain.add_user("alice", "alice-pw")
    assert _cli(tmp_path, mail_domain, "org", "init", "--name", "OurCo", "--domain", "ourco.example").returncode == 0
    assert _cli(tmp_path, mail_domain, "user", "add", alice, "--admin").returncode == 0

    wrong = _cli(tmp_path, mail_domain, "mailbox", "add-imap", "--owner", alice, password="not-it")
    said = " ".join(wrong.stderr.split())
    assert wrong.returncode == 2, wrong.stdout + wrong.stderr
    assert f"found localhost:{mail_domain.dovecot.port} (starttls, from the DNS SRV records of ourco.example)" in said
    assert "failed at the login step" in said and "not-it" not in said

    m365 = _cli(
        tmp_path,
        mail_domain,
        "mailbox",
        "add-imap",
        "--owner",
        alice,
        "--email",
        "bob@m365.example",
        password="whatever",
    )
    assert m365.returncode == 2 and "Microsoft 365" in m365.stderr and "add-m365" in m365.stderr, m365.stderr

    added = _cli(tmp_path, mail_domain, "mailbox", "add-imap", "--owner", alice, password="alice-pw")
    assert added.returncode == 0, added.stderr
    assert f"found localhost:{mail_domain.dovecot.port} (starttls) in the DNS SRV records of ourco.example" in " ".join(
        added.stdout.split()
    )
    rows = json.loads(_cli(tmp_path, mail_domain, "mailbox", "list", "--json").stdout)
    assert [(r["server"], r["username"]) for r in rows] == [(f"localhost:{mail_domain.dovecot.port}", alice)]
    synced = _cli(tmp_path, mail_domain, "sync", "--once")
    assert synced.returncode == 0 and "ok" in synced.stdout, synced.stdout + synced.stderr


def test_the_first_run_page_leads_from_company_domains_to_a_customer_in_the_sidebar(
    tmp_path, mail_domain, live_app, page, monkeypatch
):
    import dataclasses

    from app.db import session
    from app.services import orgs
    from tests import factories
    from tests.world import NOW, make_world, message

    alice = mail_domain.add_user("alice.rep", "alice-pw")
    mail_domain.dovecot.deliver(
        alice, message("Jane Doe <jane@client.example>", alice, "Our order", msgid="o1@client.example", when=NOW)
    )
    mail_domain.dovecot.deliver(
        alice, message(alice, "Jane Doe <jane@client.example>", "Re: Our order", msgid="o2@ourco.example")
    )
    world = make_world(tmp_path, name="OurCo", domains=("ourco.com",), reps=())
    with session(world.rt.engine) as s:
        admin = factories.add_user(s, orgs.the_org(s, world.org_id), "boss@ourco.example", admin=True)
        token = factories.issue_token(s, admin)
    world.rt.settings = dataclasses.replace(world.rt.settings, dns_server=mail_domain.dns.address)
    monkeypatch.setenv("SSL_CERT_FILE", str(mail_domain.ca_bundle))
    base = live_app(world)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(base + "/admin/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/admin")
    assert page.is_visible("#wizard") and "No mailbox yet" in page.inner_text("main")

    # 1. The company's domains.
    page.fill("#step-domains input[name=internal_domains]", "ourco.example")
    page.click("#save-domains")
    assert page.input_value("#step-domains input[name=internal_domains]") == "ourco.example"
    # 2. Reps, one per line: each gets a token, shown once.
    page.fill("textarea[name=reps]", f"Alice Rep <{alice}>\nbob@ourco.example")
    page.click("#add-reps")
    invited = page.locator("#invited tr.invited")
    invited.nth(1).wait_for(timeout=10_000)  # the list is filled once the answer arrives (count() does not wait)
    assert invited.count() == 2 and all(t.startswith("tl_") for t in page.locator("#invited pre").all_inner_texts())
    # 3. The first mailbox from its address and password: a wrong password saves nothing.
    page.select_option("#first-mailbox select[name=owner]", alice)
    page.fill("#first-mailbox input[name=password]", "wrong")
    page.click("#connect")
    assert "FAILED" in page.inner_text("#test-steps li[data-step=login]")
    assert "localhost" in page.inner_text("main") and world.scalar("SELECT count(*) FROM mailbox") == 0
    page.fill("#first-mailbox input[name=password]", "alice-pw")
    page.click("#connect")
    page.wait_for_url("**/admin/start?ok=connected")
    # 4. The first customer, once imported (the page refreshes itself), opened in the sidebar.
    page.wait_for_selector("#first-customer", timeout=60000)
    assert "jane@client.example" in page.inner_text("#first-customer")
    page.click("#sidebar-link")
    page.click("#open-sidebar")
    page.wait_for_selector("body[data-state=ready]", timeout=15000)
    assert "Jane Doe" in page.inner_text("body") and "#token" not in page.url
    config = world.sql("SELECT config FROM mailbox")[0][0]
    config = json.loads(config) if isinstance(config, str) else config
    assert (config["host"], config["security"], config["username"]) == ("localhost", "starttls", alice)
