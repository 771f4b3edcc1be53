"""The `jstyle` command (see jstyle.cli.arguments.USAGE): `jstyle [flags]` stylises
(jstyle.cli.stylise), `jstyle train [flags]` trains the fast network (jstyle.cli.train); every
failure follows one exit policy (jstyle.cli.exits)."""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging

from jstyle import methods
from jstyle.cli import arguments
from jstyle.cli.exits import guarded
from jstyle.cli.arguments import FLAGS
from jstyle.errors import JStyleError


def _method_names(argv: list[str]) -> list[str]:
    """jstyle's methods, and the one `--method` names if it is a module path (its flags must
    exist before the flags are parsed)."""
    names = list(methods.BUILTIN)
    for i, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if arg.startswith("--method=") else (
            argv[i + 1] if arg == "--method" and i + 1 < len(argv) else None)
        if value and value not in names:
            names.append(value)
    return names


def _parse(argv: list[str]) -> list[str]:
    """absl flag parsing with jstyle's error convention (one line, exit 2)."""
    training = len(argv) > 1 and argv[1] == "train"
    if training:
        argv = [argv[0], *argv[2:]]
    names = _method_names(argv)
    try:
        arguments.define_flags(names)
    except JStyleError as e:
        print(f"jstyle: error: {e}", file=sys.stderr)
        sys.exit(2)
    if any(a in ("-h", "--help", "-help", "--helpshort", "--helpfull") for a in argv[1:]):
        chosen = _method_names(argv)[len(methods.BUILTIN):] or [  # a module path
            m for m in methods.BUILTIN if f"--method={m}" in argv or any(
                a == "--method" and b == m for a, b in zip(argv, argv[1:]))]
        shown = ["train"] if training else chosen or [*names, "train"]
        try:
            print(arguments.help_text(names, shown), flush=True)
        except BrokenPipeError:  # `jstyle --help | head`: the reader has gone
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    try:
        rest = FLAGS(argv)
    except flags.Error as e:
        print(f"jstyle: error: {arguments.parse_error(e)}", file=sys.stderr)
        sys.exit(2)
    if len(rest) > 1:
        print(f"jstyle: error: unexpected argument {rest[1]!r}; options are --flag=value",
              file=sys.stderr)
        sys.exit(2)
    return rest + (["train"] if training else [])  # main() sees which command



def _main(argv: list[str]) -> None:
    if not FLAGS["verbosity"].present:  # keep backend-probing INFO lines off the terminal
        logging.set_verbosity(logging.WARNING)
    from jstyle.system import interrupt
    interrupt.install()
    if argv[1:] == ["train"]:
        from jstyle.cli.train import train_command
        guarded(train_command)
    else:
        from jstyle.cli.stylise import run_command
        guarded(run_command)


def main() -> None:
    """Console entry point."""
    app.run(_main, flags_parser=_parse)
