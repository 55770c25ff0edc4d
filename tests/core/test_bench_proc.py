"""The benchmark suite's process measurement: /proc parsing, process trees, measured commands."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from benchlib import proc
from benchlib.machine import cpu_model, memory_gib
from benchlib.suite import clean_environment

linux_only = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")

STATUS = """Name:\tpython
Umask:\t0022
State:\tS (sleeping)
VmPeak:\t  312884 kB
VmHWM:\t   98312 kB
VmRSS:\t   97000 kB
Threads:\t3
"""


def _fake_process(root: Path, pid: int, ppid: int, name: str = "python", children: str = "") -> None:
    base = root / str(pid)
    (base / "task" / str(pid)).mkdir(parents=True)
    (base / "stat").write_text(f"{pid} ({name}) S {ppid} {pid} {pid} 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0\n")
    (base / "status").write_text(STATUS)
    (base / "task" / str(pid) / "children").write_text(children)


class TestProcParsing:
    def test_parse_status_reads_kib_fields(self) -> None:
        """VmRSS and VmHWM come out in KiB; fields without a kB unit are left out."""
        fields = proc.parse_status(STATUS)
        assert (97000, 98312, 312884) == (fields["VmRSS"], fields["VmHWM"], fields["VmPeak"])
        assert "Threads" not in fields

    def test_parse_stat_survives_odd_command_names(self) -> None:
        """A command name with spaces and parentheses does not shift the fields."""
        line = "42 (a b) (c)) S 7 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0"
        assert (250, 50) == proc.parse_stat_times(line)
        assert 7 == proc.parse_stat_ppid(line)

    def test_descendants_from_parent_links(self, tmp_path: Path) -> None:
        """Without children files, the tree is rebuilt from every process's parent."""
        _fake_process(tmp_path, 10, 1)
        _fake_process(tmp_path, 11, 10)
        _fake_process(tmp_path, 12, 11)
        _fake_process(tmp_path, 13, 1)
        assert {11, 12} == proc._descendants_from_parents(10, tmp_path)

    def test_descendants_from_children_files(self, tmp_path: Path) -> None:
        """With children files, grandchildren are found and vanished processes skipped."""
        _fake_process(tmp_path, 10, 1, children="11 14")
        _fake_process(tmp_path, 11, 10, children="12")
        _fake_process(tmp_path, 12, 11)
        # 14 is listed but already gone
        assert {11, 12, 14} == proc._descendants_from_children_files(10, tmp_path)

    def test_cpu_seconds_from_ticks(self, tmp_path: Path) -> None:
        """utime + stime ticks are converted with the system's clock tick rate."""
        _fake_process(tmp_path, 10, 1)
        assert pytest.approx(300 / proc._CLK_TCK) == proc.cpu_seconds(10, tmp_path)

    def test_tree_monitor_sums_the_tree(self, tmp_path: Path) -> None:
        """One poll sums VmRSS over the root and its descendants and keeps each one's peak."""
        _fake_process(tmp_path, 10, 1)
        _fake_process(tmp_path, 11, 10)
        monitor = proc.TreeMonitor(root=10, proc=tmp_path)
        monitor.poll()
        assert [2 * 97000] == [s.rss_kib for s in monitor.samples]
        assert 2 == monitor.max_processes
        # the per-process peaks (VmHWM) are higher than any polled sum
        assert 2 * 98312 == monitor.peak_rss_kib


class TestMachine:
    def test_cpu_model_and_memory(self) -> None:
        """The CPU model and total memory are read from /proc/cpuinfo and /proc/meminfo."""
        assert "AMD EPYC 7B13" == cpu_model("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n")
        assert 2.0 == memory_gib("MemTotal:        2097152 kB\nMemFree: 1 kB\n")

    def test_clean_environment_keeps_traffic_on_loopback(self) -> None:
        """Proxies and the user's OTel/MLflow settings never reach a benchmark run; bytecode is cached."""
        env = clean_environment({
            "PATH": "/bin", "HTTPS_PROXY": "http://proxy:3128", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318",
            "MLFLOW_TRACKING_URI": "http://mlflow:5000", "PYTHONDONTWRITEBYTECODE": "1",
        })  # fmt: skip
        assert {"PATH", "NO_PROXY", "no_proxy", "PYTHONUNBUFFERED"} == set(env)
        assert "127.0.0.1,localhost" == env["NO_PROXY"]


@linux_only
class TestRunMeasured:
    def test_run_measured_counts_children_memory_and_cpu(self) -> None:
        """A parent holding 64 MiB with a child holding 32 MiB: the tree peak sees both."""
        child = "import time; b = bytearray(32 << 20); b[::4096] = b'x' * len(b[::4096]); time.sleep(0.6)"
        parent = (
            "import subprocess, sys; b = bytearray(64 << 20); b[::4096] = b'x' * len(b[::4096]); "
            f"subprocess.run([sys.executable, '-c', {child!r}], check=True)"
        )
        measured = proc.run_measured([sys.executable, "-c", parent], monitor_interval_s=0.05)
        assert 0 == measured.returncode
        assert measured.peak_rss_kib >= (64 + 32) * 1024
        assert 2 <= measured.processes
        # ru_maxrss is the largest single process: at least the parent's 64 MiB. No upper bound:
        # between fork and exec the child briefly has the size of the process that forked it
        # (a test runner that has loaded MLflow and matplotlib is hundreds of MiB).
        assert (64 << 10) <= measured.maxrss_kib
        assert measured.cpu_s > 0
        assert measured.samples[-1].t >= measured.samples[0].t

    def test_run_measured_reports_exit_code_and_output(self) -> None:
        """A failing command is reported with its code and its stderr, not raised."""
        measured = proc.run_measured(
            [sys.executable, "-c", "import sys; print('out'); sys.exit('bad input')"], monitor_interval_s=None
        )
        assert (1, "out\n", "bad input\n") == (measured.returncode, measured.stdout, measured.stderr)
        assert not measured.ok
        assert () == measured.samples

    def test_run_measured_kills_group_on_timeout(self) -> None:
        """A command past its deadline is killed together with what it started."""
        script = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
        measured = proc.run_measured([sys.executable, "-c", script], timeout_s=1.0, monitor_interval_s=None)
        assert -signal.SIGKILL == measured.returncode
