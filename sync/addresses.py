"""Addresses: normalisation, who is internal, automated senders, company domains."""

from __future__ import annotations

import re
import threading
from functools import lru_cache

_extractor = None
_extractor_lock = threading.Lock()


def _extract(domain: str):
    """Public-suffix split with the data bundled with tldextract; no network at run
    time. Imported on first use: tldextract pulls in requests, which costs every
    process (the CLI, the fetch child) half a second at start-up otherwise."""
    global _extractor
    if _extractor is None:
        with _extractor_lock:
            if _extractor is None:
                import tldextract

                _extractor = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    return _extractor(domain)


def warm_up() -> None:
    """Load the public-suffix data now (e.g. in a thread while waiting for the server)."""
    registrable_domain("example.com")


FREE_MAIL_DOMAINS = frozenset(
    """
gmail.com googlemail.com outlook.com hotmail.com hotmail.co.uk hotmail.fr hotmail.de live.com live.co.uk msn.com
yahoo.com yahoo.co.uk yahoo.fr yahoo.de yahoo.co.jp ymail.com rocketmail.com aol.com icloud.com me.com mac.com
proton.me protonmail.com pm.me gmx.com gmx.de gmx.net gmx.at gmx.ch web.de t-online.de freenet.de mail.com
zoho.com yandex.com yandex.ru mail.ru inbox.ru list.ru bk.ru qq.com 163.com 126.com sina.com naver.com daum.net
fastmail.com fastmail.fm hey.com tutanota.com tuta.io orange.fr wanadoo.fr free.fr laposte.net sfr.fr libero.it
virgilio.it alice.it btinternet.com sky.com virginmedia.com ntlworld.com bigpond.com optusnet.com.au
comcast.net verizon.net att.net sbcglobal.net cox.net charter.net earthlink.net juno.com seznam.cz wp.pl o2.pl
interia.pl onet.pl rediffmail.com mail.bg abv.bg
""".split()
)

_AUTOMATED_LOCAL = re.compile(
    r"^(no[-_.]?reply|do[-_.]?not[-_.]?reply|donotreply|mailer[-_.]daemon|postmaster|bounces?|"
    r"notifications?|notify|alerts?|automated|auto[-_.]?confirm|newsletters?|news|marketing|"
    r"digest|updates?|billing[-_.]?noreply|system)([+\-_.].*)?$",
    re.I,
)


# Plain ASCII dot-atom addresses on ordinary host names: by far the common case,
# and checking them with one regular expression is a hundred times faster than
# the full validator. Everything else (quoted local parts, IDN, odd TLDs) goes
# through email-validator.
_PLAIN = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_SPECIAL_TLDS = frozenset({"arpa", "invalid", "local", "localhost", "onion", "test", "internal", "home", "lan"})


@lru_cache(maxsize=200_000)
def normalise(address: str) -> str | None:
    """Lower-cased, syntax-checked address, or None when it is not an address.

    Syntax only: a CRM must never do DNS look-ups per participant.
    """
    address = address.strip().strip("<>").strip()
    if not address or len(address) > 254 or "@" not in address:
        return None
    if _PLAIN.fullmatch(address) and len(address.partition("@")[0]) <= 64:
        if address.rpartition(".")[2].lower() not in _SPECIAL_TLDS:
            return address.lower()
    from email_validator import EmailNotValidError, validate_email

    try:
        result = validate_email(
            address, check_deliverability=False, allow_smtputf8=True, allow_quoted_local=True, allow_display_name=False
        )
    except EmailNotValidError:
        return None
    return result.normalized.lower()


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]


def is_internal(address: str, internal_domains: frozenset[str]) -> bool:
    domain = domain_of(address)
    if domain in internal_domains:
        return True
    # subdomains of an internal domain (eu.ourco.com) are internal too
    return any(domain.endswith("." + d) for d in internal_domains)


# The same words as one part of a longer local part: drive-shares-dm-noreply@,
# calendar-notification@, jira+bounces@.
_AUTOMATED_PART = re.compile(
    r"(^|[-_.+])(no[-_.]?reply|do[-_.]?not[-_.]?reply|donotreply|mailer[-_.]daemon|bounces?|notifications?)"
    r"([-_.+]|$)",
    re.I,
)


def is_automated_sender(address: str) -> bool:
    local = address.partition("@")[0]
    return bool(_AUTOMATED_LOCAL.match(local) or _AUTOMATED_PART.search(local))


@lru_cache(maxsize=50_000)
def registrable_domain(domain: str) -> str | None:
    ext = _extract(domain)
    if not ext.suffix or not ext.domain:
        return None
    return f"{ext.domain}.{ext.suffix}"


def company_domain(address: str, free_mail: frozenset[str] = FREE_MAIL_DOMAINS) -> str | None:
    """The registrable domain a company is keyed by; None for free-mail and odd domains."""
    domain = domain_of(address)
    reg = registrable_domain(domain)
    if reg is None or reg in free_mail or domain in free_mail:
        return None
    return reg


def company_name(domain: str) -> str:
    label = domain.split(".", 1)[0]
    return " ".join(part.capitalize() for part in re.split(r"[-_]+", label) if part) or domain


def display_name(name: str, address: str) -> str:
    name = (name or "").strip().strip('"').strip("'").strip()
    if not name or name.lower() == address or "@" in name:
        return ""
    return name[:200]
