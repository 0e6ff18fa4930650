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
    text = number.strip()
    if not text:
        raise InvalidMessage(f"{field} is empty", field)
    compact = _PHONE_PUNCTUATION.sub("", text)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    valid, possible = phonenumbers.is_valid_number, phonenumbers.is_possible_number
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
    # parseaddr repairs some malformed input (it drops a space inside a domain):
    # the address must stand in the value exactly as it is hashed.
    if (not at or not local or not domain or "." not in domain.strip(".")
            or any(c.isspace() for c in address) or address not in value):
        raise InvalidMessage(f"{field} is not an email address", field)
    return address.lower()
