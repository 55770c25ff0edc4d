"""Bad input ends with one clear line and exit 2 (usage) or 1 (run failure), no traceback."""

from __future__ import annotations

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
            ([*BASE, "--header", "NoColon"], "--header: expected 'Name:Value'"),
            ([*BASE, "--extra-inputs", "{bad json"], "--extra-inputs: not valid JSON"),
            ([*BASE, "--extra-inputs", "novalue"], "--extra-inputs: expected 'key:value'"),
            ([*BASE, "--goodput", "nonsense:3"], "--goodput: unknown metric 'nonsense'"),
            ([*BASE, "--goodput", "time_to_first_token:abc"], "--goodput: time_to_first_token needs a number"),
            ([*BASE, "--input-file", "missing.jsonl"], "--input-file: no such file"),
            ([*BASE, "--request-rate-mode", "gamma", "--request-rate", "5"], "--request-rate-mode: unknown mode 'gamma'"),
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
        ],
    )
    def test_flag_of_missing_plugin_names_the_install(self, aiperf_cli, flags: list[str], line: str) -> None:
        """Exactly the documented line, non-zero exit."""
        env = {"AIPERF_DISABLE_PLUGINS": "otel,mlflow,gpu,plot"}
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


class TestMoreBadInput:
    """The rest of the bad-input list, run in-process (each line is what ``main`` prints)."""

    @pytest.fixture
    def main_in(self, tmp_path, monkeypatch, capsys):
        """``main_in(*args)`` -> (exit code, the one stderr line), run from ``tmp_path``."""
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
            (["--mlflow-tracking-uri", "sqlite:///x.db", "--mlflow-tag", "novalue"], "--mlflow-tag: expected key=value"),
            (["--mlflow-tracking-uri", "sqlite:///x.db", "--mlflow-tag", "=v"], "--mlflow-tag: expected key=value"),
            (["--otel-url", "http://127.0.0.1:9", "--otel-resource-attributes", "a=1,b"], "--otel-resource-attributes: expected 'key=value,...' (got 'b')"),
            (["--otel-url", "http://127.0.0.1:9", "--otel-resource-attributes", "=1"], "--otel-resource-attributes: expected 'key=value,...'"),
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
            ('{"text": "hi"}\nnot json\n', "--input-file: line 2: not valid JSON"),
            ('{"text": "hi"}\n{"text": "ok"}\n{"text": 5}\n', '--input-file: line 3: "text" must be a string, got a number'),
            ('{"messages": "hello"}\n', '--input-file: line 1: "messages" must be a non-empty array'),
            ("[1, 2]\n", "--input-file: line 1: expected a JSON object, got an array"),
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
            ('model = "m"\nconcurrency = "four"\n', "--concurrency: invalid value for type, expected int"),
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
