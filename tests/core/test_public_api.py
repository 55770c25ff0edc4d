"""The public API as a type checker sees it: the built-in tokenizers satisfy the public
``Tokenizer`` protocol, and every name ``aiperf`` exports reaches a plugin checked with
``mypy --strict``. ``nox -s lint`` runs mypy itself; these tests hold the same facts in the
test suite, where a change that breaks them is made."""

from __future__ import annotations

import ast
import importlib
import inspect
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiperf
import pytest
from aiperf._tokenizer import HFTokenizer, builtin_tokenizer

INIT = Path(aiperf.__file__)


def protocol_conflicts(protocol: type, obj: object) -> list[str]:
    """How ``obj`` falls short of ``protocol``: missing members, attributes the protocol lets
    callers set that ``obj`` does not, and methods whose parameters or types differ."""
    conflicts = []
    settable = set(typing.get_type_hints(protocol))
    members = settable | {name for name in vars(protocol) if not name.startswith("_")}
    for name in sorted(members):
        if not hasattr(obj, name):
            conflicts.append(f"{name}: missing")
            continue
        value = getattr(obj, name)
        declared = inspect.getattr_static(protocol, name, None)
        if name in settable:
            try:
                setattr(obj, name, value)
            except AttributeError:  # a frozen attrs class raises a subclass of it
                conflicts.append(f"{name}: read-only, but the protocol lets callers set it")
        elif isinstance(declared, property):
            expected = typing.get_type_hints(declared.fget)["return"]
            if isinstance(expected, type) and not isinstance(value, expected):
                conflicts.append(f"{name}: {value!r} is not {expected.__name__}")
        elif callable(declared):
            want, got = _parameters(declared), _parameters(getattr(type(obj), name))
            if want != got:
                conflicts.append(f"{name}: {got} where the protocol has {want}")
    return conflicts


def _parameters(function: Any) -> list[tuple[str, Any, Any]]:
    """Each parameter after ``self`` (name, kind, type), then the return type."""
    hints = typing.get_type_hints(function)
    params = list(inspect.signature(function).parameters.values())[1:]
    return [(p.name, p.kind, hints.get(p.name)) for p in params] + [("return", None, hints.get("return"))]


def word_tokenizer() -> HFTokenizer:
    from tokenizers import Tokenizer, models, pre_tokenizers

    backend = Tokenizer(models.WordLevel(vocab={"[UNK]": 0, "hello": 1, "world": 2}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return HFTokenizer(name="words", backend=backend)


@pytest.mark.parametrize("make", [builtin_tokenizer, word_tokenizer], ids=["builtin", "hf"])
def test_builtin_tokenizers_satisfy_the_protocol(make: Any) -> None:
    assert [] == protocol_conflicts(aiperf.Tokenizer, make())


def test_the_structural_check_finds_a_mismatch() -> None:
    """The check above can fail: a settable ``name``, a missing method, another signature."""

    class Settable(typing.Protocol):
        name: str

        def count(self, text: str) -> int: ...

        def decode(self, ids: Sequence[int]) -> str: ...

        def split(self, text: str) -> list[str]: ...

    class Changed(typing.Protocol):
        def encode(self, text: str, extra: bool) -> list[int]: ...

    tokenizer = builtin_tokenizer()
    assert [
        "name: read-only, but the protocol lets callers set it",
        "split: missing",
    ] == protocol_conflicts(Settable, tokenizer)
    assert ["encode"] == [c.split(":")[0] for c in protocol_conflicts(Changed, tokenizer)]


def _exports_and_typed_names() -> tuple[dict[str, str], set[tuple[str, str]], set[str]]:
    """``_EXPORTS`` of aiperf/__init__.py; the (module, name) pairs its ``TYPE_CHECKING``
    block re-exports as ``name as name``; and the modules it star-imports."""
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    exports: dict[str, str] = {}
    typed: set[tuple[str, str]] = set()
    starred: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["_EXPORTS"]:
            exports = ast.literal_eval(node.value)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom), ast.unparse(stmt)
                for alias in stmt.names:
                    if alias.name == "*":
                        starred.add(str(stmt.module))
                    elif alias.asname == alias.name:  # "X as X" re-exports X under --strict
                        typed.add((str(stmt.module), alias.name))
    return exports, typed, starred


def test_every_export_is_visible_to_type_checkers() -> None:
    """A name added to ``_EXPORTS`` alone loads at run time, but a type checker sees only
    ``Any`` (through the module's ``__getattr__``), or, under ``--strict``, an error."""
    exports, typed, starred = _exports_and_typed_names()
    assert len(exports) > 40
    missing = sorted(
        f"{module}.{name}"
        for name, module in exports.items()
        if (module, name) not in typed and module not in starred
    )
    assert [] == missing
    unexported = sorted(f"{module}.{name}" for module, name in typed if exports.get(name) != module)
    assert [] == unexported
    for module in starred:  # a star import brings in only what the module defines
        wanted = [name for name, home in exports.items() if home == module]
        assert wanted and all(hasattr(importlib.import_module(module), name) for name in wanted)
