"""``template``: any JSON API, from a user's request template and a path to the text.

``--payload-template FILE`` is a JSON document; a string that is exactly ``"{prompt}"``,
``"{max_tokens}"`` or ``"{model}"`` becomes the value (``{max_tokens}`` a number, or null
when the run sets no output length), and the placeholders inside longer strings are replaced
as text. ``--response-text-path`` (``choices.0.delta.content``, ``$.output[0].text``) says
where the text is in each answer or stream event; an event without it carries no text. A
stream is complete when its body ends cleanly (or at ``[DONE]``): a template cannot say which
event ends the answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from aiperf._apis import options
from aiperf._endpoints import ParseError, ServerErrorBody
from aiperf._types import EndpointType, ResponseData, UsageError

if TYPE_CHECKING:
    from pathlib import Path

    from aiperf._config import ProfileConfig
    from aiperf._types import Prompt

PLACEHOLDERS = ("{prompt}", "{max_tokens}", "{model}")
_STEP = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]")
_EMPTY = ResponseData()


def parse_path(text: str) -> tuple[str | int, ...]:
    """``a.b.0.c``, ``a.b[0].c`` or ``$.a.b[0]`` as keys and indices."""
    rest = text.strip().removeprefix("$").lstrip(".")
    steps: list[str | int] = []
    pos = 0
    while pos < len(rest):
        match = _STEP.match(rest, pos)
        if match is None or match.end() == pos:
            raise UsageError(f"--response-text-path: cannot read {text!r} (expected e.g. choices.0.delta.content)")
        key, index = match.groups()
        steps.append(int(index) if index is not None else (int(key) if key.isdigit() else key))
        pos = match.end()
    if not steps:
        raise UsageError("--response-text-path: must not be empty")
    return tuple(steps)


def load_template(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--payload-template: cannot read {path} ({exc.strerror or exc})") from None
    try:
        template = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--payload-template: {path} is not JSON ({exc}); quote placeholders: \"{{max_tokens}}\"") from None
    if not isinstance(template, dict):
        raise UsageError(f"--payload-template: {path} must hold a JSON object")
    if "{prompt}" not in text:
        raise UsageError(f"--payload-template: {path} has no {{prompt}} placeholder")
    return template


def fill(template: Any, values: dict[str, Any]) -> Any:
    if isinstance(template, dict):
        return {k: fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, values) for v in template]
    if isinstance(template, str):
        if template in values:
            return values[template]
        for name, value in values.items():
            if name in template:
                template = template.replace(name, "" if value is None else str(value))
    return template


def extract(data: Any, path: tuple[str | int, ...]) -> Any:
    """The value at ``path``, or None where the answer has no such place."""
    for step in path:
        if isinstance(step, int) and isinstance(data, list):
            data = data[step] if -len(data) <= step < len(data) else None
        elif isinstance(data, dict):
            data = data.get(str(step))
        else:
            return None
        if data is None:
            return None
    return data


@attrs.frozen
class _Bound:
    template: Any
    path: tuple[str | int, ...]

    def payload(self, prompt: Prompt, config: ProfileConfig) -> dict[str, Any]:
        body = fill(self.template, {"{prompt}": prompt.text, "{max_tokens}": prompt.max_tokens, "{model}": config.model})
        body.update(config.extra_inputs)
        return body

    def parse(self, data: Any) -> ResponseData:
        if isinstance(data, dict) and data.get("error") is not None and extract(data, self.path) is None:
            raise ServerErrorBody(f"the server sent an error object: {str(data['error'])[:200]}")
        text = extract(data, self.path)
        if text is None:
            return _EMPTY
        if not isinstance(text, str):
            raise ParseError(f"the value at --response-text-path is not a string (got {type(text).__name__})")
        return ResponseData(text=text)


def bind(endpoint: EndpointType, config: ProfileConfig) -> EndpointType:
    opts = options.of(config)
    if opts.payload_template is None or opts.response_text_path is None:
        raise UsageError("--endpoint-type template: give --payload-template FILE and --response-text-path PATH")
    bound = _Bound(load_template(opts.payload_template), parse_path(opts.response_text_path))
    return attrs.evolve(
        endpoint,
        build_payload=bound.payload,
        parse_response=bound.parse,
        parse_chunk=bound.parse,
        bind=None,
    )


def _unbound(*_args: Any) -> Any:
    raise UsageError("--endpoint-type template: the template was not read (bind it to the run's config)")


_unbound_parse: Callable[[Any], ResponseData] = _unbound

TEMPLATE = EndpointType(
    name="template",
    operation_name="chat",
    default_path="/v1/chat/completions",
    build_payload=_unbound,
    parse_response=_unbound_parse,
    parse_chunk=_unbound_parse,
    bind=bind,
    complete_at_body_end=True,
)
