"""The mock server's other API shapes: Responses, Messages, TGI's native API, rerankers and
image generation. Requests are parsed into :class:`payloads.Request`; streamed answers use the
same timing as chat (one content event per chunk at its deadline), framed in each API's events.

A request may ask for reasoning: the first ``reasoning_tokens`` tokens of the answer then go
out as reasoning (chat's ``reasoning_content``, Responses' ``response.reasoning_text.delta``,
Messages' ``thinking_delta``). It is asked with the body field ``mock_reasoning_tokens`` (any
API) or, for Messages, ``thinking.budget_tokens``.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

from aiperf._mock import payloads
from aiperf._mock.payloads import BadRequest, Request, count_words

#: request path -> endpoint name (the chat/completions/embeddings routes live in server.py).
ROUTES: dict[bytes, str] = {
    b"/v1/responses": "responses",
    b"/v1/messages": "messages",
    b"/generate": "generate",
    b"/generate_stream": "generate_stream",
    b"/v1/ranking": "nim-rankings",
    b"/v1/rerank": "cohere-rankings",
    b"/rerank": "hf-tei-rankings",
    b"/v1/images/generations": "image-generation",
}
#: the endpoint names this module serves.
NAMES = frozenset(ROUTES.values())
#: endpoints that answer at once with one body (no tokens): due ``ttft`` after the request.
ONE_SHOT = frozenset(("nim-rankings", "cohere-rankings", "hf-tei-rankings", "image-generation"))


def _body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def _int(body: dict[str, Any], name: str, low: int = 0, high: int = payloads.MAX_OUTPUT_TOKENS) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"{name} must be an integer between {low} and {high} (got {value!r})")
    return value


def _content_words(content: Any) -> int:
    if isinstance(content, str):
        return count_words(content)
    if isinstance(content, list):
        return sum(count_words(p.get("text")) for p in content if isinstance(p, dict))
    return 0


def _messages_words(messages: Any, name: str) -> int:
    if not isinstance(messages, list) or not messages:
        raise BadRequest(f"{name} must be a non-empty list")
    if not all(isinstance(m, dict) for m in messages):
        raise BadRequest(f"each item of {name} must be an object")
    return sum(_content_words(m.get("content")) for m in messages)


def _strings(value: Any, name: str, *, key: str | None = None) -> list[str]:
    if not isinstance(value, list) or not value:
        raise BadRequest(f"{name} must be a non-empty list")
    out = []
    for item in value:
        if key is not None and isinstance(item, dict):
            item = item.get(key)
        if not isinstance(item, str):
            raise BadRequest(f"each item of {name} must be a string" + (f" or {{{key!r}: ...}}" if key else ""))
        out.append(item)
    return out


def parse_request(endpoint: str, raw: bytes, default_model: str) -> Request:
    body = _body(raw)
    req = Request()
    model = body.get("model", default_model)
    if not isinstance(model, str) or not model:
        raise BadRequest("model must be a non-empty string")
    req.model = model
    req.reasoning_tokens = _int(body, "mock_reasoning_tokens") or 0
    if endpoint == "responses":
        value = body.get("input")
        req.prompt_tokens = count_words(value) if isinstance(value, str) else _messages_words(value, "input")
        req.max_tokens = _int(body, "max_output_tokens")
        req.stream = bool(body.get("stream", False))
    elif endpoint == "messages":
        req.prompt_tokens = _messages_words(body.get("messages"), "messages")
        req.max_tokens = _int(body, "max_tokens", 1)
        if req.max_tokens is None:
            raise BadRequest("max_tokens: Field required")
        req.stream = bool(body.get("stream", False))
        thinking = body.get("thinking")
        if isinstance(thinking, dict) and thinking.get("type") == "enabled":
            req.reasoning_tokens = _int(thinking, "budget_tokens") or 0
    elif endpoint in ("generate", "generate_stream"):
        inputs = body.get("inputs")
        if not isinstance(inputs, str):
            raise BadRequest("inputs must be a string")
        req.prompt_tokens = count_words(inputs)
        parameters = body.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise BadRequest("parameters must be an object")
        req.max_tokens = _int(parameters, "max_new_tokens")
        req.stream = endpoint == "generate_stream"
    elif endpoint == "nim-rankings":
        query = body.get("query")
        if not isinstance(query, dict) or not isinstance(query.get("text"), str):
            raise BadRequest("query must be an object with a 'text' string")
        passages = _strings(body.get("passages"), "passages", key="text")
        req.inputs = len(passages)
        req.prompt_tokens = count_words(query["text"]) + sum(count_words(p) for p in passages)
    elif endpoint in ("cohere-rankings", "hf-tei-rankings"):
        query = body.get("query")
        if not isinstance(query, str):
            raise BadRequest("query must be a string")
        name = "documents" if endpoint == "cohere-rankings" else "texts"
        documents = _strings(body.get(name), name, key="text" if name == "documents" else None)
        req.inputs = len(documents)
        top_n = _int(body, "top_n", 1, 1_000_000)
        if top_n is not None:
            req.inputs = min(req.inputs, top_n)
        req.prompt_tokens = count_words(query) + sum(count_words(d) for d in documents)
    elif endpoint == "image-generation":
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise BadRequest("prompt must be a string")
        req.prompt_tokens = count_words(prompt)
        req.inputs = _int(body, "n", 1, 10) or 1
        fmt = body.get("response_format", "b64_json")
        if fmt not in ("b64_json", "url"):
            raise BadRequest(f"response_format must be 'b64_json' or 'url' (got {fmt!r})")
        req.encoding_format = fmt
    if req.max_tokens is not None and req.reasoning_tokens > req.max_tokens:
        req.reasoning_tokens = req.max_tokens
    return req


# -- streamed answers --------------------------------------------------------------------------


def _sse(event: str | None, data: bytes) -> bytes:
    head = b"event: %s\n" % event.encode() if event else b""
    return head + b"data: " + data + b"\n\n"


class NativeStream:
    """The events of one streamed answer in an API's own framing (no ``[DONE]``)."""

    native = True
    chat = False

    def __init__(self, *, rid: int, model: bytes, prompt_tokens: int, n_tokens: int, reasoning_tokens: int) -> None:
        self.rid = rid
        self.model = model
        self.prompt_tokens = prompt_tokens
        self.n_tokens = n_tokens
        self.reasoning_tokens = reasoning_tokens

    def opening(self) -> bytes:
        return b""

    def content(self, text: bytes, finish: bytes | None, reasoning: bool = False) -> bytes:
        raise NotImplementedError

    def closing(self, finish: bytes) -> bytes:
        raise NotImplementedError

    def empty_finish(self, finish: bytes) -> bytes:
        return b""

    def malformed_json(self) -> bytes:
        return b'data: {"type":\n\n'

    def deep_json(self) -> bytes:
        return b"data: " + payloads.deep_json() + b"\n\n"

    def huge(self) -> bytes:
        return b"data: " + payloads.padded(b'{"type":"mock.padding"}') + b"\n\n"


class ResponsesStream(NativeStream):
    def _response(self, status: bytes, usage: bytes = b"null") -> bytes:
        return (
            b'{"id":"resp_mock_%d","object":"response","status":"%s","model":%s,"output":[],"usage":%s}'
            % (self.rid, status, self.model, usage)
        )

    def opening(self) -> bytes:
        return b"".join(
            (
                _sse("response.created", b'{"type":"response.created","response":%s}' % self._response(b"in_progress")),
                _sse(
                    "response.output_item.added",
                    b'{"type":"response.output_item.added","output_index":0,"item":{"id":"msg_mock",'
                    b'"type":"message","status":"in_progress","role":"assistant","content":[]}}',
                ),
            )
        )

    def content(self, text: bytes, finish: bytes | None, reasoning: bool = False) -> bytes:
        kind = b"response.reasoning_text.delta" if reasoning else b"response.output_text.delta"
        return b'event: %s\ndata: {"type":"%s","item_id":"msg_mock","output_index":0,"content_index":0,"delta":"%s"}\n\n' % (
            kind, kind, text,
        )  # fmt: skip

    def closing(self, finish: bytes) -> bytes:
        visible = self.n_tokens - self.reasoning_tokens
        usage = (
            b'{"input_tokens":%d,"output_tokens":%d,"output_tokens_details":{"reasoning_tokens":%d},"total_tokens":%d}'
            % (self.prompt_tokens, self.n_tokens, self.reasoning_tokens, self.prompt_tokens + self.n_tokens)
        )
        status = b"completed" if finish == b"stop" else b"incomplete"
        text = payloads.words(self.reasoning_tokens, visible) if visible else b""
        return b"".join(
            (
                _sse("response.output_text.done", b'{"type":"response.output_text.done","item_id":"msg_mock","output_index":0,"content_index":0,"text":"%s"}' % text),
                _sse("response.output_item.done", b'{"type":"response.output_item.done","output_index":0,"item":{"id":"msg_mock","type":"message","status":"completed","role":"assistant"}}'),
                _sse("response." + status.decode(),
                     b'{"type":"response.%s","response":%s}' % (status, self._response(status, usage))),
            )
        )  # fmt: skip


class MessagesStream(NativeStream):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.block = 0
        self.in_thinking = self.reasoning_tokens > 0

    def opening(self) -> bytes:
        start = (
            b'{"type":"message_start","message":{"id":"msg_mock_%d","type":"message","role":"assistant",'
            b'"model":%s,"content":[],"stop_reason":null,"stop_sequence":null,'
            b'"usage":{"input_tokens":%d,"output_tokens":1}}}' % (self.rid, self.model, self.prompt_tokens)
        )
        block = b'{"type":"thinking","thinking":""}' if self.in_thinking else b'{"type":"text","text":""}'
        return b"".join(
            (
                _sse("message_start", start),
                _sse("content_block_start", b'{"type":"content_block_start","index":0,"content_block":%s}' % block),
                _sse("ping", b'{"type": "ping"}'),
            )
        )

    def content(self, text: bytes, finish: bytes | None, reasoning: bool = False) -> bytes:
        if reasoning:
            return _sse(
                "content_block_delta",
                b'{"type":"content_block_delta","index":%d,"delta":{"type":"thinking_delta","thinking":"%s"}}'
                % (self.block, text),
            )
        out = b""
        if self.in_thinking:
            # The thinking block ends (with its signature) and the text block starts.
            self.in_thinking = False
            out = b"".join(
                (
                    _sse("content_block_delta", b'{"type":"content_block_delta","index":%d,"delta":{"type":"signature_delta","signature":"bW9jaw=="}}' % self.block),
                    _sse("content_block_stop", b'{"type":"content_block_stop","index":%d}' % self.block),
                    _sse("content_block_start", b'{"type":"content_block_start","index":%d,"content_block":{"type":"text","text":""}}' % (self.block + 1)),
                )
            )  # fmt: skip
            self.block += 1
        return out + _sse(
            "content_block_delta",
            b'{"type":"content_block_delta","index":%d,"delta":{"type":"text_delta","text":"%s"}}'
            % (self.block, text),
        )

    def closing(self, finish: bytes) -> bytes:
        reason = b"end_turn" if finish == b"stop" else b"max_tokens"
        return b"".join(
            (
                _sse("content_block_stop", b'{"type":"content_block_stop","index":%d}' % self.block),
                _sse(
                    "message_delta",
                    b'{"type":"message_delta","delta":{"stop_reason":"%s","stop_sequence":null},'
                    b'"usage":{"output_tokens":%d}}' % (reason, self.n_tokens),
                ),
                _sse("message_stop", b'{"type":"message_stop"}'),
            )
        )


class GenerateStream(NativeStream):
    """TGI's ``/generate_stream``: one token event each, the last with the whole text."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index = 0

    def content(self, text: bytes, finish: bytes | None, reasoning: bool = False) -> bytes:
        self.index += 1
        if finish is None:
            tail = b'"generated_text":null,"details":null'
        else:
            tail = b'"generated_text":"%s","details":{"finish_reason":"%s","generated_tokens":%d,"seed":null}' % (
                payloads.words(0, self.n_tokens).lstrip(), b"eos_token" if finish == b"stop" else b"length", self.n_tokens,
            )  # fmt: skip
        return b'data:{"index":%d,"token":{"id":%d,"text":"%s","logprob":-0.25,"special":false},%s}\n\n' % (
            self.index, self.index, text, tail,
        )  # fmt: skip

    def closing(self, finish: bytes) -> bytes:
        return b""


_STREAMS: dict[str, type[NativeStream]] = {
    "responses": ResponsesStream,
    "messages": MessagesStream,
    "generate_stream": GenerateStream,
}


def stream_format(endpoint: str, **kwargs: Any) -> NativeStream:
    return _STREAMS[endpoint](**kwargs)


# -- whole bodies ------------------------------------------------------------------------------


def text_body(
    endpoint: str, *, rid: int, created: int, model: bytes, req: Request, n_tokens: int, finish: bytes
) -> bytes:
    """A non-streamed answer of a token-producing API."""
    reasoning = min(req.reasoning_tokens, n_tokens)
    text = payloads.words(reasoning, n_tokens - reasoning) if n_tokens > reasoning else b""
    thought = payloads.words(0, reasoning) if reasoning else b""
    if endpoint == "responses":
        status = b"completed" if finish == b"stop" else b"incomplete"
        items = []
        if reasoning:
            items.append(b'{"type":"reasoning","id":"rs_mock","summary":[],"content":[{"type":"reasoning_text","text":"%s"}]}' % thought)
        items.append(b'{"type":"message","id":"msg_mock","status":"completed","role":"assistant","content":[{"type":"output_text","text":"%s","annotations":[]}]}' % text)
        return (
            b'{"id":"resp_mock_%d","object":"response","created_at":%d,"status":"%s","model":%s,"output":[%s],'
            b'"usage":{"input_tokens":%d,"output_tokens":%d,"output_tokens_details":{"reasoning_tokens":%d},"total_tokens":%d}}'
            % (rid, created, status, model, b",".join(items), req.prompt_tokens, n_tokens, reasoning, req.prompt_tokens + n_tokens)
        )  # fmt: skip
    if endpoint == "messages":
        blocks = []
        if reasoning:
            blocks.append(b'{"type":"thinking","thinking":"%s","signature":"bW9jaw=="}' % thought)
        blocks.append(b'{"type":"text","text":"%s"}' % text)
        reason = b"end_turn" if finish == b"stop" else b"max_tokens"
        return (
            b'{"id":"msg_mock_%d","type":"message","role":"assistant","model":%s,"content":[%s],'
            b'"stop_reason":"%s","stop_sequence":null,"usage":{"input_tokens":%d,"output_tokens":%d}}'
            % (rid, model, b",".join(blocks), reason, req.prompt_tokens, n_tokens)
        )
    # TGI /generate
    return b'{"generated_text":"%s","details":{"finish_reason":"%s","generated_tokens":%d,"seed":null}}' % (
        payloads.words(0, n_tokens).lstrip(), b"eos_token" if finish == b"stop" else b"length", n_tokens,
    )  # fmt: skip


def _png_1x1() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = (1).to_bytes(4, "big") * 2 + bytes((8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x80\x80\x80")) + chunk(b"IEND", b"")


#: the image every image-generation answer carries (a 1x1 grey PNG), and its base64 form.
MOCK_PNG = _png_1x1()
_MOCK_PNG_B64 = base64.b64encode(MOCK_PNG)


def one_shot_body(endpoint: str, *, created: int, model: bytes, req: Request) -> bytes:
    """The answer of a reranker or an image generator."""
    n = req.inputs
    if endpoint == "nim-rankings":
        items = b",".join(b'{"index":%d,"logit":%.4f}' % (i, 1.0 - i / (n + 1)) for i in range(n))
        return b'{"rankings":[%s],"usage":{"prompt_tokens":%d,"total_tokens":%d}}' % (
            items, req.prompt_tokens, req.prompt_tokens,
        )  # fmt: skip
    if endpoint == "cohere-rankings":
        items = b",".join(b'{"index":%d,"relevance_score":%.4f}' % (i, 1.0 - i / (n + 1)) for i in range(n))
        return b'{"id":"rerank-mock","results":[%s],"meta":{"api_version":{"version":"1"},"billed_units":{"search_units":1}}}' % items
    if endpoint == "hf-tei-rankings":
        return b"[" + b",".join(b'{"index":%d,"score":%.4f}' % (i, 1.0 - i / (n + 1)) for i in range(n)) + b"]"
    if req.encoding_format == "url":
        items = b",".join(b'{"url":"https://mock.invalid/image-%d.png"}' % i for i in range(n))
    else:
        items = b",".join(b'{"b64_json":"%s","revised_prompt":null}' % _MOCK_PNG_B64 for _ in range(n))
    return b'{"created":%d,"data":[%s]}' % (created, items)
