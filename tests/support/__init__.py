"""Helpers shared by every test suite (``pythonpath = ["tests"]`` in
pyproject.toml makes ``support`` importable from any of them, from any
working directory).

``support.net``: blocking client sockets and bounded reads.
``support.server``: ``fastmux serve KIND`` as a subprocess, which must run
the same fastmux as the tests (checked at start).
``support.procs``: the processes the test session started, so that none is
left running when it ends.
``support/nc.py``: a netcat-like client the tests own.
"""
