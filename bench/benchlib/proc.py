"""Running a command and measuring what it cost: wall time, CPU time, memory of its process tree.

Linux only (``/proc``). CPU time comes from ``wait4``: the kernel adds every descendant the
child waited for (aiperf's worker processes) to the child's own. Memory is polled from
``/proc/<pid>/status`` for the whole process tree, because ``ru_maxrss`` only gives the largest
single process while the goal is about all of aiperf's processes together.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs

PROC = Path("/proc")
_STATUS_FIELD = re.compile(r"^(\w+):\s+(\d+)\s*kB", re.MULTILINE)


def parse_status(text: str) -> dict[str, int]:
    """The ``kB`` fields of a ``/proc/<pid>/status`` file (VmRSS, VmHWM, ...), in KiB."""
    return {name: int(value) for name, value in _STATUS_FIELD.findall(text)}


def read_status(pid: int, proc: Path = PROC) -> dict[str, int]:
    try:
        return parse_status((proc / str(pid) / "status").read_text())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return {}


def parse_stat_times(text: str) -> tuple[int, int]:
    """utime and stime (clock ticks) from a ``/proc/<pid>/stat`` line.

    The command name (field 2) may contain spaces and parentheses, so fields are counted from
    the last ``)``.
    """
    fields = text[text.rindex(")") + 2 :].split()
    # after the name: state(3) ppid(4) ... utime(14) stime(15), so index 11 and 12 here
    return int(fields[11]), int(fields[12])


def parse_stat_ppid(text: str) -> int:
    return int(text[text.rindex(")") + 2 :].split()[1])


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, proc: Path = PROC) -> float:
    """User + system CPU seconds a live process has used so far (not its children)."""
    utime, stime = parse_stat_times((proc / str(pid) / "stat").read_text())
    return (utime + stime) / _CLK_TCK


def descendants(pid: int, proc: Path = PROC) -> set[int]:
    """Every live process below ``pid`` (not ``pid`` itself)."""
    own = proc / str(os.getpid()) / "task" / str(os.getpid()) / "children"
    if own.exists():
        return _descendants_from_children_files(pid, proc)
    # Kernels without CONFIG_PROC_CHILDREN: build the tree from every process's parent.
    return _descendants_from_parents(pid, proc)


def _descendants_from_children_files(pid: int, proc: Path) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        task_dir = proc / str(todo.pop()) / "task"
        try:
            tasks = list(task_dir.iterdir())
        except FileNotFoundError:
            continue  # exited meanwhile
        for task in tasks:
            try:
                text = (task / "children").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            for child in map(int, text.split()):
                if child not in found:
                    found.add(child)
                    todo.append(child)
    return found


def _descendants_from_parents(pid: int, proc: Path) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = parse_stat_ppid((entry / "stat").read_text())
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


@attrs.frozen(kw_only=True)
class TreeSample:
    #: seconds since the command started.
    t: float
    #: VmRSS summed over the process tree, KiB.
    rss_kib: int
    processes: int
    #: user + system CPU seconds the live processes of the tree have used so far.
    cpu_s: float = 0.0


@attrs.define
class TreeMonitor:
    """Polls the memory and CPU time of a process tree from a thread until stopped.

    The sum of VmRSS counts pages shared between processes (forked workers) once per process,
    so it overstates the total a little: the conservative side for a memory goal.
    """

    root: int
    interval_s: float = 0.1
    proc: Path = PROC
    samples: list[TreeSample] = attrs.field(factory=list)
    #: the largest VmHWM seen per process (its own peak, including between two polls).
    hwm_kib: dict[int, int] = attrs.field(factory=dict)
    _stop: threading.Event = attrs.field(factory=threading.Event)
    _thread: threading.Thread | None = None
    _t0: float = 0.0

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._loop, name="tree-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def poll(self) -> None:
        total = 0
        count = 0
        cpu = 0.0
        for pid in (self.root, *descendants(self.root, self.proc)):
            status = read_status(pid, self.proc)
            if not status:
                continue
            try:
                cpu += cpu_seconds(pid, self.proc)
            except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
                continue
            count += 1
            total += status.get("VmRSS", 0)
            hwm = status.get("VmHWM", 0)
            if hwm > self.hwm_kib.get(pid, 0):
                self.hwm_kib[pid] = hwm
        if count:
            self.samples.append(
                TreeSample(
                    t=time.perf_counter() - self._t0, rss_kib=total, processes=count, cpu_s=cpu
                )
            )

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval_s)

    @property
    def peak_rss_kib(self) -> int:
        """The larger of the highest polled sum and the sum of per-process peaks.

        The sum of per-process peaks catches a peak that fell between two polls; it can
        overstate when processes peaked at different times, which again errs on the safe side.
        """
        polled = max((s.rss_kib for s in self.samples), default=0)
        return max(polled, sum(self.hwm_kib.values()))

    @property
    def max_processes(self) -> int:
        return max((s.processes for s in self.samples), default=0)


@attrs.frozen(kw_only=True)
class Measured:
    argv: tuple[str, ...]
    returncode: int
    #: Unix time when the command was started (to place the memory samples on a clock).
    started_at: float
    wall_s: float
    #: user + system CPU of the command and every descendant it waited for.
    cpu_s: float
    #: the largest single process's peak RSS (``ru_maxrss``), KiB.
    maxrss_kib: int
    #: all processes together (see :class:`TreeMonitor`), KiB; 0 when not monitored.
    peak_rss_kib: int
    processes: int
    samples: tuple[TreeSample, ...]
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class CommandFailed(RuntimeError):
    """A measured command exited non-zero or ran out of time."""


def run_measured(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 600.0,
    monitor_interval_s: float | None = 0.1,
) -> Measured:
    """Run ``argv`` to completion in its own process group and measure it.

    ``monitor_interval_s=None`` skips memory polling (for start-up timings, where a polling
    thread would only add noise). A command still running after ``timeout_s`` is killed with
    its whole group and reported with return code -9.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started_at = time.time()
        t0 = time.perf_counter()
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        monitor = None
        if monitor_interval_s is not None:
            monitor = TreeMonitor(root=process.pid, interval_s=monitor_interval_s)
            monitor.start()
        timer = threading.Timer(timeout_s, _kill_group, args=(process.pid,))
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - t0
        finally:
            timer.cancel()
            if monitor is not None:
                monitor.stop()
            # Anything the command left behind (a worker that outlived it) goes too.
            _kill_group(process.pid)
        # wait4 reaped it; tell Popen so that it does not try again.
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(
            argv=tuple(argv),
            returncode=process.returncode,
            started_at=started_at,
            wall_s=wall,
            cpu_s=usage.ru_utime + usage.ru_stime,
            maxrss_kib=usage.ru_maxrss,
            peak_rss_kib=monitor.peak_rss_kib if monitor else 0,
            processes=monitor.max_processes if monitor else 0,
            samples=tuple(monitor.samples) if monitor else (),
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
        )


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
