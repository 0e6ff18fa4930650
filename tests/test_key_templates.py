"""archive.keys.KeyTemplate: a tenant's own key layout, validated on load, as strict as the presets.

Hostile templates first: each is a load error that says why (and, in a tenant
file, names the tenant); then every channel of both profiles renders, reads
back through archive.audit.parse_key, and keeps the preset key's fields.
"""

import json

import pytest

from archive import audit
from archive.archiver import Archiver, ArchiverConfig
from archive.envelope import InvalidMessage
from archive.keys import KeyTemplate, KeyValues, TemplateError
from archive.tenants import TenantConfigError, TenantDirectory, parse
from tests.test_pipeline import SENT_AT, braze_records, clevertap_records

GOOD = "archive/{tenant}/{channel}/{yyyy}/{mm}/{dd}/{recipient_md5}/{message_id}"

HOSTILE_TEMPLATES = [
    ("", "non-empty"),
    ("archive/{tenant}/{channel}/{nope}/{recipient_md5}/{message_id}", "unknown field {nope}"),
    ("archive/{channel}/{recipient_md5}", "no {message_id}"),
    ("archive/{channel}/{message_id}", "no {recipient_md5}"),
    ("archive/{tenant}/{recipient_md5}/{message_id}", "no {channel} or {channel_folder}"),
    ("archive/../{channel}/{recipient_md5}/{message_id}", "'..'"),
    ("archive/./{channel}/{recipient_md5}/{message_id}", "'.'"),
    ("archive//{channel}/{recipient_md5}/{message_id}", "empty"),
    ("/archive/{channel}/{recipient_md5}/{message_id}", "not '/'"),
    ("archive/{channel}/{recipient_md5}/{message_id}/", "not '/'"),
    ("{tenant}/{channel}/{recipient_md5}/{message_id}", "first segment must be literal"),
    ("archive_index/{channel}/{recipient_md5}/{message_id}", "keeps its own files"),
    ("archive_manifests/{channel}/{recipient_md5}/{message_id}", "keeps its own files"),
    ("sent_batches/{channel}/{recipient_md5}/{message_id}", "keeps its own files"),
    ("archive/{channel}/{recipient_md5}/{campaign_id}{message_id}", "two fields of any width"),
    ("archive/{channel}/{recipient_md5}/{campaign_id}-{message_id}", "two fields of any width"),
    ("archive/{channel}/{recipient_md5}/{message_id}.json", "without '.json'"),
    ("archive/{channel}/{recipient_md5}/{message_id}/{message_id}", "appears twice"),
    ("archive/a b/{channel}/{recipient_md5}/{message_id}", "literal text may hold only"),
    ("archive/%2e%2e/{channel}/{recipient_md5}/{message_id}", "literal text may hold only"),
    ("archive/a\\b/{channel}/{recipient_md5}/{message_id}", "literal text may hold only"),
    ("archive/{channel}/{recipient_md5}/{message_id}?x", "literal text may hold only"),
    ("archive/{channel}/{recipient_md5}/{message_id}\n", "literal text may hold only"),
    ("archive/{{channel}}/{recipient_md5}/{message_id}", "literal text may hold only"),
    ("archive/{channel/{recipient_md5}/{message_id}", "literal text may hold only"),
    ("archive/.hidden/{channel}/{recipient_md5}/{message_id}", "starts with '.' or '-'"),
    ("archive/-x/{channel}/{recipient_md5}/{message_id}", "starts with '.' or '-'"),
    ("archive/\uff0e\uff0e/{channel}/{recipient_md5}/{message_id}", "literal text may hold only"),  # full-width dots
    (None, "non-empty string"),
]


@pytest.mark.parametrize("text, why", HOSTILE_TEMPLATES)
def test_a_hostile_template_is_a_load_error_that_says_why(text, why):
    with pytest.raises(TemplateError, match=__import__("re").escape(why)):
        KeyTemplate(text)


@pytest.mark.parametrize("text, why", [t for t in HOSTILE_TEMPLATES if t[0] is not None])
def test_in_a_tenant_file_the_error_names_the_tenant(text, why):
    document = {"tenants": {"acme": {"key_template": text, "destinations": [{"url": "memory://a"}]}}}
    with pytest.raises(TenantConfigError) as error:
        parse(json.dumps(document), "tenants.json")
    assert "tenant 'acme': key_template:" in str(error.value)


@pytest.mark.parametrize("body, why", [
    ({"key_template": GOOD, "object_mode": "batched"}, "keyed by window and shard"),
    ({"email_format": "eml", "object_mode": "batched"}, "archives JSON Lines"),
    ({"email_format": "html"}, "email_format must be one of"),
    ({"object_mode": "bulk"}, "object_mode must be one of"),
    ({"batch": {"seconds": 60}}, "batch limits are for object_mode: batched"),
    ({"object_mode": "batched", "batch": {"seconds": 7}}, "must divide a day"),
    ({"object_mode": "batched", "batch": {"seconds": 0}}, "seconds must be a whole number"),
    ({"object_mode": "batched", "batch": {"max_messages": True}}, "max_messages must be a whole number"),
    ({"object_mode": "batched", "batch": {"max_bytes": 10}}, "max_bytes must be a whole number"),
    ({"object_mode": "batched", "batch": {"shards": 1.5}}, "shards must be a whole number"),
    ({"object_mode": "batched", "batch": {"window": 60}}, "unknown key(s) ['window']"),
    ({"object_mode": "batched", "batch": [60]}, "batch must be a mapping"),
])
def test_layout_options_are_checked_together_on_load(body, why):
    document = {"tenants": {"acme": {**body, "destinations": [{"url": "memory://a"}]}}}
    with pytest.raises(TenantConfigError) as error:
        parse(json.dumps(document), "tenants.json")
    assert str(error.value).startswith("tenant 'acme'") and why in str(error.value), str(error.value)


# Values a template inserts are the preset key's own segments: as safe, never escaping.
@pytest.mark.parametrize("message_id", ["../x", "a/b", "a%2Fb", "", ".x", "-x", "a b", "x?y", "\u202e"])
def test_a_value_that_would_escape_its_segment_is_bad_input_not_escaped(message_id):
    values = KeyValues("acme", "braze", "email", "email", SENT_AT, "c", "0" * 32, message_id)
    with pytest.raises(InvalidMessage):
        KeyTemplate(GOOD).render(values)


RECORDS = [("clevertap", r) for r in clevertap_records()] + [("braze", r) for r in braze_records()]


@pytest.mark.parametrize("profile, record", RECORDS, ids=lambda v: v if isinstance(v, str) else v["channel"])
@pytest.mark.parametrize("template", [
    GOOD,
    "x/{profile}/{channel_folder}/{yyyymm}/{campaign_id}/{recipient_md5}/{message_id}",
    "mo/{yyyymmdd}/{hh}/{channel}/{recipient_md5}{message_id}",   # fixed-width + one free field
    "o/{channel}/d={yyyy}-{mm}-{dd}/r={recipient_md5}/m={message_id}",
    "sent_messages/{tenant}/{channel}/{recipient_md5}/{message_id}",  # under the seeds' own prefix
])
def test_every_channel_renders_and_reads_back_with_the_preset_keys_fields(profile, record, template):
    preset = Archiver(ArchiverConfig(profile=profile)).prepare(json.dumps(record))
    layout = Archiver(ArchiverConfig(profile=profile), TenantDirectory.single(
        "memory://t", profile=profile, name="acme", key_template=template))
    request = layout.prepare(json.dumps(record))
    assert request.data == preset.data  # the layout changes the key, never the bytes
    assert request.key.startswith(template.split("/")[0] + "/")
    assert audit.parse_key(request.key) is None  # not a seed layout: needs the tenant's Layout
    ours = audit.parse_key(request.key, [audit.Layout(KeyTemplate(template), profile)])
    theirs = audit.parse_key(preset.key)
    # {channel} is the message's own (an mms); Braze's folder files mms under sms
    channel = request.channel if "{channel}" in template else theirs.channel
    assert (ours.channel, ours.recipient_md5, ours.message_id, ours.compression, ours.profile) == (
        channel, theirs.recipient_md5, theirs.message_id, theirs.compression, theirs.profile)
    if "{campaign_id}" in template:
        assert ours.group == theirs.group


def test_two_messages_never_share_a_templated_key():
    template = KeyTemplate("a/{channel}/{recipient_md5}/{message_id}")
    seen = set()
    for md5 in ("0" * 32, "1" * 32):
        for message_id in ("1", "11", "1.1", "1-1", "a", "A"):
            seen.add(template.render(KeyValues("t", "braze", "email", "email", SENT_AT, "c", md5, message_id)))
    assert len(seen) == 12


def test_a_templated_key_over_1024_bytes_is_invalid_not_truncated():
    template = "a/" + "/".join(["x" * 200] * 5) + "/{channel}/{recipient_md5}/{message_id}"
    archiver = Archiver(ArchiverConfig(), TenantDirectory.single("memory://t", key_template=template))
    with pytest.raises(InvalidMessage, match="1024"):
        archiver.prepare(json.dumps({**clevertap_records()[2], "message_id": "m" * 150}))
