"""Hook implementations of aiperf-otel. Imports nothing heavy: `aiperf --help` loads this module."""

from __future__ import annotations
