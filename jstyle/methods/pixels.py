"""What the methods that optimise an image's pixels share (Gatys, CNNMRF, ...).

Run options and their validation, the initial image, colour control (Gatys et al. 2017), and
`run`: the coarse-to-fine loop over pyramid levels with progress, snapshots, checkpoints and
resume. A method supplies `setup`, which builds one level's `Problem` (its objective,
compiled chunk and first state), and `validate`; everything else is here.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jstyle import image as image_lib
from jstyle import masks, optimize, results
from jstyle.errors import InputError
from jstyle.progress import Progress
from jstyle.weights import VGGWeights

PRESERVE_COLORS = ("none", "luminance", "match", "original")
COLOR_MATCH_MODES = ("pca", "chol", "sym")
IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)  # VGG's mean pixel, 8-bit levels, RGB


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How a run is carried out (not part of the objective)."""
    size: int = 512  # longer edge of the output, pixels
    steps: int = 500  # optimiser steps (L-BFGS iterations or Adam steps)
    optimizer: str = "lbfgs"  # "lbfgs" or "adam"
    learning_rate: float = 4.0  # Adam step size in 8-bit levels (L-BFGS without line search:
    #   the step along its direction)
    lbfgs_memory: int = 10  # L-BFGS history length
    linesearch: str = "zoom"  # L-BFGS line search: zoom or none (optimize.make_optimizer)
    init: str = "content"  # "content", "noise", "style" or an image path
    init_noise: float = 8.0  # std of the noise init around the mean pixel, 8-bit levels
    seed: int = 0
    style_scale: float = 1.0  # style images' longer edge = style_scale * size
    style_blend_weights: tuple[float, ...] | None = None  # one per style; normalised to sum 1
    preserve_colors: str = "none"  # one of PRESERVE_COLORS, see `prepare_colors`
    color_match_mode: str = "pca"  # matrix root of --preserve_colors=match: pca, chol or sym
    pyramid_levels: int = 1  # coarse-to-fine levels; the last is `size`
    pyramid_ratio: float = 2.0  # size ratio between consecutive levels
    pyramid_steps: tuple[int, ...] | None = None  # steps per level, coarsest first (default:
    #   `steps` at every level)
    remat: bool = False  # rematerialise VGG blocks (jax.checkpoint); slower, and on XLA:CPU
    #   no smaller (its buffer assignment sums the blocks' working sets)
    unmatched: str = "error"  # a content region missing from every style mask: error or global
    tol: float = 1e-7  # stop when the loss changes by less than this, relatively (0: never)
    print_every: int = 50
    save_every: int = 0  # snapshot (and checkpoint) every N steps; 0: never


def check_nonnegative(named: dict[str, list]) -> None:
    """InputError unless every value of every `--name` is finite and >= 0."""
    for name, values in named.items():
        for v in values:
            if not math.isfinite(float(v)) or float(v) < 0:
                raise InputError(f"--{name}={v} is invalid; weights must be finite and >= 0")


def validate_options(opts: RunOptions, num_styles: int) -> None:
    """Raises InputError for run options that cannot work, naming the fix."""
    check_nonnegative({"style_blend_weights": opts.style_blend_weights or [1.0],
                       "style_scale": [opts.style_scale], "init_noise": [opts.init_noise],
                       "learning_rate": [opts.learning_rate], "tol": [opts.tol]})
    if opts.style_blend_weights is not None:
        if len(opts.style_blend_weights) != num_styles:
            raise InputError(f"{len(opts.style_blend_weights)} --style_blend_weights for "
                             f"{num_styles} style images; give one weight per style image")
        if sum(opts.style_blend_weights) <= 0:
            raise InputError("--style_blend_weights sum to 0; give at least one positive weight")
    if opts.style_scale <= 0:
        raise InputError(f"--style_scale={opts.style_scale} must be > 0")
    if opts.optimizer not in optimize.OPTIMIZERS:
        raise InputError(f"unknown optimizer {opts.optimizer!r}; use lbfgs or adam")
    for name, value, allowed in (("preserve_colors", opts.preserve_colors, PRESERVE_COLORS),
                                 ("color_match_mode", opts.color_match_mode, COLOR_MATCH_MODES),
                                 ("linesearch", opts.linesearch, optimize.LINESEARCHES),
                                 ("unmatched", opts.unmatched, masks.UNMATCHED)):
        if value not in allowed:
            raise InputError(f"unknown --{name}={value}; use one of {', '.join(allowed)}")
    for name in ("size", "steps", "lbfgs_memory", "pyramid_levels"):
        if getattr(opts, name) < 1:
            raise InputError(f"--{name}={getattr(opts, name)} must be >= 1")
    for name in ("print_every", "save_every"):
        if getattr(opts, name) < 0:
            raise InputError(f"--{name}={getattr(opts, name)} must be >= 0")
    if not opts.pyramid_ratio > 1:
        raise InputError(f"--pyramid_ratio={opts.pyramid_ratio} must be > 1")
    if opts.pyramid_steps is not None and (len(opts.pyramid_steps) != opts.pyramid_levels
                                           or min(opts.pyramid_steps) < 1):
        raise InputError(f"--pyramid_steps needs {opts.pyramid_levels} step counts >= 1, one "
                         "per --pyramid_levels, coarsest first")


def pyramid(opts: RunOptions) -> list[tuple[int, int]]:
    """(longer edge, steps) of each level, coarsest first; the last is (size, steps)."""
    steps = opts.pyramid_steps or (opts.steps,) * opts.pyramid_levels
    return [(max(1, round(opts.size / opts.pyramid_ratio ** (opts.pyramid_levels - 1 - k))),
             steps[k]) for k in range(opts.pyramid_levels)]


def resize_inputs(content: np.ndarray, styles: list[np.ndarray], opts: RunOptions
                  ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Content at `opts.size` and styles at `style_scale * size` on the longer edge: float[.., 3]
    in [0, 1] -> float32 in 8-bit levels."""
    style_edge = max(1, round(opts.size * opts.style_scale))
    return (image_lib.to_levels(image_lib.resize_to_edge(content, opts.size)),
            [image_lib.to_levels(image_lib.resize_to_edge(s, style_edge)) for s in styles])


def initial_image(key: jax.Array, init: str, content: np.ndarray, styles: list[np.ndarray],
                  noise: float) -> np.ndarray:
    """The starting image, float32[H, W, 3] in 8-bit levels, the size of `content`.

    init: "content"; "noise" (the mean pixel plus `noise` x N(0, 1) per pixel); "style" (the
    first style image resized to the content's size); or the path of an image file.
    """
    h, w, _ = content.shape
    if init == "content":
        return content
    if init == "noise":
        normal = np.asarray(jax.random.normal(key, content.shape, jnp.float32))
        return np.asarray(IMAGENET_MEAN_RGB, np.float32) + noise * normal
    if init == "style":
        source = styles[0] / 255.0
    else:
        source = image_lib.load(init)
    return image_lib.to_levels(image_lib.resize(source, h, w))


def start_image(key: jax.Array, opts: RunOptions, content: np.ndarray,
                styles: list[np.ndarray], previous: np.ndarray | None) -> np.ndarray:
    """`initial_image` at the first level; later levels start from the previous level's result
    (float[h, w, 3], 8-bit levels), resized to the content's size."""
    if previous is None:
        return initial_image(key, opts.init, content, styles, opts.init_noise)
    return image_lib.to_levels(image_lib.resize(np.clip(previous / 255.0, 0.0, 1.0),
                                                *content.shape[:2]))


class Problem(NamedTuple):
    """One level made ready: the compiled chunk, its first state and the arrays it needs."""
    chunk: Callable  # optimize.make_chunk(...): (state, end, data) -> state
    state: optimize.LoopState  # before the first step
    data: tuple  # the chunk's `data` argument (weights, targets, hyperparameters)
    terms: Callable  # jitted (image, data) -> {term name: float32[], ..., "total": float32[]}
    content: np.ndarray  # float32[H, W, 3], 8-bit levels, resized
    styles: list[np.ndarray]  # float32[H_i, W_i, 3], 8-bit levels, resized
    blend: list[float] | None  # normalised style blend weights (None: the method has none)
    init: np.ndarray  # the initial image, 8-bit levels


def compiled_chunk(objective: Callable, opts: RunOptions, data_axes=None):
    """(optimizer, jitted chunk) for `objective(image, data) -> float[]` with the options'
    optimiser and line search, pixels kept in [0, 255]; `data_axes`: see optimize.make_chunk."""
    optimizer = optimize.make_optimizer(opts.optimizer, opts.learning_rate, opts.lbfgs_memory,
                                        opts.linesearch)
    linesearch = opts.linesearch if opts.optimizer == "lbfgs" and opts.linesearch != "none" \
        else None
    return optimizer, optimize.make_chunk(objective, optimizer, linesearch=linesearch,
                                          tol=opts.tol, bounds=(0.0, 255.0), data_axes=data_axes)


def make_problem(objective: Callable, terms: Callable, data: tuple, opts: RunOptions,
                 content: np.ndarray, styles: list[np.ndarray], blend: list[float] | None,
                 init: np.ndarray) -> Problem:
    """Builds the optimiser and its compiled chunk for `objective(image, data) -> float[]`
    (image float32[H, W, 3] in 8-bit levels, kept in [0, 255])."""
    optimizer, chunk = compiled_chunk(objective, opts)
    return Problem(chunk=chunk, state=optimize.init(optimizer, init), data=data,
                   terms=jax.jit(terms), content=content, styles=styles, blend=blend, init=init)


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


def _inputs_digest(content, styles, labels, opts) -> str:
    extra = [] if labels is None else [labels.content, *labels.styles]
    if opts.init not in ("content", "noise", "style"):
        extra.append(image_lib.load(opts.init))
    return results.array_digest(content, *styles, *extra)


class Result(NamedTuple):
    image: np.ndarray  # float32[H, W, 3] in [0, 1]: the output (last good image on failure)
    record: dict  # how it was made: options, losses, steps, seconds, stop reason
    history: list[dict]  # one entry per progress point: step and each loss term


def _floats(terms: dict) -> dict[str, float]:
    return {k: float(v) for k, v in terms.items()}


def run(method: str, validate: Callable, setup: Callable, content: np.ndarray,
        styles: list[np.ndarray], hp, opts: RunOptions, weights: VGGWeights, key: jax.Array, *,
        labels: masks.Labels | None = None,
        snapshot: Callable[[int, np.ndarray], None] | None = None,
        checkpoint: pathlib.Path | None = None, progress: bool = True) -> Result:
    """A pixel-optimising method's run: optimises an image coarse to fine, each pyramid level
    starting from the previous level's result, upsampled, with its objective built at its own
    size.

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
      weights: VGG-19 weights (jstyle.weights.load), recorded by digest.
      key: PRNG key for the noise init.
      labels: semantic regions of content and styles (masks.match), or None.
      snapshot: called as snapshot(step, image in [0, 1]) every `opts.save_every` steps (steps
        count across pyramid levels).
      checkpoint: where to save a resumable checkpoint every `opts.save_every` steps; a matching
        checkpoint found there is resumed from, at its pyramid level.
      progress: report progress (bar or log lines) every `opts.print_every` steps.
    Returns:
      Result with the image in [0, 1], the run record and the loss history.
    """
    started = time.perf_counter()
    validate(hp, opts, len(styles))
    work_content, work_styles = prepare_colors(content, styles, opts)
    levels = pyramid(opts)
    record = {"method": method, "hyperparameters": dataclasses.asdict(hp),
              "options": dataclasses.asdict(opts), "weights": weights.digest,
              "inputs": _inputs_digest(content, styles, labels, opts),
              "levels": [{"size": size, "steps": steps} for size, steps in levels]}
    saved = optimize.checkpoint_record(checkpoint) if checkpoint is not None else None
    resume_level = saved.get("level", 0) if saved and {**saved, "level": 0} == {
        **json.loads(json.dumps(record)), "level": 0} else 0

    history: list[dict] = []
    bar = Progress(sum(steps for _, steps in levels), method, enabled=progress)
    image, initial_terms, resumed_from = None, None, 0
    offset = sum(steps for _, steps in levels[:resume_level])
    for level, (size, steps) in enumerate(levels):
        if level < resume_level:
            continue
        problem = setup(work_content, work_styles, hp,
                        dataclasses.replace(opts, size=size, steps=steps), weights, key,
                        init=image, labels=labels)
        data, terms_fn, state = problem.data, problem.terms, problem.state
        level_record = {**record, "level": level}
        if level == resume_level and saved:
            resumed = optimize.load_checkpoint(checkpoint, state, level_record)
            if resumed is not None:
                state, resumed_from = resumed, offset + int(resumed.step)
                bar.update(resumed_from, "resumed")
        if initial_terms is None:
            initial_terms = _floats(terms_fn(jnp.asarray(problem.init), data))

        def on_stop(s: optimize.LoopState, offset=offset, steps=steps) -> None:
            step = offset + int(s.step)
            out = np.clip(np.asarray(s.good_image if bool(s.failed) else s.image), 0, 255)
            terms = _floats(terms_fn(jnp.asarray(out), data))
            history.append({"step": step, "level": level, **terms})
            bar.update(step, " ".join(f"{k}={v:.4g}" for k, v in terms.items()))
            if opts.save_every and int(s.step) % opts.save_every == 0 and int(s.step) < steps:
                if snapshot is not None:
                    snapshot(step, finish_colors(out / 255.0, content, opts))
                if checkpoint is not None:
                    optimize.save_checkpoint(checkpoint, s, level_record)

        stops = optimize.boundaries(steps, opts.print_every, opts.save_every)
        state = optimize.run(problem.chunk, state, data, stops, on_stop)
        failed = bool(state.failed)
        image = np.clip(np.asarray(state.good_image if failed else state.image), 0.0, 255.0)
        offset += int(state.step)
        if failed:
            break
    bar.close()

    final_terms = _floats(terms_fn(jnp.asarray(image), data))
    output = finish_colors(image / 255.0, content, opts)
    stopped = "nan" if failed else "converged" if bool(state.converged) else "steps"
    record.update({
        "size": list(problem.content.shape[:2]),
        "style_sizes": [list(s.shape[:2]) for s in problem.styles],
        "initial_loss": initial_terms, "final_loss": final_terms, "steps": offset,
        "resumed_from_step": resumed_from, "stopped": stopped,
        "seconds": time.perf_counter() - started})
    if problem.blend is not None:
        record["style_blend_weights"] = problem.blend
    if labels is not None:
        record["regions"] = [{"color": [round(float(v)) for v in c],
                              "styles": [i for i in range(len(styles)) if labels.present[i, r]]}
                             for r, c in enumerate(labels.colors)]
    return Result(image=output.astype(np.float32), record=record, history=history)
