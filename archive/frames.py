"""Batched objects: many archived messages in one object, each its own compressed frame.

    JSON line ──frame──> one frame: the codec's own bytes for line + b"\\n"
    frames, one after another ──(the writer)──> one object (.json.lz4 | .json.gz | .json.zst | .json)
    object ──spans──> [Span(offset, length)], one per message: the byte ranges an index records
    object[span] (a byte-range GET) ──read_frame──> that one message's JSON line
    object ──lines──> (Span, JSON line) for each message, in order

Each frame is exactly what `archive.encoding` writes for a one-message
object holding that line (an lz4 frame, a gzip member with mtime 0, a zstd
frame; for "none" the line itself), so the same bytes come out on every run.
Concatenated frames are a valid stream for each codec's own tool (lz4 and
zstd decode frame after frame, gzip member after member, RFC 1952 2.2), so
`zstd -dc object` prints the object as JSON Lines, and any one message is
read alone by fetching its span.

Reading is strict: an object is refused (CorruptObject, a ValueError) unless
it is a whole number of complete frames, each decompressing to exactly one
non-empty line ending in b"\\n", with nothing before, between or after them.
That catches an object cut short (the last frame incomplete), bytes appended,
and a span that does not match its frame. It does not catch an object cut at
a frame boundary (a shorter object of whole frames): compare the spans with
the count the writer recorded. For "none" a frame is the line itself, so
losing a newline mid-object merges two lines into one: only a JSON parser,
not framing, can tell.

Decompression is bounded, because an object is input: `max_output_bytes`
caps the decompressed bytes of the whole object (newlines included) and
`max_frames` the frames in it; either refusal is OverLimit, a CorruptObject.
The decompressors are asked for a bounded amount of output at a time (lz4 and
zlib `max_length`; zstd is fed one block, at most 128 KiB of output, at a
time, after its frame header's declared size and window are checked), so a
decompression bomb is refused after producing about the limit, never
allocated whole.

Nothing here does I/O, and nothing here parses JSON.
"""

from __future__ import annotations

import zlib
from typing import Callable, Iterator, NamedTuple

import lz4.frame
import zstandard

from archive.encoding import Codec, get_codec

DEFAULT_MAX_FRAMES = 1_000_000
DEFAULT_MAX_OUTPUT_BYTES = 1 << 30   # 1 GiB decompressed, the whole object

_IN_CHUNK = 64 * 1024     # compressed bytes handed to a decompressor at a time
_OUT_CHUNK = 256 * 1024   # most decompressed bytes asked of lz4 / zlib at a time

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ZSTD_BLOCK_MAX = 128 * 1024           # RFC 8878 3.1.1.2.3: no block decodes to more
_ZSTD_MIN_WINDOW_LIMIT = 8 << 20       # what zstd -19 and below use: a frame we may meet
_ZSTD_MAX_WINDOW_LIMIT = 128 << 20     # the zstd CLI's own default limit (--memory=128MB)


class CorruptObject(ValueError):
    """The bytes are not whole frames of one JSON line each.

    `offset` is where, in the bytes given, the frame that failed starts (None
    when the failure is not one frame's, such as an empty object).
    """

    def __init__(self, message: str, offset: int | None = None):
        super().__init__(message)
        self.offset = offset


class OverLimit(CorruptObject):
    """The object has more frames, or decompresses to more bytes, than allowed."""


class Span(NamedTuple):
    """One frame's place in its object: the bytes [offset, offset + length)."""

    offset: int
    length: int

    @property
    def end(self) -> int:
        return self.offset + self.length


def frame(codec: Codec | str, line: bytes) -> bytes:
    """The frame of one JSON line: the codec's bytes for `line` + b"\\n".

    `line` is the JSON document without a line terminator; a line that is
    empty or holds a b"\\n" anywhere is refused (ValueError), since it would
    not read back as one line.
    """
    codec = _codec(codec)
    if not isinstance(line, (bytes, bytearray, memoryview)):
        raise TypeError(f"a line is bytes, not {type(line).__name__}")
    line = bytes(line)
    if not line:
        raise ValueError("an empty line is not a JSON document")
    if b"\n" in line:
        raise ValueError("a line to frame must not contain b'\\n' (it is added after the line)")
    return codec.compress(line + b"\n")


def spans(codec: Codec | str, data: bytes, *, max_frames: int = DEFAULT_MAX_FRAMES,
          max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES) -> list[Span]:
    """The span of every frame in a batched object, in order; CorruptObject
    (OverLimit past a limit) unless the whole object is sound.

    Every frame is decompressed and checked, but no line is kept.
    """
    return [span for span, _ in _scan(_codec(codec), data, max_frames, max_output_bytes, keep=False)]


def lines(codec: Codec | str, data: bytes, *, max_frames: int = DEFAULT_MAX_FRAMES,
          max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES) -> Iterator[tuple[Span, bytes]]:
    """Each frame's span and JSON line (without its b"\\n"), in order.

    Lazy: a CorruptObject is raised when the iteration reaches the fault, after
    the sound frames before it were yielded. Use `spans` first to refuse an
    object before reading any of it.
    """
    yield from _scan(_codec(codec), data, max_frames, max_output_bytes, keep=True)


def read_frame(codec: Codec | str, frame_bytes: bytes, *,
               max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES) -> bytes:
    """The JSON line (without its b"\\n") that one frame holds, such as the bytes
    of a span fetched with a byte-range GET; CorruptObject unless the bytes
    are exactly one complete frame of one line."""
    codec = _codec(codec)
    view = _view(frame_bytes)
    if not len(view):
        raise CorruptObject(f"no bytes: an empty {_kind(codec)} holds no line", None)
    end, line, _ = _decode(codec, view, 0, 0, max_output_bytes, max_output_bytes, keep=True)
    if end != len(view):
        raise CorruptObject(
            f"{len(view) - end} byte(s) after the {_kind(codec)} (it ends at byte {end} of "
            f"{len(view)}): a span holds exactly one", end)
    return line


# --- the scan ---------------------------------------------------------------------------------

def _codec(codec: Codec | str) -> Codec:
    return codec if isinstance(codec, Codec) else get_codec(codec)


def _view(data) -> memoryview:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"an object is bytes, not {type(data).__name__}")
    view = memoryview(data)
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


_ARTICLE = {"lz4": "an"}


def _kind(codec: Codec) -> str:
    return {"lz4": "lz4 frame", "gzip": "gzip member", "zstd": "zstd frame", "none": "line"}.get(
        codec.name, f"{codec.name} frame")


def _scan(codec: Codec, data, max_frames: int, max_output_bytes: int,
          keep: bool) -> Iterator[tuple[Span, bytes | None]]:
    view = _view(data)
    if not len(view):
        raise CorruptObject("an empty object: a batched object holds at least one frame", None)
    offset, index, produced = 0, 0, 0
    while offset < len(view):
        if index >= max_frames:
            raise OverLimit(f"more than max_frames={max_frames} frames: the next starts at byte {offset}",
                            offset)
        end, line, size = _decode(codec, view, offset, index, max_output_bytes - produced,
                                  max_output_bytes, keep)
        produced += size
        yield Span(offset, end - offset), line
        offset, index = end, index + 1


class _Line:
    """Takes a frame's output chunk by chunk: one non-empty line ending in b"\\n",
    within the byte budget; keeps it when asked."""

    __slots__ = ("budget", "keep", "parts", "size", "ended")

    def __init__(self, budget: int, keep: bool):
        self.budget, self.keep = budget, keep
        self.parts: list[bytes] = []
        self.size = 0
        self.ended = False

    def room(self) -> int:
        """How much output to ask for next: one byte past the budget at most."""
        return max(1, min(_OUT_CHUNK, self.budget - self.size + 1))

    def add(self, out: bytes) -> None:
        if not out:
            return
        self.size += len(out)
        if self.size > self.budget:
            raise _Over()
        if self.ended:
            raise _Bad("it decompresses to more than one line (bytes after its b'\\n')")
        newline = out.find(b"\n")
        if newline != -1:
            if newline != len(out) - 1:
                raise _Bad("it decompresses to more than one line (bytes after its b'\\n')")
            self.ended = True
        if self.keep:
            self.parts.append(out)

    def finish(self) -> bytes | None:
        if self.size == 0:
            raise _Bad("it decompresses to nothing (an empty frame)")
        if not self.ended:
            raise _Bad("its line does not end in b'\\n'")
        if self.size == 1:
            raise _Bad("it holds an empty line")
        if not self.keep:
            return None
        return b"".join(self.parts)[:-1]


class _Bad(Exception):
    """A frame's fault, named by _decode with the frame's place."""


class _Truncated(_Bad):
    pass


class _Over(Exception):
    """Past a limit; the reason, when not the output limit itself."""


def _decode(codec: Codec, view: memoryview, offset: int, index: int, budget: int, limit: int,
            keep: bool) -> tuple[int, bytes | None, int]:
    """Decode the frame at `offset`, allowing it `budget` bytes of output (what is
    left of the object's `limit`): where it ends, its line (when kept) and its
    decompressed size."""
    kind = _kind(codec)
    where = f"{kind} {index} at byte {offset}"
    sink = _Line(budget, keep)
    try:
        magic = _MAGIC.get(codec.name, b"")
        start = bytes(view[offset:offset + len(magic)])
        if start != magic[:len(start)]:
            article = _ARTICLE.get(codec.name, "a")
            raise _Bad(f"not {article} {kind}: it starts {start.hex()}, not {magic.hex()}")
        end = _DECODERS[codec.name](view, offset, sink)
        line = sink.finish()
    except _Over as e:
        reason = str(e) or f"the object decompresses to more than max_output_bytes={limit} bytes"
        raise OverLimit(f"{where}: {reason}", offset) from None
    except _Truncated as e:
        raise CorruptObject(f"{where}: truncated, the bytes end inside it ({e})", offset) from None
    except _Bad as e:
        raise CorruptObject(f"{where}: {e}", offset) from None
    except (RuntimeError, zlib.error, zstandard.ZstdError) as e:  # lz4 raises RuntimeError
        raise CorruptObject(f"{where}: not a sound {kind}: {e}", offset) from e
    return end, line, sink.size


def _decode_none(view: memoryview, offset: int, sink: _Line) -> int:
    newline = _find_newline(view, offset)
    if newline == -1:
        end = len(view)
        if end - offset > sink.budget:
            raise _Over()
        raise _Truncated("no b'\\n' after the last line")
    end = newline + 1
    if end - offset > sink.budget:
        raise _Over()
    if sink.keep:
        sink.add(bytes(view[offset:end]))
    else:  # the one b"\n" is the last byte, by how `end` was found: nothing to copy
        sink.size, sink.ended = end - offset, True
    return end


def _find_newline(view: memoryview, offset: int) -> int:
    whole = view.obj
    if isinstance(whole, (bytes, bytearray)) and len(whole) == len(view):
        return whole.find(b"\n", offset)  # the object itself: no copy
    position = offset
    while position < len(view):  # a memoryview has no find: look a chunk at a time
        found = bytes(view[position:position + _IN_CHUNK]).find(b"\n")
        if found != -1:
            return position + found
        position += _IN_CHUNK
    return -1


def _decode_gzip(view: memoryview, offset: int, sink: _Line) -> int:
    d = zlib.decompressobj(wbits=31)  # one gzip member, its CRC-32 and length checked
    position, full = offset, False
    while not d.eof:
        if d.unconsumed_tail:
            data = d.unconsumed_tail
        elif full:
            data = b""  # output may be waiting inside zlib
        elif position < len(view):
            data = view[position:position + _IN_CHUNK]
            position += len(data)
        else:
            raise _Truncated("the member's end and trailer are missing")
        room = sink.room()
        out = d.decompress(data, room)
        full = len(out) == room
        sink.add(out)
    return position - len(d.unused_data) - len(d.unconsumed_tail)


def _decode_lz4(view: memoryview, offset: int, sink: _Line) -> int:
    d = lz4.frame.LZ4FrameDecompressor()
    position, full = offset, False
    while True:
        if not d.needs_input or full:
            data = b""  # output is waiting inside the decompressor
        elif position < len(view):
            data = bytes(view[position:position + _IN_CHUNK])
            position += len(data)
        else:
            raise _Truncated("the frame's end mark is missing")
        room = sink.room()
        out = d.decompress(data, max_length=room)
        full = len(out) == room
        sink.add(out)
        if d.eof:
            return position - len(d.unused_data or b"")


def _decode_zstd(view: memoryview, offset: int, sink: _Line) -> int:
    """A zstd frame (its magic number already seen), walked block by block
    (RFC 8878 3.1.1), each block fed to the decompressor alone."""
    size = len(view)

    def need(end: int, what: str) -> None:
        if end > size:
            raise _Truncated(f"{what} is missing")

    need(offset + 5, "the frame header")
    descriptor = view[offset + 4]
    content_size_flag, single_segment = descriptor >> 6, (descriptor >> 5) & 1
    has_checksum, dictionary_flag = (descriptor >> 2) & 1, descriptor & 3
    if descriptor & 0x08:
        raise _Bad("the frame header's reserved bit is set")
    position = offset + 5
    window = None
    if not single_segment:
        need(position + 1, "the frame header")
        exponent, mantissa = view[position] >> 3, view[position] & 7
        base = 1 << (10 + exponent)
        window = base + (base >> 3) * mantissa
        position += 1
    dictionary_size = (0, 1, 2, 4)[dictionary_flag]
    need(position + dictionary_size, "the frame header")
    if int.from_bytes(view[position:position + dictionary_size], "little"):
        raise _Bad("the frame needs a dictionary, which a batched object never uses")
    position += dictionary_size
    content_size_bytes = (single_segment, 2, 4, 8)[content_size_flag]
    need(position + content_size_bytes, "the frame header")
    content_size = None
    if content_size_bytes:
        content_size = int.from_bytes(view[position:position + content_size_bytes], "little")
        content_size += 256 if content_size_bytes == 2 else 0
    position += content_size_bytes
    remaining = sink.budget - sink.size
    if content_size is not None and content_size > remaining:
        raise _Over(f"its header declares {content_size} bytes, more than the {remaining} left "
                    "of max_output_bytes")
    # The decoder allocates the window: bounded by the output left (what the frame can
    # need) but never below what zstd writes, nor above what the zstd CLI accepts.
    window_limit = min(_ZSTD_MAX_WINDOW_LIMIT, max(_ZSTD_MIN_WINDOW_LIMIT, remaining))
    window = content_size if window is None else window  # one segment: the window is the content
    if window > window_limit:
        raise _Over(f"its header asks for a {window}-byte window, over the {window_limit} allowed")
    d = zstandard.ZstdDecompressor(max_window_size=window_limit).decompressobj()
    sink.add(d.decompress(view[offset:position]))
    while True:
        need(position + 3, "a block header")
        header = int.from_bytes(view[position:position + 3], "little")
        last, block_type, block_size = header & 1, (header >> 1) & 3, header >> 3
        if block_type == 3:
            raise _Bad("a block of the reserved type")
        if block_size > _ZSTD_BLOCK_MAX:
            raise _Bad(f"a block of {block_size} bytes, over zstd's {_ZSTD_BLOCK_MAX}")
        end = position + 3 + (1 if block_type == 1 else block_size)
        need(end, "the rest of a block")
        sink.add(d.decompress(view[position:end]))  # one block: at most 128 KiB out
        position = end
        if last:
            break
    if has_checksum:
        need(position + 4, "the content checksum")
        sink.add(d.decompress(view[position:position + 4]))
        position += 4
    if not d.eof or d.unused_data:
        raise _Bad("the decompressor does not end where the frame does")
    return position


_MAGIC = {"lz4": b"\x04\x22\x4d\x18", "gzip": b"\x1f\x8b\x08", "zstd": _ZSTD_MAGIC}  # gzip: + deflate

_DECODERS: dict[str, Callable[[memoryview, int, _Line], int]] = {
    "lz4": _decode_lz4,
    "gzip": _decode_gzip,
    "zstd": _decode_zstd,
    "none": _decode_none,
}
