"""Hook implementations of aiperf-plot. Imports nothing heavy: `aiperf --help` loads this module."""

from __future__ import annotations
