"""Identifiers written with look-alike characters are redacted (node/confusables.py, node/redact.py); found
by the adversarial review of the single-pass redactor (every one of these was stored as written)."""

import pytest

from node.confusables import fold
from node.redact import contact_kind, redact

DISGUISED = [
    ("pay with ４１１１ １１１１ １１１１ １１１１ ok", "card"),  # full-width digits
    ("card 4111\u00a01111\u00a01111\u00a01111", "card"),  # no-break spaces
    ("c 4111\u200b1111\u200b1111\u200b1111 x", "card"),  # zero-width spaces
    ("card ٤١١١١١١١١١١١١١١١ x", "card"),  # Arabic-Indic digits
    ("mail jo＠example.org now", "email"),  # full-width at sign
    ("mail ｊｏ@example.org now", "email"),  # full-width letters
    ("call ＋44 20 7946 0958", "phone"),  # full-width plus
    ("call 555–123–4567 now", "phone"),  # en-dashes
    ("call +44\u202f20\u202f7946\u202f0958", "phone"),  # narrow no-break spaces
]


@pytest.mark.parametrize("text, kind", DISGUISED)
def test_a_disguised_identifier_is_redacted(text, kind):
    out, counts = redact(text)
    assert counts[kind] == 1, (text, out)
    assert not any(c.isdigit() for c in out) and "example.org" not in fold(out)  # nothing of it is left


def test_text_without_identifiers_keeps_its_characters():
    for text in ("Café au lait à 3 €, rien d’autre — merci\u202f!", "２０２６年１２月", "価格は５００円です"):
        assert redact(text) == (text, {})


def test_an_identifier_written_plainly_keeps_the_rest_of_the_text_as_written():
    out, counts = redact("Café — carte 4111 1111 1111 1111, merci\u202f!")
    assert out == "Café — carte [CARD], merci\u202f!" and counts == {"card": 1}


def test_a_contributor_id_that_is_a_disguised_contact_is_refused():
    assert contact_kind("jo＠example.org") == "an e-mail address"
    assert contact_kind("＋44 20 7946 0958") == "a phone number"
    assert contact_kind("member-７") is None


def test_fold_maps_look_alikes_and_leaves_ascii_alone():
    assert fold("ab-12 x@y") == "ab-12 x@y"
    assert fold("４\u00a0٤\u2013\u200b५") == "4 4-5"


def test_identifiers_found_as_written_and_after_folding_are_all_redacted():
    out, counts = redact("card 4111 1111 1111 1111, mail jo＠example.org, call 555–123–4567")
    assert counts == {"card": 1, "email": 1, "phone": 1}
    assert out == "card [CARD], mail [EMAIL], call [PHONE]"
