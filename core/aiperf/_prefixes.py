"""Shared prompt prefixes for prefix-cache benchmarks.

``--num-prefix-prompts K --prefix-prompt-length N``: K fixed prefixes of N tokens; each
synthetic prompt starts with one of them (each prefix used equally often, in a seeded random
order), followed by the prompt itself. ``--shared-system-prompt-length N``: one text of N
tokens sent as the system message of every request (for completions, put before the prompt).

Prefixes are made of the same one-token words as synthetic prompts, so under the builtin
tokenizer a prefix is exactly N tokens and a prompt exactly N plus its own length; with
another tokenizer each prompt's length is measured. Distinct prefixes start with distinct
words: no two share even their first token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from aiperf import _workload
from aiperf._types import Prompt, UsageError

if TYPE_CHECKING:
    from aiperf._config import ProfileConfig
    from aiperf._types import Tokenizer

#: between a prefix (or a completions system prompt) and the prompt: a space, which the
#: prompt's first word takes as its own leading space under space-splitting tokenizers.
JOINER = " "

# Random streams of their own (see _datasets._rng).
_STREAM_PREFIX_WORDS = 31
_STREAM_PREFIX_CHOICE = 32
_STREAM_SYSTEM_WORDS = 33


def texts(tokenizer: Tokenizer, count: int, length: int, seed: int | None, stream: int = _STREAM_PREFIX_WORDS) -> list[str]:
    """``count`` texts of ``length`` tokens each, with distinct first words."""
    from aiperf._datasets import WordPool, _rng

    pool = WordPool.for_tokenizer(tokenizer)
    rng = _rng(seed, stream)
    leads = len(pool.leads)
    firsts = rng.permutation(leads)[:count].tolist() if count <= leads else rng.integers(0, leads, size=count).tolist()
    out = []
    for first in firsts:
        words = rng.integers(0, len(pool.words), size=max(0, length - 1)).tolist()
        out.append(pool.leads[first] + "".join(pool.words[w] for w in words))
    return out


def with_prefixes(prompts: Sequence[Prompt], config: ProfileConfig, tokenizer: Tokenizer) -> list[Prompt]:
    """``prompts``, each starting with one of the shared prefixes (``text`` only)."""
    from aiperf._datasets import _rng
    from aiperf._tokenizer import count_many

    work = _workload.of(config)
    prefixes = texts(tokenizer, work.num_prefix_prompts, work.prefix_prompt_length, config.random_seed)
    n = len(prompts)
    order = [i % len(prefixes) for i in range(n)]
    _rng(config.random_seed, _STREAM_PREFIX_CHOICE).shuffle(order)
    joined = [prefixes[k] + JOINER + prompt.text for k, prompt in zip(order, prompts)]
    counts = count_many(tokenizer, joined)
    return [
        attrs.evolve(prompt, text=text, input_tokens=count)
        for prompt, text, count in zip(prompts, joined, counts)
    ]


def system_prompt(config: ProfileConfig, tokenizer: Tokenizer) -> tuple[str, int]:
    """The shared system prompt and its token count."""
    length = _workload.of(config).shared_system_prompt_length
    (text,) = texts(tokenizer, 1, length, config.random_seed, _STREAM_SYSTEM_WORDS)
    return text, tokenizer.count(text)


def apply(prompts: Sequence[Prompt], config: ProfileConfig, tokenizer: Tokenizer) -> list[Prompt]:
    """Single-turn synthetic prompts with their shared prefix or shared system prompt."""
    work = _workload.of(config)
    out = list(prompts)
    if work.prefixes:
        out = with_prefixes(out, config, tokenizer)
    if not work.shared_system_prompt_length:
        return out
    system, tokens = system_prompt(config, tokenizer)
    if config.endpoint_type not in _workload.MESSAGE_TYPES:
        # completions: one text, the system prompt first.
        from aiperf._tokenizer import count_many

        joined = [system + JOINER + p.text for p in out]
        return [
            attrs.evolve(p, text=text, input_tokens=count)
            for p, text, count in zip(out, joined, count_many(tokenizer, joined))
        ]
    if config.endpoint_type != "chat" and any(p.images or p.audio for p in out):
        raise UsageError("--shared-system-prompt-length: with images or audio, only the chat endpoint")
    from aiperf._conversations import _user_messages

    return [
        attrs.evolve(
            p,
            messages=({"role": "system", "content": system}, *_user_messages(p)),
            input_tokens=p.input_tokens + tokens,
        )
        for p in out
    ]
