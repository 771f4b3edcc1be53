"""Coarse to fine (Gatys et al. 2017): the pixel-optimising methods' loop over pyramid levels,
each level starting from the previous level's result, upsampled, with its objective built at
its own size (levels of one size share one compiled program); and how a level is sized in
memory and cut into tiles.

A method supplies `setup` (one level's Problem: `level_setup` makes it from the method's
`prepare_data` and `loss_terms`) and calls `run` from its own `run`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jstyle import image as image_lib
from jstyle.engine.kinds import Image, Images, Labels
from jstyle.engine.images import finish_colors, prepare_colors, start_image
from jstyle.engine.options import RunOptions, precision, pyramid, style_edge
from jstyle.engine.program import Problem, make_problem
from jstyle.engine import session as session_lib
from jstyle.engine.session import Result, Session, floats, stop_reason
from jstyle.errors import InputError
from jstyle.nets.weights import VGGWeights
from jstyle.ops import masks
from jstyle.ops import tiles as tiles_lib
from jstyle.system import memory


class Inputs(NamedTuple):
    """What a pixel-optimising method takes."""
    content: Image  # float32[H, W, 3] in [0, 1], any size (resized to --size)
    styles: Images  # float32[H_i, W_i, 3] in [0, 1] each (resized to style_scale * size)
    labels: Labels | None = None  # semantic regions of content and styles (masks.match)
    init: Image | None = None  # the starting image, float[h, w, 3] in [0, 1], any size,
    #   instead of --init


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


def made(method: str, hp, opts: RunOptions, weights: VGGWeights, inputs: Inputs,
         levels: list[tuple[int, int]]) -> dict:
    """What makes a pixel run (the record's first part, which a checkpoint must match): the
    method, its settings, the inputs' digest (content, styles, label maps, the start) and the
    levels."""
    labels = inputs.labels
    extra = [] if labels is None else [labels.content, *labels.styles]
    if inputs.init is not None:
        extra.append(np.asarray(inputs.init))
    elif opts.init not in ("content", "noise", "style"):
        extra.append(image_lib.load(opts.init))
    return session_lib.made(method, hp, opts, weights, [inputs.content, *inputs.styles, *extra],
                            levels=[{"size": size, "steps": steps} for size, steps in levels])


def _plan(inputs: Inputs, opts: RunOptions, deepest: str | None, method: str):
    """(levels, their shapes, tiles per side, `opts` with the network's precision resolved)
    of a run."""
    if deepest is None and (opts.tile > 1 or opts.precision == "bfloat16"):
        raise InputError(f"--tile and --precision=bfloat16 are for the Gatys objective, and "
                         f"{method} does not use it; leave --tile at 0 and --precision at auto")
    network = precision(opts) if deepest else "float32"
    levels = pyramid(opts)
    shapes = [image_lib.fit_edge(*inputs.content.shape[:2], size) for size, _ in levels]
    estimated = dataclasses.replace(opts, precision=network)
    grids = [tile_count(h, w, estimated, deepest, memory.available_gib()) for h, w in shapes]
    return levels, shapes, grids, estimated


def run(method: str, setup: Callable, inputs: Inputs, hp, opts: RunOptions,
        weights: VGGWeights, key: jax.Array, *, session: Session,
        extra_memory: Callable[..., float] | None = None, deepest: str | None = None
        ) -> Result:
    """A pixel-optimising method's run, coarse to fine: colour control, then each level
    optimised from the previous level's result, upsampled (its options already validated).

    Args:
      method: the method's name, for the record and the progress line.
      setup: the method's setup(content, styles, hp, level options, weights, key, *, init,
        labels) -> Problem for one level; it gets the images after colour control
        (`prepare_colors`, float[H, W, 3] in [0, 1]) and, as init, the previous level's result
        (float[h, w, 3] in 8-bit levels) or None.
      key: PRNG key of the noise init.
      extra_memory: the method's memory besides the network's, GiB, as
        extra_memory(hp, opts, content (h, w), style shapes), for the memory check.
      deepest: the deepest layer of the Gatys objective (jstyle.objective) when the method
        optimises it: its levels are then cut into `tile_count` tiles and its network runs in
        `precision(opts)`; None: the method supports neither.
    Returns:
      Result with images {"output": float32[H, W, 3] in [0, 1]}, the record and the history.
    Raises:
      InputError: a checkpoint that cannot be resumed, or a run that would need more memory
        than is available.
      Stopped: Ctrl-C or SIGTERM (the state is in the session's checkpoint).
    """
    content, styles = inputs.content, inputs.styles
    levels, shapes, grids, estimated = _plan(inputs, opts, deepest, method)
    h, w = shapes[-1]
    session.require(
        max(level_gib(h, w, estimated, deepest, grids[-1]),
            style_targets_gib(styles, opts, deepest, grids[-1]))
        + (extra_memory(hp, opts, (h, w), [s.shape for s in styles]) if extra_memory else 0.0),
        "lower --size or --style_scale, or use --optimizer=adam or a smaller --lbfgs_memory"
        + (", or give more --tile" if deepest else ""))
    work_content, work_styles = prepare_colors(content, styles, opts)
    total = sum(steps for _, steps in levels)
    saved = session.begin(made(method, hp, opts, weights, inputs, levels), total=total)
    session.within(saved, total)
    first = saved["level"] if saved else 0
    initial = saved.get("initial_loss") if saved else None
    image = None if inputs.init is None else image_lib.to_levels(np.asarray(inputs.init,
                                                                             np.float32))
    taken = saved.get("taken", 0) if saved else 0  # steps the earlier levels took
    for level, (size, steps) in enumerate(levels[first:], start=first):
        level_opts = dataclasses.replace(estimated, size=size, steps=steps, tile=grids[level])
        problem = setup(work_content, work_styles, hp, level_opts, weights, key, init=image,
                        labels=inputs.labels)
        if initial is None:
            initial = floats(problem.terms(jnp.asarray(problem.init), problem.data))
        # steps count as planned across levels (snapshot names, progress), even where an
        # earlier level converged sooner
        done = session.optimise(problem, steps, level_opts, level=level,
                                offset=sum(n for _, n in levels[:level]),
                                position={"initial_loss": initial, "taken": taken},
                                resume=saved is not None and level == first,
                                finish=lambda out: finish_colors(out, content, opts))
        image, state = done.image, done.state
        taken += int(state.step)
        if bool(state.failed):
            break
    return session.result(
        {"output": finish_colors(image / 255.0, content, opts).astype(np.float32)},
        **_outcome(problem, image, state, initial, taken, saved, inputs),
        tiles=[tiles_used(shape, g, deepest) for shape, g in zip(shapes, grids)],
        precision=estimated.precision)


def _outcome(problem: Problem, image: np.ndarray, state, initial: dict, steps: int,
             saved: dict | None, inputs: Inputs) -> dict:
    """The record's account of a finished run: sizes, losses, steps, why it stopped, and the
    style blend and semantic regions it used."""
    found = {"size": list(problem.content.shape[:2]),
             "style_sizes": [list(s.shape[:2]) for s in problem.styles],
             "initial_loss": initial,
             "final_loss": floats(problem.terms(jnp.asarray(image), problem.data)),
             "steps": steps, "resumed_from_step": saved["step"] if saved else 0,
             "stopped": stop_reason(state)}
    if problem.blend is not None:
        found["style_blend_weights"] = problem.blend
    labels = inputs.labels
    if labels is not None:
        found["regions"] = [{"color": [round(float(v)) for v in c],
                             "styles": [i for i in range(len(inputs.styles))
                                        if labels.present[i, r]]}
                            for r, c in enumerate(labels.colors)]
    return found
