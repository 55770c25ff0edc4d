"""GPU telemetry (NVML, DCGM exporter) for aiperf."""
