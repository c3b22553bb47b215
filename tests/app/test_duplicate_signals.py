"""The text rules behind duplicate candidates: names compared as people write them, and
address changes announced in the common languages (and nothing else taken for one)."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from app.services.duplicate_signals import announced_addresses, name_key


@pytest.mark.parametrize(
    "a, b",
    [
        ("Rory Adams", "Adams, Rory"),
        ("Rory Adams", "Dr. Rory ADAMS"),
        ("Zoë Müller", "Zoe Muller"),
        ('"Rory Adams"', "rory  adams"),
        ("Rory Adams Jr.", "Rory Adams"),
    ],
)
def test_the_same_name_written_differently_has_one_key(a, b):
    assert name_key(a) == name_key(b) is not None


@pytest.mark.parametrize("name", ["Rory", "", None, "rory@acme.com", "Dr. Rory", "  "])
def test_a_name_too_thin_to_tell_people_apart_has_no_key(name):
    assert name_key(name) is None


def test_different_people_sharing_a_first_name_have_different_keys():
    assert name_key("Rory Smith") != name_key("Rory Jones")


@pytest.mark.parametrize(
    "snippet, address",
    [
        ("Hi all, my new email address is Rory@Gmail.com, please update.", "rory@gmail.com"),
        ("Please use <r.adams@newco.io> from now on", "r.adams@newco.io"),
        ("I have moved to rory@newco.com.", "rory@newco.com"),
        ("My address has changed to mailto:rory@newco.com", "rory@newco.com"),
        ("You can now reach me at rory@home.example", "rory@home.example"),
        ("Meine neue E-Mail-Adresse lautet: rory@web.de", "rory@web.de"),
        ("Bitte verwenden Sie ab sofort rory@firma.de", "rory@firma.de"),
        ("Ma nouvelle adresse e-mail est rory@free.fr", "rory@free.fr"),
        ("Merci d'utiliser désormais rory@societe.fr", "rory@societe.fr"),
        ("Mi nueva dirección de correo es rory@empresa.es", "rory@empresa.es"),
        ("Il mio nuovo indirizzo email è rory@azienda.it", "rory@azienda.it"),
        ("Mijn nieuwe e-mailadres is rory@bedrijf.nl", "rory@bedrijf.nl"),
        ("Meu novo endereço de e-mail é rory@empresa.pt", "rory@empresa.pt"),
    ],
)
def test_an_announced_address_change_is_read_in_several_languages(snippet, address):
    assert announced_addresses(snippet) == [address]


@pytest.mark.parametrize(
    "snippet",
    [
        "Contact bob@acme.com for the details.",
        "Copy to sales@acme.com please.",
        "Please find attached the new price list.",  # no address at all
        "My new phone is +44 20 7946 0958; mail stays rory@acme.com... as before? No: see bob@acme.com",
        None,
    ],
)
def test_an_address_merely_mentioned_is_not_an_announcement(snippet):
    assert announced_addresses(snippet) == []


@given(st.text(max_size=400))
def test_reading_any_text_never_raises(text):
    found = announced_addresses(text)
    assert all("@" in a and a == a.lower() for a in found)
    name_key(text)
