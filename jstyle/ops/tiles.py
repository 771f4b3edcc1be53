"""Exact tiled objectives: the value and gradient of a loss built from sums over positions,
computed one tile at a time, so that the peak memory is one tile's activations (plus the
image, its gradient and the optimiser's state) instead of the whole image's.

A loss of this kind is L(x) = finish(S(x), x), where the statistics S(x) are sums over the
positions of feature maps (a content loss's squared differences, a Gram matrix's outer
products, a histogram loss's feature map placed at its positions). Cut the image into tiles:
each tile's *core* is a disjoint part of the image, and its *window* is the core plus a margin
of the deepest layer's receptive radius (`vgg.receptive_radius`), on that layer's pooling
grid. A network's features of the window equal the whole image's at every core position, so

  pass 1 (forward only):  S = sum over tiles k of S_k, S_k from tile k's window with only its
                          core positions counted;
  pass 2 (the gradient):  dL/dS from `finish`, then each tile's vector-Jacobian product with
                          dL/dS held fixed, added into the image gradient over its window.

Both are exact, not approximations: the tiled value and gradient equal the whole image's up
to float rounding (tests/test_tiles.py). Every window has the same shape, so one compiled
body runs every tile inside `lax.scan`. A gradient costs one more forward pass than the
whole image's (pass 1), plus the margins' share of each window.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jstyle.nets import vgg
from jstyle.errors import InputError


class Plan(NamedTuple):
    """How an H x W image is cut into tiles (all in pixels of the image)."""
    shape: tuple[int, int]  # the image's H, W
    grid: tuple[int, int]  # tiles down and across
    window: tuple[int, int]  # every tile's window, H_w x W_w
    starts: np.ndarray  # int32[T, 2], each window's top-left corner
    cores: np.ndarray  # int32[T, 4], each tile's core: rows [r0, r1), columns [c0, c1)

    @property
    def count(self) -> int:
        return self.grid[0] * self.grid[1]


class Tile(NamedTuple):
    """One tile inside the scan (traced values)."""
    start: jax.Array  # int32[2], the window's top-left corner, px
    core: jax.Array  # int32[4], the core's rows [r0, r1) and columns [c0, c1), px


def _axis(length: int, parts: int, align: int, margin: int) -> tuple[int, list[int], list[int]]:
    """Cuts one axis: (window length, window starts, core boundaries). Core boundaries and
    window starts lie on multiples of `align`; the window length keeps the last window's end
    at `length` (so it is congruent to `length` modulo `align`, or all of it)."""
    bounds = sorted({0, length} | {min(length, round(length * k / parts / align) * align)
                                   for k in range(1, parts)})
    extent = max(min(length, b1 + margin) - max(0, b0 - margin)
                 for b0, b1 in zip(bounds, bounds[1:]))
    window = length - (length - extent) // align * align
    starts = [min(max(0, b0 - margin), length - window) for b0 in bounds[:-1]]
    return window, starts, bounds


def plan(height: int, width: int, grid: tuple[int, int], deepest: str) -> Plan:
    """The tiles of an H x W image in a `grid` (rows, columns) for a network read up to layer
    `deepest`. A grid finer than the pooling grid allows is coarsened (a core is at least one
    cell of `2**pools(deepest)` px).

    Raises:
      InputError: a grid below 1 x 1.
    """
    if min(grid) < 1:
        raise InputError(f"--tile={min(grid)} must be >= 1; give a tile count such as 2 (or 0 "
                         "to choose it from the memory available)")
    align = 2 ** vgg.pools(deepest)
    margin = math.ceil(vgg.receptive_radius(deepest) / align) * align
    rows = _axis(height, min(grid[0], max(1, height // align)), align, margin)
    cols = _axis(width, min(grid[1], max(1, width // align)), align, margin)
    starts, cores = [], []
    for (r0, r1), sr in zip(zip(rows[2], rows[2][1:]), rows[1]):
        for (c0, c1), sc in zip(zip(cols[2], cols[2][1:]), cols[1]):
            starts.append((sr, sc))
            cores.append((r0, r1, c0, c1))
    return Plan((height, width), (len(rows[1]), len(cols[1])), (rows[0], cols[0]),
                np.asarray(starts, np.int32), np.asarray(cores, np.int32))


# ---------------------------------------------------------------------------------------------
# What a statistics function uses to read a tile: each is the identity when tile is None (the
# whole image, untiled), so one function serves both.

def core_mask(tile: Tile | None, pools: int, shape: tuple[int, int]) -> jax.Array | None:
    """float32[h, w]: 1 at the positions of a window's layer map (`pools` poolings down, shape
    h x w) inside the tile's core, else 0 (None for the whole image: every position counts)."""
    if tile is None:
        return None
    first = tile.start >> pools
    rows = first[0] + jnp.arange(shape[0])
    cols = first[1] + jnp.arange(shape[1])
    core = tile.core >> pools
    inside_r = (rows >= core[0]) & (rows < core[1])
    inside_c = (cols >= core[2]) & (cols < core[3])
    return (inside_r[:, None] & inside_c[None, :]).astype(jnp.float32)


def window_of(tile: Tile | None, pools: int, full: jax.Array, shape: tuple[int, int]
              ) -> jax.Array:
    """The part of a whole-image layer map under a tile's window: full [..., H_l, W_l, ...]
    with its spatial axes first (`[H_l, W_l, ...]`) -> [h, w, ...] (the window's map shape)."""
    if tile is None:
        return full
    first = tile.start >> pools
    index = (first[0], first[1]) + (0,) * (full.ndim - 2)
    return jax.lax.dynamic_slice(full, index, tuple(shape) + full.shape[2:])


def place(tile: Tile | None, pools: int, values: jax.Array, image_shape: tuple[int, int]
          ) -> jax.Array:
    """A whole-image layer map (float[H >> pools, W >> pools, C] for an H x W image, zeros
    elsewhere) holding a window's layer map `values` (float[h, w, C]) at the tile's core
    positions, so that the sum over tiles is the whole image's map."""
    if tile is None:
        return values
    mask = core_mask(tile, pools, values.shape[:2])
    first = tile.start >> pools
    full_shape = (image_shape[0] >> pools, image_shape[1] >> pools, values.shape[-1])
    return jax.lax.dynamic_update_slice(jnp.zeros(full_shape, values.dtype),
                                        values * mask[..., None], (first[0], first[1], 0))


# ---------------------------------------------------------------------------------------------

Statistics = Callable[[jax.Array, Any, Tile | None], Any]  # (window, data, tile) -> pytree
Finish = Callable[[Any, jax.Array, Any], Any]  # (statistics, image, data) -> outputs


def _tile(plan: Plan, k: jax.Array) -> Tile:
    return Tile(jnp.asarray(plan.starts)[k], jnp.asarray(plan.cores)[k])


def _window(image: jax.Array, plan: Plan, tile: Tile) -> jax.Array:
    return jax.lax.dynamic_slice(image, (tile.start[0], tile.start[1], 0),
                                 plan.window + image.shape[2:])


def accumulate(statistics: Statistics, image: jax.Array, data: Any, plan: Plan) -> Any:
    """Pass 1: the sum over tiles of `statistics(window, data, tile)` (forward only).

    image: float32[H, W, C], H x W = plan.shape. Returns the statistics' pytree.
    """
    first = _tile(plan, 0)
    spec = jax.eval_shape(statistics, _window(image, plan, first), data, first)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), spec)

    def add(total, k):
        tile = _tile(plan, k)
        part = statistics(_window(image, plan, tile), data, tile)
        return jax.tree.map(jnp.add, total, part), None
    return jax.lax.scan(add, zeros, jnp.arange(plan.count))[0]


def tiled(statistics: Statistics, finish: Finish, plan: Plan) -> Callable[[jax.Array, Any], Any]:
    """`f(image, data) = finish(accumulate(statistics, image, data, plan), image, data)`,
    differentiable in `image` by the two passes (the module docstring); `data` gets no
    gradient.

    statistics: (window float32[H_w, W_w, C], data, tile) -> a pytree of sums over the
      tile's core positions (read the tile with `core_mask`, `window_of`, `place`).
    finish: (the summed statistics, image float32[H, W, C], data) -> the outputs (a pytree of
      float arrays, e.g. the loss terms), which may also depend on the image directly (a
      total-variation term).
    """
    @jax.custom_vjp
    def f(image, data):
        return finish(accumulate(statistics, image, data, plan), image, data)

    def forward(image, data):
        totals = accumulate(statistics, image, data, plan)
        return finish(totals, image, data), (image, data, totals)

    def backward(residuals, cotangent):
        image, data, totals = residuals
        _, pull = jax.vjp(lambda s, x: finish(s, x, data), totals, image)
        d_totals, d_image = pull(cotangent)

        def add(grad, k):
            tile = _tile(plan, k)
            window = _window(image, plan, tile)
            _, pull_tile = jax.vjp(lambda w: statistics(w, data, tile), window)
            index = (tile.start[0], tile.start[1], 0)
            old = jax.lax.dynamic_slice(grad, index, window.shape)
            return jax.lax.dynamic_update_slice(grad, old + pull_tile(d_totals)[0], index), None
        d_image = jax.lax.scan(add, d_image, jnp.arange(plan.count))[0]
        return d_image, None

    f.defvjp(forward, backward)
    return f
