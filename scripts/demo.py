"""The README's first command: benchmark the built-in mock server, with MLflow and plots.

Starts `aiperf mock-server` (50 ms to the first token, 10 ms per token), runs the user's own
example against it with MLflow logging to a local store and `--plot`, then stops the server.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from aiperf.testing import MockServer


def main() -> int:
    with MockServer(ttft_ms=50, itl_ms=10) as server:
        command = [
            sys.executable, "-m", "aiperf", "profile",
            "--url", server.url,
            "--model", "my-model",
            "--endpoint-type", "chat",
            "--endpoint", "/v1/chat/completions",
            "--streaming",
            "--synthetic-input-tokens-mean", "128",
            "--output-tokens-mean", "128",
            "--concurrency", "4",
            "--request-count", "64",
            "--mlflow-tracking-uri", "sqlite:///mlflow.db",
            "--mlflow-experiment", "aiperf-demo",
            "--plot",
            *sys.argv[1:],
        ]
        print("$ aiperf " + " ".join(command[3:]), flush=True)
        code = subprocess.call(command)
    if code == 0:
        print(
            "\nRun directory: artifacts/my-model-chat-concurrency4 (plots in plots/).\n"
            f"Browse the MLflow run: {Path(sys.executable).parent / 'mlflow'} ui "
            "--backend-store-uri sqlite:///mlflow.db"
        )
    return code


if __name__ == "__main__":
    raise SystemExit(main())
