"""``aiperf compare mlflow:RUN_ID``: the results of a run logged to MLflow, downloaded into a
temporary run directory.

An aiperf run logged with ``--mlflow-tracking-uri`` uploads its run directory when it ends
(``profile_export.jsonl`` among the files), so the comparison reads the same per-request
records it reads from a local directory.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from aiperf import UsageError

from aiperf_mlflow import environment
from aiperf_mlflow.config import MlflowConfig, normalize_tracking_uri
from aiperf_mlflow.session import _DOES_NOT_EXIST, describe_error

PREFIX = "mlflow:"
#: the id MLflow gives a run: 32 hex digits. Anything else needs the ``mlflow:`` prefix.
_BARE_ID = re.compile(r"^[0-9a-f]{32}$")
_RUN_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
#: the files a comparison reads; only the first must be there.
FILES = ("profile_export.jsonl", "profile_export_aiperf.json")


def run_id_of(ref: str) -> str | None:
    """The MLflow run id ``ref`` names, or ``None`` when it names none."""
    if ref.startswith(PREFIX):
        run_id = ref[len(PREFIX) :]
        if not _RUN_ID.match(run_id):
            raise UsageError(f"{ref}: not an MLflow run id (expected mlflow:<32 hex digits>)")
        return run_id
    return ref if _BARE_ID.match(ref) else None


def tracking_uri(ref: str, given: str | None) -> str:
    """``--mlflow-tracking-uri``, else ``MLFLOW_TRACKING_URI``; never MLflow's own default
    (a store in the working directory, created on first use)."""
    uri = given or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise UsageError(
            f"{ref}: no such directory; for an MLflow run give --mlflow-tracking-uri "
            "(or set MLFLOW_TRACKING_URI) to say where it is logged"
        )
    return normalize_tracking_uri(uri)


def fetch(ref: str, run_id: str, dest: Path, uri: str) -> Path:
    """Download the run's results into ``dest``; one line (a UsageError) for every way that
    can fail."""
    config = MlflowConfig(tracking_uri=uri)
    prepared = environment.apply(config)
    if not environment.probe(config, prepared.probe_timeout_s):
        raise UsageError(
            f"{ref}: {environment.unresponsive_message(config, prepared.probe_timeout_s)}"
        )
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    where = config.display_uri
    client = MlflowClient(tracking_uri=uri)
    try:
        client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code in _DOES_NOT_EXIST:
            raise UsageError(f"{ref}: no MLflow run {run_id} in {where}") from None
        raise UsageError(f"{ref}: MLflow at {where}: {describe_error(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - the store's own errors: one line, not a traceback
        raise UsageError(f"{ref}: MLflow at {where}: {describe_error(exc)}") from None
    try:
        present = {a.path for a in client.list_artifacts(run_id)}
        if FILES[0] not in present:
            raise UsageError(
                f"{ref}: the MLflow run has no {FILES[0]} (an aiperf run uploads it when it "
                "ends; was the run logged by aiperf profile --mlflow-tracking-uri?)"
            )
        for name in FILES:
            if name in present:
                client.download_artifacts(run_id, name, str(dest))
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise UsageError(
            f"{ref}: downloading the run's results from MLflow at {where} failed: "
            f"{describe_error(exc)}"
        ) from None
    return dest
