"""A mail domain that can be discovered end to end, with no internet: a Dovecot offering
STARTTLS with a certificate for `localhost` from a test CA, and a DNS server on loopback
whose SRV record `_imap._tcp.<domain>` points at it (RFC 6186). Tests trust the CA through
SSL_CERT_FILE and point Threadline at the DNS server with THREADLINE_DNS_SERVER."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme

from tests.fakes.dns import FakeDns
from tests.servers import Dovecot


@dataclass
class MailDomain:
    domain: str
    dovecot: Dovecot
    dns: FakeDns
    ca_bundle: Path

    def add_user(self, local: str, password: str) -> str:
        address = f"{local}@{self.domain}"
        self.dovecot.add_user(address, password)
        return address

    def stop(self) -> None:
        self.dns.stop()
        self.dovecot.stop()


def start_mail_domain(tmp: Path, domain: str = "ourco.example") -> MailDomain:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    cert_file, key_file, bundle = tmp / "imap.crt", tmp / "imap.key", tmp / "ca-bundle.pem"
    cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    key_file.write_bytes(cert.private_key_pem.bytes())
    system = Path("/etc/ssl/certs/ca-certificates.crt")
    bundle.write_bytes((system.read_bytes() if system.exists() else b"") + b"\n" + ca.cert_pem.bytes())
    dovecot = Dovecot(tmp / "dovecot", extra_config=f"ssl = yes\nssl_cert = <{cert_file}\nssl_key = <{key_file}\n")
    dovecot.start()
    dns = FakeDns().start()
    dns.add(f"_imap._tcp.{domain}", "SRV", f"0 1 {dovecot.port} localhost.")
    return MailDomain(domain, dovecot, dns, bundle)
