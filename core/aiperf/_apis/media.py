"""Synthetic images and audio for multimodal prompts, made before the clock starts.

Images are written here with the standard library alone: PNG (filtered rows, zlib) and
baseline JPEG. The JPEG is made of flat 8x8 blocks, so every block is one DC coefficient and
an end-of-block code: a valid baseline file any decoder reads, with no DCT or image library
needed. Each image's blocks get seeded random colours (PNG pixels add noise, so their size is
what a photo's would be rather than a flat image's). Audio is a 16-bit mono WAV at 16 kHz: a
seeded mix of tones and noise.
"""

from __future__ import annotations

import base64
import io
import math
import random
import struct
import wave
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from aiperf._apis import options
from aiperf._types import UsageError

if TYPE_CHECKING:
    from aiperf._config import ProfileConfig
    from aiperf._types import Prompt

#: endpoint types whose payloads carry images, and those that carry audio too.
MULTIMODAL_TYPES = frozenset(("chat", "responses", "messages"))
AUDIO_TYPES = frozenset(("chat",))
#: why an API with images takes no audio (the one line that refuses it).
_NO_AUDIO = {
    "responses": "the Responses API takes no audio input (its input parts are text, image and file)",
    "messages": "the Messages API takes no audio input (its content blocks are text, image and document)",
}
AUDIO_RATE = 16_000


# -- PNG ---------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, rng: random.Random) -> bytes:
    """An RGB PNG of coloured 8x8 blocks with pixel noise."""
    colours = _block_colours(width, height, rng)
    blocks_x = -(-width // 8)
    noise = rng.randbytes(width * 3)
    rows = []
    for y in range(height):
        row = bytearray(b"\x00")  # filter type 0 (none) for each row
        base = (y // 8) * blocks_x
        for x in range(width):
            r, g, b = colours[base + x // 8]
            n = noise[(x * 3 + y) % len(noise)] & 0x1F
            row += bytes(((r + n) & 0xFF, (g + n) & 0xFF, (b + n) & 0xFF))
        rows.append(bytes(row))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"".join(rows), 6))
        + _png_chunk(b"IEND", b"")
    )


def _block_colours(width: int, height: int, rng: random.Random) -> list[tuple[int, int, int]]:
    count = -(-width // 8) * -(-height // 8)
    return [(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(count)]


# -- baseline JPEG -----------------------------------------------------------------------------

#: the standard DC Huffman tables (ITU T.81 Annex K.3): code counts per length, then symbols.
_DC_LUMA = ((0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0), tuple(range(12)))
_DC_CHROMA = ((0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0), tuple(range(12)))
#: an AC table with one code: end of block (every block here is flat).
_AC_EOB = ((1,) + (0,) * 15, (0,))


def _codes(table: tuple[Sequence[int], Sequence[int]]) -> dict[int, tuple[int, int]]:
    """symbol -> (code, length): the canonical codes of T.81 Annex C."""
    counts, symbols = table
    out: dict[int, tuple[int, int]] = {}
    code = 0
    k = 0
    for length, count in enumerate(counts, start=1):
        for _ in range(count):
            out[symbols[k]] = (code, length)
            code += 1
            k += 1
        code <<= 1
    return out


class _Bits:
    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def put(self, value: int, length: int) -> None:
        self.acc = (self.acc << length) | (value & ((1 << length) - 1))
        self.n += length
        while self.n >= 8:
            self.n -= 8
            byte = (self.acc >> self.n) & 0xFF
            self.out.append(byte)
            if byte == 0xFF:
                self.out.append(0)  # byte stuffing
        self.acc &= (1 << self.n) - 1

    def flush(self) -> bytes:
        if self.n:
            self.put((1 << (8 - self.n)) - 1, 8 - self.n)  # pad with ones
        return bytes(self.out)


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _dht(table_class: int, table_id: int, table: tuple[Sequence[int], Sequence[int]]) -> bytes:
    counts, symbols = table
    return _segment(0xC4, bytes((table_class << 4 | table_id, *counts, *symbols)))


def jpeg(width: int, height: int, rng: random.Random) -> bytes:
    """A baseline JPEG (YCbCr, no subsampling) of flat 8x8 blocks of random colours."""
    colours = _block_colours(width, height, rng)
    dc_codes = (_codes(_DC_LUMA), _codes(_DC_CHROMA), _codes(_DC_CHROMA))
    eob = _codes(_AC_EOB)[0]
    bits = _Bits()
    previous = [0, 0, 0]
    for r, g, b in colours:
        ycc = (
            0.299 * r + 0.587 * g + 0.114 * b,
            128 - 0.168736 * r - 0.331264 * g + 0.5 * b,
            128 + 0.5 * r - 0.418688 * g - 0.081312 * b,
        )
        for c in range(3):
            # A flat block's only coefficient: DC = 8 * (value - 128) with all-ones quantisers.
            dc = round(8 * (ycc[c] - 128))
            diff = dc - previous[c]
            previous[c] = dc
            size = abs(diff).bit_length()
            code, length = dc_codes[c][size]
            bits.put(code, length)
            if size:
                bits.put(diff if diff > 0 else diff + (1 << size) - 1, size)
            bits.put(*eob)
    quant = bytes((0, *([1] * 64)))
    frame = struct.pack(">BHHB", 8, height, width, 3) + bytes((1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0))
    scan = bytes((3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0))
    return b"".join(
        (
            b"\xff\xd8",
            _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"),
            _segment(0xDB, quant),
            _segment(0xC0, frame),
            _dht(0, 0, _DC_LUMA),
            _dht(0, 1, _DC_CHROMA),
            _dht(1, 0, _AC_EOB),
            _dht(1, 1, _AC_EOB),
            _segment(0xDA, scan),
            bits.flush(),
            b"\xff\xd9",
        )
    )


# -- WAV ---------------------------------------------------------------------------------------


def wav(seconds: float, rng: random.Random) -> bytes:
    """16-bit mono PCM at 16 kHz: two tones and a little noise."""
    frames = max(1, round(seconds * AUDIO_RATE))
    f1, f2 = rng.uniform(110, 440), rng.uniform(440, 1760)
    step1, step2 = 2 * math.pi * f1 / AUDIO_RATE, 2 * math.pi * f2 / AUDIO_RATE
    samples = [
        int(9000 * math.sin(i * step1) + 4000 * math.sin(i * step2) + rng.randint(-500, 500))
        for i in range(frames)
    ]
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(AUDIO_RATE)
        out.writeframes(struct.pack(f"<{frames}h", *samples))
    return buffer.getvalue()


# -- prompts -----------------------------------------------------------------------------------


def _side(rng: random.Random, mean: int, stddev: float) -> int:
    value = round(rng.gauss(mean, stddev)) if stddev else mean
    return min(max(value, 1), options.MAX_IMAGE_SIDE)


def check_media(prompts: Sequence[Prompt], config: ProfileConfig) -> None:
    """Images and audio only for an endpoint type whose API carries them: one line (exit 2)
    naming where they came from (the synthetic flags or the input file) otherwise."""
    opts = options.of(config)
    from_file = "--input-file (\"image\"/\"audio\")"
    images = opts.wants_images or any(p.images for p in prompts)
    audio = opts.wants_audio or any(p.audio for p in prompts)
    if not images and not audio:
        return
    kind = config.endpoint_type
    if kind not in MULTIMODAL_TYPES:
        flags = "--image-*/--audio-*" if opts.wants_images or opts.wants_audio else from_file
        raise UsageError(
            f"{flags}: the {kind} endpoint sends no images or audio; "
            f"use one of {', '.join(sorted(MULTIMODAL_TYPES))}"
        )
    if audio and kind not in AUDIO_TYPES:
        flag = "--audio-length-mean" if opts.wants_audio else from_file
        why = _NO_AUDIO.get(kind, f"the {kind} endpoint sends no audio")
        raise UsageError(f"{flag}: {why}; use --endpoint-type {' or '.join(sorted(AUDIO_TYPES))} for audio")


def attach(prompts: Sequence[Prompt], config: ProfileConfig) -> list[Prompt]:
    """The prompts with their synthetic images and audio (seeded by ``--random-seed``) added
    to any they already carry (from the input file); unchanged when no multimodal flag is set.
    Media the endpoint type cannot send is refused here, before the run."""
    check_media(prompts, config)
    opts = options.of(config)
    if not opts.wants_images and not opts.wants_audio:
        return list(prompts)
    rng = random.Random(f"media:{config.random_seed}")
    encode = png if opts.image_format == "png" else jpeg
    out = []
    for prompt in prompts:
        images = []
        image_bytes = 0
        for _ in range(opts.images_per_request):
            width = _side(rng, opts.image_width_mean, opts.image_width_stddev)
            height = _side(rng, opts.image_height_mean, opts.image_height_stddev)
            data = encode(width, height, rng)
            image_bytes += len(data)
            images.append(f"data:image/{opts.image_format};base64,{base64.b64encode(data).decode()}")
        audio = []
        values = dict(prompt.input_values)
        if images:
            _add(values, input_image_count=len(images), input_image_bytes=image_bytes)
        if opts.wants_audio:
            clip = wav(opts.audio_length_mean, rng)
            audio.append((base64.b64encode(clip).decode(), "wav"))
            _add(values, input_audio_bytes=len(clip), input_audio_seconds=opts.audio_length_mean)
        out.append(
            attrs.evolve(
                prompt,
                images=(*prompt.images, *images),
                audio=(*prompt.audio, *audio),
                input_values=values,
            )
        )
    return out


def _add(values: dict[str, float], **more: float) -> None:
    for name, value in more.items():
        values[name] = values.get(name, 0.0) + float(value)
