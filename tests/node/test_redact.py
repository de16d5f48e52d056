"""PII redaction: what must be caught, what must be left alone, checksums, and the shared data."""

from __future__ import annotations

from collections import Counter

import pytest

from node.redact import iban_ok, luhn_ok, redact, redact_record
from node.schema import Feedback, Message, Record, Response


@pytest.mark.parametrize("text,kind,expected", [
    ("write to jo.doe@example.org today", "email", "write to [EMAIL] today"),
    ("CC: A.B-c+tag@mail.uni-heidelberg.de.", "email", "CC: [EMAIL]."),
    ("call +44 20 7946 0958 now", "phone", "call [PHONE] now"),
    ("+1 (415) 555-2671", "phone", "[PHONE]"),
    ("+49 30 901820", "phone", "[PHONE]"),
    ("ring (555) 123-4567", "phone", "ring [PHONE]"),
    ("ring 555-123-4567.", "phone", "ring [PHONE]."),
    ("ring 555.123.4567", "phone", "ring [PHONE]"),
    ("Tel. 020 7946 0958", "phone", "Tel. [PHONE]"),
    ("toll-free 1-800-555-0199", "phone", "toll-free [PHONE]"),
    ("Büro (030) 12345678", "phone", "Büro [PHONE]"),
    ("Tel 030/1234567", "phone", "Tel [PHONE]"),
    ("portable 06 12 34 56 78", "phone", "portable [PHONE]"),
    ("server 192.168.1.10 is down", "ip", "server [IP] is down"),
    ("from 8.8.8.8, then", "ip", "from [IP], then"),
    ("v6 2001:db8::8a2e:370:7334 here", "ip", "v6 [IP] here"),
    ("link fe80::1ff:fe23:4567:890a%", "ip", "link [IP]%"),
    ("postgres://admin:hunter2@db.example.com:5432/app", "url_credentials",
     "postgres://[CREDENTIALS]@db.example.com:5432/app"),
    ("pay with 4111 1111 1111 1111 please", "card", "pay with [CARD] please"),
    ("4111-1111-1111-1111", "card", "[CARD]"),
    ("5500005555555559", "card", "[CARD]"),
    ("amex 3782 822463 10005", "card", "amex [CARD]"),
    ("IBAN GB82 WEST 1234 5698 7654 32.", "iban", "IBAN [IBAN]."),
    ("DE89370400440532013000", "iban", "[IBAN]"),
    ("FR14 2004 1010 0505 0001 3M02 606", "iban", "[IBAN]"),
])
def test_positives(text, kind, expected):
    new, counts = redact(text)
    assert new == expected
    assert counts == Counter({kind: 1})


@pytest.mark.parametrize("text", [
    "In 2023 the town had 12,345 residents.",
    "Years 1999 2000 2001 2002 were busy.",
    "between 1990-1995 and on 2023-05-18 or 01/02/2023 at 10:30:00",
    "ISBN 978-3-16-148410-0 costs $1299.99",
    "order id 12345678901234 and 4111111111111112 (bad Luhn)",
    "4111 1111 1111 1112",
    "0000 0000 0000 0000",
    "DE89370400440532013001 fails mod-97; XX12345678901234 is no country",
    "the version is 1.2.3.4.5 and 300.1.1.1 is not an address",
    "use std::vector and a::b, map 12:30",
    "actions/checkout@v2 and user@localhost",
    "https://example.com/a@b and name at example dot com",
    "pi is 3.14159265358979 and e = 2.718281828459045",
    "Call 911 or 112. Room 101, ext. 4567.",
    "Coordinates 51.5074, -0.1278",
    "0 - 0 draw; score 3-1",
])
def test_negatives(text):
    new, counts = redact(text)
    assert new == text and not counts


def test_checksums():
    assert luhn_ok("4111111111111111") and luhn_ok("79927398713")
    assert not luhn_ok("4111111111111112") and not luhn_ok("79927398710")
    assert iban_ok("GB82 WEST 1234 5698 7654 32") and iban_ok("NL91ABNA0417164300")
    assert not iban_ok("GB82 WEST 1234 5698 7654 33") and not iban_ok("NL91ABNA041716430")  # checksum, length


def test_several_kinds_in_one_text():
    new, counts = redact("Mail a@b.io or c@d.org, call +33 6 12 34 56 78, card 4242 4242 4242 4242.")
    assert new == "Mail [EMAIL] or [EMAIL], call [PHONE], card [CARD]."
    assert counts == {"email": 2, "phone": 1, "card": 1}


def test_redact_record_in_place():
    rec = Record("openai", "k", [Message("user", "I am x@y.com")], [Response("Noted: x@y.com, 8.8.4.4", "m")],
                 [Feedback("critique", "c", {"response": 0}, text="it repeated my number +1 415 555 2671"),
                  Feedback("thumbs", "c", {"response": 0, "value": 1})])
    counts = redact_record(rec)
    assert counts == {"email": 2, "ip": 1, "phone": 1}
    assert rec.prompt[0].text == "I am [EMAIL]"
    assert rec.responses[0].text == "Noted: [EMAIL], [IP]" and rec.responses[0].model == "m"
    assert rec.feedback[0].text == "it repeated my number [PHONE]"


def test_shared_datasets_redaction_counts(shared_data):
    """The shared data holds very little PII; these are the counts reviewed by hand (true positives:
    one business phone number repeated in PandaLM/Tulu prompts, one example address in a code answer)."""
    from node.importers import read_records

    files = {
        "pandalm-human-testset/testset-v1.shared.jsonl.gz": {"phone": 7},
        "tulu1-human-eval/eval_annotations_tulu_1.shared.jsonl.gz": {"phone": 3, "email": 1},
        "finegrained-rlhf-qa-feedback/dev_feedback.shared.jsonl.gz": {},
        "oasst-en-100-trees/en_100_tree.shared.jsonl.gz": {},
    }
    for name, expected in files.items():
        total = Counter()
        for item in read_records(shared_data / name, contributor="c"):
            total += redact_record(item[1])
        assert total == Counter(expected), name
