"""The one email predicate (engine/contact.py) and every place that validates an address with it.

Rule under test: an address is usable when it is exactly one plain address, local@domain.tld:
no display name, no list, no white space or line break, a domain of letters, digits and inner
hyphens with at least one dot. Imports, patron edits, the policy's sender and the last guard
before a server all answer the same.
"""
from __future__ import annotations

import pytest

from adapters import render
from engine.contact import is_email_address

GOOD = [
    "camille.exemple@example.org",
    "thomas@etu.univ.example",
    "prenom.nom+rappels@bu.univ-bordeaux.fr",
    "o'brien@example.ie",
    "x@a.b.c.example",
    "DUPONT@EXAMPLE.FR",
    "123@456.example",
]

BAD = [
    ("", "empty"),
    (None, "none at all"),
    ("camille.exemple", "no @"),
    ("camille@example", "a domain without a dot"),
    ("@example.org", "no local part"),
    ("camille@", "no domain"),
    ("camille@@example.org", "two @"),
    ("camille@exa@mple.org", "two @, apart"),
    ("Camille <camille@example.org>", "a display name"),
    ("<camille@example.org>", "angle brackets"),
    ("camille@example.org, thomas@example.org", "a list"),
    ("camille@example.org;thomas@example.org", "a list with a semicolon"),
    ("camille exemple@example.org", "a space in the local part"),
    (" camille@example.org", "a leading space"),
    ("camille@example.org ", "a trailing space"),
    ("camille@example.org\n", "a trailing line break"),
    ("camille@example.org\r\nBcc: x@evil.example", "a header after a line break"),
    ("camille@exam ple.org", "a space in the domain"),
    ("camille@-example.org", "a domain label starting with a hyphen"),
    ("camille@example-.org", "a domain label ending with a hyphen"),
    ("camille@example..org", "an empty domain label"),
    ("camille@example.org.", "a trailing dot"),
    ("camille@exam_ple.org", "an underscore in the domain"),
    ('"camille"@example.org', "a quoted local part"),
    ("camille(bu)@example.org", "a comment"),
    ("camille@[192.0.2.1]", "an address literal"),
]


@pytest.mark.parametrize("address", GOOD)
def test_a_plain_address_is_usable(address):
    assert is_email_address(address)


@pytest.mark.parametrize("address, why", BAD, ids=[why for _, why in BAD])
def test_anything_else_is_not(address, why):
    assert not is_email_address(address), why


def test_the_renderer_asks_the_same_question():
    assert render.is_address is is_email_address


# -- where addresses are validated: each place gives the predicate's answer ---------------------

def test_a_patron_edit_refuses_what_the_predicate_refuses():
    from engine.accounts import value_problems
    from engine.facts import Patron

    for address in GOOD:
        assert "email" not in value_problems(None, {"email": address}, Patron("P1"))
    for address, why in BAD:
        if address and "\n" not in address:   # line breaks have their own message
            assert value_problems(None, {"email": address}, Patron("P1"))["email"] == \
                f"{address!r} is not an email address", why


@pytest.mark.parametrize("sender, good", [
    ("Service du contentieux <contentieux@univ.example>", True),
    ("contentieux@univ.example", True),
    ("Service du contentieux <contentieux@univ>", False),
    ("Service du contentieux <contentieux@univ..example>", False),
    ("Service du contentieux", False),
])
def test_the_policy_sender_is_checked_inside_its_display_name(sender, good):
    from pydantic import ValidationError

    from engine.policy import Sender

    if good:
        assert Sender.model_validate({"from": sender, "reply_to": sender}).from_ == sender
    else:
        with pytest.raises(ValidationError, match="is not an email address"):
            Sender.model_validate({"from": sender, "reply_to": "contentieux@univ.example"})
