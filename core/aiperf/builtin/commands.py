"""The commands of the built-in plugin: ``profile``, ``plugins``, ``compare``, ``mock-server``
and ``analyze-trace``.

Building them must stay cheap (``aiperf --help`` builds every command's parser): what a
command needs to run is imported when it runs.
"""

from __future__ import annotations

import argparse

from aiperf._types import Command


def commands() -> list[Command]:
    """Every built-in command, in the order they are registered."""
    from aiperf import _compare, mock_server

    return [
        Command(
            name="profile",
            help="benchmark a server",
            description="Send real traffic to an OpenAI-compatible endpoint and report what the server did.",
            add_arguments=_profile_arguments,
            run=_profile,
        ),
        Command(
            name="plugins",
            help="list loaded plugins, their versions and hooks",
            add_arguments=_no_arguments,
            run=_plugins,
        ),
        Command(
            name="compare",
            help=_compare.HELP,
            add_arguments=_compare.add_arguments,
            run=_compare.run,
        ),
        Command(
            name="mock-server",
            help="run an OpenAI-compatible mock server that reports its own timing (/stats)",
            add_arguments=mock_server.add_arguments,
            run=mock_server.main,
        ),
        Command(
            name="analyze-trace",
            help="a trace's requests, duration, rate over time, ISL/OSL and prefix reuse",
            add_arguments=_analyze_arguments,
            run=_analyze,
        ),
    ]


def _profile_arguments(parser: argparse.ArgumentParser) -> None:
    from aiperf import cli

    cli.add_profile_arguments(parser)


def _profile(ns: argparse.Namespace) -> int:
    from aiperf import cli

    return cli.run_profile_command(ns)


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def _plugins(ns: argparse.Namespace) -> int:
    from aiperf._plugins import current, plugins_command_output

    plugins_command_output(current())
    return 0


def _analyze_arguments(parser: argparse.ArgumentParser) -> None:
    # Here, not in _trace.py: building the parser (``aiperf --help``) must not import numpy.
    from pathlib import Path

    parser.add_argument("file", type=Path, metavar="FILE", help="a mooncake_trace JSONL file")
    parser.add_argument(
        "--isl-block-size", "--block-size", dest="block_size", type=int, default=512,
        metavar="N", help="tokens per hash_ids block (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--window", type=float, default=1.0, metavar="S",
        help="length of the windows the rate is counted in, seconds (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--cache-block-sizes", default="16,64,256,512", metavar="N,N,...",
        help="block sizes of the prefix cache to give the cache-hit ratio for (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--json", type=Path, metavar="PATH",
        help="also write the figures as JSON (- prints only the JSON, on stdout)",
    )  # fmt: skip


def _analyze(ns: argparse.Namespace) -> int:
    from aiperf import _trace

    return _trace.main(ns)


