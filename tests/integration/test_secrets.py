"""Secrets never leave the process: a canary searched for everywhere a run writes or sends.

The canary rides in every place a credential can be given: ``--api-key`` (also abbreviated),
an ``Authorization`` header, other credential-looking headers (attached ``-HName:value`` form
too), ``user:password@`` in the URL and in ``--otel-url``, and the same through a TOML config
file. Then every byte
the run wrote (run directory, MLflow store and artifacts), everything it printed (at ``-v``,
``-vv`` and as JSON logs) and everything the OTLP receiver decoded is searched for it. A
harmless marker given the same way must be found, so the search is known to look in the
right places.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiperf.testing import LoopbackServer, MockServer, Received, Reply

pytestmark = pytest.mark.integration

CANARY = "cnry-7Qx2Vb9"
#: not a secret: given next to the canary, it must show up where the config is recorded.
VISIBLE = "visible-marker-5521"
GUARD_S = 180


@pytest.fixture(scope="module")
def server() -> Iterator[MockServer]:
    with MockServer(output_tokens=8) as mock:
        yield mock


def with_userinfo(url: str, password: str = f"pw-{CANARY}") -> str:
    return url.replace("http://", f"http://bench-user:{password}@", 1)


def secret_flags(server_url: str) -> list[str]:
    return [
        "--url", with_userinfo(server_url),
        "--api=" + f"key-{CANARY}",  # argparse's abbreviation of --api-key
        # Not "Authorization": with --api-key that pair is refused (both set the same header).
        "-H", f"Proxy-Authorization: Bearer auth-{CANARY}",
        f"--header=X-Api-Key: hdr-{CANARY}",
        f"-HCookie: session=cookie-{CANARY}",
        "-H", f"X-Request-Source: {VISIBLE}",
    ]  # fmt: skip


def secret_config(server_url: str, path: Path) -> list[str]:
    path.write_text(
        f'url = "{with_userinfo(server_url)}"\n'
        f'api_key = "key-{CANARY}"\n'
        f'headers = ["Proxy-Authorization: Bearer auth-{CANARY}", "X-Auth-Token: tok-{CANARY}", '
        f'"X-Request-Source: {VISIBLE}"]\n'
    )
    return ["--config", str(path)]


def run_profile(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MLFLOW_"))}
    env.update({"PYTHONUNBUFFERED": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"})
    return subprocess.run(
        [
            sys.executable, "-m", "aiperf", "profile", "-m", "mock-model", "--streaming",
            "--synthetic-input-tokens-mean", "16", "--output-tokens-mean", "8",
            "--request-count", "6", "--concurrency", "2", "--artifact-dir", "run",
            "--no-progress", *args,
        ],
        cwd=cwd, capture_output=True, text=True, timeout=GUARD_S, env=env, check=False,
    )  # fmt: skip


def files_containing(root: Path, needle: str) -> list[str]:
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and needle.encode() in path.read_bytes():
            found.append(str(path.relative_to(root)))
    return found


class TestCanary:
    @pytest.mark.parametrize(
        ("source", "verbosity"),
        [
            ("flags", ["-v"]),
            ("flags", ["-vv"]),
            ("flags", ["-vv", "--log-format", "json"]),
            ("config", ["-vv"]),
        ],
        ids=["flags-v", "flags-vv", "flags-vv-json", "config-vv"],
    )
    def test_canary_never_written_logged_or_sent(
        self, server: MockServer, tmp_path: Path, source: str, verbosity: list[str]
    ) -> None:
        """Nothing the run writes, prints or exports carries the canary."""
        from support.otlp_receiver import OtlpReceiver

        given = secret_flags(server.url) if source == "flags" else secret_config(server.url, tmp_path / "run.toml")
        with OtlpReceiver() as collector:
            result = run_profile(
                tmp_path, *given, *verbosity,
                # its own password: the scrubber must know it, not only the --url one
                "--otel-url", with_userinfo(collector.url, f"{CANARY}-otel"),
                "--otel-export-interval", "0.2",
                "--mlflow-tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                "--mlflow-experiment", "secrets", "--mlflow-tag", f"source={VISIBLE}",
            )  # fmt: skip
            received = repr(
                (
                    collector.points(),
                    collector.spans(),
                    collector.resources(),
                    [r.headers for r in collector.requests()],
                )
            )
        assert 0 == result.returncode, result.stdout + result.stderr
        if source == "config":
            (tmp_path / "run.toml").unlink()  # the one file that holds the canary on purpose

        # the run really happened, with every sink, and the search sees what it recorded
        assert 6 == json.loads((tmp_path / "run" / "profile_export_aiperf.json").read_text())["metrics"]["request_count"]["avg"]
        assert collector.requests("/v1/metrics")
        assert (tmp_path / "mlflow.db").is_file()
        assert "metadata.json" in " ".join(files_containing(tmp_path / "run", VISIBLE))
        assert VISIBLE.encode() in (tmp_path / "mlflow.db").read_bytes()
        assert "bench-user" not in (tmp_path / "run" / "metadata.json").read_text()

        assert [] == files_containing(tmp_path, CANARY)
        assert CANARY not in result.stdout
        assert CANARY not in result.stderr
        assert CANARY not in received
        # the MLflow artifacts (the uploaded exports) were searched too: they are under tmp_path
        uploads = [p for p in tmp_path.rglob("profile_export_aiperf.json") if tmp_path / "run" not in p.parents]
        assert uploads

    def test_canary_not_echoed_in_errors(self, tmp_path: Path) -> None:
        """Bad input that holds a credential is reported without it."""
        bad = [
            ["--url", f"http://u:pw-{CANARY}@127.0.0.1:notaport"],
            ["--url", f"ftp://u:pw-{CANARY}@127.0.0.1"],
            ["--url", "http://127.0.0.1:9", "-H", f"Authorization Bearer-{CANARY}"],
            ["--url", "http://127.0.0.1:9", "-H", f"X-Api-Key {CANARY}"],
        ]
        for args in bad:
            result = run_profile(tmp_path, *args)
            assert 2 == result.returncode, result.stderr
            assert CANARY not in result.stdout + result.stderr, args
            assert "Traceback" not in result.stderr


#: the key as a key file written on Windows holds it: ``$(cat key.txt)`` keeps the ``\r``.
ECHOED_KEY = "sk-echo-" + "Zq8" * 12


class EchoingServer(LoopbackServer):
    """Answers every request 401 with a body that echoes its ``Authorization`` header, as some
    gateways do; the echo starts at a different offset each time, so that wherever aiperf cuts
    a long body, some cut falls inside the key."""

    @property
    def seen(self) -> list[str]:
        return [r.headers.get("authorization") or "" for r in self.requests() if r.method == "POST"]

    def respond(self, request: Received) -> Reply:
        if request.method != "POST":
            return Reply()
        auth = request.headers.get("authorization") or ""
        pad = "." * (100 + (len(self.seen) * 37) % 500)
        body = json.dumps({"error": {"message": f"{pad}invalid credentials: {auth}"}})
        return Reply(401, body.encode())


class TestEchoedKey:
    @pytest.mark.parametrize("source", ["flag", "config-otel"])
    def test_key_echoed_by_the_server_is_nowhere(self, tmp_path: Path, source: str) -> None:
        """A key read with a trailing ``\\r`` is sent stripped, and the server's echo of it in
        its 401 bodies reaches no file, no console line and no span (in-process, and in the
        worker process that live sinks move the load to)."""
        from support.otlp_receiver import OtlpReceiver

        key_file = tmp_path / "key.txt"
        key_file.write_bytes(ECHOED_KEY.encode() + b"\r\n")
        read_key = key_file.read_bytes().decode().removesuffix("\n")  # what $(cat key.txt) gives
        assert read_key.endswith("\r")
        with EchoingServer() as server, OtlpReceiver() as collector:
            if source == "flag":
                given = ["--api-key", read_key]
            else:
                config = tmp_path / "run.toml"
                config.write_text(f'api_key = "{ECHOED_KEY}\\r\\n"\n')
                given = ["--config", str(config), "--otel-url", collector.url, "--otel-export-interval", "0.2"]
            result = run_profile(tmp_path, "--url", server.url, "-v", *given)
            spans = collector.spans()
            received = repr((collector.points(), spans, collector.resources()))
        assert 1 == result.returncode, result.stderr  # every request failed: 401
        assert "Traceback" not in result.stderr
        assert {f"Bearer {ECHOED_KEY}"} == set(server.seen)  # sent without the \r
        if source != "flag":
            assert any("401" in str(span) for span in spans), spans  # the statuses were looked at
            (tmp_path / "run.toml").unlink()
        key_file.unlink()

        summary = json.loads((tmp_path / "run" / "profile_export_aiperf.json").read_text())
        assert "401" == summary["errors"][0]["type"]
        assert "invalid credentials" in summary["errors"][0]["first_message"]
        for probe in (ECHOED_KEY, ECHOED_KEY[:12]):
            assert [] == files_containing(tmp_path, probe)
            assert probe not in result.stdout + result.stderr
            assert probe not in received


class TestScrubber:
    def test_error_messages_lose_whole_and_cut_secrets(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A secret anywhere in an error message is replaced; so is its start where the message
        was cut inside it (a body shown up to N bytes)."""
        from aiperf import ErrorInfo, _redact

        monkeypatch.setattr(_redact, "_known", set())
        _redact.remember_secrets([ECHOED_KEY])
        whole = _redact.scrub_error(ErrorInfo(type="401", message=f"HTTP 401: bad key Bearer {ECHOED_KEY}!"))
        assert "HTTP 401: bad key Bearer ***!" == whole.message
        cut = _redact.scrub_error(ErrorInfo(type="401", message=f"HTTP 401: bad key {ECHOED_KEY[:9]}"))
        assert "HTTP 401: bad key ***" == cut.message
        clean = ErrorInfo(type="500", message="HTTP 500: sk-")  # under 4 characters: kept
        assert clean is _redact.scrub_error(clean)

    def test_api_key_whitespace_stripped_control_characters_refused(self) -> None:
        """Whitespace around a key is dropped; a line break inside it is one line, exit 2."""
        from aiperf import UsageError
        from aiperf._config import build_config

        assert ECHOED_KEY == build_config({"model": "m", "api_key": f" {ECHOED_KEY}\r\n"}).api_key
        with pytest.raises(UsageError, match="control character") as caught:
            build_config({"model": "m", "api_key": f"{ECHOED_KEY}\r\nX-Other: 1"})
        assert ECHOED_KEY not in str(caught.value)
