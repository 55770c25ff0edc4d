"""Every registered endpoint type names its ``gen_ai.operation.name`` and the provider its API
shape implies, and docs/endpoints.md's table says the same."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiperf import infer_provider
from aiperf._plugins import Plugins

DOC = Path(__file__).resolve().parents[2] / "docs" / "endpoints.md"

#: name -> (gen_ai.operation.name, provider implied; None: the URL's host decides).
EXPECTED = {
    "chat": ("chat", None),
    "completions": ("text_completion", None),
    "embeddings": ("embeddings", None),
    "responses": ("chat", "openai"),
    "messages": ("chat", "anthropic"),
    "huggingface-generate": ("text_completion", None),
    "nim-rankings": ("rerank", None),
    "cohere-rankings": ("rerank", "cohere"),
    "hf-tei-rankings": ("rerank", None),
    "image-generation": ("generate_content", None),
    "nim-embeddings": ("embeddings", None),
    "template": ("chat", None),
}
#: the GenAI semantic conventions' operation names, and aiperf's one addition (reranking has
#: none in the conventions).
OPERATIONS = {
    "chat", "create_agent", "embeddings", "execute_tool", "generate_content", "invoke_agent",
    "text_completion", "rerank",
}  # fmt: skip

REGISTERED = Plugins.load(entry_points=False).endpoints()


def _doc_table() -> dict[str, tuple[str, str | None]]:
    """The table of docs/endpoints.md: type -> (operation, provider or None)."""
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not cells[0].startswith("`") or cells[0] == "`--endpoint-type`":
            continue
        name = cells[0].strip("`")
        operation = cells[3].strip("`")
        provider = re.fullmatch(r"`([^`]+)`", cells[4])
        rows[name] = (operation, provider.group(1) if provider else None)
    return rows


def test_every_registered_type_is_expected_and_documented() -> None:
    """No type is registered without its labels here and a row in the docs, nor the reverse."""
    assert set(EXPECTED) == set(REGISTERED) == set(_doc_table())


@pytest.mark.parametrize("name", sorted(REGISTERED))
def test_operation_and_provider(name: str) -> None:
    """The type's labels are the expected ones, a known operation, and the docs' row."""
    endpoint = REGISTERED[name]
    assert name in EXPECTED, f"{name} is registered but has no expected labels"
    assert EXPECTED[name] == (endpoint.operation_name, endpoint.provider)
    assert endpoint.operation_name in OPERATIONS
    assert EXPECTED[name] == _doc_table()[name]
    # a server on loopback: the provider is the one implied, else _OTHER
    assert (endpoint.provider or "_OTHER") == infer_provider("http://127.0.0.1:8000", None, endpoint.provider)
