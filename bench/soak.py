"""The reliability soak: a long run against a server that misbehaves in every way it knows.

    nox -s soak                                   # 100,000 requests at concurrency 256
    nox -s soak -- --requests 2000 --concurrency 64 --fault-rate 0.05
    python bench/soak.py --help                   # the same, with aiperf installed

The built-in mock server injects every fault kind (and HTTP 500s) at ``--fault-rate`` each;
an OTLP receiver and a local MLflow store (sqlite) take the live telemetry. ``aiperf profile``
runs as a subprocess while the resident memory of its whole process tree is sampled every
half second. Then the run is checked against what the server itself counted:

- the exit code is 0 (some requests failed, none of it was aiperf's doing: docs/reliability.md);
- one whole JSONL line per request the server received, and per request sent;
- the summary's counts (successes, errors by type) are the JSONL's counts;
- each fault kind became the error type it must (or no error, for the ones a client must
  accept), so the error counts by type are the server's fault counts mapped to types;
- no ``Traceback`` in aiperf's output; every span reached the OTLP receiver; the MLflow run
  ended ``FINISHED`` and lost no live point.

The exit code is 0 when every check held, 1 otherwise. ``--output FILE`` writes the figures
and the checks as JSON (bench/soak_results.json holds the published full-size run).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import attrs

REPO = Path(__file__).resolve().parent.parent
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))

from aiperf.mock_server import FAULT_KINDS  # noqa: E402 (after the sys.path line above)
from aiperf.testing import MockServer  # noqa: E402
from support.otlp_receiver import OtlpReceiver  # noqa: E402

#: What aiperf must make of each outcome the mock server draws: the error type of that
#: request, or None where the answer is one a client must accept (stalls shorter than the
#: request timeout, a stream without [DONE], a usage it has to ignore).
EXPECTED_ERROR: dict[str, str | None] = {
    "ok": None,
    "error": "500",
    "reset": "ReadError",
    "close": "incomplete_stream",
    "disconnect": "RemoteProtocolError",
    "malformed-sse": "parse_error",
    "malformed-json": "parse_error",
    "stall-first": None,
    "stall-mid": None,
    "usage-string": None,
    "nan": "parse_error",
    "deep-json": "parse_error",
    "huge-event": "response_too_large",
    "no-done": None,
    "empty": "empty_response",
}
assert set(EXPECTED_ERROR) == {"ok", "error", *FAULT_KINDS}, "a fault kind without an expectation"

#: Below the huge-event fault's 2 MiB, far above any normal answer.
MAX_RESPONSE_BYTES = 1024 * 1024
SAMPLE_S = 0.5


@attrs.frozen(kw_only=True)
class SoakConfig:
    requests: int = 100_000
    concurrency: int = 256
    #: the share of requests given each fault kind, and HTTP 500.
    fault_rate: float = 0.01
    #: shorter than the request timeout: a stall delays its request, it does not fail it.
    stall_seconds: float = 1.0
    request_timeout_s: float = 60.0
    output_tokens: int = 16
    input_tokens: int = 32
    seed: int = 1
    #: create the MLflow store's tables before aiperf starts, so that aiperf's figures hold
    #: aiperf's work, not sqlite's first migration (tens of seconds on a busy machine).
    prepare_store: bool = True
    #: a guard against a hang, never a measurement.
    guard_s: float = 3600.0


# -- the memory of a process tree ----------------------------------------------------------------


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process (one pass over /proc)."""
    out: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_bytes()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: the fields follow the last ")"
        out[int(entry.name)] = int(stat.rsplit(b")", 1)[1].split()[1])
    return out


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, ppid in _parents().items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def _rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _role(pid: int, root: int) -> str:
    if pid == root:
        return "aiperf profile"
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "gone"
    if "resource_tracker" in cmdline:
        return "resource tracker"
    if "multiprocessing" in cmdline:
        return "worker"
    return cmdline[:60]


class RssSampler:
    """Samples VmRSS of a process and all its descendants every ``SAMPLE_S`` seconds.

    ``getrusage(RUSAGE_CHILDREN)`` reports only the largest single child, and only after it
    was waited for; the sum over the tree at one instant is what the machine must hold.
    """

    def __init__(self, root: int) -> None:
        self.root = root
        self.peak_total_kib = 0
        #: pid -> (role, peak KiB)
        self.peaks: dict[int, tuple[str, int]] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(SAMPLE_S)

    def sample(self) -> None:
        total = 0
        for pid in _tree(self.root):
            kib = _rss_kib(pid)
            if kib is None:
                continue
            total += kib
            role, peak = self.peaks.get(pid) or (_role(pid, self.root), 0)
            self.peaks[pid] = (role, max(peak, kib))
        self.samples += 1
        self.peak_total_kib = max(self.peak_total_kib, total)

    def per_process(self) -> list[dict[str, Any]]:
        rows = [
            {"pid": pid, "role": role, "peak_rss_mib": round(kib / 1024, 1)}
            for pid, (role, kib) in self.peaks.items()
        ]
        return sorted(rows, key=lambda row: (row["role"] != "aiperf profile", row["pid"]))


# -- reading the run directory -------------------------------------------------------------------


@attrs.define
class JsonlCounts:
    lines: int = 0
    broken: int = 0
    ok: int = 0
    errors: Counter[str] = attrs.field(factory=Counter)
    usage_ignored: int = 0
    last_end_ns: int = 0


def read_jsonl(path: Path) -> JsonlCounts:
    counts = JsonlCounts()
    with path.open("rb") as lines:
        for raw in lines:
            counts.lines += 1
            try:
                record = json.loads(raw)
            except ValueError:
                counts.broken += 1
                continue
            error = record.get("error")
            if error is None:
                counts.ok += 1
            else:
                counts.errors[error["type"]] += 1
            if record.get("usage_ignored"):
                counts.usage_ignored += 1
            counts.last_end_ns = max(counts.last_end_ns, record.get("end_time_ns") or 0)
    return counts


def mlflow_figures(run_dir: Path, db: Path) -> dict[str, Any]:
    """The run's status and logged metric points, read from the sqlite store itself."""
    export_file = run_dir / "mlflow_export.json"
    if not export_file.is_file():
        return {"export_file": False}
    export = json.loads(export_file.read_text())
    run_id = export.get("run_id")
    figures: dict[str, Any] = {
        "export_file": True,
        "run_id": run_id,
        "live_points": export.get("live_points"),
    }
    if run_id and db.is_file():
        with sqlite3.connect(db) as conn:
            row = conn.execute("SELECT status FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
            figures["status"] = row[0] if row else None
            figures["metric_points_in_store"] = conn.execute(
                "SELECT COUNT(*) FROM metrics WHERE run_uuid = ?", (run_id,)
            ).fetchone()[0]
            figures["runs_in_store"] = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    return figures


# -- the soak ------------------------------------------------------------------------------------


def expected_counts(truth: dict[str, Any]) -> tuple[int, Counter[str]]:
    """Successes and errors by type that the server's own counts call for."""
    requests = truth["requests"]
    ok = requests["ok"]
    errors: Counter[str] = Counter()
    for status, n in requests["errors"].items():
        errors[status] += n
    for kind, n in requests["faults"].items():
        error = EXPECTED_ERROR.get(kind, f"unexpected:{kind}")
        if error is None:
            ok += n
        else:
            errors[error] += n
    return ok, errors


def _argv(config: SoakConfig, url: str, otel_url: str, db: Path, run_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", "aiperf", "profile",
        "--url", url, "-m", "mock-model", "--endpoint-type", "chat", "--streaming",
        "--synthetic-input-tokens-mean", str(config.input_tokens),
        "--output-tokens-mean", str(config.output_tokens),
        "--concurrency", str(config.concurrency), "--request-count", str(config.requests),
        "--request-timeout-seconds", repr(config.request_timeout_s),
        "--max-response-bytes", str(MAX_RESPONSE_BYTES),
        "--otel-url", otel_url,
        "--mlflow-tracking-uri", f"sqlite:///{db}", "--mlflow-experiment", "soak",
        "--artifact-dir", str(run_dir), "--no-progress", "--random-seed", str(config.seed),
    ]  # fmt: skip


def _noted(notes: list[str], pattern: str) -> int:
    """The sum of the counts a pattern's first group finds in the run's notes."""
    return sum(int(m.group(1)) for n in notes if (m := re.search(pattern, n)))


def _prepare_store(db: Path, workdir: Path, env: dict[str, str]) -> None:
    code = "import sys, mlflow; mlflow.MlflowClient(sys.argv[1]).search_experiments()"
    subprocess.run(
        [sys.executable, "-c", code, f"sqlite:///{db}"],
        cwd=workdir, env=env, check=True, capture_output=True, timeout=600,
    )  # fmt: skip


def _wait(process: subprocess.Popen[bytes], guard_s: float) -> tuple[int, bool]:
    try:
        return process.wait(timeout=guard_s), False
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=60), True
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait(), True


def run_soak(config: SoakConfig, workdir: Path) -> dict[str, Any]:
    """Run one soak in ``workdir``; returns the figures and the checks."""
    workdir.mkdir(parents=True, exist_ok=True)
    run_dir = workdir / "run"
    db = workdir / "mlflow.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MLFLOW_"))}
    env["PYTHONUNBUFFERED"] = "1"
    faults = {kind: config.fault_rate for kind in FAULT_KINDS}
    server_options: dict[str, Any] = {
        "faults": faults,
        "error_rate": config.fault_rate,
        "stall_seconds": config.stall_seconds,
        "seed": config.seed,
        "stats_capacity": 100_000,
    }
    if config.prepare_store:
        _prepare_store(db, workdir, env)
    with MockServer(**server_options) as server, OtlpReceiver(keep=False) as collector:
        out_path, err_path = workdir / "aiperf.stdout", workdir / "aiperf.stderr"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            started = time.time()
            process = subprocess.Popen(
                _argv(config, server.url, collector.url, db, run_dir),
                stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=workdir,
            )  # fmt: skip
            sampler = RssSampler(process.pid)
            sampler.start()
            code, hung = _wait(process, config.guard_s)
            exited = time.time()
            sampler.stop()
        truth = server.stats()
        spans, points = collector.span_count, collector.point_count
        exports = {
            "metrics": len(collector.requests("/v1/metrics")),
            "traces": len(collector.requests("/v1/traces")),
        }
    output = out_path.read_text(errors="replace") + err_path.read_text(errors="replace")
    return _report(
        config,
        run_dir=run_dir,
        db=db,
        code=code,
        hung=hung,
        wall_s=exited - started,
        exited=exited,
        sampler=sampler,
        truth=truth,
        otel={"exports": exports, "spans": spans, "metric_points": points},
        output=output,
    )


def _report(
    config: SoakConfig,
    *,
    run_dir: Path,
    db: Path,
    code: int,
    hung: bool,
    wall_s: float,
    exited: float,
    sampler: RssSampler,
    truth: dict[str, Any],
    otel: dict[str, Any],
    output: str,
) -> dict[str, Any]:
    jsonl_path = run_dir / "profile_export.jsonl"
    summary_path = run_dir / "profile_export_aiperf.json"
    jsonl = read_jsonl(jsonl_path) if jsonl_path.is_file() else JsonlCounts()
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    metrics = summary.get("metrics", {})
    summary_ok = int(metrics.get("request_count", {}).get("avg") or 0)
    summary_errors = {e["type"]: e["count"] for e in summary.get("errors", [])}
    summary_error_total = int(metrics.get("error_request_count", {}).get("avg") or 0)
    expected_ok, expected_errors = expected_counts(truth)
    received = truth["requests"]["total"]
    mlflow = mlflow_figures(run_dir, db)
    live = mlflow.get("live_points") or {}
    notes = summary.get("notes", [])
    # Live telemetry is bounded: a machine that cannot keep up drops points and says so in a
    # note. What must hold is that nothing is lost without a count.
    otel_lost = _noted(notes, r"^otel: (\d+) live events dropped") + _noted(
        notes, r"^otel: .*?(\d+) of \d+ spans not delivered"
    )
    otel_unreachable = any(n.startswith("otel: the collector") for n in notes)
    otel_accounted = (
        otel["spans"] == 0 if otel_unreachable else otel["spans"] + otel_lost >= jsonl.lines
    )
    lost_points = (live.get("dropped") or 0) + (live.get("failed") or 0)
    mlflow_accounted = (
        bool(live)
        and (mlflow.get("metric_points_in_store") or 0) >= live.get("logged", 0)
        and (lost_points == 0 or any(n.startswith("mlflow: ") and "not logged" in n for n in notes))
    )
    last_response_to_exit = exited - jsonl.last_end_ns / 1e9 if jsonl.last_end_ns else None
    checks = {
        "exit code 0 (no aiperf failure; server faults are counted, not fatal)": (code == 0, code),
        "finished without the guard's kill": (not hung, hung),
        "JSONL lines == requests sent": (jsonl.lines == config.requests, jsonl.lines),
        "JSONL lines == requests the server received": (jsonl.lines == received, received),
        "every JSONL line whole JSON": (jsonl.broken == 0, jsonl.broken),
        "summary request_count == JSONL successes": (summary_ok == jsonl.ok, summary_ok),
        "summary errors by type == JSONL errors by type": (
            summary_errors == dict(jsonl.errors),
            summary_errors,
        ),
        "summary error_request_count == JSONL errors": (
            summary_error_total == sum(jsonl.errors.values()),
            summary_error_total,
        ),
        "successes == the server's ok + faults a client must accept": (
            jsonl.ok == expected_ok,
            expected_ok,
        ),
        "errors by type == the server's faults mapped to types": (
            dict(jsonl.errors) == dict(expected_errors),
            dict(expected_errors),
        ),
        "usage ignored == usage-string faults": (
            jsonl.usage_ignored == truth["requests"]["faults"].get("usage-string", 0),
            jsonl.usage_ignored,
        ),
        "no client disconnects at the server": (
            truth["requests"]["client_disconnects"] == 0,
            truth["requests"]["client_disconnects"],
        ),
        "no Traceback in aiperf's output": ("Traceback" not in output, output.count("Traceback")),
        "summary status FINISHED": (summary.get("status") == "FINISHED", summary.get("status")),
        "every request's OTel span received, or its loss in a note": (
            otel_accounted,
            {"spans": otel["spans"], "noted_lost": otel_lost},
        ),
        "MLflow run FINISHED": (mlflow.get("status") == "FINISHED", mlflow.get("status")),
        "MLflow live points logged are in the store, losses in a note": (mlflow_accounted, live),
    }
    return {
        "config": attrs.asdict(config),
        "figures": {
            "exit_code": code,
            "wall_s": round(wall_s, 1),
            "requests_per_s": round(jsonl.lines / wall_s, 1) if wall_s else None,
            "benchmark_duration_s": (metrics.get("benchmark_duration") or {}).get("avg"),
            "peak_rss_total_mib": round(sampler.peak_total_kib / 1024, 1),
            "peak_rss_by_process": sampler.per_process(),
            "rss_samples": sampler.samples,
            "jsonl_lines": jsonl.lines,
            "server_received": received,
            "successes": jsonl.ok,
            "errors_by_type": dict(jsonl.errors.most_common()),
            "usage_ignored": jsonl.usage_ignored,
            "server_faults": truth["requests"]["faults"],
            "server_errors": truth["requests"]["errors"],
            "connection_retries": (summary.get("connections") or {}).get("retries"),
            "notes": notes,
            "otel": otel,
            "mlflow": mlflow,
            "last_response_to_exit_s": (
                round(last_response_to_exit, 2) if last_response_to_exit is not None else None
            ),
        },
        "checks": [
            {"check": name, "ok": bool(ok), "seen": seen} for name, (ok, seen) in checks.items()
        ],
        "output_tail": output[-3000:],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = SoakConfig()
    parser = argparse.ArgumentParser(prog="bench/soak.py", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=defaults.requests)
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument(
        "--fault-rate", type=float, default=defaults.fault_rate,
        help="share of requests per fault kind and for HTTP 500 (default %(default)s)",
    )  # fmt: skip
    parser.add_argument("--stall-seconds", type=float, default=defaults.stall_seconds)
    parser.add_argument("--request-timeout", type=float, default=defaults.request_timeout_s)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--guard", type=float, default=defaults.guard_s, help="kill aiperf after this many seconds"
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="write the figures and checks here (JSON)"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep the run directory here (default: a temporary one)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = SoakConfig(
        requests=args.requests,
        concurrency=args.concurrency,
        fault_rate=args.fault_rate,
        stall_seconds=args.stall_seconds,
        request_timeout_s=args.request_timeout,
        seed=args.seed,
        guard_s=args.guard,
    )
    if args.workdir is not None:
        result = run_soak(config, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="aiperf-soak-") as tmp:
            result = run_soak(config, Path(tmp))
    if args.output is not None:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["figures"], indent=2))
    failed = [c for c in result["checks"] if not c["ok"]]
    for check in result["checks"]:
        print(f"{'ok  ' if check['ok'] else 'FAIL'} {check['check']}: {check['seen']}")
    if failed:
        print(result["output_tail"], file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
