"""The ``responses`` endpoint type: payloads, recorded streams and bodies, bad streams."""

from __future__ import annotations

import pytest
from aiperf import Prompt
from aiperf._apis import responses
from aiperf._config import ProfileConfig
from aiperf._endpoints import IGNORED, EventOrderError, ParseError, ServerErrorBody
from support.api_transcripts import body, event_data, feed, load


def _config(**kwargs) -> ProfileConfig:
    return ProfileConfig(model="m", endpoint_type="responses", **kwargs)


class TestPayload:
    def test_payload_text_input_and_max_output_tokens(self) -> None:
        """Plain text goes as ``input``; the output limit is ``max_output_tokens``."""
        payload = responses.payload(Prompt(text="hi", input_tokens=1, max_tokens=8), _config(streaming=True))
        assert {"model": "m", "input": "hi", "max_output_tokens": 8, "stream": True} == payload

    def test_payload_images_become_input_image_parts(self) -> None:
        """Images ride in one user message as input_image parts after the text."""
        prompt = Prompt(text="hi", input_tokens=1, images=("data:image/png;base64,AAA",))
        payload = responses.payload(prompt, _config())
        assert [
            {"role": "user", "content": [
                {"type": "input_text", "text": "hi"},
                {"type": "input_image", "image_url": "data:image/png;base64,AAA"},
            ]}
        ] == payload["input"]  # fmt: skip


class TestRecorded:
    def test_stream_transcript_text_and_usage(self) -> None:
        """The documented stream: four text deltas, usage from response.completed."""
        text, reasoning, results = feed(responses.new_stream_parser(), event_data(load("openai-responses-stream")))
        assert "The quick brown fox" == text
        assert "" == reasoning
        assert 4 == sum(1 for r in results if r.text)
        last = results[-1]
        assert "completed" == last.finish_reason
        assert (37, 4, 0) == (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.reasoning_tokens)
        assert "gpt-4.1-2025-04-14" == results[0].model

    def test_body_transcript_reasoning_apart(self) -> None:
        """A reasoning model's body: summary text is reasoning, the message is the answer."""
        data = responses.parse_response(body(load("openai-responses-json")))
        assert "The quick brown fox" == data.text
        assert "Thinking about foxes." == data.reasoning
        assert 832 == data.usage.reasoning_tokens


class TestBadStreams:
    def test_delta_before_created_is_event_order_error(self) -> None:
        """A text delta before response.created: event_order, not a crash."""
        parse = responses.new_stream_parser()
        with pytest.raises(EventOrderError):
            parse({"type": "response.output_text.delta", "delta": "x"})

    def test_delta_after_completed_is_event_order_error(self) -> None:
        """A delta after response.completed is out of order."""
        parse = responses.new_stream_parser()
        parse({"type": "response.created", "response": {}})
        parse({"type": "response.completed", "response": {}})
        with pytest.raises(EventOrderError):
            parse({"type": "response.output_text.delta", "delta": "x"})

    def test_unknown_event_is_ignored(self) -> None:
        """A newer event type is skipped (and counted by the client), not an error."""
        parse = responses.new_stream_parser()
        parse({"type": "response.created", "response": {}})
        assert parse({"type": "response.web_search_call.searching"}) is IGNORED

    def test_completed_without_usage_has_no_usage(self) -> None:
        """Missing usage: the answer still ends; token counts fall back to the tokenizer."""
        parse = responses.new_stream_parser()
        parse({"type": "response.created", "response": {}})
        data = parse({"type": "response.completed", "response": {"status": "completed"}})
        assert data.usage is None
        assert "completed" == data.finish_reason

    def test_failed_is_server_error(self) -> None:
        """response.failed is the server's error."""
        parse = responses.new_stream_parser()
        with pytest.raises(ServerErrorBody):
            parse({"type": "response.failed", "response": {"error": {"message": "overloaded"}}})

    def test_event_without_type_is_parse_error(self) -> None:
        """An event with no type is not this API."""
        with pytest.raises(ParseError):
            responses.new_stream_parser()({"delta": "x"})
