"""jstyle's style-transfer methods, one module (or small package) each, found by name.

`get("gatys")` imports jstyle's own method modules on demand (`BUILTIN`); any other name with
a dot is a module path (`get("mypackage.mymethod")`), so anyone can add a method without
editing jstyle. The method contract, which `contract` checks and tests/test_api.py keeps for
every built-in method and an outside one:

  Params      a frozen dataclass of its hyperparameters, each field made with
              `jstyle.params.field` (help text, flag kind, static or a leaf of the pytree);
              every field is a flag of the `jstyle` command; no file paths (files are inputs)
  PRESETS     {name: (Params, RunOptions)}, the first the default; each default cites
              where it comes from (the paper, the authors' code)
  Inputs      a NamedTuple of what it takes, each field annotated with an input kind of
              jstyle.engine.kinds (Image, Images, Mask, Labels, Clip, Model), so that the
              command and the experiments map their flags onto it
  validate    validate(hp, opts, num_styles): raises InputError naming the fix
  run         run(key, inputs, hp, opts, weights, *, session) -> Result (named images, a
              record, a loss history): the algorithm; the session (jstyle.engine.session)
              keeps the record, checkpoints, progress and outputs
and may define
  OPTIONS     the RunOptions fields or groups (jstyle.engine.options.GROUPS) it reads
              (default: all); flags of the others are errors for it
  OUTPUTS     the names of the images its Result holds (default: ("output",)), so that the
              command checks them against the inputs before the run
  outputs     outputs(hp) -> the names of the images a run with `hp` makes, where they depend on
              a setting (default: OUTPUTS)
  levels      levels(hp, opts) -> the steps of each optimisation in order, so that the command
              plans the snapshots (default: the pyramid's, jstyle.engine.options.pyramid)
  RESUMABLE   True when run() keeps a checkpoint and continues from it (default: whether it
              reads --save_every), so that the command offers --resume
  USES_VGG    False when it needs no VGG-19 weights (default True)
  load_model  load_model(path) -> the Model its Inputs take (a method with a Model input)
  check_flows check_flows(flows, hp): InputError for a clip's precomputed flows that cannot
              work with `hp`, called before the clip is read (a method with a Clip input)
A method imports jstyle's floors below it only, never another method. `get` checks what it
can of this contract without running the method, so that a broken module is one line naming
its fault, under --help too.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import traceback
from types import ModuleType

from jstyle.engine import kinds
from jstyle.engine.options import GROUPS, RunOptions, fields_of, pyramid
from jstyle.errors import InputError

# jstyle's own methods, in table order
BUILTIN = ("gatys", "mrf", "fast", "analogy", "harmonize", "video")
REQUIRED = ("Params", "PRESETS", "Inputs", "validate", "run")
RUN_ARGUMENTS = ("key", "inputs", "hp", "opts", "weights")  # then the keyword `session`


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
    missing = [a for a in REQUIRED if not hasattr(module, a)]
    if missing:
        return [f"it lacks {', '.join(missing)}"]
    params = module.Params
    if not (isinstance(params, type) and dataclasses.is_dataclass(params)
            and params.__dataclass_params__.frozen):
        return ["its Params is not a frozen dataclass (@dataclasses.dataclass(frozen=True))"]
    problems = [f"its {a} is not a function" for a in ("validate", "run")
                if not callable(getattr(module, a))]
    problems += _presets(module) + _inputs(module) + _signature(module)
    allowed = set(GROUPS) | {f.name for f in dataclasses.fields(RunOptions)}
    value = getattr(module, "OPTIONS", ())
    if not isinstance(value, (tuple, list)) or not set(value) <= allowed:
        problems.append(f"its OPTIONS is not a tuple of names among {', '.join(sorted(allowed))}")
    outputs = getattr(module, "OUTPUTS", ("output",))
    if not isinstance(outputs, (tuple, list)) or not outputs or not all(
            isinstance(o, str) and o.isidentifier() for o in outputs):
        problems.append("its OUTPUTS is not a non-empty tuple of image names such as "
                        "(\"output\",)")
    for flag in ("RESUMABLE", "USES_VGG"):
        if not isinstance(getattr(module, flag, False), bool):
            problems.append(f"its {flag} is not True or False")
    return problems


def _presets(module: ModuleType) -> list[str]:
    presets = module.PRESETS
    if not isinstance(presets, dict):
        return ["its PRESETS is not a dict {name: (Params(...), RunOptions(...))}"]
    if not presets:
        return ["its PRESETS is empty (a method needs a preset, the first its default)"]
    return [f"its preset {p!r} is not a pair (Params(...), RunOptions(...))"
            for p, v in presets.items()
            if not (isinstance(p, str) and isinstance(v, tuple) and len(v) == 2
                    and isinstance(v[0], module.Params) and isinstance(v[1], RunOptions))]


def _inputs(module: ModuleType) -> list[str]:
    cls = module.Inputs
    if not (isinstance(cls, type) and issubclass(cls, tuple) and hasattr(cls, "_fields")):
        return ["its Inputs is not a NamedTuple of input kinds (jstyle.engine.kinds)"]
    try:
        found = kinds.declared(cls)
    except Exception as e:  # noqa: BLE001 (an annotation that names nothing)
        return [f"its Inputs' annotations cannot be read ({e})"]
    problems = [f"its Inputs field {name!r} has no input kind (annotate it with one of "
                f"jstyle.engine.kinds: {', '.join(kinds.KINDS)})"
                for name, (kind, _) in found.items() if kind is None]
    if any(kind == "model" for kind, _ in found.values()) and not callable(
            getattr(module, "load_model", None)):
        problems.append("its Inputs take a Model but it has no load_model(path)")
    return problems


def _signature(module: ModuleType) -> list[str]:
    try:
        parameters = list(inspect.signature(module.run).parameters.values())
    except (TypeError, ValueError):
        return []
    positional = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY,
                                                            p.POSITIONAL_OR_KEYWORD)]
    keyword = [p.name for p in parameters if p.kind == p.KEYWORD_ONLY]
    if positional != list(RUN_ARGUMENTS) or "session" not in keyword:
        return [f"its run takes ({', '.join(positional)}{', *, ' if keyword else ''}"
                f"{', '.join(keyword)}), not (key, inputs, hp, opts, weights, *, session)"]
    return []


def options(method: ModuleType) -> tuple[str, ...]:
    """The RunOptions fields `method` reads."""
    return fields_of(getattr(method, "OPTIONS", tuple(GROUPS)))


def inputs(method: ModuleType) -> dict[str, tuple[str, bool]]:
    """{field of its Inputs: (kind, required)}."""
    return kinds.declared(method.Inputs)


def takes_clips(method: ModuleType) -> bool:
    """Whether `method`'s content is a clip."""
    return any(kind == "clip" for kind, _ in inputs(method).values())


def uses_vgg(method: ModuleType) -> bool:
    """Whether `method` needs the VGG-19 weights."""
    return getattr(method, "USES_VGG", True)


def resumable(method: ModuleType) -> bool:
    """Whether `method` keeps checkpoints the command can --resume from."""
    return getattr(method, "RESUMABLE", "save_every" in options(method))


def outputs(method: ModuleType, hp) -> tuple[str, ...]:
    """The names of the images `method` writes with the hyperparameters `hp`: its
    `outputs(hp)` where it defines one (images that depend on a setting), else OUTPUTS."""
    if callable(getattr(method, "outputs", None)):
        return tuple(method.outputs(hp))
    return tuple(getattr(method, "OUTPUTS", ("output",)))


def levels(method: ModuleType, hp, opts) -> list[int]:
    """The steps of each optimisation of a run, in order (for the snapshot plan)."""
    if callable(getattr(method, "levels", None)):
        return list(method.levels(hp, opts))
    return [steps for _, steps in pyramid(opts)]
