"""How a run is carried out, apart from its objective: the run options, split by role, and
their checks. Below the objective and the methods, which import them; the command derives a
flag from every field.

  SizeOptions        sizes and colour: --size, --style_scale, colour control, the pyramid,
                     tiles and the network's precision
  OptimizerOptions   the optimiser: steps, optax's L-BFGS or Adam, the start, when to stop
  ReportOptions      reporting: progress and snapshots
  RunOptions         all three (what a method's presets hold); GROUPS names them, so that a
                     method declares the groups (or single fields) it reads
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np

from jstyle import image as image_lib
from jstyle.engine import optimize
from jstyle.errors import InputError
from jstyle.nets import vgg
from jstyle.ops import masks
from jstyle.params import field

PRESERVE_COLORS = ("none", "luminance", "match", "original")
COLOR_MATCH_MODES = ("pca", "chol", "sym")
IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)  # VGG's mean pixel, 8-bit levels, RGB
MAX_SIZE = 16384  # px: a Gatys run at this size needs about 0.8 TB, more than any one device


@dataclasses.dataclass(frozen=True)
class SizeOptions:
    """The images' sizes, colours and how the network computes them. Each field is a flag of the
    `jstyle` command with this help text; its default is the preset's."""
    size: int = field(512, "Longer edge of the output, pixels.")
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
    pyramid_min_size: int = field(0, "Leave out the pyramid levels smaller than this many "
                                  "pixels, with their steps, so that a small --size runs fewer "
                                  "levels (0: every level).")
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


@dataclasses.dataclass(frozen=True)
class OptimizerOptions:
    """Where the optimisation starts, its optimiser and when it stops. Each field is a flag of the
    `jstyle` command with this help text; its default is the preset's."""
    steps: int = field(500, "Optimiser steps (per pyramid level): L-BFGS iterations or Adam "
                       "steps.")
    pyramid_steps: tuple[int, ...] | None = field(
        None, "Steps per pyramid level, coarsest first (default: --steps at every level).",
        kind="ints")
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
    tol: float = field(1e-7, "Stop when the loss changes by less than this, relatively, over "
                       "--tol_interval steps (0: never).")
    tol_interval: int = field(1, "Steps between the loss comparisons of --tol.")


@dataclasses.dataclass(frozen=True)
class ReportOptions:
    """What a run reports and keeps while it goes. Each field is a flag of the
    `jstyle` command with this help text; its default is the preset's."""
    print_every: int = field(50, "Report progress every N steps (0: off).")
    save_every: int = field(0, "Write OUTPUT_<step>.png and a resumable checkpoint every N "
                            "steps (0: off).")



@dataclasses.dataclass(frozen=True)
class RunOptions(ReportOptions, OptimizerOptions, SizeOptions):
    """How a run is carried out (not part of the objective): every group's fields."""


GROUPS = {"sizing": SizeOptions, "optimising": OptimizerOptions, "reporting": ReportOptions}


def fields_of(names: tuple[str, ...]) -> tuple[str, ...]:
    """The RunOptions fields that `names` declares: group names (GROUPS) stand for their
    fields, other names for themselves; in RunOptions' order."""
    wanted = set()
    for name in names:
        wanted |= ({f.name for f in dataclasses.fields(GROUPS[name])} if name in GROUPS
                   else {name})
    return tuple(f.name for f in dataclasses.fields(RunOptions) if f.name in wanted)


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
    check_at_least({"pyramid_min_size": opts.pyramid_min_size}, 0, "give a size in pixels, or 0 "
                   "to keep every level")
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
    """(longer edge, steps) of each level, coarsest first, but for the levels below
    `opts.pyramid_min_size`; the last is (size, steps)."""
    steps = opts.pyramid_steps or (opts.steps,) * opts.pyramid_levels
    levels = [(max(1, round(opts.size / opts.pyramid_ratio ** (opts.pyramid_levels - 1 - k))),
               steps[k]) for k in range(opts.pyramid_levels)]
    return [level for level in levels[:-1] if level[0] >= opts.pyramid_min_size] + levels[-1:]


def resize_inputs(content: np.ndarray, styles: list[np.ndarray], opts: RunOptions
                  ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Content at `opts.size` and styles at `style_scale * size` on the longer edge: float[.., 3]
    in [0, 1] -> float32 in 8-bit levels."""
    return (image_lib.to_levels(image_lib.resize_to_edge(content, opts.size)),
            [image_lib.to_levels(image_lib.resize_to_edge(s, style_edge(opts))) for s in styles])


def style_edge(opts: RunOptions) -> int:
    """The style images' longer edge, px: `style_scale * size`."""
    return max(1, round(opts.size * opts.style_scale))


def precision(opts: RunOptions) -> str:
    """The network's precision a run uses: `opts.precision`, with auto resolved by the
    backend (bfloat16 on GPUs and TPUs, whose matrix units reach their peak only in it;
    float32 on CPUs, where it measured no faster: README, Print resolution)."""
    if opts.precision != "auto":
        return opts.precision
    return "float32" if jax.default_backend() == "cpu" else "bfloat16"

