"""examples/aiperf-sink-jsonl-http, the walk-through of docs/plugins.md: built and installed
with pip, found through its entry point, used by a real run, and its own tests green."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from aiperf.testing import LoopbackServer

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "aiperf-sink-jsonl-http"
DOC = REPO / "docs" / "plugins.md"

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example installed as pip installs it (a wheel built by its own backend), in a folder
    of its own to put on PYTHONPATH. A copy is built, so that no build output lands in the
    checkout."""
    work = tmp_path_factory.mktemp("example")
    source = work / "aiperf-sink-jsonl-http"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    target = work / "site"
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(source)]
    if importlib.util.find_spec("hatchling") is not None:
        # the build backend is here already: nothing to fetch
        command.insert(4, "--no-build-isolation")
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert 0 == result.returncode, f"pip install failed:\n{result.stdout}\n{result.stderr}"
    return target


def _env(site: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}


def test_installed_with_its_entry_point(site: Path) -> None:
    [info] = site.glob("aiperf_sink_jsonl_http-*.dist-info")
    assert "[aiperf]\nsink-jsonl-http = aiperf_sink_jsonl_http.plugin" in (info / "entry_points.txt").read_text()
    assert not (site / "aiperf").exists(), "aiperf itself must not be installed with --no-deps"


def test_listed_by_aiperf_plugins(aiperf_cli, site: Path) -> None:
    result = aiperf_cli("plugins", env=_env(site))
    assert 0 == result.returncode, result.stderr
    assert "sink-jsonl-http  aiperf-sink-jsonl-http 0.1.0" in result.stdout
    for hook in ("aiperf_add_options", "aiperf_configure", "aiperf_live_sinks"):
        assert f"    {hook}" in result.stdout


def test_a_run_posts_one_json_line_per_request(aiperf_cli, site: Path, mock_server, tmp_path: Path) -> None:
    """The flag the plugin adds turns its sink on; the receiving server gets every request of
    the run once, the same requests as profile_export.jsonl."""
    with LoopbackServer() as receiver:
        result = aiperf_cli(
            "profile", "--url", mock_server.url, "-m", "mock-model", "--request-count", "9",
            "--warmup-request-count", "2", "--streaming",
            "--artifact-dir", str(tmp_path / "run"), "--jsonl-http-url", receiver.url + "/ingest",
            env=_env(site),
        )  # fmt: skip
        assert 0 == result.returncode, result.stderr
        posted = receiver.requests()
    assert posted and {"/ingest"} == {r.path for r in posted}
    assert {"application/x-ndjson"} == {r.headers["content-type"] for r in posted}
    lines = [json.loads(line) for request in posted for line in request.lines()]
    assert ["warmup"] * 2 + ["profile"] * 9 == [line["phase"] for line in lines]
    exported = [json.loads(line) for line in (tmp_path / "run" / "profile_export.jsonl").read_text().splitlines()]
    assert sorted((e["request_index"], e["phase"], e["start_time_ns"]) for e in exported) == sorted(
        (line["index"], line["phase"], line["start_ns"]) for line in lines
    )
    for line, e in zip(sorted(lines, key=lambda x: x["index"]), sorted(exported, key=lambda x: x["request_index"])):
        assert line["metrics"]["time_to_first_token"] / 1e6 == pytest.approx(e["metrics"]["time_to_first_token"])
    assert all(line["ok"] and line["end_ns"] > line["start_ns"] for line in lines)
    assert "jsonl-http" not in result.stderr  # nothing lost, nothing reported


def test_a_bad_url_is_one_line(aiperf_cli, site: Path, mock_server, tmp_path: Path) -> None:
    result = aiperf_cli(
        "profile", "--url", mock_server.url, "-m", "mock-model", "--request-count", "1",
        "--artifact-dir", str(tmp_path / "run"), "--jsonl-http-url", "collector:8080",
        env=_env(site),
    )  # fmt: skip
    assert 2 == result.returncode
    assert "aiperf: error: --jsonl-http-url: expected an http:// or https:// URL" == result.stderr.strip()


def test_its_own_tests_pass_against_the_installed_copy(site: Path, tmp_path: Path) -> None:
    """The example's tests (the walk-through's last step) import the installed package."""
    tests = tmp_path / "tests"
    shutil.copytree(EXAMPLE / "tests", tests, ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(tests)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, **_env(site)},
    )  # fmt: skip
    assert 0 == result.returncode, result.stdout + result.stderr
    assert re.search(r"\b5 passed\b", result.stdout), result.stdout


def test_the_walk_through_shows_the_examples_files() -> None:
    """Every file docs/plugins.md shows under a `# examples/aiperf-sink-jsonl-http/...` first
    line is that file, whole; and every file of the example is shown."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", DOC.read_text(), flags=re.S)
    shown = {}
    for block in blocks:
        first, _, rest = block.partition("\n")
        name = re.fullmatch(r"# examples/aiperf-sink-jsonl-http/(\S+)", first.strip())
        if name:
            shown[name.group(1)] = rest
    files = sorted(
        str(p.relative_to(EXAMPLE))
        for p in EXAMPLE.rglob("*")
        if p.is_file() and p.suffix in {".py", ".toml"} and "__pycache__" not in p.parts
    )
    assert files == sorted(shown)
    for name in files:
        assert (EXAMPLE / name).read_text() == shown[name], f"docs/plugins.md shows another {name}"
