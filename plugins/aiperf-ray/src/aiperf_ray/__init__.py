"""Run aiperf's load processes as Ray actors spread over a Ray cluster's nodes."""
