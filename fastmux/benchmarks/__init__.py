"""Benchmarks behind ``fastmux bench`` (each module is one sub-command) and
``load``, the load tools they run.  The servers and the reactor never import
this package; only the CLI's ``bench`` command does, when it runs."""
