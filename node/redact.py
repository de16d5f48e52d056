"""PII redaction of conversation and feedback text, applied at import before anything is stored.

`redact(text) -> (new_text, Counter(kind -> n))` replaces, in this order:

| kind            | token         | what                                                                  |
|-----------------|---------------|-----------------------------------------------------------------------|
| url_credentials | [CREDENTIALS] | `user:password@` in URLs (scheme://user:pass@host); host kept         |
| email           | [EMAIL]       | addresses like name@example.org                                       |
| iban            | [IBAN]        | IBANs: known country code, that country's length, ISO 7064 mod-97 ok  |
| card            | [CARD]        | payment card numbers: 13–19 digits, plain or in card-style groups,    |
|                 |               | Luhn-valid, issuer prefix 2–6, not one repeated digit                 |
| ip              | [IP]          | IPv4 (each octet 0–255, not part of a longer dotted number) and IPv6  |
|                 |               | (valid for `ipaddress`; 3+ groups, or 2 with one of 3+ digits)        |
| us_ssn          | [US_SSN]      | US SSNs 123-45-6789 / 123 45 6789 (area not 000/666/9xx, group not    |
|                 |               | 00, serial not 0000), and 9 bare digits within 20 characters after    |
|                 |               | "ssn" or "social security" (Presidio's context words need an NLP model)|
| uk_nhs          | [UK_NHS]      | NHS numbers written 943 476 5919 with a valid modulus-11 check digit  |
| phone           | [PHONE]       | international (+CC ..., 8–15 digits), North American (555) 123-4567 / |
|                 |               | 1-800-555-0199 / 555.123.4567, and national numbers starting with 0   |
|                 |               | in groups (020 7946 0958, (030) 12345678, 06 12 34 56 78; 9–12 digits)|

Phone patterns need a "+" or separators in phone-like groups, so plain numbers, years, dates
("2023-05-18", "01/02/2023"), prices and ids are left alone. Card and IBAN matches must pass their
checksums, which keeps false positives on long numbers rare. SSNs and NHS numbers are looked for
before the phone layouts, which would otherwise take them (and count them as phones).

Single pass: the layouts above are the named alternatives of ONE combined pattern (`COMBINED`), in
the table's priority order, scanned once over each text, and only over windows around the characters
every match holds (a digit, "@" or ":"; `_windows`), so prose without them costs one character-class
search. A candidate's validator (checksum, structure) runs only on what the pattern matched; a rejected
candidate lets the next alternative try the same spot, and may not start again inside its own span (as
`re.sub` skips it). Where an accepted match overlaps a candidate of a kind that outranks it (a phone
layout running into an IPv6 address), the text falls back to the passes one after another
(`_sequential`), so the higher kind is never split. The last, zero-width alternative is Presidio's
pre-filter: only texts where it fires go to node/pii_patterns.py.

After this pass, `node.pii_patterns.redact_identifiers` applies Microsoft Presidio's pattern
recognizers (no NLP model) for national ids, medical licence numbers, crypto wallets and more
phone layouts, each counted under its own kind ("us_ssn", "uk_nhs", "crypto_wallet", ...). Names
are not detected: nothing here understands free text.

`redact_record(record) -> Counter` redacts a Record in place: prompt messages, responses, model
names, feedback text (critiques), every string in feedback `data` and the string leaves of `meta`.
`contact_kind(value)` says whether a contributor id is an e-mail address or phone number (refused
at import). Defence in depth for ARCHITECTURE.md invariant 1: raw text never leaves the node
anyway; redaction keeps identifiers out of the store and of any model trained on it.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter

from node.confusables import fold
from node.pii_patterns import PREFILTER, redact_identifiers
from node.schema import Record

TOKENS = {
    "url_credentials": "[CREDENTIALS]",
    "email": "[EMAIL]",
    "iban": "[IBAN]",
    "card": "[CARD]",
    "ip": "[IP]",
    "phone": "[PHONE]",
    "us_ssn": "[US_SSN]",  # the same tokens as node/pii_patterns.py's Presidio kinds
    "uk_nhs": "[UK_NHS]",
}

# IBAN lengths per country (SWIFT IBAN registry).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28,
    "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}

URL_CREDENTIALS = r"\b(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^\s/?#@:]+:[^\s/?#@]*@(?=[^\s/?#@]+)"
EMAIL = (r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
         r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}\b")
IBAN = r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"
CARD = r"(?<![\w.,-])\d(?:[ -]?\d){12,18}(?![\w]|[.,-]\d)"
OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = rf"(?<![\w.]){OCTET}(?:\.{OCTET}){{3}}(?![\w]|\.\d)"
IPV6 = r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|\d{1,3}(?:\.\d{1,3}){3})?(?![\w:])"
SSN_CONTEXT = r"(?P<pre>\b(?i:ssn|social security)\b[^\d\n]{0,20})\d{9}(?![\w]|[.,-]\d)"
SSN = r"(?<![\w+(-])(?<!\d[ .-])\d{3}(?P<sep>[- ])\d{2}(?P=sep)\d{4}(?![\w]|[ .-]?\d)"
NHS = r"(?<![\w+(-])(?<!\d[ .-])\d{3} \d{3} \d{4}(?![\w]|[ .-]?\d)"
PHONE_INTL = r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,6}(?![\w]|[.-]?\d)"
PHONE_NANP = r"(?<![\w+(-])(?:1[-. ])?(?:\(\d{3}\) ?|\d{3}[-. ])\d{3}[-. ]\d{4}(?![\w]|[.-]?\d)"
PHONE_NATIONAL = r"(?<![\w+./-])(?:0\d{1,4}|\(0\d{1,4}\))(?:[ /-]\d{2,8}){1,4}(?![\w]|[./-]?\d)"


def _digits(s: str) -> str:
    return re.sub(r"\D", "", s)


def luhn_ok(number: str) -> bool:
    """The Luhn check digit holds (ISO/IEC 7812-1 Annex B; H. P. Luhn, US patent 2,950,048, https://patents.google.com/patent/US2950048A)."""
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    """A known country's IBAN length and ISO 13616 check digits: the rearranged number, read in base 36,
    is 1 mod 97 (ISO/IEC 7064 MOD 97-10, https://www.iso.org/standard/31531.html)."""
    s = candidate.replace(" ", "").upper()
    if IBAN_LENGTHS.get(s[:2]) != len(s):
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _card_ok(m: re.Match) -> bool:
    d = _digits(m.group())
    seps = set(re.sub(r"\d", "", m.group()))
    if len(seps) > 1:
        return False
    if seps:  # grouped as cards print them: 4-4-4-4(-3), or Amex/Diners 4-6-5 / 4-6-4
        groups = [len(g) for g in re.split(r"[ -]", m.group())]
        if not (all(g == 4 for g in groups[:-1]) and 1 <= groups[-1] <= 4) and groups not in ([4, 6, 5], [4, 6, 4]):
            return False
    return 13 <= len(d) <= 19 and d[0] in "23456" and len(set(d)) > 1 and luhn_ok(d)


def _ipv6_ok(m: re.Match) -> bool:
    s = m.group()
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return False
    groups = [g for g in re.split(r"[:.]", s) if g]
    return len(groups) >= 3 or (len(groups) == 2 and max(map(len, groups)) >= 3)


def _ssn_ok(m: re.Match) -> bool:
    """A US SSN's structure (SSA): area not 000, 666 or 9xx (9xx are ITINs, left to Presidio), group not
    00, serial not 0000."""
    d = _digits(m.group()[len(m.groupdict().get("pre") or ""):])
    return d[:3] not in ("000", "666") and d[0] != "9" and d[3:5] != "00" and d[5:] != "0000"


def _nhs_ok(m: re.Match) -> bool:
    """The NHS number's modulus-11 check digit (NHS Data Dictionary)."""
    d = [int(c) for c in _digits(m.group())]
    r = 11 - sum(x * w for x, w in zip(d, range(10, 1, -1))) % 11
    return r != 10 and d[9] == (0 if r == 11 else r)


def _phone_intl_ok(m: re.Match) -> bool:
    return 8 <= len(_digits(m.group())) <= 15


def _phone_national_ok(m: re.Match) -> bool:
    return 9 <= len(_digits(m.group())) <= 12


# The alternatives of the one combined pattern, in priority order: (group, kind, pattern, validator).
# SSNs and NHS numbers come before the phone layouts, which would otherwise take them.
ALTERNATIVES = (
    ("url_credentials", "url_credentials", URL_CREDENTIALS, None),
    ("email", "email", EMAIL, None),
    ("iban", "iban", IBAN, lambda m: iban_ok(m.group())),
    ("card", "card", CARD, _card_ok),
    ("ipv4", "ip", IPV4, None),
    ("ipv6", "ip", IPV6, _ipv6_ok),
    ("ssn_context", "us_ssn", SSN_CONTEXT, _ssn_ok),
    ("ssn", "us_ssn", SSN, _ssn_ok),
    ("nhs", "uk_nhs", NHS, _nhs_ok),
    ("phone_intl", "phone", PHONE_INTL, _phone_intl_ok),
    ("phone_nanp", "phone", PHONE_NANP, None),
    ("phone_national", "phone", PHONE_NATIONAL, _phone_national_ok),
)
_ALT = {g: (kind, re.compile(p), ok) for g, kind, p, ok in ALTERNATIVES}
_ORDER = [g for g, *_ in ALTERNATIVES]
_BODY = "|".join(f"(?P<{g}>{p})" for g, _, p, _ in ALTERNATIVES)
# The last, zero-width alternative marks a text that node/pii_patterns.py's Presidio recognizers must see.
COMBINED = re.compile(f"{_BODY}|(?P<presidio>(?={PREFILTER.pattern}))")
COMBINED_NO_PRESIDIO = re.compile(_BODY)
# The alternatives that outrank each one: a match that one of them overlaps falls back to `_sequential`.
_HIGHER = {g: re.compile("|".join(f"(?:{p})" for _, _, p, _ in ALTERNATIVES[:i])) for i, (g, *_) in enumerate(ALTERNATIVES) if i}
# A shape every match of COMBINED holds (each alternative's, and the Presidio pre-filter's): "@" (e-mail,
# credentials), "://", a dotted or double-colon group, a country code and check digits (IBAN; Italian fiscal
# code), "+" and a digit, a national trunk prefix before a separator, six digits with single separators
# (cards, SSNs, NHS numbers, North American phones, the pre-filter's runs), a Base58 or Bech32 wallet's
# start. A text where none is found is returned as it is after one search. Written as one character class
# (each shape's first character, so that the regex engine skips every other character fast) followed by
# the shapes' rests, each behind a lookbehind for its own first character. tests/node/
# test_redact_single_pass.py checks that it is found wherever COMBINED matches.
NECESSARY = re.compile(r"[@:+\dA-Zb](?:(?<=@)|(?<=:)//|(?<=:)[0-9A-Fa-f]{0,4}:|(?<=\d)\.\d|(?<=[A-Z])[A-Z]\d\d|(?<=\+)\d"
                       r"|(?<=0)\d{1,4}\)?[ /-]\d\d|(?<=\d)(?:[\s./-]?\d){5}|(?<=[13])[1-9A-HJ-NP-Za-km-z]{25}"
                       r"|(?<=b)c1[02-9ac-hj-np-z]{11})")


def _maybe_pii(text: str) -> bool:
    """False when no layout of the module table (nor Presidio's pre-filter) can match in `text`: it holds
    no trigger character (every NECESSARY shape holds one), or no NECESSARY shape."""
    trigger = TRIGGER if text.isascii() else TRIGGER_UNICODE
    return trigger.search(text) is not None and NECESSARY.search(text) is not None


# Every alternative's match holds a digit, an "@" or a ":" (IPv6 and URL credentials) within REACH
# characters of its ends; text far from these is never scanned.
TRIGGER = re.compile(r"[0-9@:]")
TRIGGER_UNICODE = re.compile(r"[\d@:]")
REACH = 64


def _windows(text: str):
    """Spans around the trigger characters, widened by REACH and out to a space, tab or newline, so that
    no match can cross a span's ends (ends are whitespace; a match holds a trigger within REACH of each
    of its ends, or holds no whitespace)."""
    trigger = TRIGGER if text.isascii() else TRIGGER_UNICODE
    n = len(text)
    m = trigger.search(text)
    while m is not None:
        p = m.start()
        x = max(0, p - REACH)
        lo = max(text.rfind(" ", 0, x), text.rfind("\n", 0, x), text.rfind("\t", 0, x), 0)
        while True:
            hi = _space_at_or_after(text, min(n, p + REACH), n)
            m = trigger.search(text, max(p + 1, hi - REACH))
            if m is None or m.start() >= hi:
                break
            p = m.start()
        yield lo, hi


def _space_at_or_after(text: str, x: int, n: int) -> int:
    ends = [i for i in (text.find(" ", x), text.find("\n", x), text.find("\t", x)) if i >= 0]
    return min(ends) if ends else n


def _accept(text: str, m: re.Match, hi: int, blocked: dict):
    """The first alternative at m.start(), in priority order, whose match passes its validator; else None.
    A rejected alternative may not start again before its rejected match ends (as re.sub would skip it)."""
    s = m.start()
    for g in _ORDER[_ORDER.index(m.lastgroup):]:
        mm = m if g == m.lastgroup else _ALT[g][1].match(text, s, hi)
        if mm is None or s < blocked.get(g, -1):
            continue
        ok = _ALT[g][2]
        if ok is None or ok(mm):
            return g, mm
        blocked[g] = mm.end()
    return None


def _scan(text: str, counts: Counter) -> tuple[str, bool]:
    """One pass of the combined pattern: `text` with every validated match replaced, and whether a
    Presidio pre-filter shape was seen."""
    parts: list[str] = []
    last, flagged, pattern = 0, False, COMBINED
    blocked: dict[str, int] = {}
    for lo, hi in _windows(text):
        pos = max(lo, last)
        while (m := pattern.search(text, pos, hi)) is not None:
            s = m.start()
            if m.lastgroup == "presidio":
                flagged, pattern, pos = True, COMBINED_NO_PRESIDIO, s
                continue
            hit = _accept(text, m, hi, blocked)
            if hit is None:
                if not flagged and PREFILTER.match(text, s):
                    flagged, pattern = True, COMBINED_NO_PRESIDIO
                pos = s + 1
                continue
            g, mm = hit
            if g in _HIGHER and (h := _HIGHER[g].search(text, s + 1, hi)) is not None and h.start() < mm.end():
                return _sequential(text, counts)
            kind = _ALT[g][0]
            counts[kind] += 1
            parts.append(text[last:s])
            parts.append(_replacement(g, mm))
            last = pos = mm.end()
    if not parts:
        return text, flagged
    parts.append(text[last:])
    return "".join(parts), flagged


def _replacement(g: str, m: re.Match) -> str:
    kind = _ALT[g][0]
    if kind == "url_credentials":
        return m.group("scheme") + TOKENS[kind] + "@"
    return (m.group("pre") if g == "ssn_context" else "") + TOKENS[kind]


def _sequential(text: str, counts: Counter) -> tuple[str, bool]:
    """The alternatives one after the other, each over the text the previous ones left (re.sub): for the
    rare text where a match overlaps a candidate of an alternative that outranks it."""
    counts.clear()
    for g, kind, _, ok in ALTERNATIVES:
        def sub(m: re.Match, g=g, kind=kind, ok=ok) -> str:
            if ok is not None and not ok(m):
                return m.group()
            counts[kind] += 1
            return _replacement(g, m)
        text = _ALT[g][1].sub(sub, text)
    return text, PREFILTER.search(text) is not None


def redact(text: str) -> tuple[str, Counter]:
    """`text` with PII replaced by the tokens in the module table, and how many of each kind. A text with
    look-alike characters (node/confusables.py) is redacted as written, then what is left is folded and
    redacted again; the folded text is kept only when that found more (a card in full-width digits, a
    phone with en-dashes), so no identifier found as written can be lost to folding."""
    out, counts = _redact_as_written(text)
    if not out or out.isascii() or (folded := fold(out)) == out:
        return out, counts
    more_text, more = _redact_as_written(folded)
    return (more_text, counts + more) if more else (out, counts)


def _redact_as_written(text: str) -> tuple[str, Counter]:
    counts: Counter = Counter()
    if not text or not _maybe_pii(text):
        return text, counts
    text, flagged = _scan(text, counts)
    if flagged:
        text, more = redact_identifiers(text)
        counts.update(more)
    return text, counts


CONTACT = {"email": "an e-mail address", "phone": "a phone number"}


def contact_kind(value: str) -> str | None:
    """"an e-mail address" or "a phone number" when `value` holds one, else None: a contributor id that
    is a person's contact is refused at import (node/importers/common.py `Context.who`), since ids are
    stored in clear."""
    value = fold(value)  # a contact written with look-alike characters is still a contact
    if not _maybe_pii(value):
        return None  # no e-mail or phone layout can match (see NECESSARY)
    for g, kind, _, ok in ALTERNATIVES:
        if kind in CONTACT:
            for m in _ALT[g][1].finditer(value):
                if ok is None or ok(m):
                    return CONTACT[kind]
    return None


def _redact_value(value, total: Counter):
    """Strings redacted, dicts' values and lists' items recursively; anything else unchanged."""
    if isinstance(value, str):
        if not value or (value.isascii() and not _maybe_pii(value)):
            return value  # redact() would return it unchanged, with no counts (saves building a Counter)
        value, c = redact(value)
        total.update(c)
        return value
    if isinstance(value, dict):
        return {k: _redact_value(v, total) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_value(v, total) for v in value]
    return value


def redact_record(record: Record) -> Counter:
    """Redact a Record in place: prompt messages, responses and their model names, feedback text and
    every string inside feedback `data` (labels, tags, reasons, short answers), and the string leaves
    of `meta` (these are stored in clear); returns the counts per kind."""
    total: Counter = Counter()
    for m in record.prompt:
        m.text = _redact_value(m.text, total)
    for r in record.responses:
        r.text = _redact_value(r.text, total)
        if r.model:
            r.model = _redact_value(r.model, total)
    for f in record.feedback:
        if f.text:
            f.text = _redact_value(f.text, total)
        f.data = _redact_value(f.data, total)
    record.meta = _redact_value(record.meta, total)
    return total
