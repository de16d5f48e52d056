"""Presidio's pattern recognizers (no NLP model) in redaction: the identifiers they know are
replaced and counted per kind, checksums are honoured (random valid numbers all caught, invalid
ones left alone), numbers inside other numbers are not, and status shows the counts per kind."""

import json
import random
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cairn.cli import cli
from node.pii_patterns import PREFILTER, _load, redact_identifiers
from node.redact import redact


@pytest.mark.parametrize("text,kind,expected", [
    ("My SSN is 536-22-8734.", "us_ssn", "My SSN is [US_SSN]."),
    ("NHS no. 9434765919 on file", "uk_nhs", "NHS no. [UK_NHS] on file"),
    ("DEA number AB1234563", "medical_license", "DEA number [MEDICAL_LICENSE]"),
    ("send it to 1BoatSLRHtKNngkdXEeobR76b53LETtpyT now", "crypto_wallet", "send it to [CRYPTO_WALLET] now"),
    ("codice fiscale RSSMRA85T10A562S", "it_fiscal_code", "codice fiscale [IT_FISCAL_CODE]"),
    ("DNI 12345678Z", "es_nif", "DNI [ES_NIF]"),
    ("PESEL 44051401359", "pl_pesel", "PESEL [PL_PESEL]"),
    ("Aadhaar 2345 6789 0124", "in_aadhaar", "Aadhaar [IN_AADHAAR]"),
    ("NINO AB 12 34 56 C", "uk_nino", "NINO [UK_NINO]"),
    ("call +44 (0)20 7946 0958 today", "phone", "call [PHONE] today"),
])
def test_identifiers_redacted_and_counted(text, kind, expected):
    new, counts = redact(text)
    assert new == expected and counts == {kind: 1}


@pytest.mark.parametrize("text", [
    "pi is 3.14159265358979 and e = 2.718281828459045",
    "That's 0.1666666667 text messages; the final answer: 7800000000.",
    "the Salem trials of 1692/93, and 1692-1693",
    "NHS no. 9434765918 (bad check digit)",
    "build 20230518 of version 1.2.3",
    "a name like John Smith is not detected",  # names: no NLP model, so never
])
def test_negatives(text):
    assert redact_identifiers(text) == (text, {})


def nhs(rng):
    while True:
        d = [rng.randrange(10) for _ in range(9)]
        r = 11 - sum(x * w for x, w in zip(d, range(10, 1, -1))) % 11
        if r != 10:
            return "".join(map(str, d)) + str(0 if r == 11 else r)


def test_checksum_statistics():
    """200 random valid NHS numbers are all redacted (a 10-digit number can also pass another country's
    checksum, e.g. Australian Medicare; then that kind is counted); with a wrong check digit, never as uk_nhs."""
    rng = random.Random(7)
    caught = wrong = 0
    for _ in range(200):
        n = nhs(rng)
        new, c = redact_identifiers(f"patient {n} seen")
        caught += n not in new and sum(c.values()) == 1
        bad = n[:9] + str((int(n[9]) + 1 + rng.randrange(9)) % 10)
        _, c = redact_identifiers(f"patient {bad} seen")
        wrong += c.get("uk_nhs", 0)
    assert caught == 200 and wrong == 0


def test_no_nlp_model_is_loaded():
    eng = _load()
    assert type(eng.nlp_engine).__name__ == "NoOpNlpEngine"
    assert not any(m.startswith(("en_core_web", "spacy_transformers")) for m in sys.modules)
    assert all(type(r).__name__ != "SpacyRecognizer" for r in eng.registry.recognizers)


def test_prefilter_skips_plain_text():
    assert not PREFILTER.search("In 2023 I bought 3 apples for $4.50 at 10:30")
    assert PREFILTER.search("id 536-22-8734") and PREFILTER.search("RSSMRA85T10A562S")


def test_status_counts_per_kind(tmp_path):
    d, f = tmp_path / "n", tmp_path / "c.jsonl"
    rows = [{"id": "1", "messages": [{"role": "user", "content": "my SSN is 536-22-8734, wallet 1BoatSLRHtKNngkdXEeobR76b53LETtpyT"},
                                     {"role": "assistant", "content": "noted"}], "user": "u", "thumbs": "up"}]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = CliRunner()
    assert r.invoke(cli, ["node", "init", str(d), "--name", "x"]).exit_code == 0
    assert r.invoke(cli, ["node", "import", str(d), str(f)]).exit_code == 0
    st = json.loads(r.invoke(cli, ["node", "status", str(d), "--json"]).output)
    assert st["redactions"] == {"us_ssn": 1, "crypto_wallet": 1}
    assert b"536-22-8734" not in b"".join(p.read_bytes() for p in Path(d).rglob("*") if p.is_file())
