"""``aiperf compare --plot FILE``: the figure of the differences, drawn by aiperf-plot from the
report the core hands over (the core never imports matplotlib)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from aiperf._compare import Gate, Settings, compare_sources, parse_gate
from aiperf_plot.compare import GATE_GID, VERDICT_COLORS, comparison_figure
from matplotlib.colors import to_hex
from matplotlib.container import ErrorbarContainer
from matplotlib.image import imread
from support.compare_runs import compare, one_error_line, synthetic_metrics, write_run, write_sweep


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(8)
    return {
        "base": write_run(root / "base", synthetic_metrics(rng, 150)),
        "same": write_run(root / "same", synthetic_metrics(rng, 150)),
        "slow": write_run(root / "slow", synthetic_metrics(rng, 150, ttft_ms=55.0)),
    }


def _report(sources: list[Path], gates: tuple[Gate, ...] = (), stats: tuple[str, ...] = ("avg", "p50")):
    settings = Settings(metrics=("time_to_first_token", "inter_token_latency", "output_sequence_length"),
                        stats=stats, gates=gates, confidence=0.99, resamples=300, seed=0)  # fmt: skip
    return compare_sources([(str(p), p, False) for p in sources], settings)


def _color(container: ErrorbarContainer) -> str:
    return to_hex(container.lines[0].get_color())


def test_one_panel_per_comparison_one_row_per_statistic(runs: dict[str, Path]) -> None:
    gate = parse_gate("time_to_first_token.p50>+5%")
    report = _report([runs["base"], runs["same"], runs["slow"]], gates=(gate,))
    fig = comparison_figure(report)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 2
    labels = [t.get_text() for t in panels[0].get_yticklabels()]
    assert labels == [
        "Time to First Token avg", "Time to First Token p50", "Inter Token Latency avg",
        "Inter Token Latency p50", "Output Sequence Length avg", "Output Sequence Length p50",
    ]  # fmt: skip
    for ax, comparison in zip(panels, report.comparisons):
        bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        assert len(bars) == len(comparison.rows) == 6
        for bar, row in zip(bars, comparison.rows):
            assert _color(bar) == to_hex(VERDICT_COLORS[row.verdict])
            x = bar.lines[0].get_xdata()[0]
            assert x == pytest.approx(row.difference_pct)
    slow_panel = panels[1]
    assert "slow" in slow_panel.get_title()
    colors = [_color(c) for c in slow_panel.containers if isinstance(c, ErrorbarContainer)]
    assert colors[:2] == [VERDICT_COLORS["slower"]] * 2
    # The --fail-if bound, at +5 on the TTFT p50 row of each panel.
    ticks = [line for line in slow_panel.lines if line.get_gid() == GATE_GID]
    assert [(t.get_xdata()[0], t.get_ydata()[0]) for t in ticks] == [(5.0, 1)]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["slower", "no difference", "--fail-if bound"]


def test_sweep_points_are_panels(runs: dict[str, Path], tmp_path: Path) -> None:
    a = write_sweep(tmp_path / "a", [({"concurrency": c}, runs["base"], "ok") for c in (1, 2, 4, 8)])
    b = write_sweep(tmp_path / "b", [({"concurrency": c}, runs["slow"], "ok") for c in (1, 2, 4, 8)])
    report = _report([a, b], stats=("p50",))
    fig = comparison_figure(report)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title().splitlines()[0] for ax in panels] == [f"concurrency={c}" for c in (1, 2, 4, 8)]
    # Three panels a line: the grid has two lines, two axes of the second are hidden.
    assert len(fig.axes) == 6


def test_compare_plot_writes_the_file(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "figures" / "compare.png"
    proc = compare(str(runs["base"]), str(runs["slow"]), "--plot", str(out))
    assert 0 == proc.returncode, proc.stderr
    assert f"figure: {out}" in proc.stdout.splitlines()
    image = imread(out)
    assert image.shape[0] > 300 and image.shape[1] > 500


def test_svg_too(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "compare.svg"
    proc = compare(str(runs["base"]), str(runs["slow"]), "--plot", str(out), "--stats", "p50")
    assert 0 == proc.returncode, proc.stderr
    assert out.read_text().lstrip().startswith("<?xml")


def test_unknown_file_type_is_one_line(runs: dict[str, Path], tmp_path: Path) -> None:
    proc = compare(str(runs["base"]), str(runs["slow"]), "--plot", str(tmp_path / "compare.xyz"))
    assert 2 == proc.returncode
    line = proc.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith(f"aiperf: error: --plot {tmp_path / 'compare.xyz'}: ")
    assert "xyz" in line


def test_compare_without_plot_never_imports_matplotlib(runs: dict[str, Path]) -> None:
    import subprocess
    import sys

    probe = (
        "import sys\nfrom aiperf.cli import main\n"
        f"code = main(['compare', {str(runs['base'])!r}, {str(runs['same'])!r}, '--resamples', '200'])\n"
        "print('matplotlib' in sys.modules, code)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False 0"


def test_bad_input_before_any_figure(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "f.png"
    proc = compare(str(runs["base"]), str(tmp_path / "missing"), "--plot", str(out))
    assert 2 == proc.returncode
    assert one_error_line(proc).endswith("missing: no such directory")
    assert not out.exists()
