"""The built-in plugin: endpoints, load strategies, datasets, processors and exporters that ship
with aiperf, registered through the same hooks a third-party plugin uses."""

from __future__ import annotations
