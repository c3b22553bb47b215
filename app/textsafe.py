"""Text from mail made safe to show: bidirectional controls neutralised.

A display name or subject can carry Unicode's explicit direction controls, so
"\u202eGNP.exe" is drawn as "exe.PNG". Wherever a value from mail is shown (the
console, the CLI; the sidebar does the same in app/web/panel.js) it goes
through shown(); stored data, the API's JSON and exports keep the original.

Overrides, embeddings and isolates (the characters that reorder what follows)
become a visible "[U+202E]", so the text stays in its real order and the
trick stays visible. The zero-width marks (LRM, RLM, ALM) are dropped: they
only nudge neutral characters, and real right-to-left names use them.
"""

from __future__ import annotations

import re

# U+202A-U+202E: LRE, RLE, PDF, LRO, RLO; U+2066-U+2069: LRI, RLI, FSI, PDI.
_REORDERING = re.compile("[\u202a-\u202e\u2066-\u2069]")
# U+200E LRM, U+200F RLM, U+061C ALM.
_MARKS = re.compile("[\u200e\u200f\u061c]")
_ANY = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def shown(value):
    """value with its bidirectional controls neutralised; anything not a string as it is."""
    if not isinstance(value, str) or not _ANY.search(value):
        return value
    value = _MARKS.sub("", value)
    return _REORDERING.sub(lambda m: f"[U+{ord(m.group()):04X}]", value)
