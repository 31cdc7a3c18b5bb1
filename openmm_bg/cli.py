"""The ``openmm-bg`` command.

Each subcommand lives in :mod:`openmm_bg.commands` as a module with two functions,
``configure(parser)`` that adds its arguments and ``run(args) -> int`` that does
the work.  Bad input (missing files, mismatched topologies, unknown names) raises
``ValueError``, ``TypeError`` or ``OSError`` with a clear message; :func:`main`
turns those into one line on stderr and exit status 2, without a traceback.  Set
``OPENMM_BG_DEBUG=1`` to get the traceback instead.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["SUBCOMMANDS", "parse_args", "main"]

#: subcommand name -> module in openmm_bg.commands
SUBCOMMANDS = {
    "toy": "toy",
    "explore": "explore",
    "simulate": "simulate",
    "train": "train",
    "sample": "sample",
    "free-energy": "free_energy",
    "demo": "demo",
}


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps each command's description as written and shows the default of every option that has one.

    An option whose help already names its default, or whose default is None or False
    (not given, a flag), is left as it is.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        # identity, not ==: a default of 0 must show (0 == False)
        hidden = action.default is None or action.default is False or action.default is argparse.SUPPRESS or action.default == []
        if hidden or "default" in text or not action.option_strings:
            return text
        shown = " ".join(map(str, action.default)) if isinstance(action.default, (list, tuple)) else action.default
        return f"{text} (default: {shown})" if text else f"default: {shown}"


def _summary(module_name: str) -> str:
    """The first line of a command module's docstring, read from its source without importing it."""
    spec = importlib.util.find_spec(f"openmm_bg.commands.{module_name}")
    source = Path(spec.origin).read_text(encoding="utf-8")
    return (ast.get_docstring(ast.parse(source)) or "").strip().splitlines()[0]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line of ``openmm-bg``.

    Only the command being run is imported (and its options configured): ``openmm-bg
    --help`` reads the commands' one-line summaries from their source, so that it starts
    without torch, OpenMM or mdtraj.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((word for word in argv if not word.startswith("-")), None)
    parser = argparse.ArgumentParser(prog="openmm-bg", description="Boltzmann generators for OpenMM systems.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module_name in SUBCOMMANDS.items():
        if name != chosen:
            sub.add_parser(name, help=_summary(module_name))
            continue
        module = importlib.import_module(f"openmm_bg.commands.{module_name}")
        sub_parser = sub.add_parser(
            name, help=module.__doc__.strip().splitlines()[0], description=module.__doc__, formatter_class=_HelpFormatter
        )
        module.configure(sub_parser)
        sub_parser.set_defaults(_run=module.run)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``openmm-bg``; return the exit status."""
    # pymbar logs two import-time notices (timeseries caveat, JAX missing) at WARNING with no
    # handler configured, so Python prints them on every command; they say nothing about the run
    logging.getLogger("pymbar").setLevel(logging.ERROR)
    args = parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (ValueError, TypeError, OSError, KeyError) as error:
        if os.environ.get("OPENMM_BG_DEBUG"):
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"openmm-bg {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
