"""Every figure, checked through its matplotlib objects before saving: labels with units,
and one data point per request, GPU sample or run, as the exports say."""

from __future__ import annotations

import json

import numpy as np
import pytest
from aiperf_plot import figures
from aiperf_plot.draw import assign_colors
from aiperf_plot.figures import CannotDraw
from aiperf_plot.rundir import load_run
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle, StepPatch

COLOR = figures.run_color(2)


def _labelled(ax, kind, prefix):
    artists = {"collection": ax.collections, "line": ax.lines, "patch": ax.patches}[kind]
    found = [a for a in artists if str(a.get_label()).startswith(prefix)]
    assert 1 == len(found), [a.get_label() for a in artists]
    return found[0]


def _summary(run_dir):
    return json.loads((run_dir / "profile_export_aiperf.json").read_text())["metrics"]


def _every_axis_labelled(fig: Figure) -> None:
    for ax in fig.axes:
        assert ax.get_ylabel()
    assert fig.axes[-1].get_xlabel()


class TestOverTime:
    """TTFT and ITL per request over time."""

    @pytest.mark.parametrize(
        ("build", "tag", "ylabel"),
        [
            (figures.ttft_over_time, "time_to_first_token", "Time to first token (ms)"),
            (figures.itl_over_time, "inter_token_latency", "Inter-token latency (ms)"),
        ],
    )
    def test_one_point_per_request(self, make_run, build, tag, ylabel):
        run_dir = make_run(requests=30, errors=3)
        fig = build(load_run(run_dir), COLOR)
        (ax,) = fig.axes
        points = _labelled(ax, "collection", "requests")
        assert _summary(run_dir)[tag]["count"] == len(points.get_offsets())
        assert (ylabel, "Request start (s since the first request)") == (
            ax.get_ylabel(),
            ax.get_xlabel(),
        )
        assert ax.get_title().startswith(ylabel.split(" (")[0])

    def test_points_are_the_exported_values(self, make_run):
        run_dir = make_run(requests=12)
        fig = figures.ttft_over_time(load_run(run_dir), COLOR)
        ys = _labelled(fig.axes[0], "collection", "requests").get_offsets()[:, 1]
        rows = [
            json.loads(line) for line in (run_dir / "profile_export.jsonl").read_text().splitlines()
        ]
        expected = sorted(
            r["metrics"]["time_to_first_token"] for r in rows if r["phase"] == "profile"
        )
        assert expected == pytest.approx(sorted(ys))

    def test_percentile_lines_are_the_exported_percentiles(self, make_run):
        run_dir = make_run(requests=25)
        fig = figures.ttft_over_time(load_run(run_dir), COLOR)
        stats = _summary(run_dir)["time_to_first_token"]
        for q in ("p50", "p99"):
            line = _labelled(fig.axes[0], "line", q)
            assert stats[q] == pytest.approx(line.get_ydata()[0])

    def test_failed_requests_marked(self, make_run):
        fig = figures.ttft_over_time(load_run(make_run(requests=20, errors=4)), COLOR)
        assert 4 == len(_labelled(fig.axes[0], "collection", "failed").get_offsets())

    def test_run_colour_used(self, make_run):
        fig = figures.itl_over_time(load_run(make_run()), COLOR)
        face = _labelled(fig.axes[0], "collection", "requests").get_facecolor()[0]
        from matplotlib.colors import to_rgb

        assert to_rgb(COLOR) == pytest.approx(tuple(face[:3]))

    def test_without_streaming_cannot_draw_ttft(self, make_run):
        with pytest.raises(CannotDraw, match="TTFT needs a --streaming run"):
            figures.ttft_over_time(load_run(make_run(streaming=False)), COLOR)

    def test_without_requests_file_says_so(self, make_run):
        run_dir = make_run()
        (run_dir / "profile_export.jsonl").unlink()
        with pytest.raises(CannotDraw, match="^profile_export.jsonl not found$"):
            figures.itl_over_time(load_run(run_dir), COLOR)

    def test_without_summary_percentiles_are_computed(self, make_run):
        run_dir = make_run(requests=21)
        expected = _summary(run_dir)["time_to_first_token"]["p99"]
        (run_dir / "profile_export_aiperf.json").unlink()
        fig = figures.ttft_over_time(load_run(run_dir), COLOR)
        assert expected == pytest.approx(_labelled(fig.axes[0], "line", "p99").get_ydata()[0])


class TestLatencyDistribution:
    """Histogram and CDF with p50/p90/p99."""

    def test_histogram_and_cdf_count_every_request(self, make_run):
        run_dir = make_run(requests=40, errors=2)
        fig = figures.latency_distribution(load_run(run_dir), COLOR)
        hist_ax, cdf_ax = fig.axes
        count = _summary(run_dir)["request_latency"]["count"]
        bars = [p for p in hist_ax.patches if isinstance(p, Rectangle)]
        assert count == sum(bar.get_height() for bar in bars)
        cdf = _labelled(cdf_ax, "line", "requests")
        assert count == len(cdf.get_xdata())
        assert 100.0 == pytest.approx(cdf.get_ydata()[-1])

    def test_percentiles_marked_on_both(self, make_run):
        run_dir = make_run(requests=40)
        fig = figures.latency_distribution(load_run(run_dir), COLOR)
        stats = _summary(run_dir)["request_latency"]
        for ax in fig.axes:
            for q in ("p50", "p90", "p99"):
                assert stats[q] == pytest.approx(_labelled(ax, "line", q).get_xdata()[0])

    def test_failed_requests_left_out_and_said(self, make_run):
        run_dir = make_run(requests=20, errors=3)
        fig = figures.latency_distribution(load_run(run_dir), COLOR)
        hist_ax, cdf_ax = fig.axes
        assert 17 == len(_labelled(cdf_ax, "line", "requests").get_xdata())
        assert "Histogram (3 failed requests left out)" == hist_ax.get_title()

    def test_labels(self, make_run):
        fig = figures.latency_distribution(load_run(make_run()), COLOR)
        assert [
            ("Request latency (ms)", "Requests"),
            ("Request latency (ms)", "Requests at or below (%)"),
        ] == [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes]
        assert fig.get_suptitle().startswith("Request latency distribution")


class TestThroughputOverTime:
    """Output tokens/s and requests in flight, 1 s bins."""

    def test_tokens_match_the_export(self, make_run):
        run_dir = make_run(requests=60, concurrency=4)
        fig = figures.throughput_over_time(load_run(run_dir), COLOR)
        tokens_ax, flight_ax = fig.axes
        stairs = next(p for p in tokens_ax.patches if isinstance(p, StepPatch))
        values, edges, _ = stairs.get_data()
        metrics = _summary(run_dir)
        # Σ osl = output token throughput × benchmark duration, by the metric's definition.
        total = metrics["output_token_throughput"]["avg"] * metrics["benchmark_duration"]["avg"]
        assert total == pytest.approx(float((values * np.diff(edges)).sum()), rel=1e-6)
        assert 1.0 == pytest.approx(float(np.diff(edges)[0]))
        assert ("Output tokens/s", "Requests in flight", "Time since the first request (s)") == (
            tokens_ax.get_ylabel(),
            flight_ax.get_ylabel(),
            flight_ax.get_xlabel(),
        )

    def test_in_flight_never_above_concurrency(self, make_run):
        fig = figures.throughput_over_time(load_run(make_run(requests=60, concurrency=3)), COLOR)
        flight_ax = fig.axes[1]
        stairs = next(p for p in flight_ax.patches if isinstance(p, StepPatch))
        values = stairs.get_data()[0]
        assert values.max() <= 3 + 1e-9
        assert 3 == _labelled(flight_ax, "line", "--concurrency").get_ydata()[0]


class TestGpu:
    """GPU utilization and power with throughput."""

    def test_one_line_per_gpu_with_every_sample(self, make_run):
        run_dir = make_run(requests=30, gpus=2)
        fig = figures.gpu_over_time(load_run(run_dir), COLOR)
        util_ax, power_ax, tokens_ax = fig.axes
        samples = [
            json.loads(x) for x in (run_dir / "gpu_telemetry_export.jsonl").read_text().splitlines()
        ]
        for ax in (util_ax, power_ax):
            for gpu in (0, 1):
                line = _labelled(ax, "line", f"GPU {gpu}")
                assert sum(s["gpu_index"] == gpu for s in samples) == len(line.get_xdata())
        first = [s["gpu_utilization"] * 100 for s in samples if s["gpu_index"] == 0]
        assert first == pytest.approx(_labelled(util_ax, "line", "GPU 0").get_ydata())
        assert ("GPU utilization (%)", "Power (W)", "Output tokens/s") == tuple(
            ax.get_ylabel() for ax in fig.axes
        )
        assert "Time since the first request (s)" == tokens_ax.get_xlabel()

    def test_gpus_differ_in_colour(self, make_run):
        fig = figures.gpu_over_time(load_run(make_run(gpus=3)), COLOR)
        colours = {line.get_color() for line in fig.axes[0].lines}
        assert 3 == len(colours)

    def test_absent_power_leaves_its_panel_out(self, make_run):
        run_dir = make_run(gpus=1)
        path = run_dir / "gpu_telemetry_export.jsonl"
        rows = [json.loads(x) for x in path.read_text().splitlines()]
        path.write_text(
            "".join(
                json.dumps({k: v for k, v in r.items() if k != "power_watts"}) + "\n" for r in rows
            )
        )
        fig = figures.gpu_over_time(load_run(run_dir), COLOR)
        assert ["GPU utilization (%)", "Output tokens/s"] == [ax.get_ylabel() for ax in fig.axes]

    def test_no_readings_cannot_draw(self, make_run):
        run_dir = make_run()
        (run_dir / "gpu_telemetry_export.jsonl").write_text(json.dumps({"wall_ns": 1}) + "\n")
        with pytest.raises(CannotDraw, match="has no gpu_utilization or power_watts readings"):
            figures.gpu_over_time(load_run(run_dir), COLOR)

    def test_no_file_cannot_draw(self, make_run):
        with pytest.raises(CannotDraw, match="^no gpu_telemetry_export.jsonl"):
            figures.gpu_over_time(load_run(make_run()), COLOR)


class TestComparison:
    """Several runs: throughput-latency curves, per-user vs total, goodput."""

    @pytest.mark.parametrize(
        ("build", "tag", "xlabel"),
        [
            (figures.throughput_vs_ttft, "time_to_first_token", "Time to first token (ms)"),
            (figures.throughput_vs_latency, "request_latency", "Request latency (ms)"),
        ],
    )
    def test_one_point_per_run_per_percentile(self, sweep, build, tag, xlabel):
        plotted = assign_colors([load_run(p) for p in sweep])
        fig = build(plotted)
        (ax,) = fig.axes
        summaries = sorted(
            (_summary(p) for p in sweep), key=lambda m: m["output_token_throughput"]["avg"]
        )
        for stat in ("p50", "p99"):
            offsets = _labelled(ax, "collection", stat).get_offsets()
            assert len(sweep) == len(offsets)
            expected = [(m[tag][stat], m["output_token_throughput"]["avg"]) for m in summaries]
            assert np.array(sorted(expected)) == pytest.approx(
                np.array(sorted(map(tuple, offsets)))
            )
        assert (xlabel, "Output token throughput (tokens/s)") == (ax.get_xlabel(), ax.get_ylabel())

    def test_points_labelled_with_load(self, sweep):
        fig = figures.per_user_vs_total_throughput(assign_colors([load_run(p) for p in sweep]))
        labels = sorted(t.get_text() for t in fig.axes[0].texts)
        assert ["concurrency 1", "concurrency 4", "concurrency 8"] == labels

    def test_run_colour_is_the_same_as_in_its_single_run_figures(self, sweep):
        plotted = assign_colors([load_run(p) for p in sweep])
        fig = figures.throughput_vs_ttft(plotted)
        colours = _labelled(fig.axes[0], "collection", "p50").get_facecolors()
        from matplotlib.colors import to_rgba

        for p, face in zip(plotted, colours, strict=True):
            single = figures.ttft_over_time(p.run, p.color)
            single_face = _labelled(single.axes[0], "collection", "requests").get_facecolor()[0]
            assert to_rgba(p.color)[:3] == pytest.approx(tuple(face[:3]))
            assert tuple(single_face[:3]) == pytest.approx(tuple(face[:3]))

    def test_sorted_by_load_not_by_name(self, make_run):
        runs = [make_run(f"run-concurrency{c}", concurrency=c, seed=c) for c in (10, 2, 4)]
        plotted = assign_colors([load_run(p) for p in runs])
        assert ["concurrency2", "concurrency4", "concurrency10"] == [
            p.run.load_setting for p in plotted
        ]

    def test_per_user_axes(self, sweep):
        fig = figures.per_user_vs_total_throughput(assign_colors([load_run(p) for p in sweep]))
        ax = fig.axes[0]
        assert 3 == len(_labelled(ax, "collection", "runs").get_offsets())
        assert (
            "Output token throughput per user (tokens/s)",
            "Output token throughput, total (tokens/s)",
        ) == (ax.get_xlabel(), ax.get_ylabel())

    def test_run_without_summary_is_noted_on_the_figure(self, sweep):
        (sweep[0] / "profile_export_aiperf.json").unlink()
        fig = figures.throughput_vs_latency(assign_colors([load_run(p) for p in sweep]))
        assert 2 == len(_labelled(fig.axes[0], "collection", "p50").get_offsets())
        assert [f"not shown (no request latency): {sweep[0].name}"] == [
            t.get_text() for t in fig.texts
        ]

    def test_one_run_with_summary_cannot_draw(self, sweep):
        for p in sweep[1:]:
            (p / "profile_export_aiperf.json").unlink()
        with pytest.raises(CannotDraw, match="needs two runs .*; 1 had them"):
            figures.throughput_vs_ttft(assign_colors([load_run(p) for p in sweep]))

    def test_goodput_bars(self, make_run):
        runs = [
            make_run(
                f"m-chat-concurrency{c}", concurrency=c, seed=c, goodput={"time_to_first_token": 70}
            )
            for c in (1, 8)
        ]
        fig = figures.goodput(assign_colors([load_run(p) for p in runs]))
        ax = fig.axes[0]
        bars = [p for p in ax.patches if isinstance(p, Rectangle)]
        expected = sorted(
            _summary(p)[t]["avg"] for p in runs for t in ("goodput", "request_throughput")
        )
        assert expected == pytest.approx(sorted(b.get_height() for b in bars))
        assert "Requests/s" == ax.get_ylabel()
        assert ["concurrency 1", "concurrency 8"] == [t.get_text() for t in ax.get_xticklabels()]
        assert "time to first token ≤ 70 ms" in ax.get_title()

    def test_goodput_without_slos_cannot_draw(self, sweep):
        with pytest.raises(CannotDraw, match="no run was profiled with --goodput"):
            figures.goodput(assign_colors([load_run(p) for p in sweep]))


def test_every_figure_titled_and_labelled(make_run, sweep):
    run = load_run(make_run(gpus=1, server=True, goodput={"request_latency": 400}))
    for build in figures.SINGLE_RUN.values():
        fig = build(run, COLOR)
        assert fig.get_suptitle() or fig.axes[0].get_title()
        _every_axis_labelled(fig)
    plotted = assign_colors([load_run(p) for p in sweep])
    for name, build in figures.COMPARISON.items():
        if name == "compare_goodput":
            continue
        fig = build(plotted)
        assert fig.axes[0].get_title()
        _every_axis_labelled(fig)


def test_no_pyplot_figure_left_open(make_run):
    import sys

    figures.ttft_over_time(load_run(make_run()), COLOR)
    pyplot = sys.modules.get("matplotlib.pyplot")
    assert pyplot is None or [] == pyplot.get_fignums()


def test_lines_are_line2d(make_run):
    fig = figures.ttft_over_time(load_run(make_run()), COLOR)
    assert all(isinstance(line, Line2D) for line in fig.axes[0].lines)
    assert all(isinstance(c, PathCollection) for c in fig.axes[0].collections)


def test_server_over_time_draws_kv_cache_and_requests(make_run):
    """KV-cache use in %, running and waiting requests: one panel each, from the JSONL."""
    run = load_run(make_run(server=True, concurrency=3))
    fig = figures.server_over_time(run, COLOR)
    kv, requests = fig.axes[:2]
    assert "KV-cache use (%)" == kv.get_ylabel()
    assert all(20 <= y <= 80 for y in kv.lines[0].get_ydata())
    assert ["running", "waiting"] == [line.get_label() for line in requests.lines]
    assert {3.0} == set(requests.lines[0].get_ydata())


def test_server_over_time_not_applicable_without_the_file(make_run):
    with pytest.raises(figures.NotApplicable, match="server_metrics_export.jsonl"):
        figures.server_over_time(load_run(make_run()), COLOR)
