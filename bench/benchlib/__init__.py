"""The pieces of aiperf's own benchmark suite (``bench/run.py``, ``nox -s bench``)."""
