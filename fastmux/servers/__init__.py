"""The socket tutorial's servers, made real: echo, udp-echo, menu, upload.

Each kind is a small module (``echo.py``, ``udp_echo.py``, ``menu.py``,
``upload.py``) holding asyncio-shaped protocols that run on
``fastmux.Reactor`` (the CLI's loop) and on asyncio (the tests check both).
``kinds.py`` lists them, ``serving.py`` runs one in a process (bind, loop,
factory, graceful shutdown in ``shutdown.py``), ``supervisor.py`` is the
``--workers`` pre-fork parent; ``cli.py`` (``fastmux serve``), ``send.py``
and ``client.py`` are the commands, which nothing else here imports.
"""
