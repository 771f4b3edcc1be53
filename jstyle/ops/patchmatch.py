"""PatchMatch (Barnes et al. 2009) over any score of a field, every position updated in
parallel, with masks and an initial field: the search under Deep Image Analogy's matching."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jstyle.ops.patches import index_to_field


def _best(score_fn, field, score, candidate, fill, allowed):
    """Keeps, per position to `fill`, the better of the current match and `candidate` (same
    shapes), counting only `allowed` target positions."""
    candidate_score = jnp.where(allowed[candidate[..., 0], candidate[..., 1]],
                                score_fn(candidate), -jnp.inf)
    better = (candidate_score > score) & fill
    return jnp.where(better[..., None], candidate, field), jnp.where(better, candidate_score, score)



def search(key: jax.Array, score_fn: Callable[[jax.Array], jax.Array],
           shape: tuple[int, int], target_shape: tuple[int, int], iterations: int = 16, *,
           alpha: float = 0.5, samples: int = 4, init: jax.Array | None = None,
           fill: jax.Array | None = None, allowed: jax.Array | None = None,
           max_jump: int | None = None, radius: float | None = None
           ) -> tuple[jax.Array, jax.Array]:
    """PatchMatch's search for the field that maximises any per-position score, every position
    updated in parallel.

    Start from `init` or a random field; each iteration then
      * propagates by jump flooding: for jumps J, J/2, ..., 1 (J: `max_jump`, default the
        largest power of two below the grid's size), every position tries its four neighbours'
        matches at that distance, shifted by the offset (the sequential scan-order propagation
        made parallel, as Deep Image Analogy's GPU PatchMatch does with J = 8);
      * searches randomly around its match in windows of radius R, R alpha, R alpha^2, ... >= 1
        (R: `radius`, at most and by default the target grid's longer side), `samples` uniform
        candidates per radius.

    Args:
      key: PRNG key for the initial field and the random search.
      score_fn: field int32[rows, columns, 2] -> float[rows, columns], higher is better (a
        pure function of the field: `similarity`, `overlap_similarity` or a sum of them).
      shape: (rows, columns) of the source grid; target_shape: (t_rows, t_columns) of the
        target grid the field points into.
      iterations: propagation + search rounds.
      alpha: ratio of consecutive search radii.
      samples: random candidates per radius and iteration.
      init: a starting field, int[rows, columns, 2] (e.g. an upsampled coarser level's, or an
        earlier call's to continue it); default: uniformly random over the allowed targets.
      fill: bool[rows, columns], the positions whose matches are searched (default: all); the
        others keep their `init` match (Deep Painterly Harmonization's region).
      allowed: bool[t_rows, t_columns], the target positions that may be matched (default:
        all; at least one).
    Returns:
      (field int32[rows, columns, 2]; its score float32[rows, columns]).
    """
    rows, cols = shape
    t_rows, t_cols = target_shape
    high = jnp.array([t_rows - 1, t_cols - 1], jnp.int32)
    key, init_key = jax.random.split(key)
    allowed_given = allowed is not None
    fill = jnp.ones((rows, cols), bool) if fill is None else jnp.asarray(fill, bool)
    allowed = jnp.ones((t_rows, t_cols), bool) if allowed is None else \
        jnp.asarray(allowed, bool)
    if init is None and allowed_given:  # uniform over the allowed target patches
        flat = jax.random.choice(init_key, t_rows * t_cols, (rows, cols),
                                 p=allowed.ravel() / jnp.sum(allowed))
        field = index_to_field(flat, t_cols)
    elif init is None:
        field = jnp.stack([jax.random.randint(init_key, (rows, cols), 0, t_rows),
                           jax.random.randint(jax.random.fold_in(init_key, 1), (rows, cols), 0,
                                              t_cols)], axis=-1).astype(jnp.int32)
    else:
        field = jnp.clip(jnp.asarray(init, jnp.int32), 0, high)
    score = jnp.where(allowed[field[..., 0], field[..., 1]], score_fn(field), -jnp.inf)
    top = max(1, (max(rows, cols) - 1).bit_length()) if max_jump is None else \
        max(1, int(max_jump).bit_length())
    jumps = [2 ** j for j in reversed(range(top))]
    radii = []
    radius = float(max(t_rows, t_cols) if radius is None else min(radius, max(t_rows, t_cols)))
    while radius >= 1.0:
        radii.append(radius)
        radius *= alpha

    # the propagation's (dy, dx) and the random search's (radius, sample) pairs, each looped
    # over by lax.scan: one copy of the score in the program however many there are
    moves = jnp.array([(s * jump, 0) if axis == 0 else (0, s * jump)
                       for jump in jumps for axis in (0, 1) for s in (1, -1)], jnp.int32)
    draws = jnp.array([(r, i * samples + j) for i, r in enumerate(radii)
                       for j in range(samples)], jnp.float32).reshape(-1, 2)
    ys, xs = jnp.arange(rows), jnp.arange(cols)

    def propagate(carry, move):
        field, score = carry
        # the match of the neighbour at (y + dy, x + dx), moved back by the offset (clipped at
        # the borders, where the neighbour is the position itself)
        ny, nx = jnp.clip(ys + move[0], 0, rows - 1), jnp.clip(xs + move[1], 0, cols - 1)
        moved = field[ny][:, nx] - jnp.stack(jnp.meshgrid(ny - ys, nx - xs, indexing="ij"), -1)
        return _best(score_fn, field, score, jnp.clip(moved, 0, high), fill, allowed), None

    def iteration(carry, step_key):
        carry, _ = jax.lax.scan(propagate, carry, moves)

        def explore(carry, draw):
            field, score = carry
            r = draw[0]
            offset = jax.random.uniform(jax.random.fold_in(step_key, draw[1].astype(jnp.int32)),
                                        (rows, cols, 2), minval=-r, maxval=r)
            candidate = jnp.clip(field + jnp.round(offset).astype(jnp.int32), 0, high)
            return _best(score_fn, field, score, candidate, fill, allowed), None

        carry, _ = jax.lax.scan(explore, carry, draws)
        return carry, None

    (field, score), _ = jax.lax.scan(iteration, (field, score),
                                     jax.random.split(key, iterations))
    return field, score


