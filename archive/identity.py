"""Recipient identities: phone numbers, email addresses, and their key hashes.

Phone numbers are parsed with libphonenumber (the `phonenumbers` package), so a
number given as "+1 (555) 555-5555", "15555555555" or, with a default region,
"(555) 555-5555" all become the same E.164 number.
"""

from __future__ import annotations

import hashlib
import re
from email.utils import parseaddr

import phonenumbers

from archive.envelope import InvalidMessage

_PHONE_PUNCTUATION = re.compile(r"[\s().\-/]")


def md5_hex(identity: str) -> str:
    """The key segment that stands for a recipient: MD5 of its UTF-8 bytes."""
    return hashlib.md5(identity.encode("utf-8")).hexdigest()


def e164(number: str, default_region: str | None, field: str = "to") -> str:
    """The phone number as E.164 ("+15555555555"); InvalidMessage when it is not one.

    A number starting with "+" or "00" is international. A string of digits is
    first read in country-code format (CleverTap's "15555555555"), then in the
    default region; a number that is valid in exactly one reading wins,
    otherwise the country-code reading when it is at least possible.
    """
    text = number.strip()
    if not text:
        raise InvalidMessage(f"{field} is empty", field)
    compact = _PHONE_PUNCTUATION.sub("", text)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    candidates = []
    if compact.startswith("+"):
        candidates.append(_parse(compact, None))
    else:
        if compact.isdigit():
            candidates.append(_parse("+" + compact, None))
        if default_region:
            candidates.append(_parse(text, default_region))
    parsed = [c for c in candidates if c is not None]
    for check in (phonenumbers.is_valid_number, phonenumbers.is_possible_number):
        for candidate in parsed:
            if check(candidate):
                return phonenumbers.format_number(candidate, phonenumbers.PhoneNumberFormat.E164)
    if not compact.startswith("+") and not default_region:
        raise InvalidMessage(
            f"{field} is not a phone number in international format and no default region is set", field)
    raise InvalidMessage(f"{field} is not a possible phone number", field)


def _parse(text: str, region: str | None):
    try:
        return phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None


def country_code_format(e164_number: str) -> str:
    """CleverTap's "Mobile Number in CountryCode format": E.164 without the '+'."""
    return e164_number.lstrip("+")


def email_address(value: str, field: str = "to") -> str:
    """The bare address of an email recipient, lower-cased.

    Accepts "customer@example.com" and "Customer <Customer@Example.com>".
    """
    _, address = parseaddr(value)
    address = address.strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or "." not in domain.strip(".") or any(c.isspace() for c in address):
        raise InvalidMessage(f"{field} is not an email address", field)
    return address.lower()
