"""Built-in OpenAI-compatible endpoint types: chat, completions, embeddings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiperf._types import EndpointType, Prompt, ResponseData, Usage, response_data

if TYPE_CHECKING:
    from aiperf._config import ProfileConfig


class ParseError(ValueError):
    """The server sent something that is not the API's shape (an error of type parse_error)."""

    #: the request's error type in the JSONL and the summary.
    error_type = "parse_error"


class ServerErrorBody(ParseError):
    """The server answered with a JSON error object (``{"error": ...}``) instead of an
    answer: an error of type ``server_error_body``."""

    error_type = "server_error_body"


class EventOrderError(ParseError):
    """A stream's events came in an order its API never sends (a delta before the message
    started, an event after the end): an error of type ``event_order``."""

    error_type = "event_order"


#: what a stream parser returns for an event type it does not know: skipped and counted, so
#: that a newer server's additions cost a note, not the request.
IGNORED = ResponseData()


def bound(endpoint: EndpointType, config: ProfileConfig) -> EndpointType:
    """The endpoint as this run uses it (a template endpoint reads its file here, once)."""
    return endpoint.bind(endpoint, config) if endpoint.bind is not None else endpoint


def _usage(data: dict[str, Any]) -> Usage | None:
    # Counts are kept as the server sent them: an absurd one (a string, a negative or huge
    # number) is not this request's failure. The metrics step checks them, ignores a bad
    # usage for this request with a counted note, and the tokenizer's count stands in
    # (see checked_usage).
    raw = data.get("usage")
    if not isinstance(raw, dict):
        return None
    details = raw.get("completion_tokens_details")
    return Usage(
        prompt_tokens=raw.get("prompt_tokens"),
        completion_tokens=raw.get("completion_tokens"),
        reasoning_tokens=details.get("reasoning_tokens") if isinstance(details, dict) else None,
    )


def _first_choice(data: Any) -> dict[str, Any] | None:
    if not isinstance(data, dict):
        raise ParseError(f"expected a JSON object, got {type(data).__name__}")
    if data.get("error") is not None and "choices" not in data:
        raise ServerErrorBody(f"the server sent an error object: {str(data['error'])[:200]}")
    choices = data.get("choices")
    if not choices:
        return None
    if not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise ParseError("'choices' is not a list of objects")
    return choices[0]


def _common(config: ProfileConfig, prompt: Prompt) -> dict[str, Any]:
    payload: dict[str, Any] = {"model": config.model}
    if prompt.max_tokens is not None:
        payload["max_tokens"] = prompt.max_tokens
    if config.streaming:
        payload["stream"] = True
        # Ask for the server's own token counts in a final chunk: they beat any tokenizer.
        payload["stream_options"] = {"include_usage": True}
    return payload


def chat_payload(prompt: Prompt, config: ProfileConfig) -> dict[str, Any]:
    payload = _common(config, prompt)
    if prompt.messages:
        messages = list(prompt.messages)
    elif prompt.images or prompt.audio:
        messages = [{"role": "user", "content": _media_parts(prompt)}]
    else:
        messages = [{"role": "user", "content": prompt.text}]
    payload = {"model": payload.pop("model"), "messages": messages, **payload}
    payload.update(prompt.extra)
    payload.update(config.extra_inputs)
    return payload


def _media_parts(prompt: Prompt) -> list[dict[str, Any]]:
    """The user turn as text, ``image_url`` and ``input_audio`` parts."""
    parts: list[dict[str, Any]] = [{"type": "text", "text": prompt.text}]
    parts.extend({"type": "image_url", "image_url": {"url": url}} for url in prompt.images)
    parts.extend(
        {"type": "input_audio", "input_audio": {"data": data, "format": fmt}} for data, fmt in prompt.audio
    )
    return parts


def completions_payload(prompt: Prompt, config: ProfileConfig) -> dict[str, Any]:
    payload = _common(config, prompt)
    payload = {"model": payload.pop("model"), "prompt": prompt.text, **payload}
    payload.update(prompt.extra)
    payload.update(config.extra_inputs)
    return payload


def embeddings_payload(prompt: Prompt, config: ProfileConfig) -> dict[str, Any]:
    payload: dict[str, Any] = {"model": config.model, "input": prompt.text}
    payload.update(prompt.extra)
    payload.update(config.extra_inputs)
    return payload


def parse_chat_chunk(data: Any) -> ResponseData:
    choice = _first_choice(data)
    text = reasoning = ""
    reason = None
    if choice is not None:
        delta = choice.get("delta") or choice.get("message") or {}
        if not isinstance(delta, dict):
            raise ParseError("'delta' is not an object")
        text = delta.get("content") or ""
        reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
        if not isinstance(text, str) or not isinstance(reasoning, str):
            raise ParseError("'content' is not a string")
        reason = choice.get("finish_reason")
    return _chunk(data, text, reasoning, reason)


def parse_completion_chunk(data: Any) -> ResponseData:
    choice = _first_choice(data)
    text = ""
    reason = None
    if choice is not None:
        text = choice.get("text") or ""
        if not isinstance(text, str):
            raise ParseError("'text' is not a string")
        reason = choice.get("finish_reason")
    return _chunk(data, text, "", reason)


def _chunk(data: dict[str, Any], text: str, reasoning: str, reason: Any) -> ResponseData:
    """What a chat or completion chunk gives, the rest of it read from ``data``. This runs
    for every token of every stream: usage is looked for only where the key is present,
    and the result is built with response_data."""
    return response_data(
        text,
        reasoning,
        _usage(data) if "usage" in data else None,
        _model(data),
        str(reason) if reason else None,
    )


def _model(data: dict[str, Any]) -> str | None:
    model = data.get("model")
    return model if isinstance(model, str) else None


def parse_embeddings(data: Any) -> ResponseData:
    if isinstance(data, dict) and data.get("error") is not None and "data" not in data:
        raise ServerErrorBody(f"the server sent an error object: {str(data['error'])[:200]}")
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ParseError("expected an embeddings response with a 'data' list")
    return ResponseData(usage=_usage(data), model=_model(data))


CHAT = EndpointType(
    name="chat",
    operation_name="chat",
    default_path="/v1/chat/completions",
    build_payload=chat_payload,
    parse_response=parse_chat_chunk,
    parse_chunk=parse_chat_chunk,
)

COMPLETIONS = EndpointType(
    name="completions",
    operation_name="text_completion",
    default_path="/v1/completions",
    build_payload=completions_payload,
    parse_response=parse_completion_chunk,
    parse_chunk=parse_completion_chunk,
)

EMBEDDINGS = EndpointType(
    name="embeddings",
    operation_name="embeddings",
    default_path="/v1/embeddings",
    build_payload=embeddings_payload,
    parse_response=parse_embeddings,
    parse_chunk=parse_embeddings,
    supports_streaming=False,
    produces_tokens=False,
)
