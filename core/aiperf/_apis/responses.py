"""``responses``: the OpenAI Responses API (``POST /v1/responses``).

A stream is a sequence of typed events (``response.created``, ...,
``response.output_text.delta``, ..., ``response.completed`` with the usage). Text deltas are
the chunks; reasoning deltas (``response.reasoning_text.delta``, and the summaries' deltas)
are reasoning chunks. A stream ends with ``response.completed`` or ``response.incomplete``
(cut at ``max_output_tokens``: a complete answer for a benchmark); ``response.failed`` and
``error`` are the server's error, and events of types not listed here are skipped and counted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiperf._apis._common import (
    expect_object,
    finish,
    model_of,
    raise_error_object,
    text_field,
    usage_from,
    user_content,
)
from aiperf._endpoints import IGNORED, EventOrderError, ParseError, ServerErrorBody
from aiperf._types import EndpointType, ResponseData

if TYPE_CHECKING:
    from aiperf._config import ProfileConfig
    from aiperf._types import Prompt

_TEXT_DELTA = "response.output_text.delta"
_REASONING_DELTAS = frozenset(
    ("response.reasoning_text.delta", "response.reasoning_summary_text.delta")
)
_STARTS = frozenset(("response.created", "response.in_progress", "response.queued"))
_ENDS = {"response.completed": "completed", "response.incomplete": "incomplete"}
#: events that carry no text aiperf counts (the structure around the deltas).
_QUIET = frozenset(
    (
        "response.output_item.added", "response.output_item.done",
        "response.content_part.added", "response.content_part.done",
        "response.output_text.done", "response.output_text.annotation.added",
        "response.reasoning_text.done", "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.added", "response.reasoning_summary_part.done",
        "response.refusal.delta", "response.refusal.done",
    )
)  # fmt: skip
_EMPTY = ResponseData()


def payload(prompt: Prompt, config: ProfileConfig) -> dict[str, Any]:
    body: dict[str, Any] = {"model": config.model}
    if prompt.messages:
        body["input"] = list(prompt.messages)
    else:
        content = user_content(
            prompt,
            text_type="input_text",
            image=lambda url: {"type": "input_image", "image_url": url},
        )
        body["input"] = content if isinstance(content, str) else [{"role": "user", "content": content}]
    if prompt.max_tokens is not None:
        body["max_output_tokens"] = prompt.max_tokens
    if config.streaming:
        body["stream"] = True
    return finish(body, prompt, config)


def _usage(response: dict[str, Any]) -> Any:
    return usage_from(response.get("usage"), "input_tokens", "output_tokens", "output_tokens_details")


def _failure(data: dict[str, Any]) -> str:
    response = data.get("response")
    error = response.get("error") if isinstance(response, dict) else data.get("error", data)
    return f"the server reported a failed response: {str(error)[:200]}"


def parse_response(data: Any) -> ResponseData:
    """A whole (non-streamed) response object."""
    data = expect_object(data)
    raise_error_object(data, "output")
    if data.get("status") == "failed":
        raise ServerErrorBody(_failure({"response": data}))
    output = data.get("output")
    if not isinstance(output, list):
        raise ParseError("expected a response with an 'output' list")
    texts: list[str] = []
    reasoning: list[str] = []
    for item in output:
        if not isinstance(item, dict):
            raise ParseError("'output' holds something that is not an object")
        parts = item.get("content") or []
        if item.get("type") == "reasoning":
            parts = [*parts, *(item.get("summary") or [])]
            into = reasoning
        else:
            into = texts
        if not isinstance(parts, list):
            raise ParseError("'content' is not a list")
        for part in parts:
            if isinstance(part, dict) and part.get("type") != "refusal":
                into.append(text_field(part, "text"))
    status = data.get("status")
    return ResponseData(
        text="".join(texts),
        reasoning="".join(reasoning),
        usage=_usage(data),
        model=model_of(data),
        finish_reason=str(status) if status else None,
    )


def new_stream_parser(*, strict: bool = True) -> Callable[[Any], ResponseData]:
    """A parser for one stream: deltas only between the start and the end of the response
    (``strict=False``: one event on its own, order unchecked)."""
    started = not strict
    ended = False

    def parse(data: Any) -> ResponseData:
        nonlocal started, ended
        data = expect_object(data)
        kind = data.get("type")
        if not isinstance(kind, str):
            raise_error_object(data)
            raise ParseError("a stream event without a 'type'")
        if kind == _TEXT_DELTA or kind in _REASONING_DELTAS:
            if not started or ended:
                where = "before response.created" if not started else "after the response ended"
                raise EventOrderError(f"{kind} {where}")
            delta = text_field(data, "delta")
            return ResponseData(text=delta) if kind == _TEXT_DELTA else ResponseData(reasoning=delta)
        if kind in _QUIET:
            if not started:
                raise EventOrderError(f"{kind} before response.created")
            return _EMPTY
        if kind in _STARTS:
            started = True
            response = data.get("response")
            model = model_of(response) if isinstance(response, dict) else None
            return ResponseData(model=model) if model else _EMPTY
        if kind in _ENDS:
            if ended:
                raise EventOrderError(f"{kind} after the response ended")
            ended, started = strict, True
            response = data.get("response")
            response = response if isinstance(response, dict) else {}
            return ResponseData(usage=_usage(response), model=model_of(response), finish_reason=_ENDS[kind])
        if kind in ("response.failed", "error"):
            raise ServerErrorBody(_failure(data))
        return IGNORED

    return parse


RESPONSES = EndpointType(
    name="responses",
    operation_name="chat",
    default_path="/v1/responses",
    build_payload=payload,
    parse_response=parse_response,
    parse_chunk=lambda data: new_stream_parser(strict=False)(data),
    new_stream_parser=new_stream_parser,
    provider="openai",
)
