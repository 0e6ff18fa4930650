"""Output profiles: the two seeds' key layouts and payloads, byte for byte.

Expected keys and payloads are written out in full; the field orders are
copied from the seeds' example payloads (shared/seeds/*.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import re

import pytest

from archive.archiver import Archiver, ArchiverConfig
from archive.encoding import get_codec
from archive.envelope import InvalidMessage, decode, derived_message_id
from archive.profiles import PROFILES, BuildContext, get_profile

NOW = 1_725_435_360_123        # 2024-09-04T07:36:00.123Z
SENT = 1_722_443_282_680       # 2024-07-31T16:28:02.680Z, the seeds' sent_at

# MD5 digests of the identities used below (pinned by test_md5_literals).
MD5 = {
    "45142169": "7358f56e701f36602dd9817d75e6f95a",
    "dev-1": "1a6fd60a34f639eee11bf9e6b9689441",
    "cust-1": "59904136ac5d0a41c3a4ddcac83b81cd",
    "15555555555": "b3e2048d6e5378173713705fde6a93da",
    "16502530000": "193dfb8c227d629ca452953c5db6fd48",
    "customer@example.com": "592fc57ef0b254235cfa5977bccfd34a",
    "+15555555555": "49b860993017bf3a154c92e9a75dbaa7",
    "+16502530000": "b38416242ea6a45cd9eb0b75f2561388",
    "test_push_token12345": "32b802170652af2b5624b695f34de089",
}

# Field order of each seed's example payload.
SEED_ORDER = {
    ("clevertap", "push"): ["version", "to", "payload", "platform", "sent_at", "message_id", "campaign_id",
                            "campaign_name", "user_id", "journey_id", "journey_node_id", "journey_name"],
    ("clevertap", "email"): ["version", "to", "subject", "from_name", "from_address", "cc", "bcc", "html_body",
                             "plaintext_body", "amp_body", "headers", "sent_at", "message_id", "campaign_id",
                             "campaign_name", "user_id", "journey_id", "journey_node_id", "journey_name"],
    ("clevertap", "sms"): ["version", "to", "body", "provider", "sent_at", "message_id", "campaign_id",
                           "campaign_name", "user_id", "journey_id", "journey_node_id", "journey_name"],
    ("braze", "email"): ["version", "to", "subject", "from_name", "from_address", "html_body", "plaintext_body",
                         "amp_body", "extras", "headers", "sent_at", "dispatch_id", "campaign_id", "canvas_id",
                         "canvas_step_id", "canvas_variation_id", "message_variation_id", "attachments",
                         "user_id", "campaign_name", "canvas_name", "canvas_step_name", "external_id"],
    ("braze", "sms"): ["version", "to", "body", "subscription_group", "provider", "media_urls", "sent_at",
                       "dispatch_id", "campaign_id", "canvas_id", "canvas_step_id", "canvas_variation_id",
                       "message_variation_id", "user_id", "campaign_name", "canvas_name", "canvas_step_name",
                       "external_id"],
    ("braze", "push"): ["version", "to", "payload", "platform", "app_id", "sent_at", "dispatch_id", "campaign_id",
                        "canvas_id", "canvas_step_id", "canvas_variation_id", "message_variation_id", "user_id",
                        "campaign_name", "canvas_name", "canvas_step_name", "external_id"],
}
SEED_ORDER["clevertap", "whatsapp"] = SEED_ORDER["clevertap", "sms"]
SEED_ORDER["braze", "mms"] = SEED_ORDER["braze", "sms"]


def build(profile: str, record: dict, region: str | None = None):
    return get_profile(profile).build(decode(record), BuildContext(NOW, region))


def test_md5_literals():
    for identity, digest in MD5.items():
        assert hashlib.md5(identity.encode()).hexdigest() == digest


# --- CleverTap -------------------------------------------------------------

CT_MID = "57040f2b01ac851c2b2538e817983d1e2e6cdd01cc5e20740550729525a3f345"
CT_PUSH = {"channel": "Push", "to": "frfsgvrwe:APfdsafsgdfsgghfgfgjkhfsfgdhjhbvcvnetry767456fxsasdf",
           "payload": {"aps": {"alert": "20% off"}}, "platform": "iOS", "sent_at": SENT, "message_id": CT_MID,
           "campaign_id": 1722529032, "campaign_name": "Flat Offer Sale Campaign", "user_id": 45142169}
CT_SMS = {"channel": "Sms", "to": "+1 (555) 555-5555", "body": "Hi there!", "provider": "twilio",
          "sent_at": SENT, "message_id": CT_MID, "campaign_id": 1722529032,
          "campaign_name": "Flat Offer Sale Campaign", "user_id": 45142169}
CT_EMAIL = {"channel": "Email", "to": "customer@example.com", "subject": "20% off coupon inside!",
            "from_address": "no-reply@clevertap.com", "sent_at": SENT, "message_id": CT_MID,
            "campaign_id": 1722529032, "campaign_name": "Flat Offer Sale Campaign", "user_id": 45142169}

CT_KEYS = [
    # (record, default region, key stem)
    pytest.param(CT_PUSH, None, f"sent_messages/Push/202407/1722529032/{MD5['45142169']}/{CT_MID}",
                 id="push-user_id"),
    pytest.param({**CT_PUSH, "user_id": None, "device_identity": "dev-1", "customer_identity": "cust-1"}, None,
                 f"sent_messages/Push/202407/1722529032/{MD5['dev-1']}/{CT_MID}", id="push-device-identity-first"),
    pytest.param({**CT_PUSH, "user_id": None, "customer_identity": "cust-1"}, None,
                 f"sent_messages/Push/202407/1722529032/{MD5['cust-1']}/{CT_MID}",
                 id="push-customer-identity-before-user_id"),
    pytest.param({**CT_PUSH, "user_id": "45142169"}, None,
                 f"sent_messages/Push/202407/1722529032/{MD5['45142169']}/{CT_MID}", id="push-user_id-string"),
    pytest.param({**CT_PUSH, "channel": "android_push", "platform": None}, None,
                 f"sent_messages/Push/202407/1722529032/{MD5['45142169']}/{CT_MID}", id="push-android_push-channel"),
    pytest.param(CT_SMS, None, f"sent_messages/Sms/202407/1722529032/{MD5['15555555555']}/{CT_MID}",
                 id="sms-punctuated-e164"),
    pytest.param({**CT_SMS, "to": "15555555555"}, None,
                 f"sent_messages/Sms/202407/1722529032/{MD5['15555555555']}/{CT_MID}", id="sms-country-code-digits"),
    pytest.param({**CT_SMS, "to": "(650) 253-0000"}, "US",
                 f"sent_messages/Sms/202407/1722529032/{MD5['16502530000']}/{CT_MID}", id="sms-national-us"),
    pytest.param({**CT_SMS, "channel": "WhatsApp", "to": "+15555555555"}, None,
                 f"sent_messages/WhatsApp/202407/1722529032/{MD5['15555555555']}/{CT_MID}", id="whatsapp"),
    # The seed's example path, with a known number in place of its unknown one.
    pytest.param({**CT_SMS, "channel": "whatsapp", "to": "15555555555", "campaign_id": 1725435360,
                  "sent_at": 1725435360000,
                  "message_id": "49482d489b871510eeff7db9a8ab443248ad1ea596e5108e02d16ab5b2ea47db"}, None,
                 "sent_messages/WhatsApp/202409/1725435360/b3e2048d6e5378173713705fde6a93da/"
                 "49482d489b871510eeff7db9a8ab443248ad1ea596e5108e02d16ab5b2ea47db", id="whatsapp-seed-example"),
    pytest.param(CT_EMAIL, None, f"sent_messages/Email/202407/1722529032/{MD5['customer@example.com']}/{CT_MID}",
                 id="email"),
    pytest.param({**CT_EMAIL, "to": "Customer <Customer@Example.COM>"}, None,
                 f"sent_messages/Email/202407/1722529032/{MD5['customer@example.com']}/{CT_MID}",
                 id="email-lower-cased-display-name"),
    pytest.param({**CT_SMS, "batch_date": "20240905"}, None,
                 f"sent_messages/Sms/202409/1722529032/{MD5['15555555555']}/{CT_MID}", id="batch_date-month"),
    pytest.param({**CT_SMS, "batch_id": 20231231}, None,
                 f"sent_messages/Sms/202312/1722529032/{MD5['15555555555']}/{CT_MID}", id="batch_id-month"),
    pytest.param({**CT_SMS, "sent_at": None}, None,
                 f"sent_messages/Sms/202409/1722529032/{MD5['15555555555']}/{CT_MID}", id="no-sent_at-now"),
    pytest.param({**CT_SMS, "sent_at": "2024-09-01T01:00:00+02:00"}, None,
                 f"sent_messages/Sms/202408/1722529032/{MD5['15555555555']}/{CT_MID}", id="sent_at-month-in-utc"),
    pytest.param({**CT_SMS, "sent_at": 1722470399}, None,
                 f"sent_messages/Sms/202407/1722529032/{MD5['15555555555']}/{CT_MID}", id="sent_at-seconds"),
    pytest.param({**CT_SMS, "campaign_id": "1722529032"}, None,
                 f"sent_messages/Sms/202407/1722529032/{MD5['15555555555']}/{CT_MID}", id="campaign_id-string"),
    pytest.param({**CT_SMS, "message_id": None, "dispatch_id": "d-1"}, None,
                 f"sent_messages/Sms/202407/1722529032/{MD5['15555555555']}/d-1", id="dispatch_id-as-message_id"),
    pytest.param({**CT_SMS, "dispatch_id": CT_MID}, None,
                 f"sent_messages/Sms/202407/1722529032/{MD5['15555555555']}/{CT_MID}", id="both-ids-agree"),
]


@pytest.mark.parametrize("record, region, stem", CT_KEYS)
def test_clevertap_key(record, region, stem):
    entry = build("clevertap", record, region)
    assert entry.key_stem == stem
    assert entry.message_id == stem.rsplit("/", 1)[1]


def test_clevertap_derives_a_message_id_when_none_is_given():
    record = {**CT_SMS, "message_id": None}
    derived = derived_message_id(decode(record))
    entry = build("clevertap", record)
    assert entry.key_stem == f"sent_messages/Sms/202407/1722529032/{MD5['15555555555']}/{derived}"
    assert entry.payload["message_id"] == derived
    assert build("clevertap", dict(reversed(list(record.items())))).key_stem == entry.key_stem


CT_PAYLOADS = [
    # (record, default region, payload)
    pytest.param(CT_PUSH, None, {
        "version": 1, "to": "frfsgvrwe:APfdsafsgdfsgghfgfgjkhfsfgdhjhbvcvnetry767456fxsasdf",
        "payload": {"aps": {"alert": "20% off"}}, "platform": "iOS", "sent_at": SENT, "message_id": CT_MID,
        "campaign_id": 1722529032, "campaign_name": "Flat Offer Sale Campaign", "user_id": 45142169,
    }, id="push-ios"),
    pytest.param({"channel": "push", "to": "tok", "payload": {}, "platform": "fcm", "sent_at": "1722443282",
                  "message_id": "m1", "campaign_id": "42", "campaign_name": "C", "device_identity": "dev-1",
                  "journey_id": "2450", "journey_node_id": "1", "journey_name": "J"}, None, {
        "version": 1, "to": "tok", "payload": {}, "platform": "Android", "sent_at": 1722443282000,
        "message_id": "m1", "campaign_id": 42, "campaign_name": "C", "user_id": "dev-1", "journey_id": 2450,
        "journey_node_id": 1, "journey_name": "J",
    }, id="push-android-ints-from-strings"),
    pytest.param({"channel": "ios_push", "to": "tok", "payload": {"a": 1}, "message_id": "m1", "campaign_id": 7,
                  "campaign_name": "C", "customer_identity": "cust-1"}, None, {
        "version": 1, "to": "tok", "payload": {"a": 1}, "platform": "iOS", "sent_at": NOW, "message_id": "m1",
        "campaign_id": 7, "campaign_name": "C", "user_id": "cust-1",
    }, id="push-platform-from-channel-sent_at-now"),
    pytest.param(CT_SMS, None, {
        "version": 1, "to": "15555555555", "body": "Hi there!", "provider": "twilio", "sent_at": SENT,
        "message_id": CT_MID, "campaign_id": 1722529032, "campaign_name": "Flat Offer Sale Campaign",
        "user_id": 45142169,
    }, id="sms-to-in-country-code-format"),
    pytest.param({**CT_SMS, "channel": "whatsapp", "to": "(650) 253-0000", "provider": None,
                  "sent_at": "2024-07-31T16:28:02.680Z", "journey_name": "J", "journey_node_id": 3}, "US", {
        "version": 1, "to": "16502530000", "body": "Hi there!", "provider": None, "sent_at": SENT,
        "message_id": CT_MID, "campaign_id": 1722529032, "campaign_name": "Flat Offer Sale Campaign",
        "user_id": 45142169, "journey_node_id": 3, "journey_name": "J",
    }, id="whatsapp-national-iso-sent_at-null-provider-kept"),
    pytest.param({"channel": "email", "to": "Customer <customer@example.com>", "subject": "S", "from_name": "CT",
                  "from_address": "no-reply@clevertap.com", "cc": ["a@example.com"], "bcc": "b@example.com",
                  "html_body": "<p>h</p>", "plaintext_body": "h", "amp_body": "<amp>", "headers": {"X": "1"},
                  "sent_at": 1722443282, "message_id": "m1", "campaign_id": 9, "campaign_name": "C",
                  "journey_id": 5}, None, {
        "version": 1, "to": "Customer <customer@example.com>", "subject": "S", "from_name": "CT",
        "from_address": "no-reply@clevertap.com", "cc": ["a@example.com"], "bcc": "b@example.com",
        "html_body": "<p>h</p>", "plaintext_body": "h", "amp_body": "<amp>", "headers": {"X": "1"},
        "sent_at": 1722443282000, "message_id": "m1", "campaign_id": 9, "campaign_name": "C", "journey_id": 5,
    }, id="email-every-field-sent_at-seconds"),
]


@pytest.mark.parametrize("record, region, payload", CT_PAYLOADS)
def test_clevertap_payload(record, region, payload):
    entry = build("clevertap", record, region)
    assert entry.payload == payload
    assert list(entry.payload) == list(payload)


@pytest.mark.parametrize("record", [
    pytest.param(CT_PUSH, id="user_id"),
    pytest.param({**CT_PUSH, "user_id": None, "device_identity": "dev-1"}, id="device_identity"),
    pytest.param({**CT_PUSH, "user_id": None, "customer_identity": "cust-1"}, id="customer_identity"),
    pytest.param({**CT_PUSH, "user_id": None, "device_identity": "dev-1", "customer_identity": "cust-1"},
                 id="device-and-customer"),
    # The seed defines both the key's <user_id> and the payload's user_id as
    # "Device Identity if exists, else Customer Identity": they name one identity.
    pytest.param({**CT_PUSH, "user_id": "dev-1", "device_identity": "dev-1"}, id="user_id-and-device_identity"),
])
def test_clevertap_push_key_folder_is_md5_of_the_archived_user_id(record):
    entry = build("clevertap", record)
    folder = entry.key_stem.split("/")[4]
    assert folder == hashlib.md5(str(entry.payload["user_id"]).encode()).hexdigest()


# --- Braze -----------------------------------------------------------------

BZ_DISPATCH = "651fd10b282850b39e1169c13975234b"
BZ_CAMPAIGN = "ee965cb2-8934-4b0a-acf1-91c899c2f915"
BZ_EMAIL = {"channel": "email", "to": "customer@example.com", "subject": "20% off coupon inside!",
            "from_address": "no-reply@braze.com", "sent_at": 1722443282, "dispatch_id": BZ_DISPATCH,
            "campaign_id": BZ_CAMPAIGN, "user_id": "u-1", "external_id": "ext-1"}
BZ_SMS = {"channel": "sms", "to": "+15555555555", "body": "Hi there!", "sent_at": 1722443282,
          "dispatch_id": BZ_DISPATCH, "campaign_id": BZ_CAMPAIGN, "user_id": "u-1"}
BZ_PUSH = {"channel": "push", "to": "Test_Push_Token12345", "payload": {"aps": {"alert": "hi"}},
           "platform": "ios_push", "app_id": "app-1", "sent_at": 1722443282, "dispatch_id": BZ_DISPATCH,
           "campaign_id": BZ_CAMPAIGN, "user_id": "u-1"}

BZ_KEYS = [
    # (record, default region, key stem)
    pytest.param(BZ_EMAIL, None, f"sent_messages/email/{MD5['customer@example.com']}/{BZ_CAMPAIGN}/{BZ_DISPATCH}",
                 id="email-seed-example-shape"),
    pytest.param({**BZ_EMAIL, "to": "Customer <CUSTOMER@Example.com>"}, None,
                 f"sent_messages/email/{MD5['customer@example.com']}/{BZ_CAMPAIGN}/{BZ_DISPATCH}",
                 id="email-downcased"),
    pytest.param(BZ_PUSH, None,
                 f"sent_messages/push/32b802170652af2b5624b695f34de089/{BZ_CAMPAIGN}/{BZ_DISPATCH}",
                 id="push-token-downcased-seed-digest"),
    pytest.param({**BZ_PUSH, "to": " test_push_token12345 "}, None,
                 f"sent_messages/push/32b802170652af2b5624b695f34de089/{BZ_CAMPAIGN}/{BZ_DISPATCH}",
                 id="push-token-padded"),
    pytest.param(BZ_SMS, None, f"sent_messages/sms/{MD5['+15555555555']}/{BZ_CAMPAIGN}/{BZ_DISPATCH}",
                 id="sms-e164"),
    pytest.param({**BZ_SMS, "to": "+1 (555) 555-5555"}, None,
                 f"sent_messages/sms/49b860993017bf3a154c92e9a75dbaa7/{BZ_CAMPAIGN}/{BZ_DISPATCH}",
                 id="sms-punctuated"),
    pytest.param({**BZ_SMS, "to": "15555555555"}, None,
                 f"sent_messages/sms/{MD5['+15555555555']}/{BZ_CAMPAIGN}/{BZ_DISPATCH}", id="sms-digits"),
    pytest.param({**BZ_SMS, "to": "(650) 253-0000"}, "US",
                 f"sent_messages/sms/{MD5['+16502530000']}/{BZ_CAMPAIGN}/{BZ_DISPATCH}", id="sms-national-us"),
    pytest.param({**BZ_SMS, "channel": "mms", "media_urls": ["https://x/a.png"]}, None,
                 f"sent_messages/sms/{MD5['+15555555555']}/{BZ_CAMPAIGN}/{BZ_DISPATCH}", id="mms-in-sms-folder"),
    pytest.param({**BZ_SMS, "campaign_id": None, "canvas_step_id": "step-1", "canvas_id": "canvas-1"}, None,
                 f"sent_messages/sms/{MD5['+15555555555']}/step-1/{BZ_DISPATCH}", id="canvas-step-folder"),
    pytest.param({**BZ_SMS, "canvas_step_id": "step-1"}, None,
                 f"sent_messages/sms/{MD5['+15555555555']}/{BZ_CAMPAIGN}/{BZ_DISPATCH}", id="campaign-beats-step"),
    pytest.param({**BZ_SMS, "campaign_id": None, "canvas_id": "canvas-1"}, None,
                 f"sent_messages/sms/{MD5['+15555555555']}/unassociated/{BZ_DISPATCH}", id="canvas-id-is-not-a-step"),
    pytest.param({**BZ_SMS, "campaign_id": None}, None,
                 f"sent_messages/sms/{MD5['+15555555555']}/unassociated/{BZ_DISPATCH}", id="unassociated"),
    pytest.param({**BZ_SMS, "campaign_id": 12345}, None,
                 f"sent_messages/sms/{MD5['+15555555555']}/12345/{BZ_DISPATCH}", id="campaign-int"),
    pytest.param({**BZ_SMS, "dispatch_id": None, "message_id": "m-1"}, None,
                 f"sent_messages/sms/{MD5['+15555555555']}/{BZ_CAMPAIGN}/m-1", id="message_id-as-dispatch_id"),
    pytest.param({**BZ_SMS, "sent_at": 1, "batch_date": "19990101"}, None,
                 f"sent_messages/sms/{MD5['+15555555555']}/{BZ_CAMPAIGN}/{BZ_DISPATCH}", id="no-month-in-key"),
]


@pytest.mark.parametrize("record, region, stem", BZ_KEYS)
def test_braze_key(record, region, stem):
    entry = build("braze", record, region)
    assert entry.key_stem == stem
    assert entry.message_id == stem.rsplit("/", 1)[1]


BZ_PAYLOADS = [
    pytest.param({**BZ_EMAIL, "to": "Customer@Example.com", "sent_at": SENT, "user_id": 987, "external_id": "42"},
                 None, {
        "version": 1, "to": "Customer@Example.com", "subject": "20% off coupon inside!",
        "from_address": "no-reply@braze.com", "sent_at": 1722443282, "dispatch_id": BZ_DISPATCH,
        "campaign_id": BZ_CAMPAIGN, "user_id": "987", "external_id": "42",
    }, id="email-sent_at-millis-to-seconds-user_id-as-string"),
    pytest.param({**BZ_SMS, "to": "15555555555", "sent_at": "2024-07-31T16:28:02.999Z", "provider": "twilio",
                  "subscription_group": "sg-1"}, None, {
        "version": 1, "to": "+15555555555", "body": "Hi there!", "subscription_group": "sg-1",
        "provider": "twilio", "sent_at": 1722443282, "dispatch_id": BZ_DISPATCH, "campaign_id": BZ_CAMPAIGN,
        "user_id": "u-1",
    }, id="sms-to-e164-iso-sent_at-floored"),
    pytest.param({"channel": "mms", "to": "+1 555 555 5555", "media_urls": ["https://x/a.png"],
                  "message_id": "m-1"}, None, {
        "version": 1, "to": "+15555555555", "media_urls": ["https://x/a.png"], "sent_at": NOW // 1000,
        "dispatch_id": "m-1",
    }, id="mms-minimal-sent_at-now"),
    pytest.param({**BZ_PUSH, "campaign_id": None, "canvas_id": "c", "canvas_step_id": "s",
                  "canvas_variation_id": "v", "message_variation_id": "mv", "canvas_name": "CN",
                  "canvas_step_name": "SN"}, None, {
        "version": 1, "to": "Test_Push_Token12345", "payload": {"aps": {"alert": "hi"}}, "platform": "ios_push",
        "app_id": "app-1", "sent_at": 1722443282, "dispatch_id": BZ_DISPATCH, "canvas_id": "c",
        "canvas_step_id": "s", "canvas_variation_id": "v", "message_variation_id": "mv", "user_id": "u-1",
        "canvas_name": "CN", "canvas_step_name": "SN",
    }, id="push-canvas"),
]


@pytest.mark.parametrize("record, region, payload", BZ_PAYLOADS)
def test_braze_payload(record, region, payload):
    entry = build("braze", record, region)
    assert entry.payload == payload
    assert list(entry.payload) == list(payload)


@pytest.mark.parametrize("channel, platform, expected", [
    pytest.param("push", "ios_push", "ios_push", id="ios_push"),
    pytest.param("push", "iOS", "ios_push", id="iOS"),
    pytest.param("push", "apns", "ios_push", id="apns"),
    pytest.param("push", "android_push", "android_push", id="android_push"),
    pytest.param("push", "Android", "android_push", id="Android"),
    pytest.param("push", "fcm", "android_push", id="fcm"),
    pytest.param("push", "kindle_push", "kindle_push", id="kindle_push"),
    pytest.param("push", "web_push", "web_push", id="web_push"),
    pytest.param("android_push", None, "android_push", id="channel-android_push"),
    pytest.param("kindle_push", None, "kindle_push", id="channel-kindle_push"),
    pytest.param("web_push", "web", "web_push", id="channel-web_push-and-web"),
])
def test_braze_push_platform_names(channel, platform, expected):
    entry = build("braze", {**BZ_PUSH, "channel": channel, "platform": platform})
    assert entry.payload["platform"] == expected
    assert entry.key_stem.startswith("sent_messages/push/")


@pytest.mark.parametrize("sent_at, seconds", [
    pytest.param(1722443282, 1722443282, id="seconds"),
    pytest.param(1722443282680, 1722443282, id="millis"),
    pytest.param(1722443282999, 1722443282, id="millis-floor"),
    pytest.param("2024-07-31T16:28:02Z", 1722443282, id="iso"),
    pytest.param(None, NOW // 1000, id="now"),
])
def test_braze_sent_at_is_unix_seconds(sent_at, seconds):
    entry = build("braze", {**BZ_SMS, "sent_at": sent_at})
    assert entry.payload["sent_at"] == seconds
    assert entry.sent_at_millis // 1000 == seconds


# --- Both profiles: seed order and round trip --------------------------------

@pytest.mark.parametrize("profile, record", [
    pytest.param("clevertap", CT_PUSH, id="clevertap-push"),
    pytest.param("clevertap", {**CT_SMS, "journey_name": "J", "journey_id": 1}, id="clevertap-sms"),
    pytest.param("clevertap", {**CT_EMAIL, "headers": {}, "cc": "x@example.com"}, id="clevertap-email"),
    pytest.param("braze", {**BZ_EMAIL, "extras": {"a": "b"}, "canvas_name": "N"}, id="braze-email"),
    pytest.param("braze", {**BZ_SMS, "media_urls": [], "external_id": "e"}, id="braze-sms"),
    pytest.param("braze", {**BZ_PUSH, "canvas_step_id": "s"}, id="braze-push"),
])
def test_payload_keys_follow_the_seed_order(profile, record):
    entry = build(profile, record)
    order = SEED_ORDER[profile, entry.channel]
    assert list(entry.payload) == [k for k in order if k in entry.payload]


PUSH_PAYLOAD = {"aps": {"alert": {"title": "Flat Offer", "body": "Flat 20% off today"}, "badge": 1},
                "wzrk_id": "1722529032_20240731"}

CT_EXAMPLES = {
    "Push": {"version": 1, "to": "frfsgvrwe:APfdsafsgdfsgghfgfgjkhfsfgdhjhbvcvnetry767456fxsasdf",
             "payload": PUSH_PAYLOAD, "platform": "iOS", "sent_at": 1722443282680,
             "message_id": "57040f2b01ac851c2b2538e817983d1e2e6cdd01cc5e20740550729525a3f345",
             "campaign_id": 1722529032, "campaign_name": "Flat Offer Sale Campaign", "user_id": 45142169,
             "journey_id": 2450, "journey_node_id": 1, "journey_name": "Flat Offer Sale Journey"},
    "Email": {"version": 1, "to": "customer@example.com", "subject": "20% off coupon inside!",
              "from_name": "CleverTap", "from_address": "no-reply@clevertap.com",
              "cc": ["manager@example.com"], "bcc": ["audit@example.com", "legal@example.com"],
              "html_body": "<html><body><p>Hi there! 20% off, café ☕</p></body></html>",
              "plaintext_body": "Hi there! 20% off, café ☕", "amp_body": "<!doctype html><html ⚡4email></html>",
              "headers": {"X-Campaign": "1722529032", "List-Unsubscribe": "<mailto:u@clevertap.com>"},
              "sent_at": 1722443282680,
              "message_id": "5fae1e791db5f2e61ef39fb34a853aa6e9c8847e78e2766c888d10ee65221abc",
              "campaign_id": 1722529032, "campaign_name": "Flat Offer Sale Campaign", "user_id": 45142169,
              "journey_id": 2450, "journey_node_id": 1, "journey_name": "Flat Offer Sale Journey"},
    "Sms": {"version": 1, "to": "15555555555", "body": "Hi there!", "provider": "twilio",
            "sent_at": 1722443282680,
            "message_id": "9f8c76ccdaf0895515f813af702670324d996296788652b50b3475d6fe6e719a",
            "campaign_id": 1722529032, "campaign_name": "Flat Offer Sale Campaign", "user_id": 45142169,
            "journey_id": 2450, "journey_node_id": 1, "journey_name": "Flat Offer Sale Journey"},
}
CT_EXAMPLES["WhatsApp"] = dict(CT_EXAMPLES["Sms"])
CT_EXAMPLES["Push-Android"] = {**CT_EXAMPLES["Push"], "platform": "Android"}

BZ_COMMON = {"dispatch_id": "651fd10b282850b39e1169c13975234b",
             "campaign_id": "ee965cb2-8934-4b0a-acf1-91c899c2f915",
             "canvas_id": "0b1c5a1e-6f39-4a53-9d8f-2b3a7c6b8e01",
             "canvas_step_id": "7e2f1a9c-3b4d-4c5e-8f6a-1b2c3d4e5f60",
             "canvas_variation_id": "c5d4e3f2-a1b0-4c9d-8e7f-6a5b4c3d2e1f",
             "message_variation_id": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"}
BZ_NAMES = {"user_id": "5f9d3e2a1b0c4d5e6f7a8b9c", "campaign_name": "Flat Offer Sale Campaign",
            "canvas_name": "Welcome Canvas", "canvas_step_name": "Day 1", "external_id": "customer-42"}

BZ_EXAMPLES = {
    "email": {"version": 1, "to": "customer@example.com", "subject": "20% off coupon inside!",
              "from_name": "Braze", "from_address": "no-reply@braze.com",
              "html_body": "<html><body><p>Hi Jane, 20% off ☕</p></body></html>",
              "plaintext_body": "Hi Jane, 20% off ☕", "amp_body": "<!doctype html><html ⚡4email></html>",
              "extras": {"order_id": "A-1001", "segment": "vip"},
              "headers": {"List-Unsubscribe": "<mailto:u@braze.com>"}, "sent_at": 1722443282,
              **BZ_COMMON, "attachments": [{"bytes": "aGVsbG8gd29ybGQ=", "file_name": "coupon.txt"}],
              **BZ_NAMES},
    "sms": {"version": 1, "to": "+15555555555", "body": "Hi there!", "subscription_group": "sg-marketing",
            "provider": "twilio", "media_urls": ["https://cdn.example.com/coupon.png"], "sent_at": 1722443282,
            **BZ_COMMON, **BZ_NAMES},
    "push": {"version": 1, "to": "Test_Push_Token12345", "payload": PUSH_PAYLOAD, "platform": "ios_push",
             "app_id": "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9", "sent_at": 1722443282, **BZ_COMMON, **BZ_NAMES},
}
BZ_EXAMPLES["mms"] = dict(BZ_EXAMPLES["sms"])
BZ_EXAMPLES["sms-without-media"] = {k: v for k, v in BZ_EXAMPLES["sms"].items() if k != "media_urls"}
for _platform in ("android_push", "kindle_push", "web_push"):
    BZ_EXAMPLES[f"push-{_platform}"] = {**BZ_EXAMPLES["push"], "platform": _platform}

ROUND_TRIPS = (
    [pytest.param("clevertap", name.split("-")[0], example, id=f"clevertap-{name}")
     for name, example in CT_EXAMPLES.items()]
    + [pytest.param("braze", name.split("-")[0], example, id=f"braze-{name}")
       for name, example in BZ_EXAMPLES.items()]
)


@pytest.mark.parametrize("profile, channel, example", ROUND_TRIPS)
def test_seed_example_round_trips(profile, channel, example):
    archiver = Archiver(ArchiverConfig(profile=profile))
    raw = json.dumps({**example, "channel": channel}, ensure_ascii=False).encode()
    request = archiver.prepare(raw, received_millis=NOW)
    document = get_codec(get_profile(profile).default_compression).decompress(request.data)
    archived = json.loads(document)
    assert archived == example
    assert list(archived) == list(example)
    assert list(archived) == [k for k in SEED_ORDER[profile, request.channel] if k in archived]


def test_round_trip_covers_every_channel_of_both_seeds():
    covered = {(p.values[0], decode({"channel": p.values[1]}).channel) for p in ROUND_TRIPS}
    expected = {(name, channel) for name, profile in PROFILES.items() for channel in profile.channels}
    assert covered == expected == {
        ("clevertap", "push"), ("clevertap", "email"), ("clevertap", "sms"), ("clevertap", "whatsapp"),
        ("braze", "push"), ("braze", "email"), ("braze", "sms"), ("braze", "mms"),
    }


# --- Bad input at profile level ------------------------------------------------

BAD = [
    # (profile, record, default region, field, reason substring)
    pytest.param("clevertap", {**CT_SMS, "to": None}, None, "to", "to is required", id="ct-sms-no-recipient"),
    pytest.param("clevertap", {**CT_EMAIL, "to": None}, None, "to", "to is required", id="ct-email-no-recipient"),
    pytest.param("clevertap", {**CT_PUSH, "to": None}, None, "to", "to is required", id="ct-push-no-token"),
    pytest.param("clevertap", {**CT_SMS, "to": "   "}, None, "to", "to is empty", id="ct-sms-blank-recipient"),
    pytest.param("braze", {**BZ_SMS, "to": None}, None, "to", "to is required", id="bz-sms-no-recipient"),
    pytest.param("braze", {**BZ_EMAIL, "to": None}, None, "to", "to is required", id="bz-email-no-recipient"),
    pytest.param("braze", {**BZ_PUSH, "to": ""}, None, "to", "to is empty", id="bz-push-empty-token"),
    pytest.param("clevertap", {**CT_SMS, "to": "555-CALL-NOW-PLEASE"}, "US", "to", "phone number",
                 id="ct-invalid-phone"),
    pytest.param("clevertap", {**CT_SMS, "channel": "whatsapp", "to": "07911123456"}, None, "to",
                 "no default region", id="ct-national-phone-without-region"),
    pytest.param("clevertap", {**CT_PUSH, "device_identity": "dev-1"}, None, "user_id",
                 "user_id must be the device identity", id="ct-user_id-disagrees-with-device_identity"),
    pytest.param("clevertap", {**CT_PUSH, "customer_identity": "cust-1"}, None, "user_id",
                 "else the customer identity", id="ct-user_id-disagrees-with-customer_identity"),
    pytest.param("braze", {**BZ_SMS, "to": "12"}, None, "to", "phone number", id="bz-invalid-phone"),
    pytest.param("braze", {**BZ_SMS, "channel": "mms", "to": "abc"}, "GB", "to", "phone number",
                 id="bz-mms-invalid-phone"),
    pytest.param("clevertap", {**CT_EMAIL, "to": "customer.example.com"}, None, "to", "not an email address",
                 id="ct-invalid-email"),
    pytest.param("braze", {**BZ_EMAIL, "to": "customer@example"}, None, "to", "not an email address",
                 id="bz-invalid-email"),
    pytest.param("clevertap", {**CT_SMS, "campaign_id": "summer-sale"}, None, "campaign_id",
                 "campaign_id must be an integer", id="ct-campaign-not-integer"),
    pytest.param("clevertap", {**CT_SMS, "campaign_id": "1722529032.0"}, None, "campaign_id",
                 "campaign_id must be an integer", id="ct-campaign-decimal-string"),
    pytest.param("clevertap", {**CT_SMS, "campaign_id": None}, None, "campaign_id", "campaign_id is required",
                 id="ct-campaign-missing"),
    pytest.param("clevertap", {**CT_SMS, "campaign_id": -5}, None, "campaign_id", "key layout",
                 id="ct-campaign-negative"),
    pytest.param("clevertap", {**CT_SMS, "campaign_name": None}, None, "campaign_name",
                 "campaign_name is required", id="ct-campaign-name-missing"),
    pytest.param("clevertap", {**CT_SMS, "journey_id": "j-1"}, None, "journey_id", "journey_id must be an integer",
                 id="ct-journey-not-integer"),
    pytest.param("clevertap", {**CT_SMS, "message_id": "../../etc/passwd"}, None, "message_id", "key layout",
                 id="ct-message_id-escapes"),
    pytest.param("clevertap", {**CT_SMS, "message_id": "a/b"}, None, "message_id", "key layout",
                 id="ct-message_id-adds-a-level"),
    pytest.param("clevertap", {**CT_SMS, "message_id": None, "dispatch_id": ".."}, None, "dispatch_id",
                 "key layout", id="ct-dispatch_id-dot-dot"),
    pytest.param("braze", {**BZ_SMS, "dispatch_id": "../x"}, None, "dispatch_id", "key layout",
                 id="bz-dispatch_id-escapes"),
    pytest.param("braze", {**BZ_SMS, "campaign_id": "a/b"}, None, "campaign_id", "key layout",
                 id="bz-campaign-adds-a-level"),
    pytest.param("braze", {**BZ_SMS, "campaign_id": None, "canvas_step_id": "x?y=1"}, None, "canvas_step_id",
                 "key layout", id="bz-canvas-step-query"),
    pytest.param("braze", {**BZ_EMAIL, "dispatch_id": "a\x00b"}, None, "dispatch_id", "key layout",
                 id="bz-dispatch_id-nul"),
    pytest.param("clevertap", {**CT_SMS, "channel": "mms", "media_urls": ["https://x/a.png"]}, None, "channel",
                 "not archived by the clevertap profile", id="ct-mms"),
    pytest.param("braze", {**BZ_SMS, "channel": "whatsapp"}, None, "channel",
                 "not archived by the braze profile", id="bz-whatsapp"),
    pytest.param("braze", {**BZ_EMAIL, "cc": ["boss@example.com"]}, None, "cc",
                 "not part of the braze profile's email payload", id="bz-email-cc"),
    pytest.param("braze", {**BZ_EMAIL, "bcc": "boss@example.com"}, None, "bcc", "would not be archived",
                 id="bz-email-bcc"),
    pytest.param("braze", {**BZ_PUSH, "journey_id": 1}, None, "journey_id", "would not be archived",
                 id="bz-push-journey"),
    pytest.param("braze", {**BZ_SMS, "attachments": [{"file_name": "a", "bytes": ""}]}, None, "attachments",
                 "would not be archived", id="bz-sms-attachments"),
    pytest.param("clevertap", {**CT_EMAIL, "extras": {"a": "b"}}, None, "extras",
                 "not part of the clevertap profile's email payload", id="ct-email-extras"),
    pytest.param("clevertap", {**CT_EMAIL, "attachments": [{"file_name": "a", "bytes": ""}]}, None,
                 "attachments", "would not be archived", id="ct-email-attachments"),
    pytest.param("clevertap", {**CT_SMS, "media_urls": ["https://x"]}, None, "media_urls", "would not be archived",
                 id="ct-sms-media"),
    pytest.param("clevertap", {**CT_PUSH, "app_id": "a"}, None, "app_id", "would not be archived",
                 id="ct-push-app_id"),
    pytest.param("clevertap", {**CT_SMS, "canvas_id": "c"}, None, "canvas_id", "would not be archived",
                 id="ct-sms-canvas"),
    pytest.param("clevertap", {**CT_SMS, "body": "x", "subject": "s"}, None, "subject", "would not be archived",
                 id="ct-sms-subject"),
    pytest.param("clevertap", {**CT_SMS, "dispatch_id": "other"}, None, "message_id",
                 "message_id and dispatch_id disagree", id="ct-ids-disagree"),
    pytest.param("braze", {**BZ_SMS, "message_id": "other"}, None, "dispatch_id",
                 "dispatch_id and message_id disagree", id="bz-ids-disagree"),
    pytest.param("clevertap", {**CT_PUSH, "user_id": None}, None, "user_id", "device_identity, customer_identity "
                 "or user_id", id="ct-push-no-identity"),
    pytest.param("clevertap", {**CT_PUSH, "device_identity": " "}, None, "device_identity",
                 "device_identity is empty", id="ct-push-blank-device"),
    pytest.param("clevertap", {**CT_PUSH, "platform": "web_push"}, None, "platform", "iOS or Android only",
                 id="ct-push-web"),
    pytest.param("clevertap", {**CT_PUSH, "platform": "blackberry"}, None, "platform", "platform is not one of",
                 id="ct-push-unknown-platform"),
    pytest.param("clevertap", {**CT_PUSH, "platform": None}, None, "platform", "platform is required",
                 id="ct-push-no-platform"),
    pytest.param("braze", {**BZ_PUSH, "channel": "android_push", "platform": "iOS"}, None, "platform",
                 "disagrees with the channel", id="bz-push-platform-disagrees"),
    pytest.param("braze", {**BZ_PUSH, "payload": None}, None, "payload", "payload is required",
                 id="bz-push-no-payload"),
    pytest.param("braze", {**BZ_EMAIL, "subject": None}, None, "subject", "subject is required",
                 id="bz-email-no-subject"),
    pytest.param("clevertap", {**CT_SMS, "body": None}, None, "body", "body is required", id="ct-sms-no-body"),
    pytest.param("clevertap", {**CT_SMS, "batch_date": "2024-09-05"}, None, "batch_date", "yyyymmdd",
                 id="ct-bad-batch-date"),
    pytest.param("braze", {**BZ_SMS, "sent_at": "last tuesday"}, None, "sent_at", "ISO-8601",
                 id="bz-bad-sent_at"),
]


@pytest.mark.parametrize("profile, record, region, field, reason", BAD)
def test_profile_rejects(profile, record, region, field, reason):
    with pytest.raises(InvalidMessage) as caught:
        build(profile, record, region)
    assert caught.value.field == field
    assert reason in caught.value.reason
    to = record.get("to")
    if isinstance(to, str) and to.strip():
        assert to.strip() not in caught.value.reason


def test_get_profile_unknown():
    with pytest.raises(ValueError, match="unknown profile 'sendgrid'"):
        get_profile("sendgrid")


@pytest.mark.parametrize("name, compression, channels", [
    pytest.param("clevertap", "lz4", ("email", "push", "sms", "whatsapp"), id="clevertap"),
    pytest.param("braze", "gzip", ("email", "push", "sms", "mms"), id="braze"),
])
def test_profile_defaults(name, compression, channels):
    profile = get_profile(name)
    assert profile.default_compression == compression
    assert sorted(profile.channels) == sorted(channels)


@pytest.mark.parametrize("record", [
    pytest.param({"channel": "sms", "to": "1", "body": "b", "campaign_id": 1}, id="all-archived"),
    pytest.param({"channel": "sms", "to": "1", "media_urls": ["https://x"], "subject": None}, id="one-lost"),
    pytest.param({"channel": "sms", "subject": None, "tenant": "t", "batch_date": "20240901"}, id="null-and-routing"),
])
@pytest.mark.parametrize("profile", ["clevertap", "braze"])
def test_unarchived_content_check_takes_names_or_prepared_fields(profile, record):
    """check_no_unarchived_content with the names as given (any iterable) and
    with the frozen set archived_fields prepares: one verdict."""
    from archive.profiles.base import archived_fields

    def verdict(archived):
        try:
            get_profile(profile).check_no_unarchived_content(decode(record), archived)
        except InvalidMessage as lost:
            return lost.reason, lost.field
        return None

    names = ("to", "body", "provider", "campaign_id")
    assert verdict(names) == verdict(list(names)) == verdict(archived_fields(names))


# --- Null values (issue 13, part 4: exact payloads) ------------------------------
#
# A key the input gives as null is archived as null, in the seed's order, unless
# the seed writes the field only when it is available ("may not be available",
# "will only be available if ...", "if available", "indicates a message is MMS"):
# then a null one is left out, as an absent one is. docs/envelope.md, "Null values".

# Braze's published sample archive files (braze-inc/braze-examples, message-archiving/),
# bodies shortened and the recipient replaced: the email one carries
# "amp_body": null and "extras": null, the push one a null inside its payload.
BZ_SAMPLE_EMAIL = {
    "sent_at": 1683734310, "dispatch_id": "645bbf2640db6bb419e44a77ab4186f3", "version": 1,
    "campaign_id": "9c66f2ff-d468-4915-8fe2-e1705ab82fab",
    "message_variation_id": "7754aac6-6c4f-4fce-94da-13abee3c1d30", "to": "customer@example.com",
    "subject": "Martijn email test - Machine open (phone on power + wifi)", "from_name": "Braze",
    "from_address": "test@mail.development.braze.com", "html_body": "<!DOCTYPE html><html><body>hello</body></html>",
    "amp_body": None, "plaintext_body": "hello Martijn", "extras": None,
    "headers": {"List-Unsubscribe": "https://example.com/unsubscribe"},
}
BZ_SAMPLE_PUSH = {
    "sent_at": 1683734352, "dispatch_id": "645bbf4f04dcbcfd57c4740382851757", "version": 1,
    "campaign_id": "37b6ecf9-192c-434d-ba3f-d07d8cbec251",
    "message_variation_id": "a527f8d2-cebf-4850-bf22-cc1e580bbe97",
    "to": "9161109779733991caad50ef27783f19534bb5038b2b25b14e09f01fe4b17dd8",
    "payload": {"aps": {"alert": {"body": "World", "title": "Hello"}, "collapse_id": "9dd00380f32c5241f2bbf527ee69bc02",
                        "relevance_score": None, "interruption_level": "active", "push_type": "alert"},
                "ab": {"c": "NjQ1YmI5NTExMDcxMTQzOTgzYjg1NzJi"}},
    "platform": "ios_push", "app_id": "cdf83a5a-c7ab-437f-a389-541ef69e7c22",
}
_BZ_UNAVAILABLE = {name: None for name in (
    "campaign_id", "canvas_id", "canvas_step_id", "canvas_variation_id", "message_variation_id",
    "campaign_name", "canvas_name", "canvas_step_name")}
_CT_NOT_A_JOURNEY = {"journey_id": None, "journey_node_id": None, "journey_name": None}

NULL_PAYLOADS = [
    # (profile, record as sent, archived payload in the seed's order)
    pytest.param("braze", {"channel": "email", **BZ_SAMPLE_EMAIL}, {
        "version": 1, "to": "customer@example.com",
        "subject": "Martijn email test - Machine open (phone on power + wifi)", "from_name": "Braze",
        "from_address": "test@mail.development.braze.com",
        "html_body": "<!DOCTYPE html><html><body>hello</body></html>", "plaintext_body": "hello Martijn",
        "amp_body": None, "extras": None, "headers": {"List-Unsubscribe": "https://example.com/unsubscribe"},
        "sent_at": 1683734310, "dispatch_id": "645bbf2640db6bb419e44a77ab4186f3",
        "campaign_id": "9c66f2ff-d468-4915-8fe2-e1705ab82fab",
        "message_variation_id": "7754aac6-6c4f-4fce-94da-13abee3c1d30",
    }, id="bz-published-email-sample"),
    pytest.param("braze", {"channel": "push", **BZ_SAMPLE_PUSH}, {
        "version": 1, "to": BZ_SAMPLE_PUSH["to"], "payload": BZ_SAMPLE_PUSH["payload"], "platform": "ios_push",
        "app_id": "cdf83a5a-c7ab-437f-a389-541ef69e7c22", "sent_at": 1683734352,
        "dispatch_id": "645bbf4f04dcbcfd57c4740382851757", "campaign_id": "37b6ecf9-192c-434d-ba3f-d07d8cbec251",
        "message_variation_id": "a527f8d2-cebf-4850-bf22-cc1e580bbe97",
    }, id="bz-published-push-sample-null-inside-payload"),
    pytest.param("braze", {**BZ_EMAIL, "from_name": None, "html_body": None, "plaintext_body": None,
                           "amp_body": None, "extras": None, "headers": None, "attachments": None,
                           **_BZ_UNAVAILABLE, "user_id": None, "external_id": None}, {
        "version": 1, "to": "customer@example.com", "subject": "20% off coupon inside!", "from_name": None,
        "from_address": "no-reply@braze.com", "html_body": None, "plaintext_body": None, "amp_body": None,
        "extras": None, "headers": None, "sent_at": 1722443282, "dispatch_id": BZ_DISPATCH, "external_id": None,
    }, id="bz-email-every-optional-field-null"),
    pytest.param("braze", {**BZ_EMAIL, "extras": {"coupon": None, "tags": [None, "vip"]}, "amp_body": "<amp>"}, {
        "version": 1, "to": "customer@example.com", "subject": "20% off coupon inside!",
        "from_address": "no-reply@braze.com", "amp_body": "<amp>", "extras": {"coupon": None, "tags": [None, "vip"]},
        "sent_at": 1722443282, "dispatch_id": BZ_DISPATCH, "campaign_id": BZ_CAMPAIGN, "user_id": "u-1",
        "external_id": "ext-1",
    }, id="bz-email-nulls-inside-extras-kept"),
    pytest.param("braze", {**BZ_EMAIL, "cc": None, "bcc": None, "journey_id": None, "tenant": None,
                           "batch_date": None}, {
        "version": 1, "to": "customer@example.com", "subject": "20% off coupon inside!",
        "from_address": "no-reply@braze.com", "sent_at": 1722443282, "dispatch_id": BZ_DISPATCH,
        "campaign_id": BZ_CAMPAIGN, "user_id": "u-1", "external_id": "ext-1",
    }, id="bz-email-null-in-fields-braze-has-no-place-for-or-routing"),
    pytest.param("braze", {**BZ_SMS, "subscription_group": None, "provider": None, "media_urls": None,
                           "canvas_name": None, "external_id": None}, {
        "version": 1, "to": "+15555555555", "body": "Hi there!", "subscription_group": None, "provider": None,
        "sent_at": 1722443282, "dispatch_id": BZ_DISPATCH, "campaign_id": BZ_CAMPAIGN, "user_id": "u-1",
        "external_id": None,
    }, id="bz-sms-nulls"),
    pytest.param("braze", {**BZ_SMS, "channel": "mms", "body": None, "media_urls": ["https://x/a.png"]}, {
        "version": 1, "to": "+15555555555", "body": None, "media_urls": ["https://x/a.png"],
        "sent_at": 1722443282, "dispatch_id": BZ_DISPATCH, "campaign_id": BZ_CAMPAIGN, "user_id": "u-1",
    }, id="bz-mms-null-body"),
    pytest.param("braze", {**BZ_PUSH, "app_id": None, "platform": None, "channel": "ios_push",
                           "campaign_id": None, "canvas_step_id": "s"}, {
        "version": 1, "to": "Test_Push_Token12345", "payload": {"aps": {"alert": "hi"}}, "platform": "ios_push",
        "app_id": None, "sent_at": 1722443282, "dispatch_id": BZ_DISPATCH, "canvas_step_id": "s", "user_id": "u-1",
    }, id="bz-push-null-app_id-platform-from-channel"),
    pytest.param("braze", {k: v for k, v in BZ_EMAIL.items() if k not in ("user_id", "external_id")}, {
        "version": 1, "to": "customer@example.com", "subject": "20% off coupon inside!",
        "from_address": "no-reply@braze.com", "sent_at": 1722443282, "dispatch_id": BZ_DISPATCH,
        "campaign_id": BZ_CAMPAIGN,
    }, id="bz-absent-stays-absent"),
    pytest.param("clevertap", {**CT_EMAIL, "from_name": None, "cc": None, "bcc": None, "html_body": "<p>h</p>",
                               "plaintext_body": None, "amp_body": None, "headers": None, **_CT_NOT_A_JOURNEY}, {
        "version": 1, "to": "customer@example.com", "subject": "20% off coupon inside!", "from_name": None,
        "from_address": "no-reply@clevertap.com", "html_body": "<p>h</p>", "plaintext_body": None, "headers": None,
        "sent_at": SENT, "message_id": CT_MID, "campaign_id": 1722529032,
        "campaign_name": "Flat Offer Sale Campaign", "user_id": 45142169,
    }, id="ct-email-nulls"),
    pytest.param("clevertap", {**CT_EMAIL, "extras": None, "attachments": None, "canvas_id": None,
                               "device_identity": None, "batch_id": None}, {
        "version": 1, "to": "customer@example.com", "subject": "20% off coupon inside!",
        "from_address": "no-reply@clevertap.com", "sent_at": SENT, "message_id": CT_MID, "campaign_id": 1722529032,
        "campaign_name": "Flat Offer Sale Campaign", "user_id": 45142169,
    }, id="ct-email-null-in-fields-clevertap-has-no-place-for-or-routing"),
    pytest.param("clevertap", {**CT_PUSH, "payload": {"aps": {"alert": None, "sound": [None]}, "wzrk_id": None},
                               **_CT_NOT_A_JOURNEY}, {
        "version": 1, "to": CT_PUSH["to"], "payload": {"aps": {"alert": None, "sound": [None]}, "wzrk_id": None},
        "platform": "iOS", "sent_at": SENT, "message_id": CT_MID, "campaign_id": 1722529032,
        "campaign_name": "Flat Offer Sale Campaign", "user_id": 45142169,
    }, id="ct-push-nulls-inside-payload-kept-not-a-journey"),
    pytest.param("clevertap", {**CT_SMS, "provider": None, "journey_id": 2450, "journey_node_id": None,
                               "journey_name": None}, {
        "version": 1, "to": "15555555555", "body": "Hi there!", "provider": None, "sent_at": SENT,
        "message_id": CT_MID, "campaign_id": 1722529032, "campaign_name": "Flat Offer Sale Campaign",
        "user_id": 45142169, "journey_id": 2450,
    }, id="ct-sms-null-provider"),
    pytest.param("clevertap", {**CT_SMS, "channel": "WhatsApp", "provider": None, **_CT_NOT_A_JOURNEY}, {
        "version": 1, "to": "15555555555", "body": "Hi there!", "provider": None, "sent_at": SENT,
        "message_id": CT_MID, "campaign_id": 1722529032, "campaign_name": "Flat Offer Sale Campaign",
        "user_id": 45142169,
    }, id="ct-whatsapp-null-provider"),
]


@pytest.mark.parametrize("profile, record, payload", NULL_PAYLOADS)
def test_a_null_is_archived_as_the_seed_says(profile, record, payload):
    """The object written, from JSON text as a source sends it: the same JSON
    object, null for null, keys in the seed's order."""
    archiver = Archiver(ArchiverConfig(profile=profile))
    request = archiver.prepare(json.dumps(record).encode(), received_millis=NOW)
    document = get_codec(get_profile(profile).default_compression).decompress(request.data)
    assert document == json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    archived = json.loads(document)
    assert list(archived) == [k for k in SEED_ORDER[profile, request.channel] if k in archived]
    # A mapping (a row) archives the same object.
    assert build(profile, record).payload == payload


@pytest.mark.parametrize("channel, sample", [
    pytest.param("email", BZ_SAMPLE_EMAIL, id="email"),
    pytest.param("push", BZ_SAMPLE_PUSH, id="push"),
])
def test_braze_published_samples_archive_back_to_the_same_json_object(channel, sample):
    payload = build("braze", {"channel": channel, **sample}).payload
    assert payload == sample
    assert list(payload) == [k for k in SEED_ORDER["braze", channel] if k in sample]


@pytest.mark.parametrize("raw", [
    pytest.param(json.dumps({"channel": "email", **BZ_SAMPLE_EMAIL}).encode(), id="json-text"),
    pytest.param({"channel": "email", **BZ_SAMPLE_EMAIL}, id="mapping"),
    pytest.param(json.dumps({**BZ_EMAIL, "extras": None, "subject": None}).encode(), id="json-text-required-null"),
])
def test_the_envelope_keeps_null_fields(raw):
    """Nulls pass the strictness checks and stay in Envelope.fields, for the profile to decide."""
    record = json.loads(raw) if isinstance(raw, bytes) else raw
    envelope = decode(raw)
    assert dict(envelope.fields) == record
    assert [k for k, v in envelope.fields.items() if v is None] == [k for k, v in record.items() if v is None]


NULL_REQUIRED = [
    # (profile, record with a required field null, the field named)
    pytest.param("braze", {"channel": "email", **BZ_SAMPLE_EMAIL, "to": None}, "to", id="bz-email-to"),
    pytest.param("braze", {"channel": "email", **BZ_SAMPLE_EMAIL, "subject": None}, "subject", id="bz-email-subject"),
    pytest.param("braze", {"channel": "email", **BZ_SAMPLE_EMAIL, "from_address": None}, "from_address",
                 id="bz-email-from_address"),
    pytest.param("braze", {"channel": "push", **BZ_SAMPLE_PUSH, "payload": None}, "payload", id="bz-push-payload"),
    pytest.param("braze", {"channel": "push", **BZ_SAMPLE_PUSH, "to": None}, "to", id="bz-push-to"),
    pytest.param("braze", {"channel": "push", **BZ_SAMPLE_PUSH, "platform": None}, "platform",
                 id="bz-push-platform-without-platform-channel"),
    pytest.param("braze", {**BZ_SMS, "body": None}, "body", id="bz-sms-body"),
    pytest.param("braze", {**BZ_SMS, "channel": "mms", "body": None, "media_urls": None}, "media_urls",
                 id="bz-mms-neither-body-nor-media"),
    pytest.param("clevertap", {**CT_EMAIL, "subject": None, **_CT_NOT_A_JOURNEY}, "subject", id="ct-email-subject"),
    pytest.param("clevertap", {**CT_EMAIL, "from_address": None}, "from_address", id="ct-email-from_address"),
    pytest.param("clevertap", {**CT_PUSH, "payload": None}, "payload", id="ct-push-payload"),
    pytest.param("clevertap", {**CT_SMS, "channel": "whatsapp", "body": None}, "body", id="ct-whatsapp-body"),
    pytest.param("clevertap", {**CT_SMS, "to": None, "provider": None}, "to", id="ct-sms-to"),
    pytest.param("clevertap", {**CT_SMS, "campaign_id": None}, "campaign_id", id="ct-campaign_id"),
    pytest.param("clevertap", {**CT_EMAIL, "campaign_name": None, "cc": None}, "campaign_name",
                 id="ct-campaign_name"),
]


@pytest.mark.parametrize("profile, record, field", NULL_REQUIRED)
def test_a_null_required_field_is_invalid(profile, record, field):
    archiver = Archiver(ArchiverConfig(profile=profile))
    with pytest.raises(InvalidMessage) as from_text:
        archiver.prepare(json.dumps(record).encode(), received_millis=NOW)
    with pytest.raises(InvalidMessage) as from_mapping:
        build(profile, record)
    assert from_text.value.field == from_mapping.value.field == field
    assert from_text.value.reason == from_mapping.value.reason


def _null_rules() -> dict[str, dict[str, str]]:
    """docs/envelope.md's "Null values" table: field -> {profile: its cell}."""
    text = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             "docs", "envelope.md"), encoding="utf-8").read()
    section = text.split("## Null values", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip().strip("|").split("|") for line in section.splitlines() if line.startswith("| `")]
    rules = {}
    for field, clevertap, braze, *_ in rows:
        for name in field.replace("`", "").split(","):
            rules[name.strip()] = {"clevertap": clevertap.strip(), "braze": braze.strip()}
    return rules


_NULL_BASES = {("clevertap", "push"): CT_PUSH, ("clevertap", "email"): CT_EMAIL, ("clevertap", "sms"): CT_SMS,
               ("clevertap", "whatsapp"): {**CT_SMS, "channel": "whatsapp"},
               ("braze", "email"): BZ_EMAIL, ("braze", "sms"): BZ_SMS, ("braze", "push"): BZ_PUSH,
               ("braze", "mms"): {**BZ_SMS, "channel": "mms", "media_urls": ["https://x/a.png"]}}


def _documented(cell: str, channel: str) -> str:
    """What a cell says for a channel: "computed", or the word of the part that
    applies to it ("INVALID (sms); kept (mms)")."""
    if cell.startswith("computed"):
        return "computed"
    for part in cell.split(";"):
        word, _, channels = part.strip().partition(" (")
        if not channels or channel in re.findall(r"\w+", channels):
            return word
    raise AssertionError(f"no rule for {channel} in {cell!r}")


@pytest.mark.parametrize("profile, channel", sorted(_NULL_BASES))
def test_the_null_values_table_in_the_docs_is_what_the_profile_does(profile, channel):
    """Each payload field of the channel, set to null in a valid record: kept,
    omitted, or INVALID naming it, as docs/envelope.md says. Computed fields
    (sent_at, ids, platform, the clevertap user_id) have their own sections."""
    rules = _null_rules()
    fields = [k for k in SEED_ORDER[profile, channel] if k != "version"]
    assert set(fields) <= set(rules), "a payload field without a null rule"
    for name in fields:
        expected = _documented(rules[name][profile], channel)
        if expected == "computed":
            continue
        record = {**_NULL_BASES[profile, channel], name: None}
        try:
            payload = build(profile, record).payload
        except InvalidMessage as invalid:
            assert (expected, invalid.field) == ("INVALID", name), (name, invalid.reason)
            continue
        outcome = "kept" if name in payload else "omitted"
        assert outcome == expected, name
        if outcome == "kept":
            assert payload[name] is None
