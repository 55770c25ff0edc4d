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
from aiperf.urls import REDACTED, _has_control, normalize_url, strip_userinfo

#: header names whose values are credentials; matched case-insensitively anywhere in the name.
_SECRET_HEADER = re.compile(r"auth|token|key|secret|passw|cookie|credential|session", re.I)


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


#: upper bounds of values that size memory or work before the first request (see docs/cli.md).
MAX_NUM_PROMPTS = 1_000_000
MAX_SEQUENCE_TOKENS = 1_000_000
MAX_CONCURRENCY = 100_000
MAX_WORKERS = 1_024
#: ``--num-profile-runs``: trials of one configuration.
MAX_PROFILE_RUNS = 1_000
#: points of one sweep (a grid of several lists grows fast).
MAX_SWEEP_POINTS = 10_000
#: synthetic prompts held in memory at once: num-prompts x isl tokens.
MAX_PROMPT_POOL_TOKENS = 100_000_000


def _at_most(bound: int) -> Any:
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None and value > bound:
            raise UsageError(f"{_flag(attribute.name)}: must be <= {bound} (got {value})")

    return check


#: ``--sweep-type``: every combination of the lists, or their i-th values together.
SWEEP_TYPES = ("grid", "zip")
#: ``--search``: the load it looks for.
SEARCH_TARGETS = ("max-concurrency", "max-rate")


def _one_of(choices: tuple[str, ...]) -> Any:
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None and value not in choices:
            raise UsageError(f"{_flag(attribute.name)}: expected one of {', '.join(choices)} (got {value!r})")

    return check


def _fraction(*, open_end: bool) -> Any:
    """Between 0 and 1: ``0 < value < 1`` (open_end) or ``0 < value <= 1``."""

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        _finite(attribute, value)
        if not (0 < value < 1 if open_end else 0 < value <= 1):
            bound = "< 1" if open_end else "<= 1"
            raise UsageError(f"{_flag(attribute.name)}: must be > 0 and {bound} (got {value})")

    return check


def _clean_api_key(value: Any) -> Any:
    """A key pasted or read from a file often ends in a newline or ``\\r``: sent as is, it would
    not match on the server, and no scrubber looking for the key would find it. Whitespace
    around the key is dropped; a control character inside it is refused (never echoed)."""
    if not isinstance(value, str):
        return value
    key = value.strip()
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise UsageError("--api-key: the key holds a control character (a line break?); give the key alone")
    return key or None


def _header_problem(name: str, value: str) -> str | None:
    """What makes a header unsendable (HTTP/1.1 headers are ASCII tokens and printable text)."""
    if not name or not all(c.isascii() and (c.isalnum() or c in "!#$%&'*+-.^_`|~") for c in name):
        return f"the name {name!r} must be letters, digits and !#$%&'*+-.^_`|~ only"
    shown = REDACTED if is_secret_header(name) else repr(value)
    if _has_control(value, allow_space=True):
        return f"the value of {name} must not contain control characters (got {shown})"
    if not value.isascii():
        return f"the value of {name} must be ASCII (got {shown})"
    return None


def redact_url(url: str) -> str:
    """For anything recorded: no ``user:password@`` and no query values (an Azure-style
    ``?api-version=...&sig=...`` may carry a credential): ``?api-version=***``."""
    try:
        url = strip_userinfo(url)
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    if not parts.query:
        return url
    query = "&".join(
        f"{name}={REDACTED}" if sep else name
        for name, sep, _ in (item.partition("=") for item in parts.query.split("&"))
    )
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def query_values(url: str) -> list[str]:
    """The values in a URL's query string (for the log scrubber)."""
    try:
        query = urlsplit(url).query
    except ValueError:
        return []
    return [value for _, sep, value in (i.partition("=") for i in query.split("&")) if sep and value]


def _normalize_urls(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else list(value or ())
    if not all(isinstance(item, str) for item in items):
        raise UsageError("--url: expected URLs")
    return tuple(normalize_url(item) for item in items)


def is_secret_header(name: str) -> bool:
    return bool(_SECRET_HEADER.search(name))


def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or any(c.isspace() for c in name.strip()):
        raise UsageError(f"--header: expected 'Name:Value' (got {_show(text, name)})")
    return name.strip(), value.strip()


def parse_headers(items: Any) -> tuple[tuple[str, str], ...]:
    """``-H`` values: ``Name:Value``, ``Name: Value`` or a JSON object of several; a config
    file may also give a table or ``[name, value]`` pairs."""
    if isinstance(items, (str, dict)):
        items = [items]
    out: list[tuple[str, str]] = []
    for item in items:
        if isinstance(item, str) and item.strip().startswith("{"):
            item = _json_object("--header", item)
        if isinstance(item, dict):
            out.extend((str(name), _header_value(name, value)) for name, value in item.items())
        elif isinstance(item, str):
            out.append(parse_header(item))
        elif isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(v, str) for v in item):
            out.append((item[0], item[1]))
        else:
            raise UsageError(f"--header: expected 'Name:Value' or a JSON object (got {type(item).__name__})")
    return tuple(out)


def _header_value(name: Any, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UsageError(f"--header: the value of {str(name)!r} must be a string or a number")
    return value if isinstance(value, str) else json.dumps(value)


def _json_object(flag: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text, parse_constant=_not_json)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{flag}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"{flag}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise UsageError(f"{flag}: a JSON value must be an object")
    return value


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
        if not isinstance(item, str):
            raise UsageError(f"--extra-inputs: expected 'key:value' or a JSON object (got {type(item).__name__})")
        text = item.strip()
        if text.startswith("{"):
            out.update(_json_object("--extra-inputs", text))
            continue
        key, sep, raw = text.partition(":")
        if not sep or not key.strip():
            raise UsageError(f"--extra-inputs: expected 'key:value' or a JSON object (got {item!r})")
        try:
            # NaN/Infinity are not JSON: such a value stays the string it was.
            out[key.strip()] = json.loads(raw, parse_constant=_not_json)
        except (ValueError, RecursionError):
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
    #: the first of ``urls``: where the server check and telemetry labels point.
    url: str = attrs.field(default="http://localhost:8000", converter=normalize_url)
    #: every ``--url``; request ``i`` goes to ``urls[i % len(urls)]``. Empty means ``(url,)``.
    urls: tuple[str, ...] = attrs.field(default=(), converter=_normalize_urls)
    endpoint_type: str = "chat"
    endpoint: str | None = None
    streaming: bool = False
    api_key: str | None = attrs.field(default=None, repr=False, converter=_clean_api_key)
    headers: tuple[tuple[str, str], ...] = ()
    extra_inputs: dict[str, Any] = attrs.field(factory=dict)
    synthetic_input_tokens_mean: int = attrs.field(
        default=550, validator=[_positive, _at_most(MAX_SEQUENCE_TOKENS)]
    )
    synthetic_input_tokens_stddev: float = attrs.field(
        default=0.0, validator=[_non_negative, _at_most(MAX_SEQUENCE_TOKENS)]
    )
    output_tokens_mean: int | None = attrs.field(
        default=None, validator=[_positive, _at_most(MAX_SEQUENCE_TOKENS)]
    )
    output_tokens_stddev: float = attrs.field(
        default=0.0, validator=[_non_negative, _at_most(MAX_SEQUENCE_TOKENS)]
    )
    input_file: Path | None = None
    dataset: str | None = None
    num_prompts: int = attrs.field(default=100, validator=[_positive, _at_most(MAX_NUM_PROMPTS)])
    tokenizer: str = "builtin"
    use_server_token_count: bool = False
    random_seed: int | None = None
    concurrency: int | None = attrs.field(default=None, validator=[_positive, _at_most(MAX_CONCURRENCY)])
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
    workers: int | None = attrs.field(default=None, validator=[_positive, _at_most(MAX_WORKERS)])
    ca_bundle: Path | None = None
    progress: bool | None = None
    verbose: int = 0
    log_format: str = "console"
    # -- input files and schedules (docs/datasets.md) ---------------------------------------
    #: the --input-file's format (single_turn, random_pool, mooncake_trace, ...); None: inferred.
    custom_dataset_type: str | None = None
    #: tokens per ``hash_ids`` block of a trace.
    isl_block_size: int = attrs.field(default=512, validator=[_positive, _at_most(MAX_SEQUENCE_TOKENS)])
    #: send each request at the file's recorded time; None: on when the file has times.
    fixed_schedule: bool | None = None
    fixed_schedule_auto_offset: bool = False
    fixed_schedule_start_offset: int | None = attrs.field(default=None, validator=_non_negative)
    fixed_schedule_end_offset: int | None = attrs.field(default=None, validator=_non_negative)
    #: values of flags that plugins added (``--otel-url`` -> ``plugin_options["otel_url"]``).
    plugin_options: dict[str, Any] = attrs.field(factory=dict)
    # -- sweeps, repeats and the load search (docs/sweeps.md) ------------------------------
    #: the comma lists: ``(("concurrency", (1, 4, 16)), ...)``; the scalar fields hold the first.
    sweep_values: tuple[tuple[str, tuple[float, ...]], ...] = ()
    sweep_type: str = attrs.field(default="grid", validator=_one_of(SWEEP_TYPES))
    sweep_cooldown_seconds: float = attrs.field(default=0.0, validator=_non_negative)
    sweep_same_seed: bool = True
    num_profile_runs: int = attrs.field(default=1, validator=[_positive, _at_most(MAX_PROFILE_RUNS)])
    profile_run_cooldown_seconds: float = attrs.field(default=0.0, validator=_non_negative)
    profile_run_disable_warmup_after_first: bool = False
    #: ``None``: 0.95, and ``--confidence-level`` was not given.
    confidence_level: float | None = attrs.field(default=None, validator=_fraction(open_end=True))
    search: str | None = attrs.field(default=None, validator=_one_of(SEARCH_TARGETS))
    slo_attainment: float = attrs.field(default=0.95, validator=_fraction(open_end=False))
    search_resolution: float | None = attrs.field(default=None, validator=_positive)
    search_max: float | None = attrs.field(default=None, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if not self.urls:
            object.__setattr__(self, "urls", (self.url,))
        if not self.model.strip():
            raise UsageError("--model: must not be empty")
        if _has_control(self.model, allow_space=True):
            # A newline in the model name would forge lines in logs and console output.
            raise UsageError(f"--model: must not contain control characters (got {self.model!r})")
        self._check_headers()
        pool = self.num_prompts * self.synthetic_input_tokens_mean
        if self.input_file is None and pool > MAX_PROMPT_POOL_TOKENS:
            raise UsageError(
                f"--num-prompts x --synthetic-input-tokens-mean: {self.num_prompts} prompts of "
                f"{self.synthetic_input_tokens_mean} tokens is {pool} tokens; at most "
                f"{MAX_PROMPT_POOL_TOKENS} (the run cycles through the prompts: fewer do)"
            )
        if self.endpoint is not None and not self.endpoint.startswith("/"):
            raise UsageError(f"--endpoint: expected a path starting with '/' (got {self.endpoint!r})")
        if self.log_format not in ("console", "json"):
            raise UsageError(f"--log-format: expected console or json (got {self.log_format!r})")
        if self.ca_bundle is not None:
            _check_ca_bundle(self.ca_bundle)
        self._check_schedule()

    def _check_schedule(self) -> None:
        start, end = self.fixed_schedule_start_offset, self.fixed_schedule_end_offset
        if start is not None and end is not None and start > end:
            raise UsageError(
                f"--fixed-schedule-start-offset: {start} is after --fixed-schedule-end-offset {end}"
            )
        if self.fixed_schedule_auto_offset and start is not None:
            raise UsageError(
                "--fixed-schedule-auto-offset: the schedule starts at the first request; with "
                "--fixed-schedule-start-offset it starts at that offset; give one of them"
            )
        if self.fixed_schedule and self.request_rate is not None:
            raise UsageError(
                "--fixed-schedule: requests leave at the file's times, not at --request-rate; "
                "drop one of them (--no-fixed-schedule replays the file at a rate)"
            )

    def _check_headers(self) -> None:
        for name, value in self.headers:
            problem = _header_problem(name, value)
            if problem is not None:
                raise UsageError(f"--header: {problem}")
        if self.api_key is not None:
            key = self.api_key.strip()
            if not key or _has_control(key) or not key.isascii():
                raise UsageError("--api-key: must be printable ASCII without spaces (value not shown)")
            if any(name.lower() == "authorization" for name, _ in self.headers):
                raise UsageError(
                    "--api-key: an 'Authorization' header was given too, and both set the same "
                    "header; give only one of them"
                )

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
        if self.fixed_schedule:
            return "fixed_schedule"
        if self.request_rate is not None:
            rate = f"{self.request_rate:g}"
            return f"request_rate{rate}"
        return f"concurrency{self.effective_concurrency}"

    @property
    def url_without_userinfo(self) -> str:
        """The URL as it may be recorded: no userinfo, no query values."""
        return redact_url(self.url)


def _check_ca_bundle(path: Path) -> None:
    if not path.is_file():
        raise UsageError(f"--ca-bundle: no such file: {path}")
    try:
        data = path.read_bytes()[: 64 * 1024 * 1024]
    except OSError as exc:
        raise UsageError(f"--ca-bundle: cannot read {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise UsageError(
            f"--ca-bundle: {path} is not a PEM CA bundle (no '-----BEGIN CERTIFICATE-----' block)"
        )
    import ssl

    try:
        ssl.create_default_context(cafile=str(path))
    except ssl.SSLError as exc:
        raise UsageError(f"--ca-bundle: {path} is not a PEM CA bundle ({exc.reason or exc})") from None


def redacted_config(config: ProfileConfig) -> dict[str, Any]:
    """The configuration as JSON-able data, every credential replaced by ``***``."""
    data = unstructure(config)
    if data.get("api_key"):
        data["api_key"] = REDACTED
    data["url"] = redact_url(config.url)
    data["urls"] = [redact_url(url) for url in config.urls]
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
        return redact_url(value)
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

    values = dict(values)
    url = values.get("url")
    if isinstance(url, (list, tuple)):
        # Several --url values (or a list in a config file): round-robin over all of them.
        urls = _normalize_urls(url)
        if not urls:
            raise UsageError("--url: expected at least one URL")
        values["url"], values["urls"] = urls[0], urls
    _split_sweep(values)
    try:
        config = converter().structure(values, ProfileConfig)
    except UsageError as exc:
        raise UsageError(_every_problem(values, str(exc))) from None
    except cattrs.BaseValidationError as exc:
        raise UsageError(_every_problem(values, _first_problem(exc))) from None
    # After the values themselves are checked: a bad value is the first thing to fix.
    _check_unused(values)
    _check_sweep(config, values)
    return config


#: the flags that take a comma list (a sweep), by the name the sweep gives them:
#: (name, ProfileConfig field, type of one value).
SWEEPABLE: tuple[tuple[str, str, type], ...] = (
    ("concurrency", "concurrency", int),
    ("request_rate", "request_rate", float),
    ("isl", "synthetic_input_tokens_mean", int),
    ("osl", "output_tokens_mean", int),
)
_SWEEP_FLAGS = "--concurrency, --request-rate, --isl or --osl"


def _split_sweep(values: dict[str, Any]) -> None:
    """``--concurrency 1,4,16`` (or ``concurrency = [1, 4, 16]`` in a config file): the field
    keeps the first value, ``sweep_values`` all of them. One value is no sweep."""
    swept: list[tuple[str, tuple[float, ...]]] = []
    for name, field, kind in SWEEPABLE:
        items = _list_items(values.get(field))
        if items is None:
            continue
        parsed = [_one_number(field, item, kind) for item in items]
        if not parsed:
            raise UsageError(f"{_flag(field)}: expected a number or a comma list such as 1,4,16 (got nothing)")
        for n, value in enumerate(parsed):
            if value in parsed[:n]:
                raise UsageError(f"{_flag(field)}: {value:g} is listed twice")
        values[field] = parsed[0]
        if len(parsed) > 1:
            swept.append((name, tuple(parsed)))
    values["sweep_values"] = tuple(swept)


def _list_items(value: Any) -> list[Any] | None:
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return None


def _one_number(field: str, item: Any, kind: type) -> float:
    number: float | None = None
    if isinstance(item, (int, float)) and not isinstance(item, bool):
        number = item
    elif isinstance(item, str):
        try:
            number = float(item)
        except ValueError:
            number = None
    if number is None or not math.isfinite(number) or (kind is int and not float(number).is_integer()):
        what = "a whole number" if kind is int else "a number"
        raise UsageError(f"{_flag(field)}: expected {what} or a comma list of them (got {item!r})")
    return int(number) if kind is int else float(number)


def sweep_points(config: ProfileConfig) -> list[dict[str, float]]:
    """Every point of the sweep, in order: ``[{"concurrency": 1, "isl": 128}, ...]``."""
    import itertools

    kinds = {name: kind for name, _, kind in SWEEPABLE}
    names = [name for name, _ in config.sweep_values]
    lists = [[kinds[name](v) for v in values] for name, values in config.sweep_values]
    if not names:
        return []
    combos = zip(*lists) if config.sweep_type == "zip" else itertools.product(*lists)
    return [dict(zip(names, combo)) for combo in combos]


def _check_sweep(config: ProfileConfig, values: Mapping[str, Any]) -> None:
    """The flags of sweeps, repeats and the search: each only where it changes something."""

    def given(name: str) -> bool:
        return values.get(name) is not None

    swept = dict(config.sweep_values)
    fields = {name: (field, kind) for name, field, kind in SWEEPABLE}
    for name, items in swept.items():
        field, kind = fields[name]
        for value in items[1:]:  # the first is the field's own value, checked already
            attrs.evolve(config, **{field: kind(value)})
    if not swept:
        for name in ("sweep_type", "sweep_cooldown_seconds", "sweep_same_seed"):
            if given(name):
                raise UsageError(f"{_flag(name)}: only applies to a sweep (a comma list on {_SWEEP_FLAGS})")
    elif config.sweep_type == "zip":
        lengths = {name: len(items) for name, items in swept.items()}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{_sweep_flag(name)} has {n}" for name, n in lengths.items())
            raise UsageError(f"--sweep-type zip: the lists must be equally long ({shown} values)")
    points = math.prod(len(items) for items in swept.values()) if config.sweep_type == "grid" else 0
    if points > MAX_SWEEP_POINTS:
        raise UsageError(f"--sweep-type grid: {points} points; at most {MAX_SWEEP_POINTS}")
    if config.num_profile_runs > 1:
        if swept:
            raise UsageError(
                "--num-profile-runs: repeats one load; with comma lists, run one sweep per trial"
            )
        if config.search is not None:
            raise UsageError("--num-profile-runs: not together with --search")
    else:
        for name in ("profile_run_cooldown_seconds", "profile_run_disable_warmup_after_first", "confidence_level"):
            if given(name) and values.get(name) is not False:
                raise UsageError(f"{_flag(name)}: only applies with --num-profile-runs greater than 1")
    if config.search is None:
        for name in ("slo_attainment", "search_resolution", "search_max"):
            if given(name):
                raise UsageError(f"{_flag(name)}: only applies with --search")
        return
    _check_search(config, values)


def _sweep_flag(name: str) -> str:
    return {"isl": "--isl", "osl": "--osl"}.get(name, _flag(name))


def _check_search(config: ProfileConfig, values: Mapping[str, Any]) -> None:
    if not config.goodput:
        raise UsageError(
            "--search: needs --goodput, the SLOs a request must meet "
            "(e.g. --goodput 'time_to_first_token:200')"
        )
    if config.sweep_values:
        raise UsageError("--search: picks the loads itself; drop the comma lists")
    if config.search == "max-concurrency":
        if values.get("request_rate") is not None:
            raise UsageError(
                "--search max-concurrency: drop --request-rate (the search sets the load by "
                "concurrency; --search max-rate searches a rate)"
            )
        start: float = config.concurrency or 1
        for name in ("search_resolution", "search_max"):
            value = getattr(config, name)
            if value is not None and not float(value).is_integer():
                raise UsageError(f"{_flag(name)}: a whole number of requests in flight with max-concurrency (got {value:g})")
        if config.search_max is not None and config.search_max > MAX_CONCURRENCY:
            raise UsageError(f"--search-max: must be <= {MAX_CONCURRENCY} (got {config.search_max:g})")
    else:
        start = config.request_rate or 1.0
    if config.search_max is not None and config.search_max <= start:
        raise UsageError(f"--search-max: must be above the load the search starts at, {start:g} (got {config.search_max:g})")


#: flags that only mean something together with another one: (flag, needs, what it needs).
_NEEDS = (
    ("request_rate_mode", "request_rate", "--request-rate"),
    ("benchmark_grace_period", "benchmark_duration", "--benchmark-duration"),
    ("output_tokens_stddev", "output_tokens_mean", "--output-tokens-mean"),
)
#: flags the input-file dataset does not use (its prompts are the file's).
_SYNTHETIC_ONLY = ("synthetic_input_tokens_mean", "synthetic_input_tokens_stddev", "num_prompts")
#: flags that read the times of an --input-file.
_SCHEDULE_FLAGS = (
    "fixed_schedule_auto_offset", "fixed_schedule_start_offset", "fixed_schedule_end_offset",
)  # fmt: skip


def _given(value: Any) -> bool:
    """A flag's value that asks for something (0 does; an unset flag or a false switch not)."""
    return value is not None and value is not False


def _check_unused(values: Mapping[str, Any]) -> None:
    """A flag that was given but would change nothing is an error, not a silent no-op."""
    for name, needs, flag in _NEEDS:
        if values.get(name) is not None and values.get(needs) is None:
            raise UsageError(f"{_flag(name)}: only applies with {flag}; add {flag} or drop {_flag(name)}")
    dataset = values.get("dataset")
    if dataset == "synthetic" and values.get("input_file") is not None:
        raise UsageError("--input-file: --dataset synthetic does not read it; drop one of them")
    if dataset == "input_file" or (dataset is None and values.get("input_file") is not None):
        for name in _SYNTHETIC_ONLY:
            # random_pool draws --num-prompts requests from the file's pool.
            if name == "num_prompts" and values.get("custom_dataset_type") == "random_pool":
                continue
            if values.get(name) is not None:
                raise UsageError(
                    f"{_flag(name)}: synthetic prompts only; the prompts come from --input-file"
                )
    if values.get("input_file") is None:
        for name in ("custom_dataset_type", "fixed_schedule", *_SCHEDULE_FLAGS):
            if _given(values.get(name)):
                raise UsageError(f"{_flag(name)}: reads the times and lines of --input-file; add --input-file FILE")
    if dataset not in (None, "input_file") and values.get("custom_dataset_type") is not None:
        raise UsageError(
            f"--custom-dataset-type: the format of --input-file; --dataset {dataset} reads its own"
        )
    if values.get("fixed_schedule") is False:
        for name in _SCHEDULE_FLAGS:
            if _given(values.get(name)):
                raise UsageError(f"{_flag(name)}: only applies to a fixed schedule; drop it or --no-fixed-schedule")
    if values.get("ca_bundle") is not None:
        urls = values.get("url") or "http://localhost:8000"
        urls = [urls] if isinstance(urls, str) else list(urls)
        if not any(str(url).strip().lower().startswith("https:") for url in urls):
            raise UsageError("--ca-bundle: only used for https:// URLs, and no --url is one")
    goodput = values.get("goodput")
    if isinstance(goodput, dict) and not values.get("streaming"):
        from aiperf._metrics import METRICS

        for tag in goodput:
            if tag in METRICS and METRICS[tag].streaming_only:
                raise UsageError(f"--goodput: {tag} is measured only with --streaming")


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


def _every_problem(values: Mapping[str, Any], first: str) -> str:
    """``first``, and every other value that is bad on its own (its type, converter and
    validators), one line each: all of them can be fixed in one go."""
    import cattrs

    attrs.resolve_types(ProfileConfig)
    lines = [first]
    for field in attrs.fields(ProfileConfig):
        if field.name not in values or field.name in ("plugin_options", "sweep_values"):
            continue
        try:
            value = converter().structure(values[field.name], field.type)
            if field.converter is not None:
                value = field.converter(value)  # type: ignore[call-arg,operator]
            if field.validator is not None:
                field.validator(None, field, value)
        except UsageError as exc:
            line = str(exc)
        except cattrs.BaseValidationError as exc:
            line = _first_problem(exc)
        except (ValueError, TypeError) as exc:
            text = cattrs.transform_error(exc, path=f"$.{field.name}")[0].partition(" @ ")[0]
            line = f"{_flag(field.name)}: {text}"
        except Exception:  # noqa: BLE001 - a value too odd to check alone: the whole build said what it could
            continue
        else:
            continue
        if line.partition(":")[0] not in {known.partition(":")[0] for known in lines}:
            lines.append(line)
    return "\n".join(lines)


def _find_usage_error(exc: BaseException) -> UsageError | None:
    if isinstance(exc, UsageError):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = _find_usage_error(inner)
        if found is not None:
            return found
    return None


def load_config_file(
    path: Path, plugin_keys: set[str], tables: Mapping[str, Mapping[str, str]] | None = None
) -> dict[str, Any]:
    """Read a TOML config file whose keys are the flags' names (``-`` or ``_`` both work).

    Plugin flags go to ``plugin_options``, given anywhere by their flag's name or in the
    plugin's own table (``[plugins.otel]``; ``tables`` maps each table's keys to the flags'
    dests); anything else unknown is an error naming the key.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"--config: no such file: {path}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--config: {path} is not a text file (not UTF-8); expected TOML") from None
    except OSError as exc:
        raise UsageError(f"--config: cannot read {path}: {exc.strerror or exc}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"--config: {path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise UsageError(f"--config: {path} is nested too deeply") from None
    fields = config_fields()
    out: dict[str, Any] = {}
    plugin: dict[str, Any] = {}
    in_tables: dict[str, Any] = {}
    _plugin_tables(raw, tables or {}, path, in_tables)
    try:
        flat = _flatten(raw)
    except RecursionError:
        raise UsageError(f"--config: {path} is nested too deeply") from None
    for dotted, value in flat:
        name = dotted.rsplit(".", 1)[-1].replace("-", "_")
        if name in fields and name not in ("plugin_options", "sweep_values"):
            out[name] = value
        elif name in plugin_keys:
            plugin[name] = value
        else:
            raise UsageError(f"--config: unknown key {dotted!r} in {path}")
    plugin.update(in_tables)
    if plugin:
        out["plugin_options"] = plugin
    return out


def _plugin_tables(
    raw: dict[str, Any], tables: Mapping[str, Mapping[str, str]], path: Path, out: dict[str, Any]
) -> None:
    """``[plugins.NAME]`` tables: each plugin's options by their flags' names (taken out of
    ``raw``; they win over the same option given elsewhere in the file)."""
    section = raw.get("plugins")
    if not isinstance(section, dict):
        return
    for name, table in list(section.items()):
        if not isinstance(table, dict):
            continue  # ``plugins`` as a plain grouping table: its leaves are read as usual
        keys = tables.get(name.replace("-", "_")) or tables.get(name)
        if keys is None:
            known = ", ".join(sorted(tables)) or "none"
            raise UsageError(
                f"--config: unknown table [plugins.{name}] in {path} (plugins with options: {known})"
            )
        for key, value in table.items():
            dest = keys.get(key.replace("-", "_"))
            if dest is None:
                raise UsageError(f"--config: unknown key 'plugins.{name}.{key}' in {path}")
            out[dest] = value
        del section[name]
    if not section:
        del raw["plugins"]


def _flatten(raw: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Tables are allowed for grouping (``[load] concurrency = 4``); the leaf names count."""
    items: list[tuple[str, Any]] = []
    for key, value in raw.items():
        if isinstance(value, dict) and key not in ("extra_inputs", "extra-inputs", "goodput"):
            items.extend(_flatten(value, f"{prefix}{key}."))
        else:
            items.append((prefix + key, value))
    return items
