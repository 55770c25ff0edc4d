"""``huggingface-generate``: text-generation-inference's native API.

``POST /generate`` answers ``{"generated_text": ..., "details": {...}}``; with ``--streaming``
the request goes to ``/generate_stream``, whose events carry one ``token`` each (a special
token, such as the end of sequence, carries no text aiperf counts) and whose last event adds
``generated_text`` and ``details.finish_reason``. The output tokens are
``details.generated_tokens`` (ask for details with ``parameters.details``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiperf._apis._common import expect_object, finish, text_field
from aiperf._endpoints import ParseError, ServerErrorBody
from aiperf._types import EndpointType, ResponseData, Usage

if TYPE_CHECKING:
    from aiperf._config import ProfileConfig
    from aiperf._types import Prompt


def payload(prompt: Prompt, config: ProfileConfig) -> dict[str, Any]:
    parameters: dict[str, Any] = {"details": True}
    if prompt.max_tokens is not None:
        parameters["max_new_tokens"] = prompt.max_tokens
    return finish({"inputs": prompt.text, "parameters": parameters}, prompt, config)


def _error(data: dict[str, Any]) -> None:
    # TGI's errors are {"error": "...", "error_type": "..."}, as a body or as a stream event.
    if data.get("error") is not None:
        raise ServerErrorBody(f"the server sent an error object: {str(data['error'])[:200]}")


def _details(data: dict[str, Any]) -> tuple[Usage | None, str | None]:
    details = data.get("details")
    if not isinstance(details, dict):
        return None, None
    generated = details.get("generated_tokens")
    usage = Usage(completion_tokens=generated) if generated is not None else None
    reason = details.get("finish_reason")
    return usage, str(reason) if reason else None


def parse_response(data: Any) -> ResponseData:
    """``/generate``'s body (an object; a list of them for a batch, of which the first counts)."""
    if isinstance(data, list) and data:
        data = data[0]
    data = expect_object(data)
    _error(data)
    if "generated_text" not in data:
        raise ParseError("expected an object with 'generated_text'")
    usage, reason = _details(data)
    return ResponseData(text=text_field(data, "generated_text"), usage=usage, finish_reason=reason or "stop")


def parse_chunk(data: Any) -> ResponseData:
    """One ``/generate_stream`` event."""
    data = expect_object(data)
    _error(data)
    token = data.get("token")
    if not isinstance(token, dict):
        raise ParseError("expected a stream event with a 'token' object")
    text = "" if token.get("special") else text_field(token, "text")
    usage, reason = _details(data)
    if reason is None and data.get("generated_text") is not None:
        reason = "stop"
    return ResponseData(text=text, usage=usage, finish_reason=reason)


GENERATE = EndpointType(
    name="huggingface-generate",
    operation_name="text_completion",
    default_path="/generate",
    streaming_path="/generate_stream",
    build_payload=payload,
    parse_response=parse_response,
    parse_chunk=parse_chunk,
)
