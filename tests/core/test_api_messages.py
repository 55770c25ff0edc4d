"""The ``messages`` endpoint type: headers, payloads, recorded streams and bodies, bad streams."""

from __future__ import annotations

import pytest
from aiperf import Prompt
from aiperf._apis import messages
from aiperf._config import ProfileConfig
from aiperf._endpoints import IGNORED, EventOrderError, ParseError, ServerErrorBody
from aiperf._http import request_headers
from support.api_transcripts import body, event_data, feed, load


def _config(**kwargs) -> ProfileConfig:
    return ProfileConfig(model="m", endpoint_type="messages", **kwargs)


def _started():
    parse = messages.new_stream_parser()
    parse({"type": "message_start", "message": {"usage": {"input_tokens": 3}}})
    return parse


class TestRequest:
    def test_key_goes_in_x_api_key_not_bearer(self) -> None:
        """--api-key becomes x-api-key with an anthropic-version; no Authorization header."""
        headers = request_headers(_config(api_key="sk-test"), messages.MESSAGES)
        assert "sk-test" == headers["x-api-key"]
        assert messages.API_VERSION == headers["anthropic-version"]
        assert "Authorization" not in headers

    def test_user_header_overrides_version(self) -> None:
        """-H anthropic-version:... wins over the default."""
        config = _config(headers=(("anthropic-version", "2024-01-01"),))
        assert "2024-01-01" == request_headers(config, messages.MESSAGES)["anthropic-version"]

    def test_payload_always_has_max_tokens(self) -> None:
        """The API requires max_tokens: the default stands in when the run sets none."""
        payload = messages.payload(Prompt(text="hi", input_tokens=1), _config(streaming=True))
        assert messages.DEFAULT_MAX_TOKENS == payload["max_tokens"]
        assert [{"role": "user", "content": "hi"}] == payload["messages"]
        assert payload["stream"] is True

    def test_image_becomes_base64_source_block(self) -> None:
        """A data URL becomes an image block with a base64 source."""
        prompt = Prompt(text="hi", input_tokens=1, max_tokens=4, images=("data:image/png;base64,AAA",))
        content = messages.payload(prompt, _config())["messages"][0]["content"]
        assert {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}} == content[1]


class TestRecorded:
    def test_thinking_stream_counted_apart(self) -> None:
        """Thinking deltas are reasoning, text deltas the answer; usage joins start and delta."""
        text, reasoning, results = feed(messages.new_stream_parser(), event_data(load("anthropic-messages-stream-thinking")))
        assert "The quick brown fox" == text
        assert "Let me think about foxes." == reasoning
        usage = next(r.usage for r in results if r.usage is not None)
        assert (25, 15) == (usage.prompt_tokens, usage.completion_tokens)
        assert "end_turn" == results[-1].finish_reason
        assert "claude-sonnet-4-20250514" == results[0].model

    def test_body(self) -> None:
        """A whole message: the text blocks and the usage."""
        data = messages.parse_response(body(load("anthropic-messages-json")))
        assert ("The quick brown fox", 2095, 503) == (data.text, data.usage.prompt_tokens, data.usage.completion_tokens)


class TestBadStreams:
    def test_delta_before_message_start(self) -> None:
        """A delta before message_start is out of order."""
        with pytest.raises(EventOrderError):
            messages.new_stream_parser()({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "x"}})

    def test_event_after_stop(self) -> None:
        """Nothing may follow message_stop."""
        parse = _started()
        parse({"type": "message_stop"})
        with pytest.raises(EventOrderError):
            parse({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "x"}})

    def test_stop_without_message_delta_still_ends(self) -> None:
        """Missing usage (no message_delta): the answer ends, the tokenizer counts."""
        data = _started()({"type": "message_stop"})
        assert data.usage is None
        assert "stop" == data.finish_reason

    def test_unknown_event_and_delta_ignored(self) -> None:
        """Unknown event and delta types are skipped, not errors."""
        parse = _started()
        assert parse({"type": "message_future"}) is IGNORED
        assert parse({"type": "content_block_delta", "delta": {"type": "hologram_delta"}}) is IGNORED

    def test_error_event(self) -> None:
        """An error event mid-stream is the server's error."""
        with pytest.raises(ServerErrorBody):
            _started()({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})

    def test_error_body(self) -> None:
        """An error object as the whole body."""
        with pytest.raises(ServerErrorBody):
            messages.parse_response({"type": "error", "error": {"type": "invalid_request_error"}})

    def test_delta_not_object(self) -> None:
        """A delta that is not an object is a parse error."""
        with pytest.raises(ParseError):
            _started()({"type": "content_block_delta", "delta": "x"})


class TestLabels:
    def test_provider_implied_after_flag_and_host(self) -> None:
        """gen_ai.provider.name: the flag, then the host, then what the API shape implies."""
        from aiperf import infer_provider

        assert "anthropic" == infer_provider("http://127.0.0.1:8000", None, messages.MESSAGES.provider)
        assert "aws.bedrock" == infer_provider("https://bedrock-runtime.us-east-1.amazonaws.com", None, "anthropic")
        assert "mine" == infer_provider("http://127.0.0.1:8000", "mine", "anthropic")
        assert "chat" == messages.MESSAGES.operation_name
