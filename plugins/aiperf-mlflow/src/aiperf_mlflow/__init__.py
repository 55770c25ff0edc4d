"""Live MLflow logging and artifact upload for aiperf."""
