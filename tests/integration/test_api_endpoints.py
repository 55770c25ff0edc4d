"""Every endpoint type against the mock server, its numbers against the mock's own truth.

The mock speaks each API (streamed where the API streams) on the same schedule as chat: the
first content event ``ttft`` after the request, then one every ``itl``. ``/stats`` says when it
wrote each one; aiperf's TTFT, ITL and latency must agree within the tolerances of
``test_accuracy.py`` (two loopback hops and event-loop wake-ups).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest
from aiperf.testing import MockServer

pytestmark = pytest.mark.integration

TTFT_MS = 40.0
ITL_MS = 8.0
COUNT = 12
OSL = 12


@pytest.fixture(scope="module")
def timed_server():
    with MockServer(ttft_ms=TTFT_MS, itl_ms=ITL_MS) as server:
        yield server


def profile(aiperf_cli, server: MockServer, run_dir: Path, endpoint_type: str, *extra: str) -> dict[str, Any]:
    server.reset_stats()
    result = aiperf_cli(
        "profile", "--url", server.url, "-m", "mock-model", "--endpoint-type", endpoint_type,
        "--isl", "32", "--osl", str(OSL), "--concurrency", "2", "--request-count", str(COUNT),
        "--artifact-dir", str(run_dir), "--random-seed", "7", "--no-progress", *extra,
    )  # fmt: skip
    assert 0 == result.returncode, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads((run_dir / "profile_export_aiperf.json").read_text())


def records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "profile_export.jsonl").read_text().splitlines()]


STREAMED = {
    "responses": (),
    "messages": (),
    "huggingface-generate": (),
}


@pytest.mark.parametrize("endpoint_type", sorted(STREAMED))
def test_streamed_timing_agrees_with_server_truth(aiperf_cli, timed_server, tmp_path, endpoint_type) -> None:
    """TTFT and ITL of each streamed API match what the mock wrote, and every token counts."""
    summary = profile(aiperf_cli, timed_server, tmp_path, endpoint_type, "--streaming", *STREAMED[endpoint_type])
    truth = timed_server.stats()
    metrics = summary["metrics"]
    assert COUNT == metrics["request_count"]["avg"] == truth["requests"]["ok"]
    assert {endpoint_type_route(endpoint_type, True): COUNT} == truth["requests"]["by_endpoint"]
    assert abs(metrics["time_to_first_token"]["p50"] - truth["ttft_ms"]["p50"]) < 1.0
    assert abs(metrics["inter_token_latency"]["p50"] - truth["chunk_gap_ms"]["avg"]) < 0.5
    assert abs(metrics["request_latency"]["p50"] - truth["request_latency_ms"]["p50"]) < 1.0
    assert OSL == metrics["output_sequence_length"]["avg"]


@pytest.mark.parametrize("endpoint_type", sorted(STREAMED))
def test_unstreamed_latency_agrees_with_server_truth(aiperf_cli, timed_server, tmp_path, endpoint_type) -> None:
    """Without streaming, the request latency is the server's time to the whole body."""
    summary = profile(aiperf_cli, timed_server, tmp_path, endpoint_type, *STREAMED[endpoint_type])
    truth = timed_server.stats()
    metrics = summary["metrics"]
    assert COUNT == metrics["request_count"]["avg"] == truth["requests"]["ok"]
    assert {endpoint_type_route(endpoint_type, False): COUNT} == truth["requests"]["by_endpoint"]
    assert abs(metrics["request_latency"]["p50"] - truth["request_latency_ms"]["p50"]) < 1.0
    assert OSL == metrics["output_sequence_length"]["avg"]


def endpoint_type_route(endpoint_type: str, streaming: bool) -> str:
    """The mock's name for the route each type uses."""
    if endpoint_type == "huggingface-generate":
        return "generate_stream" if streaming else "generate"
    return endpoint_type


REASONING = {
    "chat": ("--extra-inputs", "mock_reasoning_tokens:4"),
    "responses": ("--extra-inputs", "mock_reasoning_tokens:4"),
    "messages": ("--extra-inputs", '{"thinking": {"type": "enabled", "budget_tokens": 4}}'),
}


@pytest.mark.parametrize("endpoint_type", sorted(REASONING))
def test_reasoning_counted_apart(aiperf_cli, timed_server, tmp_path, endpoint_type) -> None:
    """Reasoning tokens are counted apart; time to first output token is the first answer
    chunk's, as the server wrote it (4 reasoning chunks after the first)."""
    summary = profile(aiperf_cli, timed_server, tmp_path, endpoint_type, "--streaming", *REASONING[endpoint_type])
    raw = timed_server.stats(raw=True)["raw"]["requests"]
    metrics = summary["metrics"]
    assert 4 == metrics["reasoning_token_count"]["avg"]
    assert 4 * COUNT == summary["metrics"]["total_reasoning_tokens"]["avg"]
    # the server's truth: its write of the 5th content chunk, from the request's arrival
    ttfo_truth = statistics.median(r["ttft_ms"] + sum(r["chunk_gaps_ms"][:4]) for r in raw)
    assert abs(metrics["time_to_first_output_token"]["p50"] - ttfo_truth) < 1.0
    assert abs(metrics["time_to_first_reasoning_token"]["p50"] - metrics["time_to_first_token"]["p50"]) < 1e-6
    assert metrics["time_to_first_output_token"]["p50"] - metrics["time_to_first_token"]["p50"] > 3 * ITL_MS


@pytest.mark.parametrize("streaming", [True, False], ids=["streamed", "whole"])
def test_chat_usage_reasoning_tokens_recorded(aiperf_cli, timed_server, tmp_path, streaming) -> None:
    """With --use-server-token-count, chat's usage.completion_tokens_details.reasoning_tokens
    (as the mock sends it, OpenAI's shape) is each record's usage.reasoning_tokens and its
    reasoning_token_count; the tokenizer's count of the reasoning text agrees."""
    flags = ("--streaming",) if streaming else ()
    summary = profile(
        aiperf_cli, timed_server, tmp_path, "chat", *flags, "--use-server-token-count",
        "--extra-inputs", "mock_reasoning_tokens:5",
    )  # fmt: skip
    truth = truth_raw(timed_server)["requests"]
    assert [5] * COUNT == [r["reasoning_tokens"] for r in truth]
    lines = records(tmp_path)
    assert COUNT == len(lines)
    for line in lines:
        assert line["error"] is None
        assert "server" == line["token_source"]
        assert {"prompt_tokens": 32, "completion_tokens": OSL, "reasoning_tokens": 5} == line["usage"]
        assert 5 == line["client_tokens"]["reasoning"]
        assert 5 == line["metrics"]["reasoning_token_count"]
    assert 5 * COUNT == summary["metrics"]["total_reasoning_tokens"]["avg"]


ONE_SHOT = {
    "nim-rankings": ("--rankings-passages-mean", "7"),
    "cohere-rankings": ("--rankings-passages-mean", "7"),
    "hf-tei-rankings": ("--rankings-passages-mean", "7"),
    "image-generation": ("--extra-inputs", "n:2"),
    "nim-embeddings": (),
}


@pytest.mark.parametrize("endpoint_type", sorted(ONE_SHOT))
def test_one_shot_latency_agrees_with_server_truth(aiperf_cli, timed_server, tmp_path, endpoint_type) -> None:
    """Rerankers (and image generation) answer once: latency is the server's time to the body."""
    summary = profile(aiperf_cli, timed_server, tmp_path, endpoint_type, *ONE_SHOT[endpoint_type])
    truth = timed_server.stats()
    metrics = summary["metrics"]
    assert COUNT == metrics["request_count"]["avg"] == truth["requests"]["ok"]
    route = "embeddings" if endpoint_type == "nim-embeddings" else endpoint_type
    assert {route: COUNT} == truth["requests"]["by_endpoint"]
    assert abs(metrics["request_latency"]["p50"] - truth["request_latency_ms"]["p50"]) < 1.0
    assert "time_to_first_token" not in metrics
    if endpoint_type == "nim-embeddings":
        assert 32 == metrics["input_sequence_length"]["avg"]
    elif endpoint_type.endswith("rankings"):
        assert 7 == metrics["ranked_passages"]["avg"]
        expected = 7 / (metrics["request_latency"]["avg"] / 1e3)
        assert abs(metrics["passage_throughput"]["avg"] - expected) / expected < 0.05
    else:
        from aiperf._mock.apis import MOCK_PNG

        assert 2 == metrics["num_images"]["avg"]
        assert 2 * len(MOCK_PNG) == metrics["output_image_bytes"]["avg"]
        assert abs(metrics["image_latency"]["avg"] - metrics["request_latency"]["avg"] / 2) < 0.01
        # images per second, against the server's own time to each body: the latency the
        # throughput implies (2 images / rate) is the server's within the latency tolerance
        served = sorted(truth_raw(timed_server)["request_latency_ms"])
        rates = sorted(2 / (ms / 1e3) for ms in served)
        assert abs(2e3 / metrics["image_throughput"]["p50"] - truth["request_latency_ms"]["p50"]) < 1.0
        assert abs(metrics["image_throughput"]["min"] - rates[0]) / rates[0] < 0.05
        assert abs(metrics["image_throughput"]["max"] - rates[-1]) / rates[-1] < 0.05
        for line in records(tmp_path):
            values = line["metrics"]
            assert values["image_throughput"] == pytest.approx(values["num_images"] / (values["request_latency"] / 1e3))


def truth_raw(server: MockServer) -> dict[str, Any]:
    """Every sample the mock measured in the current window."""
    return server.stats(raw=True)["raw"]


def test_template_streams_like_chat(aiperf_cli, timed_server, tmp_path) -> None:
    """A user's template of the chat API measures what the chat type measures."""
    body = tmp_path / "template.json"
    body.write_text(json.dumps({
        "model": "{model}", "messages": [{"role": "user", "content": "{prompt}"}],
        "max_tokens": "{max_tokens}", "stream": True,
    }))  # fmt: skip
    summary = profile(
        aiperf_cli, timed_server, tmp_path / "run", "template", "--streaming",
        "--payload-template", str(body), "--response-text-path", "choices[0].delta.content",
    )  # fmt: skip
    truth = timed_server.stats()
    metrics = summary["metrics"]
    assert COUNT == metrics["request_count"]["avg"] == truth["requests"]["ok"]
    assert abs(metrics["time_to_first_token"]["p50"] - truth["ttft_ms"]["p50"]) < 1.0
    assert abs(metrics["inter_token_latency"]["p50"] - truth["chunk_gap_ms"]["avg"]) < 0.5
    assert abs(metrics["request_latency"]["p50"] - truth["request_latency_ms"]["p50"]) < 1.0
    assert abs(metrics["request_latency"]["max"] - truth["request_latency_ms"]["max"]) < 1.0
    assert OSL == metrics["output_sequence_length"]["avg"]


def test_template_unstreamed_latency_agrees_with_server_truth(aiperf_cli, timed_server, tmp_path) -> None:
    """A template of the whole (non-streamed) chat answer: the latency is the server's."""
    body = tmp_path / "template.json"
    body.write_text(json.dumps({
        "model": "{model}", "messages": [{"role": "user", "content": "{prompt}"}], "max_tokens": "{max_tokens}",
    }))  # fmt: skip
    summary = profile(
        aiperf_cli, timed_server, tmp_path / "run", "template",
        "--payload-template", str(body), "--response-text-path", "choices.0.message.content",
    )  # fmt: skip
    truth = timed_server.stats()
    metrics = summary["metrics"]
    assert COUNT == metrics["request_count"]["avg"] == truth["requests"]["ok"]
    assert {"chat": COUNT} == truth["requests"]["by_endpoint"]
    assert abs(metrics["request_latency"]["p50"] - truth["request_latency_ms"]["p50"]) < 1.0
    assert OSL == metrics["output_sequence_length"]["avg"]


def test_template_without_its_flags_exits_2(aiperf_cli, timed_server, tmp_path) -> None:
    """--endpoint-type template alone: one line, exit 2, no traceback."""
    result = aiperf_cli("profile", "--url", timed_server.url, "-m", "m", "--endpoint-type", "template")
    assert 2 == result.returncode
    assert "--payload-template" in result.stderr
    assert "Traceback" not in result.stderr


MEDIA = {
    "chat": ("--audio-length-mean", "0.2"),
    "responses": (),
    "messages": (),
}


@pytest.mark.parametrize("endpoint_type", sorted(MEDIA))
def test_images_and_audio_sent_and_recorded(aiperf_cli, timed_server, tmp_path, endpoint_type) -> None:
    """Images (and audio, for chat) ride with each prompt; their sizes are in the JSONL and the
    summary."""
    run_dir = tmp_path / "run"
    summary = profile(
        aiperf_cli, timed_server, run_dir, endpoint_type, "--streaming",
        "--image-width-mean", "64", "--image-height-mean", "32", "--images-per-request", "2",
        "--image-format", "jpeg", *MEDIA[endpoint_type],
    )  # fmt: skip
    assert COUNT == timed_server.stats()["requests"]["ok"]
    metrics = summary["metrics"]
    assert 2 == metrics["input_image_count"]["avg"]
    payloads = json.loads((run_dir / "inputs.json").read_text())["payloads"]
    for line in records(run_dir):
        assert line["metrics"]["input_image_bytes"] > 0
    if endpoint_type == "chat":
        assert 0.2 == pytest.approx(metrics["input_audio_seconds"]["avg"])
        for line in records(run_dir):
            assert line["metrics"]["input_audio_bytes"] > 6400  # 0.2 s of 16-bit 16 kHz
    else:
        assert "input_audio_bytes" not in metrics
    if endpoint_type == "messages":
        assert '"media_type":"image/jpeg"' in json.dumps(payloads[0], separators=(",", ":"))
    else:
        assert "data:image/jpeg;base64," in json.dumps(payloads[0])


@pytest.mark.parametrize("endpoint_type", ["responses", "messages"])
def test_audio_refused_where_the_api_takes_none(aiperf_cli, timed_server, tmp_path, endpoint_type) -> None:
    """--audio-length-mean with an API that has no audio input: one line, exit 2, no request."""
    timed_server.reset_stats()
    result = aiperf_cli(
        "profile", "--url", timed_server.url, "-m", "m", "--endpoint-type", endpoint_type,
        "--audio-length-mean", "0.5", "--request-count", "2", "--artifact-dir", str(tmp_path / "run"),
    )  # fmt: skip
    assert 2 == result.returncode
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "takes no audio input" in line]
    assert 1 == len(errors), result.stderr
    assert "--audio-length-mean" in errors[0] and "--endpoint-type chat" in errors[0]
    assert 0 == timed_server.stats()["requests"]["ok"]


_RECORD_MEDIA_CALLS = '''
import os, sys, time
from aiperf._apis import media

log = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND)


def recorded(name, make):
    def wrapper(*args, **kwargs):
        out = make(*args, **kwargs)
        os.write(log, f"{name} {time.time_ns()}\\n".encode())
        return out
    return wrapper


for name in ("png", "jpeg", "wav"):
    setattr(media, name, recorded(name, getattr(media, name)))
from aiperf.cli import main

sys.exit(main(sys.argv[2:]))
'''


def test_media_made_before_the_first_request(timed_server, tmp_path) -> None:
    """Every image and clip is encoded before the first request starts: none is made while
    the load runs (each encoder's return time, against the JSONL's start times)."""
    import subprocess
    import sys

    script = tmp_path / "record_media.py"
    script.write_text(_RECORD_MEDIA_CALLS)
    calls = tmp_path / "calls.txt"
    run_dir = tmp_path / "run"
    timed_server.reset_stats()
    result = subprocess.run(
        [sys.executable, str(script), str(calls), "profile", "--url", timed_server.url, "-m", "m",
         "--endpoint-type", "chat", "--streaming", "--isl", "16", "--osl", "4", "--concurrency", "2",
         "--request-count", str(COUNT), "--num-prompts", "5", "--image-width-mean", "48",
         "--image-height-mean", "24", "--images-per-request", "2", "--audio-length-mean", "0.1",
         "--artifact-dir", str(run_dir), "--no-progress", "--random-seed", "3"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert 0 == result.returncode, result.stderr
    made = [line.split() for line in calls.read_text().splitlines()]
    # 5 prompts in the pool, each with two images and one clip, made once
    assert {"png": 10, "wav": 5} == {kind: sum(1 for k, _ in made if k == kind) for kind in ("png", "wav")}
    starts = [line["start_time_ns"] for line in records(run_dir)]
    assert COUNT == len(starts)
    assert max(int(t) for _, t in made) < min(starts)


def _media_dataset(folder: Path) -> dict[str, bytes]:
    """Files and a prompts.jsonl naming them: an image and a clip, two images (one a URL), none."""
    import random

    from aiperf._apis import media

    files = {
        "cat.png": media.png(40, 30, random.Random(1)),
        "photo.jpg": media.jpeg(24, 16, random.Random(2)),
        "clip.wav": media.wav(0.3, random.Random(3)),
    }
    (folder / "media").mkdir(parents=True)
    for name, data in files.items():
        (folder / "media" / name).write_bytes(data)
    lines = [
        {"text": "describe the picture and the sound", "image": "media/cat.png", "audio": "media/clip.wav"},
        {"text": "compare the two", "image": ["media/photo.jpg", "https://example.com/dog.png"]},
        {"text": "just text"},
    ]
    (folder / "prompts.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return files


def test_images_and_audio_from_the_input_file(aiperf_cli, timed_server, tmp_path) -> None:
    """Files named in the input file go as base64 (an image URL as itself); each request's
    input sizes are the files' own, in the JSONL and the summary; the mock answers them all."""
    import base64

    files = _media_dataset(tmp_path / "data")
    run_dir = tmp_path / "run"
    timed_server.reset_stats()
    result = aiperf_cli(
        "profile", "--url", timed_server.url, "-m", "mock-model", "--endpoint-type", "chat",
        "--streaming", "--input-file", str(tmp_path / "data" / "prompts.jsonl"), "--osl", "4",
        "--concurrency", "1", "--request-count", "6", "--artifact-dir", str(run_dir), "--no-progress",
    )  # fmt: skip
    assert 0 == result.returncode, result.stderr
    assert 6 == timed_server.stats()["requests"]["ok"]
    payloads = json.loads((run_dir / "inputs.json").read_text())["payloads"]
    first, second, third = (p["messages"][0]["content"] for p in payloads[:3])
    assert {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(files["cat.png"]).decode()}} == first[1]
    assert {"type": "input_audio", "input_audio": {"data": base64.b64encode(files["clip.wav"]).decode(), "format": "wav"}} == first[2]
    assert second[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert {"type": "image_url", "image_url": {"url": "https://example.com/dog.png"}} == second[2]
    assert "just text" == third
    expected = [
        {"input_image_count": 1, "input_image_bytes": len(files["cat.png"]),
         "input_audio_bytes": len(files["clip.wav"]), "input_audio_seconds": 0.3},
        {"input_image_count": 2, "input_image_bytes": len(files["photo.jpg"])},
        {},
    ]  # fmt: skip
    lines = records(run_dir)
    assert 6 == len(lines)
    for line in lines:
        assert line["error"] is None
        shown = {k: v for k, v in line["metrics"].items() if k.startswith("input_") and k != "input_sequence_length"}
        assert expected[line["request_index"] % 3] == pytest.approx(shown)
    metrics = json.loads((run_dir / "profile_export_aiperf.json").read_text())["metrics"]
    assert 1.5 == pytest.approx(metrics["input_image_count"]["avg"])
    assert (len(files["cat.png"]) + len(files["photo.jpg"])) / 2 == pytest.approx(metrics["input_image_bytes"]["avg"])
    assert 0.3 == pytest.approx(metrics["input_audio_seconds"]["avg"])


@pytest.mark.parametrize(
    ("line", "endpoint_type", "message"),
    [
        ({"text": "x", "image": "missing.png"}, "chat", 'line 1: "image": no such file: missing.png'),
        ({"text": "x", "audio": "media/clip.wav"}, "responses", '--input-file ("image"/"audio"): the Responses API takes no audio input'),
        ({"text": "x", "image": "media/cat.png"}, "completions", '--input-file ("image"/"audio"): the completions endpoint sends no images or audio'),
    ],
)  # fmt: skip
def test_bad_media_in_the_input_file_exits_2(aiperf_cli, timed_server, tmp_path, line, endpoint_type, message) -> None:
    """A missing file, or media the endpoint cannot send: one line, exit 2, no request."""
    _media_dataset(tmp_path / "data")
    prompts = tmp_path / "data" / "bad.jsonl"
    prompts.write_text(json.dumps(line) + "\n")
    timed_server.reset_stats()
    result = aiperf_cli(
        "profile", "--url", timed_server.url, "-m", "m", "--endpoint-type", endpoint_type,
        "--input-file", str(prompts), "--request-count", "2", "--artifact-dir", str(tmp_path / "run"),
    )  # fmt: skip
    assert 2 == result.returncode
    assert "Traceback" not in result.stderr
    errors = [text for text in result.stderr.splitlines() if "error" in text]
    assert 1 == len(errors) and message in errors[0], result.stderr
    assert 0 == timed_server.stats()["requests"]["ok"]
