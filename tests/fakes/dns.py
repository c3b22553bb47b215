"""A tiny authoritative DNS server on loopback (UDP), for mail server discovery tests.

`FakeDns().start()` answers from `records`: {(name, type): ["rdata", ...]}, e.g.
{("_imaps._tcp.ourco.test", "SRV"): ["0 1 993 imap.ourco.test."]}; any other name is
NXDOMAIN. `silent = True` drops every query (a resolver that never answers). Queries are
counted in `asked` (name, type) so tests can tell which lookups happened. Real DNS
messages on the wire (dnspython), never the internet.
"""

from __future__ import annotations

import socket
import threading

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


class FakeDns:
    def __init__(self, records: dict[tuple[str, str], list[str]] | None = None):
        self.records = {(n.rstrip(".").lower(), t.upper()): v for (n, t), v in (records or {}).items()}
        self.silent = False
        self.asked: list[tuple[str, str]] = []
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def address(self) -> str:
        """What THREADLINE_DNS_SERVER takes."""
        return f"127.0.0.1:{self.port}"

    def add(self, name: str, rdtype: str, *rdatas: str) -> None:
        self.records[(name.rstrip(".").lower(), rdtype.upper())] = list(rdatas)

    def start(self) -> "FakeDns":
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name=f"fake-dns-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        sock, self._sock = self._sock, None
        if self._thread is not None:
            self._thread.join(2)
        if sock is not None:
            sock.close()

    def _serve(self) -> None:
        while self._sock is not None:
            try:
                wire, peer = self._sock.recvfrom(4096)
            except (socket.timeout, OSError):
                continue
            try:
                query = dns.message.from_wire(wire)
            except Exception:  # noqa: BLE001 - not a DNS message
                continue
            question = query.question[0]
            name = question.name.to_text(omit_final_dot=True).lower()
            rdtype = dns.rdatatype.to_text(question.rdtype)
            self.asked.append((name, rdtype))
            if self.silent:
                continue
            answer = dns.message.make_response(query)
            answer.flags |= dns.flags.AA
            rdatas = self.records.get((name, rdtype))
            if rdatas:
                answer.answer.append(dns.rrset.from_text(question.name, 60, "IN", rdtype, *rdatas))
            elif not any(n == name for n, _ in self.records):
                answer.set_rcode(dns.rcode.NXDOMAIN)
            try:
                self._sock.sendto(answer.to_wire(), peer)
            except (OSError, AttributeError):
                pass
