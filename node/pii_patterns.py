"""Identifiers that need a country's rules: Microsoft Presidio's pattern recognizers, no NLP model.

`node/redact.py` handles what a regular expression with a checksum finds everywhere (e-mails, cards,
IBANs, IPs, common phone layouts). This module adds the identifiers Presidio's predefined
recognizers know (https://microsoft.github.io/presidio/supported_entities/): national ids (US SSN
and ITIN, UK NHS number and National Insurance number, Italian fiscal code, Spanish NIF/NIE, Polish
PESEL, Finnish and Swedish personal codes, Indian Aadhaar and PAN, Singapore NRIC/FIN, Australian
TFN and Medicare, Korean RRN), US medical licence (DEA) numbers, NPI and Medicare ids, crypto
wallet (Bitcoin) addresses, and phone numbers in the many layouts Google's libphonenumber knows.

Presidio runs with its no-op NLP engine (`NoOpNlpEngine`): only pattern and checksum recognizers,
no spaCy model is loaded or downloaded, and so **names and other free-text identifiers are not
detected**. Its import pulls spaCy; the optional `transformers`/`torch` back-ends it can use are
kept out (`_load`), so the first use costs a few seconds, once per process.

Speed: Presidio costs milliseconds a text, so it runs only on texts that `PREFILTER` flags (six
digits in a row, allowing single separators; a Base58/Bech32 wallet-like token; an Italian fiscal
code shape; node/redact.py's one combined pattern carries it as its last alternative), and only on
windows around the flagged spots. Every identifier above has at least one of these shapes. The
recognizers are called directly (no AnalyzerEngine pass: with the no-op NLP engine it adds no
context, only overhead), and libphonenumber only sees windows with a phone's shape (`PHONE_SHAPE`).
"""

from __future__ import annotations

import logging
import re
import sys
from collections import Counter
from typing import Any

# Presidio recognizer class -> the kind counted in status (and the token is "[" + KIND.upper() + "]").
RECOGNIZERS = {
    "UsSsnRecognizer": "us_ssn",
    "UsItinRecognizer": "us_itin",
    "NhsRecognizer": "uk_nhs",
    "UkNinoRecognizer": "uk_nino",
    "ItFiscalCodeRecognizer": "it_fiscal_code",
    "EsNifRecognizer": "es_nif",
    "EsNieRecognizer": "es_nie",
    "PlPeselRecognizer": "pl_pesel",
    "FiPersonalIdentityCodeRecognizer": "fi_personal_identity_code",
    "SePersonnummerRecognizer": "se_personnummer",
    "InAadhaarRecognizer": "in_aadhaar",
    "InPanRecognizer": "in_pan",
    "SgFinRecognizer": "sg_nric_fin",
    "AuTfnRecognizer": "au_tfn",
    "AuMedicareRecognizer": "au_medicare",
    "KrRrnRecognizer": "kr_rrn",
    "MedicalLicenseRecognizer": "medical_license",
    "UsNpiRecognizer": "us_npi",
    "UsMbiRecognizer": "us_mbi",
    "CryptoRecognizer": "crypto_wallet",
    "PhoneRecognizer": "phone",
}
SCORE_THRESHOLD = 0.4  # Presidio's own scores: checksum-validated 1.0, pattern-only 0.3-0.5, phone 0.4
PREFILTER = re.compile(r"\d(?:[\s./-]?\d){5}|\b(?:[13][1-9A-HJ-NP-Za-km-z]{25,34}|bc1[02-9ac-hj-np-z]{11,71})\b"
                       r"|\b[A-Z]{6}\d{2}[A-Z]\d{2}[A-Z]\d{3}[A-Z]\b")

# libphonenumber's matches pass `_phone_ok` only when they start with "+" or "(", or hold three digit
# groups split by one separator: a window without either shape is not given to the (slow) PhoneRecognizer.
PHONE_SHAPE = re.compile(r"[+(]|\d([ .-])\d+\1\d")

_engine: Any = None
_recognizers: list = []
_entity_kind: dict[str, str] = {}


def _import_presidio():
    """Import Presidio without its optional transformers/torch back-ends (not used by pattern recognizers)."""
    blocked = [m for m in ("transformers", "torch") if m not in sys.modules]
    for m in blocked:
        sys.modules[m] = None  # type: ignore[assignment]  # makes `import m` raise ImportError, which Presidio guards
    try:
        import presidio_analyzer
        import presidio_analyzer.predefined_recognizers as predefined
        from presidio_analyzer.nlp_engine import NoOpNlpEngine
    except ImportError:
        for m in blocked:
            sys.modules.pop(m, None)
        blocked = []
        import presidio_analyzer
        import presidio_analyzer.predefined_recognizers as predefined
        from presidio_analyzer.nlp_engine import NoOpNlpEngine
    finally:
        for m in blocked:
            if sys.modules.get(m, 0) is None:
                del sys.modules[m]
    return presidio_analyzer, predefined, NoOpNlpEngine


def _load():
    """The AnalyzerEngine: the no-op NLP engine and only the pattern recognizers of RECOGNIZERS."""
    global _engine
    if _engine is None:
        logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
        pa, predefined, NoOpNlpEngine = _import_presidio()
        registry = pa.RecognizerRegistry(supported_languages=["en"])
        for cls_name, kind in RECOGNIZERS.items():
            rec = getattr(predefined, cls_name)(supported_language="en")
            registry.add_recognizer(rec)
            _recognizers.append(rec)
            for entity in rec.supported_entities:
                _entity_kind[entity] = kind
        nlp = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "no_op"}])
        _engine = pa.AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["en"])
    return _engine


WINDOW = 48  # characters of context kept around each pre-filter hit (identifiers are shorter than this)


def _windows(text: str) -> list[tuple[int, int]]:
    """The merged spans around pre-filter hits, widened to whitespace, that Presidio looks at."""
    spans: list[list[int]] = []
    for m in PREFILTER.finditer(text):
        lo, hi = max(0, m.start() - WINDOW), min(len(text), m.end() + WINDOW)
        while lo > 0 and not text[lo - 1].isspace() and m.start() - lo < 2 * WINDOW:
            lo -= 1
        while hi < len(text) and not text[hi].isspace() and hi - m.end() < 2 * WINDOW:
            hi += 1
        if spans and lo <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], hi)
        else:
            spans.append([lo, hi])
    return [(lo, hi) for lo, hi in spans]


def _standalone(text: str, start: int, end: int) -> bool:
    """The finding is a whole token, not digits inside a longer number or word (3.14159265358979...)."""
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    if before.isalnum() or after.isalnum() or before == "_" or after == "_":
        return False
    if before in ".,-" and start > 1 and text[start - 2].isdigit():
        return False
    return not (after in ".,-" and end + 1 < len(text) and text[end + 1].isdigit())


def _phone_ok(s: str) -> bool:
    """libphonenumber accepts many bare numbers (10 digits, "0.1666666667", "1692/93"): keep only numbers
    written as phone numbers: a "+" or "(" prefix, or three or more digit groups split by one separator."""
    digits = sum(c.isdigit() for c in s)
    if not 9 <= digits <= 15 or "/" in s:
        return False
    if s.startswith(("+", "(")):
        return True
    seps = set(re.findall(r"[^\d]+", s))
    return len(seps) == 1 and seps <= {" ", "-", "."} and len(re.findall(r"\d+", s)) >= 3


def token(kind: str) -> str:
    """The placeholder a redacted identifier of this kind becomes ("[PHONE]", "[US_SSN]", ...)."""
    return f"[{kind.upper()}]"


def redact_identifiers(text: str) -> tuple[str, Counter]:
    """`text` with the identifiers Presidio's pattern recognizers find replaced, and counts per kind."""
    counts: Counter = Counter()
    if not text or not PREFILTER.search(text):
        return text, counts
    results = []
    engine = _load()
    for lo, hi in _windows(text):
        window = text[lo:hi]
        artifacts = engine.nlp_engine.process_text(window, "en")
        for rec in _recognizers:
            if rec.name == "PhoneRecognizer" and not PHONE_SHAPE.search(window):
                continue
            for r in rec.analyze(text=window, entities=rec.supported_entities, nlp_artifacts=artifacts) or ():
                if r.score >= SCORE_THRESHOLD:
                    r.start, r.end = r.start + lo, r.end + lo
                    results.append(r)
    # keep the best-scoring, then longest, of overlapping findings; replace from the end
    chosen: list = []
    for r in sorted(results, key=lambda r: (-r.score, -(r.end - r.start), r.start)):
        ok = _phone_ok(text[r.start:r.end]) if r.entity_type == "PHONE_NUMBER" else True
        if ok and _standalone(text, r.start, r.end) and all(r.end <= c.start or r.start >= c.end for c in chosen):
            chosen.append(r)
    for r in sorted(chosen, key=lambda r: r.start, reverse=True):
        kind = _entity_kind.get(r.entity_type, r.entity_type.lower())
        text = text[:r.start] + token(kind) + text[r.end:]
        counts[kind] += 1
    return text, counts
