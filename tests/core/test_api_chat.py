"""The ``chat`` endpoint type's parser: reasoning text under either field name, and the
usage's reasoning tokens."""

from __future__ import annotations

import pytest
from aiperf._endpoints import ParseError, parse_chat_chunk


def _chunk(delta: dict, **extra) -> dict:
    return {"object": "chat.completion.chunk", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": None}], **extra}


class TestReasoningText:
    def test_reasoning_content_is_reasoning(self) -> None:
        """DeepSeek's and vLLM's older field: reasoning, not answer text."""
        data = parse_chat_chunk(_chunk({"reasoning_content": "Let me think", "content": None}))
        assert ("", "Let me think") == (data.text, data.reasoning)

    def test_reasoning_field_is_reasoning(self) -> None:
        """vLLM's newer field (and OpenRouter's, Ollama's): ``delta.reasoning``."""
        data = parse_chat_chunk(_chunk({"reasoning": "Step one"}))
        assert ("", "Step one") == (data.text, data.reasoning)

    def test_reasoning_field_beside_null_reasoning_content(self) -> None:
        """A server that serialises both, one of them null: the other is read."""
        data = parse_chat_chunk(_chunk({"reasoning_content": None, "reasoning": "Step two", "content": None}))
        assert "Step two" == data.reasoning

    def test_answer_and_reasoning_apart(self) -> None:
        """Answer text stays the answer when reasoning rides along."""
        data = parse_chat_chunk(_chunk({"reasoning": "hmm", "content": "Yes"}))
        assert ("Yes", "hmm") == (data.text, data.reasoning)

    def test_whole_message_reasoning(self) -> None:
        """A non-streamed body: ``message.reasoning`` is reasoning too."""
        body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Yes", "reasoning": "hmm"}, "finish_reason": "stop"}]}
        data = parse_chat_chunk(body)
        assert ("Yes", "hmm", "stop") == (data.text, data.reasoning, data.finish_reason)

    def test_reasoning_not_a_string(self) -> None:
        """A reasoning value that is not text is not this API's shape."""
        with pytest.raises(ParseError):
            parse_chat_chunk(_chunk({"reasoning": {"text": "x"}}))


class TestUsage:
    def test_reasoning_tokens_kept(self) -> None:
        """``completion_tokens_details.reasoning_tokens`` (OpenAI's shape) is kept."""
        usage = {"prompt_tokens": 9, "completion_tokens": 20, "total_tokens": 29,
                 "completion_tokens_details": {"reasoning_tokens": 12, "accepted_prediction_tokens": 0}}  # fmt: skip
        data = parse_chat_chunk({"choices": [], "usage": usage})
        assert (9, 20, 12) == (data.usage.prompt_tokens, data.usage.completion_tokens, data.usage.reasoning_tokens)

    @pytest.mark.parametrize("details", [None, {}, "n/a"])
    def test_no_details_no_reasoning_tokens(self, details) -> None:
        """Details absent, empty or not an object: no reasoning count, the rest kept."""
        data = parse_chat_chunk({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2, "completion_tokens_details": details}})
        assert (1, 2, None) == (data.usage.prompt_tokens, data.usage.completion_tokens, data.usage.reasoning_tokens)
