"""metadata.json: what it says about the machine, and what that costs."""

from __future__ import annotations

import platform
import subprocess

import pytest
from aiperf._exporters import platform_name


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
