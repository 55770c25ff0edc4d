"""`aiperf --help` imports nothing heavy: a check on what is imported, not a stopwatch."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("trio", "httpx", "httpcore", "numpy", "tokenizers", "tiktoken", "cattrs", "structlog",
         "mlflow", "matplotlib", "opentelemetry", "pynvml", "prometheus_client")

PROBE = """
import json, sys
from aiperf.cli import main
try:
    main(["--help"])
except SystemExit:
    pass
sys.stdout.flush()
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_help_imports_no_heavy_module() -> None:
    """With every installed plugin loaded, --help leaves the heavy libraries unimported."""
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "aiperf" in loaded
    assert [] == sorted(set(HEAVY) & loaded)


def test_help_does_not_import_the_testing_kit() -> None:
    """aiperf.testing is for tests: --help never imports it, whatever plugins are installed."""
    probe = PROBE.replace("{m.split(\".\")[0] for m in sys.modules}", "set(sys.modules)")
    assert probe != PROBE
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "aiperf.cli" in loaded
    assert "aiperf.testing" not in loaded
