"""``nim-embeddings``: NVIDIA NIM's embeddings shape (``POST /v1/embeddings``).

OpenAI's embeddings request plus ``input_type`` (``query`` by default; ``passage`` through
``--extra-inputs input_type:passage``) and ``truncate``; the answer is OpenAI's shape. An error
inside a 200 may come in OpenAI's shape (``{"error": ...}``), the OpenAI-compatible servers'
``{"object": "error", "message": ...}``, or FastAPI's ``{"detail": ...}``: each is the
server's error (``server_error_body``), not a parse error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiperf._apis._common import finish
from aiperf._endpoints import ServerErrorBody, parse_embeddings
from aiperf._types import EndpointType, ResponseData

if TYPE_CHECKING:
    from aiperf._config import ProfileConfig
    from aiperf._types import Prompt


def payload(prompt: Prompt, config: ProfileConfig) -> dict[str, Any]:
    body = {
        "model": config.model,
        "input": [prompt.text],
        "input_type": "query",
        "truncate": "END",
        "encoding_format": "float",
    }
    return finish(body, prompt, config)


def parse_response(data: Any) -> ResponseData:
    if isinstance(data, dict) and "data" not in data:
        if data.get("object") == "error":
            raise ServerErrorBody(f"the server sent an error object: {str(data.get('message', data))[:200]}")
        if data.get("detail") is not None:
            raise ServerErrorBody(f"the server sent an error object: {str(data['detail'])[:200]}")
    return parse_embeddings(data)


NIM_EMBEDDINGS = EndpointType(
    name="nim-embeddings",
    operation_name="embeddings",
    default_path="/v1/embeddings",
    build_payload=payload,
    parse_response=parse_response,
    parse_chunk=parse_response,
    supports_streaming=False,
    produces_tokens=False,
)
