"""The per-event shortcuts give what the general code gives: JSON decoding, ResponseData
construction and the chat and completion chunk parsers."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from aiperf._endpoints import ParseError, ServerErrorBody, parse_chat_chunk, parse_completion_chunk
from aiperf._http import _decode
from aiperf._types import ResponseData, Usage, response_data
from hypothesis import given, settings
from hypothesis import strategies as st


class TestDecode:
    @pytest.mark.parametrize(
        "text",
        ['{"a":1}', ' {"a": 1}', '{"a": 1} ', "\t[1, 2]\r", '"x"', "3", "null", '{"a":"é\\u00e9"}'],
    )
    def test_same_value_as_the_standard_decoder(self, text: str) -> None:
        assert _decode(text) == json.loads(text)

    @pytest.mark.parametrize("text", ["", " ", '{"a":1} x', '{"a":1}{"b":2}', "{", "[1,]", "'a'"])
    def test_invalid_json_raises_the_standard_error(self, text: str) -> None:
        with pytest.raises(json.JSONDecodeError):
            _decode(text)

    @pytest.mark.parametrize("text", ["NaN", '{"n": Infinity}', "[-Infinity]"])
    def test_non_json_constants_are_refused(self, text: str) -> None:
        with pytest.raises(ValueError, match="not valid JSON"):
            _decode(text)

    @settings(max_examples=200, deadline=None)
    @given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(), lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=10), st.sampled_from(["", " ", "\n"]))
    def test_any_document(self, value: Any, pad: str) -> None:
        text = json.dumps(value) + pad
        assert _decode(text) == value


class TestResponseData:
    def test_fills_every_field(self) -> None:
        # A field added to ResponseData must be added to response_data too.
        names = [field.name for field in attrs.fields(ResponseData)]
        assert names == ["text", "reasoning", "usage", "model", "finish_reason", "values"]

    def test_equal_to_the_constructor(self) -> None:
        usage = Usage(prompt_tokens=3, completion_tokens=4)
        fast = response_data("hi", "think", usage, "m", "stop")
        assert fast == ResponseData(text="hi", reasoning="think", usage=usage, model="m", finish_reason="stop")
        assert hash(fast) == hash(ResponseData(text="hi", reasoning="think", usage=usage, model="m", finish_reason="stop"))
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            fast.text = "other"  # type: ignore[misc]


def _chunk(delta: Any = None, **top: Any) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta if delta is not None else {}, "finish_reason": top.pop("finish", None)}
    return {"id": "c", "model": "m", "choices": [choice], **top}


class TestChatChunk:
    def test_token(self) -> None:
        assert parse_chat_chunk(_chunk({"content": " the"})) == ResponseData(text=" the", model="m")

    def test_final_chunk_with_usage(self) -> None:
        data = parse_chat_chunk(_chunk({}, finish="length", usage={"prompt_tokens": 5, "completion_tokens": 2}))
        assert data == ResponseData(model="m", finish_reason="length", usage=Usage(prompt_tokens=5, completion_tokens=2))

    def test_usage_only_chunk_and_null_usage(self) -> None:
        assert parse_chat_chunk({"model": "m", "choices": [], "usage": {"completion_tokens": 7}}).usage == Usage(completion_tokens=7)
        assert parse_chat_chunk(_chunk({"content": "a"}, usage=None)).usage is None

    def test_model_that_is_not_a_string_is_dropped(self) -> None:
        assert parse_chat_chunk({"model": 3, "choices": [{"delta": {"content": "a"}}]}) == ResponseData(text="a")

    @pytest.mark.parametrize(
        "body",
        [[1], {"choices": "x"}, {"choices": [1]}, {"choices": [{"delta": "x"}]}, {"choices": [{"delta": {"content": 5}}]}],
    )
    def test_bad_shapes_are_parse_errors(self, body: Any) -> None:
        with pytest.raises(ParseError):
            parse_chat_chunk(body)

    def test_error_object(self) -> None:
        with pytest.raises(ServerErrorBody):
            parse_chat_chunk({"error": {"message": "overloaded"}})


class TestCompletionChunk:
    def test_token_and_end(self) -> None:
        assert parse_completion_chunk({"model": "m", "choices": [{"text": "x"}]}) == ResponseData(text="x", model="m")
        end = parse_completion_chunk({"choices": [{"text": "", "finish_reason": "stop"}], "usage": {"prompt_tokens": 1}})
        assert end == ResponseData(finish_reason="stop", usage=Usage(prompt_tokens=1))

    def test_text_that_is_not_a_string(self) -> None:
        with pytest.raises(ParseError):
            parse_completion_chunk({"choices": [{"text": 1}]})
