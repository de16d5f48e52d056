"""Single-pass redaction (node/redact.py): one combined pattern over the text's trigger windows, validators
only on its candidates, Presidio only when its pre-filter shape is seen. The cases are the ones a window or
a combined alternation could get wrong: PII far into long texts, context words far from the digits, an
alternative rejected by its checksum, overlapping candidates of different kinds, non-ASCII text."""

from __future__ import annotations

import pytest

import node.redact as redact_mod
from node.redact import redact

FILLER = "the quick brown fox jumps over the lazy dog " * 30


@pytest.mark.parametrize("text,expected,counts", [
    (FILLER + "mail jo.doe@example.org now " + FILLER, FILLER + "mail [EMAIL] now " + FILLER, {"email": 1}),
    (FILLER + "ssn" + " " * 18 + "078051120 ok", FILLER + "ssn" + " " * 18 + "[US_SSN] ok", {"us_ssn": 1}),
    ("router dead:beef::cafe is up", "router [IP] is up", {"ip": 1}),
    ("café, écrivez à jo@example.org ou 536-22-8734", "café, écrivez à [EMAIL] ou [US_SSN]", {"email": 1, "us_ssn": 1}),
    ("4111 1111 1111 1112 then 4111 1111 1111 1111", "4111 1111 1111 1112 then [CARD]", {"card": 1}),
    ("user jo@example.org:8080 at postgres://a:b@db.example.com",
     "user [EMAIL]:8080 at postgres://[CREDENTIALS]@db.example.com", {"email": 1, "url_credentials": 1}),
    (FILLER + "wallet 1BoatSLRHtKNngkdXEeobR76b53LETtpyT " + FILLER,
     FILLER + "wallet [CRYPTO_WALLET] " + FILLER, {"crypto_wallet": 1}),
    ("12:30, 1.2.3.4.5 and 2023-05-18", "12:30, 1.2.3.4.5 and 2023-05-18", {}),
])
def test_single_pass_cases(text, expected, counts):
    assert redact(text) == (expected, counts)


def test_overlap_with_a_higher_priority_kind_leaks_nothing():
    """A phone layout that runs into an IPv6 address: the address (higher priority) is still redacted whole."""
    new, counts = redact("+44 20 7946 0958(2001:db8::8a2e:370:7334")
    assert "8a2e" not in new and "7946" not in new and counts["ip"] == 1 and counts["phone"] == 1


def test_windows_cover_every_trigger():
    text = ("x" * 500 + " ") * 3 + "a@b.io" + " y" * 300 + " 8.8.8.8"
    spans = list(redact_mod._windows(text))
    assert all(text[hi] in " \n\t" for _, hi in spans if hi < len(text))
    for i, ch in enumerate(text):
        if ch in "0123456789@:":
            assert any(lo <= i < hi for lo, hi in spans)
    assert redact(text)[1] == {"email": 1, "ip": 1}


def test_presidio_runs_only_when_its_shape_is_seen(monkeypatch):
    calls = []
    monkeypatch.setattr(redact_mod, "redact_identifiers", lambda t: (calls.append(t), (t, {}))[1])
    redact("plain prose, a time 12:30, a price of 4.50 and jo@example.org")
    assert calls == []
    redact("order 20230518-0042 shipped")
    assert len(calls) == 1


def test_the_necessary_shape_holds_wherever_the_combined_pattern_matches():
    """redact() returns a text unscanned when NECESSARY finds nothing in it, so NECESSARY must be found in
    every text where any alternative (or the Presidio pre-filter) matches, validators aside: random texts
    dense in digits, separators, "@", ":", "+", "(", hex letters and capitals."""
    import random

    rng = random.Random(16)
    alphabet = "0123456789" * 6 + " -./:@+()_\n" * 2 + "abcdefABCDEFGHXYZ" + "٣"  # an Arabic-Indic digit too
    found = 0
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        m = redact_mod.COMBINED.search(text)
        if m is not None:
            found += 1
            assert redact_mod.NECESSARY.search(text) is not None, text
        if redact_mod.NECESSARY.search(text) is None:
            assert redact(text) == (text, {})
    assert found > 2000  # the texts exercise the pattern


def test_text_without_the_necessary_shape_is_left_as_it_is():
    assert redact_mod.NECESSARY.search("question 17: how do I sort 42 items by key?") is None
    for text in ("a@b.io", "postgres://a:b@h", "GB82 WEST 1234 5698 7654 32", "8.8.8.8", "fe80::1", "+44 20 7946 0958",
                 "020 7946 0958", "(030) 12345678", "536-22-8734", "4111111111111111",
                 "1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "RSSMRA85T10A562S"):
        assert redact_mod.NECESSARY.search(text) is not None, text
