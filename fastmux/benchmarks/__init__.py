"""Benchmarks behind ``fastmux bench``: each module is one sub-command."""
