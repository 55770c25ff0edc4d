"""Every OpenTelemetry name aiperf emits, in one place.

GenAI client conventions as of semantic conventions v1.41 (still marked Development, which is
why no name is spelled anywhere else), hardware conventions for GPUs, and aiperf's own
``aiperf.*`` dimensions.
"""

from __future__ import annotations

from typing import Final

# -- GenAI client metrics ----------------------------------------------------------------------

OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
TOKEN_USAGE: Final = "gen_ai.client.token.usage"
TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.operation.time_to_first_chunk"
TIME_PER_OUTPUT_CHUNK: Final = "gen_ai.client.operation.time_per_output_chunk"

SECONDS: Final = "s"
TOKENS: Final = "{token}"

#: the spec's explicit boundaries for operation.duration (seconds).
DURATION_BUCKETS: Final = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
#: the duration boundaries with 1, 2.5 and 5 ms added below: chunk gaps of a fast server are
#: mostly under 10 ms, where the spec's first bucket would lump them all together.
CHUNK_BUCKETS: Final = (0.001, 0.0025, 0.005, *DURATION_BUCKETS)
#: the spec's explicit boundaries for token.usage.
TOKEN_BUCKETS: Final = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)

# -- GenAI attributes --------------------------------------------------------------------------

OPERATION_NAME: Final = "gen_ai.operation.name"
PROVIDER_NAME: Final = "gen_ai.provider.name"
REQUEST_MODEL: Final = "gen_ai.request.model"
RESPONSE_MODEL: Final = "gen_ai.response.model"
TOKEN_TYPE: Final = "gen_ai.token.type"
TOKEN_TYPE_INPUT: Final = "input"
TOKEN_TYPE_OUTPUT: Final = "output"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
ERROR_TYPE: Final = "error.type"

# span-only attributes
REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
REQUEST_STREAM: Final = "gen_ai.request.stream"
RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"

# -- aiperf dimensions -------------------------------------------------------------------------

BENCHMARK_ID: Final = "aiperf.benchmark_id"
ENDPOINT_TYPE: Final = "aiperf.endpoint_type"
PHASE: Final = "aiperf.phase"
LOAD_SETTING: Final = "aiperf.load_setting"
#: spans only: a per-request id never goes on a metric (it would make every request a series).
REQUEST_INDEX: Final = "aiperf.request.index"
#: the span event marking the first content chunk.
FIRST_CHUNK_EVENT: Final = "aiperf.first_chunk"

# -- metrics plugins registered (aiperf_register_metrics) ----------------------------------------

#: a histogram ``aiperf.metric.<tag>`` per request metric a plugin registered, in the unit the
#: plugin gave, with the GenAI attributes of the request.
PLUGIN_METRIC_PREFIX: Final = "aiperf.metric."
#: the OpenTelemetry SDK's default histogram boundaries: aiperf knows nothing of a plugin
#: metric's range.
PLUGIN_BUCKETS: Final = (0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000)

# -- run progress (aiperf's own instruments) ----------------------------------------------------

REQUESTS_SENT: Final = "aiperf.client.requests.sent"
REQUESTS_COMPLETED: Final = "aiperf.client.requests.completed"
REQUESTS_FAILED: Final = "aiperf.client.requests.failed"
REQUESTS_IN_FLIGHT: Final = "aiperf.client.requests.in_flight"
REQUESTS: Final = "{request}"
#: the largest event-loop lag of the load processes since the previous reading (seconds):
#: how late aiperf may have read a response (measurement health, see docs/performance.md).
LOOP_LAG: Final = "aiperf.client.loop_lag"

# -- hardware (GPU) ----------------------------------------------------------------------------

HW_GPU_UTILIZATION: Final = "hw.gpu.utilization"
HW_GPU_MEMORY_USAGE: Final = "hw.gpu.memory.usage"
HW_GPU_MEMORY_LIMIT: Final = "hw.gpu.memory.limit"
HW_POWER: Final = "hw.power"
HW_ENERGY: Final = "hw.energy"
HW_TEMPERATURE: Final = "hw.temperature"

RATIO: Final = "1"
BYTES: Final = "By"
WATTS: Final = "W"
JOULES: Final = "J"
CELSIUS: Final = "Cel"

HW_ID: Final = "hw.id"
HW_NAME: Final = "hw.name"
HW_TYPE: Final = "hw.type"
HW_TYPE_GPU: Final = "gpu"
HOST_NAME: Final = "host.name"
GPU_INDEX: Final = "aiperf.gpu.index"

# -- resource ----------------------------------------------------------------------------------

SERVICE_NAME: Final = "service.name"
SERVICE_VERSION: Final = "service.version"
SERVICE = "aiperf"

# -- what inference servers report on their own metrics endpoint (aiperf-server-metrics) -------

#: gauges ``aiperf.server.<common name>`` (``.rate`` / ``.p50`` / ``.p99`` for counters and
#: histograms), with the engine's own labels as attributes.
SERVER_METRIC_PREFIX: Final = "aiperf.server."
#: the metrics endpoint a value came from (never with credentials).
SERVER_METRICS_URL: Final = "aiperf.server.metrics_url"
