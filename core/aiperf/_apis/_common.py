"""Small helpers the endpoint modules share."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiperf._endpoints import ParseError, ServerErrorBody
from aiperf._types import Usage

if TYPE_CHECKING:
    from aiperf._config import ProfileConfig
    from aiperf._types import Prompt


def expect_object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ParseError(f"expected a JSON object, got {type(data).__name__}")
    return data


def raise_error_object(data: dict[str, Any], *answer_keys: str) -> None:
    """A JSON error object instead of an answer: ``server_error_body``."""
    if data.get("error") is not None and not any(key in data for key in answer_keys):
        raise ServerErrorBody(f"the server sent an error object: {str(data['error'])[:200]}")


def text_field(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ParseError(f"'{name}' is not a string")
    return value


def model_of(data: dict[str, Any]) -> str | None:
    model = data.get("model")
    return model if isinstance(model, str) else None


def usage_from(raw: Any, prompt: str, completion: str, reasoning_in: str | None = None) -> Usage | None:
    """A :class:`Usage` from a usage object whose fields have these names (kept as sent:
    the metrics step checks them)."""
    if not isinstance(raw, dict):
        return None
    reasoning = None
    if reasoning_in is not None:
        details = raw.get(reasoning_in)
        reasoning = details.get("reasoning_tokens") if isinstance(details, dict) else None
    return Usage(
        prompt_tokens=raw.get(prompt), completion_tokens=raw.get(completion), reasoning_tokens=reasoning
    )


def finish(payload: dict[str, Any], prompt: Prompt, config: ProfileConfig) -> dict[str, Any]:
    """The fields every payload ends with: the dataset's extras, then ``--extra-inputs``."""
    payload.update(prompt.extra)
    payload.update(config.extra_inputs)
    return payload


def option(config: ProfileConfig, name: str, default: Any) -> Any:
    """A flag of the built-in endpoint types (``config.plugin_options``), or its default."""
    value = config.plugin_options.get(name)
    return default if value is None else value


def user_content(prompt: Prompt, *, text_type: str, image: Any) -> str | list[dict[str, Any]]:
    """The user turn's content: the text alone, or text and image parts.

    ``image(url)`` builds one part in the API's own shape. These APIs take no audio: a prompt
    with audio is refused before the run (``media.check_media``).
    """
    if not prompt.images:
        return prompt.text
    parts: list[dict[str, Any]] = [{"type": text_type, "text": prompt.text}]
    parts.extend(image(url) for url in prompt.images)
    return parts
