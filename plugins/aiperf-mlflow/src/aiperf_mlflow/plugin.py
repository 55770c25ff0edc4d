"""Hook implementations of aiperf-mlflow. Imports nothing heavy: `aiperf --help` loads this module."""

from __future__ import annotations
