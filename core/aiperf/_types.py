"""The values that flow through a run, and the interfaces plugins implement.

Everything here is re-exported from :mod:`aiperf`; plugins never import this module directly.
Times inside a run are ``time.perf_counter_ns()`` values; :meth:`RunContext.to_wall_ns` turns
them into Unix-epoch nanoseconds for exports and telemetry.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

if TYPE_CHECKING:
    import argparse

    import trio

    from aiperf._config import ProfileConfig
    from aiperf._health import MeasurementHealth
    from aiperf._metrics import MetricSpec


# -- errors ----------------------------------------------------------------------------------


class AiperfError(Exception):
    """Base class of errors aiperf reports as one line, never as a traceback."""

    exit_code = 1


class UsageError(AiperfError):
    """The user asked for something impossible (bad flag, bad value, bad file): exit 2."""

    exit_code = 2


class MissingExtra(UsageError):
    """A feature's package is not installed. The message (which names the ``pip install``
    command) is printed as it is, without the ``aiperf: error:`` prefix."""

    exit_code = 1


class RunFailure(AiperfError):
    """The run could not be carried out (server not listening, every request failed): exit 1."""

    exit_code = 1


# -- requests --------------------------------------------------------------------------------


class Phase(enum.StrEnum):
    WARMUP = "warmup"
    PROFILE = "profile"


class RunStatus(enum.StrEnum):
    """How a run ended; the names are MLflow's run states."""

    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


@attrs.frozen(kw_only=True)
class Prompt:
    """One request's input, made before the clock starts."""

    text: str
    input_tokens: int
    max_tokens: int | None = None
    #: chat messages when the dataset gave them; otherwise endpoints wrap ``text``.
    messages: tuple[dict[str, Any], ...] | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)
    #: images to send with the text, as ``data:`` or ``http(s):`` URLs (made before the clock).
    images: tuple[str, ...] = ()
    #: audio clips to send with the text: ``(base64 data, format)`` pairs, e.g. ``("UklG...", "wav")``.
    audio: tuple[tuple[str, str], ...] = ()
    #: what the inputs weigh (``input_image_bytes``, ...), recorded per request.
    input_values: dict[str, float] = attrs.field(factory=dict)
    #: on a fixed schedule: when this request leaves, in ms after the schedule starts.
    send_at_ms: float | None = None


@attrs.frozen(kw_only=True)
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None


@attrs.frozen(kw_only=True)
class TokenCounts:
    """One request's token counts from both sources, and which one its metrics used.

    ``server`` is the response's ``usage`` once checked (``None`` when absent or ignored as
    absurd, then ``usage_ignored`` says why); ``client_*`` are the tokenizer's counts.
    """

    source: str
    server: Usage | None = None
    usage_ignored: str | None = None
    client_input: int | None = None
    client_output: int | None = None
    client_reasoning: int | None = None
    client_first_chunk: int | None = None


@attrs.frozen(kw_only=True)
class ResponseData:
    """What an endpoint parser found in one response body or one stream event."""

    text: str = ""
    reasoning: str = ""
    usage: Usage | None = None
    model: str | None = None
    #: the chunk's (or body's) ``finish_reason`` when it was not null: the answer is complete.
    finish_reason: str | None = None
    #: per-request metric values the response itself gives (base units), e.g. ``num_images``
    #: of an image-generation body; None for text APIs.
    values: dict[str, float] | None = None


#: each field's slot setter, in field order (response_data fills them in that order).
_RD_SET: tuple[Callable[[Any, Any], None], ...] = tuple(
    ResponseData.__dict__[field.name].__set__ for field in attrs.fields(ResponseData)
)
_new = object.__new__


def response_data(
    text: str, reasoning: str, usage: Usage | None, model: str | None, finish_reason: str | None
) -> ResponseData:
    """``ResponseData(...)`` for the parsers of every stream event, in a third of the time.

    A frozen attrs class sets each field through ``object.__setattr__`` (1.4 µs for this
    one); a stream makes one per token, so the chat and completion parsers fill the slots
    directly. The result is an ordinary ResponseData, equal to the one the constructor makes.
    """
    data = _new(ResponseData)
    set_text, set_reasoning, set_usage, set_model, set_finish, set_values = _RD_SET
    set_text(data, text)
    set_reasoning(data, reasoning)
    set_usage(data, usage)
    set_model(data, model)
    set_finish(data, finish_reason)
    set_values(data, None)
    return data


@attrs.frozen(kw_only=True)
class ErrorInfo:
    #: ``timeout``, an HTTP status such as ``"500"``, ``parse_error``, ``incomplete_stream``,
    #: ``empty_response``, ``no_content``, ``redirect``, ``server_error_body``,
    #: ``response_too_large``, or a network failure (``ConnectError``, ``ReadError``, ...).
    type: str
    message: str


@attrs.define(kw_only=True, slots=True)
class RequestRecord:
    """Raw timing of one request, filled in by the worker as bytes arrive.

    ``chunk_ns`` holds the arrival time of every chunk that carried content (text or
    reasoning), stamped when its bytes came off the socket, before any parsing.
    """

    index: int
    phase: Phase
    worker: int = 0
    #: the machine of the worker that sent it, when the load ran on several (a Ray cluster);
    #: None: this one.
    node: str | None = None
    #: when an open-loop schedule wanted this request sent (None for closed loop).
    intended_ns: int | None = None
    #: when the first byte of the request was handed to the kernel (TTFT starts here).
    start_ns: int = 0
    #: when the last byte of the request was handed to the kernel.
    sent_end_ns: int | None = None
    response_ns: int | None = None
    end_ns: int | None = None
    chunk_ns: list[int] = attrs.field(factory=list)
    #: text of the first content chunk, to count the tokens it carried.
    first_chunk_text: str = ""
    output_text: str = ""
    reasoning_text: str = ""
    status_code: int | None = None
    error: ErrorInfo | None = None
    usage: Usage | None = None
    #: set by the metrics processor: both token counts and the one the metrics used.
    token_counts: TokenCounts | None = None
    response_model: str | None = None
    input_tokens: int | None = None
    max_tokens: int | None = None
    cancelled: bool = False
    #: times the request was sent again because the first try provably never reached the
    #: server (a keep-alive connection the server had closed).
    retries: int = 0
    #: index in ``chunk_ns`` of the first chunk with answer text, and of the first with
    #: reasoning text (None when there was none): time to first output / reasoning token.
    first_answer_chunk: int | None = None
    first_reasoning_chunk: int | None = None
    #: stream events of a type the endpoint does not know, skipped (counted for a note).
    ignored_events: int = 0
    #: per-request values known before sending (input image/audio sizes) or given by the
    #: response (images returned, passages ranked), in base units; merged into the metrics.
    values: dict[str, float] | None = None
    #: the session this request is a turn of, and which turn (0 is the first); None outside
    #: conversations (``--conversation-num``, a multi_turn input file).
    session_id: str | None = None
    turn: int | None = None
    #: closed by the client on purpose (``--request-cancellation-rate``): counted apart,
    #: never as an error, never in the statistics.
    client_cancelled: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


@attrs.frozen(kw_only=True)
class RequestMetrics:
    """Per-request metric values in base units (ns for times, tokens for counts).

    ``values`` is keyed by metric tag (see :data:`aiperf.METRICS`);
    ``inter_chunk_latency_ns`` holds every gap between consecutive content chunks.
    """

    index: int
    phase: Phase
    ok: bool
    error: ErrorInfo | None
    start_ns: int
    end_ns: int
    values: dict[str, float]
    inter_chunk_latency_ns: tuple[int, ...] = ()
    response_model: str | None = None


# -- live bus --------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class RequestDone:
    """A request finished (successfully or not) and its metrics are computed."""

    metrics: RequestMetrics
    record: RequestRecord


@attrs.frozen(kw_only=True)
class Progress:
    """Counters of the run, published about once a second."""

    phase: Phase
    sent: int
    completed: int
    failed: int
    in_flight: int
    elapsed_s: float
    #: the largest event-loop lag of the processes that send and read requests since the
    #: previous Progress (ms): how late a response may have been read. None when not measured.
    loop_lag_ms: float | None = None
    #: successful requests per second of the measured phase so far (0 before it starts).
    ok_rate: float = 0.0
    #: the requests the run finishes, warm-up included, when known in advance (else None).
    total: int | None = None
    #: the last one, published once the load is over (the final counts).
    final: bool = False


@attrs.frozen(kw_only=True)
class PhaseChanged:
    phase: Phase
    perf_ns: int


@attrs.frozen(kw_only=True)
class HardwareSample:
    """One reading of one GPU. Any sampler may publish these; absent fields are ``None``.

    Units follow the OTel hardware conventions: utilization as a ratio (1.0 = 100 %), bytes,
    watts, joules (a counter that only grows), degrees Celsius, MHz.
    """

    source: str
    host: str
    gpu_index: int
    uuid: str
    name: str
    wall_ns: int
    phase: Phase | None
    gpu_utilization: float | None = None
    memory_used_bytes: float | None = None
    memory_total_bytes: float | None = None
    power_watts: float | None = None
    energy_joules: float | None = None
    temperature_celsius: float | None = None
    sm_clock_mhz: float | None = None


@attrs.frozen(kw_only=True)
class ServerMetricSample:
    """One value an inference server reported on its own metrics endpoint, as a live gauge.

    ``name`` is a common name (``requests_running``, ``kv_cache_usage``, ...) or, for what is
    derived from a counter or a histogram, that name with a suffix: ``.rate`` (per second over
    the last scrape interval), ``.p50`` / ``.p99`` (of the observations in that interval).
    ``labels`` are the engine's own labels of the series (``model_name``, ...).
    """

    source: str
    name: str
    value: float
    unit: str
    wall_ns: int
    phase: Phase | None
    labels: tuple[tuple[str, str], ...] = ()


LiveEvent = RequestDone | Progress | PhaseChanged | HardwareSample | ServerMetricSample


# -- the run ---------------------------------------------------------------------------------


@attrs.define(kw_only=True)
class RunContext:
    """What every plugin may know about the run in progress."""

    config: ProfileConfig
    run_dir: Path
    benchmark_id: str
    version: str
    #: ``gen_ai.provider.name``: from ``--gen-ai-provider`` or inferred from the URL host.
    provider: str
    #: ``gen_ai.operation.name`` of the endpoint type (chat, text_completion, embeddings).
    operation_name: str
    server_address: str
    server_port: int
    #: e.g. ``concurrency4`` or ``request_rate10``: how the load was set.
    load_setting: str
    #: one (wall, perf) pair taken together, to place perf_counter times on the calendar.
    anchor_wall_ns: int
    anchor_perf_ns: int
    phase: Phase = Phase.WARMUP
    #: perf_counter_ns bounds of the measured phase, set when it starts and ends.
    profile_start_ns: int | None = None
    profile_end_ns: int | None = None
    cancelled: bool = False
    #: the tokenizer of the run (``--tokenizer``), for processors that count tokens.
    tokenizer: Tokenizer | None = None
    #: plugin scratch space, keyed by plugin name; plugins coordinate their own objects here.
    state: dict[str, Any] = attrs.field(factory=dict)
    #: every metric of the run by tag, the core's and those plugins registered
    #: (``aiperf_register_metrics``); the core's alone (:data:`aiperf.METRICS`) unless given.
    metrics: dict[str, MetricSpec] = attrs.field(factory=lambda: _core_metrics())

    def to_wall_ns(self, perf_ns: int) -> int:
        return self.anchor_wall_ns + (perf_ns - self.anchor_perf_ns)

    def redacted_config(self) -> dict[str, Any]:
        """The configuration as plain data with every secret replaced by ``***``."""
        from aiperf._config import redacted_config

        return redacted_config(self.config)


def _core_metrics() -> dict[str, MetricSpec]:
    from aiperf._metrics import METRICS  # imports this module: not at the top

    return dict(METRICS)


@attrs.frozen(kw_only=True)
class MetricStats:
    tag: str
    header: str
    unit: str
    count: int
    avg: float | None = None
    min: float | None = None
    max: float | None = None
    std: float | None = None
    percentiles: dict[str, float] = attrs.field(factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"unit": self.unit, "header": self.header}
        for name in ("avg", "min", "max", "std"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        out.update(self.percentiles)
        out["count"] = self.count
        return out


@attrs.frozen(kw_only=True)
class ErrorSummary:
    type: str
    count: int
    first_message: str


@attrs.frozen(kw_only=True)
class ReportSection:
    """A block a sampler or processor adds to the exports (e.g. GPU statistics).

    ``data`` goes into ``profile_export_aiperf.json`` under ``name``; ``rows`` become a table
    in the CSV (and the console, when ``console`` is true).
    """

    name: str
    title: str
    data: dict[str, Any]
    rows: tuple[dict[str, Any], ...] = ()
    console: bool = False


@attrs.frozen(kw_only=True)
class RunResult:
    """The summary of a run, as the exporters see it."""

    status: RunStatus
    was_cancelled: bool
    #: per-request metrics (distributions), display units; keyed by tag.
    metrics: dict[str, MetricStats]
    #: run metrics (one value each), display units; keyed by tag.
    run_metrics: dict[str, MetricStats]
    errors: tuple[ErrorSummary, ...]
    start_wall_ns: int | None
    end_wall_ns: int | None
    sections: tuple[ReportSection, ...] = ()
    #: client health: how late open-loop sends went out (ms), when measured.
    send_lag: MetricStats | None = None
    #: client health: the load processes' event-loop lag and CPU, and the verdict on them
    #: (``measurement_health`` in the summary); None when the load never ran.
    health: MeasurementHealth | None = None
    #: lines the sinks and samplers reported at the end (drops, failed exports).
    notes: tuple[str, ...] = ()
    #: why the results hold only part of the run (a worker process died), or None.
    partial_reason: str | None = None

    @property
    def partial(self) -> bool:
        return self.partial_reason is not None

    def value(self, tag: str, stat: str = "avg") -> float | None:
        """Look a statistic up by metric tag, e.g. ``result.value("time_to_first_token", "p99")``."""
        stats = self.metrics.get(tag) or self.run_metrics.get(tag)
        if stats is None:
            return None
        return stats.as_dict().get(stat)


# -- plugin interfaces -----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class EndpointType:
    """An API shape aiperf can talk to (``--endpoint-type NAME``)."""

    name: str
    #: ``gen_ai.operation.name`` for telemetry.
    operation_name: str
    default_path: str
    build_payload: Callable[[Prompt, ProfileConfig], dict[str, Any]]
    #: parse a whole (non-streaming) JSON body.
    parse_response: Callable[[Any], ResponseData]
    #: parse the JSON of one streamed SSE event.
    parse_chunk: Callable[[Any], ResponseData]
    supports_streaming: bool = True
    #: False for embeddings: no output tokens, no TTFT.
    produces_tokens: bool = True
    #: ``gen_ai.provider.name`` the API shape implies (``anthropic`` for messages); used when
    #: neither ``--gen-ai-provider`` nor the URL's host names one. None: nothing implied.
    provider: str | None = None
    #: the path streamed requests go to when it differs (TGI's ``/generate_stream``).
    streaming_path: str | None = None
    #: headers the API wants, from the run's config (the Messages API's ``x-api-key`` and
    #: ``anthropic-version``); they replace ``Authorization: Bearer``.
    headers: Callable[[ProfileConfig], dict[str, str]] | None = None
    #: a fresh event parser for each stream, for APIs whose events only make sense in order
    #: (``message_start`` before ``content_block_delta``); None: ``parse_chunk`` for every event.
    new_stream_parser: Callable[[], Callable[[Any], ResponseData]] | None = None
    #: the endpoint specialised for one run's config (a template read once); None: as is.
    bind: Callable[[EndpointType, ProfileConfig], EndpointType] | None = None
    #: True when a stream that ends cleanly is complete without ``[DONE]`` or a finish reason
    #: (a user's template cannot say which event ends the answer).
    complete_at_body_end: bool = False


@runtime_checkable
class LoadContext(Protocol):
    """What the core hands a load strategy: permits to send, and a way to send."""

    # read-only: a strategy reads these, and the core's contexts are frozen or computed
    @property
    def concurrency(self) -> int | None: ...

    @property
    def request_rate(self) -> float | None: ...

    @property
    def random(self) -> Any:
        """Seeded random generator for the run (use it for arrival jitter)."""

    def claim(self) -> int | None:
        """Reserve the next request; ``None`` once the count or duration is reached."""

    async def execute(self, index: int, intended_ns: int | None = None, sent: trio.Event | None = None) -> None:
        """Send request ``index`` now and wait for it to finish; ``sent`` (optional) is set as
        soon as its bytes are with the kernel (or it failed before)."""

    def to_perf_ns(self, trio_time: float) -> int:
        """Convert a ``trio.current_time()`` value to ``perf_counter_ns`` (for intended times)."""

    def prompt(self, index: int) -> Prompt:
        """The prompt request ``index`` sends (its ``send_at_ms`` places it on a fixed schedule)."""


class LoadStrategy(Protocol):
    async def drive(self, ctx: LoadContext) -> None:
        """Send requests through ``ctx`` until ``ctx.claim()`` returns ``None``."""


@attrs.frozen(kw_only=True)
class LoadStrategyType:
    """A way to schedule requests. ``concurrency`` is chosen without ``--request-rate``; with it,
    the strategy named by ``--request-rate-mode`` (constant, poisson, or a plugin's)."""

    name: str
    create: Callable[[ProfileConfig], LoadStrategy]
    description: str = ""


class RecordProcessor(Protocol):
    """Computes per-request metrics from a finished record. Runs off the request path."""

    name: str
    #: lower runs first; the built-in timing processor is 0.
    order: int

    def process(self, record: RequestRecord, values: dict[str, float], run: RunContext) -> None:
        """Add or change entries of ``values`` (base units) for this request."""


class LiveSink(Protocol):
    """Receives live events while the benchmark runs (OTel, MLflow, ...).

    The core calls :meth:`open` before the measured phase, runs :meth:`run` in its own task
    with a bounded channel (events that do not fit are dropped and counted), then calls
    :meth:`close`. Blocking SDK calls belong in ``trio.to_thread.run_sync``.
    """

    name: str

    async def open(self, run: RunContext) -> None: ...

    async def run(self, events: trio.MemoryReceiveChannel[LiveEvent]) -> None: ...

    async def close(self, status: RunStatus) -> None: ...

    def report(self) -> str | None:
        """One line for the end of the run (what was lost), or ``None`` when all went well."""

    # Optional: ``backlog() -> str | None``, a few words on what the sink still has to send
    # ("1,200 points to send"); shown while the end of a run waits on the sinks.
    # Optional: ``events``, a tuple of event types: only events of these types reach it.
    # Optional: ``in_process = True``: the sink is cheap (no threads, microseconds per event),
    # so it does not move the load into a worker process (the progress line).


class SamplerContext(Protocol):
    run: RunContext

    def publish(self, event: LiveEvent) -> None:
        """Put an event on the live bus (never blocks)."""

    async def phase_started(self, phase: Phase) -> None:
        """Return once ``phase`` has started (at once if it already has), for a reading taken
        right at the start. The measured phase (``Phase.PROFILE``) is always announced; with
        worker processes, up to one of their message intervals (50 ms) after it began."""


class Sampler(Protocol):
    """Samples something beside the benchmark (GPU telemetry, ...)."""

    name: str

    async def run(self, ctx: SamplerContext) -> None:
        """Sample until cancelled. Blocking calls go through ``trio.to_thread.run_sync``."""

    def sections(self, run: RunContext, result: RunResult) -> Sequence[ReportSection]:
        """Summaries for the exports, restricted to the measured phase."""

    def report(self) -> str | None: ...

    # Optional: ``async def before_profile(self) -> None``: called right before the measured
    # phase (after the warm-up), while ``run`` is going; returns once the sampler has taken
    # the readings it wants from before the phase (a server's counters). The phase's first
    # request waits for every sampler's, at most 2 s. (With worker processes and a warm-up,
    # the phase starts in the workers: it is not called, and ``phase_started`` is the cue.)


class RunWriter(Protocol):
    """Writes a file of the run while it goes: ``inputs.json`` and the first ``metadata.json``
    before the load, ``profile_export.jsonl`` a line per request.

    :meth:`open` runs once the run directory exists, before the load; the optional
    ``write(record, metrics)`` is called for every request the run sent, in the process
    that books the requests (the ``aiperf profile`` process), on the path of the request loop:
    it must cost microseconds. ``metrics`` is ``None`` for a request that did not finish
    (cancelled, closed on purpose by the client, lost with a worker process); those are
    never in the statistics. A ``write`` that raises is logged once and gets no more requests.
    :meth:`close` runs after the load.
    """

    name: str

    def open(self, run: RunContext) -> Sequence[Path]:
        """Create the files; return them (they join the run's list of files)."""

    def close(self) -> str | None:
        """Close the files; one line for the end of the run (what was lost), or ``None``."""

    # Optional: ``write(record: RequestRecord, metrics: RequestMetrics | None) -> None``.
    # Optional: ``flush() -> None``, called before a second Ctrl-C ends the process at once.


class Exporter(Protocol):
    """Runs after the benchmark. ``order < 100`` writes local files; ``>= 100`` uploads."""

    name: str
    order: int

    def export(self, run: RunContext, result: RunResult) -> Sequence[Path]:
        """Write or upload; return the paths written (may be empty)."""


class Tokenizer(Protocol):
    # read-only, so that a frozen class (the built-in tokenizers are) satisfies it
    @property
    def name(self) -> str: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def count(self, text: str) -> int: ...


class Dataset(Protocol):
    def load(self) -> Sequence[Prompt]:
        """Return the prompt pool; the run cycles through it. Called before the clock starts."""


@attrs.frozen(kw_only=True)
class DatasetType:
    """A prompt source. ``input_file`` is chosen when ``--input-file`` is given, else
    ``synthetic``; ``--dataset NAME`` picks any registered one."""

    name: str
    create: Callable[[ProfileConfig, Tokenizer], Dataset]
    description: str = ""


@attrs.frozen(kw_only=True)
class Command:
    """A subcommand added by a plugin (``aiperf plot``)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    #: returns the process exit code.
    run: Callable[[argparse.Namespace], int]
    #: what ``aiperf NAME --help`` says above the flags (default: ``help``).
    description: str = ""
