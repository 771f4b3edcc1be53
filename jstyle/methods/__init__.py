"""jstyle's style-transfer methods, one module each, found by name.

`get("gatys")` imports jstyle's own method modules on demand (`BUILTIN`); any other name with
a dot is a module path (`get("mypackage.mymethod")`), so anyone can add a method without
editing jstyle. A method module defines:

  Params      a frozen dataclass of its hyperparameters, each field made with
              `jstyle.params.field` (help text, flag kind, static or a leaf of the pytree);
              every field is a flag of the `jstyle` command
  PRESETS     {name: (Params, runs.RunOptions)}, the first the default; each default cites
              where it comes from (the paper, the authors' code)
  validate    validate(hp, opts, num_styles): raises InputError naming the fix
  run         run(content, styles, hp, opts, weights, key=None, *, labels=None, init=None,
              snapshot=None, checkpoint=None, progress=True) -> runs.Result (named images, a
              record, a loss history); content and styles float32[H, W, 3] in [0, 1]
and may define
  OPTIONS     the RunOptions fields it reads (default: all of them); flags of the others are
              errors for it
  INPUTS      what it takes of "content", "style", "labels", "weights" (default: all four)
  OUTPUTS     the names of the images its Result holds (default: ("output",)), so that the
              command checks them against the inputs before the run
  RESUMABLE   True when run() keeps a checkpoint at `checkpoint` and continues from it (default:
              whether it reads --save_every), so that the command offers --resume
  CONTENT     "clip" when its content is a clip (a video file, a folder of frames or a printf
              pattern; default "image"): its Params then has start_frame and num_frames, run()
              takes the frames as a list and reports each finished frame to on_frame(pass,
              index, image, record), and the command writes OUTPUT/frame_%04d.png with
              their records, OUTPUT/video.mp4 and OUTPUT/video.json
A method imports jstyle's core modules only, never another method.
"""

from __future__ import annotations

import dataclasses
import importlib
from types import ModuleType

from jstyle.errors import InputError

# jstyle's own methods, in table order
BUILTIN = ("gatys", "mrf", "fast", "analogy", "harmonize", "video")
REQUIRED = ("Params", "PRESETS", "validate", "run")
ALL_INPUTS = ("content", "style", "labels", "weights")


def get(name: str) -> ModuleType:
    """The method module called `name` (one of BUILTIN, or a module path with a dot).

    Raises:
      InputError: an unknown name, a module that cannot be imported, or one that is not a
        method (lacks one of REQUIRED).
    """
    if name in BUILTIN:
        return importlib.import_module(f"jstyle.methods.{name}")
    if "." not in name:
        raise InputError(f"unknown method {name!r}; choose one of {', '.join(BUILTIN)} or give "
                         "a module path such as mypackage.mymethod")
    try:
        module = importlib.import_module(name)
    except ImportError as e:
        raise InputError(f"cannot import method module {name!r} ({e}); check the name and "
                         "that its package is on PYTHONPATH") from None
    missing = [a for a in REQUIRED if not hasattr(module, a)]
    if missing:
        raise InputError(f"module {name!r} is not a jstyle method: it lacks "
                         f"{', '.join(missing)}; see jstyle.methods for what a method defines")
    return module


def options(method: ModuleType) -> tuple[str, ...]:
    """The RunOptions fields `method` reads."""
    from jstyle.runs import RunOptions
    return getattr(method, "OPTIONS", tuple(f.name for f in dataclasses.fields(RunOptions)))


def inputs(method: ModuleType) -> tuple[str, ...]:
    """What `method` takes of content, style, labels and weights."""
    return getattr(method, "INPUTS", ALL_INPUTS)


def takes_clips(method: ModuleType) -> bool:
    """Whether `method`'s content is a clip (CONTENT = "clip")."""
    return getattr(method, "CONTENT", "image") == "clip"


def resumable(method: ModuleType) -> bool:
    """Whether `method` keeps checkpoints the command can --resume from."""
    return getattr(method, "RESUMABLE", "save_every" in options(method))
