"""Bad input ends with one clear line and exit 2 (usage) or 1 (run failure), no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiperf.testing import free_port


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert 1 == len(lines), stderr
    assert "Traceback" not in stderr
    return lines[0]


BASE = ["profile", "-m", "m", "--url", "http://127.0.0.1:9"]


class TestUsageErrors:
    @pytest.mark.parametrize(
        ("args", "needle"),
        [
            (["profile", "--bogus-flag"], "unrecognized arguments: --bogus-flag"),
            (["profile", "--url", "http://127.0.0.1:9"], "--model: is required"),
            (["profile", "-m", "m", "--url", "ftp://x"], "--url: expected an http:// or https:// URL"),
            (["profile", "-m", "m", "--url", "http://host:99999"], "--url: the port"),
            ([*BASE, "--endpoint-type", "nope"], "--endpoint-type: unknown type 'nope'"),
            ([*BASE, "--concurrency", "-1"], "--concurrency: must be > 0 (got -1)"),
            ([*BASE, "--concurrency", "0"], "--concurrency: must be > 0 (got 0)"),
            ([*BASE, "--request-rate", "0"], "--request-rate: must be > 0"),
            ([*BASE, "--request-count", "-5"], "--request-count: must be > 0"),
            ([*BASE, "--benchmark-duration", "-1"], "--benchmark-duration: must be > 0"),
            ([*BASE, "--concurrency", "x"], "invalid int value: 'x'"),
            ([*BASE, "--workers", "many"], "invalid int value: 'many'"),
            ([*BASE, "--workers", "0"], "--workers: must be > 0 (got 0)"),
            ([*BASE, "--header", "NoColon"], "--header: expected 'Name:Value'"),
            ([*BASE, "--extra-inputs", "{bad json"], "--extra-inputs: not valid JSON"),
            ([*BASE, "--extra-inputs", "novalue"], "--extra-inputs: expected 'key:value'"),
            ([*BASE, "--goodput", "nonsense:3"], "--goodput: unknown metric 'nonsense'"),
            ([*BASE, "--goodput", "time_to_first_token:abc"], "--goodput: time_to_first_token needs a number"),
            ([*BASE, "--input-file", "missing.jsonl"], "--input-file: no such file"),
            ([*BASE, "--request-rate-mode", "lognormal", "--request-rate", "5"], "--request-rate-mode: unknown mode 'lognormal'"),
            ([*BASE, "--endpoint-type", "embeddings", "--streaming"], "--streaming: the embeddings endpoint does not stream"),
        ],
    )
    def test_cli_usage_error_is_one_line_exit_2(self, aiperf_cli, args: list[str], needle: str) -> None:
        """Each mistake: exit 2, one line that names it."""
        result = aiperf_cli(*args)
        assert 2 == result.returncode, result.stderr
        assert needle in one_line(result.stderr)

    def test_cli_header_error_never_echoes_a_credential(self, aiperf_cli) -> None:
        """A malformed credential header is reported without its value."""
        result = aiperf_cli(*BASE, "--header", "Authorization Bearer-sekrit-canary")
        assert 2 == result.returncode
        assert "sekrit-canary" not in result.stderr

    def test_cli_config_file_unknown_key(self, aiperf_cli, tmp_path) -> None:
        """A config file with an unknown key names the key and the file."""
        (tmp_path / "run.toml").write_text('model = "m"\nconcurency = 4\n')
        result = aiperf_cli("profile", "--config", "run.toml")
        assert 2 == result.returncode
        line = one_line(result.stderr)
        assert "unknown key 'concurency'" in line and "run.toml" in line


class TestRunFailures:
    def test_cli_server_not_listening_exit_1(self, aiperf_cli) -> None:
        """Nothing listening: one line saying so and how to wait for it, exit 1."""
        port = free_port()
        result = aiperf_cli("profile", "-m", "m", "--url", f"http://127.0.0.1:{port}")
        assert 1 == result.returncode
        line = one_line(result.stderr)
        assert f"cannot reach the server at http://127.0.0.1:{port}" in line
        assert "--wait-for-model-timeout" in line


class TestMissingExtras:
    """A first-party plugin's flag without the plugin: the install command, one line."""

    @pytest.mark.parametrize(
        ("flags", "line"),
        [
            (["--otel-url", "http://localhost:4318", "--stream", "default"],
             "OTel integration requires the 'opentelemetry' packages. Install with: pip install \"aiperf[otel]\""),
            (["--mlflow-tracking-uri", "http://localhost:5000"],
             "ImportError: MLflow integration requires the 'mlflow' package. Install with: pip install \"aiperf[mlflow]\""),
            (["--gpu-telemetry", "nvml", "http://node:9400/metrics"],
             "GPU telemetry requires the 'aiperf-gpu' plugin. Install with: pip install \"aiperf[gpu]\""),
            (["--plot"], "Plotting requires the 'aiperf-plot' plugin. Install with: pip install \"aiperf[plot]\""),
            (["--ray-address", "auto"],
             "Running the load on a Ray cluster requires the 'aiperf-ray' plugin. Install with: pip install \"aiperf[ray]\""),
        ],
    )
    def test_flag_of_missing_plugin_names_the_install(self, aiperf_cli, flags: list[str], line: str) -> None:
        """Exactly the documented line, non-zero exit."""
        env = {"AIPERF_DISABLE_PLUGINS": "otel,mlflow,gpu,plot,ray"}
        result = aiperf_cli(*BASE, *flags, env=env)
        assert 0 != result.returncode
        assert line == one_line(result.stderr)

    @pytest.mark.parametrize("args", [["plot"], ["plot", "--paths", "."], ["plot", "--paths", ".", "--mlflow-upload"]])
    def test_plot_command_without_the_plugin_names_the_install(self, aiperf_cli, args: list[str]) -> None:
        """`aiperf plot ...` with only the core: the install line, as `--plot` gives it."""
        result = aiperf_cli(*args, env={"AIPERF_DISABLE_PLUGINS": "otel,mlflow,gpu,plot"})
        assert 0 != result.returncode
        assert (
            "Plotting requires the 'aiperf-plot' plugin. Install with: pip install \"aiperf[plot]\""
            == one_line(result.stderr)
        )

    def test_turning_off_a_missing_plugin_is_fine(self, aiperf_cli) -> None:
        """--no-gpu-telemetry without aiperf-gpu is accepted (the run then fails on the dead URL)."""
        result = aiperf_cli(*BASE, "--no-gpu-telemetry", env={"AIPERF_DISABLE_PLUGINS": "gpu"})
        assert 1 == result.returncode
        assert "cannot reach the server" in one_line(result.stderr)


@pytest.fixture
def main_in(tmp_path, monkeypatch, capsys):
    """``main_in(*args)`` -> (exit code, the one stderr line), run in-process from ``tmp_path``."""
    import structlog
    from aiperf import _redact, cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_redact, "_known", set())
    saved = structlog.get_config()

    def run(*args: str) -> tuple[int, str]:
        try:
            code = cli.main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
        return code, one_line(capsys.readouterr().err)

    yield run
    structlog.configure(**saved)


class TestMoreBadInput:
    """The rest of the bad-input list, run in-process (each line is what ``main`` prints)."""

    @pytest.mark.parametrize(
        ("args", "needle"),
        [
            (["--request-rate", "-1"], "--request-rate: must be > 0 (got -1.0)"),
            (["--request-rate", "nan"], "--request-rate: must be a finite number (got nan)"),
            (["--request-count", "0"], "--request-count: must be > 0 (got 0)"),
            (["--benchmark-duration", "0"], "--benchmark-duration: must be > 0"),
            (["--benchmark-duration", "inf"], "--benchmark-duration: must be a finite number"),
            (["--benchmark-grace-period", "-1"], "--benchmark-grace-period: must be >= 0"),
            (["--warmup-request-count", "-1"], "--warmup-request-count: must be >= 0"),
            (["--request-timeout-seconds", "0"], "--request-timeout-seconds: must be > 0"),
            (["--goodput", "time_to_first_token:nan"], "--goodput: time_to_first_token must be a finite number > 0"),
            (["--extra-inputs", "[1, 2]"], "--extra-inputs: expected 'key:value' or a JSON object"),
            (["--header", ":value"], "--header: expected 'Name:Value'"),
            pytest.param(["--mlflow-tracking-uri", "sqlite:///x.db", "--mlflow-tag", "novalue"], "--mlflow-tag: expected key=value", marks=pytest.mark.plugins),
            pytest.param(["--mlflow-tracking-uri", "sqlite:///x.db", "--mlflow-tag", "=v"], "--mlflow-tag: expected key=value", marks=pytest.mark.plugins),
            pytest.param(["--otel-url", "http://127.0.0.1:9", "--otel-resource-attributes", "a=1,b"], "--otel-resource-attributes: expected 'key=value,...' (got 'b')", marks=pytest.mark.plugins),
            pytest.param(["--otel-url", "http://127.0.0.1:9", "--otel-resource-attributes", "=1"], "--otel-resource-attributes: expected 'key=value,...'", marks=pytest.mark.plugins),
            (["--endpoint", "v1/chat"], "--endpoint: expected a path starting with '/'"),
            (["--ca-bundle", "missing.pem"], "--ca-bundle: no such file: missing.pem"),
        ],
    )
    def test_cli_more_usage_errors(self, main_in, args: list[str], needle: str) -> None:
        """Each mistake: exit 2, one line that names the flag."""
        code, line = main_in(*BASE, *args)
        assert 2 == code, line
        assert needle in line

    def test_cli_url_error_hides_the_password(self, main_in) -> None:
        """A URL that cannot be used is shown without its user:password@."""
        code, line = main_in("profile", "-m", "m", "--url", "http://user:pw-hidden-9@host:port")
        assert 2 == code
        assert "--url: the port is not a number" in line
        assert "pw-hidden-9" not in line and "user" not in line

    @pytest.mark.parametrize(
        ("content", "needle"),
        [
            ("", "--input-file: prompts.jsonl has no prompts"),
            ("\n   \n", "--input-file: prompts.jsonl has no prompts"),
            ('{"text": "hi"}\nnot json\n', "--input-file prompts.jsonl: line 2: not valid JSON"),
            ('{"text": "hi"}\n{"text": "ok"}\n{"text": 5}\n', '--input-file prompts.jsonl: line 3: "text" must be a string, got a number'),
            ('{"messages": "hello"}\n', '--input-file prompts.jsonl: line 1: "messages" must be a non-empty array'),
            ("[1, 2]\n", "--input-file prompts.jsonl: line 1: expected a JSON object, got an array"),
        ],
    )
    def test_cli_bad_input_file(self, main_in, tmp_path, content: str, needle: str) -> None:
        """Empty, not JSONL (with the line number), prompts of the wrong type: exit 2, one line."""
        (tmp_path / "prompts.jsonl").write_text(content)
        code, line = main_in(*BASE, "--input-file", "prompts.jsonl")
        assert 2 == code, line
        assert needle in line

    def test_cli_input_file_is_a_directory(self, main_in, tmp_path) -> None:
        (tmp_path / "prompts").mkdir()
        code, line = main_in(*BASE, "--input-file", "prompts")
        assert 2 == code
        assert "--input-file: prompts is a directory" in line

    @pytest.mark.parametrize(
        ("toml", "needle"),
        [
            ('model = "m"\n[load]\nconcurency = 4\n', "--config: unknown key 'load.concurency' in run.toml"),
            ('model = "m"\nconcurrency = [\n', "--config: run.toml is not valid TOML"),
            ('model = "m"\nconcurrency = "four"\n', "--concurrency: expected a whole number or a comma list of them (got 'four')"),
            ('model = "m"\nconcurrency = -4\n', "--concurrency: must be > 0 (got -4)"),
            ('model = "m"\nrequest_rate = nan\n', "--request-rate: must be a finite number (got nan)"),
        ],
    )
    def test_cli_bad_config_file(self, main_in, tmp_path, toml: str, needle: str) -> None:
        """A config file's mistakes name the key (with its table) and the file."""
        (tmp_path / "run.toml").write_text(toml)
        code, line = main_in("profile", "--url", "http://127.0.0.1:9", "--config", "run.toml")
        assert 2 == code, line
        assert needle in line


class TestExtraInputsValues:
    def test_extra_inputs_never_produce_invalid_json(self) -> None:
        """NaN is not JSON: as a key:value it stays a string, inside an object it is an error."""
        from aiperf import UsageError
        from aiperf._config import parse_extra_inputs

        assert {"a": "NaN", "b": 1.5, "c": True, "d": "x"} == parse_extra_inputs(["a:NaN", "b:1.5", "c:true", "d:x"])
        with pytest.raises(UsageError, match="--extra-inputs: not valid JSON"):
            parse_extra_inputs(['{"x": NaN}'])


class TestHostileInput:
    """Input that used to end in "internal error", a traceback or a silent exit."""

    @pytest.mark.parametrize(
        ("args", "needle"),
        [
            (["--url", "http://[::1"], "--url: not a valid URL (Invalid IPv6 URL)"),
            (["-H", "X-A:caf\u00e9"], "--header: the value of X-A must be ASCII"),
            (["-H", "X-A:a\nINFO forged line"], "--header: the value of X-A must not contain control characters"),
            (["-H", "X-Api-Key:s\u00e9cret-canary"], "--header: the value of X-Api-Key must be ASCII (got ***)"),
            (["-H", '{"X\u00e9": "b"}'], "--header: the name 'X\u00e9' must be letters, digits"),
            (["--num-prompts", "2e9"], "--num-prompts: must be <= 1000000 (got 2000000000)"),
            (["--isl", "2e9"], "--synthetic-input-tokens-mean: must be <= 1000000 (got 2000000000)"),
            (["--osl", "2000001"], "--output-tokens-mean: must be <= 1000000 (got 2000001)"),
            (["--concurrency", "2000000"], "--concurrency: must be <= 100000 (got 2000000)"),
            (["--num-prompts", "1000000", "--isl", "1000"], "is 1000000000 tokens; at most 100000000"),
            (["--concurrency", "1.5"], "invalid int value: '1.5'"),
            (["--api-key", "sk-canary", "-H", "Authorization: Bearer other"], "--api-key: an 'Authorization' header was given too"),
        ],
    )
    def test_hostile_flag_value_is_one_line_exit_2(self, main_in, args: list[str], needle: str) -> None:
        """One line naming the flag (and the bound), exit 2; no secret echoed."""
        code, line = main_in(*BASE, *args)
        assert 2 == code, line
        assert needle in line
        assert "canary" not in line

    def test_newline_in_model_cannot_forge_a_log_line(self, main_in) -> None:
        """--model with a newline is refused (shown escaped, on one line)."""
        code, line = main_in("profile", "-m", "m\nINFO     benchmark_finished", "--url", "http://127.0.0.1:9")
        assert 2 == code
        assert "--model: must not contain control characters (got 'm\\nINFO     benchmark_finished')" in line

    def test_binary_config_file(self, main_in, tmp_path) -> None:
        """Bytes that are not UTF-8: not a text file, exit 2."""
        (tmp_path / "bin.toml").write_bytes(bytes(range(256)) * 4)
        code, line = main_in("profile", "--config", "bin.toml")
        assert 2 == code
        assert "--config: bin.toml is not a text file (not UTF-8); expected TOML" in line

    def test_deeply_nested_config_file(self, main_in, tmp_path) -> None:
        """An array 10000 deep: nested too deeply, exit 2."""
        (tmp_path / "deep.toml").write_text("model = " + "[" * 10000 + "]" * 10000 + "\n")
        code, line = main_in("profile", "--config", "deep.toml")
        assert 2 == code
        assert "--config: deep.toml is nested too deeply" in line

    @pytest.mark.parametrize("depth", [10000, 100])
    def test_deeply_nested_input_file(self, main_in, tmp_path, depth: int) -> None:
        """JSON 10000 deep (past the recursion limit) or 100 deep (under it): one line, exit 2."""
        nested = "[" * depth + "]" * depth
        (tmp_path / "p.jsonl").write_text('{"text": "hi", "x": ' + nested + "}\n")
        code, line = main_in(*BASE, "--input-file", "p.jsonl")
        assert 2 == code
        assert "--input-file p.jsonl: line 1: nested too deeply (more than 64 levels)" in line

    def test_non_pem_ca_bundle(self, main_in, tmp_path) -> None:
        """A CA bundle that is not PEM: said so, before any connection."""
        (tmp_path / "ca.der").write_bytes(b"\x30\x82\x01\x0a" + bytes(300))
        code, line = main_in("profile", "-m", "m", "--url", "https://127.0.0.1:9", "--ca-bundle", "ca.der")
        assert 2 == code
        assert "--ca-bundle: ca.der is not a PEM CA bundle" in line

    def test_pem_lookalike_ca_bundle(self, main_in, tmp_path) -> None:
        """A PEM header around garbage: OpenSSL's reason, still not 'cannot reach'."""
        (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
        code, line = main_in("profile", "-m", "m", "--url", "https://127.0.0.1:9", "--ca-bundle", "ca.pem")
        assert 2 == code
        assert "--ca-bundle: ca.pem is not a PEM CA bundle" in line


@pytest.fixture(scope="module")
def server():
    from aiperf.testing import MockServer

    with MockServer(ttft_ms=300) as server:
        yield server


class TestHostileEnvironment:
    """A plain-HTTP server behind https://, an unwritable run directory, closed std streams,
    too few file descriptors."""

    def test_out_of_file_descriptors_is_the_clients_limit(self, server, tmp_path) -> None:
        """Soft limit 40, hard 60, 80 in flight: the soft limit is raised to 60 at start, and
        the requests that still found no descriptor are named as the client's limit."""
        import json
        import shlex
        import subprocess
        import sys

        command = (
            f"ulimit -Sn 40 && ulimit -Hn 60 && exec {shlex.quote(sys.executable)} -m aiperf profile "
            f"-m m --url {server.url} --request-count 80 --concurrency 80 --artifact-dir run"
        )
        result = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert "Traceback" not in result.stderr
        notes = json.loads((tmp_path / "run/profile_export_aiperf.json").read_text())["notes"]
        fd_notes = [n for n in notes if "ran out of file descriptors (60)" in n]
        assert 1 == len(fd_notes), (notes, result.stderr)
        assert "the client's limit, not the server's" in fd_notes[0]
        assert 1 == sum("out_of_file_descriptors" in line for line in result.stderr.splitlines())

    def test_https_to_a_silent_plain_http_server(self, aiperf_cli, server) -> None:
        """The mock waits for a request line: 'does not speak TLS', not 'timed out'."""
        url = server.url.replace("http://", "https://")
        result = aiperf_cli("profile", "-m", "m", "--url", url, "--request-count", "1")
        assert 1 == result.returncode
        line = one_line(result.stderr)
        assert f"the server at {url} does not speak TLS" in line
        assert "timed out" not in line and "cannot reach" not in line

    def test_https_to_a_plain_http_server_that_answers(self, aiperf_cli) -> None:
        """A server that answers a ClientHello with 'HTTP/1.1 400': the same line."""
        import socket
        import threading

        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        try:
            result = aiperf_cli("profile", "-m", "m", "--url", f"https://127.0.0.1:{port}", "--request-count", "1")
        finally:
            thread.join(10)
            listener.close()
        assert 1 == result.returncode
        assert f"the server at https://127.0.0.1:{port} does not speak TLS" in one_line(result.stderr)

    def test_unwritable_artifact_dir(self, aiperf_cli, server, tmp_path) -> None:
        """A run directory that cannot be created: one line naming it, exit 1 (run failure)."""
        (tmp_path / "afile").write_text("")
        result = aiperf_cli("profile", "-m", "m", "--url", server.url, "--artifact-dir", "afile/run")
        assert 1 == result.returncode
        assert "cannot write afile/run: Not a directory" in one_line(result.stderr)

    def test_read_only_artifact_dir(self, aiperf_cli, server, tmp_path) -> None:
        """A directory where writing is refused (mode 555, or sysfs when running as root)."""
        import os

        target = tmp_path / "ro"
        target.mkdir()
        target.chmod(0o555)
        if os.geteuid() == 0:  # root ignores the mode bits; sysfs refuses even root
            target = Path("/sys/aiperf-read-only-check")
        try:
            result = aiperf_cli("profile", "-m", "m", "--url", server.url, "--artifact-dir", str(target / "run"))
        finally:
            (tmp_path / "ro").chmod(0o755)
        assert 1 == result.returncode
        assert f"cannot write {target / 'run'}" in one_line(result.stderr)

    @pytest.mark.parametrize(("closed", "kept"), [("1", "stderr"), ("2", "stdout")])
    def test_closed_std_stream(self, server, tmp_path, closed: str, kept: str) -> None:
        """stdout or stderr closed at start: the run goes on, exit 0, every file written."""
        import shlex
        import subprocess
        import sys

        command = (
            f"exec {shlex.quote(sys.executable)} -m aiperf profile -m m --url {server.url} "
            f"--request-count 3 --artifact-dir run {closed}>&-"
        )
        result = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert 0 == result.returncode, result.stderr
        assert "Traceback" not in result.stderr
        assert 3 == len((tmp_path / "run/profile_export.jsonl").read_text().splitlines())
        assert (tmp_path / "run/profile_export_aiperf.json").is_file()
        if kept == "stdout":
            assert "Request Latency" in result.stdout
