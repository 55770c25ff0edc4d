"""The ``aiperf`` command line.

Building the parser must stay cheap (``aiperf --help`` is timed): nothing here imports trio,
httpx, numpy or a plugin's heavy dependencies; those load when a command runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from aiperf import __version__
from aiperf._plugins import Plugins, set_current
from aiperf._types import AiperfError, MissingExtra, UsageError

#: first-party plugins: their flags, and what to print when one is used without the plugin.
FIRST_PARTY: dict[str, tuple[tuple[str, ...], str]] = {
    "otel": (
        ("--otel-url", "--stream", "--otel-resource-attributes", "--otel-export-interval"),
        "OTel integration requires the 'opentelemetry' packages. "
        'Install with: pip install "aiperf[otel]"',
    ),
    "mlflow": (
        ("--mlflow-tracking-uri", "--mlflow-experiment", "--mlflow-run-name", "--mlflow-tag",
         "--mlflow-parent-run-id"),
        "ImportError: MLflow integration requires the 'mlflow' package. "
        'Install with: pip install "aiperf[mlflow]"',
    ),
    "gpu": (
        ("--gpu-telemetry", "--gpu-telemetry-interval", "--gpu-telemetry-table"),
        "GPU telemetry requires the 'aiperf-gpu' plugin. Install with: pip install \"aiperf[gpu]\"",
    ),
    "server_metrics": (
        ("--server-metrics", "--server-metrics-interval"),
        "Server metrics require the 'aiperf-server-metrics' plugin. "
        'Install with: pip install "aiperf[server-metrics]"',
    ),
    "ray": (
        ("--ray-address", "--ray-workers-per-node"),
        "Running the load on a Ray cluster requires the 'aiperf-ray' plugin. "
        'Install with: pip install "aiperf[ray]"',
    ),
    "plot": (
        ("--plot",),
        "Plotting requires the 'aiperf-plot' plugin. Install with: pip install \"aiperf[plot]\"",
    ),
}


def _int(text: str) -> int:
    """An integer flag: ``100``, or ``2e9`` / ``1e6`` (whole numbers in float notation), so a
    value too large is reported against its bound rather than as a parse failure."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value == value and abs(value) != float("inf") and value.is_integer()):
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}")
    return int(value)


def _workers(text: str) -> int | None:
    """``--workers N``, or ``auto`` (the default: chosen from the usable cores and the load)."""
    return None if text.strip().lower() == "auto" else _int(text)


def _int_list(text: str) -> int | list[int]:
    """``4`` or a comma list ``1,4,16`` (a sweep)."""
    items = [_int(item.strip()) for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a number or a comma list such as 1,4,16 (got {text!r})")
    return items[0] if len(items) == 1 else items


def _float_list(text: str) -> float | list[float]:
    """``10`` or a comma list ``5,10,20`` (a sweep)."""
    try:
        items = [float(item) for item in text.split(",") if item.strip()]
    except ValueError:
        items = []
    if not items:
        raise argparse.ArgumentTypeError(f"expected a number or a comma list such as 5,10,20 (got {text!r})")
    return items[0] if len(items) == 1 else items


def _ensure_std_streams() -> None:
    """Started with stdout or stderr closed (``aiperf profile ... >&-``): point the closed
    descriptor at /dev/null, so that nothing fails on a missing stream and no file this run
    opens lands on descriptor 1 or 2 to receive output meant for the terminal."""
    import os

    for fd, name in ((1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        null = os.open(os.devnull, os.O_WRONLY)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        setattr(sys, name, open(fd, "w", encoding="utf-8", closefd=False))  # noqa: SIM115


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what is wrong, where to look), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# -- profile ---------------------------------------------------------------------------------

_PROFILE_INTERNAL = {"command", "config_file", "_handler"}
#: commands listed first in ``aiperf --help``, in this order; the others follow by name.
LEADING_COMMANDS = ("profile", "plugins")


def add_profile_arguments(parser: argparse.ArgumentParser) -> None:
    """The core's flags of ``aiperf profile``. A flag not given stays out of the namespace, so
    that a ``--config`` file's value and then the config's default apply."""
    parser.argument_default = argparse.SUPPRESS
    # The run needs the parser (which flags are plugins') and sets up logging itself
    # (--verbose and --log-format may come from the --config file).
    parser.set_defaults(_parser=parser, _configures_logging=True)
    _add_profile_arguments(parser)


def _add_profile_arguments(parser: argparse.ArgumentParser) -> None:
    endpoint = parser.add_argument_group("Endpoint")
    endpoint.add_argument("-m", "--model", help="model name sent in every request (required)")
    endpoint.add_argument(
        "-u", "--url", nargs="+", action="append", metavar="URL",
        help="server base URL (default http://localhost:8000); several (repeated or after one "
        "--url) spread requests round-robin over the servers",
    )
    endpoint.add_argument(
        "--endpoint-type", help="API shape: chat, completions, embeddings, responses, messages, huggingface-generate, *-rankings, ... (docs/endpoints.md; default chat)"
    )
    endpoint.add_argument("--endpoint", help="request path, e.g. /v1/chat/completions (default: the type's)")
    endpoint.add_argument("--streaming", action="store_true", help="stream responses (needed for TTFT and ITL)")
    endpoint.add_argument("--api-key", help="sent as 'Authorization: Bearer KEY' (not together with -H Authorization); never logged or exported")
    endpoint.add_argument(
        "-H", "--header", dest="headers", action="append", metavar="NAME:VALUE",
        help="extra HTTP header, 'Name:Value' or a JSON object of several (repeatable)",
    )
    endpoint.add_argument(
        "--extra-inputs", nargs="+", action="append", metavar="KEY:VALUE|JSON",
        help="extra request fields, e.g. ignore_eos:true min_tokens:128 or '{\"min_tokens\": 128}'; "
        "values are JSON when they parse as JSON, else strings (repeatable)",
    )
    endpoint.add_argument("--ca-bundle", type=Path, help="CA bundle (PEM) to verify an https server with")
    endpoint.add_argument(
        "--gen-ai-provider",
        help="gen_ai.provider.name for telemetry (default: inferred from the URL host, _OTHER if unknown)",
    )

    data = parser.add_argument_group("Input")
    data.add_argument("--synthetic-input-tokens-mean", "--isl", type=_int_list, metavar="N", help="prompt length in tokens (default 550, at most 1000000); a comma list sweeps")
    data.add_argument("--synthetic-input-tokens-stddev", "--isl-stddev", type=float, metavar="N", help="(default 0)")
    data.add_argument("--output-tokens-mean", "--osl", type=_int_list, metavar="N", help="max_tokens per request (default: server's choice; at most 1000000); a comma list sweeps")
    data.add_argument("--output-tokens-stddev", "--osl-stddev", type=float, metavar="N", help="(default 0)")
    data.add_argument("--input-file", type=Path, help="JSONL prompts: {\"text\": ...} or {\"messages\": [...]} per line, or a trace (docs/datasets.md)")
    data.add_argument("--custom-dataset-type", metavar="TYPE", help="the --input-file's format: single_turn, random_pool, mooncake_trace, multi_turn (sessions; see --conversation-num) (default: inferred from its first line)")
    data.add_argument("--dataset", "--public-dataset", help="prompt source by name: sharegpt, or a plugin's (default: input_file when --input-file, else synthetic)")
    data.add_argument("--isl-block-size", "--synthetic-input-tokens-block-size", "--prompt-input-tokens-block-size", type=_int, metavar="N", help="tokens per hash_ids block of a mooncake_trace (default 512)")
    data.add_argument("--num-prompts", "--num-dataset-entries", type=_int, metavar="N", help="distinct synthetic prompts (default 100, at most 1000000, and at most 10^8 prompt tokens in all); for a random_pool file, the requests drawn")
    data.add_argument("--tokenizer", help="builtin (default), a tokenizer.json path or directory, or a Hugging Face id")
    data.add_argument(
        "--use-server-token-count", action="store_true",
        help="count tokens with the server's usage instead of the tokenizer (default: the tokenizer)",
    )
    data.add_argument("--random-seed", type=_int, help="seed for prompts and arrivals (default: random, recorded)")

    load = parser.add_argument_group("Load")
    load.add_argument("--concurrency", type=_int_list, metavar="N", help="requests in flight (default 1, at most 100000); with --request-rate, a cap; a comma list (1,4,16) sweeps")
    load.add_argument("--request-rate", type=_float_list, metavar="R", help="requests per second, open loop; a comma list (5,10,20) sweeps")
    load.add_argument("--request-rate-mode", "--arrival-pattern", metavar="MODE", help="constant, poisson or gamma (see --arrival-smoothness) (default poisson)")
    load.add_argument("--request-count", "--num-requests", type=_int, metavar="N", help="requests to measure (default 10)")
    load.add_argument("--benchmark-duration", type=float, metavar="S", help="measure for S seconds instead of a count")
    load.add_argument("--benchmark-grace-period", type=float, metavar="S", help="after --benchmark-duration, time for in-flight requests to finish (default 30)")
    load.add_argument("--warmup-request-count", type=_int, metavar="N", help="requests sent first and left out of the results (default 0)")
    load.add_argument("--fixed-schedule", action=argparse.BooleanOptionalAction, help="send each request at the --input-file's recorded time (default: on when its lines have timestamp or delay)")
    load.add_argument("--fixed-schedule-auto-offset", action="store_true", help="start the schedule at the first timestamp instead of 0")
    load.add_argument("--fixed-schedule-start-offset", type=_int, metavar="MS", help="replay from this timestamp (ms, included); the schedule starts there")
    load.add_argument("--fixed-schedule-end-offset", type=_int, metavar="MS", help="replay up to this timestamp (ms, included)")
    load.add_argument("--request-timeout-seconds", type=float, metavar="S", help="per-request deadline (default 600)")
    load.add_argument("--max-response-bytes", type=int, metavar="N", help="a larger response is an error of type response_too_large (default 67108864, 64 MiB)")
    load.add_argument("--wait-for-model-timeout", type=float, metavar="S", help="wait up to S seconds for the server to come up (default 0)")
    load.add_argument("--workers", type=_workers, metavar="N|auto", help="load-generating processes (at most 1024; default auto: 1 below 4 usable cores (cgroup quota included), else 1 per 64 of load; with live sinks on, the load runs apart from them)")

    sweep = parser.add_argument_group("Sweeps, repeats and search", "several runs in one directory (docs/sweeps.md)")
    sweep.add_argument("--sweep-type", choices=("grid", "zip"), help="with several comma lists: every combination (grid, default) or their i-th values together (zip)")
    sweep.add_argument("--sweep-cooldown-seconds", type=float, metavar="S", help="pause between the points of a sweep or search (default 0)")
    sweep.add_argument("--sweep-same-seed", action=argparse.BooleanOptionalAction, help="every point uses the same --random-seed (default); --no-sweep-same-seed adds the point's index")
    sweep.add_argument("--num-profile-runs", type=_int, metavar="N", help="run the same profile N times (trial_1 ... trial_N) and report each metric's mean with a confidence interval (default 1, at most 1000)")
    sweep.add_argument("--profile-run-cooldown-seconds", type=float, metavar="S", help="pause between the runs of --num-profile-runs (default 0)")
    sweep.add_argument("--profile-run-disable-warmup-after-first", action="store_true", help="send the --warmup-request-count requests before the first run only")
    sweep.add_argument("--confidence-level", type=float, metavar="P", help="of the intervals of --num-profile-runs, Student's t (default 0.95)")
    sweep.add_argument("--search", choices=("max-concurrency", "max-rate"), help="find the largest load whose share of requests meeting --goodput stays at --slo-attainment: double, then bisect")
    sweep.add_argument("--slo-attainment", type=float, metavar="F", help="share of requests that must meet every --goodput SLO (default 0.95)")
    sweep.add_argument("--search-resolution", type=float, metavar="N", help="stop bisecting when the passing and failing loads are this close (default 1)")
    sweep.add_argument("--search-max", type=float, metavar="N", help="largest load the search tries (default 4096 requests in flight, 4096 requests/s)")

    out = parser.add_argument_group("Output")
    out.add_argument("--artifact-dir", type=Path, help="run directory (default artifacts/<model>-<type>-<load>); of a sweep, repeat or search, the directory holding its runs")
    out.add_argument("--goodput", metavar="'METRIC:VALUE ...'", help="SLOs for goodput, e.g. 'time_to_first_token:200 inter_token_latency:20' (ms)")
    out.add_argument("--progress", action=argparse.BooleanOptionalAction, help="live progress line (default: on a terminal)")
    out.add_argument("-v", "--verbose", action="count", help="more logging (-vv: libraries too)")
    out.add_argument("--log-format", choices=("console", "json"), help="log lines for people or for machines")
    out.add_argument("--config", dest="config_file", type=Path, metavar="FILE", help="TOML file with the same keys as the flags; a plugin's options may go in its [plugins.NAME] table (docs/configuration.md)")


def _add_missing_extras(parser: argparse.ArgumentParser, plugins: Plugins, command: str) -> None:
    """Known flags of first-party plugins that are not installed: accept them, then explain."""
    if command != "profile":
        return
    taken = set(parser._option_string_actions)  # noqa: SLF001 - argparse has no public lookup
    for name, (flags, _message) in FIRST_PARTY.items():
        if plugins.loaded(name):
            continue
        for flag in flags:
            if flag in taken:
                continue
            parser.add_argument(flag, dest=f"_missing_{name}", nargs="*", action="append", help=argparse.SUPPRESS)
    if not plugins.loaded("gpu") and "--no-gpu-telemetry" not in taken:
        # Turning off what is not installed is not an error.
        parser.add_argument("--no-gpu-telemetry", dest="_ignored", action="store_true", help=argparse.SUPPRESS)
    if not plugins.loaded("server_metrics") and "--no-server-metrics" not in taken:
        parser.add_argument("--no-server-metrics", dest="_ignored", action="store_true", help=argparse.SUPPRESS)


def _check_missing_extras(ns: argparse.Namespace) -> None:
    for name, (_flags, message) in FIRST_PARTY.items():
        if getattr(ns, f"_missing_{name}", None) is not None:
            raise MissingExtra(message)


def _profile_values(
    ns: argparse.Namespace, parser: argparse.ArgumentParser, plugins: Plugins | None = None
) -> dict[str, Any]:
    from aiperf._config import (
        config_fields,
        load_config_file,
        parse_extra_inputs,
        parse_goodput,
        parse_headers,
    )
    from aiperf._options import env_dests, table_keys

    specs = plugins.options() if plugins is not None else {}

    given = {k: v for k, v in vars(ns).items() if k not in _PROFILE_INTERNAL and not k.startswith("_")}
    fields = config_fields()
    plugin_actions = {
        a.dest: a for a in parser._actions  # noqa: SLF001 - argparse has no public list
        if a.dest not in fields and a.dest not in _PROFILE_INTERNAL and a.dest != "help"
        and not a.dest.startswith("_")
    }
    values: dict[str, Any] = {}
    if getattr(ns, "config_file", None) is not None:
        tables = {name: table_keys(spec) for name, spec in specs.items()}
        values = load_config_file(ns.config_file, set(plugin_actions), tables)
    from_file = dict(values.pop("plugin_options", {}))
    # Precedence: flag > environment variable > config file > default. Where an option's
    # variable is set, the file's value steps aside; the variable is read with the rest.
    for dest in env_dests(specs.values()):
        from_file.pop(dest, None)
    plugin_options: dict[str, Any] = {}
    for dest, action in plugin_actions.items():
        value = given.get(dest, None)
        # A plugin flag that kept its declared default yields to the config file's value.
        if dest in from_file and (dest not in given or value == action.default):
            value = from_file[dest]
        plugin_options[dest] = value
    for key, value in given.items():
        if key in fields:
            values[key] = value
    values["plugin_options"] = plugin_options

    url = values.get("url")
    if isinstance(url, list):
        values["url"] = _flatten_flag(url)
    headers = values.get("headers")
    if headers:
        values["headers"] = parse_headers(headers)
    extra = values.get("extra_inputs")
    if extra is not None and not isinstance(extra, dict):
        items = [extra] if isinstance(extra, str) else _flatten_flag(list(extra))
        values["extra_inputs"] = parse_extra_inputs(items)
    goodput = values.get("goodput")
    if isinstance(goodput, str):
        values["goodput"] = parse_goodput(goodput)
    if values.get("verbose") is None:
        values.pop("verbose", None)
    return values


def _flatten_flag(values: list[Any]) -> list[Any]:
    """``--flag a b --flag c`` arrives as ``[[a, b], [c]]``; a config file gives a flat list."""
    out: list[Any] = []
    for value in values:
        out.extend(value if isinstance(value, list) else [value])
    return out


def run_profile_command(ns: argparse.Namespace) -> int:
    """``aiperf profile`` (registered by the built-in plugin): the flags, then the run."""
    from aiperf._plugins import current

    code = _run_profile(ns, current(), ns._parser, ns._argv)
    if ns._program and sys.getprofile() is None:
        # Run as the program (not called with arguments, as tests and scripts do):
        # everything is written, so skip the interpreter's teardown (see exit_now). Not
        # under a profiler (pyinstrument, cProfile): it writes its report after we return.
        from aiperf._workers import exit_now

        exit_now(code)
    return code


def _run_profile(ns: argparse.Namespace, plugins: Plugins, parser: argparse.ArgumentParser, argv: Sequence[str]) -> int:
    from aiperf._config import build_config, is_secret_header, query_values
    from aiperf._options import check_all
    from aiperf._profile import run_profile
    from aiperf._redact import remember_secrets

    _check_missing_extras(ns)
    values = _profile_values(ns, parser, plugins)
    # Every problem at once: the core's first, then each plugin's options, one line each.
    problems: list[str] = []
    config = None
    try:
        config = build_config(values)
    except UsageError as exc:
        problems.extend(str(exc).splitlines())
    problems.extend(check_all(plugins.options().values(), values.get("plugin_options", {})))
    if problems or config is None:
        raise UsageError("\n".join(problems))
    remember_secrets([config.api_key, *(v for n, v in config.headers if is_secret_header(n))])
    # Passwords in any URL, plugin flags included (--otel-url, --mlflow-tracking-uri, ...):
    # libraries log the URLs they call at -vv.
    remember_secrets(_url_passwords([*config.urls, *config.plugin_options.values()]))
    # Query values (``?api-version=...&sig=...``) are never recorded either.
    remember_secrets(v for url in config.urls for v in query_values(url))
    _configure_logging(config.verbose, config.log_format)
    return run_profile(config, plugins, argv)


def _url_passwords(values: Sequence[Any]) -> list[str]:
    from urllib.parse import urlsplit

    found: list[str] = []
    for value in values:
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if not isinstance(item, str) or "@" not in item:
                continue
            try:
                password = urlsplit(item if "://" in item else "//" + item).password
            except ValueError:
                continue
            if password:
                found.append(password)
    return found


def _configure_logging(verbose: int, fmt: str) -> None:
    from aiperf._logging import configure

    configure(verbose, fmt)


# -- the parser ------------------------------------------------------------------------------


def build_parser(plugins: Plugins) -> tuple[Parser, dict[str, argparse.ArgumentParser]]:
    parser = Parser(
        prog="aiperf",
        description="Benchmark OpenAI-compatible LLM inference servers: TTFT, inter-token "
        "latency, throughput and errors, streamed live to OpenTelemetry and MLflow.",
    )
    parser.add_argument("--version", action="version", version=f"aiperf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    parsers: dict[str, argparse.ArgumentParser] = {}

    # Every command comes from a plugin, ``profile`` and ``plugins`` from the built-in one.
    commands = plugins.commands()
    names = [n for n in LEADING_COMMANDS if n in commands]
    names += sorted(n for n in commands if n not in LEADING_COMMANDS)
    for name in names:
        command = commands[name]
        cmd_parser = sub.add_parser(name, help=command.help, description=command.description or command.help)
        command.add_arguments(cmd_parser)
        plugins.add_options(name, cmd_parser)
        if name == "profile" and plugins.options():
            from aiperf._options import add_flags

            for spec in plugins.options().values():
                add_flags(cmd_parser, spec)
        _add_missing_extras(cmd_parser, plugins, name)
        parsers[name] = cmd_parser
    if "compare" in parsers and not plugins.loaded("plot"):
        # `aiperf compare --plot FILE` comes from aiperf-plot: without it, say how to get it.
        parsers["compare"].add_argument(
            "--plot", dest="_missing_plot", nargs="*", action="append", help=argparse.SUPPRESS
        )
    if "plot" not in parsers:
        sub.add_parser("plot", help="draw figures (needs aiperf-plot)", add_help=False).add_argument(
            "rest", nargs=argparse.REMAINDER
        )
    return parser, parsers


def main(argv: Sequence[str] | None = None) -> int:
    _ensure_std_streams()
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = any(a in ("-v", "-vv", "--verbose") for a in args)
    try:
        # Logging is configured once a command runs (structlog costs import time that
        # `aiperf --help` should not pay); a plugin that fails to load configures it first.
        plugins = Plugins.load()
        set_current(plugins)
        parser, parsers = build_parser(plugins)
        if "plot" not in parsers and next((a for a in args if not a.startswith("-")), None) == "plot":
            # Before parsing: argparse would reject the plot flags it does not know.
            raise MissingExtra(FIRST_PARTY["plot"][1])
        ns = parser.parse_args(args)
        if ns.command is None:
            parser.print_help()
            return 2
        if ns.command == "plot" and "plot" not in parsers:
            raise MissingExtra(FIRST_PARTY["plot"][1])
        _check_missing_extras(ns)
        # What a command may need beyond its flags: the command line as given (recorded in
        # metadata.json), and whether it runs as the program (it may then skip the teardown).
        ns._argv = ["aiperf", *args]
        ns._program = argv is None
        if not getattr(ns, "_configures_logging", False):
            _configure_logging(1 if verbose else 0, "console")
        return plugins.commands()[ns.command].run(ns)
    except MissingExtra as exc:
        sys.stderr.write(f"{exc}\n")
        return exc.exit_code
    except AiperfError as exc:
        # Several problems (bad values of several flags) are one line each.
        sys.stderr.writelines(f"aiperf: error: {line}\n" for line in str(exc).splitlines() or [""])
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("\naiperf: interrupted\n")
        return 130
    except Exception as exc:  # noqa: BLE001 - one line for the user; the traceback with -v
        from aiperf._redact import scrub

        inner: BaseException = exc
        while isinstance(inner, BaseExceptionGroup) and inner.exceptions:
            inner = inner.exceptions[0]
        if isinstance(inner, AiperfError):
            prefix = "" if isinstance(inner, MissingExtra) else "aiperf: error: "
            sys.stderr.write(f"{prefix}{inner}\n")
            return inner.exit_code
        if verbose:
            raise
        exc = inner  # type: ignore[assignment]

        sys.stderr.write(
            f"aiperf: internal error: {type(exc).__name__}: {scrub(str(exc))} "
            "(run again with -v for the traceback, and please report it)\n"
        )
        return 1


__all__ = ["main", "build_parser", "FIRST_PARTY", "MissingExtra", "UsageError"]
