"""Helpers shared by aiperf tests."""
