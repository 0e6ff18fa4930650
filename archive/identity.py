"""Recipient identities: phone numbers, email addresses, push tokens, and their key hashes.

Every identity that names a key folder is exactly one recipient, well-formed,
in one canonical spelling, so one recipient always lands in one folder and a
field holding two recipients (or a NUL, or a look-alike character) is an
InvalidMessage instead of a folder named after the first of them:

    "+1 (555) 555-5555"          -> e164              -> "+15555555555"
    "Jane <Jane@B\u00fccher.example>" -> email_address  -> "jane@xn--bcher-kva.example"
    " Test_Push_Token12345 "     -> push_token        -> "Test_Push_Token12345"
    45142169                     -> user_identity     -> "45142169"
                                                      -> md5_hex -> key segment

Phone numbers are parsed with libphonenumber (the `phonenumbers` package) from
ASCII digits and the usual punctuation only. Addresses are checked with
`email_validator` (syntax only: no DNS). Reasons name the field, never the value.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from archive.envelope import InvalidMessage

# libphonenumber folds full-width and Arabic-Indic digits, reads "ext."/"x"/";ext="
# as an extension it drops from E.164, and skips NBSP, en dashes and stray "+":
# each would let a malformed or doubled value through, so the input alphabet is
# ASCII digits, one leading "+", and spaces ( ) . - / between them.
_PHONE_TEXT = re.compile(r"\+?[0-9 ().\-/]*[0-9][0-9 ().\-/]*")
_PHONE_PUNCTUATION = re.compile(r"[ ().\-/]")
_PHONE_MAX_CHARS = 64  # E.164 has 15 digits; generous room for punctuation
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")  # ITU-T E.164: at most 15 digits


def md5_hex(identity: str) -> str:
    """The key segment that stands for a recipient: MD5 of its UTF-8 bytes."""
    return hashlib.md5(identity.encode("utf-8")).hexdigest()


def e164(number: str, default_region: str | None, field: str = "to") -> str:
    """The phone number as E.164 ("+15555555555"); InvalidMessage when it is not one.

    A number starting with "+" or "00" is international. A bare string of
    digits may be in country-code format (CleverTap's "15555555555") or a
    national number of the default region; anything else with punctuation is a
    national number. The readings are tried in this order:
      - 11 digits or more: valid in country-code format, valid national,
        possible in country-code format, possible national;
      - fewer: valid national, possible national, then country-code format.
    Without a default region only the country-code reading is tried; a number
    with a leading 0 is never in country-code format.
    """
    text = number.strip(" ")
    if not text:
        raise InvalidMessage(f"{field} is empty", field)
    if len(text) > _PHONE_MAX_CHARS:
        raise InvalidMessage(f"{field} is too long for a phone number", field)
    if not _PHONE_TEXT.fullmatch(text):
        raise InvalidMessage(
            f"{field} is not a phone number: it holds characters other than ASCII digits, "
            f"a leading +, spaces and ( ) . - /", field)
    compact = _PHONE_PUNCTUATION.sub("", text)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    valid, possible = is_valid_number, phonenumbers.is_possible_number
    if compact.startswith("+"):
        international = _parse(compact, None)
        attempts = [(international, valid), (international, possible)]
    else:
        national = _parse(text, default_region) if default_region else None
        country_code = _parse("+" + text, None) if text.isdigit() and not text.startswith("0") else None
        if len(text) >= 11:
            attempts = [(country_code, valid), (national, valid), (country_code, possible), (national, possible)]
        else:
            attempts = [(national, valid), (national, possible), (country_code, valid), (country_code, possible)]
    for candidate, check in attempts:
        if candidate is not None and check(candidate):
            formatted = phonenumbers.format_number(candidate, phonenumbers.PhoneNumberFormat.E164)
            if _E164.fullmatch(formatted):
                return formatted
    if not compact.startswith("+") and not default_region:
        raise InvalidMessage(
            f"{field} is not a phone number in international format (and no default region is set)", field)
    raise InvalidMessage(f"{field} is not a possible phone number", field)


# libphonenumber's is_valid_number, as strict and cheaper. It finds the number's
# region (for a calling code that several regions share, +1 has 25, by trying
# each region's ten number types one regex at a time), then tries the region
# found once more. Here each region's types are one compiled alternation per
# number length, tried once (tests/test_identity.py checks that both agree on
# a corpus of numbers of every calling code).
_TYPE_DESCS = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan",
               "voicemail", "fixed_line", "mobile")
_REGION_TESTS: dict[tuple[int, int], tuple] = {}


def _desc_pattern(desc, length: int) -> str | None:
    """The desc's national number pattern if a number of this length may match it."""
    if desc is None or not desc.national_number_pattern:
        return None
    if desc.possible_length and length not in desc.possible_length:
        return None
    return desc.national_number_pattern


def _region_tests(country_code: int, length: int) -> tuple | None:
    """Per region of the calling code, in libphonenumber's order: its leading
    digits (a number they match is that region's), or its general and any-type
    patterns for numbers of this length and the verdict on a number they match.
    None: ask libphonenumber itself."""
    from phonenumbers import PhoneMetadata

    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code)
    if not regions or phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY in regions:
        return None
    tests = []
    for region in regions:
        metadata = PhoneMetadata.metadata_for_region(region.upper(), None)
        if metadata is None:
            continue
        if metadata.leading_digits is not None and len(regions) > 1:
            tests.append((region, re.compile(metadata.leading_digits), None, None, None))
            continue
        general = _desc_pattern(metadata.general_desc, length)
        names = [n for n in _TYPE_DESCS if not (n == "mobile" and metadata.same_mobile_and_fixed_line_pattern)]
        types = [p for p in (_desc_pattern(getattr(metadata, n), length) for n in names) if p is not None]
        if general is None or not types:
            continue  # no number of this length is of any type here
        # a region whose metadata names another calling code is picked, then found invalid
        tests.append((region, None, re.compile(general), re.compile("|".join(f"(?:{p})" for p in types)),
                      metadata.country_code == country_code))
    return tuple(tests)


def is_valid_number(number) -> bool:
    """phonenumbers.is_valid_number(number), with fewer regex calls."""
    national = phonenumbers.national_significant_number(number)
    key = (number.country_code, len(national))
    tests = _REGION_TESTS.get(key, False)
    if tests is False:
        tests = _REGION_TESTS[key] = _region_tests(*key)
    if tests is None:
        return phonenumbers.is_valid_number(number)
    for region, leading, general, types, valid_here in tests:
        if leading is not None:
            if leading.match(national):
                return phonenumbers.is_valid_number_for_region(number, region)
        elif general.fullmatch(national) and types.fullmatch(national):
            return valid_here
    return False


def _parse(text: str, region: str | None):
    try:
        return phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None


def country_code_format(e164_number: str) -> str:
    """CleverTap's "Mobile Number in CountryCode format": E.164 without the '+'."""
    return e164_number.lstrip("+")


# RFC 5322 display-name = phrase: words (atoms, or quoted strings) separated by
# spaces. Atoms take UTF-8 (RFC 6532) and "." (obs-phrase, which RFC 5322 says
# receivers accept: "Jane Q. Doe"), never a special that could start a second
# address ("<", ">", "@", ",", ";", ":"). email_validator's own display-name
# reader refuses both UTF-8 and ".", hence this one.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-\u0080-\U0010ffff]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_PHRASE = re.compile(rf"(?:{_ATOM}|{_QUOTED})(?: *(?:{_ATOM}|{_QUOTED}))*")
_EMAIL_MAX_CHARS = 998  # RFC 5322's line limit: more is not a header value
# Invisible or line-breaking characters: controls (NUL, CR, LF, TAB), format
# characters (zero-width, bidi overrides), separators, unassigned, private use.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def email_address(value: str, field: str = "to") -> str:
    """The key identity of one email recipient: its address, lower-cased, with
    the domain in its IDNA ASCII form ("xn--..."); InvalidMessage otherwise.

    Accepts "customer@example.com" and "Customer <Customer@Example.com>" (one
    address, with a well-formed display name), surrounded by spaces or not.
    Refuses lists ("a@x.com, b@x.com"), groups, comments, quoted local parts,
    domain literals, special-use domains (.invalid, .local, ...), any control or
    invisible character, and values longer than 998 characters.

    Why the ASCII domain: "b\u00fccher.example" and "xn--bcher-kva.example" are
    one domain, and the A-label is the form DNS and SMTP carry, has one
    spelling for every Unicode spelling (NFC/NFD, full-width dots, case), and
    lower-cases without locale rules. The local part keeps its UTF-8 (NFC)
    and is lower-cased with the rest: both seeds' identity is "the address",
    Braze's explicitly downcased.
    """
    try:
        address = _addr_spec(value)
        checked = validate_email(
            address, check_deliverability=False, allow_display_name=False, allow_quoted_local=False,
            allow_domain_literal=False, allow_empty_local=False, strict=True)
    except (EmailNotValidError, ValueError, TypeError):
        # email_validator's message may quote part of the domain: never echoed.
        raise InvalidMessage(f"{field} is not an email address", field) from None
    return f"{checked.local_part}@{checked.ascii_domain}".lower()


def _addr_spec(value: str) -> str:
    """The address inside "addr" or "display name <addr>"; ValueError when the
    value is not exactly one of those."""
    if not isinstance(value, str):
        raise ValueError("not a string")
    text = value.strip(" ")
    if not text or len(text) > _EMAIL_MAX_CHARS:
        raise ValueError("empty or too long")
    if any(c.isspace() and c != " " or unicodedata.category(c) in _INVISIBLE for c in text):
        raise ValueError("invisible character")
    if not text.endswith(">"):
        return text  # a bare addr-spec; "<" or ">" inside it fails its own check
    # The addr-spec holds no "<" (quoted local parts are refused), so the last
    # "<" opens it and everything before is the display name.
    opening = text.rfind("<")
    if opening < 0:
        raise ValueError("no opening angle bracket")
    phrase = text[:opening].rstrip(" ")
    if phrase and not _PHRASE.fullmatch(phrase):
        raise ValueError("malformed display name")
    return text[opening + 1:-1]


def email_addresses(value: Any, field: str) -> tuple[str, ...]:
    """The key identities of a cc/bcc field: one address per entry, each as
    `email_address` reads it. A string is one entry; absent is none."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (email_address(value, field),)
    if not isinstance(value, list):
        raise InvalidMessage(f"{field} must be an array of strings or a string", field)
    found = []
    for index, entry in enumerate(value):
        try:
            found.append(email_address(entry, field))
        except InvalidMessage:
            raise InvalidMessage(f"{field}[{index}] is not an email address", field) from None
    return tuple(found)


# One token, in the characters of APNs (hex), FCM ("name:APA91b-_..."), ADM
# ("amzn1.adm-registration.v3....="), and web push endpoint URLs (RFC 3986
# characters): no space, comma or semicolon that would join two, no quote or
# bracket of a JSON list, nothing outside ASCII.
_PUSH_TOKEN = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+=%]+")
_PUSH_TOKEN_MAX_CHARS = 4096


def push_token(value: str, field: str = "to") -> str:
    """A push token, trimmed of surrounding spaces, case kept (the profile
    decides: Braze downcases); InvalidMessage when it is not one token."""
    text = value.strip(" ") if isinstance(value, str) else ""
    if not text:
        raise InvalidMessage(f"{field} is empty", field)
    if len(text) > _PUSH_TOKEN_MAX_CHARS:
        raise InvalidMessage(f"{field} is too long for a push token", field)
    if not _PUSH_TOKEN.fullmatch(text):
        raise InvalidMessage(f"{field} is not one push token", field)
    return text


_USER_IDENTITY_MAX_CHARS = 1024


def user_identity(value: Any, field: str = "user_id") -> str:
    """CleverTap's device or customer identity as its key hashes it: an integer's
    digits, or a string as given. The string is hashed byte for byte and also
    archived as user_id, so it is never trimmed: surrounding spaces, controls
    and invisible characters make it InvalidMessage instead of a second folder."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if (isinstance(value, str) and value.strip() and value == value.strip(" ")
            and len(value) <= _USER_IDENTITY_MAX_CHARS
            and not any(c.isspace() and c != " " or unicodedata.category(c) in _INVISIBLE for c in value)):
        return value
    raise InvalidMessage(f"{field} is not a usable identity", field)
