"""What the experiment scripts share: their default images, the multi-host flags and the
one-line error exit."""

from __future__ import annotations

import pathlib
import sys

from absl import flags

from jstyle import image, sweep
from jstyle.errors import JStyleError

SHARED_IMAGES = pathlib.Path(__file__).resolve().parents[2] / "shared" / "images"

flags.DEFINE_string("coordinator_address", None,
                    "Multi-host: host:port of process 0 (jax.distributed.initialize).")
flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
flags.DEFINE_integer("process_id", None, "Multi-host: this process's id, 0 ... n-1.")
flags.DEFINE_bool("distributed", False, "Multi-host with the processes detected by JAX "
                  "(Cloud TPU, SLURM, Open MPI) instead of the three flags above.")


def join_processes() -> None:
    """jax.distributed.initialize from the multi-host flags (a no-op without them)."""
    f = flags.FLAGS
    sweep.initialize_distributed(f.coordinator_address, f.num_processes, f.process_id,
                                 f.distributed)


def shared_image(folder: str, stem: str) -> pathlib.Path | None:
    """../shared/images/<folder>/<stem>.* when present (the project's development images)."""
    found = sorted((SHARED_IMAGES / folder).glob(f"{stem}.*"))
    return found[0] if found else None


def content_and_style(content: str | None, style: str | None, stems: tuple[str, str]
                      ) -> tuple[pathlib.Path, pathlib.Path]:
    """The paths given, else the shared images named by `stems` (content, style), else the
    built-in sample pair.

    Raises:
      JStyleError: only one of content and style is given.
    """
    if (content is None) != (style is None):
        raise JStyleError("give both --content and --style, or neither for the defaults")
    if content is not None:
        return pathlib.Path(content), pathlib.Path(style)
    shared = shared_image("content", stems[0]), shared_image("style", stems[1])
    return shared if all(shared) else image.sample_paths()


def fail(program: str, error: Exception) -> None:
    """Exits with status 2 after one line naming the problem."""
    print(f"{program}: error: {error}", file=sys.stderr)
    sys.exit(2)
