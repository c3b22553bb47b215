"""Finding a mailbox's IMAP server from its address (connectors/discover.py), against a
real DNS server and a real HTTPS server on loopback: never the internet."""

from __future__ import annotations

import http.server
import ssl
import threading
import time
from pathlib import Path

import pytest
import trustme

from connectors.discover import AUTOCONFIG_URLS, GOOGLE, MICROSOFT, discover, fetch_https, resolver_for
from tests.fakes.dns import FakeDns


@pytest.fixture
def dns_server():
    server = FakeDns().start()
    yield server
    server.stop()


class _Files(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self):  # noqa: N802 - http.server's name
        body = self.files.get(self.path.split("?")[0])
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args):
        pass


@pytest.fixture
def https_files(tmp_path, monkeypatch):
    """An HTTPS server for localhost with a test CA this process trusts (SSL_CERT_FILE)."""
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(ca.cert_pem.bytes())
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    handler = type("Files", (_Files,), {"files": {}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.files = handler.files
    server.template = f"https://localhost:{server.server_address[1]}/{{domain}}/mail/config-v1.1.xml?x={{address}}"
    yield server
    server.shutdown()


def _resolver(dns_server):
    return resolver_for(dns_server.address, timeout=1.0)


def test_a_common_provider_is_known_without_asking_anyone(dns_server):
    found = discover("Someone@Gmail.com", resolver=_resolver(dns_server), fetch=lambda url: pytest.fail(url))
    assert [(s.host, s.port, s.security, s.username) for s in found.servers] == [
        ("imap.gmail.com", 993, "tls", "someone@gmail.com")
    ]
    assert found.provider == GOOGLE and "app password" in found.note
    assert dns_server.asked == []


def test_srv_records_give_tls_servers_first_in_priority_order(dns_server):
    dns_server.add("_imaps._tcp.ourco.test", "SRV", "20 1 993 backup.ourco.test.", "10 1 993 mail.ourco.test.")
    dns_server.add("_imap._tcp.ourco.test", "SRV", "0 1 143 starttls.ourco.test.")
    found = discover("bob@ourco.test", resolver=_resolver(dns_server), fetch=lambda url: pytest.fail(url))
    assert [(s.host, s.port, s.security) for s in found.servers] == [
        ("mail.ourco.test", 993, "tls"),
        ("backup.ourco.test", 993, "tls"),
        ("starttls.ourco.test", 143, "starttls"),
    ]
    assert found.servers[0].source == "the DNS SRV records of ourco.test" and found.provider is None


def test_an_srv_record_saying_no_service_leads_to_the_autoconfig_file(dns_server, https_files):
    dns_server.add("_imaps._tcp.ourco.test", "SRV", "0 0 0 .")  # RFC 6186: not offered
    https_files.files["/ourco.test/mail/config-v1.1.xml"] = b"""<?xml version="1.0"?>
<clientConfig version="1.1"><emailProvider id="ourco.test">
  <incomingServer type="pop3"><hostname>pop.ourco.test</hostname><port>995</port><socketType>SSL</socketType></incomingServer>
  <incomingServer type="imap"><hostname>plain.ourco.test</hostname><port>143</port><socketType>plain</socketType></incomingServer>
  <incomingServer type="imap"><hostname>IMAP.ourco.test</hostname><port>993</port><socketType>SSL</socketType>
    <username>%EMAILLOCALPART%</username></incomingServer>
</emailProvider></clientConfig>"""
    found = discover("bob@ourco.test", resolver=_resolver(dns_server), autoconfig_urls=(https_files.template,))
    # POP3 and plain-text IMAP are never proposed.
    assert [(s.host, s.port, s.security, s.username) for s in found.servers] == [("imap.ourco.test", 993, "tls", "bob")]
    assert "autoconfig" in found.servers[0].source


def test_an_autoconfig_file_with_entities_is_refused(dns_server, https_files):
    https_files.files["/ourco.test/mail/config-v1.1.xml"] = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY a "imap.ourco.test"><!ENTITY b "&a;&a;&a;&a;">]>
<clientConfig><emailProvider><incomingServer type="imap"><hostname>&b;</hostname><port>993</port>
<socketType>SSL</socketType></incomingServer></emailProvider></clientConfig>"""
    found = discover("bob@ourco.test", resolver=_resolver(dns_server), autoconfig_urls=(https_files.template,))
    assert found.servers == []


@pytest.mark.parametrize(
    "mx, provider, host",
    [
        ("ourco-test.mail.protection.outlook.com.", MICROSOFT, None),
        ("aspmx.l.google.com.", GOOGLE, "imap.gmail.com"),
        ("mx1.mail.ovh.net.", None, "ssl0.ovh.net"),
        ("in1-smtp.messagingengine.com.", None, "imap.fastmail.com"),
    ],
)
def test_the_mx_host_names_the_provider(dns_server, mx, provider, host):
    dns_server.add("ourco.test", "MX", f"10 {mx}")
    found = discover("bob@ourco.test", resolver=_resolver(dns_server), fetch=lambda url: None)
    assert found.provider == provider
    assert [s.host for s in found.servers] == ([host] if host else [])
    if provider == MICROSOFT:
        assert "Microsoft 365" in found.note and "add-m365" in found.note


def test_nothing_found_says_where_it_looked_and_a_silent_dns_costs_seconds_not_minutes(dns_server):
    dns_server.silent = True
    started = time.monotonic()
    found = discover("bob@nowhere.test", resolver=resolver_for(dns_server.address, timeout=0.5), fetch=lambda url: None)
    assert time.monotonic() - started < 5
    assert found.servers == [] and found.provider is None
    assert any("SRV" in w for w in found.looked_at) and any("MX" in w for w in found.looked_at)


def test_the_autoconfig_locations_are_the_providers_own_over_https():
    assert [u.format(domain="ourco.test", address="a@ourco.test").split("?")[0] for u in AUTOCONFIG_URLS] == [
        "https://autoconfig.ourco.test/mail/config-v1.1.xml",
        "https://ourco.test/.well-known/autoconfig/mail/config-v1.1.xml",
    ]
    assert fetch_https("http://127.0.0.1:1/mail/config-v1.1.xml") is None  # never plain HTTP


def test_an_oversized_autoconfig_answer_is_ignored(https_files):
    https_files.files["/big/mail/config-v1.1.xml"] = b"x" * (300 * 1024)
    assert fetch_https(https_files.template.format(domain="big", address="a@big")) is None
    https_files.files["/ok/mail/config-v1.1.xml"] = b"<clientConfig/>"
    assert fetch_https(https_files.template.format(domain="ok", address="a@ok")) == "<clientConfig/>"


def test_discovery_imports_no_database_code():
    source = Path(__file__).resolve().parents[2].joinpath("connectors", "discover.py").read_text()
    assert "from app" not in source and "import app" not in source and "sqlalchemy" not in source
