"""Sub-commands whose arguments are added only when the sub-command is chosen.

``fastmux --help`` lists every command and ``fastmux serve --help`` every
kind, with their help strings, but a command's module (and what it imports)
is loaded only when that command runs: each sub-parser starts empty and its
*filler* adds the arguments once argparse has picked it.  So ``fastmux
--version`` or ``fastmux serve echo --help`` imports neither the benchmarks
nor the other commands.
"""
from __future__ import annotations

import argparse
from typing import Any, Callable, Dict, Mapping, Sequence, Tuple

Filler = Callable[[argparse.ArgumentParser], None]


class _LazySubParsersAction(argparse._SubParsersAction):
    """argparse's sub-parsers action, filling the chosen sub-parser first."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fillers: Dict[str, Filler] = {}

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Sequence[Any], option_string: Any = None) -> None:
        name, arg_strings = values[0], values[1:]  # argparse has checked the name
        setattr(namespace, self.dest, name)
        chosen = self._name_parser_map[name]
        fill = self.fillers.pop(name, None)
        if fill is not None:
            fill(chosen)
        # parse_args, not argparse's parse_known_args: an unknown option is
        # reported by the sub-command that refused it, with its usage.
        for key, value in vars(chosen.parse_args(arg_strings)).items():
            setattr(namespace, key, value)


def add_subcommands(parser: argparse.ArgumentParser, dest: str, metavar: str,
                    commands: Mapping[str, Tuple[str, Filler]]) -> None:
    """Add ``commands`` (name -> (help, filler)) as sub-commands of ``parser``.

    A filler sets its parser's ``_run`` default, which the caller runs as
    ``args._run(args)``.  Without a sub-command, ``_run`` is ``parser``'s,
    which reports the missing one and lists the choices (argparse's own
    "required" error names only ``metavar``).
    """
    sub = parser.add_subparsers(dest=dest, metavar=metavar, action=_LazySubParsersAction)
    for name, (help_, fill) in commands.items():
        sub.add_parser(name, help=help_, description=help_)
        sub.fillers[name] = fill
    names = list(commands)
    choices = ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]

    def missing(args: argparse.Namespace) -> int:
        parser.error(f"{metavar} is required: {choices}")
        return 2  # not reached: error() exits

    parser.set_defaults(_run=missing)
