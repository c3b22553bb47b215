"""Finding a mailbox's IMAP server from its address, so nobody has to know host and port.

Sources, in order; the first that names a server wins:
1. the built-in table of common providers, by the address's domain (no network);
2. RFC 6186 SRV records: `_imaps._tcp.<domain>` (TLS), then `_imap._tcp.<domain>` (STARTTLS);
3. the provider's autoconfig file (Thunderbird's format, "config-v1.1.xml"), over HTTPS only:
   `https://autoconfig.<domain>/mail/config-v1.1.xml` and
   `https://<domain>/.well-known/autoconfig/mail/config-v1.1.xml`;
4. the domain's MX hosts: Microsoft 365 and Google are recognised (their own sign-in, see
   `Discovery.provider`), and other providers' MX names lead to the table.

Every lookup has a short timeout (a few seconds in all). Plain-text IMAP is never proposed,
whatever a file says: the admin can still type such a server by hand. Nothing here touches the
database; app/services/mailboxes.py tests the candidates before anything is saved.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Callable

import dns.exception
import dns.resolver
import httpx
from defusedxml import ElementTree

AUTOCONFIG_URLS = (
    "https://autoconfig.{domain}/mail/config-v1.1.xml?emailaddress={address}",
    "https://{domain}/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress={address}",
)
MAX_CONFIG_BYTES = 256 * 1024
MICROSOFT, GOOGLE = "microsoft365", "google"


@dataclass(frozen=True)
class ImapServer:
    host: str
    port: int
    security: str  # tls | starttls
    username: str
    source: str  # where it was found, for people: "the built-in list", "DNS SRV records", ...


@dataclass
class Discovery:
    address: str
    servers: list[ImapServer] = field(default_factory=list)
    provider: str | None = None  # MICROSOFT or GOOGLE: connect with their own sign-in rules
    note: str | None = None  # what the admin should know about this provider
    looked_at: list[str] = field(default_factory=list)  # every source tried, for "not found" messages


@dataclass(frozen=True)
class _Known:
    name: str
    host: str
    port: int = 993
    security: str = "tls"
    provider: str | None = None


_GMAIL = _Known("Google", "imap.gmail.com", provider=GOOGLE)
_OUTLOOK = _Known("Microsoft", "outlook.office365.com", provider=MICROSOFT)
_ICLOUD = _Known("iCloud", "imap.mail.me.com")
_YAHOO = _Known("Yahoo", "imap.mail.yahoo.com")
_FASTMAIL = _Known("Fastmail", "imap.fastmail.com")
_GMX = _Known("GMX", "imap.gmx.net")
_IONOS = _Known("IONOS", "imap.ionos.de")
# Common providers by the domain of their own addresses.
KNOWN_DOMAINS: dict[str, _Known] = {
    **dict.fromkeys(("gmail.com", "googlemail.com"), _GMAIL),
    **dict.fromkeys(
        ("outlook.com", "hotmail.com", "hotmail.co.uk", "hotmail.fr", "live.com", "live.fr", "msn.com"), _OUTLOOK
    ),
    **dict.fromkeys(("icloud.com", "me.com", "mac.com"), _ICLOUD),
    **dict.fromkeys(("yahoo.com", "yahoo.co.uk", "yahoo.fr", "yahoo.de", "ymail.com", "rocketmail.com"), _YAHOO),
    **dict.fromkeys(("fastmail.com", "fastmail.fm"), _FASTMAIL),
    **dict.fromkeys(("gmx.de", "gmx.net", "gmx.at", "gmx.ch"), _GMX),
    "gmx.com": _Known("GMX", "imap.gmx.com"),
    "web.de": _Known("WEB.DE", "imap.web.de"),
    **dict.fromkeys(("zoho.com", "zohomail.com"), _Known("Zoho Mail", "imap.zoho.com")),
    "zohomail.eu": _Known("Zoho Mail", "imap.zoho.eu"),
    "aol.com": _Known("AOL", "imap.aol.com"),
    "mailbox.org": _Known("mailbox.org", "imap.mailbox.org"),
    "posteo.de": _Known("Posteo", "posteo.de"),
}
# Providers hosting other people's domains, by their MX host names (the name or a subdomain of it).
KNOWN_MX: tuple[tuple[str, _Known], ...] = (
    ("mail.protection.outlook.com", _OUTLOOK),
    ("aspmx.l.google.com", _GMAIL),
    ("googlemail.com", _GMAIL),
    ("smtp.google.com", _GMAIL),
    ("messagingengine.com", _FASTMAIL),
    ("mail.icloud.com", _ICLOUD),
    ("yahoodns.net", _YAHOO),
    ("zoho.com", _Known("Zoho Mail", "imappro.zoho.com")),
    ("zoho.eu", _Known("Zoho Mail", "imappro.zoho.eu")),
    ("mail.ovh.net", _Known("OVHcloud", "ssl0.ovh.net")),
    ("kundenserver.de", _IONOS),
    ("ionos.de", _IONOS),
    ("ionos.com", _Known("IONOS", "imap.ionos.com")),
    ("ionos.co.uk", _Known("IONOS", "imap.ionos.co.uk")),
    ("gmx.net", _GMX),
    ("web.de", _Known("WEB.DE", "imap.web.de")),
)
_NOTES = {
    MICROSOFT: "Mail for {domain} is hosted by Microsoft 365 (or Outlook.com), which no longer accepts IMAP "
    "passwords: connect it with a Microsoft 365 sign-in instead (console: Add mailbox → Microsoft 365; "
    "CLI: threadline mailbox add-m365).",
    GOOGLE: "Mail for {domain} is hosted by Google, which accepts IMAP only with an app password: the account's "
    "owner creates one at https://myaccount.google.com/apppasswords (2-Step Verification must be on), "
    "and that is the password to give here.",
}


def resolver_for(nameserver: str | None = None, timeout: float = 3.0) -> dns.resolver.Resolver:
    """A resolver with a short timeout: the system's, or `host[:port]` (THREADLINE_DNS_SERVER)."""
    if nameserver:
        resolver = dns.resolver.Resolver(configure=False)
        host, _, port = nameserver.rpartition(":") if nameserver.count(":") == 1 else (nameserver, "", "")
        resolver.nameservers = [host]
        if port:
            resolver.port = int(port)
    else:
        resolver = dns.resolver.Resolver()
    resolver.timeout = resolver.lifetime = timeout
    return resolver


def fetch_https(url: str, timeout: float = 3.0) -> str | None:
    """The body of an HTTPS URL (certificate checked, at most MAX_CONFIG_BYTES), or None."""
    if not url.startswith("https://"):
        return None
    try:
        with (
            httpx.Client(
                verify=ssl.create_default_context(), timeout=timeout, follow_redirects=True, max_redirects=3
            ) as client,
            client.stream("GET", url) as answer,
        ):
            if answer.status_code != 200 or not str(answer.url).startswith("https://"):
                return None
            body = b""
            for chunk in answer.iter_bytes():
                body += chunk
                if len(body) > MAX_CONFIG_BYTES:
                    return None
            return body.decode("utf-8", "replace")
    except (httpx.HTTPError, ssl.SSLError, OSError, UnicodeError):
        return None


def discover(
    address: str,
    *,
    resolver: dns.resolver.Resolver | None = None,
    fetch: Callable[[str], str | None] | None = None,
    autoconfig_urls: tuple[str, ...] = AUTOCONFIG_URLS,
) -> Discovery:
    """Where the mailbox `address` is read over IMAP (see the module docstring)."""
    address = address.strip().lower()
    domain = address.rpartition("@")[2].rstrip(".")
    resolver = resolver or resolver_for()
    fetch = fetch or fetch_https
    found = Discovery(address)
    known = KNOWN_DOMAINS.get(domain)
    found.looked_at.append("the built-in list of providers")
    if known is not None:
        return _from_known(found, known, domain, "the built-in list of providers")
    found.looked_at.append(f"DNS SRV records of {domain}")
    found.servers = _srv(resolver, domain, address)
    if found.servers:
        return found
    found.looked_at.append(f"the autoconfig file of {domain}")
    for template in autoconfig_urls:
        text = fetch(template.format(domain=domain, address=address))
        found.servers = parse_autoconfig(text, address) if text else []
        if found.servers:
            return found
    found.looked_at.append(f"the MX records of {domain}")
    for mx in _mx_hosts(resolver, domain):
        for name, known in KNOWN_MX:
            if mx == name or mx.endswith("." + name):
                return _from_known(found, known, domain, f"the MX records of {domain} ({known.name})")
    return found


def _from_known(found: Discovery, known: _Known, domain: str, source: str) -> Discovery:
    found.provider = known.provider
    found.note = _NOTES[known.provider].format(domain=domain) if known.provider else None
    if known.provider != MICROSOFT:
        found.servers = [ImapServer(known.host, known.port, known.security, found.address, source)]
    return found


def _srv(resolver: dns.resolver.Resolver, domain: str, address: str) -> list[ImapServer]:
    servers: list[ImapServer] = []
    for service, security in (("_imaps._tcp", "tls"), ("_imap._tcp", "starttls")):
        try:
            answer = resolver.resolve(f"{service}.{domain}", "SRV", raise_on_no_answer=False)
        except dns.exception.DNSException:
            continue
        records = sorted(answer, key=lambda r: (r.priority, -r.weight))
        for r in records:
            host = r.target.to_text(omit_final_dot=True)
            if host and host != "." and r.port:  # "." : the service is explicitly not offered (RFC 6186)
                servers.append(
                    ImapServer(host.lower(), int(r.port), security, address, f"the DNS SRV records of {domain}")
                )
    return servers


def _mx_hosts(resolver: dns.resolver.Resolver, domain: str) -> list[str]:
    try:
        answer = resolver.resolve(domain, "MX", raise_on_no_answer=False)
    except dns.exception.DNSException:
        return []
    return [r.exchange.to_text(omit_final_dot=True).lower() for r in sorted(answer, key=lambda r: r.preference)]


_SECURITY = {"ssl": "tls", "tls": "tls", "starttls": "starttls"}  # "plain" is never proposed


def parse_autoconfig(text: str, address: str) -> list[ImapServer]:
    """The IMAP servers of a config-v1.1.xml document (entities and DTDs refused), TLS only."""
    try:
        root = ElementTree.fromstring(text)
    except Exception:  # noqa: BLE001 - defusedxml's refusals and any malformed XML: not a usable file
        return []
    local, _, domain = address.partition("@")
    servers = []
    for node in root.iter("incomingServer"):
        if (node.get("type") or "").lower() != "imap":
            continue
        host = (node.findtext("hostname") or "").strip().lower()
        security = _SECURITY.get((node.findtext("socketType") or "").strip().lower())
        try:
            port = int((node.findtext("port") or "").strip())
        except ValueError:
            continue
        if not host or security is None or not 0 < port < 65536:
            continue
        username = (node.findtext("username") or "%EMAILADDRESS%").strip()
        username = (
            username.replace("%EMAILADDRESS%", address)
            .replace("%EMAILLOCALPART%", local)
            .replace("%EMAILDOMAIN%", domain)
        )
        servers.append(ImapServer(host, port, security, username, f"the autoconfig file of {domain}"))
    return servers
