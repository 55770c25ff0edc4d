"""Live OpenTelemetry metrics and spans for aiperf."""
