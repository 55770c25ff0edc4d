"""The mock server's options as one frozen value, checked the way the CLI reports them."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from aiperf._types import UsageError
from aiperf.mock_server import FAULT_KINDS, STREAM_ENDS

_MAX_PORT = 65535


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _finite_non_negative(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"{_flag(attribute.name)}: must be a number >= 0 (got {value})")


def _positive_int(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if value < 1:
        raise UsageError(f"{_flag(attribute.name)}: must be >= 1 (got {value})")


def _non_negative_int(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if value < 0:
        raise UsageError(f"{_flag(attribute.name)}: must be >= 0 (got {value})")


def _rate(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise UsageError(f"{_flag(attribute.name)}: must be between 0 and 1 (got {value})")


def _port(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if not 0 <= value <= _MAX_PORT:
        raise UsageError(f"--port: must be between 0 and {_MAX_PORT} (got {value})")


def _error_status(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if not 400 <= value <= 599:
        raise UsageError(f"--error-status: must be an HTTP error status 400-599 (got {value})")


def _names(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _models(instance: Any, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    if not value or any(not name.strip() for name in value):
        raise UsageError(f"--model: names must not be empty (got {list(value)!r})")


def _header_names(instance: Any, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    for name in value:
        if not name or not all(c.isascii() and (c.isalnum() or c in "!#$%&'*+-.^_`|~") for c in name):
            raise UsageError(f"--record-header: expected a header name (got {name!r})")


def _stream_end(instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in STREAM_ENDS:
        raise UsageError(
            f"--stream-end: expected one of {', '.join(STREAM_ENDS)} (got {value!r})"
        )


def normalize_fault_kind(kind: str) -> str:
    name = kind.strip().lower().replace("_", "-")
    if name not in FAULT_KINDS:
        raise UsageError(
            f"--fault: unknown kind {kind!r}; expected one of {', '.join(FAULT_KINDS)}"
        )
    return name


def parse_fault(text: str) -> tuple[str, float]:
    """``"reset:0.1"`` -> ``("reset", 0.1)``; a kind alone means rate 1."""
    kind, sep, rate_text = text.partition(":")
    if not sep:
        return normalize_fault_kind(kind), 1.0
    try:
        rate = float(rate_text)
    except ValueError:
        raise UsageError(
            f"--fault: expected KIND[:RATE] with RATE a number (got {text!r})"
        ) from None
    return normalize_fault_kind(kind), rate


def _to_faults(
    value: Mapping[str, float] | Iterable[tuple[str, float]],
) -> tuple[tuple[str, float], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    faults: dict[str, float] = {}
    for kind, rate in items:
        name = normalize_fault_kind(kind)
        if name in faults:
            raise UsageError(f"--fault: {name} is given twice")
        faults[name] = float(rate)
    return tuple(faults.items())


def _check_faults(
    instance: Any, attribute: attrs.Attribute[Any], value: tuple[tuple[str, float], ...]
) -> None:
    for kind, rate in value:
        if not 0.0 <= rate <= 1.0:
            raise UsageError(f"--fault: the rate of {kind} must be between 0 and 1 (got {rate})")


@attrs.frozen(kw_only=True)
class MockServerConfig:
    """Everything ``aiperf mock-server`` can be told; each field is the flag of the same name."""

    host: str = "127.0.0.1"
    port: int = attrs.field(default=0, validator=_port)
    ttft_ms: float = attrs.field(default=0.0, converter=float, validator=_finite_non_negative)
    itl_ms: float = attrs.field(default=0.0, converter=float, validator=_finite_non_negative)
    #: added to the TTFT for every other request in flight when a request arrives: a server
    #: that slows down with load, so a search for the largest load has a knee to find.
    ttft_per_inflight_ms: float = attrs.field(
        default=0.0, converter=float, validator=_finite_non_negative
    )
    output_tokens: int = attrs.field(default=64, validator=_non_negative_int)
    tokens_per_chunk: int = attrs.field(default=1, validator=_positive_int)
    models: tuple[str, ...] = attrs.field(
        default=("mock-model",), converter=_names, validator=_models
    )
    embedding_dimensions: int = attrs.field(default=16, validator=_positive_int)
    error_rate: float = attrs.field(default=0.0, converter=float, validator=_rate)
    error_status: int = attrs.field(default=500, validator=_error_status)
    retry_after: int = attrs.field(default=1, validator=_non_negative_int)
    #: (kind, rate) pairs; a mapping or pairs are accepted.
    faults: tuple[tuple[str, float], ...] = attrs.field(
        default=(), converter=_to_faults, validator=_check_faults
    )
    stall_seconds: float = attrs.field(
        default=30.0, converter=float, validator=_finite_non_negative
    )
    stream_end: str = attrs.field(default="done", validator=_stream_end)
    hold_seconds: float = attrs.field(
        default=30.0, converter=float, validator=_finite_non_negative
    )
    #: close keep-alive connections idle this long (0: never).
    idle_timeout: float = attrs.field(
        default=0.0, converter=float, validator=_finite_non_negative
    )
    seed: int | None = None
    stats_capacity: int = attrs.field(default=1_000_000, validator=_positive_int)
    #: chat and completions answers drawn from a hash of the request body (see payloads.Reply).
    distinct_replies: bool = False
    #: request headers whose values each trace keeps (names, any case).
    record_headers: tuple[str, ...] = attrs.field(default=(), converter=tuple, validator=_header_names)
    #: each trace keeps its request's JSON body and its answer's text.
    record_bodies: bool = False
    #: words per block of the prefix cache the mock keeps (0: none); see _mock/prefix.py.
    prefix_block_size: int = attrs.field(default=16, validator=_non_negative_int)

    def __attrs_post_init__(self) -> None:
        total = self.error_rate + sum(rate for _, rate in self.faults)
        if total > 1.0 + 1e-9:
            raise UsageError(
                f"--error-rate and --fault rates add up to {total:g}; they must add up to at most 1"
            )

    def to_argv(self) -> list[str]:
        """The command-line flags that reproduce this config (``--port`` included)."""
        argv = [
            f"--host={self.host}",
            "--port", str(self.port),
            "--ttft-ms", repr(self.ttft_ms),
            "--itl-ms", repr(self.itl_ms),
            "--ttft-per-inflight-ms", repr(self.ttft_per_inflight_ms),
            "--output-tokens", str(self.output_tokens),
            "--tokens-per-chunk", str(self.tokens_per_chunk),
            "--embedding-dimensions", str(self.embedding_dimensions),
            "--error-rate", repr(self.error_rate),
            "--error-status", str(self.error_status),
            "--retry-after", str(self.retry_after),
            "--stall-seconds", repr(self.stall_seconds),
            "--stream-end", self.stream_end,
            "--hold-seconds", repr(self.hold_seconds),
            "--idle-timeout", repr(self.idle_timeout),
            "--stats-capacity", str(self.stats_capacity),
            "--prefix-block-size", str(self.prefix_block_size),
        ]  # fmt: skip
        for name in self.models:
            argv.append(f"--model={name}")
        for kind, rate in self.faults:
            argv += ["--fault", f"{kind}:{rate!r}"]
        if self.seed is not None:
            argv += ["--seed", str(self.seed)]
        if self.distinct_replies:
            argv.append("--distinct-replies")
        for name in self.record_headers:
            argv += ["--record-header", name]
        if self.record_bodies:
            argv.append("--record-bodies")
        return argv

    def as_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["faults"] = dict(self.faults)
        data["models"] = list(self.models)
        data["record_headers"] = list(self.record_headers)
        return data
