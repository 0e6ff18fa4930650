"""How an archive payload becomes bytes: JSON, then one compression codec.

Output is deterministic (gzip without a timestamp or file name, lz4 frames
with fixed settings) so a re-run writes the same bytes to the same key.
"""

from __future__ import annotations

import gzip
import json
import json.encoder
from dataclasses import dataclass
from typing import Any, Callable

import lz4.frame
import zstandard

from archive.envelope import InvalidMessage
from archive.keys import MAX_KEY_BYTES


@dataclass(frozen=True)
class Codec:
    name: str
    suffix: str                      # after ".json"
    media_type: str                  # Content-Type of the stored bytes
    content_encoding: str | None     # the HTTP content-coding for it, when one is registered
    compress: Callable[[bytes], bytes]
    decompress: Callable[[bytes], bytes]

    def object_metadata(self, http_content_encoding: bool = False) -> tuple[str, str | None]:
        """(Content-Type, Content-Encoding) of an archive object.

        By default an object is described as the file it is (a .json.gz is
        application/gzip), so every client downloads exactly the bytes whose
        sha256 the outcome holds. With `http_content_encoding` it is described
        as JSON sent with a content-coding (application/json + gzip), which
        browsers decode, and so do the Azure SDK's download_blob and GCS's
        decompressive transcoding: verify such objects with a raw download.
        """
        if http_content_encoding and self.content_encoding:
            return CONTENT_TYPE, self.content_encoding
        return self.media_type, None


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


_ZSTD_C = zstandard.ZstdCompressor(level=3)


def _zstd(data: bytes) -> bytes:
    return _ZSTD_C.compress(data)


def _unzstd(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompress(data)


CONTENT_TYPE = "application/json"

CODECS = {
    # lz4 has no registered media type or HTTP content-coding; x-lz4 is libmagic's name.
    "lz4": Codec("lz4", ".lz4", "application/x-lz4", None, lz4.frame.compress, lz4.frame.decompress),
    "gzip": Codec("gzip", ".gz", "application/gzip", "gzip", _gzip, gzip.decompress),       # RFC 6713
    "zstd": Codec("zstd", ".zst", "application/zstd", "zstd", _zstd, _unzstd),             # RFC 8878
    "none": Codec("none", "", CONTENT_TYPE, None, bytes, bytes),
}


def get_codec(name: str) -> Codec:
    try:
        return CODECS[name]
    except KeyError:
        raise ValueError(f"unknown compression {name!r} (expected one of {', '.join(CODECS)})") from None


def payload_json(payload: dict[str, Any]) -> bytes:
    """The payload as strict UTF-8 JSON (RFC 8259), keys in the profile's order,
    non-ASCII kept as is; InvalidMessage for what strict JSON cannot hold.

    The envelope already refuses such values; this is the last line, so no
    archived object is ever anything but JSON.
    """
    try:
        return _strict_json(payload)
    except (ValueError, TypeError, RecursionError, UnicodeEncodeError):
        pass
    field = None  # the failure path only: find the field to name
    for name, value in payload.items():
        try:
            _strict_json(value)
        except (ValueError, TypeError, RecursionError, UnicodeEncodeError):
            field = name
            break
    raise InvalidMessage(
        f"{field or 'the payload'} cannot be archived as strict JSON "
        "(NaN, Infinity, unpaired surrogates and non-JSON values are not JSON)", field)


# json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")), with
# its encoder built once (json.dumps builds one per call, and so does its
# iterencode). The C encoder is made without the circular check, so it keeps
# nothing between calls, even after an error: the envelope refuses a value
# nested deeper than 32 levels, so none is circular (and one would still
# fail, as RecursionError).
_STRICT_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_C_ENCODER = json.encoder.c_make_encoder and json.encoder.c_make_encoder(
    None, _STRICT_ENCODER.default, json.encoder.encode_basestring, None, ":", ",", False, False, False)


def _strict_json(value: Any) -> bytes:
    if _C_ENCODER is None or isinstance(value, str):
        return _STRICT_ENCODER.encode(value).encode("utf-8")
    return "".join(_C_ENCODER(value, 0)).encode("utf-8")


def object_key(key_stem: str, codec: Codec, form: str = "json") -> str:
    """The object's key (`form`: json, or eml for an email as RFC 5322); InvalidMessage
    when it is longer than S3 (and GCS) allow."""
    key = f"{key_stem}.{form}{codec.suffix}"
    size = len(key.encode("utf-8"))
    if size > MAX_KEY_BYTES:
        raise InvalidMessage(f"the object key would be {size} bytes, over the {MAX_KEY_BYTES} bytes "
                             "an object store allows")
    return key
