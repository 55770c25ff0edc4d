"""Regenerate the figures shown in docs/plots.md from real runs against the mock server.

    python plugins/aiperf-plot/scripts/docs_figures.py

Profiles a concurrency sweep (1, 4, 8) with `aiperf profile`, draws everything with
`aiperf plot`, and writes palette-compressed copies to docs/images/plots/. The mock server
answers with a fixed timing, so each point gets its own server whose TTFT and inter-token
latency grow with the concurrency, the way a batching server slows down under load. GPU
samples for the concurrency-4 run come from the test suite's dcgm-exporter stand-in, scripted
to be busy while requests run.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aiperf.testing import MockServer
from PIL import Image

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

from tests.support.dcgm_server import DcgmServer, FakeGpu, render  # noqa: E402

OUT = REPO / "docs" / "images" / "plots"
SWEEP = {1: 24, 4: 48, 8: 64}  # concurrency: request count
GPU_RUN = 4
#: palette size of the docs copies; octree quantization keeps every run's colour distinct.
COLORS = 128


def gpu_script(started: float) -> object:
    """Two GPUs idle for a second, then busy with some jitter, until the server stops."""
    jitter = random.Random(7)

    def script(_n: int, _elapsed_s: float) -> str:
        busy = time.monotonic() - started > 1.0
        gpus = []
        for index in range(2):
            util = min(100.0, jitter.gauss(84.0, 5.0)) if busy else 3.0
            gpus.append(
                FakeGpu(index=index, uuid=f"GPU-{index:08d}", util_pct=util,
                        power_w=95.0 + 3.6 * util + 6.0 * index)
            )  # fmt: skip
        return render(gpus)

    return script


def profile(work: Path, concurrency: int, count: int, *extra: str) -> None:
    with MockServer(
        ttft_ms=25 + 12 * concurrency, itl_ms=4 + 1.5 * concurrency, error_rate=0.02,
        seed=concurrency,
    ) as server:  # fmt: skip
        command = [
            sys.executable, "-m", "aiperf", "profile", "--url", server.url,
            "--model", "my-model", "--endpoint-type", "chat", "--streaming",
            "--synthetic-input-tokens-mean", "128", "--output-tokens-mean", "48",
            "--concurrency", str(concurrency), "--request-count", str(count),
            "--goodput", "time_to_first_token:100 inter_token_latency:14",
            "--random-seed", "1", "--no-progress", *extra,
        ]  # fmt: skip
        subprocess.run(command, cwd=work, check=True, stdout=subprocess.DEVNULL)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for concurrency, count in SWEEP.items():
            if concurrency != GPU_RUN:
                profile(work, concurrency, count, "--no-gpu-telemetry")
                continue
            with DcgmServer(gpu_script(time.monotonic())) as dcgm:
                profile(work, concurrency, count, "--gpu-telemetry", dcgm.url,
                        "--gpu-telemetry-interval", "0.25")  # fmt: skip
        figures = work / "figures"
        subprocess.run(
            [sys.executable, "-m", "aiperf", "plot", "artifacts", "--output", str(figures)],
            cwd=work, check=True,
        )  # fmt: skip
        shutil.rmtree(OUT, ignore_errors=True)
        OUT.mkdir(parents=True)
        pngs = [
            *figures.glob("*.png"),
            *(figures / f"my-model-chat-concurrency{GPU_RUN}").glob("*.png"),
        ]
        for png in sorted(pngs):
            # A small palette keeps the docs light; the figures use few colours anyway.
            with Image.open(png) as image:
                small = image.convert("RGB").quantize(
                    colors=COLORS, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE
                )
                small.save(OUT / png.name, optimize=True)
    total = sum(p.stat().st_size for p in OUT.glob("*.png"))
    print(
        f"{len(list(OUT.glob('*.png')))} figures, {total / 1024:.0f} KiB, "
        f"in {OUT.relative_to(REPO)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
