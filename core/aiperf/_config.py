"""The run configuration: one frozen attrs value, built from flags and/or a TOML file.

Every value the user can get wrong is checked here and reported as one line naming the flag,
what was expected and what was seen (``--concurrency: must be > 0 (got -1)``).
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs

from aiperf._types import UsageError

#: header names whose values are credentials; matched case-insensitively anywhere in the name.
_SECRET_HEADER = re.compile(r"auth|token|key|secret|passw|cookie|credential|session", re.I)
REDACTED = "***"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _finite(attribute: attrs.Attribute[Any], value: Any) -> None:
    # nan compares False with everything, so it would slip past the bounds checks below.
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{_flag(attribute.name)}: must be a finite number (got {value})")


def _positive(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    _finite(attribute, value)
    if value is not None and value <= 0:
        raise UsageError(f"{_flag(attribute.name)}: must be > 0 (got {value})")


def _non_negative(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    _finite(attribute, value)
    if value is not None and value < 0:
        raise UsageError(f"{_flag(attribute.name)}: must be >= 0 (got {value})")


def normalize_url(url: str) -> str:
    """``localhost:8000`` -> ``http://localhost:8000``; reject what cannot be a server URL."""
    raw = url.strip()
    if "://" not in raw:
        raw = "http://" + raw
    parts = urlsplit(raw)
    shown = _without_userinfo(url)
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"--url: expected an http:// or https:// URL (got {shown!r})")
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"--url: the port is not a number between 0 and 65535 (got {shown!r})") from None
    if not parts.hostname or port == 0:
        raise UsageError(f"--url: expected a URL such as http://localhost:8000 (got {shown!r})")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), parts.query, ""))


def _without_userinfo(url: str) -> str:
    """For error messages: drop ``user:password@`` even from a URL too broken to parse."""
    return re.sub(r"^([^/]*//)?[^/?#]*@", lambda m: m.group(1) or "", url.strip(), count=1)


def strip_userinfo(url: str) -> str:
    """Remove ``user:password@`` from a URL (for anything that is logged or exported)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def is_secret_header(name: str) -> bool:
    return bool(_SECRET_HEADER.search(name))


def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or any(c.isspace() for c in name.strip()):
        raise UsageError(f"--header: expected 'Name:Value' (got {_show(text, name)})")
    return name.strip(), value.strip()


def _show(text: str, name: str) -> str:
    # Never echo a credential back, even in an error: a header that looks like one is shown
    # by its first word only.
    words = name.split()
    first = words[0] if words else ""
    if is_secret_header(first) or is_secret_header(name):
        return repr(f"{first} {REDACTED}")
    return repr(text)


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_extra_inputs(items: list[str]) -> dict[str, Any]:
    """``key:value`` pairs (values parsed as JSON when they are JSON) or whole JSON objects."""
    out: dict[str, Any] = {}
    for item in items:
        text = item.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text, parse_constant=_not_json)
            except json.JSONDecodeError as exc:
                raise UsageError(f"--extra-inputs: not valid JSON ({exc.msg} at column {exc.colno})") from None
            except ValueError as exc:
                raise UsageError(f"--extra-inputs: not valid JSON ({exc})") from None
            if not isinstance(value, dict):
                raise UsageError("--extra-inputs: a JSON value must be an object")
            out.update(value)
            continue
        key, sep, raw = text.partition(":")
        if not sep or not key.strip():
            raise UsageError(f"--extra-inputs: expected 'key:value' or a JSON object (got {item!r})")
        try:
            # NaN/Infinity are not JSON: such a value stays the string it was.
            out[key.strip()] = json.loads(raw, parse_constant=_not_json)
        except ValueError:
            out[key.strip()] = raw
    return out


def parse_goodput(text: str) -> dict[str, float]:
    """``"time_to_first_token:200 inter_token_latency:10"`` (values in the metric's display unit)."""
    out: dict[str, float] = {}
    for item in text.replace(",", " ").split():
        tag, sep, raw = item.partition(":")
        if not sep:
            raise UsageError(f"--goodput: expected 'metric:value ...' (got {item!r})")
        _check_slo_metric(tag)
        try:
            value = float(raw)
        except ValueError:
            raise UsageError(f"--goodput: {tag} needs a number (got {raw!r})") from None
        _check_slo_bound(tag, value)
        out[tag] = value
    if not out:
        raise UsageError("--goodput: expected 'metric:value ...' (got nothing)")
    return out


def _check_slo_metric(tag: str) -> None:
    from aiperf._metrics import METRICS

    if tag not in METRICS or METRICS[tag].kind != "request":
        known = ", ".join(t for t, m in METRICS.items() if m.kind == "request")
        raise UsageError(f"--goodput: unknown metric {tag!r}; use one of {known}")


def _check_slo_bound(tag: str, value: float) -> None:
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"--goodput: {tag} must be a finite number > 0 (got {value:g})")


def _check_goodput(instance: Any, attribute: attrs.Attribute[Any], value: dict[str, float]) -> None:
    # A config file gives a table instead of the flag's text; the same rules apply.
    for tag, bound in value.items():
        _check_slo_metric(tag)
        _check_slo_bound(tag, bound)


@attrs.frozen(kw_only=True)
class ProfileConfig:
    """Everything ``aiperf profile`` was asked to do. Field names are the flags' names."""

    model: str
    url: str = attrs.field(default="http://localhost:8000", converter=normalize_url)
    endpoint_type: str = "chat"
    endpoint: str | None = None
    streaming: bool = False
    api_key: str | None = attrs.field(default=None, repr=False)
    headers: tuple[tuple[str, str], ...] = ()
    extra_inputs: dict[str, Any] = attrs.field(factory=dict)
    synthetic_input_tokens_mean: int = attrs.field(default=550, validator=_positive)
    synthetic_input_tokens_stddev: float = attrs.field(default=0.0, validator=_non_negative)
    output_tokens_mean: int | None = attrs.field(default=None, validator=_positive)
    output_tokens_stddev: float = attrs.field(default=0.0, validator=_non_negative)
    input_file: Path | None = None
    dataset: str | None = None
    num_prompts: int = attrs.field(default=100, validator=_positive)
    tokenizer: str = "builtin"
    random_seed: int | None = None
    concurrency: int | None = attrs.field(default=None, validator=_positive)
    request_rate: float | None = attrs.field(default=None, validator=_positive)
    request_rate_mode: str = "poisson"
    request_count: int | None = attrs.field(default=None, validator=_positive)
    benchmark_duration: float | None = attrs.field(default=None, validator=_positive)
    benchmark_grace_period: float = attrs.field(default=30.0, validator=_non_negative)
    warmup_request_count: int = attrs.field(default=0, validator=_non_negative)
    request_timeout_seconds: float = attrs.field(default=600.0, validator=_positive)
    #: a response body larger than this is an error of type ``response_too_large``.
    max_response_bytes: int = attrs.field(default=64 * 1024 * 1024, validator=_positive)
    wait_for_model_timeout: float = attrs.field(default=0.0, validator=_non_negative)
    goodput: dict[str, float] = attrs.field(factory=dict, validator=_check_goodput)
    artifact_dir: Path | None = None
    gen_ai_provider: str | None = None
    workers: int | None = attrs.field(default=None, validator=_positive)
    ca_bundle: Path | None = None
    progress: bool | None = None
    verbose: int = 0
    log_format: str = "console"
    #: values of flags that plugins added (``--otel-url`` -> ``plugin_options["otel_url"]``).
    plugin_options: dict[str, Any] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if not self.model.strip():
            raise UsageError("--model: must not be empty")
        if self.endpoint is not None and not self.endpoint.startswith("/"):
            raise UsageError(f"--endpoint: expected a path starting with '/' (got {self.endpoint!r})")
        if self.log_format not in ("console", "json"):
            raise UsageError(f"--log-format: expected console or json (got {self.log_format!r})")
        if self.ca_bundle is not None and not self.ca_bundle.is_file():
            raise UsageError(f"--ca-bundle: no such file: {self.ca_bundle}")

    # -- derived ---------------------------------------------------------------------------

    @property
    def effective_concurrency(self) -> int | None:
        """In-flight cap: ``--concurrency``, or 1 when neither rate nor concurrency is set."""
        if self.concurrency is None and self.request_rate is None:
            return 1
        return self.concurrency

    @property
    def effective_request_count(self) -> int | None:
        if self.request_count is None and self.benchmark_duration is None:
            return 10
        return self.request_count

    @property
    def load_setting(self) -> str:
        if self.request_rate is not None:
            rate = f"{self.request_rate:g}"
            return f"request_rate{rate}"
        return f"concurrency{self.effective_concurrency}"

    @property
    def url_without_userinfo(self) -> str:
        return strip_userinfo(self.url)


def redacted_config(config: ProfileConfig) -> dict[str, Any]:
    """The configuration as JSON-able data, every credential replaced by ``***``."""
    data = unstructure(config)
    if data.get("api_key"):
        data["api_key"] = REDACTED
    data["url"] = strip_userinfo(config.url)
    data["headers"] = [
        [name, REDACTED if is_secret_header(name) else value] for name, value in config.headers
    ]
    data["plugin_options"] = {
        key: (REDACTED if is_secret_header(key) and value else _strip_url_userinfo(value))
        for key, value in data.get("plugin_options", {}).items()
    }
    data["extra_inputs"] = {
        k: (REDACTED if is_secret_header(k) else v) for k, v in data.get("extra_inputs", {}).items()
    }
    return data


def _strip_url_userinfo(value: Any) -> Any:
    """Plugin flags that take URLs (``--gpu-telemetry``, ``--mlflow-tracking-uri``): no userinfo."""
    if isinstance(value, str) and "://" in value:
        try:
            return strip_userinfo(value)
        except ValueError:  # a port that is not a number: keep nothing of it
            return REDACTED
    if isinstance(value, (list, tuple)):
        return [_strip_url_userinfo(v) for v in value]
    return value


# -- structuring -----------------------------------------------------------------------------

_converter = None


def converter() -> Any:
    """The one cattrs converter (built on first use: cattrs costs import time)."""
    global _converter
    if _converter is None:
        import cattrs

        conv = cattrs.Converter(forbid_extra_keys=True)
        conv.register_unstructure_hook(Path, str)
        conv.register_structure_hook(Path, lambda v, _: Path(v))
        _converter = conv
    return _converter


def unstructure(value: Any) -> Any:
    return converter().unstructure(value)


def config_fields() -> dict[str, attrs.Attribute[Any]]:
    return {f.name: f for f in attrs.fields(ProfileConfig)}


def build_config(values: Mapping[str, Any]) -> ProfileConfig:
    """Structure plain values (from flags and a config file) into a :class:`ProfileConfig`."""
    import cattrs

    try:
        return converter().structure(dict(values), ProfileConfig)
    except UsageError:
        raise
    except cattrs.BaseValidationError as exc:
        raise UsageError(_first_problem(exc)) from None


def _first_problem(exc: BaseException) -> str:
    import cattrs

    inner = _find_usage_error(exc)
    if inner is not None:
        return str(inner)
    for problem in cattrs.transform_error(exc):
        # cattrs says e.g. "invalid value for type, expected int @ $.concurrency"
        text, _, path = problem.partition(" @ ")
        key = path.removeprefix("$.").split(".")[0].split("[")[0]
        if "required field missing" in text and key:
            return f"{_flag(key)}: is required"
        if key in config_fields():
            return f"{_flag(key)}: {text}"
        return f"config: {problem}"
    return f"config: {exc}"


def _find_usage_error(exc: BaseException) -> UsageError | None:
    if isinstance(exc, UsageError):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = _find_usage_error(inner)
        if found is not None:
            return found
    return None


def load_config_file(path: Path, plugin_keys: set[str]) -> dict[str, Any]:
    """Read a TOML config file whose keys are the flags' names (``-`` or ``_`` both work).

    Plugin flags go to ``plugin_options``; anything else unknown is an error naming the key.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"--config: no such file: {path}") from None
    except OSError as exc:
        raise UsageError(f"--config: cannot read {path}: {exc.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"--config: {path} is not valid TOML: {exc}") from None
    fields = config_fields()
    out: dict[str, Any] = {}
    plugin: dict[str, Any] = {}
    for dotted, value in _flatten(raw):
        name = dotted.rsplit(".", 1)[-1].replace("-", "_")
        if name in fields and name != "plugin_options":
            out[name] = value
        elif name in plugin_keys:
            plugin[name] = value
        else:
            raise UsageError(f"--config: unknown key {dotted!r} in {path}")
    if plugin:
        out["plugin_options"] = plugin
    return out


def _flatten(raw: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Tables are allowed for grouping (``[load] concurrency = 4``); the leaf names count."""
    items: list[tuple[str, Any]] = []
    for key, value in raw.items():
        if isinstance(value, dict) and key not in ("extra_inputs", "extra-inputs", "goodput"):
            items.extend(_flatten(value, f"{prefix}{key}."))
        else:
            items.append((prefix + key, value))
    return items
