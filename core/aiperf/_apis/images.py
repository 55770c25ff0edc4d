"""``image-generation``: OpenAI's image generation API (``POST /v1/images/generations``).

One request asks for one image (``n`` and ``size`` through ``--extra-inputs``) as base64
(``b64_json``); the answer's ``data`` list is counted: ``num_images``, their decoded size
``output_image_bytes`` (from the base64 length, without decoding), and per request
``image_throughput`` and ``image_latency``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiperf._apis._common import expect_object, finish, raise_error_object
from aiperf._endpoints import ParseError
from aiperf._types import EndpointType, ResponseData, Usage

if TYPE_CHECKING:
    from aiperf._config import ProfileConfig
    from aiperf._types import Prompt


def payload(prompt: Prompt, config: ProfileConfig) -> dict[str, Any]:
    body = {"model": config.model, "prompt": prompt.text, "n": 1, "response_format": "b64_json"}
    return finish(body, prompt, config)


def _decoded_size(b64: str) -> int:
    return len(b64) * 3 // 4 - b64[-2:].count("=")


def parse_response(data: Any) -> ResponseData:
    data = expect_object(data)
    raise_error_object(data, "data")
    items = data.get("data")
    if not isinstance(items, list):
        raise ParseError("expected an answer with a 'data' list")
    size = 0
    for item in items:
        if not isinstance(item, dict):
            raise ParseError("'data' holds something that is not an object")
        b64 = item.get("b64_json")
        if isinstance(b64, str):
            size += _decoded_size(b64.strip())
        elif not isinstance(item.get("url"), str):
            raise ParseError("an image with neither 'b64_json' nor 'url'")
    values = {"num_images": float(len(items))}
    if size:
        values["output_image_bytes"] = float(size)
    usage = data.get("usage")
    return ResponseData(
        values=values,
        usage=Usage(prompt_tokens=usage.get("input_tokens")) if isinstance(usage, dict) else None,
        finish_reason="stop",
    )


IMAGE_GENERATION = EndpointType(
    name="image-generation",
    operation_name="generate_content",
    default_path="/v1/images/generations",
    build_payload=payload,
    parse_response=parse_response,
    parse_chunk=parse_response,
    supports_streaming=False,
    produces_tokens=False,
)
