"""A sender's signature, read from the end of their own text: title, company,
phone numbers and website.

Pure functions over decoded text, no database, no network. There is no maintained
library for this, so the rules are deliberately plain:

1. the quoted reply is cut off (connectors/quoted.py), then trailing mobile footers
   ("Sent from my iPhone" in several languages) and disclaimers;
2. the signature block starts after the last "-- " delimiter, else after the last
   valediction ("Best regards," "Mit freundlichen Grüßen" ...); without either, the
   last lines count only when they hold a phone number;
3. each line of the block is split at pipes and bullets, and each piece is classified:
   a vCard or labelled field ("TITLE:", "Position:"), a phone (labelled mobile, fax or
   neither), a website, a company (legal suffix, or the words of the sender's
   domain), a title (job words in en, de, fr, es, it, nl, pt, sv).

Every value returned is a piece of the text as written (the property tests hold it to
that): normalising (E.164, names) is the caller's business (connectors/normalise.py).
"""

from __future__ import annotations

import re

from connectors.base import Signature
from connectors.quoted import own_text

MAX_BLOCK_LINES = 14
MAX_LINE = 120  # a longer line is prose or a disclaimer, not a signature line

_DELIMITER = re.compile(r"^(?:--|—|–|__)\s*$")
_VALEDICTION = re.compile(
    r"^(?:best|best\s+wishes|kind\s+regards|warm\s+regards|warmest\s+regards|regards|best\s+regards|many\s+thanks|"
    r"thanks|thank\s+you|thanks\s+again|cheers|all\s+the\s+best|sincerely|yours\s+sincerely|yours\s+truly|"
    r"yours|respectfully|"
    r"mit\s+freundlichen\s+gr(?:ü|ue|u)(?:ß|ss)en|freundliche\s+gr(?:ü|ue)(?:ß|ss)e|viele\s+gr(?:ü|ue)(?:ß|ss)e|"
    r"beste\s+gr(?:ü|ue)(?:ß|ss)e|liebe\s+gr(?:ü|ue)(?:ß|ss)e|sch(?:ö|oe)ne\s+gr(?:ü|ue)(?:ß|ss)e|gru(?:ß|ss)|"
    r"gr(?:ü|ue)(?:ß|ss)e|mfg|"
    r"cordialement|bien\s+cordialement|bien\s+(?:à|a)\s+vous|salutations|meilleures\s+salutations|"
    r"sinc(?:è|e)res\s+salutations|merci|merci\s+beaucoup|bonne\s+journ(?:é|e)e|"
    r"saludos|un\s+saludo|saludos\s+cordiales|atentamente|un\s+cordial\s+saludo|gracias|muchas\s+gracias|"
    r"cordiali\s+saluti|distinti\s+saluti|saluti|un\s+saluto|grazie|grazie\s+mille|"
    r"met\s+vriendelijke\s+groet(?:en)?|vriendelijke\s+groet(?:en)?|groeten|groet|mvg|hartelijke\s+groet(?:en)?|"
    r"atenciosamente|cumprimentos|com\s+os\s+melhores\s+cumprimentos|abra(?:ç|c)os?|obrigad[oa]|"
    r"med\s+v(?:ä|a)nliga\s+h(?:ä|a)lsningar|v(?:ä|a)nliga\s+h(?:ä|a)lsningar|h(?:ä|a)lsningar|mvh|"
    r"tack|b(?:ä|a)sta\s+h(?:ä|a)lsningar)"
    r"[\s,.!]*$",
    re.I,
)
_MOBILE_FOOTER = re.compile(
    r"^(?:sent\s+from\s+my\s|sent\s+from\s+outlook|get\s+outlook\s+for\s|von\s+meinem\s|gesendet\s+von\s|"
    r"envoy(?:é|e)\s+(?:de|depuis)\s+mon\s|enviado\s+desde\s+mi\s|inviato\s+da\s|verzonden\s+(?:vanaf|met)\s|"
    r"enviado\s+do\s+meu\s|skickat\s+fr(?:å|a)n\s+min\s)",
    re.I,
)
_DISCLAIMER = re.compile(
    r"^(?:confidential|disclaimer|this\s+e-?mail|this\s+message|the\s+information\s+(?:in|contained)|"
    r"please\s+consider\s+the\s+environment|diese\s+e-?mail|diese\s+nachricht|ce\s+(?:message|courriel|mail)|"
    r"este\s+(?:mensaje|correo)|questo\s+messaggio|questa\s+e-?mail|dit\s+bericht|deze\s+e-?mail|"
    r"esta\s+mensagem|este\s+e-?mail|detta\s+(?:e-?post|meddelande)|denna\s+e-?post)",
    re.I,
)
_SPLIT = re.compile(r"\s+[|•·/]\s+|\s*\|\s*|\s+[-–—]\s+")
_PHONE = re.compile(r"(?<![\w+])\+?\(?\d[\d \t().\-/]{5,24}\d(?!\w)")
_URL = re.compile(
    r"(?<![\w@.-])(?:https?://[\w-]+(?:\.[\w-]+)+|www\.[\w-]+(?:\.[\w-]+)+)(?:/[\w\-./?=&%#~+]*)?",
    re.I,
)
_SOCIAL = re.compile(
    r"linkedin\.|twitter\.|//x\.com|facebook\.|instagram\.|youtube\.|xing\.|calendly\.|teams\.microsoft|"
    r"zoom\.us|bit\.ly|t\.co/|aka\.ms",
    re.I,
)
_MOBILE_LABEL = re.compile(
    r"\b(?:m|mob|mobile|cell|cellular|handy|mobil|mobiel|portable|port|gsm|m(?:ó|o)vil|cel|cellulare|"
    r"celular|telem(?:ó|o)vel|mobiltelefon)\b",
    re.I,
)
_FAX_LABEL = re.compile(r"\b(?:f|fax|telefax|facsimile)\b", re.I)
# vCard properties are written in capitals by every client that puts one in a signature;
# matching them exactly keeps "Tel: ..." a labelled phone line.
_VCARD = re.compile(r"^(BEGIN|END|VERSION|FN|N|TITLE|ROLE|ORG|TEL|URL|EMAIL|ADR)((?:;[^:]{0,60})?):(.*)$")
_LABELLED = re.compile(
    r"^(title|job\s+title|position|role|funktion|stellung|poste|fonction|titre|cargo|puesto|ruolo|funzione|"
    r"qualifica|functie|titel|befattning|roll|"
    r"company|organi[sz]ation|firma|unternehmen|soci(?:é|e)t(?:é|e)|entreprise|empresa|azienda|societ(?:à|a)|"
    r"bedrijf|organisatie|f(?:ö|o)retag|"
    r"web|website|web\s+site|site|internet|webseite|homepage|sito|sitio|sitio\s+web|webbplats|"
    r"phone|tel|tel\.|telephone|telefon|telefono|tel(?:é|e)fono|t(?:é|e)l(?:é|e)phone|telefoon|telefone|office|"
    r"direct|dw|durchwahl|"
    r"mobile|mob|cell|handy|mobil|mobiel|portable|m(?:ó|o)vil|cellulare|celular|telem(?:ó|o)vel|"
    r"fax|telefax)\s*[:.]\s*(.+)$",
    re.I,
)
_TITLE_LABELS = re.compile(
    r"^(?:title|job\s+title|position|role|funktion|stellung|poste|fonction|titre|cargo|puesto|ruolo|funzione|"
    r"qualifica|functie|titel|befattning|roll)$",
    re.I,
)
_COMPANY_LABELS = re.compile(
    r"^(?:company|organi[sz]ation|firma|unternehmen|soci(?:é|e)t(?:é|e)|entreprise|empresa|azienda|societ(?:à|a)|"
    r"bedrijf|organisatie|f(?:ö|o)retag)$",
    re.I,
)
_WEB_LABELS = re.compile(
    r"^(?:web|website|web\s+site|site|internet|webseite|homepage|sito|sitio|sitio\s+web|webbplats)$", re.I
)
_COMPANY_SUFFIX = re.compile(
    r"(?:^|\s)(?:Ltd\.?|Limited|plc|PLC|LLP|LLC|L\.L\.C\.|Inc\.?|Corp\.?|Corporation|GmbH(?:\s&\sCo\.\sKG)?|AG|KG|"
    r"SE|SA|S\.A\.|SAS|S\.A\.S\.|SARL|S\.à\s?r\.l\.|SL|S\.L\.|SLU|S\.L\.U\.|SpA|S\.p\.A\.|Srl|S\.r\.l\.|BV|B\.V\.|"
    r"NV|N\.V\.|Lda\.?|Ltda\.?|AB|Oy|A/S|ApS|AS|Pty\s+Ltd|Group|Gruppe|Groupe|Grupo|Gruppo|Holding|Holdings)"
    r"\s*$"
)
# Job words, as prefixes of a word (compound words of de, nl and sv end in them too:
# "Vertriebsleiter", "Säljchef", so those few are also matched inside a word).
_TITLE_WORD = re.compile(
    r"(?:\b(?:manager|director|direktor|directeur|directrice|diretor|diretora|direttore|direttrice|head\s+of|"
    r"chief|officer|ceo|cto|cfo|coo|cio|cmo|cro|vp|svp|evp|vice[\s-]president|president|pr(?:ä|é)sident|"
    r"presidente|founder|co-founder|gr(?:ü|u)nder|grundare|owner|inhaber|eigenaar|(?:ä|a)gare|titolare|"
    r"partner|principal|consultant|consultor|consultora|consulente|berater|adviseur|konsult|engineer|ingenieur|"
    r"ing(?:é|e)nieur|ingeniero|ingeniera|engenheir[oa]|ingegnere|ingenj(?:ö|o)r|developer|architect|analyst|"
    r"specialist|spezialist|sp(?:é|e)cialiste|especialista|executive|ejecutiv[oa]|representative|"
    r"coordinator|coordinador|coordinadora|coordenador|coordenadora|coordinatore|administrator|amministratore|"
    r"assistant|assistent|assistente|asistente|associate|lead|supervisor|advisor|adviser|asesor|asesora|"
    r"account|sales|vertrieb|verkoop|s(?:ä|a)ljare|comercial|commercial|commerciale|marketing|procurement|"
    r"purchasing|einkauf|einkäufer|inkoop|inkoper|ink(?:ö|o)p|acquisti|buyer|acheteur|acheteuse|comprador|"
    r"compradora|counsel|attorney|lawyer|accountant|controller|designer|recruiter|secretary|chairman|chair|"
    r"managing|gesch(?:ä|a)ftsf(?:ü|u)hrer(?:in)?|prokurist(?:in)?|vorstand|referent(?:in)?|"
    r"sachbearbeiter(?:in)?|projektledare|projectleider|bedrijfsleider|medewerker|jefe|jefa|charg(?:é|e)e?|"
    r"conseill(?:er|ère)|gestor|gestora|gerente|g(?:é|e)rant|g(?:é|e)rante|responsable|responsabile|"
    r"s(?:ó|o)ci[oa]|vd|md|ops|operations|support|customer\s+success|office|hr|finance)\b"
    r"|(?:leiter(?:in)?|chef|manager|direktor|f(?:ü|u)hrer(?:in)?|berater(?:in)?)\b)",
    re.I,
)
_AT_COMPANY = re.compile(r"\s(?:at|@|bei|chez|en|presso|bij|p(?:å|a)|na|da)\s", re.I)
_DIGIT = re.compile(r"\d")
_NAME_WORD = re.compile(r"^[A-ZÀ-ÖØ-Þ][\w'’.-]*$")


def extract(text: str, sender_name: str = "", sender_domain: str = "") -> Signature | None:
    """The signature at the end of the sender's own text, or None when there is
    none to read. sender_name and sender_domain (registrable domain) help tell the
    name line and the company line; both may be empty."""
    own, _ = own_text(text)
    return from_own_lines(own.splitlines(), sender_name, sender_domain)


def from_own_lines(lines: list[str], sender_name: str = "", sender_domain: str = "") -> Signature | None:
    """extract() for a caller that has cut the quoted part already (connectors/mailparse.py)."""
    block = signature_block(lines)
    if not block:
        return None
    # People sign every message the same way: a sync reads the same few hundred
    # blocks thousands of times, so each is read once (bounded, cleared when full).
    key = (tuple(block), sender_name, sender_domain)
    try:
        return _READ[key]
    except KeyError:
        pass
    if len(_READ) >= _READ_MAX:
        _READ.clear()
    found = _READ[key] = read_block(block, sender_name, sender_domain)
    return found


_READ: dict[tuple, Signature | None] = {}
_READ_MAX = 4096


def signature_block(lines: list[str]) -> list[str]:
    """The lines of the signature at the end of the own text (may be empty)."""
    end = len(lines)
    while end and (not lines[end - 1].strip() or _MOBILE_FOOTER.match(lines[end - 1].strip())):
        end -= 1
    # A disclaimer closes the text: it and all below it go.
    for i in range(max(0, end - 40), end):
        if _DISCLAIMER.match(lines[i].strip()):
            end = i
            break
    lines = lines[:end]
    start = None
    for i in range(len(lines) - 1, max(-1, len(lines) - 1 - 3 * MAX_BLOCK_LINES), -1):
        line = lines[i].strip()
        if _DELIMITER.match(lines[i].rstrip()) or _VALEDICTION.match(line):
            start = i + 1
            break
    if start is None:
        card = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].strip().upper() == "BEGIN:VCARD"), None)
        if card is not None:
            start = card
    if start is None:
        # No delimiter, no valediction: the last paragraph, if it holds a phone number.
        while lines and not lines[-1].strip():
            lines = lines[:-1]
        start = len(lines)
        while start > 0 and lines[start - 1].strip() and len(lines) - start < MAX_BLOCK_LINES:
            start -= 1
        if not any(_PHONE.search(ln) for ln in lines[start:]):
            return []
    block = []
    for raw in lines[start : start + MAX_BLOCK_LINES]:
        line = raw.strip()
        if not line:
            continue
        if len(line) > MAX_LINE:
            break
        block.append(line)
    return block


def read_block(block: list[str], sender_name: str = "", sender_domain: str = "") -> Signature | None:
    found: dict[str, str] = {}
    domain_words = _domain_words(sender_domain)
    name_tokens = {t.lower() for t in re.findall(r"\w+", sender_name) if len(t) > 1}
    after_title = False
    for index, line in enumerate(block):
        card = _VCARD.match(line)
        if card:
            _vcard_field(card.group(1).upper(), card.group(2), card.group(3).strip(), found)
            after_title = False
            continue
        pieces = [p.strip() for p in _SPLIT.split(line) if p and p.strip()] if ("|" in line or " " in line) else [line]
        title_here = False
        for piece in pieces:
            kind = _piece(piece, found, index, name_tokens, domain_words, after_title)
            title_here = title_here or kind == "title"
        after_title = title_here
    sig = Signature(
        name=found.get("name"),
        title=found.get("title"),
        company=found.get("company"),
        phone=found.get("phone"),
        mobile=found.get("mobile"),
        website=found.get("website"),
    )
    return sig if sig else None


def _piece(
    piece: str, found: dict[str, str], index: int, name_tokens: set[str], domain_words: list[str], after_title: bool
) -> str:
    """Classify one piece of a signature line, recording it in found; returns its kind."""
    if "@" in piece and not _URL.search(piece):
        return "email"
    labelled = _LABELLED.match(piece)
    if labelled and _labelled_field(labelled.group(1), labelled.group(2).strip(), found):
        return "labelled"
    phone = _phone_in(piece)
    if phone is not None:
        number, label = phone
        if _FAX_LABEL.search(label):
            return "fax"
        key = "mobile" if _MOBILE_LABEL.search(label) else "phone"
        found.setdefault(key, number)
        return key
    url = _URL.search(piece)
    if url:
        if not _SOCIAL.search(url.group(0)):
            found.setdefault("website", url.group(0).rstrip("./"))
        return "website"
    if _DIGIT.search(piece) or len(piece) > 80:
        return "other"  # an address line, a reference
    words = piece.split()
    if "name" not in found and index <= 1 and _is_name(words, name_tokens):
        found["name"] = piece
        return "name"
    titled = _TITLE_WORD.search(piece) is not None
    if titled and "title" not in found and len(words) <= 12 and _split_title_company(piece, found):
        return "title"
    if _COMPANY_SUFFIX.search(piece) and len(words) <= 8:
        found.setdefault("company", piece)
        return "company"
    if titled and len(words) <= 10:
        if "title" not in found:
            _title_and_company(piece, found)
        return "title"
    if domain_words and _matches_domain(piece, domain_words) and len(words) <= 6:
        found.setdefault("company", piece)
        return "company"
    if after_title and "company" not in found and 1 <= len(words) <= 5 and all(_NAME_WORD.match(w) for w in words):
        found["company"] = piece  # the line under the title, capitalised words: the employer
        return "company"
    return "other"


def _title_and_company(piece: str, found: dict[str, str]) -> None:
    if not _split_title_company(piece, found):
        found["title"] = piece


def _split_title_company(piece: str, found: dict[str, str]) -> bool:
    """ "Sales Director at Aurora Telecom plc", "IT Lead, Northwind Ltd": both at once."""
    at = _AT_COMPANY.search(piece)
    if at:
        left, right = piece[: at.start()].strip(), piece[at.end() :].strip()
        if left and right and _TITLE_WORD.search(left) and right[:1].isupper():
            found["title"] = left
            found.setdefault("company", right)
            return True
    if ", " in piece:
        left, right = piece.rsplit(", ", 1)
        if _COMPANY_SUFFIX.search(right) and _TITLE_WORD.search(left):
            found["title"] = left.strip()
            found.setdefault("company", right.strip())
            return True
    return False


def _phone_in(piece: str) -> tuple[str, str] | None:
    """The first phone-shaped number of a piece (7 to 15 digits) and the text before it."""
    for m in _PHONE.finditer(piece):
        number = m.group(0).strip(" \t-/.")
        digits = sum(ch.isdigit() for ch in number)
        if 7 <= digits <= 15 and not re.fullmatch(r"\d{4}-\d{2}-\d{2}|\d{1,2}[./]\d{1,2}[./]\d{2,4}", number):
            return number, piece[: m.start()]
    return None


def _is_name(words: list[str], name_tokens: set[str]) -> bool:
    if not 1 <= len(words) <= 5:
        return False
    lowered = {w.strip(",.").lower() for w in words}
    if name_tokens and lowered & name_tokens:
        return True
    return (
        2 <= len(words) <= 4
        and all(_NAME_WORD.match(w) for w in words)
        and not _TITLE_WORD.search(" ".join(words))
        and not _COMPANY_SUFFIX.search(" ".join(words))
    )


def _domain_words(domain: str) -> list[str]:
    label = domain.split(".", 1)[0].lower() if domain else ""
    return [w for w in re.split(r"[-_]+", label) if w]


def _matches_domain(piece: str, domain_words: list[str]) -> bool:
    letters = re.sub(r"[^a-z0-9]", "", piece.lower())
    joined = "".join(domain_words)
    if len(joined) < 3 or not letters:
        return False
    return letters.startswith(joined) or joined.startswith(letters)


def _labelled_field(label: str, value: str, found: dict[str, str]) -> bool:
    label = " ".join(label.lower().split())
    if not value:
        return False
    if _TITLE_LABELS.match(label):
        found.setdefault("title", value)
    elif _COMPANY_LABELS.match(label):
        found.setdefault("company", value)
    elif _WEB_LABELS.match(label):
        url = _URL.search(value)
        if url:
            found.setdefault("website", url.group(0).rstrip("./"))
    else:
        phone = _phone_in(value)
        if phone is None:
            return False
        if _FAX_LABEL.search(label):
            return True
        found.setdefault("mobile" if _MOBILE_LABEL.search(label) else "phone", phone[0])
    return True


def _vcard_field(prop: str, params: str, value: str, found: dict[str, str]) -> None:
    if not value:
        return
    if prop == "TITLE" or (prop == "ROLE" and "title" not in found):
        found.setdefault("title", value)
    elif prop == "ORG":
        found.setdefault("company", value.split(";", 1)[0].strip() or value)
    elif prop == "FN":
        found.setdefault("name", value)
    elif prop == "URL":
        url = _URL.search(value)
        if url:
            found.setdefault("website", url.group(0).rstrip("./"))
    elif prop == "TEL":
        phone = _phone_in(value)
        if phone is None:
            return
        kind = params.lower()
        if "fax" in kind:
            return
        found.setdefault("mobile" if "cell" in kind or "mobile" in kind else "phone", phone[0])
