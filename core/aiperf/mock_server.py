"""``aiperf mock-server``: an OpenAI-compatible server that knows the truth.

It answers ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings`` and ``/v1/models``
with a fixed vocabulary (:data:`MOCK_WORDS`), sends tokens on an absolute schedule (time to
first token, then one gap per chunk) and reports what it measured itself at ``GET /stats``, so
aiperf's numbers can be checked against the server's own clock. Faults (error statuses, resets,
early closes, malformed stream data, stalls) can be injected at a chosen rate.

This module is imported when the ``aiperf`` CLI builds its parser, so it imports only the
standard library at the top; the server itself lives in :mod:`aiperf._mock`.

Run it with ``aiperf mock-server`` or ``python -m aiperf.mock_server``; use
:class:`aiperf.testing.MockServer` from tests.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiperf._mock.config import MockServerConfig

__all__ = [
    "FAULT_KINDS",
    "STREAM_ENDS",
    "MOCK_WORDS",
    "MockServerConfig",
    "add_arguments",
    "config_from_args",
    "main",
    "serve",
]

#: The vocabulary of every generated answer. Token ``i`` of a response is
#: ``" " + MOCK_WORDS[i % len(MOCK_WORDS)]``; each word is meant to be exactly one token in
#: aiperf's built-in tokenizer, so the server's ``completion_tokens`` and a client-side token
#: count agree.
MOCK_WORDS: tuple[str, ...] = (
    "the", "of", "and", "to", "in", "is", "that", "for",
    "it", "as", "was", "with", "be", "by", "on", "not",
    "he", "this", "are", "or", "his", "from", "at", "which",
    "but", "have", "an", "had", "they", "you", "were", "their",
    "one", "all", "we", "can", "her", "has", "there", "been",
    "if", "more", "when", "will", "would", "who", "so", "no",
    "out", "up", "into", "do", "than", "some", "could", "them",
    "time", "only", "new", "about", "other", "my", "now", "like",
)  # fmt: skip

#: Fault kinds accepted by ``--fault KIND[:RATE]`` (see docs/mock-server.md).
FAULT_KINDS: tuple[str, ...] = (
    "reset",
    "close",
    "disconnect",
    "malformed-sse",
    "malformed-json",
    "stall-first",
    "stall-mid",
    "usage-string",
    "nan",
    "deep-json",
    "huge-event",
    "no-done",
    "empty",
)

#: How a stream ends (``--stream-end``, see docs/mock-server.md): ``done`` sends
#: ``data: [DONE]`` and ends the body; ``finish-only`` never sends ``[DONE]`` (the body ends
#: after the finish_reason and usage chunks, as several engines do); ``done-hold`` sends
#: ``[DONE]`` and then keeps the response open for ``--hold-seconds`` before ending it.
STREAM_ENDS: tuple[str, ...] = ("done", "finish-only", "done-hold")

#: Printed once on stdout when the server is ready; ``aiperf.testing`` reads the port from it.
LISTENING_PREFIX = "aiperf mock server listening on "


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the mock server's flags to ``parser`` (the ``aiperf mock-server`` subcommand)."""
    net = parser.add_argument_group("network")
    net.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    net.add_argument(
        "--port",
        type=int,
        default=0,
        help="port to listen on; 0 picks a free one (default: %(default)s)",
    )

    timing = parser.add_argument_group("timing and output")
    timing.add_argument(
        "--ttft-ms",
        type=float,
        default=0.0,
        help="time from the request's first byte to the first content chunk (default: %(default)s)",
    )
    timing.add_argument(
        "--itl-ms",
        type=float,
        default=0.0,
        help="time per output token between content chunks (default: %(default)s)",
    )
    timing.add_argument(
        "--ttft-per-inflight-ms",
        type=float,
        default=0.0,
        help="added to the TTFT for every other request in flight when a request arrives: "
        "a server that slows down with load (default: %(default)s)",
    )
    timing.add_argument(
        "--output-tokens",
        type=int,
        default=64,
        help="output length when the request has no max_completion_tokens/max_tokens "
        "(default: %(default)s)",
    )
    timing.add_argument(
        "--tokens-per-chunk",
        type=int,
        default=1,
        help="tokens carried by each streamed content chunk (default: %(default)s)",
    )
    timing.add_argument(
        "--model",
        dest="models",
        action="append",
        metavar="NAME",
        help="model name listed by /v1/models; repeatable (default: mock-model). "
        "Any model name is accepted in requests and echoed back.",
    )
    timing.add_argument(
        "--embedding-dimensions",
        type=int,
        default=16,
        help="length of each embedding vector unless the request sets dimensions "
        "(default: %(default)s)",
    )

    faults = parser.add_argument_group("errors and faults")
    faults.add_argument(
        "--error-rate",
        type=float,
        default=0.0,
        help="share of inference requests answered with --error-status (default: %(default)s)",
    )
    faults.add_argument(
        "--error-status",
        type=int,
        default=500,
        help="HTTP status of injected errors, e.g. 500, 503 or 429 (default: %(default)s)",
    )
    faults.add_argument(
        "--retry-after",
        type=int,
        default=1,
        help="Retry-After seconds sent with an injected 429 (default: %(default)s)",
    )
    faults.add_argument(
        "--fault",
        dest="faults",
        action="append",
        metavar="KIND[:RATE]",
        help=f"inject a fault into a share of requests (RATE defaults to 1); repeatable. "
        f"KIND is one of: {', '.join(FAULT_KINDS)}",
    )
    faults.add_argument(
        "--stall-seconds",
        type=float,
        default=30.0,
        help="how long the stall-first and stall-mid faults stall (default: %(default)s)",
    )
    faults.add_argument(
        "--stream-end",
        choices=STREAM_ENDS,
        default="done",
        help="how streams end: [DONE] (done), a finish_reason chunk and no [DONE] "
        "(finish-only), or [DONE] with the response kept open (done-hold) "
        "(default: %(default)s)",
    )
    faults.add_argument(
        "--hold-seconds",
        type=float,
        default=30.0,
        help="how long --stream-end done-hold keeps a response open after [DONE] "
        "(default: %(default)s)",
    )
    faults.add_argument(
        "--idle-timeout",
        type=float,
        default=0.0,
        help="close a keep-alive connection idle for this many seconds, as servers do; "
        "0 never (default: %(default)s)",
    )
    faults.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed for choosing which requests get errors and faults (default: random)",
    )

    stats = parser.add_argument_group("statistics")
    stats.add_argument(
        "--stats-capacity",
        type=int,
        default=1_000_000,
        help="most samples kept per /stats list; beyond it samples are counted as dropped "
        "(default: %(default)s)",
    )
    stats.add_argument(
        "--distinct-replies",
        action="store_true",
        help="chat and completions answers made of words drawn from a hash of the request body: "
        "the same request always gets the same answer, different requests different ones "
        "(default: every answer is the same word sequence)",
    )
    stats.add_argument(
        "--record-header",
        dest="record_headers",
        action="append",
        metavar="NAME",
        help="keep this request header's value in each request of /stats?raw=1; repeatable",
    )
    stats.add_argument(
        "--record-bodies",
        action="store_true",
        help="keep each inference request's JSON body and answer text in /stats?raw=1 (memory!)",
    )
    stats.add_argument(
        "--prefix-block-size",
        type=int,
        default=16,
        help="words per block of the prefix cache /stats reports on (prompt prefixes seen "
        "before, per request: prefix_cached_tokens); 0 keeps none (default: %(default)s)",
    )


def config_from_args(args: argparse.Namespace) -> MockServerConfig:
    """Build the config from parsed flags; raises :class:`aiperf.UsageError` on a bad value."""
    from aiperf._mock.config import MockServerConfig, parse_fault

    faults: dict[str, float] = {}
    for text in args.faults or ():
        kind, rate = parse_fault(text)
        if kind in faults:
            from aiperf._types import UsageError

            raise UsageError(f"--fault: {kind} is given twice (got {text!r})")
        faults[kind] = rate
    return MockServerConfig(
        host=args.host,
        port=args.port,
        ttft_ms=args.ttft_ms,
        itl_ms=args.itl_ms,
        ttft_per_inflight_ms=args.ttft_per_inflight_ms,
        output_tokens=args.output_tokens,
        tokens_per_chunk=args.tokens_per_chunk,
        models=args.models or ("mock-model",),
        embedding_dimensions=args.embedding_dimensions,
        error_rate=args.error_rate,
        error_status=args.error_status,
        retry_after=args.retry_after,
        faults=faults,
        stall_seconds=args.stall_seconds,
        stream_end=args.stream_end,
        hold_seconds=args.hold_seconds,
        idle_timeout=args.idle_timeout,
        seed=args.seed,
        stats_capacity=args.stats_capacity,
        distinct_replies=args.distinct_replies,
        record_headers=tuple(args.record_headers or ()),
        record_bodies=args.record_bodies,
        prefix_block_size=args.prefix_block_size,
    )


def main(args: argparse.Namespace) -> int:
    """Run the server until SIGINT/SIGTERM; returns the process exit code."""
    from aiperf._types import AiperfError

    try:
        config = config_from_args(args)
    except AiperfError as exc:
        print(f"aiperf mock-server: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return serve(config)


def serve(config: MockServerConfig) -> int:
    """Serve ``config`` in this process until SIGINT/SIGTERM; returns the exit code."""
    from aiperf._mock.server import run

    return run(config)


def __getattr__(name: str) -> Any:
    if name == "MockServerConfig":
        from aiperf._mock.config import MockServerConfig

        return MockServerConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _OneLineParser(argparse.ArgumentParser):
    """Report bad flags as one line (no usage dump) when run as ``python -m``."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _standalone(argv: list[str] | None = None) -> int:
    parser = _OneLineParser(
        prog="python -m aiperf.mock_server",
        description="OpenAI-compatible mock server that reports its own timing at /stats.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    import logging

    import structlog

    if not structlog.is_configured():
        # stdout carries exactly one line (the listening line) for the parent process.
        structlog.configure(
            logger_factory=structlog.PrintLoggerFactory(sys.stderr),
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        )
    return main(args)


if __name__ == "__main__":
    sys.exit(_standalone())
