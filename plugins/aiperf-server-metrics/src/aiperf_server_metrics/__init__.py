"""What the inference server itself reported during an aiperf run (Prometheus /metrics)."""
