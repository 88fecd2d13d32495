"""The shared test helpers' own guarantees: a server that runs another
fastmux than the tests fails the test that started it."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import fastmux
from support.server import Server, check_identity, expected_identity


def test_a_server_importing_another_fastmux_fails_its_test(tmp_path: Path) -> None:
    shutil.copytree(Path(fastmux.__file__).parent, tmp_path / "fastmux",
                    ignore=shutil.ignore_patterns("__pycache__", "*.c"))
    # `python -m` puts the working directory first on sys.path: the copy wins
    with pytest.raises(AssertionError, match="another fastmux") as err:
        Server("echo", env={"PYTHONPATH": str(tmp_path)}, cwd=str(tmp_path))
    assert str(tmp_path / "fastmux") in str(err.value)


def test_a_server_on_other_implementations_fails_its_test() -> None:
    version, where, core, reactor, http = expected_identity("echo", dict(os.environ), False)
    line = f"echo serving on 127.0.0.1:1 (fastmux epoll), pid 1, fastmux {version} from {where} (core {{}}, reactor {reactor}, http -)"
    check_identity("echo", dict(os.environ), line.format(core))
    with pytest.raises(AssertionError, match="another fastmux"):
        check_identity("echo", dict(os.environ), line.format("py" if core == "c" else "c"))
    with pytest.raises(AssertionError, match="did not log"):
        check_identity("echo", dict(os.environ), "echo serving on 127.0.0.1:1")
