"""Recipient identities: phone numbers, email addresses, push tokens and their MD5 key segments.

Each rule is "exactly one recipient, well-formed": hostile values (NUL, two
recipients in one field, look-alike characters, over-long) are rejected with
a reason that names the field and never echoes the value.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archive.envelope import InvalidMessage
from archive.identity import (
    country_code_format, e164, email_address, email_addresses, md5_hex, push_token, user_identity,
)
from archive.profiles import BuildContext, get_profile
from archive.envelope import decode

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
    pytest.param("abc", None, "characters other than", id="letters-no-region"),
    pytest.param("abc", "US", "characters other than", id="letters-us"),
    pytest.param("call me", "GB", "characters other than", id="words-gb"),
    pytest.param("n/a", "IN", "characters other than", id="n/a"),
    pytest.param("+1", None, "not a possible phone number", id="country-code-only"),
    pytest.param("12", None, "no default region", id="two-digits"),
    pytest.param("12", "US", "not a possible phone number", id="two-digits-us"),
    pytest.param("+999 1234567", None, "not a possible phone number", id="unassigned-country-code"),
    pytest.param("+1555555555555555", None, "not a possible phone number", id="too-long"),
    pytest.param("07911123456", None, "no default region", id="national-without-region"),
    # Written the US national way, with no region to say which country: not
    # a number to guess a country for (the digits also spell +65 Singapore).
    pytest.param("(650) 253-0000", None, "no default region", id="us-national-format-without-region"),
    pytest.param("1555555555a", None, "characters other than", id="trailing-letter"),
    pytest.param("0000", "GB", "not a possible phone number", id="zeros"),
    # Hostile input: one number, in ASCII digits, and nothing else.
    pytest.param("+15555555555\x00", None, "characters other than", id="trailing-nul"),
    pytest.param("\x00+15555555555", None, "characters other than", id="leading-nul"),
    pytest.param("+1555555\x005555", None, "characters other than", id="inner-nul"),
    pytest.param("+15555555555\n", None, "characters other than", id="trailing-newline"),
    pytest.param("+1 555\t555 5555", None, "characters other than", id="tab"),
    pytest.param("\u200b+15555555555", None, "characters other than", id="zero-width-space"),
    pytest.param("+1\u00a0555\u00a0555\u00a05555", None, "characters other than", id="no-break-spaces"),
    pytest.param("+1\u2013555\u2013555\u20135555", None, "characters other than", id="en-dashes"),
    pytest.param("+\uff11\uff15\uff15\uff15\uff15\uff15\uff15\uff15\uff15\uff15\uff15", None,
                 "characters other than", id="full-width-digits"),
    pytest.param("+\u0661\u0665\u0665\u0665\u0665\u0665\u0665\u0665\u0665\u0665\u0665", None,
                 "characters other than", id="arabic-indic-digits"),
    pytest.param("+\u06f1\u06f5\u06f5\u06f5\u06f5\u06f5\u06f5\u06f5\u06f5\u06f5\u06f5", None,
                 "characters other than", id="persian-digits"),
    pytest.param("+1555555555\u0665", None, "characters other than", id="one-look-alike-digit"),
    pytest.param("+15555555555 +15555555556", None, "characters other than", id="two-numbers-space"),
    pytest.param("+15555555555,+15555555556", None, "characters other than", id="two-numbers-comma"),
    pytest.param("+15555555555;+442079460958", None, "characters other than", id="two-numbers-semicolon"),
    pytest.param("+16502530000+16502530001", None, "characters other than", id="two-numbers-run-together"),
    pytest.param("6502530000 6502530001", "US", "not a possible phone number", id="two-national-numbers"),
    pytest.param("15555555555/15555555556", "US", "not a possible phone number", id="two-numbers-slash"),
    pytest.param("+15555555555 ext. 1234", None, "characters other than", id="extension-ext"),
    pytest.param("+15555555555x12", None, "characters other than", id="extension-x"),
    pytest.param("+15555555555;ext=12", None, "characters other than", id="extension-rfc3966"),
    pytest.param("tel:+1-555-555-5555", None, "characters other than", id="tel-uri"),
    pytest.param("++15555555555", None, "characters other than", id="double-plus"),
    pytest.param("1+5555555555", None, "characters other than", id="inner-plus"),
    pytest.param("*+15555555555", None, "characters other than", id="star"),
    pytest.param("+15555555555#", None, "characters other than", id="hash"),
    pytest.param("+1" + "5" * 200, None, "too long", id="over-long-digits"),
    pytest.param("+1 555 555 5555" + " " * 100 + "0", None, "too long", id="over-long-padding-inside"),
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
    pytest.param("Customer<customer@example.com>", "customer@example.com", id="display-name-unspaced"),
    pytest.param("Customer   <customer@example.com>  ", "customer@example.com", id="display-name-spaces"),
    pytest.param('"" <customer@example.com>', "customer@example.com", id="empty-quoted-display-name"),
    pytest.param('"a@example.com, b" <customer@example.com>', "customer@example.com",
                 id="quoted-display-name-with-specials"),
    pytest.param('"Jane \\"JD\\" Doe" <customer@example.com>', "customer@example.com",
                 id="quoted-display-name-escaped-quotes"),
    pytest.param("J\u00e9r\u00f4me Dupont <customer@example.com>", "customer@example.com",
                 id="utf-8-display-name-rfc6532"),
    pytest.param("Jane Q. Doe <customer@example.com>", "customer@example.com", id="obs-phrase-period"),
    pytest.param("=?utf-8?q?Jos=C3=A9?= <customer@example.com>", "customer@example.com",
                 id="encoded-word-display-name"),
    # IDNA: one canonical form, the ASCII (A-label) domain, lower-cased.
    pytest.param("user@b\u00fccher.example", "user@xn--bcher-kva.example", id="idn-unicode"),
    pytest.param("user@xn--bcher-kva.example", "user@xn--bcher-kva.example", id="idn-punycode"),
    pytest.param("User@XN--BCHER-KVA.Example", "user@xn--bcher-kva.example", id="idn-punycode-upper"),
    pytest.param("user@B\u00dcCHER.example", "user@xn--bcher-kva.example", id="idn-unicode-upper"),
    pytest.param("user@bu\u0308cher.example", "user@xn--bcher-kva.example", id="idn-decomposed"),
    pytest.param("user@example\u3002com", "user@example.com", id="ideographic-full-stop"),
    pytest.param("user@fa\u00df.de", "user@xn--fa-hia.de", id="idna2008-sharp-s"),
    pytest.param("J\u00f6rg@example.com", "j\u00f6rg@example.com", id="utf-8-local-part-lower-cased"),
    pytest.param("Jo\u0308rg@example.com", "j\u00f6rg@example.com", id="utf-8-local-part-nfc"),
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
    # More than one recipient in one field.
    pytest.param("a@example.com, b@example.com", id="two-comma"),
    pytest.param("a@example.com,b@example.com", id="two-comma-unspaced"),
    pytest.param("a@example.com; b@example.com", id="two-semicolon"),
    pytest.param("a@example.com b@example.com", id="two-space"),
    pytest.param("A <a@example.com>, B <b@example.com>", id="two-display-names"),
    pytest.param("<a@example.com> <b@example.com>", id="two-angle-addrs"),
    pytest.param("a@example.com <b@example.com>", id="address-as-display-name"),
    pytest.param("Group: a@example.com, b@example.com;", id="group"),
    pytest.param("Group: a@example.com;", id="group-of-one"),
    # Control and invisible characters.
    pytest.param("a@example.com\x00", id="trailing-nul"),
    pytest.param("a\x00@example.com", id="nul-in-local-part"),
    pytest.param("Na\x00me <a@example.com>", id="nul-in-display-name"),
    pytest.param("a@example.com\r\nBcc: x@example.com", id="header-injection"),
    pytest.param("Name\r\n <a@example.com>", id="folded-display-name"),
    pytest.param("a@example.com\n", id="trailing-newline"),
    pytest.param("\ta@example.com", id="leading-tab"),
    pytest.param("a\u200b@example.com", id="zero-width-space"),
    pytest.param("a@\u202eexample.com", id="rtl-override"),
    pytest.param("a@example.com\u00a0", id="trailing-no-break-space"),
    pytest.param("a@example.com\u2028", id="line-separator"),
    # Malformed.
    pytest.param("a@example..com", id="two-dots-in-domain"),
    pytest.param("a..b@example.com", id="two-dots-in-local-part"),
    pytest.param(".a@example.com", id="leading-dot-local"),
    pytest.param("a.@example.com", id="trailing-dot-local"),
    pytest.param("Name <a@example.com", id="unclosed-angle"),
    pytest.param("a@example.com>", id="stray-close-angle"),
    pytest.param("<<a@example.com>>", id="double-angle"),
    pytest.param("Name <a@example.com> trailing", id="text-after-angle-addr"),
    pytest.param("Jane <Doe> <a@example.com>", id="angle-in-display-name"),
    pytest.param('"Jane <a@example.com>', id="unclosed-quote"),
    pytest.param('Jane" <a@example.com>', id="stray-quote"),
    pytest.param("Jane, <a@example.com>", id="comma-in-unquoted-display-name"),
    pytest.param("< a@example.com >", id="spaces-inside-angles"),
    pytest.param("a@example.com (comment)", id="comment"),
    pytest.param("mailto:a@example.com", id="mailto-uri"),
    pytest.param('"a b"@example.com', id="quoted-local-part"),
    pytest.param("a@[127.0.0.1]", id="domain-literal"),
    pytest.param("a@-example.com", id="hyphen-leading-label"),
    pytest.param("a@exa_mple.com", id="underscore-in-domain"),
    pytest.param("a@example.invalid", id="special-use-domain"),
    pytest.param("a\uff20example.com", id="full-width-at-sign"),
    pytest.param("a" * 65 + "@example.com", id="local-part-over-64"),
    pytest.param("a@" + ("b" * 63 + ".") * 4 + "com", id="domain-over-253"),
    pytest.param("x" * 2000 + " <a@example.com>", id="over-long-display-name"),
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


@pytest.mark.parametrize("a, b", [
    pytest.param("user@b\u00fccher.example", "user@xn--bcher-kva.example", id="unicode-vs-punycode"),
    pytest.param("User@B\u00fccher.Example", "user@xn--bcher-kva.example", id="case-and-idna"),
    pytest.param("Jane <user@xn--bcher-kva.example>", "user@b\u00fccher.example", id="display-name-and-idna"),
])
def test_email_spellings_of_one_address_share_one_digest(a, b):
    assert md5_hex(email_address(a)) == md5_hex(email_address(b))


@pytest.mark.parametrize("value, expected", [
    pytest.param(None, (), id="absent"),
    pytest.param([], (), id="empty-list"),
    pytest.param("a@example.com", ("a@example.com",), id="one-string"),
    pytest.param(["A@Example.com", "Boss <b@example.com>"], ("a@example.com", "b@example.com"), id="list"),
])
def test_email_addresses(value, expected):
    assert email_addresses(value, "cc") == expected


@pytest.mark.parametrize("value, reason", [
    pytest.param("a@example.com, b@example.com", "cc is not an email address", id="string-with-two"),
    pytest.param(["a@example.com", "b@example.com, c@example.com"], "cc[1] is not an email address",
                 id="entry-with-two"),
    pytest.param(["a@example.com", "a@example.com\x00"], "cc[1] is not an email address", id="entry-with-nul"),
    pytest.param([""], "cc[0] is not an email address", id="empty-entry"),
    pytest.param(["a@example.com", 7], "cc[1] is not an email address", id="entry-not-a-string"),
    pytest.param({"a": "a@example.com"}, "cc must be an array of strings or a string", id="mapping"),
])
def test_email_addresses_rejects(value, reason):
    with pytest.raises(InvalidMessage) as caught:
        email_addresses(value, "cc")
    assert caught.value.reason == reason
    assert caught.value.field == "cc"


PUSH_TOKENS = [
    # (token, as returned: trimmed, case kept; the profile decides case)
    pytest.param("Test_Push_Token12345", "Test_Push_Token12345", id="braze-seed-token"),
    pytest.param("  Test_Push_Token12345  ", "Test_Push_Token12345", id="padded"),
    pytest.param("frfsgvrwe:APfdsafsgdfsgghfgfgjkhfsfgdhjhbvcvnetry767456fxsasdf",
                 "frfsgvrwe:APfdsafsgdfsgghfgfgjkhfsfgdhjhbvcvnetry767456fxsasdf", id="fcm-clevertap-seed"),
    pytest.param("9f" * 32, "9f" * 32, id="apns-hex"),
    pytest.param("amzn1.adm-registration.v3.Y29tLmFtYXpvbi5EZXZpY2VNZXNzYWdpbmc=",
                 "amzn1.adm-registration.v3.Y29tLmFtYXpvbi5EZXZpY2VNZXNzYWdpbmc=", id="kindle-adm"),
    pytest.param("https://fcm.googleapis.com/fcm/send/dQw4w9WgXcQ:APA91bH-x_y",
                 "https://fcm.googleapis.com/fcm/send/dQw4w9WgXcQ:APA91bH-x_y", id="web-push-endpoint"),
    pytest.param("https://db5p.notify.windows.com/w/?token=BQYAAAB%2b&x=1",
                 "https://db5p.notify.windows.com/w/?token=BQYAAAB%2b&x=1", id="wns-endpoint-query"),
    pytest.param("t" * 4096, "t" * 4096, id="longest"),
]


@pytest.mark.parametrize("value, expected", PUSH_TOKENS)
def test_push_token(value, expected):
    assert push_token(value) == expected


BAD_PUSH_TOKENS = [
    pytest.param("", "to is empty", id="empty"),
    pytest.param("   ", "to is empty", id="blank"),
    pytest.param("tok\x00", "to is not one push token", id="trailing-nul"),
    pytest.param("to\x00k", "to is not one push token", id="inner-nul"),
    pytest.param("tok1 tok2", "to is not one push token", id="two-space"),
    pytest.param("tok1,tok2", "to is not one push token", id="two-comma"),
    pytest.param("tok1;tok2", "to is not one push token", id="two-semicolon"),
    pytest.param("tok1\ntok2", "to is not one push token", id="two-lines"),
    pytest.param('["tok1", "tok2"]', "to is not one push token", id="json-array"),
    pytest.param("tok\t", "to is not one push token", id="tab"),
    pytest.param("tok\u200b", "to is not one push token", id="zero-width-space"),
    pytest.param("\uff54\uff4f\uff4b", "to is not one push token", id="full-width"),
    pytest.param("t\u00f6k", "to is not one push token", id="non-ascii"),
    pytest.param("tok<script>", "to is not one push token", id="angle-brackets"),
    pytest.param("t" * 4097, "to is too long for a push token", id="over-long"),
]


@pytest.mark.parametrize("value, reason", BAD_PUSH_TOKENS)
def test_push_token_rejects(value, reason):
    with pytest.raises(InvalidMessage) as caught:
        push_token(value, "to")
    assert caught.value.reason == reason
    assert caught.value.field == "to"


@pytest.mark.parametrize("value, expected", [
    pytest.param(45142169, "45142169", id="clevertap-seed-integer"),
    pytest.param("45142169", "45142169", id="string-digits"),
    pytest.param("__" + "ab" * 16, "__" + "ab" * 16, id="device-identity"),
    pytest.param("CUST-123456", "CUST-123456", id="customer-identity"),
    pytest.param("jane.doe@example.com", "jane.doe@example.com", id="customer-identity-email"),
    pytest.param("J\u00f6rg M\u00fcller", "J\u00f6rg M\u00fcller", id="inner-space-and-utf-8"),
    pytest.param("u" * 1024, "u" * 1024, id="longest"),
])
def test_user_identity(value, expected):
    assert user_identity(value, "user_id") == expected


@pytest.mark.parametrize("value", [
    pytest.param("", id="empty"),
    pytest.param("   ", id="blank"),
    pytest.param(" cust-1", id="leading-space"),
    pytest.param("cust-1 ", id="trailing-space"),
    pytest.param("cust-1\x00", id="nul"),
    pytest.param("cust-1\ncust-2", id="newline"),
    pytest.param("cust\t1", id="tab"),
    pytest.param("cust\u200b1", id="zero-width-space"),
    pytest.param("cust\u202e1", id="rtl-override"),
    pytest.param("cust\u00a01", id="no-break-space"),
    pytest.param("u" * 1025, id="over-long"),
    pytest.param(True, id="bool"),
    pytest.param(1.5, id="float"),
    pytest.param(None, id="none"),
])
def test_user_identity_rejects(value):
    with pytest.raises(InvalidMessage) as caught:
        user_identity(value, "user_id")
    assert caught.value.reason == "user_id is not a usable identity"
    assert caught.value.field == "user_id"


# --- through the profiles: the key's identity and the fields beside it ---------------------

_CT_EMAIL = {"channel": "Email", "to": "customer@example.com", "subject": "S", "from_address": "n@example.com",
             "sent_at": 1722443282680, "message_id": "m1", "campaign_id": 1, "campaign_name": "C", "user_id": 1}
_CT_PUSH = {"channel": "Push", "to": "frfsgvrwe:APfdsafsg", "payload": {}, "platform": "iOS",
            "sent_at": 1722443282680, "message_id": "m1", "campaign_id": 1, "campaign_name": "C", "user_id": 1}
_BZ_EMAIL = {"channel": "email", "to": "customer@example.com", "subject": "S", "from_address": "n@example.com",
             "sent_at": 1722443282, "dispatch_id": "d1"}
_BZ_PUSH = {"channel": "push", "to": "Test_Push_Token12345", "payload": {}, "platform": "ios_push",
            "sent_at": 1722443282, "dispatch_id": "d1"}


def _build(profile, record):
    return get_profile(profile).build(decode(record), BuildContext(1725435360123, None))


@pytest.mark.parametrize("profile, record", [
    pytest.param("clevertap", _CT_EMAIL, id="clevertap"),
    pytest.param("braze", _BZ_EMAIL, id="braze"),
])
def test_idn_spellings_share_one_key_in_each_profile(profile, record):
    unicode = _build(profile, {**record, "to": "User@B\u00fccher.example"})
    punycode = _build(profile, {**record, "to": "user@xn--bcher-kva.example"})
    assert unicode.key_stem == punycode.key_stem
    assert md5_hex("user@xn--bcher-kva.example") in unicode.key_stem
    assert unicode.payload["to"] == "User@B\u00fccher.example"  # the archive keeps what was sent


PROFILE_HOSTILE = [
    # (profile, record, field)
    pytest.param("clevertap", {**_CT_EMAIL, "to": "a@example.com, b@example.com"}, "to", id="ct-to-two"),
    pytest.param("braze", {**_BZ_EMAIL, "to": "a@example.com, b@example.com"}, "to", id="bz-to-two"),
    pytest.param("braze", {**_BZ_EMAIL, "to": "a@example.com\x00"}, "to", id="bz-to-nul"),
    pytest.param("clevertap", {**_CT_EMAIL, "cc": "a@example.com, b@example.com"}, "cc", id="ct-cc-string-two"),
    pytest.param("clevertap", {**_CT_EMAIL, "cc": ["a@example.com", "b@example..com"]}, "cc", id="ct-cc-bad-entry"),
    pytest.param("clevertap", {**_CT_EMAIL, "bcc": ["a@example.com; b@example.com"]}, "bcc", id="ct-bcc-two"),
    pytest.param("braze", {**_BZ_PUSH, "to": "tok1,tok2"}, "to", id="bz-push-two-tokens"),
    pytest.param("braze", {**_BZ_PUSH, "to": "tok\x00"}, "to", id="bz-push-nul"),
    pytest.param("clevertap", {**_CT_PUSH, "to": "tok1 tok2"}, "to", id="ct-push-two-tokens"),
    pytest.param("clevertap", {**_CT_PUSH, "user_id": "dev-1\x00"}, "user_id", id="ct-push-identity-nul"),
    pytest.param("clevertap", {**_CT_PUSH, "user_id": None, "device_identity": "dev 1 "}, "user_id",
                 id="ct-push-identity-trailing-space"),
]


@pytest.mark.parametrize("profile, record, field", PROFILE_HOSTILE)
def test_profiles_refuse_hostile_recipients(profile, record, field):
    with pytest.raises(InvalidMessage) as caught:
        _build(profile, record)
    assert caught.value.field == field
    for secret in ("a@example.com", "b@example.com", "tok1", "dev-1"):
        assert secret not in caught.value.reason


def test_clevertap_cc_and_bcc_are_archived_as_given():
    entry = _build("clevertap", {**_CT_EMAIL, "cc": ["Boss <B@example.com>"], "bcc": "audit@example.com"})
    assert entry.payload["cc"] == ["Boss <B@example.com>"] and entry.payload["bcc"] == "audit@example.com"


def test_md5_hex_is_case_sensitive():
    # Downcasing is the profile's job; the braze token in its original case hashes differently.
    assert md5_hex("Test_Push_Token12345") != "32b802170652af2b5624b695f34de089"


def _numbers_of_every_calling_code():
    """Numbers of every calling code: each region's example
    numbers of each type, each with its last digits changed, cut short and made
    longer, and random digits of every length; seeded, so the corpus is the same
    every run."""
    import random

    import phonenumbers
    from phonenumbers import PhoneNumberType

    rng = random.Random(20261203)
    numbers = []
    for code, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items():
        for region in regions:
            for kind in vars(PhoneNumberType).values():
                if not isinstance(kind, int):
                    continue
                example = phonenumbers.example_number_for_type(region, kind)
                if example is None:
                    continue
                digits = phonenumbers.national_significant_number(example)
                for _ in range(40):
                    cut = rng.randint(1, 4)
                    numbers.append(digits[:-cut] + "".join(rng.choice("0123456789") for _ in range(cut)))
                numbers += [digits[:-1], digits + "5", digits + "55"]
        for _ in range(2000 if len(regions) > 1 else 100):
            numbers.append("".join(rng.choice("0123456789") for _ in range(rng.randint(2, 17))))
        yield from (f"+{code}{digits}" for digits in numbers)
        numbers = []


def test_is_valid_number_agrees_with_libphonenumber_on_every_calling_code():
    import phonenumbers

    from archive.identity import is_valid_number

    checked, valid, disagree = 0, 0, []
    for text in _numbers_of_every_calling_code():
        try:
            number = phonenumbers.parse(text, None)
        except phonenumbers.NumberParseException:
            continue
        expected = phonenumbers.is_valid_number(number)
        checked, valid = checked + 1, valid + expected
        if is_valid_number(number) != expected:
            disagree.append(text)
    assert not disagree, disagree[:20]
    assert checked > 100_000 and valid > 30_000  # a corpus with both verdicts in number


# --- the fast routes against libphonenumber's own -----------------------------------------
# e164 reads "+<digits>" (and CleverTap's "<digits>") with parse_international and
# _valid_international instead of phonenumbers.parse + is_valid_number +
# format_number. Each is checked here against the plain libphonenumber route,
# for every kind of input the route can see: same E.164, or the same refusal.

def _e164_by_libphonenumber(number, default_region, field="to"):
    """e164 as it reads with phonenumbers' own parse, is_valid_number and
    format_number only: the reference for the fast routes."""
    import re

    import phonenumbers

    text = number.strip(" ")
    if not text:
        raise InvalidMessage(f"{field} is empty", field)
    if len(text) > 64:
        raise InvalidMessage(f"{field} is too long for a phone number", field)
    if not re.fullmatch(r"\+?[0-9 ().\-/]*[0-9][0-9 ().\-/]*", text):
        raise InvalidMessage(
            f"{field} is not a phone number: it holds characters other than ASCII digits, "
            f"a leading +, spaces and ( ) . - /", field)

    def parse(text, region):
        try:
            return phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            return None

    compact = re.sub(r"[ ().\-/]", "", text)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    valid, possible = phonenumbers.is_valid_number, phonenumbers.is_possible_number
    if compact.startswith("+"):
        international = parse(compact, None)
        attempts = [(international, valid), (international, possible)]
    else:
        national = parse(text, default_region) if default_region else None
        country_code = parse("+" + text, None) if text.isdigit() and not text.startswith("0") else None
        if len(text) >= 11:
            attempts = [(country_code, valid), (national, valid), (country_code, possible), (national, possible)]
        else:
            attempts = [(national, valid), (national, possible), (country_code, valid), (country_code, possible)]
    for candidate, check in attempts:
        if candidate is not None and check(candidate):
            formatted = phonenumbers.format_number(candidate, phonenumbers.PhoneNumberFormat.E164)
            if re.fullmatch(r"\+[1-9][0-9]{6,14}", formatted):
                return formatted
    if not compact.startswith("+") and not default_region:
        raise InvalidMessage(
            f"{field} is not a phone number in international format (and no default region is set)", field)
    raise InvalidMessage(f"{field} is not a possible phone number", field)


def _verdict_of(read, number, region):
    try:
        return read(number, region)
    except InvalidMessage as refused:
        return ("refused", refused.reason, refused.field)


def _nanp_examples():
    """An example number of each type of every region that shares +1."""
    import phonenumbers

    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[1]:
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE,
                     phonenumbers.PhoneNumberType.TOLL_FREE):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                yield region, phonenumbers.national_significant_number(example)


PHONE_TABLE = [
    # Hostile first: what must never become a number, or must stay one number.
    "", " ", "+", "++", "+ ", "++15555555555", "+-15555555555", "+ 1 555 555 5555", "+1+5555555555",
    "+15555555555+", "1+5555555555", "+15555555555\x00", "\x00+15555555555", "+1555\x005555555",
    "+15555555555\n", "\t+15555555555", "+1 555\t555 5555", "\u200b+15555555555", "+15555555555\u200b",
    "+1\u00a0555\u00a0555\u00a05555", "+1\u2013555\u2013555\u20135555", "+1\u2212555",
    "\uff0b15555555555", "+\uff11\uff15\uff15\uff15\uff15\uff15\uff15\uff15\uff15\uff15\uff15",
    "+\u0661\u0665\u0665\u0665\u0665\u0665\u0665\u0665\u0665\u0665\u0665",
    "+\u06f1\u06f5\u06f5\u06f5\u06f5\u06f5\u06f5\u06f5\u06f5\u06f5\u06f5", "+1555555555\u0665",
    "+\u00b9\u00b2\u00b3\u2074567890", "+919876543210\u0966", "\u0669\u0661\u0669\u0668\u0667\u0666",
    "+15555555555 ext. 1234", "+15555555555 x12", "+15555555555x12", "+15555555555;ext=12",
    "+15555555555#12", "+15555555555,12", "+15555555555;12", "tel:+1-555-555-5555",
    "+1-555-555-5555;phone-context=+1", "*+15555555555", "+15555555555#", "#15555555555",
    "+15555555555 +15555555556", "+16502530000+16502530001", "6502530000 6502530001",
    "15555555555/15555555556", "+1 800 FLOWERS", "+1800FLOWERS", "1-800-FLOWERS", "abc", "n/a", "call me",
    "+1" + "5" * 200, "+1 555 555 5555" + " " * 100 + "0", "+" + "9" * 64, "9" * 65,
    # Short, long, leading zeros, unassigned and special codes.
    "+1", "+12", "+123", "+1234", "+12345", "+123456", "+1234567", "1", "12", "123", "0", "00", "000", "0000",
    "+0", "+00", "+0015555555555", "+01555555555", "00015555555555", "0015555555555", "001 555 555 5555",
    "+1555555555555555", "+15555555555555555555", "+999 1234567", "+991234567", "+80012345678",
    "+800 1234 5678", "+8081234567", "+870 773 111632", "+878 1012 3456 7890", "+881 6 1234 5678",
    "+882 1234 5678", "+883 5100 1234 5678", "+888 1234 5678", "+979 1234 5678", "+3901234567",
    "+39 06 1234 5678", "+39 0612345678", "+39 3123456789", "+390000000000", "+4400", "+44000000000",
    "+44 0 20 7946 0958", "+44 (0) 20 7946 0958", "+44 (0)7911 123456", "+49 (0) 30 123456",
    "+49 030 123456", "+33 0 1 23 45 67 89", "+7 8 495 123 45 67", "+380 0 44 123 4567", "+61 0 2 1234 5678",
    "+52 1 55 1234 5678", "+54 9 11 1234 5678", "+54 9 011 15 1234 5678", "+55 0 11 91234 5678",
    "+225 01 23 45 67 89", "+225 0123456789", "+262 692 12 34 56", "+599 9 123 4567", "+290 8 1234",
    "+247 1234", "+672 3 12345", "+383 44 123 456",
    # Valid numbers of many countries, written every usual way.
    "+15555555555", "+1 (555) 555-5555", "+1.650.253.0000", "+1/650/253/0000", "+1 650 253 0000",
    "+16502530000", "0016502530000", "00 1 650 253 0000", "16502530000", "1 650 253 0000", "(650) 253-0000",
    "650-253-0000", "6502530000", "2530000", "+44 20 7946 0958", "+447911123456", "0044 7911 123456",
    "447911123456", "07911 123456", "020 7946 0958", "+91 98765 43210", "919876543210", "098765 43210",
    "9876543210", "+49 30 123456", "+49 1512 3456789", "4915123456789", "+33 6 12 34 56 78", "+33612345678",
    "+34 612 34 56 78", "+39 312 345 6789", "+31 6 12345678", "+32 470 12 34 56", "+41 78 123 45 67",
    "+43 664 123456", "+45 20 12 34 56", "+46 70 123 45 67", "+47 406 12 345", "+48 512 345 678",
    "+351 912 345 678", "+353 85 012 3456", "+358 41 2345678", "+30 691 234 5678", "+420 601 123 456",
    "+36 20 123 4567", "+40 712 345 678", "+7 912 345-67-89", "+7 701 234 5678", "+380 50 123 4567",
    "+90 501 234 56 78", "+972 50-234-5678", "+971 50 123 4567", "+966 50 123 4567", "+974 3312 3456",
    "+20 100 123 4567", "+27 71 123 4567", "+234 802 123 4567", "+254 712 123456", "+212 650-123456",
    "+86 131 2345 6789", "+852 5123 4567", "+853 6612 3456", "+886 912 345 678", "+81 90-1234-5678",
    "+82 10-2345-6789", "+65 8123 4567", "+60 12-345 6789", "+62 812-345-678", "+63 905 123 4567",
    "+66 81 234 5678", "+84 91 234 56 78", "+92 300 1234567", "+880 1812-345678", "+94 71 234 5678",
    "+977 984-1234567", "+61 412 345 678", "+64 21 123 4567", "+55 11 91234-5678", "+52 55 1234 5678",
    "+54 11 1234-5678", "+56 9 6123 4567", "+57 321 1234567", "+51 912 345 678", "+58 412-1234567",
    "+593 99 123 4567", "+598 94 231 234", "+1 684 733 1234", "+1 671 300 1234", "+1 670 234 5678",
    "+1 340 642 1234", "+1 787 234 5678", "+1 939 234 5678", "+1 876 210 1234", "+1 809 234 5678",
    "+1 416 555 0123", "+1 604 555 5555", "+1 204 234 5678", "+1 268 464 1234", "+1 242 359 1234",
    "+1 246 250 1234", "+1 441 370 1234", "+1 345 323 1234", "+1 649 231 1234", "+1 868 291 1234",
    "+1 721 520 5678", "+1 767 225 1234", "+1 473 403 1234", "+1 758 284 5678", "+1 784 430 1234",
    "+1 869 765 2917", "+1 664 492 3456", "+1 284 300 1234", "+1 264 235 1234", "+1 800 253 0000",
    "+1 888 555 0100", "+1 900 234 5678", "+1 555 0100", "+1 211 555 0123", "+1 123 456 7890",
    "12125550123", "1 212 555 0123", "+44 800 123 4567", "+44 845 46 47", "+44 7700 900123",
]


@pytest.mark.parametrize("region", [None, "US", "GB", "IN", "DE", "BR", "CA", "JM"])
def test_e164_agrees_with_libphonenumber_on_a_mixed_table(region):
    disagree = [(number, _verdict_of(e164, number, region), _verdict_of(_e164_by_libphonenumber, number, region))
                for number in PHONE_TABLE
                if _verdict_of(e164, number, region) != _verdict_of(_e164_by_libphonenumber, number, region)]
    assert not disagree, disagree[:10]


@pytest.mark.parametrize("region", [None, "US"])
def test_e164_agrees_with_libphonenumber_on_every_nanp_region(region):
    checked = 0
    for example_region, digits in _nanp_examples():
        for number in (f"+1{digits}", f"+1 ({digits[:3]}) {digits[3:6]}-{digits[6:]}", f"001{digits}",
                       f"1{digits}", digits, f"+1{digits[:-1]}", f"+1{digits}5", f"1{digits[:-1]}9"):
            assert _verdict_of(e164, number, region) == _verdict_of(_e164_by_libphonenumber, number, region), \
                (example_region, number)
            checked += 1
    assert checked > 300


def test_e164_agrees_with_libphonenumber_on_every_calling_code():
    """The corpus of is_valid_number's test, in three spellings, with and without a region."""
    for index, text in enumerate(_numbers_of_every_calling_code()):
        if index % 7:  # a seventh of the corpus (about 35,000 numbers) keeps the test quick
            continue
        digits = text[1:]
        for number, region in ((text, None), ("00" + digits, "GB"), (digits, None), (digits, "IN")):
            assert _verdict_of(e164, number, region) == _verdict_of(_e164_by_libphonenumber, number, region), \
                (number, region)


def test_parse_international_is_phonenumbers_parse():
    """The same PhoneNumber (leading zeros included), or None where parse raises."""
    import random

    import phonenumbers

    from archive.identity import parse_international

    rng = random.Random(20260511)
    texts = list(_numbers_of_every_calling_code())
    texts += ["+" + "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 22))) for _ in range(50_000)]
    texts += ["+" + code + "0" * zeros + rest for code in ("39", "44", "225", "1", "7", "599", "800", "979")
              for zeros in range(0, 6) for rest in ("", "0", "1", "12", "1234567", "123456789012")]
    disagree = []
    for text in texts:
        try:
            expected = phonenumbers.parse(text, None)
        except phonenumbers.NumberParseException:
            expected = None
        found = parse_international(text[1:])
        same = found == expected and (found is None or (
            found.italian_leading_zero, found.number_of_leading_zeros, found.extension, found.raw_input)
            == (expected.italian_leading_zero, expected.number_of_leading_zeros, expected.extension,
                expected.raw_input))
        if not same:
            disagree.append(text)
    assert not disagree, disagree[:20]


_PHONE_ALPHABET = "0123456789" * 4 + "+ ().-/" + "x#*,;a" + "\u0660\u0665\uff10\uff15\u00a0\u2013\u00b2"


@settings(max_examples=3000, deadline=None, database=None)
@given(st.one_of(
    st.text(alphabet=_PHONE_ALPHABET, max_size=24),
    st.builds(lambda prefix, code, rest: prefix + code + rest,
              st.sampled_from(["+", "00", "", "+ ", "0", "+0", "++"]),
              st.sampled_from(["1", "7", "20", "33", "39", "44", "49", "52", "55", "61", "62", "81", "86", "91",
                               "225", "234", "262", "290", "351", "380", "599", "800", "870", "882", "971",
                               "979", "998", "999"]),
              st.text(alphabet="0123456789" * 6 + " -()", max_size=18))),
       st.sampled_from([None, "US", "GB", "IN", "IT", "BR"]))
def test_e164_property_agrees_with_libphonenumber(number, region):
    assert _verdict_of(e164, number, region) == _verdict_of(_e164_by_libphonenumber, number, region)
