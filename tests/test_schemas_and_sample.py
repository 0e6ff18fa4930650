"""The JSON Schemas and the sample generator, checked against the archiver itself (no Beam)."""

import copy
import gzip
import json
from collections import Counter

import pytest

from archive import encoding
from archive.archiver import Archiver, ArchiverConfig
from archive.envelope import InvalidMessage
from archive.sample import generate, main, samples
from archive.schemas import NAMES, load, validator

COUNT = 3000
MAX_BYTES = 64 * 1024        # small, so oversize records are cheap
SAMPLE = dict(bad_ratio=0.1, max_bytes=MAX_BYTES, oversize_every=1000)
CHANNELS = {"clevertap": {"email", "push", "sms", "whatsapp"}, "braze": {"email", "push", "sms", "mms"}}

# The archived payloads of the seed contracts, in the seeds' field order.
CLEVERTAP_COMMON = {
    "sent_at": 1722443282680,
    "message_id": "9f8c76ccdaf0895515f813af702670324d996296788652b50b3475d6fe6e719a",
    "campaign_id": 1722529032, "campaign_name": "Flat Offer Sale Campaign", "user_id": 45142169,
    "journey_id": 2450, "journey_node_id": 1, "journey_name": "Flat Offer Sale Journey",
}
CLEVERTAP_SEEDS = {
    "push": {"version": 1, "to": "frfsgvrwe:APfdsafsgdfsgghfgfgjkhfsfgdhjhbvcvnetry767456fxsasdf",
             "payload": {"aps": {"alert": {"title": "Flat 50% off", "body": "Today only"}}},
             "platform": "iOS", **CLEVERTAP_COMMON},
    "email": {"version": 1, "to": "customer@example.com", "subject": "20% off coupon inside!",
              "from_name": "CleverTap", "from_address": "no-reply@clevertap.com",
              "cc": ["cc@example.com"], "bcc": ["bcc@example.com"], "html_body": "<p>Hi</p>",
              "plaintext_body": "Hi", "amp_body": "<html ⚡4email></html>", "headers": {"X-Campaign": "1"},
              **CLEVERTAP_COMMON},
    "sms": {"version": 1, "to": "15555555555", "body": "Hi there!", "provider": "twilio", **CLEVERTAP_COMMON},
    "whatsapp": {"version": 1, "to": "15555555555", "body": "Hi there!", "provider": "twilio",
                 **CLEVERTAP_COMMON},
}
BRAZE_IDS = {
    "sent_at": 1722443282, "dispatch_id": "651fd10b282850b39e1169c13975234b",
    "campaign_id": "ee965cb2-8934-4b0a-acf1-91c899c2f915", "canvas_id": "canvas-1", "canvas_step_id": "step-1",
    "canvas_variation_id": "cv-1", "message_variation_id": "mv-1",
}
BRAZE_NAMES = {"user_id": "5f1e8a9b2c3d4e5f6a7b8c9d", "campaign_name": "Spring Sale", "canvas_name": "Onboarding",
               "canvas_step_name": "Day 1", "external_id": "user-1001"}
BRAZE_SEEDS = {
    "email": {"version": 1, "to": "customer@example.com", "subject": "20% off coupon inside!", "from_name": "Braze",
              "from_address": "no-reply@braze.com", "html_body": "<p>Hi</p>", "plaintext_body": "Hi",
              "amp_body": "<html ⚡4email></html>", "extras": {"utm": "spring"}, "headers": {"X-A": "1"},
              **BRAZE_IDS, "attachments": [{"bytes": "JVBERi0=", "file_name": "a.pdf"}], **BRAZE_NAMES},
    "sms": {"version": 1, "to": "+15555555555", "body": "Hi there!", "subscription_group": "sg-1",
            "provider": "twilio", **BRAZE_IDS, **BRAZE_NAMES},
    "mms": {"version": 1, "to": "+15555555555", "body": "Hi there!", "subscription_group": "sg-1",
            "provider": "twilio", "media_urls": ["https://cdn.example.com/a.png"], **BRAZE_IDS, **BRAZE_NAMES},
    "push": {"version": 1, "to": "Test_Push_Token12345", "payload": {"aps": {"alert": "Hi"}}, "platform": "ios_push",
             "app_id": "app-1", **BRAZE_IDS, **BRAZE_NAMES},
}
SEEDS = {"clevertap": CLEVERTAP_SEEDS, "braze": BRAZE_SEEDS}


def archive(profile, data, max_bytes=MAX_BYTES):
    """The payload the profile archives for one input record."""
    archiver = Archiver(ArchiverConfig(profile=profile, max_message_bytes=max_bytes))
    request = archiver.prepare(data)
    codec = encoding.get_codec(archiver.profile.default_compression)
    return json.loads(codec.decompress(request.data))


@pytest.fixture(scope="module", params=["clevertap", "braze"])
def made(request):
    return request.param, list(samples(COUNT, request.param, seed=11, **SAMPLE))


def test_schemas_are_valid_draft_2020_12():
    from jsonschema import Draft202012Validator

    for name in NAMES:
        schema = load(name)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        Draft202012Validator.check_schema(schema)
    assert load("braze.schema.json") == load("braze")


def test_every_envelope_property_is_described():
    from archive.envelope import ENVELOPE_FIELDS

    schema = load("envelope")
    assert set(schema["properties"]) == ENVELOPE_FIELDS
    assert schema["additionalProperties"] is False
    assert all(p.get("description") for p in schema["properties"].values())


def test_generator_is_deterministic():
    first = list(generate(1500, "braze", seed=3, bad_ratio=0.1))
    assert first == list(generate(1500, "braze", seed=3, bad_ratio=0.1))
    assert first[:700] == list(generate(700, "braze", seed=3, bad_ratio=0.1))
    assert first != list(generate(1500, "braze", seed=4, bad_ratio=0.1))
    assert first == [s.data for s in samples(1500, "braze", seed=3, bad_ratio=0.1)]
    assert all(b"\n" not in line and b"\r" not in line for line in first)


def test_sample_covers_every_channel_and_defect(made):
    profile, produced = made
    assert {s.channel for s in produced if s.defect is None} == CHANNELS[profile]
    defects = Counter(s.defect for s in produced if s.defect)
    assert {"malformed_json", "invalid_utf8", "wrong_type", "unknown_channel", "missing_recipient",
            "invalid_phone", "unsafe_id", "oversize"} <= set(defects)
    assert defects["oversize"] == COUNT // SAMPLE["oversize_every"]
    assert 0.07 < sum(defects.values()) / COUNT < 0.14


def test_every_valid_record_archives_and_matches_the_profile_schema(made):
    profile, produced = made
    check = validator(profile)
    valid = [s for s in produced if s.defect is None]
    for sample in valid:
        check.validate(archive(profile, sample.data))


def test_every_bad_record_is_rejected(made):
    profile, produced = made
    archiver = Archiver(ArchiverConfig(profile=profile, max_message_bytes=MAX_BYTES))
    for sample in produced:
        if sample.defect is not None:
            with pytest.raises(InvalidMessage):
                archiver.prepare(sample.data)


def test_oversize_records_are_just_over_the_limit():
    sizes = [len(s.data) for s in samples(2000, "clevertap", bad_ratio=0.01, max_bytes=MAX_BYTES,
                                          oversize_every=500) if s.defect == "oversize"]
    assert len(sizes) == 4 and all(MAX_BYTES < n <= MAX_BYTES + 64 for n in sizes)
    assert not any(s.defect == "oversize" for s in samples(2000, "clevertap", oversize_every=0))
    assert not any(s.defect for s in samples(2000, "clevertap", bad_ratio=0))


def test_tenants_are_spread_when_given():
    records = [json.loads(line) for line in generate(300, "braze", bad_ratio=0, tenants=("acme", "globex"))]
    assert {r["tenant"] for r in records} == {"acme", "globex"}
    assert not any("tenant" in json.loads(line) for line in generate(50, "braze", bad_ratio=0))


def test_envelope_schema_accepts_every_valid_record(made):
    _, produced = made
    check = validator("envelope")
    for sample in produced:
        if sample.defect is None:
            check.validate(json.loads(sample.data))


def test_envelope_schema_rejects_structurally_bad_records(made):
    _, produced = made
    check = validator("envelope")
    structural = {"unknown_field", "wrong_type", "unknown_channel", "not_an_object", "unsupported_version"}
    for sample in produced:
        if sample.defect in structural:
            assert not check.is_valid(json.loads(sample.data)), sample.data[:200]


@pytest.mark.parametrize("profile,channel", [(p, c) for p in SEEDS for c in SEEDS[p]])
def test_seed_payloads_round_trip_and_match_both_schemas(profile, channel):
    seed = SEEDS[profile][channel]
    record = {"channel": channel, **copy.deepcopy(seed)}
    validator("envelope").validate(record)
    payload = archive(profile, json.dumps(record).encode())
    assert payload == seed and list(payload) == list(seed)
    validator(profile).validate(payload)


@pytest.mark.parametrize("profile,change", [
    ("clevertap", {"platform": "ios_push"}),               # braze's spelling
    ("clevertap", {"to": "+15555555555", "body": "x"}),     # sms with a '+'
    ("clevertap", {"sent_at": "1722443282680"}),            # a string
    ("clevertap", {"unknown": 1}),
    ("braze", {"to": "15555555555", "body": "x"}),          # sms without its '+'
    ("braze", {"platform": "iOS"}),
    ("braze", {"campaign_id": 1722529032}),
    ("braze", {"sent_at": 1722443282680}),                  # milliseconds
])
def test_profile_schemas_reject_the_other_contracts_shapes(profile, change):
    channel = "sms" if "body" in change else "push"
    payload = {**SEEDS[profile][channel], **change}
    assert not validator(profile).is_valid(payload)


def test_command_line_writes_the_same_records(tmp_path, capsys):
    out = tmp_path / "messages.jsonl.gz"
    assert main(["--count", "400", "--profile", "braze", "--out", str(out), "--seed", "5",
                 "--bad-ratio", "0.1"]) == 0
    with gzip.open(out, "rb") as handle:
        lines = handle.read().split(b"\n")
    assert lines[-1] == b"" and lines[:-1] == list(generate(400, "braze", seed=5, bad_ratio=0.1))
    summary = capsys.readouterr().err.strip()
    assert "\n" not in summary and summary.startswith("sample: 400 braze records")
