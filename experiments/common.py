"""What the experiment scripts share: their default images, the multi-host flags, checks of
their folders, and `run`, which gives every script the `jstyle` command's conventions.

  run(program, main, resume)   absl's app.run with: one line `<program>: error: <problem>;
                               <fix>` and exit 2 for bad input (bad or unknown flags, bad
                               paths), exit 1 for the machine's faults (disk full, permissions,
                               memory); help that stays quiet when its reader goes away
                               (`--help | head`); Ctrl-C and SIGTERM as jstyle.system.interrupt.main
"""

from __future__ import annotations

import logging as std_logging
import os
import pathlib
import sys
import tempfile

from absl import app, flags

from jstyle import cli, image, sweep
from jstyle.cli import exits
from jstyle.system import interrupt
from jstyle.errors import InputError

FLAGS = flags.FLAGS
SHARED_IMAGES = pathlib.Path(__file__).resolve().parents[2] / "shared" / "images"
HELP = ("-h", "-?", "--help", "-help", "--helpshort", "--helpfull")


def define_multihost_flags() -> None:
    """The flags of a run over several hosts (the scripts that shard their work call it)."""
    flags.DEFINE_string("coordinator_address", None,
                        "Multi-host: host:port of process 0 (jax.distributed.initialize).")
    flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
    flags.DEFINE_integer("process_id", None, "Multi-host: this process's id, 0 ... n-1.")
    flags.DEFINE_bool("distributed", False, "Multi-host with the processes detected by JAX "
                      "(Cloud TPU, SLURM, Open MPI) instead of the three flags above.")


def join_processes() -> None:
    """jax.distributed.initialize from the multi-host flags (a no-op without them)."""
    sweep.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                 FLAGS.process_id, FLAGS.distributed)


def shared_image(folder: str, stem: str) -> pathlib.Path | None:
    """../shared/images/<folder>/<stem>.* when present (the project's development images)."""
    found = sorted((SHARED_IMAGES / folder).glob(f"{stem}.*"))
    return found[0] if found else None


def content_and_style(content: str | None, style: str | None, stems: tuple[str, str]
                      ) -> tuple[pathlib.Path, pathlib.Path]:
    """The paths given, else the shared images named by `stems` (content, style), else the
    built-in sample pair.

    Raises:
      InputError: only one of content and style is given.
    """
    if (content is None) != (style is None):
        raise InputError("give both --content and --style, or neither for the defaults")
    if content is not None:
        return pathlib.Path(content), pathlib.Path(style)
    shared = shared_image("content", stems[0]), shared_image("style", stems[1])
    return shared if all(shared) else image.sample_paths()


def check_workdir(workdir: pathlib.Path) -> None:
    """InputError unless --workdir is a folder that can be written to, or can be made as one
    (with its missing parents)."""
    if workdir.exists() and not workdir.is_dir():
        raise InputError(f"--workdir={workdir} is a file; give a folder (made if missing)")
    found = workdir.absolute()
    while not found.exists() and not found.is_symlink():
        found = found.parent
    if not found.is_dir():
        raise InputError(f"--workdir={workdir} is inside {found}, which is not a folder; give "
                         "a folder")
    try:  # the real test of writability (permissions, read-only file systems)
        tempfile.TemporaryFile(dir=found).close()
    except OSError as e:
        raise InputError(f"cannot write to {found} ({e.strerror}); choose a writable "
                         "--workdir") from None


def run(program: str, main, resume: str, smaller: str = "--size") -> None:
    """Runs the experiment script's absl `main` with the command's conventions (module
    docstring); `resume` says how to go on after an interruption, `smaller` which flags make
    a run smaller when memory runs out."""
    # JAX's probing of backends this machine lacks is not the user's news
    std_logging.getLogger("jax._src.xla_bridge").setLevel(std_logging.WARNING)
    app.run(interrupt.main(program, _guarded(program, main, smaller), resume),
            flags_parser=lambda argv: _parse(program, argv))


def _parse(program: str, argv: list[str]) -> list[str]:
    """absl's flag parsing, its errors one line with exit 2, --help on stdout with exit 0."""
    if any(a in HELP for a in argv[1:]):
        doc = (sys.modules["__main__"].__doc__ or "").strip()
        listed = FLAGS.get_help() if "--helpfull" in argv else FLAGS.main_module_help()
        try:
            print(f"{doc}\n\nFlags:\n{listed}", flush=True)
        except BrokenPipeError:  # `--help | head`: the reader has gone
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    try:
        rest = FLAGS(argv)
    except flags.Error as e:
        _fail(program, cli.arguments.parse_error(e, f"{pathlib.Path(argv[0]).name} --help"), 2)
    if len(rest) > 1:
        _fail(program, f"unexpected argument {rest[1]!r}; options are --flag=value", 2)
    return rest


def _guarded(program: str, main, smaller: str):
    """`main` under the command's exit policy (jstyle.cli.exits); an interruption passes on
    to jstyle.system.interrupt.main, which says how to resume."""
    return lambda argv: exits.guarded(lambda: main(argv), program, smaller, stops=False)


def _fail(program: str, message: str, status: int) -> None:
    print(f"{program}: error: {message}", file=sys.stderr)
    sys.exit(status)
