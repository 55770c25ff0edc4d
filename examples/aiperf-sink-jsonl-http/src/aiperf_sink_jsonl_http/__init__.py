"""An aiperf live sink that posts every finished request as a JSON line to a URL."""
