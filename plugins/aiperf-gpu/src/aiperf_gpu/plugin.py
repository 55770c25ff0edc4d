"""Hook implementations of aiperf-gpu. Imports nothing heavy: `aiperf --help` loads this module."""

from __future__ import annotations
