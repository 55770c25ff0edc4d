"""The reranking endpoint types: nim-rankings, cohere-rankings, hf-tei-rankings."""

from __future__ import annotations

import pytest
from aiperf import Prompt, UsageError
from aiperf._apis import options, rankings
from aiperf._config import ProfileConfig
from aiperf._endpoints import ParseError, ServerErrorBody
from support.api_transcripts import body, load

TEXT = " ".join(f"w{i}" for i in range(40))


def _config(**plugin_options) -> ProfileConfig:
    return ProfileConfig(model="m", endpoint_type="nim-rankings", random_seed=3, plugin_options=plugin_options)


def _prompt() -> Prompt:
    return Prompt(text=TEXT, input_tokens=40)


class TestPayloads:
    def test_passage_count_follows_mean(self) -> None:
        """--rankings-passages-mean passages, each a different turn of the prompt."""
        query, passages = rankings.query_and_passages(_prompt(), _config(rankings_passages_mean=6))
        assert 6 == len(passages) == len(set(passages))
        assert " ".join(TEXT.split()[: rankings.QUERY_WORDS]) == query

    def test_passage_count_is_seeded(self) -> None:
        """With a stddev the count varies by prompt but is the same for the same seed."""
        config = _config(rankings_passages_mean=10, rankings_passages_stddev=4)
        first = [len(rankings.query_and_passages(Prompt(text=f"{TEXT} {i}", input_tokens=1), config)[1]) for i in range(20)]
        again = [len(rankings.query_and_passages(Prompt(text=f"{TEXT} {i}", input_tokens=1), config)[1]) for i in range(20)]
        assert first == again
        assert len(set(first)) > 1

    def test_each_shape(self) -> None:
        """NIM nests query and passages in objects; Cohere has documents; TEI has texts."""
        config = _config(rankings_passages_mean=2)
        nim = rankings.nim_payload(_prompt(), config)
        assert {"text"} == set(nim["query"]) and 2 == len(nim["passages"]) and "truncate" in nim
        assert 2 == len(rankings.cohere_payload(_prompt(), config)["documents"])
        assert 2 == len(rankings.tei_payload(_prompt(), config)["texts"])

    def test_bad_passage_mean_is_usage_error(self) -> None:
        """A passage count of 0 is one line naming the flag."""
        with pytest.raises(UsageError, match="--rankings-passages-mean"):
            options.from_options({"rankings_passages_mean": 0})


class TestRecorded:
    @pytest.mark.parametrize(
        ("name", "parse", "count"),
        [
            ("nim-ranking-json", rankings.parse_nim, 3),
            ("cohere-rerank-json", rankings.parse_cohere, 3),
            ("tei-rerank-json", rankings.parse_tei, 2),
        ],
    )
    def test_documented_bodies(self, name, parse, count) -> None:
        """Each documented answer counts its scored passages."""
        assert {"ranked_passages": count} == parse(body(load(name))).values


class TestBad:
    def test_missing_scores(self) -> None:
        """An entry without a score is not this API."""
        with pytest.raises(ParseError):
            rankings.parse_nim({"rankings": [{"index": 0}]})

    def test_error_objects(self) -> None:
        """Each API's error shape is the server's error."""
        with pytest.raises(ServerErrorBody):
            rankings.parse_nim({"error": "bad model"})
        with pytest.raises(ServerErrorBody):
            rankings.parse_cohere({"message": "invalid request"})
        with pytest.raises(ServerErrorBody):
            rankings.parse_tei({"error": "Input validation error", "error_type": "Validation"})

    def test_tei_object_body(self) -> None:
        with pytest.raises(ParseError):
            rankings.parse_tei({"scores": []})
