"""An operator of a shared server refuses private addresses (THREADLINE_REFUSE_PRIVATE_HOSTS):
an organisation's admin can then point no mailbox, calendar or SMTP setting at the operator's
own network. Checked when the setting is saved, and again at every connection, in the sync's
fetch process too, whatever name the host was given (real Dovecot, Radicale and SMTP server
on loopback; loopback is one of the refused kinds)."""

from __future__ import annotations

import socket

import pytest

from app import netguard
from app.db import read_only
from app.services import calendars, digest
from app.services.actor import Actor
from app.services.errors import Invalid
from tests.servers.smtp import SmtpServer
from tests.world import make_world, message

REFUSE = {"THREADLINE_REFUSE_PRIVATE_HOSTS": "1"}


@pytest.fixture(autouse=True)
def _guard_off_afterwards():
    yield
    netguard.install(False)


@pytest.mark.parametrize(
    "ip, kind",
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private or reserved"),
        ("172.16.0.9", "private or reserved"),
        ("192.168.1.1", "private or reserved"),
        ("100.64.0.1", "private or reserved"),
        ("169.254.169.254", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("fd00::5", "private or reserved"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.251", "multicast"),
        # IPv6 forms that carry an IPv4 address: judged by the address inside as well
        ("64:ff9b::a00:7", "private or reserved"),  # NAT64 to 10.0.0.7
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("::127.0.0.1", "loopback"),  # IPv4-compatible
        ("::ffff:0:7f00:1", "loopback"),  # IPv4-translated
        ("fec0::1", "private or reserved"),  # site-local
    ],
)
def test_loopback_private_link_local_and_special_addresses_are_refused(ip, kind):
    policy = netguard.policy_from(True)
    assert policy is not None
    assert f" {kind} address, and this server refuses those" in (policy.reason(ip) or "")


def test_public_addresses_pass_and_the_allowed_networks_alone_open_private_ones():
    policy = netguard.policy_from(True, "10.1.0.0/16, 192.168.7.25")
    assert policy is not None
    for ip in ("93.184.216.34", "2606:4700:4700::1111", "10.1.255.254", "192.168.7.25"):
        assert policy.reason(ip) is None, ip
    for ip in ("10.2.0.1", "192.168.7.26", "127.0.0.1"):
        assert policy.reason(ip) is not None, ip
    assert netguard.policy_from(False, "10.0.0.0/8") is None  # off: nothing is checked


def test_an_allowed_network_is_allowed_through_nat64_too_and_a_refusal_names_what_an_address_carries():
    assert netguard.policy_from(True, "10.0.0.0/8").reason("64:ff9b::a00:7") is None
    refused = netguard.policy_from(True).reason("64:ff9b::a00:7")
    assert refused is not None and refused.startswith(
        "64:ff9b::a00:7 is an address that carries 10.0.0.7, a private or reserved address"
    )


def test_the_dns_server_stays_reachable_on_its_dns_port_alone():
    policy = netguard.policy_from(True, dns_server="10.9.9.9:5353")
    assert policy is not None
    assert policy.reason("10.9.9.9", 5353) is None
    assert "10.9.9.9 is a private or reserved address" in (policy.reason("10.9.9.9", 80) or "")
    assert policy.reason("10.9.9.9") is not None


def test_a_malformed_allowed_list_stops_the_start_with_the_setting_named():
    with pytest.raises(ValueError, match="THREADLINE_PRIVATE_HOSTS_ALLOWED: 'ten.0.0.0/8'"):
        netguard.install(True, "ten.0.0.0/8")


def test_every_tcp_connection_of_the_process_is_checked_after_the_name_is_resolved():
    """The socket-level check: a host name that resolves to loopback ("localhost", as a name
    rebound after it was saved would) is refused before a packet leaves, whichever library
    connects."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=16)
    port = listener.getsockname()[1]
    try:
        netguard.install(True)
        for host in ("127.0.0.1", "localhost"):
            with pytest.raises(
                netguard.RefusedDestination, match=f"connection to port {port} refused: 127.0.0.1 is a loopback"
            ):
                socket.create_connection((host, port), timeout=2)
        with pytest.raises(netguard.RefusedDestination):
            socket.socket().connect(("localhost", port))  # a name handed to connect() itself
        with pytest.raises(netguard.RefusedDestination):
            socket.socket().connect_ex(("127.0.0.1", port))
        netguard.install(True, "127.0.0.0/8")
        allowed = socket.create_connection(("localhost", port), timeout=2)
    finally:
        netguard.install(False)
    listener.settimeout(10)
    listener.accept()[0].close()  # the allowed connection arrived
    allowed.close()
    listener.setblocking(False)
    with pytest.raises(BlockingIOError):  # and nothing else ever did
        listener.accept()
    listener.close()


def test_an_imap_mailbox_on_a_refused_address_is_not_added_and_its_connection_test_names_the_reason(
    tmp_path, imap_user_factory
):
    world = make_world(tmp_path, env=REFUSE)
    alice = imap_user_factory()
    for host in ("127.0.0.1", "localhost"):
        said = (
            "127.0.0.1 is a loopback address" if host == "127.0.0.1" else "localhost resolves to 127.0.0.1, a loopback"
        )
        with pytest.raises(Invalid, match=f"^{said}") as caught:
            world.add_imap("alice@ourco.com", alice._replace(host=host))
        assert caught.value.field == "host"
    assert world.scalar("SELECT COUNT(*) FROM mailbox") == 0


def test_a_mailbox_saved_before_the_operator_refused_private_addresses_is_not_read_and_says_why(
    tmp_path, imap_user_factory
):
    alice = imap_user_factory()
    alice.deliver(message("carol@acme.com", "alice@ourco.com", "Pricing", msgid="a1@acme.com"))
    before = make_world(tmp_path)
    box = before.add_imap("alice@ourco.com", alice)
    before.rt.engine.dispose()

    refused = make_world(tmp_path, env=REFUSE)  # same data dir: the same database, now refusing
    report = refused.sync(box)  # a first import: the fetch process is the one that connects
    assert not report.ok
    error, kind = refused.sql("SELECT last_error, last_error_kind FROM mailbox WHERE id = :m", m=box)[0]
    assert "refused: 127.0.0.1 is a loopback address" in error, error
    assert kind == "transient"
    assert refused.scalar("SELECT COUNT(*) FROM interaction") == 0
    refused.rt.engine.dispose()

    allowed = make_world(tmp_path, env={**REFUSE, "THREADLINE_PRIVATE_HOSTS_ALLOWED": "127.0.0.1"})
    assert allowed.sync(box).ok
    assert allowed.scalar("SELECT COUNT(*) FROM interaction") == 1


def _add_calendar(world, caldav_user) -> int:
    return calendars.add_caldav(
        world.rt,
        Actor.operator(world.org_id),
        owner="alice@ourco.com",
        url=caldav_user.url,
        username=caldav_user.username,
        password=caldav_user.password,
    )["id"]


def test_a_calendar_account_saved_before_the_refusal_is_not_read_and_says_why(tmp_path, caldav_user):
    before = make_world(tmp_path)
    account = _add_calendar(before, caldav_user)
    before.rt.engine.dispose()
    refused = make_world(tmp_path, env=REFUSE)
    assert not refused.sync(account).ok
    (error,) = refused.sql("SELECT last_error FROM mailbox WHERE id = :m", m=account)[0]
    # The HTTP client's wrappers around the refusal do not hide the reason.
    assert "refused: 127.0.0.1 is a loopback address" in error, error


def test_a_calendar_and_an_smtp_server_on_a_refused_address_are_not_saved(tmp_path, caldav_user):
    with SmtpServer("digest", "s3cret") as server:  # started first: its own start-up connects to itself
        world = make_world(tmp_path, env=REFUSE)
        admin = Actor.operator(world.org_id)
        with pytest.raises(Invalid, match="loopback address") as caught:
            _add_calendar(world, caldav_user)
        assert caught.value.field == "url"
        with pytest.raises(Invalid, match="loopback address") as caught:
            digest.set_smtp(
                world.rt,
                admin,
                host="localhost",
                port=server.port,
                security="none",
                username="digest",
                password="s3cret",
                from_address="threadline@ourco.com",
            )
        assert caught.value.field == "host"
        netguard.install(False)
    assert world.scalar("SELECT COUNT(*) FROM mailbox") == 0
    with read_only(world.rt.engine) as conn:
        assert not digest.smtp_settings(conn, world.org_id)["configured"]
