"""The figures. Each builder returns a matplotlib :class:`~matplotlib.figure.Figure` (not saved)
or raises :class:`CannotDraw` saying what is missing.

Figures are made with ``Figure()`` directly, never through pyplot: no GUI backend, no global
figure registry, and PNGs are rendered by Agg when saved.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiperf
import attrs
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import to_hex, to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from aiperf_plot import series
from aiperf_plot.rundir import (
    GPU_FILE,
    REQUESTS_FILE,
    SERVER_FILE,
    SUMMARY_FILE,
    GpuSample,
    Request,
    RunData,
    load_label,
    load_sort_key,
)

WIDTH_IN = 9.0
HEIGHT_IN = 5.0
DPI = 100
#: ten distinct colours; run i of an invocation gets colour i in every figure.
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
MARK = "0.25"
PERCENTILE_STYLES = {50: "--", 90: "-.", 99: ":"}
GPU_LINESTYLES = ("-", "--", ":", "-.")


class CannotDraw(Exception):
    """A figure cannot be drawn from what the run directory holds; the message says why."""


class NotApplicable(CannotDraw):
    """The figure is for data this run did not record (no GPU telemetry, no SLOs): nothing is
    wrong, but the user is still told why the figure is absent."""


def run_color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


@attrs.frozen(kw_only=True)
class Plotted:
    """A run with the colour it has in every figure of one invocation."""

    run: RunData
    color: str
    #: a point of a sweep: its name on the figures (``concurrency 4, ISL 128``), its place
    #: in the sweep, and the curve it belongs to; ``None`` for a run of its own.
    label: str | None = None
    index: int | None = None
    group: str | None = None

    @property
    def shown_as(self) -> str:
        return self.label or load_label(self.run.load_setting)

    @property
    def order(self) -> tuple[object, ...]:
        if self.index is not None:
            return (0, self.index, "")
        return (1, *load_sort_key(self.run.load_setting))

    @property
    def curve(self) -> str:
        """Runs of one curve: a sweep's group, else the kind of load."""
        if self.group is not None:
            return f"sweep:{self.group}"
        return load_sort_key(self.run.load_setting)[0]


# -- single run ------------------------------------------------------------------------------


def ttft_over_time(run: RunData, color: str) -> Figure:
    return _metric_over_time(
        run,
        color,
        tag="time_to_first_token",
        what="Time to first token per request",
        ylabel="Time to first token (ms)",
        missing="no request has a time to first token (TTFT needs a --streaming run)",
    )


def itl_over_time(run: RunData, color: str) -> Figure:
    return _metric_over_time(
        run,
        color,
        tag="inter_token_latency",
        what="Inter-token latency per request",
        ylabel="Inter-token latency (ms)",
        missing="no request has an inter-token latency "
        "(ITL needs a --streaming run and at least two output tokens)",
    )


def _metric_over_time(
    run: RunData, color: str, *, tag: str, what: str, ylabel: str, missing: str
) -> Figure:
    requests = _requests(run)
    t0 = requests[0].start_ns
    points = [(r.start_ns, v) for r in requests if (v := r.value(tag)) is not None]
    if not points:
        raise CannotDraw(missing)
    xs = series.seconds_since(t0, [start for start, _ in points])
    ys = np.array([value for _, value in points])
    fig, ax = _figure()
    ax.scatter(xs, ys, s=16, color=color, alpha=0.75, linewidths=0, label=f"requests ({len(ys)})")
    for q in (50, 99):
        value = _percentile(run, tag, q, ys)
        ax.axhline(value, color=MARK, ls=PERCENTILE_STYLES[q], lw=1.2, label=f"p{q} {value:.1f} ms")
    failed = [r.start_ns for r in requests if not r.ok]
    if failed:
        ax.scatter(
            series.seconds_since(t0, failed), np.zeros(len(failed)), marker="x", color="black",
            clip_on=False, zorder=3, label=f"failed requests ({len(failed)})",
        )  # fmt: skip
    ax.set_xlabel("Request start (s since the first request)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.set_title(_title(what, run))
    # Outside the axes: a scatter over the whole run leaves no empty corner for a legend.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    return fig


def latency_distribution(run: RunData, color: str) -> Figure:
    requests = _requests(run)
    # Successful requests only, as in the exported statistics: a fast failure is no latency.
    latencies = np.array(
        [v for r in requests if r.ok and (v := r.value("request_latency")) is not None]
    )
    if latencies.size == 0:
        raise CannotDraw(f"no successful request in {REQUESTS_FILE} has a request_latency")
    failed = sum(not r.ok for r in requests)
    fig, (hist_ax, cdf_ax) = _figure(ncols=2, width=WIDTH_IN * 1.25)
    edges = np.histogram_bin_edges(latencies, bins="auto")
    if len(edges) > 61:
        edges = np.histogram_bin_edges(latencies, bins=60)
    hist_ax.hist(
        latencies, bins=edges, color=color, alpha=0.8, label=f"requests ({latencies.size})"
    )
    xs, shares = series.ecdf(latencies)
    cdf_ax.plot(
        xs, shares, drawstyle="steps-post", color=color, lw=2, label=f"requests ({xs.size})"
    )
    for q, style in PERCENTILE_STYLES.items():
        value = _percentile(run, "request_latency", q, latencies)
        for ax in (hist_ax, cdf_ax):
            ax.axvline(value, color=MARK, ls=style, lw=1.2, label=f"p{q} {value:.1f} ms")
    hist_ax.set_ylabel("Requests")
    hist_ax.set_title(f"Histogram ({failed} failed requests left out)" if failed else "Histogram")
    cdf_ax.set_ylabel("Requests at or below (%)")
    cdf_ax.set_ylim(0, 100.5)
    cdf_ax.set_title("Cumulative distribution")
    for ax in (hist_ax, cdf_ax):
        ax.set_xlabel("Request latency (ms)")
    # One legend below both panels: inside, it would hide bars or the curve.
    fig.legend(handles=cdf_ax.get_legend_handles_labels()[0], loc="outside lower center", ncols=4,
               fontsize="small")  # fmt: skip
    fig.suptitle(_title("Request latency distribution", run))
    return fig


def throughput_over_time(run: RunData, color: str) -> Figure:
    requests = _requests(run)
    t0 = requests[0].start_ns
    edges = series.bin_edges(series.run_span_s(requests, t0))
    fig, (tokens_ax, flight_ax) = _figure(nrows=2, sharex=True, height=HEIGHT_IN * 1.2)
    _draw_tokens_per_s(tokens_ax, requests, t0, edges, color)
    _stairs(flight_ax, series.requests_in_flight(requests, t0, edges), color, "mean in flight")
    kind, value = load_sort_key(run.load_setting)
    if kind == "concurrency":
        flight_ax.axhline(value, color=MARK, ls="--", lw=1.2, label=f"--concurrency {value:g}")
    flight_ax.set_ylabel("Requests in flight")
    flight_ax.set_ylim(bottom=0)
    flight_ax.set_xlabel("Time since the first request (s)")
    flight_ax.legend(loc="lower right", fontsize="small")
    fig.suptitle(_title("Output throughput and requests in flight (1 s bins)", run))
    return fig


def gpu_over_time(run: RunData, color: str) -> Figure:
    if not run.has_gpu_file:
        raise NotApplicable(
            f"no {GPU_FILE} (the run recorded no GPU telemetry: "
            "aiperf-gpu needs an NVIDIA GPU or --gpu-telemetry URL)"
        )
    if not run.gpu:
        raise CannotDraw(run.gpu_problem or f"{GPU_FILE} has no samples")
    readings = [
        ("gpu_utilization", "GPU utilization (%)", 100.0),
        ("power_watts", "Power (W)", 1.0),
    ]
    present = [r for r in readings if any(getattr(s, r[0]) is not None for s in run.gpu)]
    if not present:
        raise CannotDraw(f"{GPU_FILE} has no gpu_utilization or power_watts readings")
    requests = run.requests
    t0 = run.t0_ns if run.t0_ns is not None else run.gpu[0].wall_ns
    nrows = len(present) + (1 if requests else 0)
    fig, axes = _figure(nrows=nrows, sharex=True, height=2.2 * nrows + 0.8, squeeze=False)
    axes = list(axes[:, 0])
    gpus = _by_gpu(run.gpu)
    many_hosts = len({key[0] for key in gpus}) > 1
    for ax, (field, label, scale) in zip(axes, present, strict=False):
        for n, ((host, index, _uuid), samples) in enumerate(gpus.items()):
            points = [(s.wall_ns, v) for s in samples if (v := getattr(s, field)) is not None]
            if not points:
                continue
            xs = series.seconds_since(t0, [w for w, _ in points])
            name = f"GPU {index}" + (f" ({host})" if many_hosts else "")
            ax.plot(xs, np.array([v for _, v in points]) * scale, lw=1.6, label=name,
                    color=_shade(color, n, len(gpus)),
                    ls=GPU_LINESTYLES[n % len(GPU_LINESTYLES)])  # fmt: skip
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    if requests:
        edges = series.bin_edges(series.run_span_s(requests, t0))
        _draw_tokens_per_s(axes[-1], requests, t0, edges, color)
    axes[-1].set_xlabel("Time since the first request (s)")
    fig.suptitle(_title("GPU utilization and power with throughput", run))
    return fig


def server_over_time(run: RunData, color: str) -> Figure:
    """What the server reported over time: KV-cache use, running and waiting requests."""
    if not run.has_server_file:
        raise NotApplicable(
            f"no {SERVER_FILE} (the run scraped no server metrics: "
            "aiperf-server-metrics needs a server with a Prometheus /metrics endpoint)"
        )
    if not run.server:
        raise CannotDraw(run.server_problem or f"{SERVER_FILE} has no values")
    panels = [
        (("kv_cache_usage",), "KV-cache use (%)", 100.0),
        (("requests_running", "requests_waiting"), "Requests", 1.0),
    ]
    present = [p for p in panels if any(pt.name in p[0] for pt in run.server)]
    t0 = run.t0_ns if run.t0_ns is not None else run.server[0].wall_ns
    fig, axes = _figure(
        nrows=len(present),
        sharex=True,
        height=max(HEIGHT_IN, 2.4 * len(present) + 0.8),
        squeeze=False,
    )
    for ax, (names, label, scale) in zip(list(axes[:, 0]), present, strict=False):
        curves: dict[tuple[str, str], list[tuple[int, float]]] = {}
        for point in run.server:
            if point.name in names:
                curves.setdefault((point.name, point.series), []).append(
                    (point.wall_ns, point.value)
                )
        many = len({series for _, series in curves}) > 1
        for n, ((name, series_label), points) in enumerate(curves.items()):
            xs = series.seconds_since(t0, [w for w, _ in points])
            shown = name.replace("requests_", "") + (f" {series_label}" if many else "")
            ax.plot(xs, np.array([v for _, v in points]) * scale, lw=1.6, label=shown,
                    color=_shade(color, n, len(curves)),
                    ls=GPU_LINESTYLES[n % len(GPU_LINESTYLES)])  # fmt: skip
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    axes[-1, 0].set_xlabel("Time since the first request (s)")
    fig.suptitle(_title("What the server reported: KV cache, running and waiting", run))
    return fig


def _draw_tokens_per_s(
    ax: Axes, requests: Sequence[Request], t0: int, edges: np.ndarray, color: str
) -> None:
    tokens = series.output_tokens_per_s(requests, t0, edges)
    _stairs(ax, tokens, color, "output tokens/s")
    if not tokens.values.any():
        ax.text(0.5, 0.5, "no output tokens reported", transform=ax.transAxes, ha="center")
    ax.set_ylabel("Output tokens/s")
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower right", fontsize="small")


def _stairs(ax: Axes, binned: series.Binned, color: str, label: str) -> None:
    ax.stairs(binned.values, binned.edges, color=color, lw=2, label=label)
    ax.stairs(binned.values, binned.edges, color=color, alpha=0.25, fill=True)


def _shade(color: str, n: int, of: int) -> str:
    """The run's colour, darker or lighter per GPU, so GPUs differ but the run stays visible."""
    if of <= 1:
        return color
    mix = -0.45 + 0.9 * n / (of - 1)
    target = 1.0 if mix > 0 else 0.0
    return to_hex(tuple(c + (target - c) * abs(mix) for c in to_rgb(color)))


def _by_gpu(samples: Sequence[GpuSample]) -> dict[tuple[str, int, str], list[GpuSample]]:
    groups: dict[tuple[str, int, str], list[GpuSample]] = {}
    for sample in samples:
        groups.setdefault(sample.gpu_key, []).append(sample)
    return dict(sorted(groups.items()))


# -- several runs ----------------------------------------------------------------------------


def throughput_vs_ttft(runs: Sequence[Plotted]) -> Figure:
    return _throughput_vs(runs, tag="time_to_first_token", what="Time to first token")


def throughput_vs_latency(runs: Sequence[Plotted]) -> Figure:
    return _throughput_vs(runs, tag="request_latency", what="Request latency")


def _throughput_vs(runs: Sequence[Plotted], *, tag: str, what: str) -> Figure:
    fig, ax = _figure()
    handles = []
    # p50 labels go above-left of their points, p99 labels below-right: the two points of one
    # run are often close together.
    for stat, marker, style, side in (("p50", "o", "-", "left"), ("p99", "s", "--", "right")):
        shown, missing = _points(runs, (tag, stat), ("output_token_throughput", "avg"))
        _require_two(shown, f"{what.lower()} {stat} and output token throughput")
        _curve(ax, shown, marker=marker, style=style, label=stat, side=side)
        handles.append(Line2D([], [], color=MARK, marker=marker, ls=style, label=f"{what} {stat}"))
    ax.set_xlabel(f"{what} (ms)")
    ax.set_ylabel("Output token throughput (tokens/s)")
    _room_for_labels(ax)
    ax.legend(handles=handles, loc="lower right", fontsize="small")
    ax.set_title(f"Output token throughput vs. {what.lower()}")
    _footnote(fig, missing, what.lower())
    return fig


def per_user_vs_total_throughput(runs: Sequence[Plotted]) -> Figure:
    shown, missing = _points(
        runs, ("output_token_throughput_per_user", "avg"), ("output_token_throughput", "avg")
    )
    _require_two(shown, "output token throughput per user and in total")
    fig, ax = _figure()
    _curve(ax, shown, marker="o", style="-", label="runs", side="right")
    ax.set_xlabel("Output token throughput per user (tokens/s)")
    ax.set_ylabel("Output token throughput, total (tokens/s)")
    _room_for_labels(ax)
    ax.set_title("Total vs. per-user output token throughput")
    _footnote(fig, missing, "per-user throughput")
    return fig


def goodput(runs: Sequence[Plotted]) -> Figure:
    shown, _missing = _points(runs, ("goodput", "avg"), ("request_throughput", "avg"))
    if not shown:
        raise NotApplicable("no run was profiled with --goodput SLOs")
    fig, ax = _figure()
    positions = np.arange(len(shown))
    colors = [p.color for p, _, _ in shown]
    goodputs = [good for _, good, _ in shown]
    throughputs = [throughput for _, _, throughput in shown]
    width = 0.38
    ax.bar(positions - width / 2, throughputs, width, color=colors, alpha=0.35, hatch="//",
           edgecolor=colors, label="request throughput")  # fmt: skip
    good_bars = ax.bar(positions + width / 2, goodputs, width, color=colors, label="goodput")
    # A goodput of zero is a bar of no height: the number says it was measured.
    ax.bar_label(good_bars, fmt="%.2f", padding=2, fontsize="small")
    ax.set_xticks(positions, [p.shown_as for p, _, _ in shown])
    ax.set_xlabel("Load setting")
    ax.set_ylabel("Requests/s")
    ax.legend(
        handles=[
            Line2D([], [], color=MARK, alpha=0.35, lw=8, label="request throughput (all)"),
            Line2D([], [], color=MARK, lw=8, label="goodput (within every SLO)"),
        ],
        loc="upper left",
        fontsize="small",
    )
    ax.set_title(f"Goodput vs. request throughput\nSLOs: {_slos(shown)}")
    return fig


def pareto_front(runs: Sequence[Plotted]) -> Figure:
    """Throughput against tail latency, with the runs no other run beats on both joined: the
    loads worth choosing between. A run off the front has another with more throughput for
    no more latency."""
    shown, missing = _points(runs, ("request_latency", "p99"), ("output_token_throughput", "avg"))
    _require_two(shown, "request latency p99 and output token throughput")
    front = pareto_optimal([(x, y) for _, x, y in shown])
    fig, ax = _figure()
    dominated = [item for item, best in zip(shown, front) if not best]
    best = sorted((item for item, on in zip(shown, front) if on), key=lambda item: item[1])
    ax.step([x for _, x, _ in best], [y for _, _, y in best], where="post", color=MARK, lw=1.5,
            zorder=1, label="Pareto front")  # fmt: skip
    ax.scatter([x for _, x, _ in best], [y for _, _, y in best], c=[p.color for p, _, _ in best],
               s=90, edgecolors="black", linewidths=1.2, zorder=3)  # fmt: skip
    if dominated:
        ax.scatter(
            [x for _, x, _ in dominated], [y for _, _, y in dominated],
            c=[p.color for p, _, _ in dominated], s=50, alpha=0.45, edgecolors="none", zorder=2,
        )  # fmt: skip
    for plotted, x, y in shown:
        ax.annotate(plotted.shown_as, (x, y), xytext=(7, -12), textcoords="offset points",
                    ha="left", fontsize="small")  # fmt: skip
    handles = [
        Line2D([], [], color=MARK, marker="o", mec="black", mew=1.2, ms=9, label="on the front"),
        Line2D([], [], color=MARK, marker="o", ls="", alpha=0.45, ms=7, label="beaten by a run on it"),
    ]
    ax.legend(handles=handles, loc="lower right", fontsize="small")
    ax.set_xlabel("Request latency p99 (ms)")
    ax.set_ylabel("Output token throughput (tokens/s)")
    _room_for_labels(ax)
    ax.set_title(f"Pareto front: throughput vs. tail latency ({sum(front)} of {len(shown)} runs on it)")
    _footnote(fig, missing, "request latency")
    return fig


def pareto_optimal(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For each (latency, throughput): True when no other point has latency <= and
    throughput >=, better in at least one."""
    out = []
    for i, (x, y) in enumerate(points):
        beaten = any(
            (ox <= x and oy >= y) and (ox < x or oy > y)
            for j, (ox, oy) in enumerate(points)
            if j != i
        )
        out.append(not beaten)
    return out


#: what the figure of repeats shows: (metric, statistic, title).
REPEAT_PANELS = (
    ("time_to_first_token", "p50", "TTFT p50"),
    ("time_to_first_token", "p99", "TTFT p99"),
    ("inter_token_latency", "p50", "ITL p50"),
    ("request_latency", "p50", "Request latency p50"),
    ("request_latency", "p99", "Request latency p99"),
    ("output_token_throughput", "avg", "Output token throughput"),
    ("request_throughput", "avg", "Request throughput"),
    ("goodput", "avg", "Goodput"),
)


def repeat_confidence(aggregate: Mapping[str, Any], name: str, confidence: float | None) -> Figure:
    """Repeats of one profile: each trial's value, and the mean with its confidence interval
    as an error bar. A panel whose runs disagree (coefficient of variation above the limit)
    says so in its title."""
    panels = []
    for tag, stat, title in REPEAT_PANELS:
        entry = aggregate.get(tag)
        numbers = entry.get(stat) if isinstance(entry, Mapping) else None
        if isinstance(numbers, Mapping) and isinstance(numbers.get("mean"), int | float):
            panels.append((title, str(entry.get("unit") or ""), numbers))
    if not panels:
        raise CannotDraw("the aggregate of the repeats has none of the metrics drawn")
    ncols = min(4, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = _figure(nrows=nrows, ncols=ncols, width=3.2 * ncols, height=3.0 * nrows, squeeze=False)
    flat = list(np.atleast_1d(axes).ravel())
    for ax, (title, unit, numbers) in zip(flat, panels):
        values = [float(v) for v in numbers.get("values") or () if isinstance(v, int | float)]
        trials = np.arange(1, len(values) + 1)
        ax.scatter(trials, values, color=PALETTE[0], s=30, zorder=3, label="trials")
        mean = float(numbers["mean"])
        low, high = numbers.get("ci_low"), numbers.get("ci_high")
        at = len(values) + 1.2
        if isinstance(low, int | float) and isinstance(high, int | float):
            ax.errorbar([at], [mean], yerr=[[mean - low], [high - mean]], fmt="s", color="black",
                        capsize=6, ms=6, zorder=4)  # fmt: skip
        else:
            ax.plot([at], [mean], "s", color="black", ms=6)
        ax.axhline(mean, color=MARK, lw=0.8, ls="--", zorder=1)
        ax.set_xticks([*trials, at], [*(str(t) for t in trials), "mean"])
        ax.set_xlim(0.4, at + 0.6)
        cv = numbers.get("cv")
        flag = ""
        if isinstance(cv, int | float):
            flag = f"\nCV {100 * cv:.1f}%" + (" - unstable" if numbers.get("unstable") else "")
        ax.set_title(f"{title}{flag}", fontsize="medium",
                     color="#b00000" if numbers.get("unstable") else "black")  # fmt: skip
        ax.set_ylabel(unit)
    for ax in flat[len(panels):]:
        ax.set_visible(False)
    level = f"{100 * confidence:g}% " if confidence else ""
    fig.suptitle(f"Repeats of one profile: each trial, and the mean with its {level}interval (Student's t)\n{name}")
    return fig


def _points(
    runs: Sequence[Plotted], x: tuple[str, str], y: tuple[str, str]
) -> tuple[list[tuple[Plotted, float, float]], list[str]]:
    shown, missing = [], []
    for plotted in runs:
        summary = plotted.run.summary
        xv = summary.stat(*x) if summary else None
        yv = summary.stat(*y) if summary else None
        if xv is None or yv is None:
            missing.append(plotted.run.name)
        else:
            shown.append((plotted, xv, yv))
    shown.sort(key=lambda p: p[0].order)
    return shown, missing


def _require_two(shown: Sequence[object], what: str) -> None:
    if len(shown) < 2:
        raise CannotDraw(f"needs two runs with {what} in {SUMMARY_FILE}; {len(shown)} had them")


def _curve(
    ax: Axes,
    shown: Sequence[tuple[Plotted, float, float]],
    *,
    marker: str,
    style: str,
    label: str,
    side: str,
) -> None:
    """One point per run in its colour, labelled with its load; runs of the same kind of load
    (concurrency, request rate) joined in load order."""
    kinds: dict[str, list[tuple[float, float]]] = {}
    for plotted, x, y in shown:
        kinds.setdefault(plotted.curve, []).append((x, y))
    for points in kinds.values():
        ax.plot(
            [x for x, _ in points], [y for _, y in points], color=MARK, ls=style, lw=1, zorder=1
        )
    ax.scatter(
        [x for _, x, _ in shown], [y for _, _, y in shown], c=[p.color for p, _, _ in shown],
        marker=marker, s=70, edgecolors="black", linewidths=0.6, zorder=3, label=label,
    )  # fmt: skip
    offset, align = ((-7, 6), "right") if side == "left" else ((7, -12), "left")
    for plotted, x, y in shown:
        ax.annotate(
            plotted.shown_as,
            (x, y),
            xytext=offset,
            textcoords="offset points",
            ha=align,
            fontsize="small",
        )


def _room_for_labels(ax: Axes) -> None:
    """Axes from zero, with space right and above the last point for its load label."""
    ax.margins(x=0.15, y=0.12)
    ax.autoscale_view()
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)


def _footnote(fig: Figure, missing: Sequence[str], what: str) -> None:
    if missing:
        fig.text(0.01, 0.01, f"not shown (no {what}): {', '.join(missing)}", fontsize="small")


def _slos(shown: Sequence[tuple[Plotted, float, float]]) -> str:
    slos = {}
    for plotted, _, _ in shown:
        if plotted.run.summary is not None:
            slos.update(plotted.run.summary.goodput_slos)
    if not slos:
        return "as set by --goodput"
    return ", ".join(_slo(tag, value) for tag, value in sorted(slos.items()))


def _slo(tag: str, value: float) -> str:
    spec = aiperf.METRICS.get(tag)
    if spec is None:
        return f"{tag} {value:g}"
    relation = "≤" if spec.lower_is_better else "≥"
    return f"{spec.header.lower()} {relation} {value:g} {spec.unit}"


# -- shared ----------------------------------------------------------------------------------


def _figure(
    *, nrows: int = 1, ncols: int = 1, width: float = WIDTH_IN, height: float = HEIGHT_IN,
    sharex: bool = False, squeeze: bool = True,
) -> tuple[Figure, Axes | np.ndarray]:  # fmt: skip
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=sharex, squeeze=squeeze)
    for ax in np.atleast_1d(axes).ravel():
        ax.grid(True, alpha=0.3)
    return fig, axes


def _requests(run: RunData) -> tuple[Request, ...]:
    if not run.requests:
        raise CannotDraw(run.requests_problem or f"{REQUESTS_FILE} has no measured requests")
    return run.requests


def _percentile(run: RunData, tag: str, q: int, values: np.ndarray) -> float:
    """The export's percentile when there is one, so the figure shows the numbers people read
    in the summary; computed the same way otherwise."""
    exported = run.summary.stat(tag, f"p{q}") if run.summary else None
    return exported if exported is not None else series.percentile(values, q)


def _title(what: str, run: RunData) -> str:
    load = run.load_setting
    if load and load not in run.name:
        return f"{what}\n{run.name} ({load_label(load)})"
    return f"{what}\n{run.name}"


SingleBuilder = Callable[[RunData, str], Figure]
ComparisonBuilder = Callable[[Sequence[Plotted]], Figure]

#: file stem -> builder, in the order the figures are drawn.
SINGLE_RUN: dict[str, SingleBuilder] = {
    "ttft_over_time": ttft_over_time,
    "itl_over_time": itl_over_time,
    "request_latency_distribution": latency_distribution,
    "throughput_over_time": throughput_over_time,
    "gpu_over_time": gpu_over_time,
    "server_over_time": server_over_time,
}
COMPARISON: dict[str, ComparisonBuilder] = {
    "compare_throughput_vs_ttft": throughput_vs_ttft,
    "compare_throughput_vs_latency": throughput_vs_latency,
    "compare_per_user_vs_total_throughput": per_user_vs_total_throughput,
    "compare_goodput": goodput,
    "compare_pareto_front": pareto_front,
}
#: the figure of repeats (``aiperf plot`` on a directory of ``--num-profile-runs``).
REPEAT_FIGURE = "repeat_confidence"
