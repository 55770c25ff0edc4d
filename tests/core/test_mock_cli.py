"""Starting and stopping the mock server: the command line and aiperf.testing.MockServer."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable

import pytest
from aiperf import UsageError
from aiperf.testing import MockServer, MockServerError, free_port

pytestmark = pytest.mark.integration

LISTENING = re.compile(r"aiperf mock server listening on http://127\.0\.0\.1:(\d+)\n")


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aiperf.mock_server", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


class TestCommandLine:
    @pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
    def test_prints_one_listening_line_and_stops_cleanly(self, signum: int) -> None:
        """stdout carries exactly the listening line; a signal stops the server with exit 0."""
        process = subprocess.Popen(
            [sys.executable, "-m", "aiperf.mock_server", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
            match = LISTENING.fullmatch(first)
            assert match is not None, first
            with socket.create_connection(("127.0.0.1", int(match.group(1))), timeout=5):
                pass
            process.send_signal(signum)
            rest, err = process.communicate(timeout=10)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        assert ("", 0) == (rest, process.returncode)
        assert "Traceback" not in err

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--error-rate", "2"], "--error-rate: must be between 0 and 1 (got 2.0)"),
            (["--fault", "bogus"], "--fault: unknown kind 'bogus'"),
            (["--fault", "reset:often"], "--fault: expected KIND[:RATE] with RATE a number"),
            (["--ttft-ms", "-5"], "--ttft-ms: must be a number >= 0 (got -5.0)"),
            (["--itl-ms", "fast"], "argument --itl-ms: invalid float value: 'fast'"),
            (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
            (["--error-rate", "0.7", "--fault", "close:0.7"], "add up to 1.4"),
        ],
    )
    def test_bad_flags_are_one_line_exit_2(self, args: list[str], message: str) -> None:
        """Bad input: one line on stderr naming the problem, exit 2, no traceback."""
        result = run_module(*args)
        assert 2 == result.returncode
        assert "" == result.stdout
        lines = result.stderr.strip().splitlines()
        assert 1 == len(lines), result.stderr
        assert message in lines[0]

    def test_aiperf_mock_server_rejects_bad_value(
        self, aiperf_cli: Callable[..., subprocess.CompletedProcess[str]]
    ) -> None:
        """The same check through `aiperf mock-server`."""
        result = aiperf_cli("mock-server", "--error-status", "200", timeout=60)
        assert 2 == result.returncode
        assert "--error-status: must be an HTTP error status 400-599 (got 200)" in result.stderr
        assert "Traceback" not in result.stderr

    def test_port_in_use_is_one_line_exit_1(self) -> None:
        """A taken port: one line that says so and what to do, exit 1."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = run_module("--port", str(port))
        assert 1 == result.returncode
        [line] = result.stderr.strip().splitlines()
        assert f"cannot listen on 127.0.0.1:{port}" in line
        assert "--port 0" in line


class TestMockServerHelper:
    def test_stops_the_process_group_when_the_block_fails(self) -> None:
        """An exception inside the block still stops the server and its whole group."""
        with pytest.raises(RuntimeError, match="test body failed"), MockServer() as server:
            pid = server.pid
            assert pid is not None
            raise RuntimeError("test body failed")
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)

    def test_exposes_url_and_port(self) -> None:
        """url and port point at the listening server."""
        with MockServer() as server:
            assert f"http://127.0.0.1:{server.port}" == server.url
            with socket.create_connection(("127.0.0.1", server.port), timeout=5):
                pass
            assert 0 == server.stats()["requests"]["total"]

    def test_bad_option_raises_before_starting(self) -> None:
        """Options are checked in the parent, with the flag's name in the message."""
        with pytest.raises(UsageError, match="--tokens-per-chunk"):
            MockServer(tokens_per_chunk=0)
        with pytest.raises(TypeError):
            MockServer(no_such_option=1)

    def test_start_failure_reports_the_servers_error(self) -> None:
        """A server that cannot start raises MockServerError with its own message."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            server = MockServer(port=taken.getsockname()[1])
            with pytest.raises(MockServerError, match="cannot listen on"):
                server.start()
        assert None is server.pid

    def test_free_port_can_be_bound(self) -> None:
        """free_port() returns a port nobody holds."""
        port = free_port()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
        assert 0 < port < 65536


class TestImports:
    def test_mock_server_module_imports_only_the_standard_library(self) -> None:
        """The CLI imports aiperf.mock_server to build its parser: nothing heavy may come along."""
        code = (
            "import sys, aiperf.mock_server\n"
            "heavy = ('attrs', 'cattrs', 'structlog', 'httpx', 'numpy', 'trio', 'asyncio', 'aiperf._mock')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith('aiperf._mock')))"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
        )
        assert ("[]", 0) == (result.stdout.strip(), result.returncode), result.stderr

    def test_testing_module_imports_without_pytest(self) -> None:
        """aiperf.testing works in scripts where pytest is not installed."""
        code = "import sys; sys.modules['pytest'] = None; import aiperf.testing; print(aiperf.testing.free_port() > 0)"
        result = subprocess.run(
            [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
        )
        assert ("True", 0) == (result.stdout.strip(), result.returncode), result.stderr
