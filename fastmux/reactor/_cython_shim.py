"""What ``loop.py`` uses of the ``cython`` module when Cython is not installed.

``loop.py`` runs as plain Python and is also compiled by Cython (as
``fastmux.reactor._loop_c``); its few ``if cython.compiled:`` branches are
resolved at compile time there, and are simply false here.
"""
compiled = False
