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
ASCII digits and the usual punctuation only. The international form ("+"
and digits, or CleverTap's digits) takes a shorter road through
libphonenumber's own metadata and functions, with the same verdict
(tests/test_identity.py holds each against phonenumbers.parse,
is_valid_number and format_number). Addresses are checked with
`email_validator` (syntax only: no DNS). Reasons name the field, never the value.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Any

import phonenumbers
from phonenumbers import phonenumberutil
from email_validator import EmailNotValidError, validate_email

from archive.envelope import InvalidMessage

try:  # CPython's own MD5: hashlib's goes through OpenSSL, which costs more per call for a few bytes
    from _md5 import md5 as _md5
except ImportError:  # pragma: no cover - a Python without it
    _md5 = hashlib.md5

# libphonenumber folds full-width and Arabic-Indic digits, reads "ext."/"x"/";ext="
# as an extension it drops from E.164, and skips NBSP, en dashes and stray "+":
# each would let a malformed or doubled value through, so the input alphabet is
# ASCII digits, one leading "+", and spaces ( ) . - / between them.
_PHONE_TEXT = re.compile(r"\+?[0-9 ().\-/]*[0-9][0-9 ().\-/]*")
_PHONE_PUNCTUATION = re.compile(r"[ ().\-/]")
_PHONE_MAX_CHARS = 64  # E.164 has 15 digits; generous room for punctuation
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")  # ITU-T E.164: at most 15 digits


def _is_e164(text: str) -> bool:
    """_E164.fullmatch(text), in string methods (a third of the cost)."""
    return 8 <= len(text) <= 16 and text[0] == "+" and "1" <= text[1] <= "9" and text.isascii() \
        and text[1:].isdigit()


def md5_hex(identity: str) -> str:
    """The key segment that stands for a recipient: MD5 of its UTF-8 bytes."""
    return _md5(identity.encode("utf-8")).hexdigest()


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
    valid, possible = True, False  # which check an attempt makes
    if compact.startswith("+"):
        # the first attempt, when it succeeds, without libphonenumber's objects
        found = _valid_international(compact[1:])
        if found is not None:
            return found
        international = parse_international(compact[1:])
        attempts = ((international, valid), (international, possible))
    else:
        in_country_code_format = text.isdigit() and not text.startswith("0")
        if in_country_code_format and (len(text) >= 11 or not default_region):
            found = _valid_international(text)  # the first attempt, as above
            if found is not None:
                return found
        national = _parse(text, default_region) if default_region else None
        country_code = parse_international(text) if in_country_code_format else None
        if len(text) >= 11:
            attempts = ((country_code, valid), (national, valid), (country_code, possible), (national, possible))
        else:
            attempts = ((national, valid), (national, possible), (country_code, valid), (country_code, possible))
    for candidate, must_be_valid in attempts:
        if candidate is None:
            continue
        significant = phonenumbers.national_significant_number(candidate)
        if _is_valid(candidate, significant) if must_be_valid else phonenumbers.is_possible_number(candidate):
            # format_number's E.164: the calling code, then the national significant number
            formatted = f"+{candidate.country_code}{significant}"
            if _is_e164(formatted):
                return formatted
    if not compact.startswith("+") and not default_region:
        raise InvalidMessage(
            f"{field} is not a phone number in international format (and no default region is set)", field)
    raise InvalidMessage(f"{field} is not a possible phone number", field)


# libphonenumber's is_valid_number, as strict and cheaper. It finds the number's
# region (for a calling code that several regions share, +1 has 25, by trying
# each region's ten number types one regex at a time), then tries the region
# found once more. Here each region's general pattern and types are one
# compiled pattern per number length, tried once (tests/test_identity.py checks
# that both agree on a corpus of numbers of every calling code). The verdict
# is "of any type", which no order changes: the likeliest types (a message
# goes to a mobile) come first in the alternation, where a match ends it.
_TYPE_DESCS = ("mobile", "fixed_line", "toll_free", "voip", "personal_number", "uan", "pager", "shared_cost",
               "premium_rate", "voicemail")
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
    digits (a number they match is that region's), or one pattern for its
    general and any type's patterns for numbers of this length and the
    verdict on a number it matches. None: ask libphonenumber itself."""
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
            tests.append((region, re.compile(metadata.leading_digits), None, None))
            continue
        general = _desc_pattern(metadata.general_desc, length)
        names = [n for n in _TYPE_DESCS if not (n == "mobile" and metadata.same_mobile_and_fixed_line_pattern)]
        types = [p for p in (_desc_pattern(getattr(metadata, n), length) for n in names) if p is not None]
        if general is None or not types:
            continue  # no number of this length is of any type here
        # one fullmatch for both: the general pattern (a lookahead to the end), then any type's
        of_any_type = re.compile(f"(?=(?:{general})\\Z)(?:{'|'.join(f'(?:{p})' for p in types)})")
        # a region whose metadata names another calling code is picked, then found invalid
        tests.append((region, None, of_any_type, metadata.country_code == country_code))
    return tuple(tests)


def is_valid_number(number) -> bool:
    """phonenumbers.is_valid_number(number), with fewer regex calls."""
    return _is_valid(number, phonenumbers.national_significant_number(number))


def _is_valid(number, national: str) -> bool:
    """is_valid_number, given the number's national significant number."""
    verdict = _verdict(number.country_code, national)
    if verdict is None:
        return phonenumbers.is_valid_number(number)
    if type(verdict) is str:
        return phonenumbers.is_valid_number_for_region(number, verdict)
    return verdict


def _verdict(country_code: int, national: str) -> bool | str | None:
    """Whether the number is valid; or the region whose own check decides it;
    None: only phonenumbers.is_valid_number can say."""
    key = (country_code, len(national))
    tests = _REGION_TESTS.get(key, False)
    if tests is False:
        tests = _REGION_TESTS[key] = _region_tests(*key)
    if tests is None:
        return None
    for region, leading, of_any_type, valid_here in tests:
        if leading is not None:
            if leading.match(national):
                return region
        elif of_any_type.fullmatch(national):
            return valid_here
    return False


def _parse(text: str, region: str | None):
    try:
        return phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None


# phonenumbers.parse("+" + digits, None), the form nearly every number takes
# here, without the steps that cannot change a string of ASCII digits: the
# search for a number in text, RFC 3966, extensions, letters, other digits.
# What is left is libphonenumber's own: the calling code (the shortest of 1 to
# 3 leading digits that is one) and its national prefix rule, with its own
# function; anything else, or a libphonenumber without that function, goes
# to phonenumbers.parse (tests/test_identity.py checks that both agree).
_strip_national_prefix = getattr(phonenumberutil, "_maybe_strip_national_prefix_carrier_code", None)
_test_number_length = getattr(phonenumberutil, "_test_number_length", None)
_NOT_STRIPPED = frozenset((phonenumbers.ValidationResult.TOO_SHORT, phonenumbers.ValidationResult.INVALID_LENGTH,
                           phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY))
_CALLING_CODES = {str(code): code for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}
_CODE_METADATA: dict[int, tuple] = {}  # calling code -> (its metadata, its national prefix pattern)


def parse_international(digits: str):
    """phonenumbers.parse("+" + digits, None), or None where it raises."""
    split = _split_international(digits)
    if split is False:
        return _parse("+" + digits, None)
    if split is None:
        return None
    code, national = split
    number = phonenumbers.PhoneNumber()  # as parse fills it in
    number.country_code = code
    number.national_number = int(national)
    if len(national) > 1 and national[0] == "0":  # libphonenumber's "Italian" leading zeros
        zeros = len(national) - len(national.lstrip("0"))
        number.italian_leading_zero = True
        zeros = min(zeros, len(national) - 1)  # the last digit is never a leading zero
        if zeros != 1:
            number.number_of_leading_zeros = zeros
    return number


def _split_international(digits: str) -> tuple[int, str] | None | bool:
    """(calling code, national significant number) of "+" + digits as
    phonenumbers.parse reads it; None where parse raises; False where only
    parse itself can say."""
    code = None
    if 3 <= len(digits) <= 64 and digits[0] != "0" and digits.isascii() and digits.isdigit() \
            and _strip_national_prefix is not None and _test_number_length is not None:
        code = _CALLING_CODES.get(digits[:1]) or _CALLING_CODES.get(digits[:2]) or _CALLING_CODES.get(digits[:3])
    if code is None:
        return False
    found = _CODE_METADATA.get(code)
    if found is None:
        metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(
            code, phonenumbers.region_code_for_country_code(code))
        if metadata is None:
            return False
        prefix = metadata.national_prefix_for_parsing
        found = _CODE_METADATA[code] = (metadata, re.compile(prefix) if prefix else None)
    metadata, national_prefix = found
    national = digits[len(str(code)):]
    if len(national) < 2:
        return None  # too short to be a national number
    # libphonenumber's strip does nothing unless its pattern matches at the start
    if national_prefix is not None and national_prefix.match(national):
        _, stripped, _ = _strip_national_prefix(national, metadata)
        # kept only when a possible length remains, as parse does
        if stripped != national and _test_number_length(stripped, metadata) not in _NOT_STRIPPED:
            national = stripped
    if len(national) > 17:
        return None  # too long
    # its national significant number is `national` itself: the leading zeros
    # parse keeps aside (parse_international) are written back by
    # national_significant_number
    return code, national


def _valid_international(digits: str) -> str | None:
    """e164's answer when "+" + digits is a valid number it can see without
    libphonenumber's objects (nearly every valid one); None: take the full route."""
    split = _split_international(digits)
    if not split:
        return None
    code, national = split
    if _verdict(code, national) is not True:
        return None
    formatted = f"+{code}{national}"
    return formatted if _is_e164(formatted) else None


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
