"""The ``huggingface-generate`` endpoint type (TGI's native API)."""

from __future__ import annotations

import pytest
from aiperf import Prompt
from aiperf._apis import tgi
from aiperf._config import ProfileConfig
from aiperf._endpoints import ParseError, ServerErrorBody
from aiperf._http import request_url
from aiperf._metrics import count_tokens
from aiperf._tokenizer import builtin_tokenizer
from aiperf._types import Phase, RequestRecord
from support.api_transcripts import body, event_data, feed, load


def _config(**kwargs) -> ProfileConfig:
    return ProfileConfig(model="m", endpoint_type="huggingface-generate", url="http://h:80", **kwargs)


class TestRequest:
    def test_streaming_goes_to_generate_stream(self) -> None:
        """--streaming switches the path to /generate_stream; otherwise /generate."""
        assert "http://h:80/generate_stream" == request_url(_config(streaming=True), tgi.GENERATE)
        assert "http://h:80/generate" == request_url(_config(), tgi.GENERATE)

    def test_explicit_endpoint_wins(self) -> None:
        """--endpoint overrides both paths."""
        assert "http://h:80/x" == request_url(_config(streaming=True, endpoint="/x"), tgi.GENERATE)

    def test_payload(self) -> None:
        """inputs plus parameters.max_new_tokens, details asked for the token count."""
        payload = tgi.payload(Prompt(text="hi", input_tokens=1, max_tokens=8), _config())
        assert {"inputs": "hi", "parameters": {"details": True, "max_new_tokens": 8}} == payload


class TestRecorded:
    def test_stream_special_token_not_text(self) -> None:
        """Four text tokens; the end-of-sequence token is special; generated_tokens is usage."""
        text, _, results = feed(tgi.parse_chunk, event_data(load("tgi-generate-stream")))
        assert "The quick brown fox" == text
        assert 4 == sum(1 for r in results if r.text)
        assert 5 == results[-1].usage.completion_tokens
        assert "eos_token" == results[-1].finish_reason
        assert all(r.finish_reason is None for r in results[:-1])

    def test_body(self) -> None:
        """The whole body: text, generated_tokens, finish reason."""
        data = tgi.parse_response(body(load("tgi-generate-json")))
        assert ("The quick brown fox", 4, "length") == (data.text, data.usage.completion_tokens, data.finish_reason)


class TestBad:
    def test_error_event(self) -> None:
        """TGI's error object mid-stream is the server's error."""
        with pytest.raises(ServerErrorBody):
            tgi.parse_chunk({"error": "Input validation error", "error_type": "validation"})

    def test_event_without_token(self) -> None:
        """An event without a token is not this API."""
        with pytest.raises(ParseError):
            tgi.parse_chunk({"generated_text": None})

    def test_body_without_generated_text(self) -> None:
        with pytest.raises(ParseError):
            tgi.parse_response({"details": {}})


class TestNoDetails:
    """An answer without ``details`` (a request without ``parameters.details``, or a server
    that leaves it out) has no usage: the tokenizer counts it, and nothing breaks."""

    def test_body_without_details(self) -> None:
        data = tgi.parse_response({"generated_text": " the of and to"})
        assert (" the of and to", None, "stop") == (data.text, data.usage, data.finish_reason)

    def test_body_with_null_details(self) -> None:
        data = tgi.parse_response([{"generated_text": "hi", "details": None}])
        assert ("hi", None) == (data.text, data.usage)

    def test_last_stream_event_without_details_still_ends(self) -> None:
        """The last event has generated_text and details null: the answer ends, no usage."""
        data = tgi.parse_chunk({"index": 3, "token": {"id": 3, "text": " to", "special": False}, "generated_text": "x", "details": None})
        assert (" to", None, "stop") == (data.text, data.usage, data.finish_reason)

    def test_counted_by_the_tokenizer(self) -> None:
        """With --use-server-token-count and no usage, the request's tokens are the tokenizer's."""
        data = tgi.parse_response({"generated_text": " the of and to"})
        record = RequestRecord(index=0, phase=Phase.PROFILE, output_text=data.text, usage=data.usage, input_tokens=3)
        counts = count_tokens(record, builtin_tokenizer(), use_server=True)
        assert ("client", None, 4) == (counts.source, counts.server, counts.client_output)
