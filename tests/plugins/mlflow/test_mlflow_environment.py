"""The client's environment: bounded waits by default, the user's MLFLOW_* values untouched."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from aiperf_mlflow import environment
from aiperf_mlflow.config import MlflowConfig, normalize_tracking_uri
from structlog.testing import capture_logs


def config(uri: str = "http://localhost:5000") -> MlflowConfig:
    return MlflowConfig(tracking_uri=normalize_tracking_uri(uri))


class TestClientEnvironment:
    def test_defaults_bound_retries_and_timeout(self) -> None:
        """With nothing set, retries and timeouts are small and MLflow prints no URLs."""
        prepared = environment.client_environment(config(), {})
        assert {
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
            "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
            "MLFLOW_LOGGING_LEVEL": "WARNING",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        } == prepared.updates
        assert 5.0 == prepared.probe_timeout_s

    def test_user_values_win(self) -> None:
        """A variable the user set is never overwritten; their timeout is the probe's budget."""
        user = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "9", "MLFLOW_HTTP_REQUEST_TIMEOUT": "12"}
        prepared = environment.client_environment(config(), user)
        assert not set(user) & set(prepared.updates)
        assert 12.0 == prepared.probe_timeout_s

    @pytest.mark.parametrize("raw", ["", "abc", "-1", "0"])
    def test_unusable_timeout_falls_back_to_five_seconds(self, raw: str) -> None:
        """A timeout that is not a positive number leaves the 5 s budget."""
        assert 5.0 == environment.probe_timeout({"MLFLOW_HTTP_REQUEST_TIMEOUT": raw})

    def test_file_store_is_allowed_when_asked_for(self, tmp_path: Path) -> None:
        """file: needs MLFLOW_ALLOW_FILE_STORE=true with MLflow 3.7+; we set it for the client."""
        prepared = environment.client_environment(config(f"file:{tmp_path}"), {})
        assert "true" == prepared.updates["MLFLOW_ALLOW_FILE_STORE"]
        assert "MLFLOW_ALLOW_FILE_STORE" not in environment.client_environment(config(), {}).updates

    def test_apply_sets_variables_and_is_idempotent(self, tmp_path: Path) -> None:
        """apply() writes the variables; a second apply changes nothing (same probe budget)."""
        env: dict[str, str] = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "7"}
        first = environment.apply(config(f"file:{tmp_path}"), env)
        snapshot = dict(env)
        second = environment.apply(config(f"file:{tmp_path}"), env)
        assert ("7", "true") == (env["MLFLOW_HTTP_REQUEST_TIMEOUT"], env["MLFLOW_ALLOW_FILE_STORE"])
        assert (7.0, 7.0, snapshot) == (first.probe_timeout_s, second.probe_timeout_s, env)

    def test_default_probe_budget_survives_apply(self) -> None:
        """Our own default timeout is the probe's 5 s, so applying first does not change it."""
        env: dict[str, str] = {}
        environment.apply(config(), env)
        assert 5.0 == environment.client_environment(config(), env).probe_timeout_s

    def test_note_store_recommends_sqlite_for_file_store(self, tmp_path: Path) -> None:
        """The file store gets one note that MLflow recommends sqlite; a server gets none."""
        with capture_logs() as logs:
            environment.note_store(config(f"file:{tmp_path}"))
            environment.note_store(config())
        assert 1 == len(logs)
        assert "sqlite:///mlflow.db" in logs[0]["event"]


class TestMessages:
    def test_unresponsive_message_is_the_documented_line(self) -> None:
        """The exact words of the docs, for the default budget."""
        assert (
            "MLflow tracking server at http://localhost:5000 did not respond within 5s."
            == environment.unresponsive_message(config(), 5.0)
        )

    def test_unresponsive_message_hides_userinfo(self) -> None:
        """The printed URL never carries user:password@."""
        message = environment.unresponsive_message(config("http://u:pw@localhost:5000"), 2.5)
        assert (
            "MLflow tracking server at http://localhost:5000 did not respond within 2.5s."
            == message
        )

    def test_probe_local_store_needs_no_server(self, tmp_path: Path) -> None:
        """A local store is always 'reachable'."""
        assert environment.probe(config(f"file:{tmp_path}"), 0.01)


class TestRetryNoise:
    def test_urllib3_retry_lines_for_mlflow_are_dropped(self) -> None:
        """urllib3's retry warnings for MLflow's requests are dropped; everything else stays."""
        environment.apply(config(), {})
        logger = logging.getLogger("urllib3.connectionpool")

        def kept(message: str, *args: object) -> bool:
            record = logger.makeRecord(
                logger.name, logging.WARNING, __file__, 1, message, args, None
            )
            return all(f.filter(record) for f in logger.filters)

        assert not kept(
            "Retrying (%r) after connection broken by '%r': %s",
            "R",
            "E",
            "/api/2.0/mlflow/runs/log-batch",
        )
        assert kept("Retrying (%r) after connection broken by '%r': %s", "R", "E", "/v1/metrics")
        assert kept("Connection pool is full, discarding connection: %s", "127.0.0.1")

    def test_filter_installed_once(self) -> None:
        """Applying the environment for every run adds the filter only once."""
        environment.apply(config(), {})
        environment.apply(config(), {})
        logger = logging.getLogger("urllib3.connectionpool")
        assert 1 == sum(type(f).__name__ == "_MlflowRetryFilter" for f in logger.filters)
