"""What the methods that optimise an image's pixels share (Gatys, CNNMRF, ...), in pieces a
method can call or skip.

  RunOptions, validate_options   how a run is carried out, checked once
  prepare_colors, finish_colors  colour control (Gatys et al. 2017)
  initial_image, start_image     the first image: content, noise, style, a file or an array
  program, make_problem          a method's objective compiled once per (loss, optimiser
                                 settings) and reused for every problem of the same shapes
  optimise                       one level from its first state: progress, snapshots,
                                 checkpoints (any state pytree) and resume
  start_record, saved_run        what a run records, and the checkpoint it may continue
  run                            the coarse-to-fine loop that joins them; a Result holds named
                                 images
A method supplies `validate` and `setup` (one level's Problem: `level_setup` makes it from
the method's `prepare_data` and `loss_terms`); a method with its own loop (several passes or
outputs) calls the pieces directly.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import pathlib
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from jstyle import image as image_lib
from jstyle import results
from jstyle.ops import masks
from jstyle.system import memory
from jstyle.engine import optimize
from jstyle.nets import vgg
from jstyle.ops import tiles as tiles_lib
from jstyle.errors import InputError
from jstyle.params import field
from jstyle.system.progress import Progress
from jstyle.nets.weights import VGGWeights

PRESERVE_COLORS = ("none", "luminance", "match", "original")
COLOR_MATCH_MODES = ("pca", "chol", "sym")
IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)  # VGG's mean pixel, 8-bit levels, RGB
MAX_SIZE = 16384  # px: a Gatys run at this size needs about 0.8 TB, more than any one device


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How a pixel-optimising run is carried out (not part of the objective). Each field is a
    flag of the `jstyle` command with this help text; its default is the preset's."""
    size: int = field(512, "Longer edge of the output, pixels.")
    steps: int = field(500, "Optimiser steps (per pyramid level): L-BFGS iterations or Adam "
                       "steps.")
    optimizer: str = field("lbfgs", "Optimiser (optax).", choices=optimize.OPTIMIZERS)
    learning_rate: float = field(4.0, "Adam step size in 8-bit levels; L-BFGS's step with "
                                 "--linesearch=none.")
    lbfgs_memory: int = field(10, "L-BFGS history length.")
    linesearch: str = field("zoom", "L-BFGS line search: zoom (strong Wolfe), or none (fixed "
                            "steps of --learning_rate, one evaluation each, for piecewise-smooth "
                            "objectives such as CNNMRF's).", choices=optimize.LINESEARCHES)
    init: str = field("content", "Initial image: content, noise, style or an image path.")
    init_noise: float = field(8.0, "Std of --init=noise around the mean pixel, 8-bit levels.")
    seed: int = field(0, "Seed of the jax.random key (noise init), when no key is given.")
    style_scale: float = field(1.0, "Style images' longer edge as a multiple of --size.")
    style_blend_weights: tuple[float, ...] | None = field(
        None, "Weight per style image, normalised to sum 1 (default: equal).", kind="floats")
    preserve_colors: str = field(
        "none", "Colour control (Gatys et al. 2017): luminance (transfer luminance only, "
        "content's colours), match (recolour the style to the content's colour statistics "
        "first), original (recolour the result with the content's chroma afterwards, as "
        "neural-style's -original_colors).", choices=PRESERVE_COLORS)
    color_match_mode: str = field("pca", "Matrix square root of --preserve_colors=match.",
                                  choices=COLOR_MATCH_MODES)
    pyramid_levels: int = field(1, "Coarse-to-fine levels, each --pyramid_ratio smaller than "
                                "the next; the last is --size (1: off).")
    pyramid_ratio: float = field(2.0, "Size ratio between pyramid levels.")
    pyramid_steps: tuple[int, ...] | None = field(
        None, "Steps per pyramid level, coarsest first (default: --steps at every level).",
        kind="ints")
    tile: int = field(0, "Compute the loss and its gradient on N x N tiles (exact: the same "
                      "values at one tile's memory; gatys); 0: the fewest tiles whose memory "
                      "estimate fits what is available (1 where the whole image fits).")
    precision: str = field("auto", "The network's precision: float32, or bfloat16 (VGG "
                           "activations and weights; Grams, losses, pixels and the optimiser "
                           "stay float32); auto: bfloat16 on GPUs and TPUs, float32 on CPUs "
                           "(README, Print resolution).", choices=("auto",) + vgg.PRECISIONS)
    remat: bool = field(False, "Rematerialise VGG blocks (jax.checkpoint): one more forward "
                        "pass per step to free stored activations; on XLA:CPU it saves no "
                        "memory (README, Memory at print sizes).")
    unmatched: str = field("error", "A content region missing from every style mask: error, "
                           "or global (style it from the whole style images).",
                           choices=masks.UNMATCHED)
    tol: float = field(1e-7, "Stop when the loss changes by less than this, relatively, over "
                       "--tol_interval steps (0: never).")
    tol_interval: int = field(1, "Steps between the loss comparisons of --tol.")
    print_every: int = field(50, "Report progress every N steps (0: off).")
    save_every: int = field(0, "Write OUTPUT_<step>.png and a resumable checkpoint every N "
                            "steps (0: off).")


def check_nonnegative(named: dict[str, list], what: str = "weights") -> None:
    """InputError unless every value of every `--name` is finite and >= 0."""
    for name, values in named.items():
        for v in values:
            if not math.isfinite(float(v)) or float(v) < 0:
                raise InputError(f"--{name}={v} is invalid; {what} must be finite and >= 0")


def check_at_least(named: dict[str, Any], low: int, fix: str) -> None:
    """InputError unless every `--name` value is >= low, the message ending in `fix`."""
    for name, value in named.items():
        if value < low:
            raise InputError(f"--{name}={value} must be >= {low}; {fix}")


def check_layer_weights(hp, kinds: tuple[str, ...]) -> None:
    """InputError unless `--X_layer_weights` gives one weight per `--X_layers`, for each X of
    `kinds` (fields of the Params `hp`)."""
    for name in kinds:
        layers, weights = getattr(hp, f"{name}_layers"), getattr(hp, f"{name}_layer_weights")
        if len(weights) != len(layers):
            raise InputError(f"{len(weights)} --{name}_layer_weights for {len(layers)} "
                             f"--{name}_layers; give one weight per layer")


def check_moves(terms: dict[str, float]) -> None:
    """InputError when every term's weight (alpha times its layer weights...) is 0: nothing
    would change the image."""
    if not any(float(w) > 0 for w in terms.values()):
        raise InputError(f"every loss weight is 0 ({', '.join(f'--{n}' for n in terms)}), so the "
                         "image would not change; give one of them a positive value")


def validate_options(opts: RunOptions, num_styles: int) -> None:
    """Raises InputError for run options that cannot work, naming the fix."""
    check_nonnegative({"style_blend_weights": opts.style_blend_weights or [1.0]})
    check_nonnegative({"style_scale": [opts.style_scale], "init_noise": [opts.init_noise],
                       "learning_rate": [opts.learning_rate], "tol": [opts.tol]}, "values")
    if opts.style_blend_weights is not None:
        if len(opts.style_blend_weights) != num_styles:
            raise InputError(f"{len(opts.style_blend_weights)} --style_blend_weights for "
                             f"{num_styles} style images; give one weight per style image")
        if sum(opts.style_blend_weights) <= 0:
            raise InputError("--style_blend_weights sum to 0; give at least one positive weight")
    if opts.style_scale <= 0:
        raise InputError(f"--style_scale={opts.style_scale} must be > 0; give a positive "
                         "multiple of --size, such as 1")
    if opts.optimizer not in optimize.OPTIMIZERS:
        raise InputError(f"unknown optimizer {opts.optimizer!r}; use lbfgs or adam")
    for name, value, allowed in (("preserve_colors", opts.preserve_colors, PRESERVE_COLORS),
                                 ("precision", opts.precision, ("auto",) + vgg.PRECISIONS),
                                 ("color_match_mode", opts.color_match_mode, COLOR_MATCH_MODES),
                                 ("linesearch", opts.linesearch, optimize.LINESEARCHES),
                                 ("unmatched", opts.unmatched, masks.UNMATCHED)):
        if value not in allowed:
            raise InputError(f"unknown --{name}={value}; use one of {', '.join(allowed)}")
    check_at_least({n: getattr(opts, n) for n in ("size", "steps", "lbfgs_memory",
                                                  "pyramid_levels", "tol_interval")}, 1,
                   "give a positive whole number")
    check_size(opts)
    check_at_least({n: getattr(opts, n) for n in ("print_every", "save_every")}, 0,
                   "give a step count, or 0 to turn it off")
    check_at_least({"tile": opts.tile}, 0, "give tiles per side, or 0 to choose them from the "
                   "memory available")
    if not opts.pyramid_ratio > 1:
        raise InputError(f"--pyramid_ratio={opts.pyramid_ratio} must be > 1; give the size "
                         "ratio between levels, such as 2")
    if opts.learning_rate == 0 and (opts.optimizer == "adam" or opts.linesearch == "none"):
        raise InputError(f"--learning_rate=0 with --optimizer={opts.optimizer} would leave the "
                         "image unchanged; give a positive --learning_rate")
    if opts.pyramid_steps is not None and (len(opts.pyramid_steps) != opts.pyramid_levels
                                           or min(opts.pyramid_steps) < 1):
        raise InputError(f"--pyramid_steps needs {opts.pyramid_levels} step counts >= 1, one "
                         "per --pyramid_levels, coarsest first")


def check_size(opts: RunOptions) -> None:
    """InputError unless --size and the style images' edge (--style_scale times it) are at
    most MAX_SIZE px: every method calls it before it resizes anything."""
    if opts.size > MAX_SIZE:
        raise InputError(f"--size={opts.size} is beyond what any device jstyle runs on could "
                         f"hold (at most {MAX_SIZE} px); give a smaller --size")
    if style_edge(opts) > MAX_SIZE:
        raise InputError(f"--style_scale={opts.style_scale} makes the style images "
                         f"{style_edge(opts)} px, beyond what any device jstyle runs on could "
                         f"hold (at most {MAX_SIZE} px); give a smaller --style_scale")


def pyramid(opts: RunOptions) -> list[tuple[int, int]]:
    """(longer edge, steps) of each level, coarsest first; the last is (size, steps)."""
    steps = opts.pyramid_steps or (opts.steps,) * opts.pyramid_levels
    return [(max(1, round(opts.size / opts.pyramid_ratio ** (opts.pyramid_levels - 1 - k))),
             steps[k]) for k in range(opts.pyramid_levels)]


def resize_inputs(content: np.ndarray, styles: list[np.ndarray], opts: RunOptions
                  ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Content at `opts.size` and styles at `style_scale * size` on the longer edge: float[.., 3]
    in [0, 1] -> float32 in 8-bit levels."""
    return (image_lib.to_levels(image_lib.resize_to_edge(content, opts.size)),
            [image_lib.to_levels(image_lib.resize_to_edge(s, style_edge(opts))) for s in styles])


def style_edge(opts: RunOptions) -> int:
    """The style images' longer edge, px: `style_scale * size`."""
    return max(1, round(opts.size * opts.style_scale))


def initial_image(key: jax.Array, init: str | np.ndarray, content: np.ndarray,
                  styles: list[np.ndarray], noise: float) -> np.ndarray:
    """The starting image, float32[H, W, 3] in 8-bit levels, the size of `content`.

    init: "content"; "noise" (the mean pixel plus `noise` x N(0, 1) per pixel); "style" (the
    first style image resized to the content's size); the path of an image file; or an image,
    float[h, w, 3] in [0, 1] (any size: resized to the content's).
    """
    h, w, _ = content.shape
    if isinstance(init, str) and init == "content":
        return content
    if isinstance(init, str) and init == "noise":
        normal = np.asarray(jax.random.normal(key, content.shape, jnp.float32))
        return np.asarray(IMAGENET_MEAN_RGB, np.float32) + noise * normal
    if not isinstance(init, str):
        source = np.clip(np.asarray(init, np.float32), 0.0, 1.0)
    elif init == "style":
        source = styles[0] / 255.0
    else:
        source = image_lib.load(init)
    return image_lib.to_levels(image_lib.resize(source, h, w))


def start_image(key: jax.Array, opts: RunOptions, content: np.ndarray,
                styles: list[np.ndarray], previous: np.ndarray | None) -> np.ndarray:
    """`initial_image` of `opts.init` at the first level; later levels (and a run given an
    image to start from) start from `previous` (float[h, w, 3], 8-bit levels), resized to the
    content's size."""
    if previous is None:
        return initial_image(key, opts.init, content, styles, opts.init_noise)
    return image_lib.to_levels(image_lib.resize(np.clip(previous / 255.0, 0.0, 1.0),
                                                *content.shape[:2]))


FIRST_STEP_LEVELS = 1.0  # L-BFGS's first step: 1 level RMS per pixel (optimize.make_optimizer)


class Program(NamedTuple):
    """An objective's compiled optimisation, shared by every problem of its kind."""
    optimizer: optax.GradientTransformationExtraArgs
    chunk: Callable  # jitted (state, end, data) -> state, optimize.make_chunk
    terms: Callable  # jitted (image, data) -> {term: float32[] (batched: float32[K])}


@functools.lru_cache(maxsize=None)
def program(loss_terms: Callable, convention, remat: bool, optimizer: str,
            learning_rate: float, lbfgs_memory: int, linesearch: str, tol: float,
            data_axes=None, tol_interval: int = 1, tile: int = 1) -> Program:
    """The compiled program of a method's objective: built once per (loss, convention,
    optimiser settings, batch axes) and reused by every level, pass, frame or sweep batch;
    jit then compiles once per shape of the image and the data.

    Args:
      loss_terms: a module-level `loss_terms(image, data, convention, remat) -> {term name:
        float32[], ..., "total": float32[]}`, image float32[H, W, 3] in 8-bit levels; with
        `tile` > 1 it also takes `tiles_grid=(tile, tile)` (jstyle.ops.tiles).
      data_axes: None for one problem; for a batch of problems, the data's batch axes (a
        pytree prefix of the data: 0 where a leaf has a leading batch axis, None where it is
        shared), e.g. the method's `Data.sweep_axes()`.
    """
    transform = optimize.make_optimizer(optimizer, learning_rate, lbfgs_memory, linesearch,
                                        FIRST_STEP_LEVELS)
    search = linesearch if optimizer == "lbfgs" and linesearch != "none" else None
    tiled = {} if tile <= 1 else {"tiles_grid": (tile, tile)}
    objective = lambda image, data: loss_terms(image, data, convention, remat, **tiled)["total"]
    chunk = optimize.make_chunk(objective, transform, linesearch=search, tol=tol,
                                bounds=(0.0, 255.0), data_axes=data_axes,
                                tol_interval=tol_interval)
    terms = lambda image, data: loss_terms(image, data, convention, False, **tiled)
    if data_axes is not None:
        terms = jax.vmap(terms, in_axes=(0, data_axes))
    return Program(transform, chunk, jax.jit(terms))


def compile_program(loss_terms: Callable, convention, opts: RunOptions, data_axes=None
                    ) -> Program:
    """`program` with the optimiser settings of `opts`."""
    return program(loss_terms, convention, opts.remat, opts.optimizer, opts.learning_rate,
                   opts.lbfgs_memory, opts.linesearch, opts.tol, data_axes, opts.tol_interval,
                   max(1, opts.tile))


class Problem(NamedTuple):
    """One level made ready: the compiled chunk, its first state and the data it takes."""
    chunk: Callable  # Program.chunk: (state, end, data) -> state
    state: optimize.LoopState  # before the first step
    data: Any  # the method's Data (weights, targets, hyperparameters), the chunk's argument
    terms: Callable  # Program.terms: (image, data) -> {term name: float32[], "total": ...}
    content: np.ndarray  # float32[H, W, 3], 8-bit levels, resized
    styles: list[np.ndarray]  # float32[H_i, W_i, 3], 8-bit levels, resized
    blend: list[float] | None  # normalised style blend weights (None: the method has none)
    init: np.ndarray  # the initial image, 8-bit levels


def make_problem(loss_terms: Callable, data: Any, convention, opts: RunOptions,
                 content: np.ndarray, styles: list[np.ndarray], blend: list[float] | None,
                 init: np.ndarray) -> Problem:
    """A Problem on the (cached) compiled program of `loss_terms` (see `program`), starting
    from `init` (float32[H, W, 3], 8-bit levels)."""
    compiled = compile_program(loss_terms, convention, opts)
    return Problem(chunk=compiled.chunk, state=optimize.init(compiled.optimizer, init),
                   data=data, terms=compiled.terms, content=content, styles=styles, blend=blend,
                   init=init)


def level_setup(prepare_data: Callable, loss_terms: Callable) -> Callable:
    """A method's `setup(content, styles, hp, opts, weights, key, *, init=None, labels=None)
    -> Problem` for one level, from its `prepare_data(content, styles, hp, opts, weights,
    labels) -> (data, content, styles, blend)` (the images resized to `opts.size`, in 8-bit
    levels) and its `loss_terms`.

    `init` is the starting image (float[h, w, 3], 8-bit levels, any size: resized to the
    content's), e.g. the previous pyramid level's result; default: `opts.init`.
    """
    def setup(content: np.ndarray, styles: list[np.ndarray], hp, opts: RunOptions,
              weights: VGGWeights, key: jax.Array, *, init: np.ndarray | None = None,
              labels: masks.Labels | None = None) -> Problem:
        data, content, styles, blend = prepare_data(content, styles, hp, opts, weights, labels)
        return make_problem(loss_terms, data, weights.convention, opts, content, styles, blend,
                            start_image(key, opts, content, styles, init))
    return setup


def local_mesh() -> jax.sharding.Mesh:
    """This process's devices on one axis, "points", with automatic sharding (XLA carries the
    split through the network). Under jax.distributed each process runs its own points on its
    own devices, so no computation spans hosts."""
    return jax.sharding.Mesh(np.array(jax.local_devices()), ("points",),
                             axis_types=(jax.sharding.AxisType.Auto,))


def shard(problem: Problem, mesh: jax.sharding.Mesh | None = None) -> Problem:
    """A batched problem over the devices (the sweep machinery): the points' states and the
    data's batched leaves (the data type's `sweep_axes()`: a sweep's hyperparameters, a clip's
    frames) split along the mesh's first axis, the rest (the network, shared targets)
    replicated. The compiled chunk then runs each device's points where they lie.

    Args:
      problem: a batch of problems (`sweep.setup`, a video pass).
      mesh: default: `local_mesh()`.
    Raises:
      InputError: the number of points is not a multiple of the number of devices.
    """
    mesh = mesh or local_mesh()
    points, devices = problem.state.image.shape[0], mesh.devices.shape[0]
    if points % devices:
        raise InputError(f"{points} points do not split over {devices} devices; use a multiple "
                         f"of {devices} points")
    spread = NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))
    same = NamedSharding(mesh, PartitionSpec())
    axes = type(problem.data).sweep_axes()
    data = jax.tree.map(lambda axis, d: jax.device_put(d, same if axis is None else spread),
                        axes, problem.data, is_leaf=lambda x: x is None)
    return problem._replace(state=jax.device_put(problem.state, spread), data=data)


def prepare_colors(content: np.ndarray, styles: list[np.ndarray], opts: RunOptions
                   ) -> tuple[np.ndarray, list[np.ndarray]]:
    """The images the transfer works on, for `opts.preserve_colors` (Gatys et al. 2017):

      none, original: unchanged ("original" recolours the result afterwards instead: the
        output's luminance with the content's chroma, neural-style's -original_colors);
      luminance: luminance only (style luminance matched to the content's mean and std);
        the result's luminance is then combined with the content's chroma (`finish_colors`);
      match: each style recoloured to the content's colour mean and covariance first.
    """
    if opts.preserve_colors == "luminance":
        return image_lib.luminance_images(content, styles)
    if opts.preserve_colors == "match":
        return content, [image_lib.match_color(s, content, opts.color_match_mode)
                         for s in styles]
    return content, styles


def finish_colors(output: np.ndarray, content: np.ndarray, opts: RunOptions) -> np.ndarray:
    """The result's final colours: output float[H, W, 3] in [0, 1]; content the original
    content (any size, float[h, w, 3] in [0, 1]). See `prepare_colors`."""
    if opts.preserve_colors in ("luminance", "original"):
        return image_lib.keep_colors(output, image_lib.resize(content, *output.shape[:2]))
    return output


class Result(NamedTuple):
    """What a method's run returns."""
    images: dict[str, np.ndarray]  # name -> float32[H, W, 3] in [0, 1]; "output" is the
    #   result (the last good image on failure); a method may add others (e.g. "b")
    record: dict  # how it was made: options, losses, steps, seconds, stop reason
    history: list[dict]  # one entry per progress point: step and each loss term

    @property
    def image(self) -> np.ndarray:
        """The main output, images["output"]."""
        return self.images["output"]


def _floats(terms: dict) -> dict[str, float]:
    return {k: float(v) for k, v in terms.items()}


def start_record(method: str, hp, opts: RunOptions, weights: VGGWeights, content: np.ndarray,
                 styles: list[np.ndarray], labels: masks.Labels | None,
                 init: np.ndarray | None = None) -> dict:
    """The part of a run's record known before it starts: what is run, on what, how (also what
    a checkpoint must match to be resumed)."""
    extra = [] if labels is None else [labels.content, *labels.styles]
    if init is not None:
        extra.append(np.asarray(init))
    elif opts.init not in ("content", "noise", "style"):
        extra.append(image_lib.load(opts.init))
    return {"method": method, "hyperparameters": dataclasses.asdict(hp),
            "options": dataclasses.asdict(opts), "weights": weights.digest,
            "inputs": results.array_digest(content, *styles, *extra),
            "levels": [{"size": size, "steps": steps} for size, steps in pyramid(opts)]}


RESUMABLE = ("steps", "pyramid_steps", "print_every", "save_every")  # options a resumed
#   run may change: it continues to the new step count, reporting and saving as now asked


def _comparable(record: dict) -> dict:
    """What must match for a checkpoint to be resumed: the record without its progress, the
    step counts and the reporting options."""
    record = json.loads(json.dumps(record))
    options = {k: v for k, v in record.get("options", {}).items() if k not in RESUMABLE}
    return {**{k: v for k, v in record.items()
               if k not in ("history", "level", "step", "initial_loss", "passes", "frames",
                            "position")},
            "options": options, "levels": [l["size"] for l in record.get("levels", [])]}


def saved_run(checkpoint: pathlib.Path | None, record: dict) -> dict | None:
    """The record of the checkpoint at `checkpoint` (None when there is none), checked to have
    been made by this run (`record`, from `start_record`) with at most more steps asked.

    Raises:
      InputError: a checkpoint that cannot be read, or that another run made (naming what
        differs); the file is left as it is.
    """
    saved = checkpoint_of(checkpoint, record)
    if saved is None:
        return None
    total = sum(steps for _, steps in pyramid_of(record))
    if saved.get("step", 0) > total:
        raise InputError(f"the checkpoint {checkpoint} is at step {saved['step']}, beyond the "
                         f"{total} steps asked; give at least {saved['step']} steps (--steps or "
                         "--pyramid_steps) to resume")
    return saved


def checkpoint_of(checkpoint: pathlib.Path | None, record: dict) -> dict | None:
    """The record of the checkpoint at `checkpoint` (None when there is none), checked to have
    been made by this run (`record`) but for the options a resumed run may change (RESUMABLE).

    Raises:
      InputError: a checkpoint that cannot be read, or that another run made (naming what
        differs); the file is left as it is.
    """
    if checkpoint is None or not checkpoint.exists():
        return None
    saved = optimize.checkpoint_record(checkpoint)
    if saved is None:
        raise InputError(f"{checkpoint} is not a readable checkpoint (corrupt or truncated); it "
                         "was kept: move it away to start over")
    mine, theirs = _comparable(record), _comparable(saved)
    if mine != theirs:
        differ = sorted({f"{k}.{n}" for k in ("options", "hyperparameters") for n in
                         set(mine.get(k, {})) | set(theirs.get(k, {}))
                         if mine.get(k, {}).get(n) != theirs.get(k, {}).get(n)}
                        | {k for k in (set(mine) | set(theirs)) - {"options", "hyperparameters"}
                           if mine.get(k) != theirs.get(k)})
        raise InputError(f"{checkpoint} was made by another run (it differs in "
                         f"{', '.join(differ)}); it was kept: rerun with the flags that made it,"
                         " or move it away to start over")
    return saved


def pyramid_of(record: dict) -> list[tuple[int, int]]:
    """(size, steps) of each level, from a record of `start_record`."""
    return [(l["size"], l["steps"]) for l in record["levels"]]


class Progressed(NamedTuple):
    """What one level's optimisation reports back."""
    state: optimize.LoopState
    image: np.ndarray  # float32[H, W, 3] in [0, 255], the last good image


class Stopped(KeyboardInterrupt):
    """A run interrupted (Ctrl-C, SIGTERM) at global step `step`, its state saved to
    `checkpoint` (None: no checkpoint path was given); `position` says where it stood, for
    the message (default "step N")."""

    def __init__(self, step: int, checkpoint: pathlib.Path | None, position: str = ""):
        super().__init__()
        self.step, self.checkpoint = step, checkpoint
        self.position = position or f"step {step}"


def optimise(problem: Problem, steps: int, opts: RunOptions, *, level: int = 0,
             offset: int = 0, record: dict | None = None, history: list[dict] | None = None,
             bar: Progress | None = None, resume: bool = False,
             snapshot: Callable[[int, np.ndarray], None] | None = None,
             checkpoint: pathlib.Path | None = None,
             finish: Callable[[np.ndarray], np.ndarray] = lambda x: x,
             keep: dict[str, np.ndarray] | None = None) -> Progressed:
    """Runs one problem for `steps` steps: progress every `opts.print_every` (appended to
    `history`, shown on `bar`), snapshots and checkpoints every `opts.save_every`, and a
    checkpoint of the last finished chunk when interrupted.

    Args:
      level, offset: the pyramid level and the steps taken before it (steps count across
        levels in the history, snapshots and progress).
      record: what the checkpoint records (`start_record`); the level, the global step and the
        history so far are added.
      resume: continue from `checkpoint` (checked by `saved_run`).
      finish: output image in [0, 1] -> what a snapshot shows (colour control).
      keep: arrays the checkpoint carries besides the state (what a later pass needs of an
        earlier one; `optimize.checkpoint_arrays` reads them back).
    Raises:
      Stopped: Ctrl-C or SIGTERM; the state was saved to `checkpoint`.
    """
    history = [] if history is None else history
    state, data = problem.state, problem.data

    def save(s: optimize.LoopState) -> None:
        optimize.save_checkpoint(checkpoint, s, {
            **(record or {}), "level": level, "step": offset + int(s.step), "history": history},
            keep)

    if resume and checkpoint is not None:
        state = optimize.load_checkpoint(checkpoint, state)
        if state is None:
            raise InputError(f"{checkpoint} does not fit this run (its arrays have other "
                             "shapes); it was kept: move it away to start over")
        if bar is not None:
            bar.update(offset + int(state.step), "resumed")

    def log(s: optimize.LoopState) -> np.ndarray:
        """Appends the state's loss terms to the history; returns its image (8-bit levels)."""
        step = offset + int(s.step)
        out = np.clip(np.asarray(s.good_image if bool(s.failed) else s.image), 0, 255)
        terms = _floats(problem.terms(jnp.asarray(out), data))
        history.append({"step": step, "level": level, **terms})
        if bar is not None:
            bar.update(step, " ".join(f"{k}={v:.4g}" for k, v in terms.items()))
        return out

    def on_stop(s: optimize.LoopState) -> None:
        step, out = offset + int(s.step), log(s)
        if opts.save_every and int(s.step) % opts.save_every == 0 and int(s.step) < steps:
            if snapshot is not None:
                snapshot(step, finish(out / 255.0))
            if checkpoint is not None:
                save(s)

    stops = optimize.boundaries(steps, opts.print_every, opts.save_every)
    try:
        state = optimize.run(problem.chunk, state, data, stops, on_stop,
                             # a tiled step takes minutes: answer Ctrl-C after each
                             1 if opts.tile > 1 else optimize.INTERRUPT_EVERY)
    except optimize.Interrupted as e:
        if checkpoint is None:
            raise Stopped(offset, None) from None
        if not history or history[-1]["step"] < offset + int(e.state.step):
            log(e.state)  # between progress points: the history gets this step too
        save(e.state)
        raise Stopped(offset + int(e.state.step), checkpoint) from None
    image = np.clip(np.asarray(state.good_image if bool(state.failed) else state.image),
                    0.0, 255.0)
    return Progressed(state, image)


def precision(opts: RunOptions) -> str:
    """The network's precision a run uses: `opts.precision`, with auto resolved by the
    backend (bfloat16 on GPUs and TPUs, whose matrix units reach their peak only in it;
    float32 on CPUs, where it measured no faster: README, Print resolution)."""
    if opts.precision != "auto":
        return opts.precision
    return "float32" if jax.default_backend() == "cpu" else "bfloat16"


def style_targets_gib(styles: list[np.ndarray], opts: RunOptions, deepest: str | None,
                      tiles: int) -> float:
    """Estimated peak memory (GiB) of computing the style targets: one style image's network
    activations at a time, at `style_edge(opts)`, cut into the level's `tiles` per side."""
    def one(h, w):
        if tiles > 1:
            h, w = tiles_lib.plan(h, w, (tiles, tiles), deepest).window
        return memory.features_gib(h, w)
    shapes = [image_lib.fit_edge(*s.shape[:2], style_edge(opts)) for s in styles]
    return memory.BASE_GIB + max((one(h, w) for h, w in shapes), default=0.0)


MAX_TILES = 16  # tiles per side that automatic tiling tries
AUTO_TILE_SHARE = 0.75  # automatic tiling fits its estimate in this share of the free memory


def level_gib(height: int, width: int, opts: RunOptions, deepest: str | None, tiles: int
              ) -> float:
    """Estimated peak memory (GiB) of one H x W level, cut into `tiles` x `tiles` tiles, its
    network in `precision(opts)`."""
    window = None if tiles <= 1 else tiles_lib.plan(height, width, (tiles, tiles), deepest).window
    return memory.pixel_run_gib(height, width, opts.optimizer, opts.lbfgs_memory, window,
                                precision(opts))


def tiles_used(shape: tuple[int, int], tiles: int, deepest: str | None) -> list[int]:
    """[rows, columns] of the tiles an H x W level is cut into when `tiles` per side are asked
    (fewer where the pooling grid allows fewer: jstyle.ops.tiles.plan), for the record."""
    return [1, 1] if tiles <= 1 else list(tiles_lib.plan(*shape, (tiles, tiles), deepest).grid)


def tile_count(height: int, width: int, opts: RunOptions, deepest: str | None,
               available: float) -> int:
    """Tiles per side for an H x W level: 1 for a method that cannot tile (`deepest` None);
    `opts.tile` if given; else the fewest whose memory estimate fits in AUTO_TILE_SHARE of
    `available` GiB (leaving room for the rest of the machine), MAX_TILES at most."""
    if deepest is None or opts.tile:
        return max(1, opts.tile) if deepest else 1
    for tiles in range(1, MAX_TILES):
        if level_gib(height, width, opts, deepest, tiles) <= AUTO_TILE_SHARE * available:
            return tiles
    return MAX_TILES


def run(method: str, validate: Callable, setup: Callable, content: np.ndarray,
        styles: list[np.ndarray], hp, opts: RunOptions, weights: VGGWeights,
        key: jax.Array | None = None, *, labels: masks.Labels | None = None,
        init: np.ndarray | None = None,
        snapshot: Callable[[int, np.ndarray], None] | None = None,
        checkpoint: pathlib.Path | None = None, progress: bool = True,
        extra_memory: Callable[..., float] | None = None, deepest: str | None = None
        ) -> Result:
    """A pixel-optimising method's run: validated once, colour control, then coarse to fine,
    each pyramid level starting from the previous level's result, upsampled, with its
    objective built at its own size (levels of one size share one compiled program).

    Args:
      method: the method's name, for the record and the progress line.
      validate: the method's validate(hp, opts, number of styles), called first.
      setup: the method's setup(content, styles, hp, level options, weights, key, *, init,
        labels) -> Problem for one level; it gets the images after colour control
        (`prepare_colors`, float[H, W, 3] in [0, 1]) and, as init, the previous level's result
        (float[h, w, 3] in 8-bit levels) or None.
      content: float32[H, W, 3] in [0, 1], any size (resized to `opts.size` on the longer edge).
      styles: one or more float32[H_i, W_i, 3] in [0, 1] (resized to style_scale * size).
      hp: the method's hyperparameters (a dataclass), recorded.
      opts: the run's options.
      weights: VGG-19 weights (jstyle.nets.weights.load), recorded by digest.
      key: PRNG key for the noise init (default: `jax.random.key(opts.seed)`).
      labels: semantic regions of content and styles (masks.match), or None.
      init: the starting image, float[h, w, 3] in [0, 1] (any size), instead of `opts.init`.
      snapshot: called as snapshot(step, image in [0, 1]) every `opts.save_every` steps (steps
        count across pyramid levels).
      checkpoint: where to save a resumable checkpoint every `opts.save_every` steps; a matching
        checkpoint found there is resumed from, at its pyramid level.
      progress: report progress (bar or log lines) every `opts.print_every` steps.
      extra_memory: the method's memory besides the network's, GiB, as
        extra_memory(hp, opts, content (h, w), style shapes), for the memory check.
      deepest: the deepest layer of the Gatys objective (jstyle.objective) when the method
        optimises it: its levels are then cut into `tile_count` tiles (its `loss_terms` takes
        `tiles_grid`, jstyle.ops.tiles) and its network runs in `precision(opts)`; None: the
        method supports neither (--tile and --precision=bfloat16 are errors).
    Returns:
      Result with images {"output": float32[H, W, 3] in [0, 1]}, the record and the history.
    Raises:
      InputError: bad options, a checkpoint that cannot be resumed, or a run that would need
        more memory than is available (memory.check).
    """
    started = time.perf_counter()
    validate(hp, opts, len(styles))
    if deepest is None and (opts.tile > 1 or opts.precision == "bfloat16"):
        raise InputError(f"--tile and --precision=bfloat16 are for the Gatys objective, and "
                         f"{method} does not use it; leave --tile at 0 and --precision at auto")
    network = precision(opts) if deepest else "float32"
    levels = pyramid(opts)
    shapes = [image_lib.fit_edge(*content.shape[:2], size) for size, _ in levels]
    estimated = dataclasses.replace(opts, precision=network)
    grids = [tile_count(h, w, estimated, deepest, memory.available_gib()) for h, w in shapes]
    h, w = shapes[-1]
    memory_entry = memory.require(
        max(level_gib(h, w, estimated, deepest, grids[-1]),
            style_targets_gib(styles, opts, deepest, grids[-1]))
        + (extra_memory(hp, opts, (h, w), [s.shape for s in styles]) if extra_memory else 0.0),
        "lower --size or --style_scale, or use --optimizer=adam or a smaller --lbfgs_memory"
        + (", or give more --tile" if deepest else ""))
    key = jax.random.key(opts.seed) if key is None else key
    work_content, work_styles = prepare_colors(content, styles, opts)
    record = start_record(method, hp, opts, weights, content, styles, labels, init)
    saved = saved_run(checkpoint, record)
    first_level = saved["level"] if saved else 0
    history: list[dict] = list(saved["history"]) if saved else []
    resumed_from = saved["step"] if saved else 0

    bar = Progress(sum(steps for _, steps in levels), method, enabled=progress)
    image = None if init is None else image_lib.to_levels(np.asarray(init, np.float32))
    initial_terms = saved.get("initial_loss") if saved else None
    offset = sum(steps for _, steps in levels[:first_level])
    for level, (size, steps) in enumerate(levels[first_level:], start=first_level):
        problem = setup(work_content, work_styles, hp,
                        dataclasses.replace(opts, size=size, steps=steps, tile=grids[level],
                                            precision=network),
                        weights, key, init=image, labels=labels)
        if initial_terms is None:
            initial_terms = _floats(problem.terms(jnp.asarray(problem.init), problem.data))
        done = optimise(problem, steps, opts, level=level, offset=offset,
                        record={**record, "initial_loss": initial_terms}, history=history,
                        bar=bar, resume=saved is not None and level == first_level,
                        snapshot=snapshot, checkpoint=checkpoint,
                        finish=lambda out: finish_colors(out, content, opts))
        image, state = done.image, done.state
        offset += int(state.step)
        if bool(state.failed):
            break
    bar.close()

    final_terms = _floats(problem.terms(jnp.asarray(image), problem.data))
    failed = bool(state.failed)
    stopped = "nan" if failed else "converged" if bool(state.converged) else "steps"
    record.update({
        "size": list(problem.content.shape[:2]),
        "style_sizes": [list(s.shape[:2]) for s in problem.styles],
        "initial_loss": initial_terms, "final_loss": final_terms, "steps": offset,
        "resumed_from_step": resumed_from, "stopped": stopped,
        "memory": memory.measured(memory_entry),
        "tiles": [tiles_used(shape, g, deepest) for shape, g in zip(shapes, grids)],
        "precision": network,
        "seconds": time.perf_counter() - started})
    if problem.blend is not None:
        record["style_blend_weights"] = problem.blend
    if labels is not None:
        record["regions"] = [{"color": [round(float(v)) for v in c],
                              "styles": [i for i in range(len(styles)) if labels.present[i, r]]}
                             for r, c in enumerate(labels.colors)]
    output = finish_colors(image / 255.0, content, opts).astype(np.float32)
    return Result(images={"output": output}, record=record, history=history)
