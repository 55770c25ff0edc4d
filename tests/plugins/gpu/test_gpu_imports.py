"""`aiperf --help` loads the plugin module: it must not pull in NVML or the sampling code."""

from __future__ import annotations

import subprocess
import sys


def test_plugin_module_imports_nothing_heavy() -> None:
    code = (
        "import argparse, sys\n"
        "from aiperf_gpu import plugin\n"
        "from aiperf._options import add_flags\n"
        "parser = argparse.ArgumentParser()\n"
        "plugin.aiperf_register_options(register=lambda spec: add_flags(parser, spec))\n"
        "assert '--gpu-telemetry' in parser._option_string_actions\n"
        "heavy = ['pynvml', 'numpy', 'aiperf_gpu.sampler', 'aiperf_gpu.nvml',\n"
        "         'aiperf_gpu.dcgm', 'aiperf_gpu.summary']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert 0 == done.returncode, done.stderr
    assert "" == done.stdout.strip()
