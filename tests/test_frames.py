"""Batched objects' frames: hostile bytes refused first, then round trips, then the system tools' view.

Every table runs for each codec (lz4, gzip, zstd, none). The decompression
bombs are built by streaming compressors, so neither the test nor the code
under test ever holds one decompressed.
"""

from __future__ import annotations

import json
import random
import struct
import subprocess
import tracemalloc
import zlib

import lz4.frame
import pytest
import zstandard

from archive import frames
from archive.encoding import CODECS, get_codec
from archive.frames import CorruptObject, OverLimit, Span

ALL = ["lz4", "gzip", "zstd", "none"]
COMPRESSED = ["lz4", "gzip", "zstd"]
CLI = {"lz4": ["lz4", "-dc"], "gzip": ["gzip", "-dc"], "zstd": ["zstd", "-dc"]}  # installed: never skipped
MiB = 1 << 20


def make_lines(count: int, seed: int = 1) -> list[bytes]:
    """JSON lines that vary in length and content (escaped newlines, non-ASCII)."""
    rng = random.Random(seed)
    return [json.dumps({"message_id": f"m{i}", "n": i, "body": "line\nbreak ☕ " * rng.randrange(0, 40)},
                       ensure_ascii=False, separators=(",", ":")).encode() for i in range(count)]


def build(codec: str, lines: list[bytes]) -> tuple[bytes, list[bytes]]:
    parts = [frames.frame(codec, line) for line in lines]
    return b"".join(parts), parts


def jsonl(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def refused(call, offset, kind=CorruptObject, match=None) -> CorruptObject:
    with pytest.raises(kind, match=match) as caught:
        call()
    assert caught.value.offset == offset, str(caught.value)
    return caught.value


def every_reader_refuses(codec: str, data: bytes, offset, kind=CorruptObject, match=None, **limits) -> None:
    refused(lambda: frames.spans(codec, data, **limits), offset, kind, match)
    refused(lambda: list(frames.lines(codec, data, **limits)), offset, kind, match)


def test_the_tables_cover_every_codec():
    assert set(ALL) == set(CODECS) and set(CLI) == set(COMPRESSED)


# --- hostile objects ----------------------------------------------------------------------------

@pytest.mark.parametrize("codec", ALL)
def test_an_empty_object_is_refused(codec):
    every_reader_refuses(codec, b"", None, match="empty object")
    refused(lambda: frames.read_frame(codec, b""), None)


@pytest.mark.parametrize("codec", ALL)
@pytest.mark.parametrize("count", [1, 3])
def test_an_object_one_byte_short_is_refused_at_its_last_frame(codec, count):
    data, parts = build(codec, make_lines(count))
    last = len(data) - len(parts[-1])
    every_reader_refuses(codec, data[:-1], last, match="truncated|does not end")
    refused(lambda: frames.read_frame(codec, parts[-1][:-1]), 0)


@pytest.mark.parametrize("codec", ALL)
def test_an_object_cut_anywhere_inside_its_last_frame_is_refused(codec):
    data, parts = build(codec, make_lines(3))
    last = len(data) - len(parts[-1])
    for cut in range(last + 1, len(data)):
        every_reader_refuses(codec, data[:cut], last)


@pytest.mark.parametrize("codec", COMPRESSED)
def test_a_frame_short_by_one_byte_mid_object_is_refused_there(codec):
    _, parts = build(codec, make_lines(3))
    data = parts[0] + parts[1][:-1] + parts[2]
    every_reader_refuses(codec, data, len(parts[0]))


def test_a_line_short_of_its_newline_mid_object_merges_with_the_next_for_none():
    """What framing cannot see: uncompressed, a lost b"\\n" makes one longer line."""
    lines = make_lines(3)
    _, parts = build("none", lines)
    data = parts[0] + parts[1][:-1] + parts[2]
    assert [line for _, line in frames.lines("none", data)] == [lines[0], lines[1] + lines[2]]


@pytest.mark.parametrize("codec", ALL)
def test_an_object_cut_at_a_frame_boundary_reads_as_the_shorter_object(codec):
    """Also what framing cannot see: the writer's recorded count must be compared."""
    lines = make_lines(4)
    data, parts = build(codec, lines)
    cut = len(parts[0]) + len(parts[1])
    assert [line for _, line in frames.lines(codec, data[:cut])] == lines[:2]


GARBAGE = [  # (id, bytes, refused for "none" too)
    ("one-byte", b"x", True),
    ("nul", b"\x00", True),
    ("four-nuls", b"\x00" * 4, True),
    ("blank-line", b"\n", True),
    ("text-line", b"garbage\n", False),  # uncompressed, any line is a line: no JSON parsing here
    ("random", random.Random(5).randbytes(100).replace(b"\n", b" "), True),
]


@pytest.mark.parametrize("codec, garbage", [pytest.param(codec, g, id=f"{codec}-{i}") for i, g, for_none in GARBAGE
                                             for codec in ALL if for_none or codec != "none"])
def test_garbage_after_the_last_frame_is_refused(codec, garbage):
    data, _ = build(codec, make_lines(3))
    every_reader_refuses(codec, data + garbage, len(data))


@pytest.mark.parametrize("codec", COMPRESSED)
def test_part_of_a_frame_appended_is_refused(codec):
    data, parts = build(codec, make_lines(3))
    for size in (1, 3, 5, len(parts[0]) // 2, len(parts[0]) - 1):
        every_reader_refuses(codec, data + parts[0][:size], len(data))


@pytest.mark.parametrize("codec", COMPRESSED)
def test_garbage_before_or_between_frames_is_refused(codec):
    data, parts = build(codec, make_lines(2))
    every_reader_refuses(codec, b"\x00" + data, 0)
    every_reader_refuses(codec, parts[0] + b" " + parts[1], len(parts[0]))


BAD_CONTENT = [  # what one frame decompresses to, and why it is refused
    pytest.param(b'{"a":1}\n{"b":2}\n', "more than one line", id="two-lines"),
    pytest.param(b'{"a":1}\n\n', "more than one line", id="line-and-blank"),
    pytest.param(b'{"a":1}\nx', "more than one line", id="bytes-after-newline"),
    pytest.param(b'{"a":1}', "does not end", id="no-newline"),
    pytest.param(b"", "nothing", id="empty-frame"),
    pytest.param(b"\n", "empty line", id="blank-line"),
]


@pytest.mark.parametrize("codec", COMPRESSED)
@pytest.mark.parametrize("content, reason", BAD_CONTENT)
def test_a_frame_that_is_not_one_line_is_refused_where_it_is(codec, content, reason):
    good, _ = build(codec, make_lines(2))
    bad = get_codec(codec).compress(content)
    every_reader_refuses(codec, good + bad + good, len(good), match=reason)
    refused(lambda: frames.read_frame(codec, bad), 0, match=reason)


@pytest.mark.parametrize("codec", COMPRESSED)
def test_a_multi_megabyte_frame_of_two_lines_is_refused(codec):
    """The second line starts past the decompressor's first chunks of output."""
    big = b'{"body":"' + b"y" * (3 * MiB) + b'"}'
    bad = get_codec(codec).compress(big + b"\n" + b'{"a":1}\n')
    refused(lambda: frames.read_frame(codec, bad), 0, match="more than one line")
    refused(lambda: frames.spans(codec, bad), 0, match="more than one line")


@pytest.mark.parametrize("content, reason", [
    (b'{"a":1}\n{"b":2}\n', "after the line"),
    (b'{"a":1}', "truncated"),
    (b"\n", "empty line"),
    (b'{"a":1}\n\n', "after the line"),
])
def test_an_uncompressed_span_that_is_not_one_line_is_refused(content, reason):
    error = refused(lambda: frames.read_frame("none", content), 8 if reason == "after the line" else 0,
                    match=reason)
    assert isinstance(error, ValueError)


@pytest.mark.parametrize("codec", ALL)
def test_a_span_of_two_frames_or_with_bytes_after_is_refused(codec):
    _, parts = build(codec, make_lines(2))
    refused(lambda: frames.read_frame(codec, parts[0] + parts[1]), len(parts[0]), match="after the")
    refused(lambda: frames.read_frame(codec, parts[0] + b"\x00"), len(parts[0]), match="after the")


def _zero_bomb(codec: str, size: int) -> bytes:
    """One frame of `size` zero bytes and a newline, compressed as it streams."""
    chunk = bytes(MiB)
    if codec == "gzip":
        c = zlib.compressobj(1, zlib.DEFLATED, 31)
        out = [c.compress(chunk) for _ in range(size // MiB)]
        return b"".join(out) + c.compress(b"\n") + c.flush()
    if codec == "lz4":
        c = lz4.frame.LZ4FrameCompressor()
        return c.begin() + b"".join(c.compress(chunk) for _ in range(size // MiB)) + c.compress(b"\n") + c.flush()
    c = zstandard.ZstdCompressor(level=1).compressobj()
    return b"".join(c.compress(chunk) for _ in range(size // MiB)) + c.compress(b"\n") + c.flush()


@pytest.fixture(scope="module")
def bombs():
    return {codec: _zero_bomb(codec, 200 * MiB) for codec in COMPRESSED}


@pytest.mark.parametrize("codec", COMPRESSED)
def test_a_decompression_bomb_is_refused_without_being_decompressed(codec, bombs):
    bomb = bombs[codec]
    assert len(bomb) < 2 * MiB  # 200 MiB of zeros, a hundredth of it or less compressed
    data, parts = build(codec, make_lines(2))
    tracemalloc.start()
    try:
        refused(lambda: frames.spans(codec, data + bomb, max_output_bytes=MiB), len(data), OverLimit, "max_output")
        refused(lambda: list(frames.lines(codec, data + bomb, max_output_bytes=MiB)), len(data), OverLimit)
        refused(lambda: frames.read_frame(codec, bomb, max_output_bytes=MiB), 0, OverLimit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MiB, f"{peak} bytes allocated to refuse a bomb over a 1 MiB limit"


@pytest.mark.parametrize("codec", ALL)
def test_the_output_limit_counts_the_whole_object(codec):
    lines = make_lines(5)
    data, parts = build(codec, lines)
    total = len(jsonl(lines))
    assert len(frames.spans(codec, data, max_output_bytes=total)) == 5
    assert frames.read_frame(codec, parts[4], max_output_bytes=len(lines[4]) + 1) == lines[4]
    every_reader_refuses(codec, data, len(data) - len(parts[-1]), OverLimit, max_output_bytes=total - 1)
    refused(lambda: frames.read_frame(codec, parts[4], max_output_bytes=len(lines[4])), 0, OverLimit)


@pytest.mark.parametrize("codec", ALL)
def test_more_frames_than_max_frames_are_refused_before_reading_the_next(codec):
    data, parts = build(codec, make_lines(4))
    assert len(frames.spans(codec, data, max_frames=4)) == 4
    every_reader_refuses(codec, data, len(parts[0]) + len(parts[1]) + len(parts[2]), OverLimit, "max_frames",
                         max_frames=3)
    # the frame past the limit is not read: garbage there still says max_frames
    every_reader_refuses(codec, data + b"\x00garbage", len(data), OverLimit, max_frames=4)


def _zstd_frame(descriptor: int, fields: bytes, blocks: bytes) -> bytes:
    return b"\x28\xb5\x2f\xfd" + bytes([descriptor]) + fields + blocks


RAW_LAST_BLOCK = struct.pack("<I", (len(b'{"a":1}\n') << 3) | 1)[:3] + b'{"a":1}\n'


def test_a_zstd_frame_made_by_hand_is_read():
    """The hand-made frames below are sound but for what each test changes."""
    sound = _zstd_frame(0x20, bytes([8]), RAW_LAST_BLOCK)  # single segment, 1-byte content size
    assert frames.read_frame("zstd", sound) == b'{"a":1}'
    assert zstandard.ZstdDecompressor().decompress(sound) == b'{"a":1}\n'


def test_a_zstd_header_declaring_more_than_the_limit_is_refused_before_decoding():
    lying = _zstd_frame(0xE0, struct.pack("<Q", 1 << 60), RAW_LAST_BLOCK)  # 8-byte content size, single segment
    refused(lambda: frames.read_frame("zstd", lying), 0, OverLimit, "declares")
    refused(lambda: frames.read_frame("zstd", lying, max_output_bytes=1 << 62), 0, CorruptObject)


def test_a_zstd_window_over_128_mib_is_refused():
    huge_window = _zstd_frame(0x00, bytes([(20 << 3)]), RAW_LAST_BLOCK)  # 2^30-byte window, no content size
    refused(lambda: frames.read_frame("zstd", huge_window), 0, OverLimit, "window")


@pytest.mark.parametrize("name, frame_bytes, reason", [
    ("reserved-bit", _zstd_frame(0x28, bytes([8]), RAW_LAST_BLOCK), "reserved bit"),
    ("dictionary", _zstd_frame(0x21, bytes([7, 8]), RAW_LAST_BLOCK), "dictionary"),
    ("reserved-block", _zstd_frame(0x20, bytes([8]), b"\x07\x00\x00"), "reserved type"),
    ("oversized-block", _zstd_frame(0x20, bytes([8]), struct.pack("<I", ((128 * 1024 + 1) << 3) | 1)[:3]),
     "over zstd"),
    ("skippable", struct.pack("<II", 0x184D2A50, 0), "not a zstd frame"),
    ("no-last-block", _zstd_frame(0x20, bytes([8]), bytes([RAW_LAST_BLOCK[0] & ~1]) + RAW_LAST_BLOCK[1:]),
     "truncated"),
])
def test_a_malformed_zstd_frame_is_refused(name, frame_bytes, reason):
    refused(lambda: frames.read_frame("zstd", frame_bytes), 0, match=reason)


def test_an_lz4_header_declaring_another_size_is_refused():
    good = lz4.frame.compress(b'{"a":1}\n')
    assert good[4] & 0x08  # the content size is stored (bytes 6..13), the header checksum after it
    for checksum in range(256):  # find the header checksum of the lying header
        lying = good[:6] + struct.pack("<Q", 1 << 50) + bytes([checksum]) + good[15:]
        with pytest.raises(CorruptObject) as caught:
            frames.read_frame("lz4", lying, max_output_bytes=MiB)
        if "eaderChecksum" not in str(caught.value):
            break
    assert "frameSize_wrong" in str(caught.value)


@pytest.mark.parametrize("codec", COMPRESSED)
def test_an_object_in_another_codec_is_refused(codec):
    other = {"lz4": "zstd", "gzip": "lz4", "zstd": "gzip"}[codec]
    data, _ = build(other, make_lines(2))
    every_reader_refuses(codec, data, 0, match="not a")


def test_a_gzip_member_with_a_wrong_crc_is_refused():
    _, parts = build("gzip", make_lines(1))
    bad = parts[0][:-8] + bytes([parts[0][-8] ^ 1]) + parts[0][-7:]
    refused(lambda: frames.read_frame("gzip", bad), 0, match="not a sound gzip member")


@pytest.mark.parametrize("codec", ALL)
@pytest.mark.parametrize("line, error", [
    (b"", ValueError),
    (b'{"a":1}\n', ValueError),
    (b'{"a":\n1}', ValueError),
    ('{"a":1}', TypeError),
])
def test_frame_refuses_what_would_not_read_back_as_one_line(codec, line, error):
    with pytest.raises(error):
        frames.frame(codec, line)


def test_an_unknown_codec_is_refused():
    with pytest.raises(ValueError, match="unknown compression"):
        frames.spans("brotli", b"{}\n")
    with pytest.raises(ValueError, match="unknown compression"):
        frames.frame("brotli", b"{}")


# --- round trips --------------------------------------------------------------------------------

@pytest.mark.parametrize("codec", ALL)
@pytest.mark.parametrize("count", [1, 2, 1000])
def test_round_trip(codec, count):
    lines = make_lines(count)
    data, parts = build(codec, lines)
    assert parts == [get_codec(codec).compress(line + b"\n") for line in lines]  # the codec's own bytes
    assert parts == [frames.frame(get_codec(codec), line) for line in lines]     # deterministic; a Codec works too
    expected, offset = [], 0
    for part in parts:
        expected.append(Span(offset, len(part)))
        offset += len(part)
    assert frames.spans(codec, data) == expected
    assert list(frames.lines(codec, data)) == list(zip(expected, lines))
    assert [frames.read_frame(codec, data[s.offset:s.end]) for s in expected] == lines
    assert get_codec(codec).decompress(parts[0]) == lines[0] + b"\n"


@pytest.mark.parametrize("codec", ALL)
def test_a_multi_megabyte_line_among_small_ones(codec):
    big = json.dumps({"body": random.Random(3).randbytes(3 * MiB // 2).hex()}).encode()  # 3 MiB, not trivially compressible
    lines = [b'{"a":1}', big, b'{"b":2}']
    data, parts = build(codec, lines)
    spans = frames.spans(codec, data, max_output_bytes=len(jsonl(lines)))
    assert spans == [Span(0, len(parts[0])), Span(len(parts[0]), len(parts[1])),
                     Span(len(parts[0]) + len(parts[1]), len(parts[2]))]
    assert frames.read_frame(codec, data[spans[1].offset:spans[1].end]) == big
    assert [line for _, line in frames.lines(codec, data)] == lines


@pytest.mark.parametrize("codec", ALL)
def test_any_bytes_like_object_is_read(codec):
    lines = make_lines(3)
    data, parts = build(codec, lines)
    for form in (bytearray(data), memoryview(data), memoryview(b"##" + data)[2:]):
        assert [line for _, line in frames.lines(codec, form)] == lines
        assert frames.spans(codec, form) == frames.spans(codec, data)
    assert frames.read_frame(codec, memoryview(b"#" + parts[1] + b"#")[1:-1]) == lines[1]


def test_span_end():
    assert Span(10, 5).end == 15 and Span(10, 5) == (10, 5)


# --- the system tools' view ---------------------------------------------------------------------

@pytest.mark.parametrize("codec", COMPRESSED)
@pytest.mark.parametrize("count", [1, 2, 1000])
def test_the_codecs_tool_reads_an_object_as_json_lines(codec, count):
    lines = make_lines(count)
    data, _ = build(codec, lines)
    done = subprocess.run(CLI[codec], input=data, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == jsonl(lines)
    assert [json.loads(line) for line in done.stdout.splitlines()][-1]["n"] == count - 1


@pytest.mark.parametrize("codec", COMPRESSED)
def test_the_codecs_tool_reads_a_multi_megabyte_line(codec):
    lines = [b'{"a":1}', json.dumps({"body": "z" * (3 * MiB)}).encode(), b'{"b":2}']
    data, _ = build(codec, lines)
    done = subprocess.run(CLI[codec], input=data, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == jsonl(lines)


def test_an_uncompressed_object_is_json_lines_itself():
    lines = make_lines(1000)
    data, _ = build("none", lines)
    assert data == jsonl(lines)
    assert [json.loads(line)["n"] for line in data.splitlines()] == list(range(1000))
