"""The MLflow options of ``aiperf profile``, checked once and frozen.

Nothing here imports MLflow: the CLI builds and checks this before the integration is used.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
from aiperf import UsageError, given_options, option, read_options, strip_userinfo

#: used when neither ``--mlflow-experiment``, ``MLFLOW_EXPERIMENT_NAME`` nor a parent run names one.
DEFAULT_EXPERIMENT = "aiperf"

MISSING_PACKAGE = (
    "ImportError: MLflow integration requires the 'mlflow' package. "
    'Install with: pip install "aiperf[mlflow]"'
)

#: dest names of the flags this plugin adds to ``aiperf profile`` (and ``aiperf plot``).
TRACKING_URI = "mlflow_tracking_uri"
EXPERIMENT = "mlflow_experiment"
RUN_NAME = "mlflow_run_name"
TAGS = "mlflow_tags"
PARENT_RUN_ID = "mlflow_parent_run_id"
UPLOAD = "mlflow_upload"
UPLOAD_TIMEOUT = "mlflow_upload_timeout"

#: seconds everything MLflow does after the load may take (final flush, upload, ending the run).
DEFAULT_UPLOAD_TIMEOUT_S = 30.0

_SERVER_SCHEMES = ("http", "https")
#: schemes MLflow's client knows besides servers and local files; passed through untouched.
_OTHER_SCHEMES = ("postgresql", "mysql", "mssql", "databricks", "databricks-uc", "uc")
# MLflow's own rule for metric, param and tag keys.
_KEY = re.compile(r"^[\w\-. /]{1,250}$")
_RUN_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_TAG_VALUE_MAX = 8000


@attrs.frozen(kw_only=True)
class MlflowConfig:
    """Where and how to log one benchmark to MLflow."""

    #: as handed to the client: local stores made absolute, userinfo kept for authentication.
    tracking_uri: str = attrs.field(repr=False)
    #: ``None``: the parent run's experiment when there is a parent, else :data:`DEFAULT_EXPERIMENT`.
    experiment_name: str | None = None
    run_name: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    parent_run_id: str | None = None
    #: ``--mlflow-upload-timeout``: the deadline for everything after the load.
    upload_timeout_s: float = DEFAULT_UPLOAD_TIMEOUT_S

    @property
    def is_server(self) -> bool:
        return urlsplit(self.tracking_uri).scheme in _SERVER_SCHEMES

    @property
    def is_file_store(self) -> bool:
        return urlsplit(self.tracking_uri).scheme == "file"

    @property
    def display_uri(self) -> str:
        """The URI to print, log and export: never with ``user:password@``."""
        return strip_userinfo(self.tracking_uri)


#: the flags that need a tracking URI, in the order their error names them.
_NEED_URI = (
    ("experiment_name", "--mlflow-experiment"),
    ("run_name", "--mlflow-run-name"),
    ("tags", "--mlflow-tag"),
    ("parent_run_id", "--mlflow-parent-run-id"),
    ("upload_timeout_s", "--mlflow-upload-timeout"),
)


def upload_timeout(value: Any) -> float:
    """``--mlflow-upload-timeout``: seconds, > 0; unset is the default."""
    if value is None:
        return DEFAULT_UPLOAD_TIMEOUT_S
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds > 0 or seconds == float("inf"):
        raise UsageError(f"--mlflow-upload-timeout: expected seconds > 0 (got {value!r})")
    return seconds


@attrs.frozen(kw_only=True)
class MlflowOptions:
    """The ``aiperf profile`` flags of aiperf-mlflow, as the core builds them (flag,
    ``MLFLOW_EXPERIMENT_NAME``, ``[plugins.mlflow]``, default)."""

    tracking_uri: str | None = option(
        "--mlflow-tracking-uri",
        dest=TRACKING_URI,
        metavar="URI",
        parse=lambda value: normalize_tracking_uri(str(value)),
        repr=False,
        help="enable MLflow: a tracking server (http://localhost:5000) or a local store "
        "(sqlite:///mlflow.db, file:./mlruns, a directory)",
    )
    experiment_name: str | None = option(
        "--mlflow-experiment",
        dest=EXPERIMENT,
        env="MLFLOW_EXPERIMENT_NAME",
        metavar="NAME",
        parse=lambda value: _optional_name(value, "--mlflow-experiment"),
        help="experiment to create or reuse (default: MLFLOW_EXPERIMENT_NAME, the parent "
        f"run's experiment, or {DEFAULT_EXPERIMENT!r})",
    )
    run_name: str | None = option(
        "--mlflow-run-name",
        dest=RUN_NAME,
        metavar="NAME",
        parse=lambda value: _optional_name(value, "--mlflow-run-name"),
        help="name of the MLflow run (default: the run directory's name)",
    )
    tags: tuple[tuple[str, str], ...] = option(
        "--mlflow-tag",
        dest=TAGS,
        default=(),
        action="append",
        metavar="KEY=VALUE",
        parse=lambda value: parse_tags(value),
        help="tag the MLflow run (repeatable; KEY:VALUE works too)",
    )
    parent_run_id: str | None = option(
        "--mlflow-parent-run-id",
        dest=PARENT_RUN_ID,
        metavar="RUN_ID",
        parse=lambda value: _parent_run_id(value),
        help="log the run as a child of this run (for sweeps)",
    )
    upload_timeout_s: float = option(
        "--mlflow-upload-timeout",
        dest=UPLOAD_TIMEOUT,
        default=DEFAULT_UPLOAD_TIMEOUT_S,
        metavar="SECONDS",
        parse=upload_timeout,
        help="deadline for everything MLflow does after the load: the last live points, "
        "the upload, ending the run; what misses it is reported in one line "
        f"(default: {DEFAULT_UPLOAD_TIMEOUT_S:g})",
    )


def resolve(
    options: MlflowOptions, given: frozenset[str], environ: Mapping[str, str] | None = None
) -> MlflowConfig | None:
    """The run's MLflow settings; ``None`` when MLflow was not asked for.

    ``--mlflow-tracking-uri`` turns the integration on. The other ``--mlflow-*`` flags need a
    tracking URI too, which may then come from ``MLFLOW_TRACKING_URI`` as MLflow users expect
    (the variable alone turns nothing on; ``MLFLOW_EXPERIMENT_NAME`` neither).
    """
    uri = options.tracking_uri
    if "tracking_uri" not in given:
        others = [flag for name, flag in _NEED_URI if name in given]
        if not others:
            return None
        env = os.environ if environ is None else environ
        raw_uri = env.get("MLFLOW_TRACKING_URI")
        if not raw_uri:
            raise UsageError(
                f"{others[0]}: needs --mlflow-tracking-uri (or MLFLOW_TRACKING_URI) to say where "
                "to log"
            )
        uri = normalize_tracking_uri(raw_uri)
    assert uri is not None
    return MlflowConfig(
        tracking_uri=uri,
        experiment_name=options.experiment_name,
        run_name=options.run_name,
        tags=options.tags,
        parent_run_id=options.parent_run_id,
        upload_timeout_s=options.upload_timeout_s,
    )


def check_options(options: MlflowOptions, given: frozenset[str]) -> None:
    resolve(options, given)


def from_options(options: Any, environ: Mapping[str, str] | None = None) -> MlflowConfig | None:
    """The checked settings of a config (or its ``plugin_options``); ``None`` when off."""
    values = read_options(MlflowOptions, options, environ)
    return resolve(values, given_options(MlflowOptions, options), environ)


def normalize_tracking_uri(uri: str, cwd: Path | None = None) -> str:
    """Check a tracking URI; make local stores absolute so a later ``aiperf plot`` finds them
    from any directory."""
    text = uri.strip()
    base = cwd or Path.cwd()
    expected = (
        "expected http(s)://HOST[:PORT], file:DIR, sqlite:///FILE or a directory "
        f"(got {strip_userinfo(text)!r})"
    )
    if not text:
        raise UsageError(f"--mlflow-tracking-uri: {expected}")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    # "C:\mlruns" parses with scheme "c": a drive letter, so a path.
    if not scheme or len(scheme) == 1:
        return (base / text).resolve().as_uri()
    if scheme in _SERVER_SCHEMES:
        try:
            _ = parts.port
        except ValueError:
            raise UsageError(f"--mlflow-tracking-uri: {expected}") from None
        if not parts.hostname:
            raise UsageError(f"--mlflow-tracking-uri: {expected}")
        return text.rstrip("/")
    if scheme == "file":
        path = parts.path if parts.netloc in ("", "localhost") else ""
        if not path:
            raise UsageError(f"--mlflow-tracking-uri: {expected}")
        return (base / path).resolve().as_uri()
    if scheme == "sqlite":
        path = text[len("sqlite:///") :] if text.startswith("sqlite:///") else ""
        if not path:
            raise UsageError(f"--mlflow-tracking-uri: {expected}")
        if path == ":memory:" or path.startswith("/"):
            return text
        return "sqlite:///" + str((base / path).resolve())
    if scheme in _OTHER_SCHEMES or scheme.split("+")[0] in _OTHER_SCHEMES:
        return text
    raise UsageError(f"--mlflow-tracking-uri: {expected}")


def parse_tag(text: str) -> tuple[str, str]:
    """``key=value`` or ``key:value``; the first separator splits, so values may hold either."""
    cut = min((i for i in (text.find("="), text.find(":")) if i >= 0), default=-1)
    key = text[:cut].strip() if cut >= 0 else ""
    if not key:
        raise UsageError(f"--mlflow-tag: expected key=value or key:value (got {text!r})")
    if not _KEY.match(key):
        raise UsageError(
            "--mlflow-tag: a key may hold letters, digits, '_', '-', '.', ' ' and '/', "
            f"at most 250 (got {key!r})"
        )
    value = text[cut + 1 :].strip()
    if len(value) > _TAG_VALUE_MAX:
        raise UsageError(f"--mlflow-tag: the value of {key!r} is longer than {_TAG_VALUE_MAX}")
    return key, value


def parse_tags(items: Any) -> tuple[tuple[str, str], ...]:
    if isinstance(items, str):
        items = [items]
    tags: dict[str, str] = {}
    for item in items:
        key, value = parse_tag(str(item))
        tags[key] = value
    return tuple(tags.items())


def _optional_name(value: Any, flag: str) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        raise UsageError(f"{flag}: must not be empty")
    return text


def _parent_run_id(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if not _RUN_ID.match(text):
        raise UsageError(
            f"--mlflow-parent-run-id: expected a run id such as 0a1b2c3d4e5f... (got {text!r})"
        )
    return text
