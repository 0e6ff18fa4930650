"""Braze's "Archivo de mensajes" contract (shared/seeds/braze-message-archiving.es.md).

Key:  sent_messages/<email|push|sms>/<md5 of downcased email | push token | E.164 phone>/
      <campaign_id, else canvas_step_id, else "unassociated">/<dispatch_id>.json.gz

MMS is the sms channel with media_urls. sent_at is unix seconds.
"""

from __future__ import annotations

from archive import identity, keys
from archive.envelope import Envelope, InvalidMessage, PAYLOAD_VERSION, sent_at_millis
from archive.profiles.base import (
    ArchiveEntry, BuildContext, Profile, archived_fields, as_string, message_id, project, push_platform,
    required_string,
)

CHANNEL_FOLDERS = {"email": "email", "push": "push", "sms": "sms", "mms": "sms"}
UNASSOCIATED = "unassociated"

_COMMON_AFTER_DISPATCH = ("campaign_id", "canvas_id", "canvas_step_id", "canvas_variation_id",
                          "message_variation_id")
_NAMES = ("campaign_name", "canvas_name", "canvas_step_name", "external_id")


class BrazeProfile(Profile):
    name = "braze"
    default_compression = "gzip"
    channels = tuple(CHANNEL_FOLDERS)
    content_fields = {
        "email": ("to", "subject", "from_name", "from_address", "html_body", "plaintext_body",
                  "amp_body", "extras", "headers"),
        "sms": ("to", "body", "subscription_group", "provider", "media_urls"),
        "mms": ("to", "body", "subscription_group", "provider", "media_urls"),
        "push": ("to", "payload", "platform", "app_id"),
    }
    _required = {
        "email": ("to", "subject", "from_address"),
        "sms": ("to", "body"),
        "mms": ("to",),
        "push": ("to", "payload"),
    }
    # "may not be available" (the campaign and Canvas ids, attachments), "will
    # only be available if the message is from a campaign / Canvas" (the names),
    # and media_urls, which "indicates a message is MMS". user_id, as before, is
    # archived (as a string) only when given. The rest (amp_body, extras, ...)
    # keep a null: Braze's own sample files carry "amp_body": null, "extras": null.
    omitted_when_null = frozenset(
        _COMMON_AFTER_DISPATCH + ("attachments", "media_urls", "user_id", "campaign_name", "canvas_name",
                                  "canvas_step_name"))

    _archived = {channel: archived_fields(
                     fields + _COMMON_AFTER_DISPATCH + (("attachments",) if channel == "email" else ()) + _NAMES)
                 for channel, fields in content_fields.items()}

    def build(self, envelope: Envelope, context: BuildContext) -> ArchiveEntry:
        self.check_channel(envelope)
        channel = envelope.channel
        fields = self.content_fields[channel]
        self.check_no_unarchived_content(envelope, self._archived[channel])
        for name in self._required[channel]:
            if envelope.get(name) is None:
                raise InvalidMessage(f"{name} is required by the braze profile for {channel}", name)
        if channel == "email":
            required_string(envelope, "from_address", self.name)
        if channel == "mms" and envelope.get("body") is None and not envelope.get("media_urls"):
            raise InvalidMessage("an mms needs a body or media_urls", "media_urls")

        sent = sent_at_millis(envelope, context.received_millis)
        dispatch_id = message_id(envelope, "dispatch_id", "message_id")
        to = required_string(envelope, "to", self.name)

        computed = {}
        if channel == "email":
            recipient = identity.email_address(to)
        elif channel == "push":
            recipient = identity.push_token(to).lower()
            computed["platform"] = push_platform(envelope) + "_push"
        else:
            recipient = computed["to"] = identity.e164(to, context.default_region)
        payload: dict = {"version": PAYLOAD_VERSION}
        project(envelope, fields, payload, computed, self.omitted_when_null)

        payload["sent_at"] = sent // 1000
        payload["dispatch_id"] = dispatch_id
        for name in _COMMON_AFTER_DISPATCH:
            if envelope.get(name) is not None:
                payload[name] = as_string(envelope.get(name))
        if channel == "email":
            project(envelope, ("attachments",), payload, None, self.omitted_when_null)
        if envelope.get("user_id") is not None:
            payload["user_id"] = as_string(envelope.get("user_id"))
        project(envelope, _NAMES, payload, None, self.omitted_when_null)
        if payload.get("external_id") is not None:
            payload["external_id"] = as_string(payload["external_id"])

        if envelope.get("campaign_id") is not None:
            group = keys.segment(envelope.get("campaign_id"), "campaign_id")
        elif envelope.get("canvas_step_id") is not None:
            group = keys.segment(envelope.get("canvas_step_id"), "canvas_step_id")
        else:
            group = UNASSOCIATED
        stem = keys.join("sent_messages", CHANNEL_FOLDERS[channel], identity.md5_hex(recipient),
                         group, dispatch_id)
        return ArchiveEntry(dispatch_id, channel, stem, payload, sent)
