"""Identifiers written with look-alike characters: what node/redact.py matches after folding them.

A card number in full-width digits (４１１１ １１１１ ...), groups split by no-break or zero-width
spaces, a phone number with en-dashes, an address with a full-width "＠": people and copy-paste produce
these, and node/redact.py's layouts (ASCII digits, "@", "-" and " ") miss them. `fold(text)` maps them to
the characters the layouts expect: Unicode compatibility normalisation (NFKC, UAX #15: full-width forms,
no-break spaces), every decimal digit to its ASCII digit (Arabic-Indic, Devanagari, ...), dashes and
minus signs to "-", other space separators to " ", and drops invisible format characters (zero-width
spaces and joiners, word joiner, soft hyphen, BOM). node/redact.py first redacts the text as written,
then folds what is left and redacts it again; the folded text is stored only when that second pass
found an identifier, so other texts keep their characters.
"""

from __future__ import annotations

import re
import unicodedata

INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e"), None)
DASHES = {ord(c): "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"}
_NON_ASCII_DIGIT = re.compile(r"[^\x00-\x7f]")


def _ascii_char(m: re.Match) -> str:
    c = m.group()
    if c.isdecimal():
        return str(unicodedata.decimal(c))
    if unicodedata.category(c) == "Zs":
        return " "
    return c


def fold(text: str) -> str:
    """`text` with look-alike digits, signs, dashes and spaces as ASCII and invisible characters dropped
    (module docstring); ASCII text is returned as it is."""
    if text.isascii():
        return text
    t = unicodedata.normalize("NFKC", text.translate(INVISIBLE)).translate(DASHES)
    return _NON_ASCII_DIGIT.sub(_ascii_char, t)
