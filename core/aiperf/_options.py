"""Plugin options: one frozen attrs class per plugin, built by the core.

A plugin declares its options once, as fields made with :func:`option`, and registers the
class (:class:`PluginOptions`, hook ``aiperf_register_options``). The core then adds the flags
to ``aiperf profile``, reads the config file's ``[plugins.NAME]`` table and the environment
variables the fields name, and structures the values with the one cattrs converter:

    flag  >  environment variable  >  config file  >  the field's default

Every problem of every plugin is reported at once, one line each, naming the flag.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import attrs

from aiperf._types import UsageError

T = TypeVar("T")

#: key of an option's :class:`Option` in its attrs field's metadata.
METADATA_KEY = "aiperf.option"


@attrs.frozen(kw_only=True)
class Option:
    """What :func:`option` knows about one field: its flag, where else its value may come from."""

    flag: str
    #: the key in ``config.plugin_options`` (and the argparse dest).
    dest: str
    env: str | None = None
    help: str | None = None
    metavar: str | None = None
    #: ``store_true`` (a switch), ``append`` (repeatable), ``extend`` (several values, repeatable).
    action: str | None = None
    choices: tuple[str, ...] | None = None
    #: turns the raw value (a flag's text, a TOML value, an environment variable) into the
    #: field's value; raises :class:`aiperf.UsageError` (or ``ValueError``) for a bad one.
    parse: Callable[[Any], Any] | None = None


def option(
    flag: str,
    *,
    default: Any = None,
    factory: Callable[[], Any] | None = None,
    env: str | None = None,
    help: str | None = None,  # noqa: A002 - argparse's name
    metavar: str | None = None,
    dest: str | None = None,
    action: str | None = None,
    choices: Iterable[str] | None = None,
    parse: Callable[[Any], Any] | None = None,
    repr: bool = True,  # noqa: A002 - attrs' name
) -> Any:
    """A field of a plugin's options class, given on the command line as ``flag``.

    :param default: the value when neither the flag, ``env`` nor the config file gives one.
    :param env: an environment variable read when the flag is not given (it beats the file).
    :param dest: the key in ``config.plugin_options`` (default: the flag's name,
        ``--otel-url`` -> ``otel_url``).
    :param action: ``"store_true"`` for a switch, ``"append"`` for a repeatable flag,
        ``"extend"`` for one that takes several values and may be repeated.
    :param parse: raw value -> field value; raise :class:`aiperf.UsageError` naming the flag
        (``--otel-url: ...``) or ``ValueError`` (the core adds the flag).
    """
    if not flag.startswith("--"):
        raise ValueError(f"option flag must start with '--' (got {flag!r})")
    spec = Option(
        flag=flag,
        dest=dest or flag[2:].replace("-", "_"),
        env=env,
        help=help,
        metavar=metavar,
        action=action,
        choices=tuple(choices) if choices is not None else None,
        parse=parse if parse is not None else (_switch if action == "store_true" else None),
    )
    if factory is not None:
        return attrs.field(factory=factory, metadata={METADATA_KEY: spec}, repr=repr)
    return attrs.field(default=default, metadata={METADATA_KEY: spec}, repr=repr)


@attrs.frozen(kw_only=True)
class PluginOptions:
    """A plugin's options, as registered with ``aiperf_register_options``."""

    #: the config file's table: ``[plugins.NAME]``.
    name: str
    #: the frozen attrs class whose fields are made with :func:`option`.
    options: type
    #: the group's title in ``aiperf profile --help``.
    title: str
    description: str | None = None
    #: checks that span fields, ``check(options, given)``; ``given`` is the names of the
    #: fields set by a flag or the config file (not by an environment variable or default).
    #: Raise :class:`aiperf.UsageError` with one line naming the flag.
    check: Callable[[Any, frozenset[str]], None] | None = None


class OptionProblems(UsageError):
    """Several bad values: one line each."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def options_of(cls: type) -> list[tuple[attrs.Attribute[Any], Option]]:
    """The fields of ``cls`` made with :func:`option`, in declaration order."""
    return [(f, f.metadata[METADATA_KEY]) for f in attrs.fields(cls) if METADATA_KEY in f.metadata]


def add_flags(parser: argparse.ArgumentParser, spec: PluginOptions) -> None:
    """Add the flags of ``spec.options`` to ``parser``, in a group of their own."""
    group = parser.add_argument_group(spec.title, spec.description)
    for field, opt in options_of(spec.options):
        kwargs: dict[str, Any] = {"dest": opt.dest, "help": _help(field, opt)}
        if opt.action == "store_true":
            kwargs["action"] = "store_true"
        else:
            kwargs["metavar"] = opt.metavar
            if opt.action == "extend":
                kwargs.update(action="extend", nargs="+")
            elif opt.action is not None:
                kwargs["action"] = opt.action
            if opt.choices is not None:
                kwargs["choices"] = list(opt.choices)
        group.add_argument(opt.flag, **kwargs)


def _help(field: attrs.Attribute[Any], opt: Option) -> str | None:
    if opt.help is None or opt.env is None or opt.env in opt.help:
        return opt.help
    return f"{opt.help} [env: {opt.env}]"


def _mapping(source: Any) -> Mapping[str, Any]:
    """A :class:`aiperf.ProfileConfig` or its ``plugin_options``."""
    options = getattr(source, "plugin_options", source)
    return options if options is not None else {}


def given_options(cls: type, source: Any) -> frozenset[str]:
    """Names of the fields of ``cls`` set by a flag or the config file (a switch that is off
    was not given)."""
    values = _mapping(source)
    return frozenset(
        field.name
        for field, opt in options_of(cls)
        if _present(values.get(opt.dest)) and values.get(opt.dest) is not False
    )


def _present(value: Any) -> bool:
    return value is not None and value != []


def read_options(cls: type[T], source: Any, environ: Mapping[str, str] | None = None) -> T:
    """Build ``cls`` from a config (or its ``plugin_options``) and the environment.

    Raises :class:`OptionProblems` listing every bad value, one line each, naming the flag.
    """
    import cattrs

    env = os.environ if environ is None else environ
    values = _mapping(source)
    raw: dict[str, Any] = {}
    from_env: dict[str, Option] = {}
    for field, opt in options_of(cls):
        value = values.get(opt.dest)
        if not _present(value) and opt.env and env.get(opt.env, "").strip():
            value = env[opt.env]
            from_env[field.name] = opt
        if _present(value):
            raw[field.name] = value
    try:
        return _structure(cls, raw)
    except cattrs.BaseValidationError as exc:
        raise OptionProblems(_problems(cls, exc, raw, from_env)) from None
    except UsageError as exc:
        raise OptionProblems(str(exc).splitlines()) from None


def check_all(specs: Iterable[PluginOptions], source: Any, environ: Mapping[str, str] | None = None) -> list[str]:
    """Every problem of every plugin's options, one line each (empty when all is well)."""
    problems: list[str] = []
    for spec in specs:
        try:
            value: Any = read_options(spec.options, source, environ)
            if spec.check is not None:
                spec.check(value, given_options(spec.options, source))
        except OptionProblems as exc:
            problems.extend(exc.problems)
        except UsageError as exc:
            problems.extend(str(exc).splitlines())
    return problems


def table_keys(spec: PluginOptions) -> dict[str, str]:
    """What a ``[plugins.NAME]`` table may say for each option -> its dest: the flag's name,
    the dest and the field's name (``-`` or ``_`` both work)."""
    keys: dict[str, str] = {}
    for field, opt in options_of(spec.options):
        for name in (opt.flag[2:], opt.dest, field.name):
            keys[name.replace("-", "_")] = opt.dest
    return keys


def env_dests(specs: Iterable[PluginOptions], environ: Mapping[str, str] | None = None) -> set[str]:
    """Dests whose environment variable is set: there, the variable beats the config file."""
    env = os.environ if environ is None else environ
    return {
        opt.dest
        for spec in specs
        for _, opt in options_of(spec.options)
        if opt.env and env.get(opt.env, "").strip()
    }


# -- structuring -----------------------------------------------------------------------------

_hooks: set[type] = set()


def _structure(cls: type[T], raw: dict[str, Any]) -> T:
    from cattrs.gen import make_dict_structure_fn, override

    from aiperf._config import converter

    conv = converter()
    if cls not in _hooks:
        attrs.resolve_types(cls)  # type: ignore[type-var]
        overrides = {
            field.name: override(struct_hook=_parse_hook(opt.parse))
            for field, opt in options_of(cls)
            if opt.parse is not None
        }
        conv.register_structure_hook(cls, make_dict_structure_fn(cls, conv, **overrides))  # type: ignore[arg-type]
        _hooks.add(cls)
    return conv.structure(raw, cls)


def _parse_hook(parse: Callable[[Any], Any]) -> Callable[[Any, Any], Any]:
    return lambda value, _type: parse(value)


def _problems(
    cls: type, exc: BaseException, raw: Mapping[str, Any], from_env: Mapping[str, Option]
) -> list[str]:
    """One line per field that failed, naming its flag (and the variable it came from)."""
    flags = {field.name: opt for field, opt in options_of(cls)}
    types = {field.name: field.type for field in attrs.fields(cls)}
    lines: list[str] = []
    for inner in getattr(exc, "exceptions", (exc,)):
        name = next(
            (getattr(note, "name", None) for note in getattr(inner, "__notes__", ()) if hasattr(note, "name")),
            None,
        )
        opt = flags.get(name or "")
        usage = _usage_error(inner)
        if opt is None:
            lines.append(str(usage) if usage is not None else f"{cls.__name__}: {inner}")
            continue
        if usage is not None:
            text = str(usage)
            rest = text[len(opt.flag) + 2 :] if text.startswith(f"{opt.flag}: ") else text
        elif opt.parse is None:
            # The converter's own complaint ("could not convert string to float") says less.
            rest = f"expected {_kind(types.get(name or ''))} (got {raw.get(name or '')!r})"
        elif isinstance(inner, ValueError | TypeError) and str(inner):
            rest = str(inner)
        else:
            rest = "not a valid value"
        where = f"{opt.flag} (from {opt.env})" if name in from_env else opt.flag
        lines.append(f"{where}: {rest}")
    return lines


def _kind(kind: Any) -> str:
    import typing

    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if len(args) == 1:
        kind = args[0]
    names = {int: "a whole number", float: "a number", str: "text", bool: "true or false"}
    return names.get(kind, getattr(kind, "__name__", str(kind)))


def _usage_error(exc: BaseException) -> UsageError | None:
    if isinstance(exc, UsageError):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = _usage_error(inner)
        if found is not None:
            return found
    return None


def _switch(value: Any) -> bool:
    """A switch from a flag (``True``), TOML (a boolean) or a variable (``1``, ``true``, ...)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false (got {value!r})")
