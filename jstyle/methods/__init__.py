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
  outputs     outputs(hp) -> the names of the images a run with `hp` makes, where they depend on
              a setting (default: OUTPUTS), so that an earlier run's extra image is found
  RESUMABLE   True when run() keeps a checkpoint at `checkpoint` and continues from it (default:
              whether it reads --save_every), so that the command offers --resume
  CONTENT     "clip" when its content is a clip (a video file, a folder of frames or a printf
              pattern; default "image"): its Params then has start_frame and num_frames, run()
              takes the frames as a list and reports each finished frame to on_frame(pass,
              index, image, record), and the command writes OUTPUT/frame_%04d.png with
              their records, OUTPUT/video.mp4 and OUTPUT/video.json
A method imports jstyle's core modules only, never another method. `get` checks what it
can of this contract without running the method (`contract`), so that a broken module is
one line naming its fault, under --help too.
"""

from __future__ import annotations

import dataclasses
import importlib
import traceback
from types import ModuleType

from jstyle.errors import InputError

# jstyle's own methods, in table order
BUILTIN = ("gatys", "mrf", "fast", "analogy", "harmonize", "video")
REQUIRED = ("Params", "PRESETS", "validate", "run")
ALL_INPUTS = ("content", "style", "labels", "weights")


def get(name: str) -> ModuleType:
    """The method module called `name` (one of BUILTIN, or a module path with a dot), its
    contract checked (`contract`).

    Raises:
      InputError: an unknown or relative name, a module that cannot be imported or fails while
        importing (any exception, a syntax error), or one that breaks the contract above.
    """
    if name in BUILTIN:
        return importlib.import_module(f"jstyle.methods.{name}")
    choices = f"choose one of {', '.join(BUILTIN)} or give a module path such as " \
              "mypackage.mymethod"
    if "." not in name:
        raise InputError(f"unknown method {name!r}; {choices}")
    if not all(part.isidentifier() for part in name.split(".")):  # .gatys, pkg..mod, a/b.c
        raise InputError(f"method {name!r} is not a module path (relative names and file "
                         f"paths are not); {choices}")
    module = _import(name)
    problems = contract(module)
    if problems:
        raise InputError(f"module {name!r} is not a jstyle method: {problems[0]}; see "
                         "jstyle.methods for what a method defines")
    return module


def _import(name: str) -> ModuleType:
    """importlib.import_module, any failure of the module's own code an InputError (the
    module is someone else's: its traceback is not the user's to read)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is not None and (name == e.name or name.startswith(e.name + ".")):
            raise InputError(f"cannot import method module {name!r} ({e}); check the name and "
                             "that its package is on PYTHONPATH") from None
        failure = e  # the module was found; something it imports was not
    except SyntaxError as e:
        raise InputError(f"method module {name!r} has a syntax error ({e.msg}, {e.filename} "
                         f"line {e.lineno}); fix the module") from None
    except (Exception, SystemExit) as e:  # noqa: BLE001 (whatever its code raises)
        failure = e
    where = traceback.extract_tb(failure.__traceback__)[-1]
    text = " ".join(str(failure).split()) or "no message"
    raise InputError(f"method module {name!r} failed while importing ({type(failure).__name__}"
                     f": {text}, at {where.filename} line {where.lineno}); fix the module or "
                     "install what it imports") from None


def contract(module: ModuleType) -> list[str]:
    """What `module` gets wrong of a method's contract (the module docstring), as far as it
    can be checked without running it: [] for a method."""
    from jstyle.engine.runs import RunOptions
    missing = [a for a in REQUIRED if not hasattr(module, a)]
    if missing:
        return [f"it lacks {', '.join(missing)}"]
    params, presets = module.Params, module.PRESETS
    if not (isinstance(params, type) and dataclasses.is_dataclass(params)
            and params.__dataclass_params__.frozen):
        return ["its Params is not a frozen dataclass (@dataclasses.dataclass(frozen=True))"]
    problems = [f"its {a} is not a function" for a in ("validate", "run")
                if not callable(getattr(module, a))]
    if not isinstance(presets, dict):
        problems.append("its PRESETS is not a dict {name: (Params(...), RunOptions(...))}")
    elif not presets:
        problems.append("its PRESETS is empty (a method needs a preset, the first its "
                        "default)")
    else:
        problems += [f"its preset {p!r} is not a pair (Params(...), RunOptions(...))"
                     for p, v in presets.items()
                     if not (isinstance(p, str) and isinstance(v, tuple) and len(v) == 2
                             and isinstance(v[0], params) and isinstance(v[1], RunOptions))]
    run_options = {f.name for f in dataclasses.fields(RunOptions)}
    for attr, allowed in (("OPTIONS", run_options), ("INPUTS", set(ALL_INPUTS))):
        value = getattr(module, attr, ())
        if not isinstance(value, (tuple, list)) or not set(value) <= allowed:
            problems.append(f"its {attr} is not a tuple of names among "
                            f"{', '.join(sorted(allowed))}")
    outputs = getattr(module, "OUTPUTS", ("output",))
    if not isinstance(outputs, (tuple, list)) or not outputs or not all(
            isinstance(o, str) and o.isidentifier() for o in outputs):
        problems.append("its OUTPUTS is not a non-empty tuple of image names such as "
                        "(\"output\",)")
    content = getattr(module, "CONTENT", "image")
    if content not in ("image", "clip"):
        problems.append(f"its CONTENT is {content!r}, not \"image\" or \"clip\"")
    elif content == "clip" and not {"start_frame", "num_frames"} <= {
            f.name for f in dataclasses.fields(params)}:
        problems.append("its CONTENT is \"clip\" but its Params lacks start_frame and "
                        "num_frames")
    if not isinstance(getattr(module, "RESUMABLE", False), bool):
        problems.append("its RESUMABLE is not True or False")
    return problems


def options(method: ModuleType) -> tuple[str, ...]:
    """The RunOptions fields `method` reads."""
    from jstyle.engine.runs import RunOptions
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


def outputs(method: ModuleType, hp) -> tuple[str, ...]:
    """The names of the images `method` writes with the hyperparameters `hp`: its
    `outputs(hp)` where it defines one (images that depend on a setting), else OUTPUTS."""
    if callable(getattr(method, "outputs", None)):
        return tuple(method.outputs(hp))
    return tuple(getattr(method, "OUTPUTS", ("output",)))
