"""CleverTap's Message Archiving contract (shared/seeds/clevertap-message-archiving.md).

Key:  sent_messages/<Email|Push|Sms|WhatsApp>/<yyyymm>/<campaign_id>/<md5 of identity>/<message_id>.json.lz4

Identity: the device identity if present, else the customer identity, for
push; the mobile number in country-code format (digits, no '+') for sms and
whatsapp; the email address for email. yyyymm is the batch date's (yyyymmdd)
or else the send time's, in UTC. sent_at is epoch milliseconds.
"""

from __future__ import annotations

from archive import identity, keys
from archive.envelope import Envelope, InvalidMessage, PAYLOAD_VERSION, sent_at_millis, year_month
from archive.profiles.base import (
    ArchiveEntry, BuildContext, Profile, archived_fields, as_int, message_id, project, push_platform,
    required_string,
)

CHANNEL_FOLDERS = {"email": "Email", "push": "Push", "sms": "Sms", "whatsapp": "WhatsApp"}
_PLATFORM_NAMES = {"ios": "iOS", "android": "Android"}
_JOURNEY_FIELDS = ("journey_id", "journey_node_id", "journey_name")


class CleverTapProfile(Profile):
    name = "clevertap"
    default_compression = "lz4"
    channels = tuple(CHANNEL_FOLDERS)
    content_fields = {
        "push": ("to", "payload", "platform"),
        "email": ("to", "subject", "from_name", "from_address", "cc", "bcc",
                  "html_body", "plaintext_body", "amp_body", "headers"),
        "sms": ("to", "body", "provider"),
        "whatsapp": ("to", "body", "provider"),
    }
    _required = {
        "push": ("to", "payload"),
        "email": ("to", "subject", "from_address"),
        "sms": ("to", "body"),
        "whatsapp": ("to", "body"),
    }
    # "List of CC's if available", "will only be available if the email has
    # ampBody", "may not be available, exists only if this campaign is a journey node".
    omitted_when_null = frozenset({"cc", "bcc", "amp_body"} | set(_JOURNEY_FIELDS))

    _archived = {channel: archived_fields(fields + ("campaign_id", "campaign_name") + _JOURNEY_FIELDS)
                 for channel, fields in content_fields.items()}

    def build(self, envelope: Envelope, context: BuildContext) -> ArchiveEntry:
        self.check_channel(envelope)
        channel = envelope.channel
        fields = self.content_fields[channel]
        self.check_no_unarchived_content(envelope, self._archived[channel])
        given = envelope.fields.get
        for name in self._required[channel]:
            if given(name) is None:
                raise InvalidMessage(f"{name} is required by the clevertap profile for {channel}", name)
        if channel == "email":
            required_string(envelope, "from_address", self.name)

        sent = sent_at_millis(envelope, context.received_millis)
        month = year_month(envelope, sent)
        campaign_id = as_int(envelope, "campaign_id") if given("campaign_id") is not None else None
        if campaign_id is None:
            raise InvalidMessage("campaign_id is required by the clevertap profile", "campaign_id")
        campaign_name = required_string(envelope, "campaign_name", self.name)
        msg_id = message_id(envelope, "message_id", "dispatch_id")
        user = _user_identity(envelope)

        to = required_string(envelope, "to", self.name)
        computed = {}
        if channel == "push":
            if user is None:
                raise InvalidMessage(
                    "push needs device_identity, customer_identity or user_id for its key", "user_id")
            identity.push_token(to)  # archived as given, but one well-formed token
            recipient = identity.user_identity(user, "user_id")
            platform = push_platform(envelope)
            if platform not in _PLATFORM_NAMES:
                raise InvalidMessage("the clevertap profile archives push for iOS or Android only", "platform")
            computed["platform"] = _PLATFORM_NAMES[platform]
        elif channel == "email":
            recipient = identity.email_address(to)
            for name in ("cc", "bcc"):  # archived as given, but each entry one address
                identity.email_addresses(given(name), name)
        else:
            recipient = computed["to"] = identity.country_code_format(
                identity.e164(to, context.default_region))
        payload: dict = {"version": PAYLOAD_VERSION}
        project(envelope, fields, payload, computed, self.omitted_when_null)

        payload["sent_at"] = sent
        payload["message_id"] = msg_id
        payload["campaign_id"] = campaign_id
        payload["campaign_name"] = campaign_name
        if user is not None:
            payload["user_id"] = user
        for name in ("journey_id", "journey_node_id"):
            if given(name) is not None:
                payload[name] = as_int(envelope, name)
        project(envelope, ("journey_name",), payload, None, self.omitted_when_null)

        stem = keys.join(
            "sent_messages", CHANNEL_FOLDERS[channel], month,
            keys.segment(campaign_id, "campaign_id"), identity.md5_hex(recipient), msg_id)
        return ArchiveEntry(msg_id, channel, stem, payload, sent)


def _user_identity(envelope: Envelope):
    """CleverTap's user_id: the device identity if it exists, else the customer identity.

    A seed-shaped record gives it as `user_id`; a record may give the two
    identities instead, or as well, but then they must agree: the payload's
    user_id and the push key's digest name the same identity.
    """
    get = envelope.fields.get
    for name in ("device_identity", "customer_identity", "user_id"):
        value = get(name)
        if isinstance(value, str) and not value.strip():
            raise InvalidMessage(f"{name} is empty", name)
    rule = get("device_identity")
    if rule is None:
        rule = get("customer_identity")
    given = get("user_id")
    if given is not None and rule is not None and str(given) != str(rule):
        raise InvalidMessage(
            "user_id must be the device identity if it exists, else the customer identity", "user_id")
    return given if given is not None else rule
