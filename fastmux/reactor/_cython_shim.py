"""What the reactor's twin modules use of the ``cython`` module when Cython is not installed.

Each twin's .py runs as plain Python and is also compiled by Cython (see
``fastmux.reactor``); its ``if cython.compiled:`` branches are resolved at
compile time there, and are simply false here.
"""
compiled = False
