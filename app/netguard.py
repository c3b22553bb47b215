"""Outbound connections to private addresses, refused when the operator asks (SSRF).

Threat: an organisation's admin sets a mailbox, calendar or SMTP server. On a server shared by
several companies, that admin can point the host at an address of the operator's own network
(127.0.0.1:5432, 10.0.0.7:6379, 169.254.169.254:80 of a cloud's metadata service) and read
from the errors and timings which ports answer, or reach a service that trusts its network.
A single company's own Threadline must reach its mail server on its own network, so refusing
is an operator's choice: THREADLINE_REFUSE_PRIVATE_HOSTS=1, with THREADLINE_PRIVATE_HOSTS_ALLOWED
(addresses or networks, comma-separated) for the operator's own relays.

Where it is checked: at the socket, by an audit hook (sys.addaudithook) on every TCP connect
of the process, after the name was resolved. A check of the host name when it is saved
alone is not enough: the name can resolve elsewhere at the next connection (DNS rebinding),
and a CalDAV server can redirect to an address of its own choosing. The hook sees the address
actually connected to, whichever library connects (imapclient, smtplib, the HTTP clients).
The services also check a host when it is saved (`refusal`), to give the admin a plain answer.

What it leaves alone: UDP (the resolver's queries), Unix sockets, and connections made by
C libraries (libpq to PostgreSQL never passes through Python's socket module). The resolvers
of /etc/resolv.conf and THREADLINE_DNS_SERVER stay reachable over TCP, on their DNS port only.
An IPv6 address carrying an IPv4 one (mapped, NAT64, 6to4, Teredo) is judged by both.

Not covered: an HTTP proxy (HTTPS_PROXY) set for the process. The hook then sees the proxy's
address only, and where the proxy connects is the proxy's to check; a shared server that
refuses private addresses runs without one, or with a proxy that refuses them too.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from dataclasses import dataclass

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ENV_REFUSE = "THREADLINE_REFUSE_PRIVATE_HOSTS"
ENV_ALLOWED = "THREADLINE_PRIVATE_HOSTS_ALLOWED"


class RefusedDestination(ConnectionRefusedError):
    """A connection this server's operator does not allow (an OSError, so every client
    library treats it as the connection failure it is)."""


# IPv6 prefixes that carry an IPv4 address in their last 32 bits: IPv4-compatible (::/96),
# IPv4-translated (::ffff:0:0:0/96) and the NAT64 well-known prefix (64:ff9b::/96). Through a NAT64
# gateway, 64:ff9b::a00:7 reaches 10.0.0.7: the address inside is the one checked.
_EMBEDDING = tuple(ipaddress.ip_network(n) for n in ("::/96", "::ffff:0:0:0/96", "64:ff9b::/96"))
# NAT64 for a network's own addresses (RFC 8215): whatever it embeds, it is the network's own.
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")


def _inner(addr: Address) -> list[Address]:
    """The address itself and the IPv4 addresses an IPv6 one carries (mapped, embedded, 6to4, Teredo)."""
    if not isinstance(addr, ipaddress.IPv6Address):
        return [addr]
    out: list[Address] = [addr]
    if addr.ipv4_mapped is not None:
        out.append(addr.ipv4_mapped)
    if addr.sixtofour is not None:
        out.append(addr.sixtofour)
    if addr.teredo is not None:
        out.extend(addr.teredo)
    if any(addr in net for net in _EMBEDDING) and not addr.is_loopback and not addr.is_unspecified:
        out.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    return out


@dataclass(frozen=True)
class Policy:
    allowed: tuple[Network, ...] = ()  # any port
    resolvers: tuple[tuple[Address, int], ...] = ()  # DNS over TCP only: (address, port)

    def reason(self, ip: str, port: int | None = None, host: str | None = None) -> str | None:
        """Why a connection to `ip` (on `port`) is refused, or None when it may go ahead; `host`:
        the name that resolved to it, to say so."""
        what = self.refused_kind(ip, port)
        if what is None:
            return None
        said = f"{host} resolves to {ip}, {what}" if host and host != ip else f"{ip} is {what}"
        return f"{said}, and this server refuses those ({ENV_REFUSE})"

    def refused_kind(self, ip: str, port: int | None = None) -> str | None:
        """What kind of address `ip` is, when a connection to it (on `port`) is refused: "a
        loopback address", or what it carries ("64:ff9b::a00:7 carries 10.0.0.7, a private...")."""
        try:
            addr: Address = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return "not an address"
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
        if port is not None and (addr, port) in self.resolvers:
            return None
        parts = _inner(addr)
        # The operator's allowed networks open an address and what it carries (10.0.0.0/8 allowed:
        # 10.0.0.7 reached through NAT64 as 64:ff9b::a00:7 too).
        if any(part in net for part in parts for net in self.allowed):
            return None
        for part in parts:
            if not part.is_global or part.is_multicast or _site_local(part) or part in _LOCAL_NAT64:
                kind = _kind(part)
                what = f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} address"
                return what if part == addr else f"an address that carries {part}, {what}"
        return None


def _site_local(addr: Address) -> bool:
    return isinstance(addr, ipaddress.IPv6Address) and addr.is_site_local  # fec0::/10, deprecated, never global


def _kind(addr: Address) -> str:
    if addr.is_loopback:
        return "loopback"
    if addr.is_link_local:
        return "link-local"
    if addr.is_multicast:
        return "multicast"
    if addr.is_unspecified:
        return "unspecified"
    return "private or reserved"


_policy: Policy | None = None
_hooked = False
_env: dict[str, str] = {}


def _parse_allowed(text: str) -> tuple[Network, ...]:
    nets = []
    for part in text.replace(";", ",").split(","):
        if part.strip():
            try:
                nets.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise ValueError(f"{ENV_ALLOWED}: {part.strip()!r} is not an address or a network") from None
    return tuple(nets)


def _resolvers(dns_server: str | None) -> tuple[tuple[Address, int], ...]:
    """The machine's own resolvers, on their DNS port alone: a lookup that falls back to TCP must
    still reach them, and nothing else may (127.0.0.53 or 169.254.169.254 serve more than DNS)."""
    found: list[tuple[str, int]] = []
    try:
        with open("/etc/resolv.conf") as f:
            found = [(line.split()[1], 53) for line in f if line.startswith("nameserver") and len(line.split()) > 1]
    except OSError:
        pass
    if dns_server:  # host[:port], an IPv6 address in brackets when it has a port
        host, port = dns_server, 53
        if dns_server.count(":") == 1 or dns_server.startswith("["):
            head, _, tail = dns_server.rpartition(":")
            if tail.isdigit():
                host, port = head, int(tail)
        found.append((host.strip("[]"), port))
    out = []
    for ip, port in found:
        try:
            out.append((ipaddress.ip_address(ip.split("%", 1)[0]), port))
        except ValueError:
            continue
    return tuple(out)


def policy_from(refuse: bool, allowed: str = "", dns_server: str | None = None) -> Policy | None:
    """The policy the settings ask for; None when private addresses are allowed (the default)."""
    if not refuse:
        return None
    return Policy(allowed=_parse_allowed(allowed), resolvers=_resolvers(dns_server))


def install(refuse: bool, allowed: str = "", dns_server: str | None = None) -> None:
    """Make the process refuse private addresses or not (the settings' values; a child process
    started later is told the same by `child_env`). The hook is added once and stays (audit
    hooks cannot be removed); with no policy it returns at once."""
    global _policy, _hooked, _env
    _policy = policy_from(refuse, allowed, dns_server)
    _env = {ENV_REFUSE: "1" if refuse else "0", ENV_ALLOWED: allowed}
    if dns_server:
        _env["THREADLINE_DNS_SERVER"] = dns_server
    if _policy is not None and not _hooked:
        sys.addaudithook(_hook)
        _hooked = True


def active() -> Policy | None:
    return _policy


def child_env() -> dict[str, str]:
    """The environment a child process reads this process's policy from (sync/pipeline.py)."""
    return dict(_env)


def install_from_env() -> None:
    env = os.environ
    refuse = env.get(ENV_REFUSE, "0").lower() not in ("0", "", "false", "no")
    install(refuse, env.get(ENV_ALLOWED, ""), env.get("THREADLINE_DNS_SERVER") or None)


def refusal(host: str, port: int) -> str | None:
    """Why connecting to host:port would be refused (every address it resolves to is checked),
    or None. Used when a setting is saved; the hook checks again at each connection."""
    policy = _policy
    if policy is None:
        return None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):
        return None  # cannot resolve: the connection test says so in its own words
    for info in infos:
        why = policy.reason(str(info[4][0]), port, host)
        if why is not None:
            return why
    return None


def _hook(event: str, args: tuple) -> None:
    policy = _policy  # read once: another thread may install another policy meanwhile
    if event != "socket.connect" or policy is None:
        return
    sock, address = args
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        return
    host, port = address[0], address[1]
    try:
        ipaddress.ip_address(str(host).split("%", 1)[0])
        ips = [str(host)]
    except ValueError:
        # A name given to connect() itself (the libraries the app uses resolve first and connect
        # to an address): checked as it resolves now; connect() resolves it again.
        ips = [str(i[4][0]) for i in socket.getaddrinfo(host, port, sock.family, socket.SOCK_STREAM)]
    for ip in ips:
        why = policy.reason(ip, port)
        if why is not None:
            raise RefusedDestination(f"connection to port {port} refused: {why}")
