"""``messages``: the Messages API (``POST /v1/messages``, Anthropic's shape).

The key goes in ``x-api-key`` (not ``Authorization: Bearer``) with an ``anthropic-version``
header. A stream is ``message_start`` (input usage), then per content block
``content_block_start`` / ``content_block_delta`` / ``content_block_stop``, then
``message_delta`` (stop reason, output usage) and ``message_stop``; ``ping`` may come any
time. ``text_delta`` deltas are the answer's chunks, ``thinking_delta`` deltas reasoning
chunks; ``signature_delta`` and tool-input deltas carry no text aiperf counts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiperf._apis._common import expect_object, finish, model_of, text_field, user_content
from aiperf._endpoints import IGNORED, EventOrderError, ParseError, ServerErrorBody
from aiperf._types import EndpointType, ResponseData, Usage

if TYPE_CHECKING:
    from aiperf._config import ProfileConfig
    from aiperf._types import Prompt

#: the API version sent unless ``-H anthropic-version:...`` says otherwise.
API_VERSION = "2023-06-01"
#: the Messages API requires ``max_tokens``: this when the run sets no output length.
DEFAULT_MAX_TOKENS = 1024
_EMPTY = ResponseData()
_QUIET_DELTAS = frozenset(("signature_delta", "input_json_delta", "citations_delta"))


def headers(config: ProfileConfig) -> dict[str, str]:
    out = {"anthropic-version": API_VERSION}
    if config.api_key:
        out["x-api-key"] = config.api_key
    return out


def payload(prompt: Prompt, config: ProfileConfig) -> dict[str, Any]:
    if prompt.messages:
        messages = list(prompt.messages)
    else:
        content = user_content(
            prompt,
            text_type="text",
            image=_image_block,
        )
        messages = [{"role": "user", "content": content}]
    body: dict[str, Any] = {
        "model": config.model,
        "max_tokens": prompt.max_tokens if prompt.max_tokens is not None else DEFAULT_MAX_TOKENS,
        "messages": messages,
    }
    if config.streaming:
        body["stream"] = True
    return finish(body, prompt, config)


def _image_block(url: str) -> dict[str, Any]:
    if url.startswith("data:"):
        media_type, _, data = url[5:].partition(";base64,")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    return Usage(prompt_tokens=raw.get("input_tokens"), completion_tokens=raw.get("output_tokens"))


def _error(data: dict[str, Any]) -> ServerErrorBody:
    return ServerErrorBody(f"the server sent an error object: {str(data.get('error'))[:200]}")


def parse_response(data: Any) -> ResponseData:
    """A whole (non-streamed) message."""
    data = expect_object(data)
    if data.get("type") == "error":
        raise _error(data)
    content = data.get("content")
    if not isinstance(content, list):
        raise ParseError("expected a message with a 'content' list")
    texts: list[str] = []
    thoughts: list[str] = []
    for block in content:
        if not isinstance(block, dict):
            raise ParseError("'content' holds something that is not an object")
        kind = block.get("type")
        if kind == "text":
            texts.append(text_field(block, "text"))
        elif kind == "thinking":
            thoughts.append(text_field(block, "thinking"))
    reason = data.get("stop_reason")
    return ResponseData(
        text="".join(texts),
        reasoning="".join(thoughts),
        usage=_usage(data.get("usage")),
        model=model_of(data),
        finish_reason=str(reason) if reason else None,
    )


def new_stream_parser(*, strict: bool = True) -> Callable[[Any], ResponseData]:
    """A parser for one stream: blocks only inside a started message, nothing after its stop.

    The input tokens come with ``message_start``, the output tokens with ``message_delta``:
    the usage is given whole (both counts) once the second arrives.
    """
    started = not strict
    stopped = False
    input_tokens: Any = None
    stop_reason: str | None = None

    def parse(data: Any) -> ResponseData:
        nonlocal started, stopped, input_tokens, stop_reason
        data = expect_object(data)
        kind = data.get("type")
        if not isinstance(kind, str):
            raise ParseError("a stream event without a 'type'")
        if kind == "ping":
            return _EMPTY
        if kind == "error":
            raise _error(data)
        if stopped:
            raise EventOrderError(f"{kind} after message_stop")
        if kind == "message_start":
            if started and strict:
                raise EventOrderError("a second message_start")
            started = True
            message = data.get("message")
            message = message if isinstance(message, dict) else {}
            usage = message.get("usage")
            if isinstance(usage, dict):
                input_tokens = usage.get("input_tokens")
            return ResponseData(model=model_of(message))
        if not started:
            raise EventOrderError(f"{kind} before message_start")
        if kind == "content_block_delta":
            delta = data.get("delta")
            if not isinstance(delta, dict):
                raise ParseError("'delta' is not an object")
            dtype = delta.get("type")
            if dtype == "text_delta":
                return ResponseData(text=text_field(delta, "text"))
            if dtype == "thinking_delta":
                return ResponseData(reasoning=text_field(delta, "thinking"))
            return _EMPTY if dtype in _QUIET_DELTAS else IGNORED
        if kind in ("content_block_start", "content_block_stop"):
            return _EMPTY
        if kind == "message_delta":
            delta = data.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason"):
                stop_reason = str(delta["stop_reason"])
            usage = data.get("usage")
            if isinstance(usage, dict):
                merged = {"input_tokens": input_tokens, **usage}
                return ResponseData(usage=_usage(merged))
            return _EMPTY
        if kind == "message_stop":
            stopped = strict
            return ResponseData(finish_reason=stop_reason or "stop")
        return IGNORED

    return parse


MESSAGES = EndpointType(
    name="messages",
    operation_name="chat",
    default_path="/v1/messages",
    build_payload=payload,
    parse_response=parse_response,
    parse_chunk=lambda data: new_stream_parser(strict=False)(data),
    new_stream_parser=new_stream_parser,
    headers=headers,
    provider="anthropic",
)
