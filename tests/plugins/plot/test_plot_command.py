"""``aiperf plot``: where the PNGs go, what the user is told, and what is announced."""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path

import aiperf
import attrs
import pytest
from aiperf_plot import command
from aiperf_plot.config import MISSING_EXTRA
from aiperf_plot.draw import Drawn, Report
from aiperf_plot.figures import COMPARISON, DPI, HEIGHT_IN, WIDTH_IN
from aiperf_plot.rundir import load_run
from matplotlib.image import imread

SINGLE_NO_GPU = [
    "itl_over_time.png",
    "request_latency_distribution.png",
    "throughput_over_time.png",
    "ttft_over_time.png",
]


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.fixture
def announced(monkeypatch):
    calls: list[tuple[Path, list[Path], dict]] = []
    monkeypatch.setattr(
        aiperf,
        "announce_artifacts",
        lambda run_dir, paths, options: calls.append((run_dir, list(paths), options)),
    )
    return calls


def _pngs(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.png"))


@attrs.frozen
class SweepDrawn:
    runs: list[Path]
    args: argparse.Namespace
    code: int
    out: str
    announced: list[tuple[Path, list[Path], dict]]


@pytest.fixture(scope="module")
def drawn_sweep(tmp_path_factory) -> SweepDrawn:
    """``aiperf plot PARENT`` over a sweep of three runs, drawn once for the tests that read it."""
    from plot_rundirs import write_run

    parent = tmp_path_factory.mktemp("sweep") / "artifacts"
    runs = [
        write_run(parent / f"mock-chat-concurrency{c}", concurrency=c, seed=c) for c in (1, 4, 8)
    ]
    calls: list[tuple[Path, list[Path], dict]] = []
    args = _args("--paths", str(parent))
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setattr(aiperf, "announce_artifacts", lambda d, p, o: calls.append((d, list(p), o)))
        code = command.run(args)
    return SweepDrawn(runs, args, code, out.getvalue(), calls)


class TestOutputs:
    """PNGs on disk."""

    def test_single_run_into_its_plots_dir(self, make_run, announced):
        run_dir = make_run(gpus=1)
        assert 0 == command.run(_args(str(run_dir)))
        assert sorted([*SINGLE_NO_GPU, "gpu_over_time.png"]) == _pngs(run_dir / "plots")
        assert not (run_dir.parent / "plots").exists()

    def test_every_png_decodes_at_the_figure_size(self, make_run, announced):
        run_dir = make_run()
        command.run(_args("--paths", str(run_dir)))
        for png in (run_dir / "plots").glob("*.png"):
            image = imread(png)
            assert image.shape[1] >= WIDTH_IN * DPI
            assert image.shape[0] >= HEIGHT_IN * DPI
            assert image[..., :3].std() > 0.01, png.name  # not a blank canvas

    def test_parent_dir_gives_single_and_comparison_figures(self, drawn_sweep):
        sweep = drawn_sweep.runs
        parent = sweep[0].parent
        assert 0 == drawn_sweep.code
        assert f"comparison of 3 runs: 4 figures in {parent / 'plots'}" in drawn_sweep.out
        for run_dir in sweep:
            assert SINGLE_NO_GPU == _pngs(run_dir / "plots")
        expected = sorted(f"{n}.png" for n in COMPARISON if n != "compare_goodput")
        assert expected == _pngs(parent / "plots")

    def test_several_runs_with_output(self, make_run, tmp_path, announced):
        runs = [make_run(f"m-concurrency{c}", concurrency=c, requests=8) for c in (1, 2)]
        out = tmp_path / "figs"
        assert 0 == command.run(_args(*map(str, runs), "--output", str(out)))
        for run_dir in runs:
            assert SINGLE_NO_GPU == _pngs(out / run_dir.name)
            assert not (run_dir / "plots").exists()
        assert 4 == len(_pngs(out))

    def test_one_run_with_output(self, make_run, tmp_path, announced):
        out = tmp_path / "figs"
        command.run(_args(str(make_run()), "-o", str(out)))
        assert SINGLE_NO_GPU == _pngs(out)

    def test_same_run_twice_is_drawn_once(self, make_run, announced):
        run_dir = make_run()
        assert 0 == command.run(_args(str(run_dir), "--paths", str(run_dir)))
        assert 1 == len(announced)

    def test_default_path_is_artifacts(self, make_run, monkeypatch, announced):
        run_dir = make_run()
        monkeypatch.chdir(run_dir.parent.parent)
        assert 0 == command.run(_args())
        assert SINGLE_NO_GPU == _pngs(run_dir / "plots")


class TestAnnounce:
    """The PNGs are announced so that another plugin (MLflow) can upload them."""

    def test_each_run_announced_with_its_pngs_and_options(self, drawn_sweep):
        sweep, args, announced = drawn_sweep.runs, drawn_sweep.args, drawn_sweep.announced
        by_dir = {run_dir: paths for run_dir, paths, _ in announced}
        for run_dir in sweep:
            assert sorted(run_dir / "plots" / n for n in SINGLE_NO_GPU) == sorted(by_dir[run_dir])
        assert set(sweep) == set(by_dir)  # comparison figures belong to no single run
        assert all(
            options is not None and options["paths"] == args.paths for _, _, options in announced
        )

    def test_a_failed_announcement_does_not_stop_the_others(self, tmp_path, monkeypatch, capsys):
        runs = [load_run(tmp_path / name) for name in ("a", "b", "c")]
        report = Report(
            runs=tuple(
                (run, Drawn(out_dir=run.path, written=(run.path / "x.png",))) for run in runs
            )
        )
        uploaded = []

        def announce(run_dir, paths, options):
            if run_dir == runs[0].path:
                raise aiperf.UsageError("--mlflow-upload: no run")
            uploaded.append(run_dir)

        monkeypatch.setattr(aiperf, "announce_artifacts", announce)
        assert 2 == command.announce(report, {})
        assert [runs[1].path, runs[2].path] == uploaded
        assert (
            f"aiperf: error: {tmp_path / 'a'}: --mlflow-upload: no run\n" == capsys.readouterr().err
        )

    def test_nothing_drawn_nothing_announced(self, make_run, announced):
        run_dir = make_run()
        (run_dir / "profile_export.jsonl").unlink()
        assert 1 == command.run(_args(str(run_dir)))
        assert [] == announced


class TestMessages:
    """One line per figure that could not be drawn; a clear line for bad input."""

    def test_written_and_not_drawn_lines(self, make_run, announced, capsys, monkeypatch):
        run_dir = make_run(streaming=False)
        monkeypatch.chdir(run_dir.parent)
        command.run(_args(run_dir.name))
        out, err = capsys.readouterr()
        name = run_dir.name
        assert f"{name}: 2 figures in {name}/plots\n" == out
        assert [
            (
                f"{name}: not drawn: ttft_over_time.png: no request has a time to first token "
                "(TTFT needs a --streaming run)"
            ),
            (
                f"{name}: not drawn: itl_over_time.png: no request has an inter-token latency "
                "(ITL needs a --streaming run and at least two output tokens)"
            ),
            (
                f"{name}: not drawn: gpu_over_time.png: no gpu_telemetry_export.jsonl "
                "(the run recorded no GPU telemetry: "
                "aiperf-gpu needs an NVIDIA GPU or --gpu-telemetry URL)"
            ),
            (
                f"{name}: not drawn: server_over_time.png: no server_metrics_export.jsonl "
                "(the run scraped no server metrics: "
                "aiperf-server-metrics needs a server with a Prometheus /metrics endpoint)"
            ),
        ] == err.splitlines()

    def test_run_without_summary_left_out_of_comparison(self, make_run, announced, capsys):
        runs = [make_run(f"m-concurrency{c}", concurrency=c, requests=8) for c in (1, 2)]
        (runs[1] / "profile_export_aiperf.json").unlink()
        assert 0 == command.run(_args(str(runs[0].parent)))
        err = capsys.readouterr().err.splitlines()
        assert (
            f"{runs[1].name}: left out of the comparison figures: "
            "profile_export_aiperf.json not found (did the run finish?)"
        ) in err
        assert (
            "comparison of 2 runs: not drawn: compare_throughput_vs_ttft.png: needs two runs "
            "with time to first token p50 and output token throughput in "
            "profile_export_aiperf.json; 1 had them"
        ) in err

    def test_nothing_drawable_exit_1(self, make_run, announced, capsys):
        run_dir = make_run()
        (run_dir / "profile_export.jsonl").write_text("garbage\n")
        assert 1 == command.run(_args(str(run_dir)))
        err = capsys.readouterr().err.splitlines()
        assert "aiperf plot: no figure could be drawn (see the reasons above)" == err[-1]
        assert any(
            "profile_export.jsonl has no measured requests (1 unreadable lines)" in e for e in err
        )

    def test_missing_dir(self, tmp_path):
        with pytest.raises(aiperf.UsageError, match=r"^--paths: no such directory: .*nope$"):
            command.run(_args(str(tmp_path / "nope")))

    def test_missing_default_dir_hints_at_profile(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        with pytest.raises(aiperf.UsageError) as info:
            command.run(_args())
        assert (
            "--paths: no such directory: artifacts "
            "(run `aiperf profile` first, or pass --paths DIR)"
        ) == str(info.value)

    def test_file_instead_of_dir(self, make_run):
        path = make_run() / "profile_export.jsonl"
        with pytest.raises(
            aiperf.UsageError, match="^--paths: expected a run directory, got a file"
        ):
            command.run(_args(str(path)))

    def test_dir_without_runs(self, tmp_path):
        with pytest.raises(aiperf.UsageError) as info:
            command.run(_args(str(tmp_path)))
        assert (
            f"--paths: no aiperf run directory in {tmp_path} (a run directory holds "
            "profile_export.jsonl or profile_export_aiperf.json)"
        ) == str(info.value)

    def test_output_is_a_file(self, make_run, tmp_path):
        out = tmp_path / "file.txt"
        out.write_text("x")
        with pytest.raises(aiperf.UsageError, match="^--output: expected a directory, got a file"):
            command.run(_args(str(make_run()), "--output", str(out)))

    def test_matplotlib_missing(self, make_run, monkeypatch):
        monkeypatch.setitem(sys.modules, "matplotlib", None)
        with pytest.raises(aiperf.UsageError) as info:
            command.run(_args(str(make_run())))
        assert MISSING_EXTRA == str(info.value)
        assert 'pip install "aiperf[plot]"' in MISSING_EXTRA
