"""The ``nim-embeddings`` endpoint type."""

from __future__ import annotations

import pytest
from aiperf import Prompt
from aiperf._apis import nim_embeddings
from aiperf._config import ProfileConfig
from aiperf._endpoints import ParseError, ServerErrorBody
from support.api_transcripts import body, load


def test_payload_has_input_type_and_truncate() -> None:
    """NIM's fields ride along; --extra-inputs may change input_type."""
    config = ProfileConfig(model="m", extra_inputs={"input_type": "passage"})
    payload = nim_embeddings.payload(Prompt(text="hi", input_tokens=1), config)
    assert {"model": "m", "input": ["hi"], "input_type": "passage", "truncate": "END", "encoding_format": "float"} == payload


def test_documented_body() -> None:
    """NIM's documented answer parses, with its usage and model."""
    data = nim_embeddings.NIM_EMBEDDINGS.parse_response(body(load("nim-embeddings-json")))
    assert (7, "nvidia/nv-embedqa-e5-v5") == (data.usage.prompt_tokens, data.model)


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        ({"error": {"message": "Input length 600 exceeds maximum allowed token size 512", "code": 400}}, "exceeds maximum"),
        ({"object": "error", "message": "Input length 600 exceeds maximum allowed token size 512", "type": "BadRequestError", "code": 400}, "exceeds maximum"),
        ({"detail": "Input length 600 exceeds maximum allowed token size 512"}, "exceeds maximum"),
        ({"detail": [{"loc": ["body", "input_type"], "msg": "field required", "type": "value_error.missing"}]}, "field required"),
    ],
    ids=["openai-error", "object-error", "detail-text", "detail-validation"],
)
def test_error_body_is_the_servers_error(body, shown) -> None:
    """An error object in place of the answer is server_error_body, with its message shown."""
    with pytest.raises(ServerErrorBody, match=shown) as excinfo:
        nim_embeddings.NIM_EMBEDDINGS.parse_response(body)
    assert "server_error_body" == excinfo.value.error_type


@pytest.mark.parametrize("body", [{"object": "list"}, [], "x", {"data": "not a list"}])
def test_neither_answer_nor_error_is_a_parse_error(body) -> None:
    """A body that is neither an answer nor an error object is parse_error."""
    with pytest.raises(ParseError) as excinfo:
        nim_embeddings.NIM_EMBEDDINGS.parse_response(body)
    assert "parse_error" == excinfo.value.error_type
