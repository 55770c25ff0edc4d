"""Request parsing and pre-encoded response bytes for the mock server.

Responses are assembled from byte templates: the per-request part (id, model, created) is
encoded once, each chunk only splices in its words, so streaming costs no ``json.dumps``.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from typing import Any

from aiperf.mock_server import MOCK_WORDS

#: Each word as it goes out on the wire: a leading space, plain ASCII (no JSON escaping needed).
WORDS: tuple[bytes, ...] = tuple(b" " + word.encode("ascii") for word in MOCK_WORDS)
#: The most output tokens one request may ask for; more is answered with 400.
MAX_OUTPUT_TOKENS = 1_000_000
MAX_EMBEDDING_DIMENSIONS = 65_536

DONE = b"data: [DONE]\n\n"
#: A ``data:`` line without the blank line that ends its event: the next chunk's ``data:``
#: line joins the same event, and an SSE parser delivers the two payloads joined by a newline,
#: which is not JSON.
MALFORMED_SSE = b'data: {"malformed":"event without its closing blank line"}\n'


class BadRequest(Exception):
    """The request body is not what the endpoint accepts: answered with 400."""


def words(start: int, count: int) -> bytes:
    """Tokens ``start`` .. ``start + count - 1`` of every answer."""
    n = len(WORDS)
    if count == 1:
        return WORDS[start % n]
    return b"".join([WORDS[i % n] for i in range(start, start + count)])


_MASK64 = (1 << 64) - 1


class Reply:
    """An answer of its own for one request body (``--distinct-replies``).

    Token ``i`` is a word picked by a 64-bit mix of the body's hash and ``i``, so the same
    body always gets the same answer and two bodies (a conversation's turns, whose histories
    differ) practically never share more than their first few words.
    """

    __slots__ = ("seed",)

    def __init__(self, body: bytes) -> None:
        import hashlib

        self.seed = int.from_bytes(hashlib.blake2b(body, digest_size=8).digest(), "little")

    def index(self, i: int) -> int:
        z = (self.seed + (i + 1) * 0x9E3779B97F4A7C15) & _MASK64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return (z ^ (z >> 31)) % len(WORDS)

    def words(self, start: int, count: int) -> bytes:
        return b"".join([WORDS[self.index(i)] for i in range(start, start + count)])


def count_words(text: Any) -> int:
    """Prompt tokens as the mock counts them: whitespace-separated words."""
    return len(text.split()) if isinstance(text, str) else 0


class Request:
    """The parts of an OpenAI request body the mock server acts on."""

    __slots__ = (
        "dimensions",
        "encoding_format",
        "include_usage",
        "inputs",
        "max_tokens",
        "model",
        "prompt_text",
        "prompt_tokens",
        "reasoning_tokens",
        "stream",
    )

    def __init__(self) -> None:
        self.model = ""
        self.stream = False
        self.include_usage = False
        self.max_tokens: int | None = None
        self.prompt_tokens = 0
        #: the prompt's text, for the prefix cache (chat and completions; None otherwise).
        self.prompt_text: str | None = None
        self.inputs = 0
        self.dimensions: int | None = None
        self.encoding_format = "float"
        #: the first this many output tokens go out as reasoning (see _mock/apis.py).
        self.reasoning_tokens = 0


def _int_field(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"{name} must be an integer between {low} and {high} (got {value!r})")
    return value


def parse_request(endpoint: str, raw: bytes, default_model: str) -> Request:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    req = Request()
    model = body.get("model", default_model)
    if not isinstance(model, str) or not model:
        raise BadRequest("model must be a non-empty string")
    req.model = model
    if endpoint == "embeddings":
        _parse_embeddings(body, req)
        return req
    req.stream = bool(body.get("stream", False))
    options = body.get("stream_options")
    req.include_usage = (
        req.stream and isinstance(options, dict) and bool(options.get("include_usage"))
    )
    limit = _int_field(body, "max_completion_tokens", 0, MAX_OUTPUT_TOKENS)
    req.max_tokens = (
        limit if limit is not None else _int_field(body, "max_tokens", 0, MAX_OUTPUT_TOKENS)
    )
    # Accepted so that clients can send them; every answer has exactly the requested length.
    _int_field(body, "min_tokens", 0, MAX_OUTPUT_TOKENS)
    req.reasoning_tokens = _int_field(body, "mock_reasoning_tokens", 0, MAX_OUTPUT_TOKENS) or 0
    if endpoint == "chat":
        req.prompt_tokens = _chat_prompt_tokens(body.get("messages"))
        req.prompt_text = "\n".join(_chat_texts(body["messages"]))
    else:
        req.prompt_tokens = _completion_prompt_tokens(body.get("prompt"))
        prompt = body.get("prompt")
        req.prompt_text = prompt if isinstance(prompt, str) else None
    return req


def _chat_texts(messages: list[Any]) -> list[str]:
    """Every text of the messages, in order (string contents and text parts)."""
    texts = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(
                part["text"] for part in content
                if isinstance(part, dict) and isinstance(part.get("text"), str)
            )  # fmt: skip
    return texts


def _chat_prompt_tokens(messages: Any) -> int:
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list")
    total = 0
    for message in messages:
        if not isinstance(message, dict):
            raise BadRequest("each message must be an object")
        content = message.get("content")
        if isinstance(content, list):
            total += sum(
                count_words(part.get("text")) for part in content if isinstance(part, dict)
            )
        else:
            total += count_words(content)
    return total


def _completion_prompt_tokens(prompt: Any) -> int:
    if isinstance(prompt, str):
        return count_words(prompt)
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, int) for p in prompt):
            return len(prompt)
        if all(isinstance(p, str) for p in prompt):
            return sum(count_words(p) for p in prompt)
    raise BadRequest("prompt must be a string, a list of strings or a list of token ids")


def _parse_embeddings(body: dict[str, Any], req: Request) -> None:
    value = body.get("input")
    if isinstance(value, str):
        req.inputs, req.prompt_tokens = 1, count_words(value)
    elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        req.inputs, req.prompt_tokens = len(value), sum(count_words(v) for v in value)
    elif isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        req.inputs, req.prompt_tokens = 1, len(value)
    elif isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        req.inputs, req.prompt_tokens = len(value), sum(len(v) for v in value)
    else:
        raise BadRequest("input must be a string, a list of strings or token ids")
    req.dimensions = _int_field(body, "dimensions", 1, MAX_EMBEDDING_DIMENSIONS)
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise BadRequest(f"encoding_format must be 'float' or 'base64' (got {fmt!r})")
    req.encoding_format = fmt


def usage(prompt_tokens: int, completion_tokens: int, reasoning_tokens: int = 0) -> bytes:
    """OpenAI's usage object; reasoning tokens (part of the completion tokens) in
    ``completion_tokens_details`` when there are any."""
    details = (
        b',"completion_tokens_details":{"reasoning_tokens":%d}' % reasoning_tokens
        if reasoning_tokens
        else b""
    )
    return b'{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d%s}' % (
        prompt_tokens,
        completion_tokens,
        prompt_tokens + completion_tokens,
        details,
    )


def usage_as_string(prompt_tokens: int, completion_tokens: int) -> bytes:
    """The ``usage-string`` fault: the counts as JSON strings (``"5"``), not numbers."""
    return b'{"prompt_tokens":"%d","completion_tokens":"%d","total_tokens":"%d"}' % (
        prompt_tokens,
        completion_tokens,
        prompt_tokens + completion_tokens,
    )


#: The ``nan`` fault: a bare ``NaN``, which Python's json writes and reads but which is not JSON.
USAGE_NAN = b'{"prompt_tokens":1,"completion_tokens":NaN,"total_tokens":NaN}'
#: How deep the ``deep-json`` fault nests its arrays.
DEEP_JSON_DEPTH = 1000
_DEEP = b"[" * DEEP_JSON_DEPTH + b"]" * DEEP_JSON_DEPTH
#: The size of the ``huge-event`` fault's padding: larger than any normal answer, and than a
#: small ``--max-response-bytes`` a test passes, yet cheap enough to send often.
HUGE_EVENT_BYTES = 2 * 1024 * 1024
_PADDING = b"x" * HUGE_EVENT_BYTES


def deep_json() -> bytes:
    """A JSON document whose ``choices`` is nested :data:`DEEP_JSON_DEPTH` arrays deep."""
    return b'{"choices":' + _DEEP + b"}"


def padded(body: bytes) -> bytes:
    """A JSON object with a :data:`HUGE_EVENT_BYTES` string field in front of its fields."""
    return b'{"padding":"' + _PADDING + b'",' + body[1:]


def json_str(text: str) -> bytes:
    return json.dumps(text).encode()


class StreamFormat:
    """SSE events of one streamed response (chat or completions)."""

    __slots__ = ("chat", "content_close", "content_open", "prefix", "reasoning_open")
    native = False

    def __init__(self, *, chat: bool, rid: int, created: int, model: bytes) -> None:
        self.chat = chat
        if chat:
            head = b'data: {"id":"chatcmpl-mock-%d","object":"chat.completion.chunk"'
        else:
            head = b'data: {"id":"cmpl-mock-%d","object":"text_completion"'
        self.prefix = head % rid + b',"created":%d,"model":%s,"choices":[' % (created, model)
        if chat:
            self.content_open = self.prefix + b'{"index":0,"delta":{"content":"'
            self.reasoning_open = self.prefix + b'{"index":0,"delta":{"reasoning_content":"'
            self.content_close = b'"},"logprobs":null,"finish_reason":'
        else:
            self.content_open = self.prefix + b'{"index":0,"text":"'
            self.reasoning_open = self.content_open
            self.content_close = b'","logprobs":null,"finish_reason":'

    def role(self) -> bytes:
        # Like OpenAI and vLLM: the first event names the role and carries empty content,
        # which a client must not count as the first token.
        return self.prefix + (
            b'{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,'
            b'"finish_reason":null}]}\n\n'
        )

    def opening(self) -> bytes:
        return self.role() if self.chat else b""

    def content(self, text: bytes, finish: bytes | None, reasoning: bool = False) -> bytes:
        reason = b"null" if finish is None else b'"%s"' % finish
        opening = self.reasoning_open if reasoning else self.content_open
        return b"".join((opening, text, self.content_close, reason, b"}]}\n\n"))

    def empty_finish(self, finish: bytes) -> bytes:
        """The last event of an answer with no tokens: finish_reason, no content."""
        if self.chat:
            return (
                self.prefix
                + b'{"index":0,"delta":{},"logprobs":null,"finish_reason":"%s"}]}\n\n' % finish
            )
        return (
            self.prefix
            + b'{"index":0,"text":"","logprobs":null,"finish_reason":"%s"}]}\n\n' % finish
        )

    def usage(self, usage_json: bytes) -> bytes:
        return self.prefix + b'],"usage":' + usage_json + b"}\n\n"

    def malformed_json(self) -> bytes:
        return self.prefix + b'{"index":0,"delta":{"content":\n\n'

    def deep_json(self) -> bytes:
        return b"data: " + deep_json() + b"\n\n"

    def huge(self) -> bytes:
        """An event with no content and a :data:`HUGE_EVENT_BYTES` padding field."""
        return b"data: " + padded(self.prefix[len(b"data: ") :] + b"]}") + b"\n\n"


def chat_body(
    *,
    rid: int,
    created: int,
    model: bytes,
    text: bytes,
    finish: bytes,
    usage_json: bytes,
    reasoning: bytes = b"",
) -> bytes:
    """A whole chat completion; ``reasoning`` goes in ``message.reasoning_content`` (vLLM's
    and DeepSeek's field) when there is any."""
    thought = b'"reasoning_content":"%s",' % reasoning if reasoning else b""
    return b"".join(
        (
            b'{"id":"chatcmpl-mock-%d","object":"chat.completion","created":%d,"model":%s,'
            % (rid, created, model),
            b'"choices":[{"index":0,"message":{"role":"assistant",',
            thought,
            b'"content":"',
            text,
            b'"},"logprobs":null,"finish_reason":"',
            finish,
            b'"}],"usage":',
            usage_json,
            b"}",
        )
    )


def completion_body(
    *, rid: int, created: int, model: bytes, text: bytes, finish: bytes, usage_json: bytes
) -> bytes:
    return b"".join(
        (
            b'{"id":"cmpl-mock-%d","object":"text_completion","created":%d,"model":%s,'
            % (rid, created, model),
            b'"choices":[{"index":0,"text":"',
            text,
            b'","logprobs":null,"finish_reason":"',
            finish,
            b'"}],"usage":',
            usage_json,
            b"}",
        )
    )


_vectors: dict[tuple[int, str], bytes] = {}


def _vector(dimensions: int, encoding_format: str) -> bytes:
    """A fixed unit vector, encoded once per (dimensions, format)."""
    key = (dimensions, encoding_format)
    cached = _vectors.get(key)
    if cached is None:
        values = [((i % 7) + 1) for i in range(dimensions)]
        norm = math.sqrt(sum(v * v for v in values))
        unit = [v / norm for v in values]
        if encoding_format == "base64":
            cached = b'"' + base64.b64encode(struct.pack(f"<{dimensions}f", *unit)) + b'"'
        else:
            cached = b"[" + b",".join(b"%.6f" % v for v in unit) + b"]"
        _vectors[key] = cached
    return cached


def embeddings_body(*, req: Request, model: bytes, dimensions: int) -> bytes:
    vector = _vector(req.dimensions or dimensions, req.encoding_format)
    items = b",".join(
        b'{"object":"embedding","index":%d,"embedding":%s}' % (i, vector) for i in range(req.inputs)
    )
    return (
        b'{"object":"list","data":[%s],"model":%s,"usage":{"prompt_tokens":%d,"total_tokens":%d}}'
        % (
            items,
            model,
            req.prompt_tokens,
            req.prompt_tokens,
        )
    )


def models_body(models: tuple[str, ...], created: int) -> bytes:
    data = [
        {"id": name, "object": "model", "created": created, "owned_by": "aiperf-mock"}
        for name in models
    ]
    return json.dumps({"object": "list", "data": data}).encode()


def error_body(status: int, message: str) -> bytes:
    if status == 429:
        kind = "rate_limit_exceeded"
    elif status >= 500:
        kind = "server_error"
    else:
        kind = "invalid_request_error"
    return json.dumps(
        {"error": {"message": message, "type": kind, "param": None, "code": status}}
    ).encode()
