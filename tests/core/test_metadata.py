"""metadata.json: what it says about the machine, and what that costs."""

from __future__ import annotations

import errno
import json
import platform
import subprocess
from pathlib import Path

import pytest
from aiperf import _exporters
from aiperf._exporters import ArtifactWriteError, platform_name, write_json


def test_platform_name_needs_no_subprocess(monkeypatch: pytest.MonkeyPatch) -> None:
    """The system, release and machine of platform.platform(), without forking `uname -p`
    from the process that measures."""

    def no_fork(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a subprocess was started: {args}")

    monkeypatch.setattr(subprocess, "check_output", no_fork)
    monkeypatch.setattr(subprocess, "Popen", no_fork)
    # platform caches uname(), processor name included, once something asked for it.
    monkeypatch.setattr(platform, "_uname_cache", None, raising=False)
    name = platform_name()
    assert name.startswith(f"{platform.system()}-{platform.release()}-{platform.machine()}")
    libc, version = platform.libc_ver()
    assert name.endswith(f"-with-{libc}{version}" if libc else platform.machine())


def test_a_full_disk_still_records_metadata_compactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a full disk metadata.json can only be rewritten inside the blocks it owns; when the
    indented text no longer fits there, the same data is written without indentation."""
    path = tmp_path / "metadata.json"
    path.write_text("x" * 3000)
    owned = path.stat().st_blocks * 512
    data = {"artifact_errors": [f"cannot write file{i}: No space left on device" for i in range(8)]}
    while len(json.dumps(data, indent=2)) <= owned:
        data["artifact_errors"].append("cannot write another: No space left on device")
    compact = json.dumps(data, separators=(",", ":")) + "\n"
    assert len(compact) <= owned, "the test needs data that fits only when compact"

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_exporters.os, "replace", disk_full)
    write_json(path, data)
    assert compact == path.read_text()
    assert [] == [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_write_that_fails_otherwise_is_not_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "metadata.json"
    path.write_text("{}\n")

    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(_exporters.os, "replace", read_only)
    with pytest.raises(ArtifactWriteError, match=r"\(EROFS\)"):
        write_json(path, {"status": "FINISHED"})
    assert "{}\n" == path.read_text()
