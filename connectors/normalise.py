"""Normal forms of what people write about themselves: phone numbers (E.164, with
`phonenumbers`), personal names (with `nameparser`) and company display names.

Pure functions, offline, no database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers
from nameparser import HumanName

# Country-code TLDs whose ISO code is not the TLD upper-cased.
_TLD_REGION = {"uk": "GB", "eu": "", "su": "", "ac": "", "io": "", "co": "CO", "tv": "", "me": "", "ai": ""}
_GENERIC_TLDS = frozenset({"com", "org", "net", "info", "biz", "edu", "gov", "int", "mil", "app", "dev", "tech"})


def region_of_domain(domain: str | None) -> str | None:
    """The ISO 3166 region a domain's country TLD names (aurora-telecom.co.uk -> GB),
    or None for generic and ambiguous TLDs (.com, .io)."""
    if not domain or "." not in domain:
        return None
    tld = domain.rsplit(".", 1)[1].lower()
    if tld in _GENERIC_TLDS or len(tld) != 2:
        return None
    region = _TLD_REGION.get(tld, tld.upper())
    if not region or region not in phonenumbers.SUPPORTED_REGIONS:
        return None
    return region


def valid_region(code: str) -> bool:
    """Whether code is a region phonenumbers knows (ISO 3166 alpha-2: GB, DE, US)."""
    return code in phonenumbers.SUPPORTED_REGIONS


def e164(raw: str | None, region: str | None) -> str | None:
    """A phone number as written ("+44 (0)20 7946 0321", "030 1234567") in E.164, or
    None when it is not a possible number. region: the default for numbers written
    without a country code; without one only international numbers are read."""
    if not raw:
        return None
    text = raw.replace("(0)", "").strip()
    if not text.startswith("+") and text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, region if not text.startswith("+") else None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@dataclass(frozen=True)
class PersonName:
    name: str  # the name to show: first, middle, last ("Rory Adams")
    honorific: str = ""  # "Dr.", "Mrs"
    suffix: str = ""  # "Jr.", "PhD"


_COMMA_FORM = re.compile(r"^[^,@]{1,60},\s*[^,@]{1,60}$")
_NOT_A_PERSON = re.compile(
    r"\b(?:team|support|sales|info|service|services|desk|office|group|department|noreply|no-reply|ltd|gmbh|inc|"
    r"plc|llc)\b",
    re.I,
)


_HONORIFICS = frozenset(
    "mr mrs ms miss mx dr prof sir dame lord lady rev herr frau fr hr mme mlle sr sra srta dott dott.ssa dra "
    "ing avv sig sig.ra".split()
)
_SUFFIXES = frozenset("jr sr ii iii iv phd md mba esq cpa msc bsc dds jd".split())


def _may_need_parsing(display: str) -> bool:
    """Cheap test before nameparser (tens of microseconds a name): a comma, or a
    first or last word that is an honorific or a suffix."""
    if "," in display:
        return True
    words = display.lower().replace(".", " ").split()
    return bool(words) and (words[0] in _HONORIFICS or words[-1] in _SUFFIXES)


def person_name(display: str) -> PersonName:
    """A display name in the order people read it, with honorifics and suffixes
    apart: "Adams, Rory" -> Rory Adams; "Dr. Rory Adams Jr." -> Rory Adams, "Dr.",
    "Jr.". Names of teams and companies are left as they are."""
    display = " ".join((display or "").split())
    if not display or not _may_need_parsing(display) or _NOT_A_PERSON.search(display) or len(display) > 120:
        return PersonName(display)
    parsed = HumanName(display)
    honorific, suffix = parsed.title, parsed.suffix
    if not (_COMMA_FORM.match(display) or honorific or suffix):
        return PersonName(display)  # "Rory Adams" stays exactly as the person wrote it
    name = " ".join(part for part in (parsed.first, parsed.middle, parsed.last) if part)
    if not name:
        return PersonName(display)
    return PersonName(name, honorific, suffix)


def full_name(name: str, honorific: str = "", suffix: str = "") -> str:
    """The name as a person would write it out again, honorific and suffix back in place
    ("Dr. Rory Adams, Jr."): what an export writes, so that re-importing it parses to the same
    three parts."""
    written = " ".join(part for part in (honorific, name) if part)
    return f"{written}, {suffix}" if suffix and written else written or suffix


def company_display(signature_company: str | None, domain: str) -> str:
    """The name to show for a company: as its people sign ("Aurora Telecom plc"),
    else the domain's first label split into words (aurora-telecom.co.uk -> Aurora Telecom)."""
    if signature_company and signature_company.strip():
        return " ".join(signature_company.split())[:200]
    label = domain.split(".", 1)[0]
    return " ".join(part.capitalize() for part in re.split(r"[-_]+", label) if part) or domain


def company_matches_domain(company: str, domain: str) -> bool:
    """Whether a signature's company plausibly is the sender's domain's company:
    "Aurora Telecom plc" for aurora-telecom.co.uk or auroratelecom.com, "AT&T" no.
    Keeps a consultant's or a forwarded signature from renaming the company."""
    label = re.sub(r"[^a-z0-9]", "", domain.split(".", 1)[0].lower())
    letters = re.sub(r"[^a-z0-9]", "", company.lower())
    if not label or not letters:
        return False
    if letters.startswith(label) or (len(letters) >= 4 and label.startswith(letters)):
        return True
    initials = "".join(w[0] for w in re.findall(r"[a-z0-9]+", company.lower()))
    return len(label) >= 2 and initials.startswith(label)
