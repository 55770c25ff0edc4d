"""``aiperf profile``: from a config to a run directory, in the order DESIGN.md lays out."""

from __future__ import annotations

import json
import random
import re
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import structlog

from aiperf import __version__
from aiperf._config import redact_url
from aiperf._endpoints import bound
from aiperf._exporters import ArtifactWriteError
from aiperf._provider import infer_provider
from aiperf._rundir import record_artifacts, report_artifact_error, set_aside_earlier_run
from aiperf._types import Exporter, RunContext, RunResult, RunStatus, UsageError

if TYPE_CHECKING:
    from aiperf._config import ProfileConfig
    from aiperf._conversations import ConversationSet
    from aiperf._plugins import Plugins
    from aiperf._types import EndpointType, Prompt, RunWriter, Sampler

log = structlog.get_logger()

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: how long a sampler's or sink's thread may hold the interpreter lock while the loop waits.
SWITCH_INTERVAL_S = 0.0005


def default_run_dir(config: ProfileConfig) -> Path:
    model = _UNSAFE.sub("_", config.model).strip("_") or "model"
    return Path("artifacts") / f"{model}-{config.endpoint_type}-{config.load_setting}"


def raise_fd_limit() -> None:
    """Raise the soft open-file limit to the hard one: every connection is a descriptor, and
    a default soft limit of 1024 would fail requests at high concurrency for the client's
    sake, not the server's."""
    try:
        import resource
    except ImportError:  # not on this platform
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:  # macOS caps it below an infinite hard limit
        log.debug("fd_limit_unchanged", soft=soft, hard=hard, error=str(exc))
        return
    log.debug("fd_limit_raised", soft=soft, to=target)


def prepare_run_dir(run_dir: Path) -> None:
    """Create the run directory and prove it writable, or end with one line (exit 1)."""
    probe = run_dir / f".aiperf-write-check-{uuid.uuid4().hex[:8]}"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ArtifactWriteError(run_dir, exc) from None


def resolve(config: ProfileConfig, plugins: Plugins) -> ProfileConfig:
    """Check what only the registries can check, fix the seed, and let plugins validate."""
    endpoints = plugins.endpoints()
    endpoint = endpoints.get(config.endpoint_type)
    if endpoint is None:
        raise UsageError(
            f"--endpoint-type: unknown type {config.endpoint_type!r}; "
            f"use one of {', '.join(sorted(endpoints))}"
        )
    if config.streaming and not endpoint.supports_streaming:
        raise UsageError(f"--streaming: the {endpoint.name} endpoint does not stream; drop --streaming")
    bound(endpoint, config)  # a template endpoint checks its file here: one line, exit 2
    if config.request_rate is not None:
        strategies = plugins.load_strategies()
        closed = ("concurrency", "fixed_schedule")  # strategies that are not a rate
        if config.request_rate_mode not in strategies or config.request_rate_mode in closed:
            modes = sorted(n for n in strategies if n not in closed)
            raise UsageError(
                f"--request-rate-mode: unknown mode {config.request_rate_mode!r}; use one of {', '.join(modes)}"
            )
    if config.dataset is not None and config.dataset not in plugins.datasets():
        raise UsageError(f"--dataset: unknown dataset {config.dataset!r}; use one of {', '.join(sorted(plugins.datasets()))}")
    if config.random_seed is None:
        config = attrs.evolve(config, random_seed=random.SystemRandom().randrange(2**31))
    plugins.metrics()  # two plugins claiming one metric: one line, before the run
    plugins.configure(config)
    return config


@attrs.frozen
class Outcome:
    """One run, done: its exit code, its context and its result."""

    code: int
    run: RunContext
    result: RunResult


def run_profile(config: ProfileConfig, plugins: Plugins, argv: Sequence[str]) -> int:
    """``aiperf profile``: one run, or a sweep, repeats or a search of several."""
    from aiperf import _sweep

    if _sweep.is_multi(config):
        return _sweep.run_multi(config, plugins, argv)
    return run_once(config, plugins, argv).code


def run_once(
    config: ProfileConfig, plugins: Plugins, argv: Sequence[str], *, console: bool = True
) -> Outcome:
    """One run into its run directory. ``console=False`` leaves the results table out (a
    sweep prints one line per point instead)."""
    import trio

    from aiperf._engine import check_servers, request_urls
    from aiperf._tokenizer import load_tokenizer

    raise_fd_limit()
    config = resolve(config, plugins)
    endpoint = bound(plugins.endpoints()[config.endpoint_type], config)
    url = request_urls(config, endpoint)[0]

    tokenizer = load_tokenizer(config.tokenizer)
    dataset_name = config.dataset or ("input_file" if config.input_file else "synthetic")
    dataset = plugins.datasets()[dataset_name].create(config, tokenizer)
    from aiperf import _conversations, _prefixes

    # Multi-turn sessions (synthetic, or a multi_turn file): their user turns are the prompts.
    sessions = _conversations.prepare(config, tokenizer, dataset, endpoint)
    prompts = list(sessions.prompts) if sessions is not None else list(dataset.load())
    if not prompts:
        raise UsageError("the dataset gave no prompts")
    from aiperf._schedule import settle

    config = settle(config, prompts)  # on a fixed schedule when the prompts carry times
    from aiperf._apis import media

    prompts = media.attach(prompts, config)  # images and audio, before the clock starts
    if sessions is not None:
        sessions = sessions.with_prompts(prompts)
    else:
        prompts = _prefixes.apply(prompts, config, tokenizer)  # shared prefixes, system prompt
    payloads = [endpoint.build_payload(p, config) for p in prompts]
    bodies = [json.dumps(p, separators=(",", ":")).encode() for p in payloads]

    trio.run(check_servers, config.urls, config.wait_for_model_timeout, config.ca_bundle)

    run_dir = config.artifact_dir or default_run_dir(config)
    prepare_run_dir(run_dir)
    set_aside_earlier_run(run_dir)  # an earlier run's files move to previous/<its id>/
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    run = RunContext(
        config=config,
        run_dir=run_dir,
        benchmark_id=uuid.uuid4().hex,
        version=__version__,
        provider=infer_provider(config.url, config.gen_ai_provider, endpoint.provider),
        operation_name=endpoint.operation_name,
        server_address=parts.hostname or "",
        server_port=parts.port or (443 if parts.scheme == "https" else 80),
        load_setting=config.load_setting,
        anchor_wall_ns=time.time_ns(),
        anchor_perf_ns=time.perf_counter_ns(),
        tokenizer=tokenizer,
        metrics=dict(plugins.metrics()),
    )
    # What the built-in run writers record: inputs.json and the JSONL's "url".
    run.state["inputs"] = {
        "url": config.url_without_userinfo,
        "endpoint": urlsplit(url).path,
        "endpoint_type": endpoint.name,
        "payloads": payloads,
        # Sessions: which payload (a user turn, without its history) each turn sends.
        **({"conversations": sessions.describe()} if sessions is not None else {}),
    }
    run.state["request_urls"] = [redact_url(u) for u in request_urls(config, endpoint)]
    plugin_list = [
        {"name": i.name, "distribution": i.distribution, "version": i.version}
        for i in plugins.describe()
    ]
    run.state["argv"] = list(argv)
    run.state["plugins"] = plugin_list
    # The files written while the run goes (inputs.json, metadata.json, the JSONL), each
    # joining the run's list of files; whatever happens next, every one opened is closed.
    writers: list[RunWriter] = []
    try:
        for writer in plugins.run_writers(config, run):
            record_artifacts(run, writer.open(run) or ())
            writers.append(writer)
        result, samplers = _run_load(config, run, plugins, endpoint, url, prompts, bodies, sessions, writers)
    finally:
        notes = [note for note in (writer.close() for writer in writers) if note]
    if notes:  # what a writer lost (lines of the JSONL on a full disk)
        result = attrs.evolve(result, notes=(*result.notes, *notes))

    result = _add_sections(run, result, samplers)

    exporters = [e for e in plugins.exporters(config, run) if console or e.name != "console"]
    failed_exports = _export(run, result, exporters)
    plugins.run_finished(run, result)
    return Outcome(code=_exit_code(run, result, failed_exports), run=run, result=result)


def _run_load(
    config: ProfileConfig,
    run: RunContext,
    plugins: Plugins,
    endpoint: EndpointType,
    url: str,
    prompts: list[Prompt],
    bodies: list[bytes],
    sessions: ConversationSet | None,
    writers: Sequence[RunWriter],
) -> tuple[RunResult, list[Sampler]]:
    """From aiperf_run_started to the result: sinks, samplers, the load (here or in worker
    processes)."""
    import trio

    from aiperf._engine import Engine
    from aiperf._schedule import strategy_name

    run_dir = run.run_dir
    log.info(
        "benchmark_starting",
        url=redact_url(url),
        **({"servers": len(config.urls)} if len(config.urls) > 1 else {}),
        model=config.model,
        load=run.load_setting,
        **(
            {"requests": config.effective_request_count} if sessions is None
            else {"sessions": sessions.session_limit, "turns_at_most": config.request_count}
        ),
        run_dir=str(run_dir),
    )
    plugins.run_started(run)
    sinks = plugins.live_sinks(config, run)
    samplers = plugins.samplers(config, run)
    strategy = plugins.load_strategies()[strategy_name(config)].create(config)
    # The progress line itself is a live sink of the built-in plugin; the line that says what
    # the end of the run waits for is rewritten in place on the same terminal.
    show_progress = config.progress if config.progress is not None else sys.stderr.isatty()
    from aiperf._workers import auto_workers, heavy_sinks, make_pool, needs_pool

    yield_cpu = bool(heavy_sinks(sinks))
    # A plugin may run the load elsewhere (a cluster's machines); else here, or in processes.
    remote = plugins.remote_load(config, prompts, bodies, sessions, yield_cpu)
    if remote is None:
        workers = auto_workers(config)
        if needs_pool(workers, sinks):
            remote = make_pool(config, workers, prompts, bodies, yield_cpu=yield_cpu, conversations=sessions)
    run.state["workers"] = len(remote.specs) if remote else 1  # type: ignore[attr-defined]

    engine = Engine(
        config=config,
        run=run,
        endpoint=endpoint,
        strategy=strategy,
        prompts=prompts,
        bodies=bodies,
        processors=plugins.record_processors(),
        sinks=sinks,
        samplers=samplers,
        writers=writers,
        progress_stream=sys.stderr if show_progress else None,
        remote=remote,
        conversations=sessions,
    )
    # trio turns SIGINT into KeyboardInterrupt unless a signal receiver is open; the
    # engine opens one, so Ctrl-C stops the load and we still write every export.
    # Samplers (and, in the coordinator of worker processes, sinks) run Python in threads;
    # with the default 5 ms switch interval a busy thread can keep this trio loop waiting
    # that long for the interpreter lock. 0.5 ms bounds that wait. With live sinks on, the
    # request loop itself runs in a worker process, away from them (``_workers.py``).
    switch = sys.getswitchinterval()
    sys.setswitchinterval(min(switch, SWITCH_INTERVAL_S))
    try:
        result = trio.run(engine.run_benchmark, restrict_keyboard_interrupt_to_checkpoints=True)
    finally:
        sys.setswitchinterval(switch)
    return result, samplers


def _add_sections(run: RunContext, result: RunResult, samplers: Sequence[object]) -> RunResult:
    sections = list(result.sections)
    notes = list(result.notes)
    for sampler in samplers:
        name = getattr(sampler, "name", type(sampler).__name__)
        try:
            sections.extend(sampler.sections(run, result))  # type: ignore[attr-defined]
            line = sampler.report()  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - a sampler's summary must not lose the run
            log.warning("sampler_failed", sampler=name, error=f"{type(exc).__name__}: {exc}")
            continue
        if line:
            notes.append(line)
    return attrs.evolve(result, sections=tuple(sections), notes=tuple(notes))


def _export(run: RunContext, result: RunResult, exporters: Sequence[Exporter]) -> int:
    failed = 0
    for exporter in exporters:
        try:
            record_artifacts(run, exporter.export(run, result) or ())
        except ArtifactWriteError as exc:
            failed += 1
            report_artifact_error(run, exc, f"the {exporter.name} export is missing")
        except Exception as exc:  # noqa: BLE001 - one exporter failing must not stop the others
            failed += 1
            log.error("exporter_failed", exporter=exporter.name, error=f"{type(exc).__name__}: {exc}")
    return failed


def _exit_code(run: RunContext, result: RunResult, failed_exports: int) -> int:
    if result.partial:
        return 1
    if result.was_cancelled:
        return 128 + int(run.state.get("signal", signal.SIGINT))
    if result.status is RunStatus.FAILED:
        log.error("Every request failed; see the errors above and in profile_export_aiperf.json.")
        return 1
    if result.value("request_count") == 0:
        log.error("No request completed.")
        return 1
    return 1 if failed_exports or run.state.get("artifact_errors") else 0
