"""How the MLflow client is made to behave inside a benchmark: bounded waits, no chatter.

MLflow reads its HTTP settings from the environment on every request. Its defaults (120 s
timeout, 7 retries with exponential backoff) let a dead server hold a call for minutes, so we
lower them, except where the user set them: their values win, the way MLflow users expect.
One timeout governs both the health probe and every call, so ``MLFLOW_HTTP_REQUEST_TIMEOUT``
is the one knob the warning points to, and applying the defaults twice changes nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, MutableMapping

import attrs
import structlog

from aiperf_mlflow.config import MlflowConfig

log = structlog.get_logger()

TIMEOUT_VAR = "MLFLOW_HTTP_REQUEST_TIMEOUT"
#: how long the tracking server has to answer ``GET /health`` unless ``MLFLOW_HTTP_REQUEST_TIMEOUT`` is set.
PROBE_TIMEOUT_S = 5.0

#: applied only where the user has not set the variable.
CLIENT_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    # Per socket operation, not per call: a slow but progressing upload does not hit it.
    TIMEOUT_VAR: f"{PROBE_TIMEOUT_S:.0f}",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    # MLflow's own INFO lines (database migrations, ...) are not aiperf's to print; read at
    # ``import mlflow``, so this is applied before that import.
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    # MLflow reports its own usage to its vendor's endpoint; a benchmark client has no
    # business calling anything but the user's servers.
    "MLFLOW_DISABLE_TELEMETRY": "true",
}
FILE_STORE_VAR = "MLFLOW_ALLOW_FILE_STORE"


@attrs.frozen(kw_only=True)
class ClientEnvironment:
    #: seconds the health probe may take.
    probe_timeout_s: float
    #: variables to set for the client (the user's own are never among them).
    updates: dict[str, str]


def client_environment(config: MlflowConfig, environ: Mapping[str, str]) -> ClientEnvironment:
    updates = {name: value for name, value in CLIENT_DEFAULTS.items() if name not in environ}
    if config.is_file_store and FILE_STORE_VAR not in environ:
        # MLflow 3.7+ refuses the file store unless asked; the user asked by naming file:.
        updates[FILE_STORE_VAR] = "true"
    return ClientEnvironment(probe_timeout_s=probe_timeout(environ), updates=updates)


def probe_timeout(environ: Mapping[str, str]) -> float:
    raw = environ.get(TIMEOUT_VAR)
    try:
        value = float(raw) if raw else PROBE_TIMEOUT_S
    except ValueError:
        return PROBE_TIMEOUT_S
    return value if value > 0 else PROBE_TIMEOUT_S


def apply(
    config: MlflowConfig, environ: MutableMapping[str, str] | None = None
) -> ClientEnvironment:
    """Set the client's variables in this process. Idempotent: call it wherever the client is
    about to be used."""
    env = os.environ if environ is None else environ
    prepared = client_environment(config, env)
    env.update(prepared.updates)
    _quiet_client_retries()
    return prepared


def note_store(config: MlflowConfig) -> None:
    """Once per run: what the user should know about the store they chose."""
    if config.is_file_store:
        log.info(
            "MLflow recommends a database store for local tracking, e.g. "
            "--mlflow-tracking-uri sqlite:///mlflow.db; using the file store as asked.",
            uri=config.display_uri,
        )


class _MlflowRetryFilter(logging.Filter):
    """Drops urllib3's "Retrying ..." lines for MLflow's own requests: each failed call already
    ends in one warning of ours, and the losses are counted in the run's report."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a record we cannot read is left alone
            return True
        return not (message.startswith("Retrying") and "/mlflow" in message)


def _quiet_client_retries() -> None:
    logger = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, _MlflowRetryFilter) for f in logger.filters):
        logger.addFilter(_MlflowRetryFilter())


def unresponsive_message(config: MlflowConfig, timeout_s: float) -> str:
    return f"MLflow tracking server at {config.display_uri} did not respond within {timeout_s:g}s."


def probe(config: MlflowConfig, timeout_s: float, environ: Mapping[str, str] | None = None) -> bool:
    """``GET /health`` on the tracking server: True when it answered at all (any status).

    Local stores need no server and always pass. Blocking: run it off the trio thread.
    """
    if not config.is_server:
        return True
    import httpx

    env = os.environ if environ is None else environ
    verify: bool | str = True
    if env.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in ("1", "true"):
        verify = False
    elif env.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
        verify = env["MLFLOW_TRACKING_SERVER_CERT_PATH"]
    try:
        with httpx.Client(timeout=timeout_s, verify=verify) as client:
            client.get(config.display_uri + "/health")
    except httpx.HTTPError as exc:
        log.debug("mlflow_probe_failed", uri=config.display_uri, error=type(exc).__name__)
        return False
    return True
