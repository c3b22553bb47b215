"""What makes two addresses look like one person, as plain text functions (no database):
a display name reduced to a comparable key, and an announced address change in a snippet."""

from __future__ import annotations

import re
import unicodedata

# Titles that say nothing about who someone is; "Dr Rory Adams" is Rory Adams.
_HONORIFICS = frozenset(
    "mr mrs ms miss mx dr prof sir madam herr frau fr hr mme mlle m sr sra srta sig dott ing".split()
)
_SUFFIXES = frozenset("jr sr ii iii iv phd md mba esq".split())


def name_key(name: str | None) -> str | None:
    """A display name as a comparable key: accents, case, punctuation, titles and word order
    ignored ("Adams, Rory" == "rory adams" == "Dr. Rory ADAMS"). None when the name is too thin
    to tell people apart: one word (many share a first name), or an address used as a name."""
    if not name or "@" in name:
        return None
    text = name.strip().strip("'\"")
    if text.count(",") == 1:  # "Adams, Rory" -> "Rory Adams"
        last, first = (part.strip() for part in text.split(","))
        text = f"{first} {last}"
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    words = [w for w in re.split(r"[^\w]+", text) if w and not w.isdigit()]
    words = [w for w in words if w not in _HONORIFICS and w not in _SUFFIXES]
    if len(words) < 2:
        return None
    return " ".join(sorted(words))


_ADDRESS = r"<?(?:mailto:)?([A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,})>?"
# Phrases people use to announce a new address, in the languages our customers write in.
# Each is followed, within a short stretch of text, by the address itself.
_PHRASES = [
    # English
    r"my new (?:e-?mail )?address(?: is)?",
    r"(?:my )?(?:e-?mail )?address (?:has )?changed(?: to)?",
    r"please (?:use|write to|email me at|send (?:mail|emails?) to|update (?:your records|my address)[^.]{0,40}? to)",
    r"i (?:have|'ve) moved to",
    r"(?:you can )?(?:now )?reach me at",
    r"from now on,? (?:please )?(?:use|write to)",
    r"i am no longer using this (?:e-?mail )?address",
    # German
    r"meine neue (?:e-?mail-?)?adresse(?: lautet| ist)?",
    r"bitte (?:verwenden|nutzen|schreiben) sie(?: ab sofort| künftig| nur noch)?(?: an)?",
    r"ab sofort (?:bin ich )?(?:unter|erreichbar unter)",
    # French
    r"ma nouvelle adresse(?: (?:e-?mail|électronique|mail|courriel))?(?: est)?",
    r"(?:merci|veuillez) (?:d'|de )?(?:utiliser|écrire à)",
    r"(?:j'ai changé d'adresse|mon adresse a changé)[^@]{0,30}?",
    # Spanish
    r"mi nueva (?:dirección|direccion)(?: de correo(?: electrónico)?)?(?: es)?",
    r"por favor,? (?:utilice|utiliza|use|usa|escriba a|escribe a)",
    # Italian
    r"il mio nuovo indirizzo(?: e-?mail| di posta)?(?: è| e)?",
    r"(?:si prega di|per favore) (?:utilizzare|usare|scrivere a)",
    # Dutch
    r"mijn nieuwe (?:e-?mail-?)?adres(?: is)?",
    r"gebruik (?:voortaan|vanaf nu)",
    # Portuguese
    r"meu novo (?:endereço|e-?mail)(?: de e-?mail)?(?: é)?",
]
_CHANGE = re.compile(r"(?:" + "|".join(_PHRASES) + r")[^@\n]{0,60}?" + _ADDRESS, re.IGNORECASE)
# A word every phrase above contains: most snippets hold none, and a substring test is ~25x
# cheaper than trying twenty alternatives at every position (bench/duplicates.py).
_WORDS = (
    "new",
    "use",
    "moved",
    "reach",
    "changed",
    "write",
    "send",
    "update",
    "longer",
    "neue",
    "verwenden",
    "nutzen",
    "schreiben",
    "sofort",
    "nouvelle",
    "utiliser",
    "écrire",
    "adresse",
    "nueva",
    "utilic",
    "utiliza",
    "usa",
    "escrib",
    "nuovo",
    "utilizzare",
    "usare",
    "scrivere",
    "nieuwe",
    "gebruik",
    "novo",
)


def announced_addresses(snippet: str | None) -> list[str]:
    """The addresses a message says its sender now uses ("my new email address is x@y"),
    lower-cased, in the order they appear. Addresses merely mentioned are not announced."""
    if not snippet or "@" not in snippet:
        return []
    lowered = snippet.casefold()
    if not any(word in lowered for word in _WORDS):
        return []
    found: list[str] = []
    for match in _CHANGE.finditer(snippet):
        address = match.group(1).strip(".'").lower()
        if address not in found:
            found.append(address)
    return found
