"""An admin's "test connection" names the step that fails, in words they can act on, and never shows the password."""

from __future__ import annotations

import pytest

from app.services import mailboxes
from tests.servers import free_port

STEPS = ["dns", "tcp", "tls", "login", "folders"]


def check(*args) -> dict[str, tuple]:
    return {s["step"]: (s["ok"], s["detail"]) for s in mailboxes.test_imap_connection(*args, timeout=5)}


@pytest.mark.parametrize(
    "case, failing, words",
    [
        ("security", "dns", "security must be one of tls, starttls, none"),
        ("port", "dns", "not a port number: 70000"),
        ("host", "dns", "cannot resolve 'no-such-host.invalid'"),
        ("closed", "tcp", "(is the port right?)"),
        ("tls", "tls", "TLS handshake failed"),
        ("password", "login", "wrong username or password"),
    ],
)
def test_the_first_failing_step_is_named_and_later_ones_are_not_tried(imap_user, case, failing, words):
    u = imap_user
    host, port, security, password = u.host, u.port, "none", u.password
    if case == "security":
        security = "ssl"
    elif case == "port":
        port = "70000"
    elif case == "host":
        host = "no-such-host.invalid"
    elif case == "closed":
        port = free_port()
    elif case == "tls":
        security = "tls"
    elif case == "password":
        password = "not-" + u.password
    steps = check(host, port, security, u.username, password)
    at = STEPS.index(failing)
    assert all(steps[s][0] is True for s in STEPS[:at]), steps
    assert steps[failing][0] is False and words in steps[failing][1], steps
    assert all(steps[s] == (None, "not tried") for s in STEPS[at + 1 :]), steps
    assert not any(password in detail for _, detail in steps.values())


def test_a_reachable_mailbox_passes_every_step_and_lists_its_folders(imap_user):
    imap_user.create_folder("Customers")
    steps = check(f" {imap_user.host} ", str(imap_user.port), "none", imap_user.username, imap_user.password)
    assert all(steps[s][0] is True for s in STEPS), steps
    assert "INBOX" in steps["folders"][1] and "Customers" in steps["folders"][1]
    assert steps["login"][1] == f"logged in as {imap_user.username}"
