"""aiperf plot: figures from aiperf run directories."""
