"""The progress line is a live sink of the built-in plugin: drawn from Progress events only,
cheap enough to stay in the measuring process, and dropped like any plugin's sink."""

from __future__ import annotations

import io

import trio
from aiperf import hookimpl
from aiperf._config import build_config
from aiperf._plugins import Plugins
from aiperf._types import Phase, Progress, RunStatus
from aiperf.builtin.progress import ProgressLine


def _progress(**changes: object) -> Progress:
    values: dict[str, object] = dict(
        phase=Phase.PROFILE, sent=9, completed=6, failed=1, in_flight=2, elapsed_s=3.0,
        ok_rate=2.5, total=12,
    )
    values.update(changes)
    return Progress(**values)  # type: ignore[arg-type]


def test_the_line_as_it_is_drawn() -> None:
    stream = io.StringIO()
    ProgressLine(stream).draw(_progress())
    assert "\r[profile] 7/12 requests      2.5 req/s  1 errors  2 in flight     3.0 s " == stream.getvalue()
    stream = io.StringIO()
    ProgressLine(stream).draw(_progress(phase=Phase.WARMUP, total=None, ok_rate=0.0))
    assert "\r[warmup] 7 requests      0.0 req/s  1 errors  2 in flight     3.0 s " == stream.getvalue()


async def test_the_final_counts_are_not_drawn_and_close_clears_the_line() -> None:
    stream = io.StringIO()
    sink = ProgressLine(stream)
    send, receive = trio.open_memory_channel[Progress](10)
    send.send_nowait(_progress(elapsed_s=1.0))
    send.send_nowait(_progress(elapsed_s=2.0, final=True))
    send.close()
    await sink.run(receive)
    await sink.close(RunStatus.FINISHED)
    assert stream.getvalue().endswith("     1.0 s \r\x1b[K")
    assert 1 == stream.getvalue().count("[profile]")


def test_the_builtin_plugin_returns_it_with_progress_on() -> None:
    plugins = Plugins.load(entry_points=False)
    [sink] = plugins.live_sinks(build_config({"model": "m", "progress": True}), None)  # type: ignore[arg-type]
    assert isinstance(sink, ProgressLine) and sink.in_process and (Progress,) == sink.events
    assert [] == plugins.live_sinks(build_config({"model": "m", "progress": False}), None)  # type: ignore[arg-type]


def test_a_wrapper_drops_it_by_name() -> None:
    class NoProgress:
        @hookimpl(wrapper=True)
        def aiperf_live_sinks(self, config, run):
            groups = yield
            return [[s for s in group or () if s.name != "progress"] for group in groups]

    plugins = Plugins.load(entry_points=False, extra=[("quiet", NoProgress())])
    assert [] == plugins.live_sinks(build_config({"model": "m", "progress": True}), None)  # type: ignore[arg-type]
