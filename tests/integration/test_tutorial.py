"""The telemetry tutorial (docs/telemetry-tutorial.md), run as written, in order.

Every ``bash`` block of the page is run command by command in one working directory, with the
page's addresses pointed at loopback stand-ins: the mock server for the LLM at :8000, the test
suite's OTLP receiver for the collector at :4318, and a real ``mlflow server`` for :5000. The
commands that set those up (``pip install``, ``docker run``, ``mlflow ui``) are provided by the
fixtures instead. Each test below checks one promise of the tutorial, quoted in its message.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiperf.testing import MockServer, free_port
from mlflow import MlflowClient
from support.mlflow_faults import FaultyTracking
from support.mlflow_server import MlflowServer
from support.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TUTORIAL = REPO / "docs" / "telemetry-tutorial.md"
#: set-up commands whose job the fixtures do (a collector, a tracking server, the install).
PROVIDED = ("pip install ", "docker run ", "mlflow ui")
PARENT_PLACEHOLDER = "abc123def456"
RUN_DIR = Path("artifacts") / "my-model-chat-concurrency4"
GEN_AI = (
    "gen_ai.client.operation.duration",
    "gen_ai.client.token.usage",
    "gen_ai.client.operation.time_per_output_chunk",
    "gen_ai.client.operation.time_to_first_chunk",
)
LIVE_KEYS = tuple(f"live.{name}" for name in GEN_AI)


def tutorial_commands(text: str) -> list[str]:
    """The commands of every ``bash`` block, in order; continuation lines joined."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


@attrs.define
class Step:
    command: str
    result: subprocess.CompletedProcess[str] | None = None
    #: for ``aiperf profile``: the run directory's JSON files right after the command.
    files: dict[str, Any] = attrs.field(factory=dict)


@attrs.define
class Walk:
    steps: list[Step]
    mlflow: MlflowServer
    collector: OtlpReceiver
    llm: MockServer
    cwd: Path
    env: dict[str, str]
    parent_id: str | None = None

    def step(self, starts: str, nth: int = 0) -> Step:
        found = [s for s in self.steps if s.command.startswith(starts) and s.result is not None]
        return found[nth]

    def profiles(self) -> list[Step]:
        return [s for s in self.steps if s.command.startswith("aiperf profile") and s.result]


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OTEL_"))}
    bin_dir = str(Path(sys.executable).parent)
    return {**env, "PATH": bin_dir + os.pathsep + env.get("PATH", ""), "PYTHONUNBUFFERED": "1"}


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walk]:
    cwd = tmp_path_factory.mktemp("tutorial")
    with (
        MlflowServer(tmp_path_factory.mktemp("mlflow")) as mlflow_server,
        OtlpReceiver() as collector,
        MockServer(ttft_ms=5, itl_ms=1) as llm,
    ):
        walk = Walk([], mlflow_server, collector, llm, cwd, clean_env())
        for command in tutorial_commands(TUTORIAL.read_text()):
            walk.steps.append(run_step(walk, command))
        yield walk


def run_step(walk: Walk, command: str) -> Step:
    command = (
        command.replace("http://localhost:8000", walk.llm.url)
        .replace("http://localhost:4318", walk.collector.url)
        .replace("http://localhost:5000", walk.mlflow.url)
    )
    if walk.parent_id:
        command = command.replace(PARENT_PLACEHOLDER, walk.parent_id)
    step = Step(command)
    if command.startswith(PROVIDED):
        return step
    if command.startswith("export "):
        name, _, value = command.removeprefix("export ").partition("=")
        walk.env[name] = value
        step.result = subprocess.CompletedProcess(command, 0, "", "")
        return step
    step.result = subprocess.run(
        ["bash", "-c", command], cwd=walk.cwd, env=walk.env, capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip
    if command.startswith("mlflow runs create"):
        found = re.search(r'"run_id":\s*"([0-9a-f]{32})"', step.result.stdout)
        walk.parent_id = found.group(1) if found else None
    if command.startswith(("aiperf profile", "aiperf plot")):
        # Later commands may reuse the directory (its files then move to previous/).
        load = re.search(r"--concurrency (\d+)", command)
        run_dir = walk.cwd / "artifacts" / f"my-model-chat-concurrency{load.group(1) if load else 4}"
        for name in ("mlflow_export.json", "profile_export_aiperf.json"):
            step.files[name] = read_json(run_dir / name)
    return step


@pytest.fixture(scope="module")
def client(walk: Walk) -> MlflowClient:
    return MlflowClient(walk.mlflow.url)


def first_run(walk: Walk) -> Step:
    return walk.profiles()[0]


def first_run_points(walk: Walk, name: str) -> list[Any]:
    benchmark = first_run(walk).files["profile_export_aiperf.json"]["benchmark_id"]
    return walk.collector.points(name, where={"aiperf.benchmark_id": benchmark})


def latest_value(client: MlflowClient, run_id: str, key: str) -> float | None:
    history = client.get_metric_history(run_id, key)
    if not history:
        return None
    return max(history, key=lambda m: (m.timestamp, m.step)).value


# -- prerequisites ----------------------------------------------------------------------------


def test_the_extras_install_full_mlflow_and_the_plot_command() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {re.split(r"[<>=\[ ]", e)[0] for e in extras["otel"] + extras["mlflow"]}
    assert {"aiperf-otel", "aiperf-mlflow", "mlflow", "aiperf-plot"} <= names, (
        'pip install "aiperf[otel,mlflow]" installs what the tutorial uses: `mlflow ui` (the '
        "full mlflow) and `aiperf plot`"
    )


def test_mlflow_ui_is_there() -> None:
    result = subprocess.run(
        ["mlflow", "ui", "--help"], env=clean_env(), capture_output=True, text=True, timeout=300
    )
    assert 0 == result.returncode, f"`mlflow ui` (the tracking server's quick start) works: {result.stderr}"


def test_collector_check_says_reachable(walk: Walk) -> None:
    step = walk.step("curl -s -o /dev/null")
    assert "OTel Collector reachable" in step.result.stdout, (
        f'the collector check prints "OTel Collector reachable": {step.result}'
    )


def test_mlflow_check_says_reachable(walk: Walk) -> None:
    step = walk.step("curl -sf")
    assert "MLflow reachable" in step.result.stdout, (
        f'the MLflow check prints "MLflow reachable": {step.result}'
    )


# -- the profile with both sinks --------------------------------------------------------------


def test_profile_with_telemetry_succeeds(walk: Walk) -> None:
    step = first_run(walk)
    both = "--otel-url" in step.command and "--mlflow-tracking-uri" in step.command
    assert (True, 0) == (both, step.result.returncode), (
        f"a single `aiperf profile` command streams metrics to both sinks: {step.result.stderr}"
    )


@pytest.mark.parametrize(("name", "unit"), [
    ("gen_ai.client.operation.duration", "s"),
    ("gen_ai.client.token.usage", "{token}"),
    ("gen_ai.client.operation.time_per_output_chunk", "s"),
    ("gen_ai.client.operation.time_to_first_chunk", "s"),
])  # fmt: skip
def test_collector_gets_each_gen_ai_metric_in_its_unit(walk: Walk, name: str, unit: str) -> None:
    units = {p.unit for p in first_run_points(walk, name)}
    assert {unit} == units, f"AIPerf emits {name} ({unit}) to the OTel Collector"


def test_collector_duration_counts_every_request(walk: Walk) -> None:
    benchmark = first_run(walk).files["profile_export_aiperf.json"]["benchmark_id"]
    total = walk.collector.histogram(
        "gen_ai.client.operation.duration",
        where={"aiperf.benchmark_id": benchmark, "aiperf.phase": "profile"},
    )
    assert 64 == total.count, "metrics flow to your OTel Collector: all 64 requests"


def test_metrics_carry_the_gen_ai_attributes(walk: Walk) -> None:
    points = [p for name in GEN_AI for p in first_run_points(walk, name)]
    missing = [
        p.name
        for p in points
        if not {"gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model"}
        <= set(p.attributes)
    ]
    assert points and [] == missing, (
        "Metrics carry standard GenAI attributes (gen_ai.operation.name, gen_ai.provider.name, "
        "gen_ai.request.model)"
    )


def test_metrics_carry_aiperf_dimensions(walk: Walk) -> None:
    points = first_run_points(walk, "gen_ai.client.operation.duration")
    assert points and all(any(k.startswith("aiperf.") for k in p.attributes) for p in points), (
        "plus AIPerf-specific dimensions prefixed with aiperf.*"
    )


def test_collector_progress_counters_end_at_the_totals(walk: Walk) -> None:
    def last(name: str) -> float | None:
        points = first_run_points(walk, name)
        return max(points, key=lambda p: p.time_unix_nano).value if points else None

    ends = (last("aiperf.client.requests.completed"), last("aiperf.client.requests.in_flight"))
    assert (64, 0) == ends, "the collector's progress counters end at 64 completed and 0 in flight"


def test_mlflow_run_is_in_the_named_experiment(walk: Walk, client: MlflowClient) -> None:
    exported = first_run(walk).files["mlflow_export.json"]
    experiment = client.get_experiment(client.get_run(exported["run_id"]).info.experiment_id)
    assert "my-experiment" == experiment.name, "--mlflow-experiment my-experiment: Creates the named experiment"


def test_mlflow_has_the_four_live_keys(walk: Walk, client: MlflowClient) -> None:
    metrics = client.get_run(first_run(walk).files["mlflow_export.json"]["run_id"]).data.metrics
    assert set(LIVE_KEYS) <= set(metrics), f"live scalars logged under the live.* namespace: {LIVE_KEYS}"


def test_mlflow_live_duration_has_one_point_per_request(walk: Walk, client: MlflowClient) -> None:
    run_id = first_run(walk).files["mlflow_export.json"]["run_id"]
    history = client.get_metric_history(run_id, "live.gen_ai.client.operation.duration")
    assert 64 == len(history), "These update ... as each request completes: one point per request"


def test_mlflow_completed_ends_at_the_request_count(walk: Walk, client: MlflowClient) -> None:
    run_id = first_run(walk).files["mlflow_export.json"]["run_id"]
    value = latest_value(client, run_id, "live.aiperf.requests.completed")
    assert 64 == value, "live.aiperf.requests.completed (ends at the request count)"


def test_mlflow_in_flight_ends_at_zero(walk: Walk, client: MlflowClient) -> None:
    run_id = first_run(walk).files["mlflow_export.json"]["run_id"]
    value = latest_value(client, run_id, "live.aiperf.requests.in_flight")
    assert 0 == value, "live.aiperf.requests.in_flight (ends at 0)"


def test_results_are_uploaded_into_the_same_run(walk: Walk, client: MlflowClient) -> None:
    exported = first_run(walk).files["mlflow_export.json"]
    names = {a.path for a in client.list_artifacts(exported["run_id"])}
    expected = {"profile_export_aiperf.json", "profile_export_aiperf.csv", "metadata.json"}
    assert exported["reused_live_run"] and expected <= names, (
        "All artifacts (JSON export, CSV export, GPU telemetry, metadata) are uploaded to the "
        f"same MLflow run: {names}"
    )


def test_mlflow_export_file_names_the_run(walk: Walk) -> None:
    exported = first_run(walk).files["mlflow_export.json"]
    expected = {
        "tracking_uri": walk.mlflow.url,
        "experiment_name": "my-experiment",
        "reused_live_run": True,
    }
    assert expected == {k: exported[k] for k in expected} and re.fullmatch(
        r"[0-9a-f]{32}", exported["run_id"]
    ), f"mlflow_export.json records the mapping between the local run and the MLflow run: {exported}"


def test_mlflow_run_is_finished(walk: Walk, client: MlflowClient) -> None:
    run_id = first_run(walk).files["mlflow_export.json"]["run_id"]
    assert "FINISHED" == client.get_run(run_id).info.status, "When the benchmark finishes ... the run ends"


# -- the sweep --------------------------------------------------------------------------------


def test_parent_run_is_created(walk: Walk) -> None:
    step = walk.step("mlflow runs create")
    assert walk.parent_id is not None, (
        f"mlflow runs create --experiment-name my-sweep ... Note the run_id from the output: {step.result}"
    )


def test_children_are_nested_under_the_parent(walk: Walk, client: MlflowClient) -> None:
    children = [s.files["mlflow_export.json"] for s in walk.profiles()[1:3]]
    parents = [client.get_run(c["run_id"]).data.tags.get("mlflow.parentRunId") for c in children]
    assert [walk.parent_id] * 2 == parents, "the parent run shows both child runs nested beneath it"


def test_children_share_the_parents_experiment(walk: Walk, client: MlflowClient) -> None:
    experiment = client.get_run(walk.parent_id).info.experiment_id
    children = [s.files["mlflow_export.json"]["run_id"] for s in walk.profiles()[1:3]]
    assert [experiment] * 2 == [client.get_run(c).info.experiment_id for c in children], (
        "In the MLflow UI the parent run shows both child runs nested beneath it"
    )


def test_children_are_concurrency_4_and_8(walk: Walk, client: MlflowClient) -> None:
    children = [s.files["mlflow_export.json"]["run_id"] for s in walk.profiles()[1:3]]
    loads = [client.get_run(c).data.params.get("concurrency") for c in children]
    assert ["4", "8"] == loads, "compare concurrency=4 vs concurrency=8 side by side"


def test_the_first_runs_files_were_moved_aside(walk: Walk) -> None:
    first_id = first_run(walk).files["profile_export_aiperf.json"]["benchmark_id"]
    moved = walk.cwd / RUN_DIR / "previous" / first_id / "mlflow_export.json"
    child = walk.profiles()[1].result
    assert moved.is_file() and f"moved to {RUN_DIR / 'previous' / first_id}" in child.stderr, (
        "a run never leaves another run's files in its folder: the earlier run's files move to "
        "previous/<its benchmark id>/ and one line says so"
    )


# -- plots ------------------------------------------------------------------------------------


def test_plot_upload_succeeds(walk: Walk) -> None:
    step = walk.step("aiperf plot")
    assert 0 == step.result.returncode, f"aiperf plot ... --mlflow-upload: {step.result.stderr}"


def test_plots_appear_under_the_runs_artifacts(walk: Walk, client: MlflowClient) -> None:
    exported = walk.step("aiperf plot").files["mlflow_export.json"]
    pngs = [a.path for a in client.list_artifacts(exported["run_id"], "plots")]
    assert pngs and all(p.endswith(".png") for p in pngs), (
        "uploads the generated PNG files as artifacts on the existing run"
    )


def test_plots_went_to_the_run_of_the_folders_results(walk: Walk, client: MlflowClient) -> None:
    step = walk.step("aiperf plot")
    exported, results = step.files["mlflow_export.json"], step.files["profile_export_aiperf.json"]
    tagged = client.get_run(exported["run_id"]).data.tags.get("aiperf.benchmark_id")
    assert results["benchmark_id"] == tagged, (
        "generate and upload plots to the same MLflow run (the one whose results are in the folder)"
    )


# -- provider name ----------------------------------------------------------------------------


def provider_step(walk: Walk) -> Step:
    return next(s for s in walk.profiles() if "--gen-ai-provider vllm" in s.command)


def test_provider_override_is_on_every_metric(walk: Walk) -> None:
    step = provider_step(walk)
    benchmark = step.files["profile_export_aiperf.json"]["benchmark_id"]
    points = [
        p for name in GEN_AI
        for p in walk.collector.points(name, where={"aiperf.benchmark_id": benchmark})
    ]  # fmt: skip
    assert points and {"vllm"} == {p.attributes["gen_ai.provider.name"] for p in points}, (
        "The value you pass appears as gen_ai.provider.name on every emitted metric"
    )


def test_provider_example_measures_ttft(walk: Walk) -> None:
    step = provider_step(walk)
    benchmark = step.files["profile_export_aiperf.json"]["benchmark_id"]
    points = walk.collector.points(
        "gen_ai.client.operation.time_to_first_chunk", where={"aiperf.benchmark_id": benchmark}
    )
    assert points, "the provider example streams (--streaming), so time to first chunk is there"


def test_provider_override_is_the_mlflow_tag(walk: Walk, client: MlflowClient) -> None:
    run_id = provider_step(walk).files["mlflow_export.json"]["run_id"]
    assert "vllm" == client.get_run(run_id).data.tags.get("gen_ai.provider.name"), (
        "and as the gen_ai.provider.name tag in MLflow"
    )


def test_openai_host_is_inferred() -> None:
    from aiperf import infer_provider

    assert "openai" == infer_provider("https://api.openai.com", None), (
        "requests to api.openai.com resolve to openai"
    )


# -- troubleshooting --------------------------------------------------------------------------


def short_profile(walk: Walk, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["aiperf", "profile", "--url", walk.llm.url, "--model", "my-model", "--endpoint-type",
         "chat", "--streaming", "--request-count", "8", "--output-tokens-mean", "8",
         "--artifact-dir", "troubleshooting", *extra],
        cwd=walk.cwd, env=env or walk.env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_collector_unreachable_is_the_documented_warning(walk: Walk) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = short_profile(walk, "--otel-url", url)
    line = f"WARNING  OTel collector at {url} is not reachable. Metrics will not be exported."
    assert 0 == result.returncode and line in result.stderr.splitlines(), (
        f"AIPerf logs a warning and continues the benchmark without streaming: {result.stderr}"
    )


def test_mlflow_timeout_is_the_documented_warning(walk: Walk) -> None:
    with FaultyTracking(walk.mlflow.url) as hung:
        hung.hang("")
        result = short_profile(walk, "--mlflow-tracking-uri", hung.url, "--mlflow-upload-timeout", "6")
    line = f"WARNING  MLflow tracking server at {hung.url} did not respond within 5s."
    assert 0 == result.returncode and line in result.stderr.splitlines(), (
        f"MLflow tracking server at ... did not respond within 5s.: {result.stderr}"
    )


def test_missing_mlflow_is_the_documented_line(walk: Walk) -> None:
    env = {**walk.env, "AIPERF_DISABLE_PLUGINS": "mlflow"}
    result = short_profile(walk, "--mlflow-tracking-uri", walk.mlflow.url, env=env)
    line = (
        "ImportError: MLflow integration requires the 'mlflow' package. "
        'Install with: pip install "aiperf[mlflow]"'
    )
    assert 0 != result.returncode and [line] == result.stderr.strip().splitlines(), (
        f"Missing optional dependencies: {line}"
    )


def test_progress_line_rate_with_sinks_on(walk: Walk) -> None:
    result = short_profile(
        walk, "--otel-url", walk.collector.url, "--progress", "--request-count", "200",
        "--concurrency", "8", "--output-tokens-mean", "64",
    )  # fmt: skip
    frames = [f for f in result.stderr.replace("\r", "\n").splitlines() if f.startswith("[profile]")]
    rates = [float(re.search(r"([\d.]+) req/s", f).group(1)) for f in frames]
    assert rates and max(rates) > 0, (
        f"the progress line shows the true rate with --otel-url on, not 0.0 req/s: {frames}"
    )
