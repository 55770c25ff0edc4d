"""A finished request's bookkeeping waits until its slot's next request has left."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path


def test_next_request_leaves_before_the_previous_one_is_booked(mock_server, tmp_path: Path) -> None:
    """At concurrency 1, request i is booked (metrics, JSONL, statistics) only once request
    i + 1 was sent: the bookkeeping never sits between a response and the next request."""
    script = textwrap.dedent(
        f"""
        import json
        from aiperf import _engine
        from aiperf.cli import main

        seen = []
        accept = _engine.Engine.accept

        def watching(self, record, metrics):
            seen.append([record.index, self.sent])
            accept(self, record, metrics)

        _engine.Engine.accept = watching
        code = main(["profile", "--url", {mock_server.url!r}, "--model", "m", "--streaming",
                     "--request-count", "30", "--concurrency", "1", "--no-progress",
                     "--workers", "1", "--artifact-dir", "run"])
        print(json.dumps({{"code": code, "seen": seen}}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] == 0
    seen = result["seen"]
    # Every request is booked once, in the order they finished.
    assert [index for index, _ in seen] == list(range(30))
    # When request i was booked, request i + 1 (the (i + 2)-th sent) had already left.
    assert all(sent >= index + 2 for index, sent in seen[:-1]), seen
    lines = (tmp_path / "run" / "profile_export.jsonl").read_text().splitlines()
    assert [json.loads(line)["request_index"] for line in lines] == list(range(30))
