"""The ``template`` endpoint type: a user's payload template and text path."""

from __future__ import annotations

import json

import pytest
from aiperf import Prompt, UsageError
from aiperf._apis import template
from aiperf._config import ProfileConfig
from aiperf._endpoints import ParseError, ServerErrorBody, bound


def _bound(tmp_path, body: str, path: str = "output.text"):
    file = tmp_path / "t.json"
    file.write_text(body)
    config = ProfileConfig(
        model="m", endpoint_type="template",
        plugin_options={"payload_template": str(file), "response_text_path": path},
    )  # fmt: skip
    return bound(template.TEMPLATE, config), config


class TestPayload:
    def test_placeholders_filled_with_their_types(self, tmp_path) -> None:
        """Exact placeholders take the value's type; inside strings they are text."""
        endpoint, config = _bound(tmp_path, json.dumps(
            {"m": "{model}", "in": {"text": "Q: {prompt}"}, "p": ["{prompt}"], "n": "{max_tokens}", "k": 1}
        ))  # fmt: skip
        payload = endpoint.build_payload(Prompt(text="hi", input_tokens=1, max_tokens=5), config)
        assert {"m": "m", "in": {"text": "Q: hi"}, "p": ["hi"], "n": 5, "k": 1} == payload

    @pytest.mark.parametrize(
        ("body", "match"),
        [("{not json", "not JSON"), ("[1]", "JSON object"), ('{"a": "b"}', "no {prompt}")],
    )
    def test_bad_template_is_usage_error(self, tmp_path, body, match) -> None:
        """A template that cannot work is one line at start-up."""
        with pytest.raises(UsageError, match=match):
            _bound(tmp_path, body)

    def test_missing_flags_is_usage_error(self) -> None:
        with pytest.raises(UsageError, match="--payload-template"):
            bound(template.TEMPLATE, ProfileConfig(model="m", endpoint_type="template"))


class TestPath:
    @pytest.mark.parametrize(
        "text", ["choices.0.delta.content", "choices[0].delta.content", "$.choices[0].delta.content"]
    )
    def test_spellings(self, text) -> None:
        """Dots, brackets and a leading $ all read the same path."""
        assert ("choices", 0, "delta", "content") == template.parse_path(text)

    def test_text_found_or_absent(self, tmp_path) -> None:
        """An event without the path carries no text; a non-string there is a parse error."""
        endpoint, _ = _bound(tmp_path, '{"q": "{prompt}"}', "choices.0.text")
        assert "hi" == endpoint.parse_chunk({"choices": [{"text": "hi"}]}).text
        assert "" == endpoint.parse_chunk({"choices": []}).text
        with pytest.raises(ParseError):
            endpoint.parse_chunk({"choices": [{"text": 3}]})
        with pytest.raises(ServerErrorBody):
            endpoint.parse_response({"error": "boom"})
