"""The mock server's implementation; the public face is :mod:`aiperf.mock_server`."""
