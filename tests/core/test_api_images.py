"""The ``image-generation`` endpoint type."""

from __future__ import annotations

import base64

import pytest
from aiperf import Prompt
from aiperf._apis import images
from aiperf._config import ProfileConfig
from aiperf._endpoints import ParseError, ServerErrorBody
from support.api_transcripts import body, load


def test_payload_asks_for_base64() -> None:
    """The prompt, one image, as b64_json."""
    payload = images.payload(Prompt(text="a cat", input_tokens=2), ProfileConfig(model="m"))
    assert {"model": "m", "prompt": "a cat", "n": 1, "response_format": "b64_json"} == payload


def test_documented_body_counts_images_and_bytes() -> None:
    """The documented answer: one image whose decoded size is counted without decoding."""
    data = body(load("openai-images-json"))
    raw = base64.b64decode(data["data"][0]["b64_json"])
    parsed = images.parse_response(data)
    assert {"num_images": 1.0, "output_image_bytes": float(len(raw))} == parsed.values
    assert 50 == parsed.usage.prompt_tokens


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_decoded_size_matches_for_every_padding(n: int) -> None:
    """Padding of 0, 1 or 2 '=' is subtracted right."""
    blob = bytes(range(n))
    assert n == images._decoded_size(base64.b64encode(blob).decode())


def test_bad_bodies() -> None:
    """An image with neither form, or no data list, is a parse error; an error object is the server's."""
    with pytest.raises(ParseError):
        images.parse_response({"data": [{"revised_prompt": "x"}]})
    with pytest.raises(ParseError):
        images.parse_response({"created": 1})
    with pytest.raises(ServerErrorBody):
        images.parse_response({"error": {"message": "content policy"}})
