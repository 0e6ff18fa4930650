"""Realistic outbound messages to try and test the archiver with, as JSON Lines.

    python -m archive.sample --count 20000 --profile braze --out messages.jsonl.gz

Records cover every channel the profile archives (clevertap: email, push, sms,
whatsapp; braze: email, push, sms, mms) with the variety real producers send:
channel and platform spellings, phone numbers in several international
formats, send times as epoch seconds, milliseconds or ISO-8601, ids given or
left for the archiver to derive. A fraction of records are bad input, one
defect each, that the archiver must reject as INVALID.

`samples` yields `Sample`s (the record plus what it is); `generate` yields the
bytes only. The same arguments give the same records, and a shorter run is a
prefix of a longer one. No Beam here.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as _dt
import gzip
import html
import json
import sys
import unicodedata
import uuid
from collections import Counter
from dataclasses import dataclass
from random import Random
from typing import Any, BinaryIO, Iterator, Sequence

from archive.envelope import DEFAULT_MAX_MESSAGE_BYTES

DEFAULT_START_MILLIS = 1_717_200_000_000   # 2024-06-01T00:00:00Z
SPAN_MILLIS = 120 * 86_400_000             # send times spread over four months
DEFAULT_OVERSIZE_EVERY = 5000
MIN_MAX_BYTES = 32 * 1024                  # the largest valid sample is well under this

PROFILES = ("clevertap", "braze")
_CHANNEL_MIX = {
    "clevertap": (("push", 45), ("email", 30), ("sms", 15), ("whatsapp", 10)),
    "braze": (("push", 45), ("email", 35), ("sms", 14), ("mms", 6)),
}
_TEXT_CHANNELS = ("sms", "whatsapp", "mms")


@dataclass(frozen=True)
class Sample:
    data: bytes            # one JSON Lines record, without the newline
    channel: str           # the channel it was made for
    defect: str | None     # None: the profile archives it; else why it must be rejected


def generate(count: int, profile: str = "clevertap", seed: int = 7, bad_ratio: float = 0.02,
             start_millis: int = DEFAULT_START_MILLIS, tenants: Sequence[str] = ("default",),
             max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
             oversize_every: int = DEFAULT_OVERSIZE_EVERY) -> Iterator[bytes]:
    """`count` JSON Lines records (bytes, no newline); see `samples`."""
    return (sample.data for sample in
            samples(count, profile, seed, bad_ratio, start_millis, tenants, max_bytes, oversize_every))


def samples(count: int, profile: str = "clevertap", seed: int = 7, bad_ratio: float = 0.02,
            start_millis: int = DEFAULT_START_MILLIS, tenants: Sequence[str] = ("default",),
            max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
            oversize_every: int = DEFAULT_OVERSIZE_EVERY) -> Iterator[Sample]:
    """`count` samples for `profile`, deterministic for a given `seed`.

    About `bad_ratio` of them are bad, one defect each. Besides those, when
    `bad_ratio` > 0, record number `oversize_every` (and every multiple) is an
    email just over `max_bytes` (the archiver's --max_message_bytes); 0 turns
    oversize records off. Records carry a `tenant` field unless `tenants` is
    only the archiver's default tenant, "default".
    """
    _check(count, profile, bad_ratio, tenants, max_bytes, oversize_every)
    return _samples(count, profile, seed, bad_ratio, start_millis, tuple(tenants), max_bytes, oversize_every)


def _check(count, profile, bad_ratio, tenants, max_bytes, oversize_every) -> None:
    if count < 0:
        raise ValueError("count must not be negative")
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r} (expected one of {', '.join(PROFILES)})")
    if not 0.0 <= bad_ratio <= 1.0:
        raise ValueError("bad_ratio must be between 0 and 1")
    tenants = tuple(tenants)
    if not tenants or any(not isinstance(t, str) or not t.strip() for t in tenants):
        raise ValueError("tenants must be non-blank strings, at least one")
    if max_bytes < MIN_MAX_BYTES:
        raise ValueError(f"max_bytes must be at least {MIN_MAX_BYTES}")
    if oversize_every < 0:
        raise ValueError("oversize_every must not be negative (0 turns oversize records off)")


def _samples(count, profile, seed, bad_ratio, start_millis, tenants, max_bytes, oversize_every):
    rng = Random(f"archive.sample:{profile}:{seed}")
    maker = (_CleverTap if profile == "clevertap" else _Braze)(rng, start_millis, tenants)
    for index in range(count):
        if bad_ratio > 0 and oversize_every and (index + 1) % oversize_every == 0:
            yield maker.oversize(max_bytes)
        elif rng.random() < bad_ratio:
            yield maker.bad()
        else:
            yield maker.good()


# --------------------------------------------------------------------------- content

_FIRST = ("Olivia", "Liam", "Priya", "Arjun", "Sofía", "Mateo", "Zoë", "Noah", "Aisha", "Wei",
          "Chloé", "Lukas", "Amara", "Hiroshi", "Fatima", "Søren", "Ananya", "Rahul", "Emma",
          "José", "Ingrid", "Kwame", "Mei", "Oliver", "Isabella", "Deepika", "Tomás", "Hannah")
_LAST = ("Smith", "Patel", "García", "Müller", "Nguyen", "Okafor", "Kowalski", "Sharma",
         "O'Brien", "Rossi", "Johansson", "Tanaka", "Dubois", "Khan", "Silva", "Jones", "Iyer",
         "Brown", "Fernández", "Reddy", "Schmidt", "Williams")
_MAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.co.uk", "example.in")

# (brand, domain, currency, app deep-link scheme)
_BRANDS = (
    ("ShopNest", "shopnest.example", "₹", "shopnest"),
    ("FlyHigh Airways", "flyhigh.example", "$", "flyhigh"),
    ("FreshBasket", "freshbasket.example", "£", "freshbasket"),
    ("PayWell", "paywell.example", "€", "paywell"),
)
_CAMPAIGNS = ("Flat Offer Sale", "Monsoon Sale 2024", "Cart Abandonment Reminder",
              "Welcome Series — Day 1", "Diwali Early Access", "Back to School", "Price Drop Alert",
              "Order Shipped", "Weekly Digest", "Win-back: We miss you", "Flash Sale 24h",
              "Loyalty Points Expiry", "Boarding Pass Ready", "Statement Available")
_JOURNEYS = ("Onboarding Journey", "Cart Recovery Journey", "Re-engagement Journey",
             "Post-purchase Journey", "Flat Offer Sale Journey")
_CANVAS_STEPS = ("Entry message", "Day 2 reminder", "Discount nudge", "Final call", "Survey")
_PRODUCTS = (("Linen shirt", 1299), ("Running shoes", 4999), ("Wireless earbuds", 2499),
             ("Yoga mat", 899), ("Cast iron skillet", 1899), ("Backpack 30L", 2799),
             ("Ceramic mug set", 749), ("Smart watch", 12999), ("Desk lamp", 1599),
             ("Travel pillow", 599), ("Cotton hoodie", 2199), ("Water bottle", 499))
_SENTENCES = (
    "We picked these just for you based on what you loved last time.",
    "Prices drop at midnight, and the best sizes usually go first.",
    "Free delivery on every order above the minimum, no code needed.",
    "Your points balance is waiting and can be used at checkout.",
    "Members get early access for 24 hours before everyone else.",
    "Returns are free within 30 days, so there is nothing to lose.",
    "Tap below to see the full collection in the app.",
    "Our support team is available around the clock if you need help.",
    "Thank you for being with us for another season.",
    "Limited stock: once it is gone, it will not be restocked this year.",
    "You can change how often we write to you in your preferences.",
    "Every order plants a tree with our reforestation partners.",
)
_SUBJECTS = ("{first}, your 20% off coupon is inside!", "Your order #{order} has shipped",
             "Don't miss out: the flash sale ends tonight", "{first}, you left something in your cart",
             "Welcome to {brand}!", "Your monthly statement is ready", "🎉 {first}, double points this weekend",
             "Price drop on items you viewed", "Last chance: {brand} member prices end soon")
_PUSH = (("Flash sale is live ⚡", "Up to 50% off for the next 6 hours. Tap to shop."),
         ("{first}, your cart misses you", "Complete your order and get free delivery."),
         ("Order #{order} shipped 📦", "It is on its way and arrives in 2–3 days."),
         ("Boarding starts soon", "Gate B12 · Boarding at 18:40. Have a great flight!"),
         ("Points expiring", "{first}, 1,200 points expire on Sunday. Use them now."),
         ("New arrivals", "Fresh styles just landed. Be the first to see them."))
_SMS = ("{brand}: Your OTP is {otp}. It expires in 10 minutes. Do not share it with anyone.",
        "{brand}: Hi {first}, your order #{order} is out for delivery. Track: https://{domain}/t/{code}",
        "Flash sale! 30% off everything until midnight at {brand}. Shop: https://{domain}/s/{code} Reply STOP to opt out",
        "{brand}: Payment of {currency}{amount} received. Thank you, {first}!",
        "¡Hola {first}! Tu pedido #{order} ya está en camino. {brand}")
_WHATSAPP = ("Hi {first} 👋\n\nYour order *#{order}* has been confirmed and will arrive on Friday.\n"
             "Track it here: https://{domain}/t/{code}\n\n— Team {brand}",
             "Hello {first}! 🎉 You have unlocked *{currency}{amount} cashback* on your next purchase. "
             "Offer valid for 7 days. Reply STOP to unsubscribe.",
             "Hi {first}, your appointment is confirmed for tomorrow at 10:30. Reply 1 to confirm or 2 to reschedule.")
_SMS_PROVIDERS = ("twilio", "gupshup", "kaleyra", "msg91", "vonage", "sinch")
_WHATSAPP_PROVIDERS = ("twilio", "gupshup", "karix", "meta")

# (country code, national-number prefixes that libphonenumber reads as mobile, national length, grouping)
_PHONES = (
    ("91", ("98", "99", "97", "90", "81", "70", "63"), 10, (5, 5), 35),
    ("1", ("4152", "4153", "2125", "6469", "3057", "3124", "6178", "7023", "9176"), 10, (3, 3, 4), 25),
    ("44", ("7400", "7520", "7823", "7958"), 10, (4, 6), 20),
    ("49", ("151", "152", "160", "176"), 11, (3, 8), 5),
    ("55", ("119", "219"), 11, (2, 5, 4), 5),
    ("65", ("81", "87", "91", "96"), 8, (4, 4), 4),
    ("61", ("40", "41", "42", "43"), 9, (3, 3, 3), 3),
    ("971", ("50", "55"), 9, (2, 3, 4), 3),
)

_CSS = ("body{margin:0;padding:0;background:#f4f4f7;font-family:Helvetica,Arial,sans-serif;color:#333333}"
        ".wrapper{width:100%;background:#f4f4f7;padding:24px 0}.content{max-width:600px;margin:0 auto;"
        "background:#ffffff;border-radius:8px;overflow:hidden}.header{background:#1f2a44;color:#ffffff;"
        "padding:24px;text-align:center;font-size:22px;font-weight:bold}.body{padding:24px;line-height:1.5;"
        "font-size:15px}.products td{padding:8px;border-bottom:1px solid #eeeeee}.price{font-weight:bold;"
        "text-align:right}.button{display:inline-block;background:#ff5a36;color:#ffffff;padding:12px 28px;"
        "border-radius:4px;text-decoration:none;font-weight:bold}.footer{padding:16px 24px;font-size:12px;"
        "color:#8a8a8a;text-align:center}@media (max-width:620px){.content{border-radius:0}}")


@dataclass(frozen=True)
class _Person:
    first: str
    last: str
    email: str


class _Maker:
    """What both profiles' samples share: people, copy, devices, times, defects."""

    profile: str
    id_field: str          # the profile's own name for the message id
    other_id_field: str

    def __init__(self, rng: Random, start_millis: int, tenants: tuple[str, ...]):
        self.rng = rng
        self.start_millis = start_millis
        self.tenants = tenants
        self.channels, self.weights = zip(*_CHANNEL_MIX[self.profile])

    # ---- the three kinds of sample

    def good(self) -> Sample:
        channel = self.rng.choices(self.channels, self.weights)[0]
        return Sample(self._dumps(self.record(channel)), channel, None)

    def bad(self) -> Sample:
        defects = self.defects()
        kind = self.rng.choices(list(defects), [w for w, _ in defects.values()])[0]
        applies_to = defects[kind][1]
        channel = self.rng.choice([c for c in self.channels if applies_to is None or c in applies_to])
        result = getattr(self, "_" + kind)(self.record(channel), channel)
        return Sample(result if isinstance(result, bytes) else self._dumps(result), channel, kind)

    def oversize(self, max_bytes: int) -> Sample:
        """An email just over `max_bytes`: a newsletter with far too many products."""
        record = self.record("email")
        data = self._dumps(record, compact=True, ascii_only=False)
        filler = "<tr><td>Cotton hoodie</td><td class=price>2199</td></tr>"   # nothing JSON escapes
        missing = max_bytes + 1 + self.rng.randrange(64) - len(data)
        pad = (filler * (missing // len(filler) + 1))[:max(0, missing)]
        record["html_body"] = record["html_body"] + pad
        data = self._dumps(record, compact=True, ascii_only=False)   # the filler is plain ASCII: one byte a character
        return Sample(data, "email", "oversize")

    # ---- profile hooks

    def record(self, channel: str) -> dict[str, Any]:
        raise NotImplementedError

    def defects(self) -> dict[str, tuple[int, tuple[str, ...] | None]]:
        """defect -> (weight, channels it applies to, None for all)."""
        return {
            "malformed_json": (3, None), "invalid_utf8": (3, None), "wrong_type": (3, None),
            "not_an_object": (1, None), "unknown_channel": (3, None), "channel_not_archived": (1, None),
            "unknown_field": (2, None), "unarchivable_content": (2, None), "missing_recipient": (3, None),
            "missing_content": (1, ("email", "push", "sms", "whatsapp")),
            "invalid_phone": (3, _TEXT_CHANNELS), "invalid_email": (2, ("email",)),
            "unsafe_id": (4, None), "conflicting_ids": (1, None), "bad_sent_at": (2, None),
            "bad_platform": (2, ("push",)), "unsupported_version": (1, None),
        }

    # ---- people and copy

    def tenant_fields(self) -> dict[str, str]:
        if self.tenants == ("default",):
            return {}
        return {"tenant": self.rng.choice(self.tenants)}

    def person(self) -> _Person:
        first, last = self.rng.choice(_FIRST), self.rng.choice(_LAST)
        local = f"{_ascii(first)}.{_ascii(last)}"
        if self.rng.random() < 0.4:
            local += str(self.rng.randrange(1, 999))
        return _Person(first, last, f"{local}@{self.rng.choice(_MAIL_DOMAINS)}")

    def email_to(self, person: _Person) -> str:
        roll = self.rng.random()
        if roll < 0.2:
            return f"{person.first} {person.last} <{person.email}>"
        if roll < 0.3:
            local, _, domain = person.email.partition("@")
            return f"{local.title()}@{domain.title()}"
        return person.email

    def brand(self) -> tuple[str, str, str, str]:
        return self.rng.choice(_BRANDS)

    def fill(self, template: str, person: _Person, brand) -> str:
        name, domain, currency, _ = brand
        return template.format(first=person.first, brand=name, domain=domain, currency=currency,
                               order=self.rng.randrange(100000, 999999), otp=f"{self.rng.randrange(10**6):06d}",
                               code=self.token(6), amount=f"{self.rng.randrange(99, 9999):,}")

    def email_content(self, person: _Person, brand) -> dict[str, Any]:
        name, domain, currency, _ = brand
        subject = self.fill(self.rng.choice(_SUBJECTS), person, brand)
        paragraphs = [" ".join(self.rng.sample(_SENTENCES, self.rng.randint(2, 4)))
                      for _ in range(self.rng.randint(2, 4))]
        products = self.rng.sample(_PRODUCTS, self.rng.randint(3, 8))
        link = f"https://{domain}/c/{self.token(8)}?utm_source=email&utm_medium=crm"
        unsubscribe = f"https://{domain}/unsubscribe?u={self.token(16)}"
        rows = "".join(f'<tr><td><img src="https://cdn.{domain}/p/{self.token(6)}.jpg" width="64" alt=""></td>'
                       f'<td>{html.escape(p)}</td><td class="price">{currency}{price:,}</td></tr>'
                       for p, price in products)
        body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
        html_body = (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{html.escape(subject)}</title><style>{_CSS}</style></head><body>"
            '<table role="presentation" class="wrapper" width="100%"><tr><td>'
            '<table role="presentation" class="content" width="600">'
            f'<tr><td class="header">{html.escape(name)}</td></tr>'
            f'<tr><td class="body"><p>Hi {html.escape(person.first)},</p>{body}'
            f'<table role="presentation" class="products" width="100%">{rows}</table>'
            f'<p style="text-align:center"><a class="button" href="{link}">Shop now</a></p></td></tr>'
            f'<tr><td class="footer">You receive this email because you signed up at {domain}.<br>'
            f'<a href="{unsubscribe}">Unsubscribe</a> · <a href="https://{domain}/preferences">Preferences</a>'
            f"<br>{html.escape(name)} Ltd, 221B Market Street</td></tr></table></td></tr></table></body></html>")
        plain = "\n\n".join([f"Hi {person.first},", *paragraphs,
                             "\n".join(f"- {p}: {currency}{price:,}" for p, price in products),
                             f"Shop now: {link}", f"Unsubscribe: {unsubscribe}"])
        content = {
            "to": self.email_to(person),
            "subject": subject,
            "from_name": name,
            "from_address": f"{self.rng.choice(('offers', 'no-reply', 'hello', 'orders'))}@mail.{domain}",
            "html_body": html_body,
            "plaintext_body": plain,
            "headers": {"X-Mailer": "campaign-engine", "List-Unsubscribe": f"<{unsubscribe}>",
                        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        }
        if self.rng.random() < 0.1:
            content["amp_body"] = (
                '<!doctype html><html ⚡4email data-css-strict><head><meta charset="utf-8">'
                '<script async src="https://cdn.ampproject.org/v0.js"></script>'
                "<style amp4email-boilerplate>body{visibility:hidden}</style></head>"
                f"<body><p>Hi {html.escape(person.first)},</p>{body}</body></html>")
        if self.rng.random() < 0.1:
            del content["plaintext_body"]
        return content

    def push_copy(self, person: _Person, brand) -> tuple[str, str]:
        title, text = self.rng.choice(_PUSH)
        return self.fill(title, person, brand), self.fill(text, person, brand)

    def phone(self) -> str:
        """A valid mobile number, written as producers write them (no default region needed)."""
        cc, prefixes, length, groups, _ = self.rng.choices(_PHONES, [p[4] for p in _PHONES])[0]
        prefix = self.rng.choice(prefixes)
        national = prefix + "".join(self.rng.choice("0123456789") for _ in range(length - len(prefix)))
        parts, at = [], 0
        for size in groups:
            parts.append(national[at:at + size])
            at += size
        style = self.rng.randrange(7)
        if style == 0:
            return f"+{cc} {' '.join(parts)}"
        if style == 1:
            return f"+{cc}{national}"
        if style == 2:
            return f"00{cc} {national}"
        if style == 3:
            return f"{cc}{national}"     # country-code digits, CleverTap's own format
        if style == 4:
            return f"+{cc}-{'-'.join(parts)}"
        if style == 5 and cc == "1":
            return f"+1 ({parts[0]}) {parts[1]}-{parts[2]}"
        return f"+{cc} {national}"

    def ios_token(self) -> str:
        return self.rng.randbytes(32).hex()

    def fcm_token(self) -> str:
        return f"{self.token(11)}:APA91b{self.token(134)}"

    def token(self, length: int) -> str:
        raw = base64.urlsafe_b64encode(self.rng.randbytes(length)).decode("ascii")
        return raw.replace("-", "x").replace("_", "y")[:length]

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def sent_millis(self) -> int:
        return self.start_millis + self.rng.randrange(SPAN_MILLIS)

    def with_some_nulls(self, record: dict[str, Any], optional: Sequence[str]) -> None:
        """Exports often carry absent fields as null: checks and keys treat null as absent, and the
        payload keeps a null the seed does not omit (docs/envelope.md, Null values)."""
        if self.rng.random() < 0.05:
            for name in optional:
                record.setdefault(name, None)

    # ---- serialisation

    def _dumps(self, value: Any, compact: bool | None = None, ascii_only: bool | None = None) -> bytes:
        """JSON as producers write it: compact or spaced, UTF-8 or \\u escapes."""
        if compact is None:
            compact = self.rng.random() < 0.6
        if ascii_only is None:
            ascii_only = self.rng.random() < 0.3
        separators = (",", ":") if compact else (", ", ": ")
        return json.dumps(value, ensure_ascii=ascii_only, separators=separators).encode("utf-8")

    # ---- defects shared by both profiles (each returns the bad record or its bytes)

    def _malformed_json(self, record, channel):
        text = self._dumps(record, compact=True).decode("utf-8")
        style = self.rng.randrange(7)
        if style == 0:
            return text[:self.rng.randrange(1, len(text))].encode("utf-8")   # a truncated line
        if style == 1:
            return (text[:-1] + ',}').encode("utf-8")
        if style == 2:
            return text.replace('"', "'").encode("utf-8")
        if style == 3:
            return text.replace('"channel":', "channel:", 1).encode("utf-8")
        if style == 4:
            return (text + text).encode("utf-8")
        if style == 5:
            return repr(record).encode("utf-8")
        return b"\xef\xbb\xbf" + text.encode("utf-8")                        # a UTF-8 byte order mark

    def _invalid_utf8(self, record, channel):
        mark = "~~NOT-UTF8~~"
        name = self.rng.choice([k for k, v in record.items() if isinstance(v, str) and k != "channel"])
        record[name] = record[name] + mark
        bad = self.rng.choice((b"Caf\xe9 cr\xe8me", b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82",
                               b"\xff\xfe"))
        return self._dumps(record).replace(mark.encode("ascii"), bad, 1)

    def _wrong_type(self, record, channel):
        name, value = self.rng.choice((
            ("campaign_id", 1722529032.5), ("campaign_id", True), ("to", 447400123456),
            ("sent_at", True), ("sent_at", [1722443282680]), ("user_id", [45142169]),
            ("user_id", {"id": 45142169}), ("version", "1"), (self.id_field, 12345),
            ("headers", ["X-Mailer: campaign-engine"]), ("payload", '{"aps":{"alert":"Hi"}}'),
            ("media_urls", "https://cdn.example.com/a.png"), ("cc", [1, 2]), ("channel", 1),
            ("batch_date", {"$date": "2024-08-01"}), ("attachments", [{"file_name": "invoice.pdf"}]),
            ("subject", ["Hello"]), ("body", {"text": "Hi"}),
        ))
        record[name] = value
        return record

    def _not_an_object(self, record, channel):
        return self.rng.choice(([record], "a message", 42, None))

    def _unknown_channel(self, record, channel):
        record["channel"] = self.rng.choice(("fax", "telegram", "letter", "in_app", "webhook", "",
                                             "content_card", "e mail", "sms-mms"))
        return record

    def _channel_not_archived(self, record, channel):
        record["channel"] = "mms" if self.profile == "clevertap" else "whatsapp"
        return record

    def _unknown_field(self, record, channel):
        name, value = self.rng.choice((("priority", "high"), ("template_id", 88), ("Subject", "Hello"),
                                       ("campaignId", 1722529032), ("tags", ["promo"]), ("", "x")))
        record[name] = value
        return record

    def _unarchivable_content(self, record, channel):
        name = self.rng.choice(self.foreign_fields(channel))
        record[name] = _FOREIGN_VALUES[name]
        return record

    def _missing_recipient(self, record, channel):
        style = self.rng.randrange(3)
        if style == 0:
            del record["to"]
        else:
            record["to"] = None if style == 1 else self.rng.choice(("", "   "))
        return record

    def _missing_content(self, record, channel):
        required = {"email": ("subject", "from_address"), "push": ("payload",),
                    "sms": ("body",), "whatsapp": ("body",)}[channel]
        del record[self.rng.choice(required)]
        return record

    def _invalid_phone(self, record, channel):
        record["to"] = self.rng.choice(("12345", "+44 12", "+1 555", "call me maybe", "+999 1234 5678",
                                        "0", "+", "555-0100", "+91 12", "00 00"))
        return record

    def _invalid_email(self, record, channel):
        record["to"] = self.rng.choice(("not-an-email", "customer@localhost", "customer at example.com",
                                        "@example.com", "customer@", "first last@example.com"))
        return record

    def _unsafe_id(self, record, channel):
        value = self.rng.choice(("../x", "../../etc/passwd", "a/b", "x\x00y", "\x1b[31mred", "tab\there",
                                 "", "..", ".hidden", "-rf", "id?x=1", "50%off", "frag#1", "a" * 201,
                                 "\u202eevil", "spaces here", "née"))
        record.pop(self.other_id_field, None)
        record[self.id_field] = value
        return record

    def _conflicting_ids(self, record, channel):
        record[self.id_field] = self.rng.randbytes(16).hex()
        record[self.other_id_field] = self.rng.randbytes(16).hex()
        return record

    def _bad_sent_at(self, record, channel):
        record["sent_at"] = self.rng.choice(("yesterday", "2024-13-45T00:00:00Z", -1722443282, 1e20,
                                             "31/07/2024 16:28", "1722443282680ms"))
        return record

    def _bad_platform(self, record, channel):
        record["channel"] = "push"
        record["platform"] = self.rng.choice(self.bad_platforms())
        return record

    def _unsupported_version(self, record, channel):
        record["version"] = self.rng.choice((0, 2, 3))
        return record

    def foreign_fields(self, channel: str) -> tuple[str, ...]:
        raise NotImplementedError

    def bad_platforms(self) -> tuple[str, ...]:
        return ("blackberry", "windows_phone", "huawei", "")


# Envelope fields with well-typed values, for content a profile's payload has no field for.
_FOREIGN_VALUES = {
    "extras": {"utm_campaign": "spring"}, "attachments": [{"file_name": "a.pdf", "bytes": "JVBERi0="}],
    "app_id": "3f1b5c2e-8a8d-4c0e-9a51-0b6c2d1e4f70", "canvas_id": "c0ffee00-0000-4000-8000-000000000001",
    "external_id": "user-1001", "body": "Hi there!", "media_urls": ["https://cdn.example.com/a.png"],
    "subject": "Hello", "canvas_name": "Spring Canvas", "html_body": "<p>Hi</p>", "payload": {"x": 1},
    "subscription_group": "sg-1", "canvas_step_id": "step-1", "cc": ["support@example.com"],
    "bcc": "archive@example.com", "journey_id": 2450, "journey_name": "Sale Journey",
    "journey_node_id": 1, "provider": "twilio", "platform": "ios",
}


class _CleverTap(_Maker):
    profile = "clevertap"
    id_field, other_id_field = "message_id", "dispatch_id"

    def __init__(self, rng, start_millis, tenants):
        super().__init__(rng, start_millis, tenants)
        self.campaigns = []
        for _ in range(40):
            campaign = {"campaign_id": 1_718_000_000 + rng.randrange(9_000_000),
                        "campaign_name": rng.choice(_CAMPAIGNS)}
            if rng.random() < 0.35:
                campaign.update(journey_id=rng.randrange(1000, 9999), journey_node_id=rng.randint(1, 8),
                                journey_name=rng.choice(_JOURNEYS))
            self.campaigns.append(campaign)

    def record(self, channel: str) -> dict[str, Any]:
        rng = self.rng
        person, brand = self.person(), self.brand()
        sent = self.sent_millis()
        record: dict[str, Any] = {"channel": self._channel_spelling(channel)}
        record.update(self.tenant_fields())
        if channel == "email":
            record.update(self.email_content(person, brand))
            if rng.random() < 0.1:
                record["cc"] = [f"support@{brand[1]}"]
            if rng.random() < 0.05:
                record["bcc"] = f"archive@{brand[1]}"
        elif channel == "push":
            record.update(self._push(person, brand, record["channel"]))
        else:
            record["to"] = self.phone()
            template = rng.choice(_WHATSAPP if channel == "whatsapp" else _SMS)
            record["body"] = self.fill(template, person, brand)
            record["provider"] = rng.choice(_WHATSAPP_PROVIDERS if channel == "whatsapp" else _SMS_PROVIDERS)
        record["sent_at"] = self._sent_at(sent)
        roll = rng.random()
        if roll < 0.15:
            record["batch_date"] = _yyyymmdd(sent) if rng.random() < 0.7 else int(_yyyymmdd(sent))
        elif roll < 0.2:
            record["batch_id"] = _yyyymmdd(sent)
        campaign = dict(rng.choice(self.campaigns))
        if rng.random() < 0.1:
            campaign["campaign_id"] = str(campaign["campaign_id"])
        record.update(campaign)
        record.update(self._identity(required=channel == "push"))
        roll = rng.random()
        if roll < 0.65:
            record["message_id"] = rng.randbytes(32).hex()
        elif roll < 0.7:
            record["dispatch_id"] = rng.randbytes(32).hex()
        elif roll < 0.73:
            record["message_id"] = record["dispatch_id"] = rng.randbytes(32).hex()
        self.with_some_nulls(record, ("journey_id", "journey_name", "amp_body" if channel == "email" else "provider"))
        return record

    def _channel_spelling(self, channel: str) -> str:
        spellings = {"email": ("email", "Email", "EMAIL", "e-mail"),
                     "push": ("push", "Push", "push", "ios_push", "android_push"),
                     "sms": ("sms", "Sms", "SMS"), "whatsapp": ("whatsapp", "WhatsApp")}[channel]
        return self.rng.choice(spellings)

    def _push(self, person, brand, channel_spelling: str) -> dict[str, Any]:
        rng = self.rng
        named = channel_spelling.split("_")[0] if "_" in channel_spelling else None
        platform = named or rng.choice(("ios", "android"))
        title, text = self.push_copy(person, brand)
        deep_link = f"{brand[3]}://offers/{rng.randrange(100, 999)}"
        if platform == "ios":
            to = self.ios_token()
            payload = {"aps": {"alert": {"title": title, "body": text}, "sound": "default",
                               "badge": rng.randint(1, 9), "mutable-content": 1},
                       "wzrk_pivot": "wzrk_default", "wzrk_dl": deep_link}
        else:
            to = self.fcm_token()
            payload = {"notification": {"title": title, "body": text, "channel_id": "offers",
                                        "image": f"https://cdn.{brand[1]}/push/{self.token(8)}.jpg"},
                       "data": {"wzrk_pivot": "wzrk_default", "wzrk_dl": deep_link}, "priority": "high"}
        fields = {"to": to, "payload": payload}
        if named is None or rng.random() < 0.3:
            names = {"ios": ("iOS", "ios", "IOS", "apns"), "android": ("Android", "android", "fcm")}
            fields["platform"] = rng.choice(names[platform])
        return fields

    def _sent_at(self, millis: int):
        roll = self.rng.random()
        if roll < 0.70:
            return millis
        if roll < 0.78:
            return millis // 1000
        if roll < 0.86:
            return _iso(millis, None)
        if roll < 0.91:
            return _iso(millis, self.rng.choice((330, -240, 60)))
        if roll < 0.96:
            return str(millis)
        return round(millis / 1000, 3)

    def _identity(self, required: bool) -> dict[str, Any]:
        rng = self.rng
        roll = rng.random()
        if not required and roll < 0.2:
            return {}
        if roll < 0.6:
            return {"user_id": rng.randrange(10_000_000, 99_999_999)}
        if roll < 0.9:
            found = {"device_identity": "__" + rng.randbytes(16).hex()}
            if rng.random() < 0.3:
                found["customer_identity"] = f"CUST-{rng.randrange(100000, 999999)}"
            return found
        return {"customer_identity": f"CUST-{rng.randrange(100000, 999999)}"}

    def defects(self):
        found = super().defects()
        found.update({"bad_campaign": (2, None), "bad_batch_date": (1, None), "missing_identity": (2, ("push",))})
        return found

    def foreign_fields(self, channel: str) -> tuple[str, ...]:
        return {"email": ("extras", "attachments", "app_id", "canvas_id", "external_id", "body"),
                "push": ("app_id", "subject", "body", "canvas_name", "external_id", "html_body"),
                "sms": ("media_urls", "subscription_group", "subject", "payload", "canvas_step_id", "app_id"),
                "whatsapp": ("media_urls", "subscription_group", "html_body", "payload", "extras")}[channel]

    def bad_platforms(self):
        return super().bad_platforms() + ("web_push", "kindle", "web")

    def _unsafe_id(self, record, channel):
        if self.rng.random() < 0.1:
            record["campaign_id"] = -1722529032     # a negative id would start the key segment with '-'
            return record
        return super()._unsafe_id(record, channel)

    def _bad_campaign(self, record, channel):
        style = self.rng.randrange(4)
        if style == 0:
            del record["campaign_id"]
        elif style == 1:
            del record["campaign_name"]
        elif style == 2:
            record["campaign_name"] = "  "
        else:
            record["campaign_id"] = self.rng.choice(("summer-sale", "1722529032a", "12.5"))
        return record

    def _bad_batch_date(self, record, channel):
        record.pop("batch_id", None)
        record["batch_date"] = self.rng.choice(("2024-08-01", "20241301", "2024081", 202408, "yesterday"))
        return record

    def _missing_identity(self, record, channel):
        for name in ("user_id", "device_identity", "customer_identity"):
            record.pop(name, None)
        return record


class _Braze(_Maker):
    profile = "braze"
    id_field, other_id_field = "dispatch_id", "message_id"

    def __init__(self, rng, start_millis, tenants):
        super().__init__(rng, start_millis, tenants)
        self.campaigns = [{"campaign_id": self.uuid(), "campaign_name": rng.choice(_CAMPAIGNS),
                           "message_variation_id": self.uuid()} for _ in range(30)]
        self.canvases = []
        for _ in range(15):
            canvas = {"canvas_id": self.uuid(), "canvas_name": rng.choice(_JOURNEYS).replace("Journey", "Canvas")}
            for _ in range(rng.randint(1, 4)):
                self.canvases.append({**canvas, "canvas_step_id": self.uuid(),
                                      "canvas_step_name": rng.choice(_CANVAS_STEPS),
                                      "canvas_variation_id": self.uuid()})
        self.apps = {p: self.uuid() for p in ("ios", "android", "kindle", "web")}
        self.subscription_groups = [self.uuid() for _ in range(3)]

    def record(self, channel: str) -> dict[str, Any]:
        rng = self.rng
        person, brand = self.person(), self.brand()
        sent = self.sent_millis()
        record: dict[str, Any] = {"channel": channel}
        record.update(self.tenant_fields())
        if channel == "email":
            record.update(self.email_content(person, brand))
            if rng.random() < 0.4:
                record["extras"] = {"utm_source": "braze", "utm_campaign": self.token(6).lower(),
                                    "category": rng.choice(("promo", "transactional", "newsletter"))}
            if rng.random() < 0.05:
                record["attachments"] = [{"file_name": f"invoice-{rng.randrange(10**5, 10**6)}.pdf",
                                          "bytes": base64.b64encode(rng.randbytes(300)).decode("ascii")}]
        elif channel == "push":
            record.update(self._push(person, brand))
        else:
            if channel == "sms" and rng.random() < 0.2:
                record["channel"] = "SMS"
            record["to"] = self.phone()
            record["body"] = self.fill(rng.choice(_SMS), person, brand)
            record["subscription_group"] = rng.choice(self.subscription_groups)
            record["provider"] = rng.choice(("twilio", "sinch", "infobip"))
            if channel == "mms" or rng.random() < 0.02:    # an sms with media is an MMS too
                record["media_urls"] = [f"https://cdn.{brand[1]}/mms/{self.token(10)}.jpg"
                                        for _ in range(rng.randint(1, 2))]
                if channel == "mms" and rng.random() < 0.2:
                    del record["body"]
        record["sent_at"] = self._sent_at(sent)
        roll = rng.random()
        if roll < 0.55:
            record.update(rng.choice(self.campaigns))
        elif roll < 0.95:
            canvas = dict(rng.choice(self.canvases))
            if rng.random() < 0.5:
                canvas["message_variation_id"] = self.uuid()
            record.update(canvas)
        if rng.random() < 0.95:
            record["user_id"] = rng.randbytes(12).hex()
        if rng.random() < 0.9:
            record["external_id"] = rng.choice((f"user-{rng.randrange(10**6)}", self.uuid()))
        roll = rng.random()
        if roll < 0.65:
            record["dispatch_id"] = rng.randbytes(16).hex()
        elif roll < 0.7:
            record["message_id"] = rng.randbytes(16).hex()
        self.with_some_nulls(record, ("canvas_name", "external_id"))
        return record

    def _push(self, person, brand) -> dict[str, Any]:
        rng = self.rng
        platform = rng.choices(("ios", "android", "web", "kindle"), (45, 40, 10, 5))[0]
        title, text = self.push_copy(person, brand)
        uri = f"{brand[3]}://offers/{rng.randrange(100, 999)}"
        if platform == "ios":
            to = self.ios_token()
            payload = {"aps": {"alert": {"title": title, "body": text}, "sound": "default", "mutable-content": 1},
                       "ab": {"c": self.token(24)}, "ab_uri": uri}
        elif platform == "android":
            to = self.fcm_token()
            payload = {"data": {"t": title, "a": text, "uri": uri, "ab_c": self.token(24),
                                "ab_iu": f"https://cdn.{brand[1]}/push/{self.token(8)}.jpg"}, "priority": "high"}
        elif platform == "kindle":
            to = "amzn1.adm-registration.v3." + self.token(180)
            payload = {"data": {"t": title, "a": text, "uri": uri}, "consolidationKey": self.token(10)}
        else:
            to = f"https://fcm.googleapis.com/fcm/send/{self.token(11)}:APA91b{self.token(120)}"
            payload = {"title": title, "body": text, "icon": f"https://{brand[1]}/icon-192.png",
                       "url": f"https://{brand[1]}/offers", "requireInteraction": False}
        fields: dict[str, Any] = {"to": to, "payload": payload, "app_id": self.apps[platform]}
        if rng.random() < 0.4:
            fields["channel"] = f"{platform}_push"
            if rng.random() < 0.3:
                fields["platform"] = platform
        else:
            fields["platform"] = rng.choice((f"{platform}_push", platform))
        return fields

    def _sent_at(self, millis: int):
        roll = self.rng.random()
        if roll < 0.75:
            return millis // 1000
        if roll < 0.85:
            return millis
        if roll < 0.95:
            return _iso(millis, None)
        return _iso(millis, self.rng.choice((330, -240)))

    def defects(self):
        found = super().defects()
        found["missing_content"] = (1, ("email", "push", "sms"))
        return found

    def foreign_fields(self, channel: str) -> tuple[str, ...]:
        return {"email": ("cc", "bcc", "journey_id", "body", "payload", "app_id"),
                "push": ("body", "subject", "journey_id", "provider", "cc", "html_body"),
                "sms": ("payload", "html_body", "subject", "journey_node_id", "app_id", "extras"),
                "mms": ("payload", "journey_name", "subject", "attachments", "platform")}[channel]

    def _unsafe_id(self, record, channel):
        roll = self.rng.random()
        if roll < 0.25:
            for name in list(record):
                if name.startswith(("campaign_", "canvas_", "message_variation")):
                    del record[name]
            record["canvas_step_id"] = "../x" if roll < 0.12 else "a/b"   # the folder when there is no campaign
            return record
        if roll < 0.5:
            record["campaign_id"] = self.rng.choice(("../x", "a/b", "", "x\x00y", "-1"))
            return record
        return super()._unsafe_id(record, channel)


def _ascii(name: str) -> str:
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return "".join(c for c in folded.lower() if c.isalnum())


def _iso(millis: int, offset_minutes: int | None) -> str:
    moment = _dt.datetime.fromtimestamp(millis / 1000, tz=_dt.timezone.utc)
    if offset_minutes is None:
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return moment.astimezone(_dt.timezone(_dt.timedelta(minutes=offset_minutes))).isoformat(timespec="seconds")


def _yyyymmdd(millis: int) -> str:
    return _dt.datetime.fromtimestamp(millis / 1000, tz=_dt.timezone.utc).strftime("%Y%m%d")


# --------------------------------------------------------------------------- command line

def _epoch_millis(text: str) -> int:
    moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return int(moment.timestamp() * 1000)


@contextlib.contextmanager
def _output(path: str) -> Iterator[BinaryIO]:
    """A binary writer for `path`, compressed by its suffix; '-' is stdout."""
    if path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with open(path, "wb") as raw:
        if path.endswith(".gz"):
            # No file name or time in the header: the same sample gives the same file.
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
                yield out
        elif path.endswith(".lz4"):
            import lz4.frame

            with lz4.frame.open(raw, "wb") as out:
                yield out
        elif path.endswith((".zst", ".zstd")):
            import zstandard

            with zstandard.ZstdCompressor().stream_writer(raw, closefd=False) as out:
                yield out
        else:
            yield raw


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m archive.sample",
        description="Write realistic outbound messages, with a fraction of bad ones, as JSON Lines.")
    parser.add_argument("--count", type=int, required=True, help="number of records to write")
    parser.add_argument("--profile", choices=PROFILES, default="clevertap",
                        help="the channels and fields to generate for (default: clevertap)")
    parser.add_argument("--out", required=True,
                        help="output path; .gz, .lz4 or .zst compresses, '-' writes to stdout")
    parser.add_argument("--seed", type=int, default=7, help="random seed: the same seed gives the same records")
    parser.add_argument("--bad-ratio", type=float, default=0.02, help="fraction of bad records (default 0.02)")
    parser.add_argument("--start", default=None,
                        help="earliest send time, ISO-8601 (default 2024-06-01T00:00:00Z); times span 120 days")
    parser.add_argument("--tenant", action="append", default=None,
                        help="tenant to spread records over (repeatable; default: no tenant field)")
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_MESSAGE_BYTES,
                        help="the archiver's message size limit: oversize records are just over it")
    parser.add_argument("--oversize-every", type=int, default=DEFAULT_OVERSIZE_EVERY,
                        help="one oversize record per this many (0: none; default 5000)")
    args = parser.parse_args(argv)
    try:
        start = DEFAULT_START_MILLIS if args.start is None else _epoch_millis(args.start)
        produced = samples(args.count, args.profile, args.seed, args.bad_ratio, start,
                           tuple(args.tenant or ("default",)), args.max_bytes, args.oversize_every)
    except ValueError as exc:
        parser.error(str(exc))
    channels: Counter = Counter()
    defects: Counter = Counter()
    with _output(args.out) as out:
        for sample in produced:
            out.write(sample.data + b"\n")
            if sample.defect is None:
                channels[sample.channel] += 1
            else:
                defects[sample.defect] += 1
    valid = sum(channels.values())
    mix = ", ".join(f"{c} {n}" for c, n in sorted(channels.items()))
    print(f"sample: {valid + sum(defects.values())} {args.profile} records to {args.out}: "
          f"{valid} valid ({mix}), {sum(defects.values())} bad", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
