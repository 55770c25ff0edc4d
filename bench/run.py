"""aiperf's own benchmark suite: capacity, timing accuracy, rate accuracy, start-up, memory.

    nox -s bench                          # the full suite (5-10 minutes on 2 cores)
    nox -s bench -- --quick               # a smoke variant (about 2 minutes)
    nox -s bench -- --scenario accuracy   # one scenario (repeatable)
    python bench/run.py --help            # the same, in an environment with aiperf installed

Every scenario runs ``aiperf profile`` in a subprocess against the built-in mock server on
127.0.0.1 and compares what aiperf reports with what the server measured. The full suite
writes bench/results.json and bench/results.md; a quick or partial run writes
bench/results-quick.* or bench/results-partial.* unless --output says otherwise. The exit
code is 0 when every scenario produced its figures (goals met or not), 1 when one failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from benchlib import machine  # noqa: E402 (after the sys.path line above)
from benchlib.clients import CLIENTS, OtherClient  # noqa: E402
from benchlib.figures import Figures, markdown_document, results_document  # noqa: E402
from benchlib.suite import (  # noqa: E402
    FULL,
    NEEDS,
    NEEDS_MODULE,
    QUICK,
    SCENARIOS,
    SLOW,
    Bench,
    ScenarioError,
    profiles,
    run_scenario,
    warm_up,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="Measure aiperf itself against the built-in mock server.",
    )
    parser.add_argument("--quick", action="store_true", help="smaller counts, no 100k-request memory run (~2 min)")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=list(SCENARIOS),
        metavar="NAME",
        help=f"run only this scenario (repeatable): {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (default 3, at least 3 for a published figure)")
    parser.add_argument("--memory-repeats", type=int, default=1, help="runs of the long memory scenario (default 1)")
    parser.add_argument("--workers", type=int, default=None, help="pass --workers N to every aiperf profile (default: aiperf's choice)")
    for flag, what in (
        ("--inference-perf", "an inference-perf"),
        ("--guidellm", "a guidellm"),
        ("--nvidia-aiperf", "NVIDIA AIPerf's aiperf"),
    ):
        parser.add_argument(
            flag,
            metavar="PATH",
            default=None,
            help=f"{what} executable (installed in its own environment) to grade beside aiperf in the wire scenario",
        )
    parser.add_argument("--output", type=Path, default=None, help="results JSON path; the Markdown table goes next to it (.md)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory with every run directory")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also write pyinstrument profiles of a 1-request run and the c64 capacity run to bench/profiles/",
    )
    parser.add_argument(
        "--profile-only",
        action="store_true",
        help="only write the profiles (no figures, results files untouched)",
    )
    args = parser.parse_args(argv)
    for flag, value in (("--repeats", args.repeats), ("--memory-repeats", args.memory_repeats)):
        if value < 1:
            parser.error(f"{flag}: must be >= 1 (got {value})")
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers: must be >= 1 (got {args.workers})")
    for flag in CLIENTS:
        path = getattr(args, flag)
        if path is not None and shutil.which(path) is None:
            parser.error(f"--{flag.replace('_', '-')}: {path} is not an executable")
    return args


def chosen_scenarios(args: argparse.Namespace) -> list[str]:
    if args.scenario:
        return [name for name in SCENARIOS if name in args.scenario]
    names = []
    for name in SCENARIOS:
        if args.quick and name in SLOW:
            continue
        module = NEEDS_MODULE.get(name)
        if module and not _importable(module):
            print(f"bench: leaving out the {name} scenario: {module} is not installed (pip install mlflow)", file=sys.stderr)
            continue
        program = NEEDS.get(name)
        if program and shutil.which(program) is None:
            print(
                f"bench: leaving out the {name} scenario: {program} is not installed "
                f"(Debian/Ubuntu: apt-get install {program}; it needs root or CAP_NET_RAW)",
                file=sys.stderr,
            )
            continue
        names.append(name)
    return names


def other_clients(args: argparse.Namespace) -> tuple[OtherClient, ...]:
    """The other clients named on the command line, in a fixed order."""
    return tuple(kind(executable=getattr(args, flag)) for flag, kind in CLIENTS.items() if getattr(args, flag))


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def default_output(args: argparse.Namespace) -> Path:
    if args.output is not None:
        return args.output
    if args.quick:
        return BENCH_DIR / "results-quick.json"
    if args.scenario:
        return BENCH_DIR / "results-partial.json"
    return BENCH_DIR / "results.json"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = chosen_scenarios(args)
    output = default_output(args)
    scratch = Path(tempfile.mkdtemp(prefix="aiperf-bench-"))
    figures = Figures()
    bench = Bench(
        scratch=scratch,
        sizes=QUICK if args.quick else FULL,
        repeats=args.repeats,
        memory_repeats=args.memory_repeats,
        figures=figures,
        workers=args.workers,
        others=other_clients(args),
        report_dir=output.parent,
    )
    started = datetime.now(UTC)
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    durations: dict[str, float] = {}
    try:
        try:
            warm_up(bench)
        except ScenarioError as exc:
            print(f"bench: the warm-up run failed: {exc}", file=sys.stderr)
            return 1
        if args.profile or args.profile_only:
            try:
                profiles(bench, BENCH_DIR / "profiles")
            except ScenarioError as exc:
                print(f"bench: {exc}", file=sys.stderr)
                return 1
        if args.profile_only:
            return 0
        for name in names:
            durations[name] = round(run_scenario(bench, name), 1)
    finally:
        if args.keep:
            bench.say(f"run directories kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    suite = {
        "mode": "quick" if args.quick else "full",
        "scenarios": names,
        "repeats": args.repeats,
        "memory_repeats": args.memory_repeats,
        "workers": args.workers if args.workers is not None else "aiperf default",
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - t0, 1),
        "scenario_duration_s": durations,
        "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
    }
    document = results_document(figures, machine=machine.describe(BENCH_DIR.parent), suite=suite)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    table = markdown_document(document)
    output.with_suffix(".md").write_text(table)
    print(table)
    print(f"wrote {output} and {output.with_suffix('.md')}")
    return 1 if document["summary"]["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
