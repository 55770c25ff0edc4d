"""Endpoint types beyond the OpenAI-compatible three: one module per API shape.

Each module defines one or more :class:`aiperf.EndpointType` values; the built-in plugin
registers them through ``aiperf_register_endpoints`` like any third-party endpoint.
"""
