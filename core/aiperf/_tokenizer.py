"""Tokenizers for counting prompt and output tokens (``--tokenizer``).

``builtin`` (the default) is OpenAI's ``o200k_base`` byte-level BPE (GPT-4o class models),
whose ranks ship inside the package (``aiperf/data/o200k_base.ranks.gz``, made by
``scripts/build_builtin_tokenizer.py``), so counting works with no network; ``tiktoken``
does the encoding. A local ``tokenizer.json`` (or a directory holding one) and a Hugging
Face hub id (``gpt2``, ``org/name``) work too; a hub that cannot be reached fails within
:data:`HUB_TIMEOUT_S` with one line, unless the file is already in the local hub cache.

``tiktoken``, ``tokenizers`` and ``huggingface_hub`` are imported inside the functions that
need them: ``aiperf --help`` must not pay for them.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import itertools
import os
import re
import struct
import threading
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import attrs
import structlog

from aiperf._types import UsageError
from aiperf.urls import os_reason, strip_userinfo

if TYPE_CHECKING:
    import tiktoken
    import tokenizers

log = structlog.get_logger()

BUILTIN = "builtin"
BUILTIN_ENCODING = "o200k_base"
_BUILTIN_RESOURCE = "o200k_base.ranks.gz"
#: SHA-256 of the uncompressed ranks file; scripts/build_builtin_tokenizer.py pins the same
#: value (PAYLOAD_SHA256) and checks that the ranks rebuild OpenAI's o200k_base.tiktoken.
BUILTIN_RANKS_SHA256 = "f294bfdf5ac9ad24a15021dffba5300e4dd1770c0876b31a0443e0f4ed4d4e86"
_RANKS_MAGIC = b"aiperf-bpe-ranks-1\n"
# o200k_base's pre-tokenizer and special tokens, as tiktoken publishes them: letters run
# with one optional leading non-letter (so " word" is one piece), digits in groups of up to 3.
_O200K_PATTERN = "|".join(
    (
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"\p{N}{1,3}",
        r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
        r"\s*[\r\n]+",
        r"\s+(?!\S)",
        r"\s+",
    )
)
_O200K_SPECIAL_TOKENS = {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}
#: below this many characters in all, counting texts one by one beats tiktoken's batch call,
#: which starts a pool of threads every time.
_BATCH_CHARS = 1_000_000
#: a hub that does not answer the first request within this long is treated as unreachable.
HUB_TIMEOUT_S = 10.0
#: the whole download of a tokenizer.json (tens of MB at most) once the hub has answered.
HUB_DOWNLOAD_TIMEOUT_S = 120.0
_DEFAULT_ENDPOINT = "https://huggingface.co"
# ``name`` or ``org/name``, as the hub spells repository ids.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
_SPACED_WORD = re.compile(rb" [a-z]{2,}")
_HINT = "pass a local tokenizer.json (or its directory), or use --tokenizer builtin"


@attrs.frozen(kw_only=True, eq=False)
class BuiltinTokenizer:
    """An :class:`aiperf.Tokenizer` for ``o200k_base``, built from the shipped ranks.

    Special tokens are never produced: ``<|endoftext|>`` in a text is counted as the plain
    text it is, as a server counts a user's prompt.
    """

    name: str
    encoding: tiktoken.Encoding = attrs.field(repr=False)
    #: how many ordinary tokens there are (their ids are 0 to vocab_size - 1).
    vocab_size: int

    def __reduce__(self) -> tuple[Any, ...]:
        # By reference: the encoding keeps no Python copy of its ranks (see builtin_tokenizer),
        # so tiktoken's own pickling would give an empty one.
        return (builtin_tokenizer, ())

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode_ordinary(text)

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids``; bytes that are not valid UTF-8 on their own (part of a
        character) become U+FFFD, and ids that are no token are skipped (as ``tokenizers``
        does), so decoding never fails."""
        try:
            return self.encoding.decode(list(ids))
        except (KeyError, OverflowError, TypeError, ValueError):
            known = [
                i
                for i in ids
                if isinstance(i, int)
                and (0 <= i < self.vocab_size or i in _O200K_SPECIAL_TOKENS.values())
            ]
            return self.encoding.decode(known)

    def count(self, text: str) -> int:
        if not text:
            return 0
        return len(self.encoding.encode_ordinary(text))

    def count_many(self, texts: Sequence[str]) -> list[int]:
        """``count`` of each text; a large batch is encoded on several threads."""
        encode = self.encoding.encode_ordinary
        if sum(map(len, texts)) < _BATCH_CHARS:
            return [len(encode(text)) for text in texts]
        return [len(ids) for ids in self.encoding.encode_ordinary_batch(list(texts))]


@attrs.frozen(kw_only=True, eq=False)
class HFTokenizer:
    """An :class:`aiperf.Tokenizer` backed by a ``tokenizers.Tokenizer``.

    Counts never include special tokens: they measure the text a request carries or a server
    produced, not the framing a chat template adds.
    """

    name: str
    backend: tokenizers.Tokenizer = attrs.field(repr=False)

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.backend.decode(list(ids))

    def count(self, text: str) -> int:
        if not text:
            return 0
        return len(self.backend.encode(text, add_special_tokens=False))

    def count_many(self, texts: Sequence[str]) -> list[int]:
        """``count`` of each text, encoded in parallel by the library."""
        # encode_batch_fast (tokenizers >= 0.20) skips the offsets we never read.
        encode = getattr(self.backend, "encode_batch_fast", self.backend.encode_batch)
        return [len(encoding) for encoding in encode(list(texts), add_special_tokens=False)]


def count_many(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """Token counts of ``texts`` with any :class:`aiperf.Tokenizer`, batched when it can."""
    batch = getattr(tokenizer, "count_many", None)
    if batch is not None:
        return list(batch(texts))
    return [tokenizer.count(text) for text in texts]


def load_tokenizer(spec: str) -> BuiltinTokenizer | HFTokenizer:
    """Resolve ``--tokenizer``: ``builtin``, a path, or a Hugging Face hub id."""
    spec = spec.strip()
    if not spec:
        raise UsageError(f"--tokenizer: must not be empty; {_HINT}")
    if spec == BUILTIN:
        return builtin_tokenizer()
    path = Path(spec).expanduser()
    if path.exists():
        return _from_path(spec, path)
    if not _HUB_ID.fullmatch(spec) or spec.endswith(".json"):
        raise UsageError(f"--tokenizer: no such file or directory: {spec}")
    return _from_hub(spec)


@functools.cache
def builtin_tokenizer() -> BuiltinTokenizer:
    """``o200k_base`` from the ranks shipped in the package; never touches the network (the
    encoding is built here, not fetched with ``tiktoken.get_encoding``)."""
    import tiktoken

    pieces = builtin_pieces()
    builtin_words()  # synthetic prompts need them; made now, while the pieces are at hand
    ranks = dict(zip(pieces, range(len(pieces))))
    encoding = tiktoken.Encoding(
        name=BUILTIN_ENCODING,
        pat_str=_O200K_PATTERN,
        mergeable_ranks=ranks,
        special_tokens=dict(_O200K_SPECIAL_TOKENS),
    )
    # The encoding has copied the ranks into its Rust core and only reads the Python dict
    # to pickle itself (BuiltinTokenizer pickles by reference instead). Letting go of the
    # dict and of the 200,000 bytes objects behind it takes 19 MiB off every process that
    # measures, which is what it holds for the whole run.
    ranks.clear()
    builtin_pieces.cache_clear()
    return BuiltinTokenizer(name=BUILTIN, encoding=encoding, vocab_size=len(pieces))


@functools.cache
def builtin_pieces() -> tuple[bytes, ...]:
    """The bytes of every ordinary ``o200k_base`` token, by id, from the shipped file."""
    return _read_ranks(resources.files("aiperf").joinpath("data", _BUILTIN_RESOURCE).read_bytes())


def _read_ranks(packed: bytes) -> tuple[bytes, ...]:
    """Token bytes by id from the shipped file (layout: scripts/build_builtin_tokenizer.py)."""
    data = gzip.decompress(packed)
    if hashlib.sha256(data).hexdigest() != BUILTIN_RANKS_SHA256:
        raise UsageError(
            f"--tokenizer: the builtin {BUILTIN_ENCODING} data in the aiperf package is damaged "
            f"(aiperf/data/{_BUILTIN_RESOURCE}); reinstall aiperf, or pass a local tokenizer.json"
        )
    return _parse_ranks(data)


def _parse_ranks(data: bytes) -> tuple[bytes, ...]:
    (count,) = struct.unpack_from("<I", data, len(_RANKS_MAGIC))
    start = len(_RANKS_MAGIC) + 4
    lengths, body = data[start : start + count], data[start + count :]
    ends = list(itertools.accumulate(lengths))
    return tuple([body[begin:end] for begin, end in zip([0, *ends[:-1]], ends)])


@functools.cache
def builtin_words() -> tuple[str, ...]:
    """Lower-case ASCII words that are each one token, space included, in the builtin
    vocabulary (``" word"``), in rank order (roughly the most frequent first): the material
    of synthetic prompts."""
    # From the ranks alone: a run with another tokenizer need not build the o200k encoding.
    return tuple(
        piece[1:].decode("ascii") for piece in builtin_pieces() if _SPACED_WORD.fullmatch(piece)
    )


def _from_path(spec: str, path: Path) -> HFTokenizer:
    from tokenizers import Tokenizer

    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise UsageError(f"--tokenizer: {spec} has no tokenizer.json; {_HINT}")
    try:
        backend = Tokenizer.from_file(str(file))
    except Exception as exc:  # noqa: BLE001 - the Rust side raises plain Exception for all
        raise UsageError(
            f"--tokenizer: {file} is not a usable tokenizer.json ({_first_line(exc)})"
        ) from None
    return _wrap(spec, backend)


def _wrap(name: str, backend: tokenizers.Tokenizer) -> HFTokenizer:
    # A tokenizer.json may switch on truncation or padding (for training); counts must see
    # every token of the text and nothing else.
    backend.no_truncation()
    backend.no_padding()
    return HFTokenizer(name=name, backend=backend)


# -- the Hugging Face hub ----------------------------------------------------------------------


def _hub_cache_dir() -> Path:
    """The hub cache as ``huggingface_hub`` finds it, read from the environment now."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _from_hub(repo_id: str) -> HFTokenizer:
    import huggingface_hub
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise UsageError(
            f"--tokenizer: no such file or directory: {repo_id} (nor a hub id: {_first_line(exc)})"
        ) from None
    cache_dir = _hub_cache_dir()
    cached = huggingface_hub.try_to_load_from_cache(repo_id, "tokenizer.json", cache_dir=cache_dir)
    cached_path = cached if isinstance(cached, str) else None
    if _hub_offline():
        if cached_path is None:
            raise UsageError(
                f"--tokenizer: HF_HUB_OFFLINE is set and {repo_id!r} is not in the local hub cache; {_HINT}"
            )
        return _from_path(repo_id, Path(cached_path))

    endpoint = _hub_endpoint()
    token = huggingface_hub.get_token()
    try:
        _probe_hub(endpoint, repo_id, token)
    except _HubUnreachable:
        if cached_path is None:
            raise
        log.warning(
            "tokenizer_hub_unreachable_using_cache",
            tokenizer=repo_id,
            endpoint=strip_userinfo(endpoint),
        )
        return _from_path(repo_id, Path(cached_path))
    file = _download(repo_id, endpoint=endpoint, token=token, cache_dir=cache_dir)
    return _from_path(repo_id, Path(file))


def _hub_endpoint() -> str:
    endpoint = (os.environ.get("HF_ENDPOINT") or _DEFAULT_ENDPOINT).rstrip("/")
    try:
        parts = urlsplit(endpoint)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a bad port or IPv6 literal
        valid = False
    if not valid:
        # Not echoed: the value may carry credentials.
        raise UsageError(
            f"--tokenizer: HF_ENDPOINT is not an http(s) URL; fix it, or unset it for {_DEFAULT_ENDPOINT}"
        )
    return endpoint


class _HubUnreachable(UsageError):
    """No answer from the hub at all (as opposed to an answer that says no)."""


def _probe_hub(endpoint: str, repo_id: str, token: str | None) -> None:
    """Ask the hub, quickly and once, whether it has the file; raise when it has not."""
    import httpx

    url = f"{endpoint}/{repo_id}/resolve/main/tokenizer.json"
    shown = strip_userinfo(endpoint)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    unreachable = f"--tokenizer: cannot reach the Hugging Face hub at {shown} to fetch {repo_id!r}"
    try:
        with httpx.Client(timeout=HUB_TIMEOUT_S, follow_redirects=False) as client:
            response = client.head(url, headers=headers)
    except httpx.TimeoutException:
        raise _HubUnreachable(
            f"{unreachable} (no answer within {HUB_TIMEOUT_S:g} s); {_HINT}"
        ) from None
    except httpx.HTTPError as exc:
        raise _HubUnreachable(f"{unreachable} ({_reason(exc)}); {_HINT}") from None
    status = response.status_code
    if status < 400:
        return
    if status in (401, 403):
        raise UsageError(
            f"--tokenizer: the hub at {shown} refused {repo_id!r} (HTTP {status}): the id may be "
            "wrong, or the model is gated or private (set HF_TOKEN to a token with access)"
        )
    if status == 404:
        raise UsageError(
            f"--tokenizer: the hub at {shown} has no tokenizer.json for {repo_id!r}; "
            f"check the id, or {_HINT}"
        )
    raise UsageError(
        f"--tokenizer: the hub at {shown} answered HTTP {status} for {repo_id!r}; {_HINT}"
    )


def _download(repo_id: str, *, endpoint: str, token: str | None, cache_dir: Path) -> str:
    import huggingface_hub
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    outcome: dict[str, Any] = {}

    def fetch() -> None:
        try:
            outcome["path"] = huggingface_hub.hf_hub_download(
                repo_id,
                "tokenizer.json",
                cache_dir=cache_dir,
                endpoint=endpoint,
                token=token,
                etag_timeout=HUB_TIMEOUT_S,
            )
        except Exception as exc:  # noqa: BLE001 - handed to the waiting thread, reported there
            outcome["error"] = exc

    bars_were_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        # The hub client retries with back-off on its own; a daemon thread with a deadline
        # bounds the whole download, and an abandoned one cannot keep the process alive.
        worker = threading.Thread(target=fetch, name="aiperf-tokenizer-download", daemon=True)
        worker.start()
        worker.join(HUB_DOWNLOAD_TIMEOUT_S)
    finally:
        if not bars_were_disabled:
            enable_progress_bars()
    if worker.is_alive():
        raise UsageError(
            f"--tokenizer: downloading tokenizer.json for {repo_id!r} took longer than "
            f"{HUB_DOWNLOAD_TIMEOUT_S:g} s; {_HINT}"
        )
    if "error" in outcome:
        exc = outcome["error"]
        raise UsageError(
            f"--tokenizer: could not download tokenizer.json for {repo_id!r} ({type(exc).__name__}: {_first_line(exc)})"
        )
    return str(outcome["path"])


def _reason(exc: BaseException) -> str:
    return os_reason(exc) or _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
