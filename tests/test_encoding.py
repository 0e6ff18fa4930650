"""Codecs: round trips, deterministic bytes, suffixes, and the system tools' view."""

from __future__ import annotations

import gzip
import json
import subprocess

import pytest

from archive import keys
from archive.encoding import CODECS, CONTENT_TYPE, get_codec, object_key, payload_json
from archive.envelope import InvalidMessage

PAYLOAD = {"version": 1, "to": "customer@example.com", "subject": "20% off ☕ café", "sent_at": 1722443282680,
           "headers": {"X-A": "1"}, "cc": ["a@example.com"], "campaign_id": 1722529032}

DOCUMENTS = [
    pytest.param(payload_json(PAYLOAD), id="payload"),
    pytest.param(b"", id="empty"),
    pytest.param(b"{}", id="empty-object"),
    pytest.param(json.dumps({"body": "x" * 2_000_000}).encode(), id="2MB-compressible"),
    pytest.param(bytes(range(256)) * 4096, id="1MB-binary"),
]

CODEC_TABLE = [
    # (name, suffix, content encoding, system command or None)
    pytest.param("lz4", ".lz4", None, ["/usr/bin/lz4", "-dc"], id="lz4"),
    pytest.param("gzip", ".gz", "gzip", ["/usr/bin/gzip", "-dc"], id="gzip"),
    pytest.param("zstd", ".zst", "zstd", ["/usr/bin/zstd", "-dc"], id="zstd"),
    pytest.param("none", "", None, None, id="none"),
]


def test_codec_table_is_complete():
    assert set(CODECS) == {p.values[0] for p in CODEC_TABLE}


@pytest.mark.parametrize("name, suffix, content_encoding, command", CODEC_TABLE)
def test_codec_attributes(name, suffix, content_encoding, command):
    codec = get_codec(name)
    assert (codec.name, codec.suffix, codec.content_encoding) == (name, suffix, content_encoding)
    assert object_key("sent_messages/sms/abc/unassociated/d1", codec) == \
        f"sent_messages/sms/abc/unassociated/d1.json{suffix}"


@pytest.mark.parametrize("document", DOCUMENTS)
@pytest.mark.parametrize("name", list(CODECS))
def test_round_trip(name, document):
    codec = get_codec(name)
    compressed = codec.compress(document)
    assert isinstance(compressed, bytes)
    assert codec.decompress(compressed) == document


@pytest.mark.parametrize("document", DOCUMENTS)
@pytest.mark.parametrize("name", list(CODECS))
def test_deterministic(name, document):
    codec = get_codec(name)
    assert codec.compress(document) == codec.compress(bytes(document))


@pytest.mark.parametrize("name", ["lz4", "gzip", "zstd"])
def test_compresses(name):
    document = json.dumps({"body": "Hi there! " * 1000}).encode()
    assert len(get_codec(name).compress(document)) < len(document) // 10


def test_none_is_identity():
    document = payload_json(PAYLOAD)
    assert get_codec("none").compress(document) == document


def test_gzip_header_has_no_time_and_no_name():
    data = get_codec("gzip").compress(payload_json(PAYLOAD))
    assert data[:3] == b"\x1f\x8b\x08"          # magic, deflate
    assert data[3] & 0x08 == 0                     # FLG.FNAME unset
    assert data[4:8] == b"\x00\x00\x00\x00"        # MTIME 0
    assert gzip.decompress(data) == payload_json(PAYLOAD)


@pytest.mark.parametrize("magic, name", [
    pytest.param(b"\x04\x22\x4d\x18", "lz4", id="lz4-frame"),
    pytest.param(b"\x28\xb5\x2f\xfd", "zstd", id="zstd-frame"),
])
def test_frame_magic(magic, name):
    assert get_codec(name).compress(b"{}").startswith(magic)


@pytest.mark.parametrize("document", DOCUMENTS)
@pytest.mark.parametrize("name, suffix, content_encoding, command",
                         [p for p in CODEC_TABLE if p.values[3] is not None])
def test_system_tools_decompress(name, suffix, content_encoding, command, document, tmp_path):
    compressed = get_codec(name).compress(document)
    # From a pipe...
    piped = subprocess.run(command, input=compressed, capture_output=True, check=True, timeout=60)
    assert piped.stdout == document
    # ...and from a file named the way the archive names it.
    path = tmp_path / f"message.json{suffix}"
    path.write_bytes(compressed)
    from_file = subprocess.run(command + [str(path)], capture_output=True, check=True, timeout=60)
    assert from_file.stdout == document


def test_unknown_codec():
    with pytest.raises(ValueError, match="unknown compression 'brotli'"):
        get_codec("brotli")


@pytest.mark.parametrize("payload, document", [
    pytest.param({"version": 1, "to": "x"}, b'{"version":1,"to":"x"}', id="compact"),
    pytest.param({"to": "x", "version": 1}, b'{"to":"x","version":1}', id="keeps-key-order"),
    pytest.param({"subject": "café ☕"}, '{"subject":"café ☕"}'.encode("utf-8"), id="non-ascii-as-utf8"),
    pytest.param({"body": 'a "quote" \\ and\nnewline'}, b'{"body":"a \\"quote\\" \\\\ and\\nnewline"}',
                 id="escapes"),
    pytest.param({"payload": {"b": 1, "a": [1, 2]}}, b'{"payload":{"b":1,"a":[1,2]}}', id="nested-order"),
])
def test_payload_json(payload, document):
    assert payload_json(payload) == document
    assert list(json.loads(document)) == list(payload)


def test_content_type():
    assert CONTENT_TYPE == "application/json"


@pytest.mark.parametrize("name, http_coding, expected", [
    pytest.param("lz4", False, ("application/x-lz4", None), id="lz4"),
    pytest.param("lz4", True, ("application/x-lz4", None), id="lz4-no-registered-coding"),
    pytest.param("gzip", False, ("application/gzip", None), id="gzip-as-file"),
    pytest.param("gzip", True, ("application/json", "gzip"), id="gzip-as-json-coding"),
    pytest.param("zstd", False, ("application/zstd", None), id="zstd-as-file"),
    pytest.param("zstd", True, ("application/json", "zstd"), id="zstd-as-json-coding"),
    pytest.param("none", True, ("application/json", None), id="none"),
])
def test_object_metadata(name, http_coding, expected):
    assert get_codec(name).object_metadata(http_coding) == expected


# --- strict JSON and key length: the last line behind the envelope's checks ----------

@pytest.mark.parametrize("payload, field", [
    pytest.param({"a": 1, "b": float("nan")}, "b", id="nan"),
    pytest.param({"a": {"b": [float("inf")]}}, "a", id="inf-nested"),
    pytest.param({"a": b"bytes"}, "a", id="bytes"),
    pytest.param({"a": "\ud800"}, "a", id="lone-surrogate"),
])
def test_payload_json_refuses_what_is_not_strict_json(payload, field):
    with pytest.raises(InvalidMessage) as caught:
        payload_json(payload)
    assert caught.value.field == field


@pytest.mark.parametrize("stem_bytes, ok", [
    pytest.param(keys.MAX_KEY_BYTES - len(".json.lz4"), True, id="at-the-limit"),
    pytest.param(keys.MAX_KEY_BYTES - len(".json.lz4") + 1, False, id="one-over"),
    pytest.param(5000, False, id="far-over"),
])
def test_object_keys_are_at_most_1024_bytes(stem_bytes, ok):
    stem = "sent_messages/" + "a" * (stem_bytes - len("sent_messages/"))
    if ok:
        assert len(object_key(stem, get_codec("lz4")).encode()) == keys.MAX_KEY_BYTES
    else:
        with pytest.raises(InvalidMessage, match="1024 bytes"):
            object_key(stem, get_codec("lz4"))
