"""The plugin host: discovery through entry points, isolation of failures, registries."""

from __future__ import annotations

import csv
import itertools
import json
import os
from pathlib import Path

import attrs
import pytest
from aiperf import hookimpl, hookspecs
from aiperf._datasets import SYNTHETIC
from aiperf._endpoints import CHAT
from aiperf._metrics import METRICS, MetricSpec
from aiperf._plugins import PluginError, Plugins
from aiperf._strategies import CONSTANT
from support.fake_plugins import install_fake_distribution

PLUGIN_CODE = '''
# A third-party plugin as pip would leave it: it implements every hook aiperf has, with the
# public API only, and writes what each hook saw to $THROWAWAY_LOG (one JSON line per call).
import json
import os
import shutil
import time
from pathlib import Path

import aiperf
from aiperf import MetricSpec, hookimpl


def _log(hook, **data):
    path = os.environ.get("THROWAWAY_LOG")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps({"hook": hook, **data}) + "\\n")


# -- options and commands

@hookimpl
def aiperf_add_options(command, parser):
    if command == "profile":
        group = parser.add_argument_group("throwaway")
        group.add_argument("--throwaway-out", help="where the throwaway sink writes")
    if command == "compare":
        parser.add_argument("--throwaway-compare-out", help="where the throwaway writes the report")

import attrs


@attrs.frozen(kw_only=True)
class ThrowawayOptions:
    lines: bool = aiperf.option(
        "--throwaway-lines", action="store_true",
        help="write one line per request to throwaway_lines.txt in the run directory",
    )


@hookimpl
def aiperf_register_options(register):
    register(aiperf.PluginOptions(name="throwaway", options=ThrowawayOptions, title="throwaway options"))


class LineWriter:
    name = "throwaway-lines"

    def open(self, run):
        self.path = run.run_dir / "throwaway_lines.txt"
        self.file = self.path.open("w")
        return [self.path]

    def write(self, record, metrics):
        self.file.write(f"{record.index} {metrics is not None}\\n")

    def close(self):
        self.file.close()
        return None


@hookimpl
def aiperf_run_writers(config, run):
    if aiperf.read_options(ThrowawayOptions, config).lines:
        return [LineWriter()]
    return None


@hookimpl
def aiperf_register_commands(register):
    def add_arguments(parser):
        parser.add_argument("--name", default="world")

    def run(args):
        print(f"throwaway says hello to {args.name}")
        return 3

    register(aiperf.Command(name="throwaway-hello", help="say hello", add_arguments=add_arguments, run=run))

@hookimpl
def aiperf_configure(config):
    if config.plugin_options.get("throwaway_out") == "":
        raise aiperf.UsageError("--throwaway-out: must not be empty")
    _log("aiperf_configure", parent=config.plugin_options.get("throwaway_parent"))

# -- what a run is made of: an endpoint, a load strategy, a dataset, a processor, metrics

def _payload(prompt, config):
    body = {"model": config.model, "messages": [{"role": "user", "content": prompt.text}]}
    if prompt.max_tokens is not None:
        body["max_tokens"] = prompt.max_tokens
    if config.streaming:
        body["stream"] = True
    return body

def _parse(data):
    if not isinstance(data, dict):
        raise aiperf.ParseError("not a JSON object")
    choice = (data.get("choices") or [{}])[0]
    part = choice.get("delta") or choice.get("message") or {}
    return aiperf.ResponseData(text=part.get("content") or "", finish_reason=choice.get("finish_reason"))

@hookimpl
def aiperf_register_endpoints(register):
    register(aiperf.EndpointType(
        name="throwaway_chat", operation_name="chat", default_path="/v1/chat/completions",
        build_payload=_payload, parse_response=_parse, parse_chunk=_parse,
    ))

class OneByOne:
    async def drive(self, ctx):
        while (index := ctx.claim()) is not None:
            await ctx.execute(index)

@hookimpl
def aiperf_register_load_strategies(register):
    register(aiperf.LoadStrategyType(name="throwaway_serial", create=lambda config: OneByOne()))

class Words:
    def load(self):
        return [aiperf.Prompt(text=" ".join(["word"] * 12), input_tokens=12, max_tokens=8)]

@hookimpl
def aiperf_register_datasets(register):
    register(aiperf.DatasetType(name="throwaway_words", create=lambda config, tokenizer: Words()))

@hookimpl(tryfirst=True)
def aiperf_register_metrics(register):
    register(MetricSpec("throwaway_doubled_isl", "Throwaway Doubled ISL", "tokens"))
    register(MetricSpec("throwaway_isl_total", "Throwaway ISL Total", "tokens", kind="run", summary="sum"))

@hookimpl
def aiperf_register_record_processors(register):
    class Doubler:
        name = "doubler"
        order = 10
        def process(self, record, values, run):
            # run.metrics is the whole table, in a worker process too (a failure here makes
            # the request an error, and the counts below wrong)
            assert run.metrics["throwaway_doubled_isl"].header == "Throwaway Doubled ISL"
            values["throwaway_doubled_isl"] = 2 * values["input_sequence_length"]
            values["throwaway_isl_total"] = values["input_sequence_length"]
    register(Doubler())

# -- the run

@hookimpl
def aiperf_run_started(run):
    _log("aiperf_run_started", run_dir=run.run_dir.name, parent=run.config.plugin_options.get("throwaway_parent"))

@hookimpl
def aiperf_live_sinks(config, run):
    out = config.plugin_options.get("throwaway_out")
    if not out:
        return None

    class Sink:
        name = "throwaway"
        def __init__(self):
            self.done = 0
            self.samples = 0
        async def open(self, run):
            pass
        async def run(self, events):
            async for event in events:
                if type(event).__name__ == "RequestDone":
                    self.done += 1
                if getattr(event, "source", None) == "throwaway":
                    self.samples += 1
        async def close(self, status):
            with open(out, "w") as fh:
                json.dump({"done": self.done, "status": str(status), "samples": self.samples}, fh)
        def report(self):
            return None
    return [Sink()]

class Sampler:
    name = "throwaway_sampler"
    def __init__(self):
        self.published = 0
    async def run(self, ctx):
        import trio
        ctx.publish(aiperf.ServerMetricSample(
            source="throwaway", name="throwaway_gauge", value=1.0, unit="1",
            wall_ns=time.time_ns(), phase=None,
        ))
        self.published += 1
        await trio.sleep_forever()
    def sections(self, run, result):
        return [aiperf.ReportSection(name="throwaway", title="Throwaway", data={"published": self.published})]
    def report(self):
        return None

@hookimpl
def aiperf_samplers(config, run):
    return [Sampler()] if config.plugin_options.get("throwaway_out") else None

@hookimpl
def aiperf_remote_load(config, prompts, bodies, conversations, yield_cpu):
    return None  # the load stays where aiperf puts it

@hookimpl(wrapper=True)
def aiperf_exporters(config, run):
    groups = yield
    seen = sorted(e.name for group in groups for e in group)

    class Seen:
        name = "throwaway_seen"
        order = 20
        def export(self, run, result):
            path = run.run_dir / "throwaway_seen.json"
            aiperf.write_text_atomic(path, json.dumps(seen))
            aiperf.announce_artifacts(run.run_dir, [path], {"by": "throwaway"})
            return [path]

    return [*groups, [Seen()]]

@hookimpl
def aiperf_run_finished(run, result):
    _log("aiperf_run_finished", status=str(result.status), doubled=result.value("throwaway_doubled_isl"))

@hookimpl
def aiperf_artifacts_written(run_dir, paths, options):
    _log("aiperf_artifacts_written", files=[Path(p).name for p in paths], options=options)

# -- sweeps

@hookimpl
def aiperf_sweep_started(sweep):
    _log("aiperf_sweep_started", kind=sweep.kind, parameters=list(sweep.parameters))
    return {"throwaway_parent": "parent-1"}

@hookimpl
def aiperf_sweep_point_finished(sweep, point):
    _log("aiperf_sweep_point_finished", index=point["index"], status=point["status"])

@hookimpl
def aiperf_sweep_finished(sweep, paths, status):
    _log("aiperf_sweep_finished", files=sorted(Path(p).name for p in paths), status=str(status))

# -- compare

@hookimpl
def aiperf_fetch_run(ref, dest, options):
    if not ref.startswith("throwaway:"):
        return None
    _log("aiperf_fetch_run", ref=ref)
    return Path(shutil.copytree(ref.removeprefix("throwaway:"), dest / "fetched"))

@hookimpl
def aiperf_compared(report, options):
    out = options.get("throwaway_compare_out")
    if not out:
        return None
    Path(out).write_text(json.dumps({"comparisons": len(report.comparisons)}))
    return [Path(out)]
'''


def _on_path(site: Path) -> dict[str, str]:
    """PYTHONPATH with the fake site first, and whatever the tests themselves run from after."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}


@pytest.fixture
def plugin_site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    install_fake_distribution(site, "aiperf-throwaway", "aiperf_throwaway_plugin", PLUGIN_CODE)
    install_fake_distribution(site, "aiperf-broken", "aiperf_broken_plugin", "raise ImportError('no such thing')\n")
    return site


@pytest.mark.integration
class TestDiscovery:
    def test_plugins_command_lists_installed_plugin_with_version_and_hooks(self, aiperf_cli, plugin_site) -> None:
        """`aiperf plugins` shows the throwaway plugin, its version and hooks, and the broken one."""
        result = aiperf_cli("plugins", env=_on_path(plugin_site))
        assert 0 == result.returncode, result.stderr
        assert "throwaway  aiperf-throwaway 0.0.1" in result.stdout
        # the throwaway implements every hook aiperf has
        listed = result.stdout.split("throwaway  aiperf-throwaway 0.0.1\n", 1)[1].split("\n")
        hooks = [line.strip() for line in itertools.takewhile(lambda line: line.startswith("    "), listed)]
        assert sorted(name for name in vars(hookspecs) if name.startswith("aiperf_")) == hooks
        assert "broken  FAILED TO LOAD: ImportError: no such thing" in result.stdout
        assert "plugin_failed_to_load" in result.stderr and "broken" in result.stderr

    def test_disabled_plugin_is_not_loaded(self, aiperf_cli, plugin_site) -> None:
        """AIPERF_DISABLE_PLUGINS blocks a plugin by name."""
        env = {**_on_path(plugin_site), "AIPERF_DISABLE_PLUGINS": "throwaway,broken"}
        result = aiperf_cli("plugins", env=env)
        assert "throwaway  " not in result.stdout
        assert "disabled by AIPERF_DISABLE_PLUGINS: broken, throwaway" in result.stdout
        assert "" == result.stderr

    @pytest.mark.plugins  # the run also streams to OTel and MLflow
    def test_discovered_plugin_is_used_in_a_run(
        self, aiperf_cli, plugin_site, mock_server, tmp_path, monkeypatch
    ) -> None:
        """Its flag is accepted, its sink sees every request, its wrapper sees every exporter,
        and the metrics it registers (tryfirst) and its processor fills are in every output:
        the console, the JSON, the CSV, the OTel collector and MLflow."""
        from mlflow.tracking import MlflowClient
        from support.otlp_receiver import OtlpReceiver

        out = tmp_path / "sink.json"
        hooks_log = tmp_path / "hooks.jsonl"
        store = f"file:{tmp_path / 'mlruns'}"
        # MLflow 3.7+ refuses file stores unless told; the child process inherits this.
        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        with OtlpReceiver() as collector:
            result = aiperf_cli(
                "profile", "--url", mock_server.url, "-m", "mock-model", "--request-count", "7",
                "--synthetic-input-tokens-mean", "12", "--throwaway-out", str(out), "--throwaway-lines",
                "--artifact-dir", str(tmp_path / "run"),
                "--otel-url", collector.url, "--otel-export-interval", "0.5",
                "--mlflow-tracking-uri", store, "--mlflow-experiment", "throwaway",
                env={**_on_path(plugin_site), "THROWAWAY_LOG": str(hooks_log)},
            )  # fmt: skip
            assert 0 == result.returncode, result.stderr
            otel = collector.histogram("aiperf.metric.throwaway_doubled_isl", where={"aiperf.phase": "profile"})
        run_dir = tmp_path / "run"
        # the sink saw every request and the sampler's event; the run hooks came in order
        assert {"done": 7, "status": "FINISHED", "samples": 1} == json.loads(out.read_text())
        assert [
            {"hook": "aiperf_configure", "parent": None},
            {"hook": "aiperf_run_started", "run_dir": "run", "parent": None},
            {"hook": "aiperf_artifacts_written", "files": ["throwaway_seen.json"], "options": {"by": "throwaway"}},
            {"hook": "aiperf_run_finished", "status": "FINISHED", "doubled": 24.0},
        ] == _hooks(hooks_log)
        seen = json.loads((run_dir / "throwaway_seen.json").read_text())
        assert {"json", "csv", "console", "metadata", "mlflow"} <= set(seen)
        # the plugin's run writer (its option declared with aiperf.option) saw every request
        written = (run_dir / "throwaway_lines.txt").read_text().splitlines()
        assert [f"{i} True" for i in range(7)] == sorted(written)
        lines = (run_dir / "profile_export.jsonl").read_text().splitlines()
        assert [24] * 7 == [json.loads(line)["metrics"]["throwaway_doubled_isl"] for line in lines]
        # console: a row in the request table, one in the run table
        assert ["24"] * 6 == _row(result.stdout, "Throwaway Doubled ISL (tokens)")
        assert ["84"] == _row(result.stdout, "Throwaway ISL Total (tokens)")
        # JSON
        metrics = json.loads((run_dir / "profile_export_aiperf.json").read_text())["metrics"]
        doubled = metrics["throwaway_doubled_isl"]
        assert ("Throwaway Doubled ISL", "tokens", 7, 24, 24) == (
            doubled["header"], doubled["unit"], doubled["count"], doubled["avg"], doubled["p99"]
        )
        assert 84 == metrics["throwaway_isl_total"]["avg"]
        # the sampler's section
        assert {"published": 1} == json.loads((run_dir / "profile_export_aiperf.json").read_text())["throwaway"]
        # CSV
        rows = {r[0]: r for r in csv.reader((run_dir / "profile_export_aiperf.csv").read_text().splitlines()) if r}
        assert ["tokens", "24", "24", "24", "0"] == rows["Throwaway Doubled ISL"][1:6]
        assert ["tokens", "84"] == rows["Throwaway ISL Total"][1:]
        # OTel: a histogram of the seven successful requests
        assert (7, 7 * 24.0) == (otel.count, otel.sum)
        # MLflow: the summary metrics of the run
        run_id = json.loads((run_dir / "mlflow_export.json").read_text())["run_id"]
        logged = MlflowClient(tracking_uri=store).get_run(run_id).data.metrics
        assert (24.0, 24.0, 84.0) == (
            logged["throwaway_doubled_isl.avg"], logged["throwaway_doubled_isl.p50"], logged["throwaway_isl_total"]
        )

    def test_its_endpoint_dataset_and_strategy_run_a_benchmark(
        self, aiperf_cli, plugin_site, mock_server, tmp_path
    ) -> None:
        """What the register hooks add is chosen by name: the plugin's dataset makes every
        prompt (12 words), its endpoint parses the streamed answers (8 tokens), its strategy
        sends (one at a time, with no intended send times)."""
        result = aiperf_cli(
            "profile", "--url", mock_server.url, "-m", "mock-model", "--streaming", "--request-count", "5",
            "--endpoint-type", "throwaway_chat", "--dataset", "throwaway_words",
            "--request-rate", "1000", "--request-rate-mode", "throwaway_serial",
            "--artifact-dir", str(tmp_path / "run"), env=_on_path(plugin_site),
        )  # fmt: skip
        assert 0 == result.returncode, result.stderr
        lines = [json.loads(line) for line in (tmp_path / "run" / "profile_export.jsonl").read_text().splitlines()]
        assert [(None, 12, 8, 24)] * 5 == [
            (
                line["error"], line["client_tokens"]["input"], line["client_tokens"]["output"],
                line["metrics"]["throwaway_doubled_isl"],
            )
            for line in lines
        ]  # fmt: skip
        # a request-rate strategy would have set when each request was meant to leave
        assert [None] * 5 == [line["intended_start_time_ns"] for line in lines]
        ends = [line["end_time_ns"] for line in sorted(lines, key=lambda line: line["start_time_ns"])]
        starts = sorted(line["start_time_ns"] for line in lines)
        assert all(end <= start for end, start in zip(ends, starts[1:])), "requests overlapped"
        summary = json.loads((tmp_path / "run" / "profile_export_aiperf.json").read_text())
        assert "throwaway_chat" == summary["endpoint_type"]

    def test_its_command_and_its_usage_error(self, aiperf_cli, plugin_site, tmp_path) -> None:
        result = aiperf_cli("throwaway-hello", "--name", "you", env=_on_path(plugin_site))
        assert (3, "throwaway says hello to you\n") == (result.returncode, result.stdout), result.stderr
        result = aiperf_cli(
            "profile", "-m", "m", "--throwaway-out", "", "--artifact-dir", str(tmp_path / "run"),
            env={**_on_path(plugin_site), "AIPERF_DISABLE_PLUGINS": "broken"},
        )  # fmt: skip
        assert (2, "aiperf: error: --throwaway-out: must not be empty") == (
            result.returncode, result.stderr.strip()
        )  # fmt: skip

    def test_sweep_hooks_frame_the_points(self, aiperf_cli, plugin_site, mock_server, tmp_path) -> None:
        """sweep_started's options reach every point's config; each point is a run of its own."""
        hooks_log = tmp_path / "hooks.jsonl"
        result = aiperf_cli(
            "profile", "--url", mock_server.url, "-m", "mock-model", "--concurrency", "1,2",
            "--request-count", "4", "--artifact-dir", str(tmp_path / "sweep"),
            env={**_on_path(plugin_site), "THROWAWAY_LOG": str(hooks_log)},
        )  # fmt: skip
        assert 0 == result.returncode, result.stderr
        hooks = [h for h in _hooks(hooks_log) if h["hook"] != "aiperf_configure"]
        assert [
            {"hook": "aiperf_sweep_started", "kind": "sweep", "parameters": ["concurrency"]},
            *[
                entry
                for index, name in enumerate(["concurrency_1", "concurrency_2"])
                for entry in (
                    {"hook": "aiperf_run_started", "run_dir": name, "parent": "parent-1"},
                    {"hook": "aiperf_artifacts_written", "files": ["throwaway_seen.json"], "options": {"by": "throwaway"}},
                    {"hook": "aiperf_run_finished", "status": "FINISHED", "doubled": 1100.0},
                    {"hook": "aiperf_sweep_point_finished", "index": index, "status": "ok"},
                )
            ],
            {"hook": "aiperf_sweep_finished", "files": ["sweep_summary.csv", "sweep_summary.json"], "status": "FINISHED"},
        ] == hooks

    def test_compare_fetches_through_it_and_tells_it(self, aiperf_cli, plugin_site, mock_server, tmp_path) -> None:
        """A RUN only the plugin knows (``throwaway:DIR``) is fetched by it; the result is
        handed to it, and the file it writes is listed."""
        env = {**_on_path(plugin_site), "THROWAWAY_LOG": str(tmp_path / "hooks.jsonl")}
        run = aiperf_cli(
            "profile", "--url", mock_server.url, "-m", "mock-model", "--request-count", "12",
            "--artifact-dir", str(tmp_path / "run"), env=env,
        )  # fmt: skip
        assert 0 == run.returncode, run.stderr
        (tmp_path / "hooks.jsonl").unlink()
        out = tmp_path / "compared.json"
        result = aiperf_cli(
            "compare", f"throwaway:{tmp_path / 'run'}", str(tmp_path / "run"),
            "--throwaway-compare-out", str(out), env=env,
        )  # fmt: skip
        assert 0 == result.returncode, result.stderr
        assert [{"hook": "aiperf_fetch_run", "ref": f"throwaway:{tmp_path / 'run'}"}] == _hooks(
            tmp_path / "hooks.jsonl"
        )
        assert {"comparisons": 1} == json.loads(out.read_text())
        assert str(out) in result.stdout

    def test_metric_clash_is_one_line(self, aiperf_cli, plugin_site, mock_server, tmp_path) -> None:
        """A second plugin claiming the throwaway's metric stops the run before it starts."""
        install_fake_distribution(plugin_site, "aiperf-clash", "aiperf_clash_plugin", CLASH_CODE)
        result = aiperf_cli(
            "profile", "--url", mock_server.url, "-m", "mock-model", "--request-count", "1",
            "--artifact-dir", str(tmp_path / "run"),
            env={**_on_path(plugin_site), "AIPERF_DISABLE_PLUGINS": "broken"},
        )  # fmt: skip
        assert 1 == result.returncode
        # Which of the two loads first is up to the entry points' order: either way, one line.
        assert result.stderr.strip() in {
            "aiperf: error: metric 'throwaway_doubled_isl' is registered by both plugin "
            f"{first!r} and plugin {second!r}; uninstall or disable one "
            f"(AIPERF_DISABLE_PLUGINS={second})"
            for first, second in [("throwaway", "clash"), ("clash", "throwaway")]
        }, result.stderr
        assert not (tmp_path / "run").exists()


CLASH_CODE = '''
from aiperf import MetricSpec, hookimpl

@hookimpl
def aiperf_register_metrics(register):
    register(MetricSpec("throwaway_doubled_isl", "Doubled Again", "tokens"))
'''


def _hooks(path: Path) -> list[dict[str, object]]:
    """What the throwaway's hooks wrote to $THROWAWAY_LOG, in order."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def _row(console: str, label: str) -> list[str]:
    """The cells after ``label`` in the console table row that starts with it."""
    for line in console.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == label:
            return cells[1:]
    raise AssertionError(f"no row {label!r} in:\n{console}")


class _Dup:
    @hookimpl
    def aiperf_register_endpoints(self, register):
        register(CHAT)


class _DupFirst:
    """Registers names the built-ins have, and is called before them."""

    @hookimpl(tryfirst=True)
    def aiperf_register_load_strategies(self, register):
        register(CONSTANT)

    @hookimpl(tryfirst=True)
    def aiperf_register_datasets(self, register):
        register(SYNTHETIC)


class _Extra:
    @hookimpl
    def aiperf_register_endpoints(self, register):
        register(attrs.evolve(CHAT, name="extra-chat"))


class _Raises:
    @hookimpl
    def aiperf_register_load_strategies(self, register):
        raise RuntimeError("kaboom")


class _Misspelled:
    @hookimpl
    def aiperf_live_sink(self, config, run):  # the real hook is aiperf_live_sinks
        return None


class TestRegistries:
    def test_duplicate_name_names_both_plugins(self) -> None:
        """Two plugins registering 'chat': the error says which two."""
        plugins = Plugins.load(entry_points=False, extra=[("dupe", _Dup())])
        with pytest.raises(PluginError, match="'chat' is registered by both plugin 'builtin' and plugin 'dupe'"):
            plugins.endpoints()

    @pytest.mark.parametrize(
        ("method", "kind", "name"),
        [("load_strategies", "load strategy", "constant"), ("datasets", "dataset", "synthetic")],
    )
    def test_duplicate_name_of_a_tryfirst_plugin(self, method: str, kind: str, name: str) -> None:
        """Called before the built-ins, a plugin still comes second in the message, and the
        hint disables it, not the built-ins."""
        plugins = Plugins.load(entry_points=False, extra=[("first", _DupFirst())])
        with pytest.raises(PluginError) as caught:
            getattr(plugins, method)()
        assert (
            f"{kind} {name!r} is registered by both plugin 'builtin' and plugin 'first'; "
            "uninstall or disable one (AIPERF_DISABLE_PLUGINS=first)"
        ) == str(caught.value)

    def test_registries_list_the_builtins_first(self) -> None:
        """pluggy calls the plugin loaded last first; the listing stays in load order."""
        plugins = Plugins.load(entry_points=False, extra=[("extra", _Extra())])
        names = list(plugins.endpoints())
        assert "chat" == names[0]
        assert "extra-chat" == names[-1]

    def test_failing_hook_names_the_plugin(self) -> None:
        """An exception inside a plugin's hook is reported with the plugin's name."""
        plugins = Plugins.load(entry_points=False, extra=[("raiser", _Raises())])
        with pytest.raises(PluginError, match="plugin 'raiser' failed in aiperf_register_load_strategies: RuntimeError: kaboom"):
            plugins.load_strategies()

    def test_misspelled_hook_caught_at_load(self) -> None:
        """check_pending() rejects an implementation of a hook that does not exist."""
        with pytest.raises(PluginError, match="misspelled"):
            Plugins.load(entry_points=False, extra=[("misspelled", _Misspelled())])

    def test_builtins_registered_through_hooks(self) -> None:
        """Endpoints, strategies, datasets, processors and exporters come from the built-in plugin."""
        plugins = Plugins.load(entry_points=False)
        assert {"chat", "completions", "embeddings", "responses", "messages", "huggingface-generate",
                "nim-rankings", "cohere-rankings", "hf-tei-rankings", "image-generation",
                "nim-embeddings", "template"} == set(plugins.endpoints())
        assert {"concurrency", "constant", "poisson", "gamma", "fixed_schedule"} == set(plugins.load_strategies())
        assert {"synthetic", "input_file", "sharegpt"} == set(plugins.datasets())
        assert ["timing"] == [p.name for p in plugins.record_processors()]
        assert {"mock-server"} <= set(plugins.commands())

    def test_profile_and_plugins_are_builtin_commands(self) -> None:
        """`profile` and `plugins` are registered like any plugin's command: another plugin
        registering one of the names is a clash naming both plugins."""
        from aiperf._types import Command

        commands = Plugins.load(entry_points=False).commands()
        assert ["profile", "plugins", "compare", "mock-server", "analyze-trace"] == list(commands)
        assert "benchmark a server" == commands["profile"].help

        class Mine:
            @hookimpl
            def aiperf_register_commands(self, register):
                register(Command(name="profile", help="mine", add_arguments=lambda p: None, run=lambda ns: 0))

        plugins = Plugins.load(entry_points=False, extra=[("mine", Mine())])
        with pytest.raises(PluginError, match="command 'profile' is registered by both plugin 'builtin' and plugin 'mine'"):
            plugins.commands()


# -- hook order: exactly as pluggy calls them ---------------------------------------------------


def _calls(log: list[str], label: str, **marks: bool) -> object:
    """A plugin whose aiperf_run_started appends ``label`` to ``log``."""

    class Plugin:
        @hookimpl(**marks)
        def aiperf_run_started(self, run):
            log.append(label)

    return Plugin()


def _wrapping(log: list[str], label: str, **marks: bool) -> object:
    class Plugin:
        @hookimpl(**marks)
        def aiperf_run_started(self, run):
            log.append(f"{label} before")
            outcome = yield
            log.append(f"{label} after")
            return outcome

    return Plugin()


class TestHookOrder:
    def test_tryfirst_runs_first(self) -> None:
        """Loaded between two others, a tryfirst plugin runs before both (neither load order
        nor pluggy's last-loaded-first would put it there)."""
        log: list[str] = []
        plugins = Plugins.load(
            entry_points=False,
            extra=[
                ("one", _calls(log, "one")),
                ("first", _calls(log, "first", tryfirst=True)),
                ("two", _calls(log, "two")),
            ],
        )
        plugins.run_started(None)  # type: ignore[arg-type]
        assert ["first", "two", "one"] == log

    def test_trylast_runs_last(self) -> None:
        log: list[str] = []
        plugins = Plugins.load(
            entry_points=False,
            extra=[
                ("one", _calls(log, "one")),
                ("last", _calls(log, "last", trylast=True)),
                ("two", _calls(log, "two")),
            ],
        )
        plugins.run_started(None)  # type: ignore[arg-type]
        assert ["two", "one", "last"] == log

    def test_without_marks_the_plugin_loaded_last_runs_first(self) -> None:
        log: list[str] = []
        plugins = Plugins.load(
            entry_points=False, extra=[("one", _calls(log, "one")), ("two", _calls(log, "two"))]
        )
        plugins.run_started(None)  # type: ignore[arg-type]
        assert ["two", "one"] == log

    def test_wrapper_wraps_the_others(self) -> None:
        """A wrapper=True implementation runs around every other one, tryfirst included."""
        log: list[str] = []
        plugins = Plugins.load(
            entry_points=False,
            extra=[
                ("wrap", _wrapping(log, "wrap", wrapper=True)),
                ("first", _calls(log, "first", tryfirst=True)),
                ("plain", _calls(log, "plain")),
            ],
        )
        plugins.run_started(None)  # type: ignore[arg-type]
        assert ["wrap before", "first", "plain", "wrap after"] == log

    def test_wrapper_sees_and_alters_the_result(self) -> None:
        """The wrapper gets the exporters every plugin returned (the built-ins' too) and
        what it returns is the hook's result."""
        seen: list[list[str]] = []

        class Extra:
            name = "extra"
            order = 50

        class Wrapper:
            @hookimpl(wrapper=True)
            def aiperf_exporters(self, config, run):
                exporters = yield
                seen.append(sorted(e.name for e in _flat(exporters)))
                return [*exporters, [Extra()]]

        plugins = Plugins.load(entry_points=False, extra=[("wrap", Wrapper())])
        names = [e.name for e in plugins.exporters(None, None)]  # type: ignore[arg-type]
        assert [["console", "csv", "json", "metadata"]] == seen
        assert ["json", "csv", "extra", "console", "metadata"] == names

    def test_old_style_hookwrapper_sees_and_alters_the_result(self) -> None:
        class Only:
            name = "only"
            order = 1

        class OldWrapper:
            @hookimpl(hookwrapper=True)
            def aiperf_exporters(self, config, run):
                outcome = yield
                assert "json" in [e.name for e in _flat(outcome.get_result())]
                outcome.force_result([[Only()]])

        plugins = Plugins.load(entry_points=False, extra=[("old", OldWrapper())])
        assert ["only"] == [e.name for e in plugins.exporters(None, None)]  # type: ignore[arg-type]

    def test_failure_inside_a_wrapper_names_the_failing_plugin(self) -> None:
        """The wrapper sees the error as a PluginError naming the inner plugin, and lets it out."""
        log: list[str] = []

        class Raiser:
            @hookimpl
            def aiperf_run_started(self, run):
                raise ValueError("bad value")

        plugins = Plugins.load(
            entry_points=False,
            extra=[("wrap", _wrapping(log, "wrap", wrapper=True)), ("raiser", Raiser())],
        )
        with pytest.raises(
            PluginError, match="^plugin 'raiser' failed in aiperf_run_started: ValueError: bad value$"
        ):
            plugins.run_started(None)  # type: ignore[arg-type]
        assert ["wrap before"] == log

    def test_failing_wrapper_is_named(self) -> None:
        class Broken:
            @hookimpl(wrapper=True)
            def aiperf_run_started(self, run):
                yield
                raise KeyError("after")

        plugins = Plugins.load(
            entry_points=False, extra=[("broken", Broken()), ("plain", _calls([], "plain"))]
        )
        with pytest.raises(PluginError, match="^plugin 'broken' failed in aiperf_run_started: KeyError"):
            plugins.run_started(None)  # type: ignore[arg-type]

    def test_register_inside_a_wrapper_is_attributed(self) -> None:
        """A wrapper registering after the others is named as the owner of what it adds."""

        class Wrapper:
            @hookimpl(wrapper=True)
            def aiperf_register_endpoints(self, register):
                yield
                register(CHAT)

        plugins = Plugins.load(entry_points=False, extra=[("wrapreg", Wrapper())])
        with pytest.raises(PluginError, match="both plugin 'builtin' and plugin 'wrapreg'"):
            plugins.endpoints()


def _flat(results: list) -> list:
    return [item for result in results for item in result]


# -- metrics registered by plugins ----------------------------------------------------------------


def _registering(*specs: object, **marks: bool) -> object:
    class Plugin:
        @hookimpl(**marks)
        def aiperf_register_metrics(self, register):
            for spec in specs:
                register(spec)

    return Plugin()


CACHE = MetricSpec("cache_hits", "Cache Hits", "hits")


class TestMetricRegistry:
    def test_core_table_comes_from_the_builtin_plugin(self) -> None:
        plugins = Plugins.load(entry_points=False)
        assert list(METRICS.items()) == list(plugins.metrics().items())

    def test_plugin_metric_comes_after_the_core_even_when_called_first(self) -> None:
        plugins = Plugins.load(entry_points=False, extra=[("cache", _registering(CACHE, tryfirst=True))])
        assert [*METRICS, "cache_hits"] == list(plugins.metrics())
        assert CACHE is plugins.metrics()["cache_hits"]

    def test_clash_with_a_core_metric_is_one_line(self) -> None:
        clash = MetricSpec("request_latency", "My Latency", "ms")
        plugins = Plugins.load(entry_points=False, extra=[("mine", _registering(clash))])
        with pytest.raises(PluginError) as caught:
            plugins.metrics()
        assert (
            "metric 'request_latency' is registered by both plugin 'builtin' and plugin 'mine'; "
            "uninstall or disable one (AIPERF_DISABLE_PLUGINS=mine)"
        ) == str(caught.value)

    def test_clash_between_two_plugins_names_both_in_load_order(self) -> None:
        plugins = Plugins.load(
            entry_points=False, extra=[("one", _registering(CACHE)), ("two", _registering(CACHE))]
        )
        with pytest.raises(PluginError, match="^metric 'cache_hits' is registered by both plugin 'one' and plugin 'two'; .*=two\\)$"):
            plugins.metrics()

    def test_run_metric_without_summary_is_refused(self) -> None:
        total = MetricSpec("cache_total", "Cache Total", "hits", kind="run")
        plugins = Plugins.load(entry_points=False, extra=[("cache", _registering(total))])
        with pytest.raises(PluginError, match="^plugin 'cache': run metric 'cache_total' needs summary= one of sum, avg, min, max, rate"):
            plugins.metrics()

    def test_something_else_than_a_metric_spec_is_refused(self) -> None:
        plugins = Plugins.load(entry_points=False, extra=[("odd", _registering({"tag": "x"}))])
        with pytest.raises(PluginError, match="^plugin 'odd' registered a metric that is not an aiperf.MetricSpec"):
            plugins.metrics()

    def test_bad_spec_names_the_plugin(self) -> None:
        class Bad:
            @hookimpl
            def aiperf_register_metrics(self, register):
                register(MetricSpec("Cache-Hits", "Cache Hits", "hits"))

        plugins = Plugins.load(entry_points=False, extra=[("bad", Bad())])
        with pytest.raises(
            PluginError,
            match="^plugin 'bad' failed in aiperf_register_metrics: ValueError: metric tag 'Cache-Hits'",
        ):
            plugins.metrics()
