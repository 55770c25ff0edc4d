"""Rerankers: ``nim-rankings`` (NVIDIA NIM, ``/v1/ranking``), ``cohere-rankings`` (Cohere's
``/v1/rerank``) and ``hf-tei-rankings`` (text-embeddings-inference, ``/rerank``).

Each request carries a query and N passages (``--rankings-passages-mean``/``-stddev``, drawn
once per prompt, seeded). The query is the prompt's first words; each passage is the prompt's
text turned by a different number of words, so passages differ and their length follows the
input length settings. The answer's scored passages are ``ranked_passages``.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiperf._apis import options
from aiperf._apis._common import expect_object, finish, raise_error_object
from aiperf._endpoints import ParseError
from aiperf._types import EndpointType, ResponseData

if TYPE_CHECKING:
    from aiperf._config import ProfileConfig
    from aiperf._types import Prompt

#: words of the prompt that make the query.
QUERY_WORDS = 8


def query_and_passages(prompt: Prompt, config: ProfileConfig) -> tuple[str, list[str]]:
    opts = options.of(config)
    seed = f"{config.random_seed}:{zlib.crc32(prompt.text.encode())}"
    rng = random.Random(seed)
    n = round(rng.gauss(opts.rankings_passages_mean, opts.rankings_passages_stddev)) if opts.rankings_passages_stddev else opts.rankings_passages_mean
    n = min(max(n, 1), options.MAX_PASSAGES)
    words = prompt.text.split() or [prompt.text]
    query = " ".join(words[:QUERY_WORDS])
    passages = []
    for i in range(n):
        turn = (i * 7) % len(words)
        passages.append(" ".join(words[turn:] + words[:turn]))
    return query, passages


def nim_payload(prompt: Prompt, config: ProfileConfig) -> dict[str, Any]:
    query, passages = query_and_passages(prompt, config)
    body = {
        "model": config.model,
        "query": {"text": query},
        "passages": [{"text": p} for p in passages],
        "truncate": "END",
    }
    return finish(body, prompt, config)


def cohere_payload(prompt: Prompt, config: ProfileConfig) -> dict[str, Any]:
    query, passages = query_and_passages(prompt, config)
    return finish({"model": config.model, "query": query, "documents": passages}, prompt, config)


def tei_payload(prompt: Prompt, config: ProfileConfig) -> dict[str, Any]:
    query, passages = query_and_passages(prompt, config)
    return finish({"query": query, "texts": passages, "truncate": True}, prompt, config)


def _scored(items: Any, field: str, score: str) -> ResponseData:
    if not isinstance(items, list):
        raise ParseError(f"expected a '{field}' list")
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("index"), int):
            raise ParseError(f"'{field}' holds an entry without an integer 'index'")
        value = item.get(score)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParseError(f"'{field}' holds an entry without a numeric '{score}'")
    return ResponseData(values={"ranked_passages": float(len(items))}, finish_reason="stop")


def parse_nim(data: Any) -> ResponseData:
    data = expect_object(data)
    raise_error_object(data, "rankings")
    return _scored(data.get("rankings"), "rankings", "logit")


def parse_cohere(data: Any) -> ResponseData:
    data = expect_object(data)
    raise_error_object(data, "results")
    if data.get("message") is not None and "results" not in data:
        raise_error_object({"error": data["message"]})
    return _scored(data.get("results"), "results", "relevance_score")


def parse_tei(data: Any) -> ResponseData:
    if isinstance(data, dict):
        raise_error_object(data)
        raise ParseError("expected a list of {index, score}")
    return _scored(data, "(body)", "score")


def _ranking(name: str, path: str, build: Callable[..., dict[str, Any]], parse: Callable[[Any], ResponseData], provider: str | None) -> EndpointType:
    return EndpointType(
        name=name,
        operation_name="rerank",
        default_path=path,
        build_payload=build,
        parse_response=parse,
        parse_chunk=parse,
        supports_streaming=False,
        produces_tokens=False,
        provider=provider,
    )


NIM = _ranking("nim-rankings", "/v1/ranking", nim_payload, parse_nim, None)
COHERE = _ranking("cohere-rankings", "/v1/rerank", cohere_payload, parse_cohere, "cohere")
TEI = _ranking("hf-tei-rankings", "/rerank", tei_payload, parse_tei, None)
