"""Recipient identities: phone numbers, email addresses and their MD5 key segments."""

from __future__ import annotations

import hashlib

import pytest

from archive.envelope import InvalidMessage
from archive.identity import country_code_format, e164, email_address, md5_hex

E164 = [
    # (number, default region, E.164)
    pytest.param("+15555555555", None, "+15555555555", id="e164"),
    pytest.param(" +15555555555 ", None, "+15555555555", id="e164-padded"),
    pytest.param("+1 (555) 555-5555", None, "+15555555555", id="e164-punctuated"),
    pytest.param("+1.555.555.5555", None, "+15555555555", id="e164-dots"),
    pytest.param("+1/555/555/5555", None, "+15555555555", id="e164-slashes"),
    pytest.param("+44 20 7946 0958", None, "+442079460958", id="e164-gb-landline"),
    pytest.param("+44 7911 123456", None, "+447911123456", id="e164-gb-mobile"),
    pytest.param("+91 98765 43210", None, "+919876543210", id="e164-in-mobile"),
    pytest.param("0044 20 7946 0958", None, "+442079460958", id="00-prefix"),
    pytest.param("00 1 555 555 5555", None, "+15555555555", id="00-prefix-spaced"),
    pytest.param("0091-98765-43210", "US", "+919876543210", id="00-prefix-ignores-region"),
    pytest.param("15555555555", None, "+15555555555", id="clevertap-country-code-digits"),
    pytest.param("15555555555", "GB", "+15555555555", id="country-code-digits-with-other-region"),
    pytest.param("15555555555", "US", "+15555555555", id="country-code-digits-with-us-region"),
    pytest.param("447911123456", None, "+447911123456", id="country-code-digits-gb"),
    pytest.param("919876543210", None, "+919876543210", id="country-code-digits-in"),
    pytest.param("919876543210", "IN", "+919876543210", id="country-code-digits-in-region"),
    pytest.param("020 7946 0958", "GB", "+442079460958", id="gb-national-landline"),
    pytest.param("07911 123456", "GB", "+447911123456", id="gb-national-mobile"),
    pytest.param("07911123456", "GB", "+447911123456", id="gb-national-mobile-compact"),
    pytest.param("098765 43210", "IN", "+919876543210", id="in-national-trunk-0"),
    pytest.param("9876543210", "IN", "+919876543210", id="in-national"),
    pytest.param("(650) 253-0000", "US", "+16502530000", id="us-national-650"),
    pytest.param("6502530000", "US", "+16502530000", id="us-national-compact"),
    pytest.param("(415) 555-2671", "US", "+14155552671", id="us-national-415"),
    # A US default region and a number written the US national way: the US
    # reading is the only sensible one, even when the digits also spell a
    # valid number in another country (+20 Egypt, +55 Brazil).
    pytest.param("(201) 555-0123", "US", "+12015550123", id="us-national-201-not-egypt"),
    pytest.param("(555) 555-5555", "US", "+15555555555", id="us-national-seed-number-not-brazil"),
]


@pytest.mark.parametrize("number, region, expected", E164)
def test_e164(number, region, expected):
    assert e164(number, region) == expected


BAD_NUMBERS = [
    # (number, default region, reason substring)
    pytest.param("", None, "is empty", id="empty"),
    pytest.param("   ", "US", "is empty", id="blank"),
    pytest.param("abc", None, "no default region", id="letters-no-region"),
    pytest.param("abc", "US", "not a possible phone number", id="letters-us"),
    pytest.param("call me", "GB", "not a possible phone number", id="words-gb"),
    pytest.param("n/a", "IN", "not a possible phone number", id="n/a"),
    pytest.param("+1", None, "not a possible phone number", id="country-code-only"),
    pytest.param("12", None, "no default region", id="two-digits"),
    pytest.param("12", "US", "not a possible phone number", id="two-digits-us"),
    pytest.param("+999 1234567", None, "not a possible phone number", id="unassigned-country-code"),
    pytest.param("+1555555555555555", None, "not a possible phone number", id="too-long"),
    pytest.param("07911123456", None, "no default region", id="national-without-region"),
    # Written the US national way, with no region to say which country: not
    # a number to guess a country for (the digits also spell +65 Singapore).
    pytest.param("(650) 253-0000", None, "no default region", id="us-national-format-without-region"),
    pytest.param("1555555555a", None, "no default region", id="trailing-letter"),
    pytest.param("0000", "GB", "not a possible phone number", id="zeros"),
]


@pytest.mark.parametrize("number, region, reason", BAD_NUMBERS)
def test_e164_rejects(number, region, reason):
    with pytest.raises(InvalidMessage) as caught:
        e164(number, region, field="to")
    assert reason in caught.value.reason
    assert caught.value.field == "to"
    assert caught.value.reason.startswith("to ")
    if number.strip():
        assert number.strip() not in caught.value.reason


def test_e164_names_the_given_field():
    with pytest.raises(InvalidMessage) as caught:
        e164("not a number", "US", field="mobile")
    assert caught.value.field == "mobile"
    assert "mobile" in caught.value.reason


@pytest.mark.parametrize("number, expected", [
    pytest.param("+15555555555", "15555555555", id="us"),
    pytest.param("+442079460958", "442079460958", id="gb"),
    pytest.param("+919876543210", "919876543210", id="in"),
])
def test_country_code_format(number, expected):
    assert country_code_format(number) == expected


@pytest.mark.parametrize("number, region", [
    pytest.param("+1 (555) 555-5555", None, id="punctuated"),
    pytest.param("0015555555555", None, id="00"),
    pytest.param("15555555555", "IN", id="digits"),
])
def test_country_code_format_of_e164_is_the_clevertap_form(number, region):
    assert country_code_format(e164(number, region)) == "15555555555"


EMAILS = [
    pytest.param("customer@example.com", "customer@example.com", id="plain"),
    pytest.param("Customer@Example.COM", "customer@example.com", id="mixed-case"),
    pytest.param("JANE@EXAMPLE.COM", "jane@example.com", id="upper-case"),
    pytest.param("  customer@example.com  ", "customer@example.com", id="padded"),
    pytest.param("Customer <Customer@Example.com>", "customer@example.com", id="display-name"),
    pytest.param('"Doe, Jane" <Jane.Doe@Example.com>', "jane.doe@example.com", id="quoted-display-name"),
    pytest.param("<a@b.co>", "a@b.co", id="angle-brackets"),
    pytest.param("first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk", id="plus-and-subdomain"),
]


@pytest.mark.parametrize("value, expected", EMAILS)
def test_email_address(value, expected):
    assert email_address(value) == expected


BAD_EMAILS = [
    pytest.param("", id="empty"),
    pytest.param("not-an-email", id="no-at"),
    pytest.param("a@b", id="no-dot-in-domain"),
    pytest.param("@example.com", id="no-local-part"),
    pytest.param("customer@", id="no-domain"),
    pytest.param("a b@example.com", id="space-in-local-part"),
    pytest.param("user@exa mple.com", id="space-in-domain"),
    pytest.param("Customer <>", id="empty-angle-brackets"),
    pytest.param("a@.com", id="domain-only-dot"),
    pytest.param("a@b.", id="domain-trailing-dot"),
    pytest.param("a@...", id="domain-dots"),
    pytest.param("a@b@c.com", id="two-ats"),
]


@pytest.mark.parametrize("value", BAD_EMAILS)
def test_email_address_rejects(value):
    with pytest.raises(InvalidMessage) as caught:
        email_address(value, field="to")
    assert caught.value.field == "to"
    assert caught.value.reason == "to is not an email address"


MD5 = [
    # The Braze seed's own example: the downcased push token and its digest.
    pytest.param("test_push_token12345", "32b802170652af2b5624b695f34de089", id="braze-push-token"),
    # RFC 1321 test suite.
    pytest.param("", "d41d8cd98f00b204e9800998ecf8427e", id="rfc1321-empty"),
    pytest.param("a", "0cc175b9c0f1b6a831c399e269772661", id="rfc1321-a"),
    pytest.param("abc", "900150983cd24fb0d6963f7d28e17f72", id="rfc1321-abc"),
    pytest.param("message digest", "f96b697d7cb7938d525a2f31aaf161d0", id="rfc1321-message-digest"),
    # UTF-8 bytes, not code points.
    pytest.param("é", hashlib.md5("é".encode("utf-8")).hexdigest(), id="utf-8"),
]


@pytest.mark.parametrize("identity, digest", MD5)
def test_md5_hex(identity, digest):
    assert md5_hex(identity) == digest


def test_md5_hex_is_case_sensitive():
    # Downcasing is the profile's job; the braze token in its original case hashes differently.
    assert md5_hex("Test_Push_Token12345") != "32b802170652af2b5624b695f34de089"
