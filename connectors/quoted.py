"""Where a message's own text ends and the quoted reply begins.

Pure functions over decoded text, no database. Mail clients introduce the message
they answer in their user's language: an attribution line ("On ... wrote:", "Am ...
schrieb ...:"), an Outlook header block ("From: ... Sent: ...", "Von: ... Gesendet:
..."), a separator ("-----Original Message-----", a row of underscores) or `>` lines.
Everything from the first of these on is someone else's text.
"""

from __future__ import annotations

import re

# Attribution lines, one per language; Gmail wraps long ones, so they are also
# tried on two lines joined. Bounded repetitions keep every pattern linear.
_ATTRIBUTION = re.compile(
    r"^(?:"
    r"On\s.{1,200}\swrote\s?:"  # en
    r"|Am\s.{1,200}\sschrieb.{0,200}:"  # de
    r"|Le\s.{1,200}\sa\s[ée]crit\s?:"  # fr
    r"|El\s.{1,200}\sescribi[óo]\s?:"  # es
    r"|Il\sgiorno\s.{1,200}\sha\sscritto\s?:"  # it
    r"|.{1,200}\sha\sscritto\s?:"  # it, short form ("Mario Rossi <m@x> ha scritto:")
    r"|Op\s.{1,200}\sschreef.{0,200}:"  # nl
    r"|Em\s.{1,200}\sescreveu\s?:"  # pt
    r"|Den\s.{1,200}\sskrev.{0,200}:"  # sv
    r"|.{1,200}\s(?:wrote|schrieb|a\s[ée]crit|escribi[óo]|schreef|escreveu|skrev)\s?:"  # "Name <x> wrote:"
    r")\s*$",
    re.I,
)
# Outlook's header block: a From line followed closely by a Sent/Date line.
_FROM = re.compile(r"^\*?(?:From|Von|De|Da|Van|Fra|Från|Från)\s?:\*?\s*\S", re.I)
_SENT = re.compile(
    r"^\*?(?:Sent|Date|Gesendet|Datum|Envoy[ée]|Date\s?d'envoi|Enviado|Fecha|Inviato|Data|Verzonden|Verstuurd|"
    r"Skickat|Sendt|Enviada)\s?:\*?\s",
    re.I,
)
_SEPARATOR = re.compile(
    r"^(?:-{2,}\s*(?:Original\s+Message|Ursprüngliche\s+Nachricht|Message\s+d'origine|Mensaje\s+original|"
    r"Messaggio\s+originale|Oorspronkelijk\s+bericht|Mensagem\s+original|Ursprungligt\s+meddelande|"
    r"Forwarded\s+message|Weitergeleitete\s+Nachricht|Message\s+transféré|Mensaje\s+reenviado|"
    r"Messaggio\s+inoltrato|Doorgestuurd\s+bericht|Mensagem\s+encaminhada|Vidarebefordrat\s+meddelande)"
    r"\s*-{2,}|_{10,})\s*$",
    re.I,
)
MAX_CHARS = 64 * 1024  # longer text is cut first: the own text is near the top


_FROM_FIRST = frozenset("*FfVvDd")


def quote_start(lines: list[str]) -> int | None:
    """Index of the first line of the quoted part, or None when there is none.

    Cheap character tests come first: every line of every message goes through
    this at import, and the patterns only apply to lines that end in a colon or
    start with ">", "-", "_" or the first letter of a From field."""
    count = len(lines)
    for i, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            continue
        first = line[0]
        if first == ">":
            return i
        if first in "-_" and _SEPARATOR.match(line):
            return i
        if line[-1] == ":" and len(line) <= 400 and _ATTRIBUTION.match(line):
            return i
        if i + 1 < count:
            nxt = lines[i + 1].strip()
            if (
                nxt
                and nxt[-1] == ":"
                and len(line) + len(nxt) <= 400
                and _ATTRIBUTION.match(f"{line} {nxt}")
                and not _ATTRIBUTION.match(nxt)  # the next line is one on its own: found there
            ):
                return i
        if first in _FROM_FIRST and ":" in line[:12] and _FROM.match(line):
            for later in lines[i + 1 : i + 5]:
                if _SENT.match(later.strip()):
                    return i
    return None


def own_text(text: str) -> tuple[str, bool]:
    """The text before the quoted reply, and whether a quoted part was found."""
    lines = text[:MAX_CHARS].splitlines()
    cut = quote_start(lines)
    if cut is None:
        return "\n".join(lines), False
    return "\n".join(lines[:cut]), True
