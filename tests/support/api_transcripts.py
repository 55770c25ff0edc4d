"""Read the recorded answers of the other API shapes (``tests/data/transcripts/apis``) as
the JSON documents a parser gets: the ``data`` of each SSE event, or the one body."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from support.replay_server import Transcript

API_TRANSCRIPTS = Path(__file__).resolve().parents[1] / "data" / "transcripts" / "apis"


def load(name: str) -> Transcript:
    return Transcript.load(API_TRANSCRIPTS / f"{name}.http")


def event_data(transcript: Transcript) -> list[Any]:
    """The decoded ``data`` of every event that has one, in order (comments skipped)."""
    out = []
    for event in transcript.events:
        lines = event.decode("utf-8").replace("\r\n", "\n").split("\n")
        data = [line[5:].removeprefix(" ") for line in lines if line.startswith("data:")]
        if data:
            out.append(json.loads("\n".join(data)))
    return out


def body(transcript: Transcript) -> Any:
    return json.loads(transcript.body)


def feed(parse: Any, events: list[Any]) -> tuple[str, str, list[Any]]:
    """Run one stream's events through a parser: (text, reasoning, every ResponseData)."""
    results = [parse(event) for event in events]
    return "".join(r.text for r in results), "".join(r.reasoning for r in results), results
