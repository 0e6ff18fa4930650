"""How an archive payload becomes bytes: JSON, then one compression codec.

Output is deterministic (gzip without a timestamp or file name, lz4 frames
with fixed settings) so a re-run writes the same bytes to the same key.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from typing import Any, Callable

import lz4.frame
import zstandard


@dataclass(frozen=True)
class Codec:
    name: str
    suffix: str                      # after ".json"
    content_encoding: str | None     # HTTP Content-Encoding of the object
    compress: Callable[[bytes], bytes]
    decompress: Callable[[bytes], bytes]


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


_ZSTD_C = zstandard.ZstdCompressor(level=3)


def _zstd(data: bytes) -> bytes:
    return _ZSTD_C.compress(data)


def _unzstd(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompress(data)


CODECS = {
    "lz4": Codec("lz4", ".lz4", None, lz4.frame.compress, lz4.frame.decompress),
    "gzip": Codec("gzip", ".gz", "gzip", _gzip, gzip.decompress),
    "zstd": Codec("zstd", ".zst", "zstd", _zstd, _unzstd),
    "none": Codec("none", "", None, bytes, bytes),
}

CONTENT_TYPE = "application/json"


def get_codec(name: str) -> Codec:
    try:
        return CODECS[name]
    except KeyError:
        raise ValueError(f"unknown compression {name!r} (expected one of {', '.join(CODECS)})") from None


def payload_json(payload: dict[str, Any]) -> bytes:
    """The payload as UTF-8 JSON, keys in the profile's order, non-ASCII kept as is."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def object_key(key_stem: str, codec: Codec) -> str:
    return f"{key_stem}.json{codec.suffix}"
