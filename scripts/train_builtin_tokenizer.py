"""Build the tokenizer behind ``--tokenizer builtin`` (``core/aiperf/data/builtin_tokenizer.json.gz``).

The tokenizer is a byte-level BPE (GPT-2 style pre-tokenization, so any text encodes) trained
with the ``tokenizers`` library on English text every Python installation carries offline:

* the language and library reference topics in :mod:`pydoc_data.topics`, and
* the docstrings of the standard library's own modules, classes and functions (read with
  :mod:`ast`, never imported), test packages left out.

The words of the mock server's answers (:data:`aiperf.mock_server.MOCK_WORDS`) are added to
the corpus often enough that each ``" word"`` becomes one token, so the server's own
``completion_tokens`` and aiperf's count agree.

The build is deterministic for a given Python minor version and ``tokenizers`` release:

    python scripts/train_builtin_tokenizer.py            # rewrite the shipped file
    python scripts/train_builtin_tokenizer.py --check    # exit 1 if it would change
"""

from __future__ import annotations

import argparse
import ast
import gzip
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

VOCAB_SIZE = 12_000
MIN_FREQUENCY = 2
#: how often each mock-server word is repeated in the corpus: far above the frequency of the
#: last merges of a 12k vocabulary trained on ~2 MB of text, so every such word gets its merges.
MOCK_WORD_REPEATS = 500
OUTPUT = (
    Path(__file__).resolve().parent.parent
    / "core"
    / "aiperf"
    / "data"
    / "builtin_tokenizer.json.gz"
)
_SKIPPED_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}


def stdlib_docstrings() -> Iterator[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if any(part in _SKIPPED_DIRS or part.startswith("test_") for part in parts):
            continue
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError):
            # A few files in the standard library are deliberately not valid Python.
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc:
                    yield doc


def pydoc_topics() -> Iterator[str]:
    from pydoc_data.topics import topics

    for key in sorted(topics):
        yield topics[key]


def mock_words() -> tuple[str, ...]:
    sys.path.insert(0, str(OUTPUT.parent.parent.parent))
    from aiperf.mock_server import MOCK_WORDS

    return MOCK_WORDS


def corpus(words: tuple[str, ...]) -> Iterator[str]:
    yield from pydoc_topics()
    yield from stdlib_docstrings()
    line = "".join(" " + word for word in words)
    for _ in range(MOCK_WORD_REPEATS):
        yield line


def train(words: tuple[str, ...]) -> bytes:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=MIN_FREQUENCY,
        # All 256 byte symbols, whether the corpus has them or not: any text must encode.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus(words), trainer=trainer)
    for word in words:
        ids = tokenizer.encode(" " + word).ids
        if len(ids) != 1:
            raise SystemExit(f"mock word {word!r} is {len(ids)} tokens; raise MOCK_WORD_REPEATS")
    # mtime=0 keeps the gzip header, and so the file, identical between builds.
    return gzip.compress(tokenizer.to_str().encode("utf-8"), compresslevel=9, mtime=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the shipped file")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    data = train(mock_words())
    if args.check:
        if args.output.is_file() and args.output.read_bytes() == data:
            print(f"{args.output.name} is up to date")
            return 0
        print(f"{args.output.name} differs from a fresh build; rerun without --check")
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(data)
    print(f"wrote {args.output.name}: {len(data)} bytes, vocabulary {VOCAB_SIZE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
