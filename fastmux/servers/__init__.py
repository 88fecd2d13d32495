"""The socket tutorial's servers, made real: echo, udp-echo, menu, upload.

Each kind is a small module (``echo.py``, ``udp_echo.py``, ``menu.py``,
``upload.py``) holding asyncio-shaped protocols that run on
``fastmux.Reactor`` (the CLI's loop) and on asyncio (the tests check both).
``cli.py`` is ``fastmux serve``, ``supervisor.py`` its ``--workers``
pre-fork parent, ``shutdown.py`` the graceful shutdown, ``send.py`` and
``client.py`` the ``fastmux send`` / ``fastmux client`` commands.
"""
