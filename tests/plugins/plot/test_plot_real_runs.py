"""Figures from real runs against the mock server: ``profile --plot`` on one run, and
``aiperf plot`` over a sweep of three concurrencies. The figures' data points are checked
against what the core exported, not against numbers this plugin computed itself."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from aiperf.testing import MockServer
from aiperf_plot import figures
from aiperf_plot.draw import assign_colors
from aiperf_plot.rundir import load_run
from matplotlib.image import imread
from matplotlib.patches import StepPatch
from support.plot_cli import aiperf_in

pytestmark = pytest.mark.integration

SINGLE = {
    "ttft_over_time.png",
    "itl_over_time.png",
    "request_latency_distribution.png",
    "throughput_over_time.png",
}
# The mock server answers /metrics; with aiperf-server-metrics installed it is scraped.
if importlib.util.find_spec("aiperf_server_metrics") is not None:
    SINGLE.add("server_over_time.png")
COMPARISON = {f"{name}.png" for name in figures.COMPARISON}
SWEEP = (1, 2, 4)
REQUESTS = 12


def _profile(
    url: str, cwd: Path, concurrency: int, *extra: str
) -> subprocess.CompletedProcess[str]:
    proc = aiperf_in("profile", "--url", url, "--model", "mock-model", "--endpoint-type", "chat",
        "--streaming", "--synthetic-input-tokens-mean", "32", "--output-tokens-mean", "16",
        "--concurrency", str(concurrency), "--request-count", str(REQUESTS), "--random-seed", "1",
        *extra, cwd=cwd,
    )  # fmt: skip
    assert 0 == proc.returncode, proc.stderr
    return proc


@pytest.fixture(scope="module")
def server() -> Iterator[MockServer]:
    # Injected errors give failed requests, so counts that include or exclude them are tested.
    with MockServer(ttft_ms=8, itl_ms=2, error_rate=0.15, seed=3) as mock:
        yield mock


@pytest.fixture(scope="module")
def single(server: MockServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("single") / "run"
    _profile(server.url, run_dir.parent, 3, "--artifact-dir", str(run_dir), "--plot")
    return run_dir


@pytest.fixture(scope="module")
def sweep(server: MockServer, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    cwd = tmp_path_factory.mktemp("sweep")
    for concurrency in SWEEP:
        _profile(server.url, cwd, concurrency, "--goodput", "time_to_first_token:1000")
    runs = sorted((cwd / "artifacts").iterdir())
    assert [f"mock-model-chat-concurrency{c}" for c in SWEEP] == [p.name for p in runs]
    proc = aiperf_in("plot", "--paths", "artifacts", cwd=cwd)
    assert 0 == proc.returncode, proc.stderr
    assert "comparison of 3 runs: 5 figures in artifacts/plots" in proc.stdout.splitlines()
    assert "Traceback" not in proc.stderr
    return runs


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "profile_export_aiperf.json").read_text())["metrics"]


def _decodes(png: Path) -> None:
    image = imread(png)
    assert image.ndim == 3
    assert image.shape[0] >= figures.HEIGHT_IN * figures.DPI
    assert image[..., :3].std() > 0.01


def _labelled(artists, prefix):
    (found,) = [a for a in artists if str(a.get_label()).startswith(prefix)]
    return found


class TestProfilePlot:
    """``aiperf profile --plot``."""

    def test_pngs_written_and_decode(self, single):
        assert SINGLE == {p.name for p in (single / "plots").iterdir()}
        for png in (single / "plots").iterdir():
            _decodes(png)

    @pytest.mark.parametrize(
        ("build", "tag"),
        [
            (figures.ttft_over_time, "time_to_first_token"),
            (figures.itl_over_time, "inter_token_latency"),
        ],
    )
    def test_points_match_the_export(self, single, build, tag):
        fig = build(load_run(single), figures.run_color(0))
        (ax,) = fig.axes
        stats = _metrics(single)[tag]
        assert stats["count"] == len(_labelled(ax.collections, "requests").get_offsets())
        assert stats["p50"] == pytest.approx(_labelled(ax.lines, "p50").get_ydata()[0])
        assert ax.get_xlabel() and ax.get_ylabel().endswith("(ms)")

    def test_failed_requests_match_the_export(self, single):
        fig = figures.ttft_over_time(load_run(single), figures.run_color(0))
        failed = _metrics(single)["error_request_count"]["avg"]
        assert failed > 0  # the server injected errors
        assert failed == len(_labelled(fig.axes[0].collections, "failed").get_offsets())

    def test_latency_distribution_matches_the_export(self, single):
        fig = figures.latency_distribution(load_run(single), figures.run_color(0))
        hist_ax, cdf_ax = fig.axes
        stats = _metrics(single)["request_latency"]
        assert stats["count"] == sum(p.get_height() for p in hist_ax.patches)
        assert stats["count"] == len(_labelled(cdf_ax.lines, "requests").get_xdata())
        for q in ("p50", "p90", "p99"):
            assert stats[q] == pytest.approx(_labelled(cdf_ax.lines, q).get_xdata()[0])

    def test_throughput_bins_hold_every_output_token(self, single):
        fig = figures.throughput_over_time(load_run(single), figures.run_color(0))
        tokens_ax, flight_ax = fig.axes
        values, edges, _ = next(p for p in tokens_ax.patches if isinstance(p, StepPatch)).get_data()
        total = _metrics(single)["total_output_tokens"]["avg"]
        assert total == pytest.approx(float((values * np.diff(edges)).sum()))
        in_flight = next(p for p in flight_ax.patches if isinstance(p, StepPatch)).get_data()[0]
        assert in_flight.max() <= 3 + 1e-9
        assert "Output tokens/s" == tokens_ax.get_ylabel()


class TestSweep:
    """``aiperf plot --paths artifacts`` over three concurrencies."""

    def test_every_png_written_and_decodes(self, sweep):
        for run_dir in sweep:
            assert SINGLE == {p.name for p in (run_dir / "plots").iterdir()}
        compare_dir = sweep[0].parent / "plots"
        assert COMPARISON == {p.name for p in compare_dir.iterdir()}
        for png in [*compare_dir.iterdir(), *(p for r in sweep for p in (r / "plots").iterdir())]:
            _decodes(png)

    def test_curves_have_one_point_per_run_at_the_exported_values(self, sweep):
        plotted = assign_colors([load_run(p) for p in sweep])
        for build, tag in (
            (figures.throughput_vs_ttft, "time_to_first_token"),
            (figures.throughput_vs_latency, "request_latency"),
        ):
            ax = build(plotted).axes[0]
            for stat in ("p50", "p99"):
                expected = sorted(
                    (_metrics(p)[tag][stat], _metrics(p)["output_token_throughput"]["avg"])
                    for p in sweep
                )
                offsets = sorted(map(tuple, _labelled(ax.collections, stat).get_offsets()))
                assert np.array(expected) == pytest.approx(np.array(offsets))
        labels = {t.get_text() for t in ax.texts}
        assert {f"concurrency {c}" for c in SWEEP} == labels

    def test_goodput_bars_are_the_exported_goodput(self, sweep):
        ax = figures.goodput(assign_colors([load_run(p) for p in sweep])).axes[0]
        heights = sorted(p.get_height() for p in ax.patches)
        expected = sorted(
            _metrics(p)[tag]["avg"] for p in sweep for tag in ("goodput", "request_throughput")
        )
        assert expected == pytest.approx(heights)
        assert "time to first token ≤ 1000 ms" in ax.get_title()
