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


#: upper bounds of values that size memory or work before the first request (see docs/cli.md).
MAX_NUM_PROMPTS = 1_000_000
MAX_SEQUENCE_TOKENS = 1_000_000
MAX_CONCURRENCY = 100_000
MAX_WORKERS = 1_024
#: synthetic prompts held in memory at once: num-prompts x isl tokens.
MAX_PROMPT_POOL_TOKENS = 100_000_000


def _at_most(bound: int) -> Any:
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None and value > bound:
            raise UsageError(f"{_flag(attribute.name)}: must be <= {bound} (got {value})")

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


def normalize_url(url: str) -> str:
    """``localhost:8000`` -> ``http://localhost:8000``; reject what cannot be a server URL."""
    raw = url.strip()
    if "://" not in raw:
        raw = "http://" + raw
    shown = _without_userinfo(url)
    if "@" in shown:  # userinfo the pattern could not place (``http:/user:pw@host``)
        shown = f"{REDACTED}@{shown.rsplit('@', 1)[1]}"
    if _has_control(raw):
        raise UsageError(f"--url: must not contain control characters or spaces (got {shown!r})")
    try:
        parts = urlsplit(raw)
    except ValueError as exc:  # "Invalid IPv6 URL": an unclosed [
        raise UsageError(f"--url: not a valid URL ({exc}) (got {shown!r})") from None
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"--url: expected an http:// or https:// URL (got {shown!r})")
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"--url: the port is not a number between 0 and 65535 (got {shown!r})") from None
    if not parts.hostname or port == 0:
        raise UsageError(f"--url: expected a URL such as http://localhost:8000 (got {shown!r})")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), parts.query, ""))


def _has_control(text: str, allow_space: bool = False) -> bool:
    """Control characters (a newline could forge a log line or a header) and, for URLs,
    whitespace inside."""
    import unicodedata

    return any(
        unicodedata.category(c) in ("Cc", "Zl", "Zp") or (c.isspace() and not allow_space)
        for c in text
    )


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
    #: values of flags that plugins added (``--otel-url`` -> ``plugin_options["otel_url"]``).
    plugin_options: dict[str, Any] = attrs.field(factory=dict)

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
    try:
        config = converter().structure(values, ProfileConfig)
    except UsageError:
        raise
    except cattrs.BaseValidationError as exc:
        raise UsageError(_first_problem(exc)) from None
    # After the values themselves are checked: a bad value is the first thing to fix.
    _check_unused(values)
    return config


#: flags that only mean something together with another one: (flag, needs, what it needs).
_NEEDS = (
    ("request_rate_mode", "request_rate", "--request-rate"),
    ("benchmark_grace_period", "benchmark_duration", "--benchmark-duration"),
    ("output_tokens_stddev", "output_tokens_mean", "--output-tokens-mean"),
)
#: flags the input-file dataset does not use (its prompts are the file's).
_SYNTHETIC_ONLY = ("synthetic_input_tokens_mean", "synthetic_input_tokens_stddev", "num_prompts")


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
            if values.get(name) is not None:
                raise UsageError(
                    f"{_flag(name)}: synthetic prompts only; the prompts come from --input-file"
                )
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
    try:
        flat = _flatten(raw)
    except RecursionError:
        raise UsageError(f"--config: {path} is nested too deeply") from None
    for dotted, value in flat:
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
