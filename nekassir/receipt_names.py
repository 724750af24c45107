"""Product names that a fiscal receipt can hold (FFD 1.2 tag 1030, PROTOCOLS.md §1).

iiko menu names may be long and may hold emoji or typography. The fiscal storage keeps tag 1030
in code page 866 and at most 128 characters, and the printer prints only that code page, so the
receipt gets a version made to fit while the order keeps the original name.
"""

from __future__ import annotations

import re
import unicodedata

MAX_LENGTH = 128  # FFD 1.2, tag 1030
FALLBACK = "Товар"
# "…" is not in code page 866: three dots are.
ELLIPSIS = "..."
# Cut at a word boundary only when that keeps most of the name; otherwise cut mid-word.
MIN_WORD_CUT = MAX_LENGTH // 2

# Typography that has a plain equivalent in code page 866.
_REPLACEMENTS = {
    "«": '"', "»": '"', "„": '"', "“": '"', "”": '"', "‟": '"', "″": '"',
    "‘": "'", "’": "'", "‚": "'", "‛": "'", "′": "'", "`": "'",
    "‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "―": "-", "−": "-",
    "…": "...", "×": "x", "⁄": "/", "•": "*", "·": "*",
}
_SPACES = re.compile(r"\s+")
# Punctuation that looks wrong right before the ellipsis.
_TRAILING = " ,;:-(/\"'"


def _printable(char: str) -> bool:
    """ASCII text, the Cyrillic letters of code page 866, and the number and degree signs."""
    if " " <= char <= "~":
        return True
    if "\u0400" <= char <= "\u04ff":
        try:
            char.encode("cp866")
        except UnicodeEncodeError:
            return False
        return True
    return char in "№°"


def _fit_char(char: str) -> str:
    """What ``char`` becomes on the receipt: itself, a plain equivalent, or a space."""
    if _printable(char):
        return char
    if char in _REPLACEMENTS:
        return _REPLACEMENTS[char]
    if unicodedata.category(char)[0] in "CZ":  # controls, format marks, line breaks, odd spaces
        return " "
    # Compatibility forms (full-width letters, ligatures, ½) and accented Latin (é -> e).
    plain = "".join(
        c for c in unicodedata.normalize("NFKD", char) if unicodedata.category(c) != "Mn"
    )
    plain = "".join(_REPLACEMENTS.get(c, c) for c in plain)
    if plain and all(_printable(c) for c in plain):
        return plain
    return " "  # emoji, pictographs, other scripts: nothing the printer can show


def _truncate(text: str) -> str:
    if len(text) <= MAX_LENGTH:
        return text
    budget = MAX_LENGTH - len(ELLIPSIS)
    cut = text[:budget]
    if text[budget] != " ":
        space = cut.rfind(" ")
        if space >= MIN_WORD_CUT:
            cut = cut[:space]
    return (cut.rstrip(_TRAILING) or cut) + ELLIPSIS


def receipt_name(name: str) -> str:
    """``name`` made fit for a receipt position: printable, single-spaced, ≤128 characters, never empty."""
    text = "".join(_fit_char(c) for c in unicodedata.normalize("NFC", name or ""))
    text = _SPACES.sub(" ", text).strip()
    if not any(c.isalnum() for c in text):
        return FALLBACK
    return _truncate(text)
