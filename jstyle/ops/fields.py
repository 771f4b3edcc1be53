"""Centre-based nearest-neighbour fields (Deep Image Analogy, Deep Painterly Harmonization):
one match per map position, field[y, x] = (row, column) of the matched position of the target
map, int32[H, W, 2]; neighbourhoods are clipped at the borders (only offsets inside both maps
count). `overlap_similarity` scores a field, `vote_centred` rebuilds a map through it,
`upsample_offsets` carries it to a finer map; `nnf_centred` is the exact field, and
`refine_field` and `used_positions` are Deep Painterly Harmonization's consistency steps.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


from jstyle.ops.patches import EPS, chunk_size


def _offsets(size: int) -> jax.Array:
    """The (dy, dx) of a k x k neighbourhood, centre (0, 0): int32[k * k, 2]."""
    r = size // 2
    return jnp.array([(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)],
                     jnp.int32)


def _shifted(padded: jax.Array, inside: jax.Array, r: int, shape: tuple[int, int],
             offset: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(map[y + dy, x + dx], bool: inside the map) for every (y, x) of an H x W map, from the
    map zero-padded by r (`padded`) and its padded inside mask; offset int32[2] = (dy, dx)."""
    start = (r + offset[0], r + offset[1])
    near = jax.lax.dynamic_slice(padded, (*start, 0), (*shape, padded.shape[-1]))
    return near, jax.lax.dynamic_slice(inside, start, shape)


def _pad(features: jax.Array, r: int) -> tuple[jax.Array, jax.Array]:
    """(features zero-padded by r on both spatial axes, bool mask of the original positions)."""
    h, w = features.shape[:2]
    return (jnp.pad(features, ((r, r), (r, r), (0, 0))), jnp.pad(jnp.ones((h, w), bool), r))


def _pointed(target: jax.Array, ys: jax.Array, xs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(target[ys, xs] with positions clipped into the map, bool: the position was inside)."""
    h, w = target.shape[:2]
    inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    return target[jnp.clip(ys, 0, h - 1), jnp.clip(xs, 0, w - 1)], inside


def overlap_similarity(source: jax.Array, target: jax.Array, field: jax.Array, size: int
                       ) -> jax.Array:
    """For every source position p, the mean over the offsets d of a k x k neighbourhood at
    which both p + d and field[p] + d lie inside their maps of source[p + d] . target[field[p]
    + d]: Deep Image Analogy's patch distance, negated (GeneralizedPatchMatch.cu,
    dist_compute). On features normalised per position (`unit_features`) it is the mean
    cosine, in [-1, 1].

    Args:
      source: float[H, W, C]; target: float[H2, W2, C].
      field: int[H, W, 2], for each source position a target position.
      size: k, odd.
    Returns:
      float[H, W].
    """
    source, target, field = jnp.asarray(source), jnp.asarray(target), jnp.asarray(field)
    r = size // 2
    padded, inside = _pad(source, r)

    def add(offset, carry):
        total, count = carry
        near, near_inside = _shifted(padded, inside, r, field.shape[:2], offset)
        far, reached = _pointed(target, field[..., 0] + offset[0], field[..., 1] + offset[1])
        both = near_inside & reached
        return total + jnp.where(both, jnp.sum(near * far, axis=-1), 0.0), count + both

    zeros = jnp.zeros(field.shape[:2], source.dtype)
    total, count = _over(_offsets(size), add, (zeros, zeros))
    return total / jnp.maximum(count, 1.0)


def _over(offsets: jax.Array, add, carry):
    """carry after add(offset, carry) for each row of `offsets`, in a loop (lax.fori_loop):
    one copy of the body in the program."""
    return jax.lax.fori_loop(0, offsets.shape[0], lambda i, c: add(offsets[i], c), carry)


def unit_features(features: jax.Array) -> jax.Array:
    """Each position's feature vector divided by its L2 norm: float[H, W, C] -> same."""
    norms = jnp.sqrt(jnp.sum(jnp.square(features), axis=-1, keepdims=True))
    return features / jnp.maximum(norms, EPS)


def vote_centred(target: jax.Array, field: jax.Array, size: int) -> jax.Array:
    """A map rebuilt through a centre-based field: position p is the average, over the offsets
    d of a k x k neighbourhood with p + d inside the field and field[p + d] - d inside the
    target, of target[field[p + d] - d] (every neighbourhood that covers p votes for what its
    match puts there; Deep Image Analogy's avg_vote and reconstruct_avg).

    Args:
      target: float[H2, W2, C], the map the values come from.
      field: int[H, W, 2], for each position of the map being rebuilt a target position.
      size: k, odd.
    Returns:
      float[H, W, C].
    """
    target, field = jnp.asarray(target), jnp.asarray(field)
    r = size // 2
    padded, inside = _pad(field, r)

    def add(offset, carry):
        total, count = carry
        match, near_inside = _shifted(padded, inside, r, field.shape[:2], offset)
        value, reached = _pointed(target, match[..., 0] - offset[0], match[..., 1] - offset[1])
        both = (near_inside & reached)[..., None]
        return total + jnp.where(both, value, 0.0), count + both

    total, count = _over(_offsets(size), add,
                         (jnp.zeros((*field.shape[:2], target.shape[-1]), target.dtype),
                          jnp.zeros((*field.shape[:2], 1), target.dtype)))
    return total / jnp.maximum(count, 1.0)


def upsample_offsets(field: jax.Array, rows: int, columns: int, target_rows: int,
                     target_columns: int) -> jax.Array:
    """A centre-based field carried to a finer map of any size, as Deep Image Analogy starts
    each layer (GeneralizedPatchMatch.cu, upSample_kernel): fine position p takes the match
    of its coarse position p_c = floor((p + 0.5) / s) (s = fine / coarse size, per axis) and
    keeps its offset, scaled: floor(p + (match - p_c) * s + 0.5), clipped to the target.

    Args:
      field: int[r, c, 2], on the coarse map.
      rows, columns: the fine source map; target_rows, target_columns: the fine target map.
    Returns:
      int32[rows, columns, 2].
    """
    scale = jnp.array([rows / field.shape[0], columns / field.shape[1]], jnp.float32)
    fine = jnp.stack(jnp.meshgrid(jnp.arange(rows), jnp.arange(columns), indexing="ij"), -1)
    coarse = jnp.clip(jnp.floor((fine + 0.5) / scale).astype(jnp.int32), 0,
                      jnp.array([field.shape[0] - 1, field.shape[1] - 1]))
    match = field[coarse[..., 0], coarse[..., 1]]
    moved = jnp.floor(fine + (match - coarse) * scale + 0.5).astype(jnp.int32)
    return jnp.clip(moved, 0, jnp.array([target_rows - 1, target_columns - 1]))


def identity_field(rows: int, columns: int) -> jax.Array:
    """The centre-based field of each position to itself: int32[rows, columns, 2]."""
    return jnp.stack(jnp.meshgrid(jnp.arange(rows, dtype=jnp.int32),
                                  jnp.arange(columns, dtype=jnp.int32), indexing="ij"), -1)



def centred_patches(features: jax.Array, size: int) -> tuple[jax.Array, jax.Array]:
    """Every position's k x k neighbourhood, zero where it leaves the map, flattened.

    Args:
      features: float[H, W, C]; size: k, odd.
    Returns:
      (float[H W, k k C], the neighbourhoods in `_offsets` order; float[H W, k k], 1 where
      the offset lies inside the map).
    """
    h, w, c = features.shape
    r = size // 2
    padded, inside = _pad(features, r)
    near = [_shifted(padded, inside, r, (h, w), o) for o in _offsets(size)]
    values = jnp.stack([v for v, _ in near], axis=2).reshape(h * w, size * size * c)
    valid = jnp.stack([m for _, m in near], axis=2).reshape(h * w, size * size)
    return values, valid.astype(features.dtype)


def nnf_centred(source: jax.Array, target: jax.Array, size: int = 3, *, normalize: bool,
                keep_borders: bool, origin: tuple[int, int] = (0, 0),
                full_shape: tuple[int, int] | None = None, budget_bytes: int = 256 * 2**20
                ) -> jax.Array:
    """The exact centre-based field from `source` to `target` by brute force: for every source
    position p, the target position q maximising the sum over the offsets d at which both p + d
    and q + d lie inside their maps of source[p + d] . target[q + d].

    Two forms of the authors' code (cuda_utils.cu):
      normalize=True: that sum divided by the norms of the two neighbourhoods over the same
        offsets (+ 1e-9), a cosine (`patchmatch_r`, pass 1's independent mapping);
      keep_borders=True: q may lie within k // 2 of a target border only if p lies as near to
        the same border of the full source map (`patchmatch`'s argmax, pass 2's mapping on
        features normalised per position, `unit_features`).
    Ties go to the first target position in row-major order, as the authors' loop.

    Args:
      source: float[H, W, C], the whole source map or a crop of it whose top-left position is
        `origin` in a full map of `full_shape` (default: the source's own shape), which
        `keep_borders` measures against; target: float[H2, W2, C].
      budget_bytes: target positions are scored in chunks whose score block stays within it.
    Returns:
      int32[H, W, 2], for each source position a target position.
    """
    h, w, _ = source.shape
    h2, w2, _ = target.shape
    full_h, full_w = full_shape or (h, w)
    r = size // 2
    query, query_valid = centred_patches(source, size)
    keys, key_valid = centred_patches(target, size)
    query_sq = jnp.sum(jnp.square(query.reshape(h * w, size * size, -1)), -1)
    key_sq = jnp.sum(jnp.square(keys.reshape(h2 * w2, size * size, -1)), -1)
    sy = origin[0] + jnp.arange(h * w) // w
    sx = origin[1] + jnp.arange(h * w) % w
    count = h2 * w2
    chunk = chunk_size(h * w, count, budget_bytes)
    chunks = math.ceil(count / chunk)
    pad = lambda a: jnp.concatenate([a, jnp.zeros((chunks * chunk - count, a.shape[1]), a.dtype)]
                                    ).reshape(chunks, chunk, -1)
    dot = lambda a, b: jnp.matmul(a, b.T, precision=jax.lax.Precision.HIGHEST)

    def best_of(carry, inputs):
        best, index = carry
        block, block_valid, block_sq, start = inputs
        score = dot(query, block)
        if normalize:
            score = score / (jnp.sqrt(dot(query_sq, block_valid) * dot(query_valid, block_sq))
                             + 1e-9)
        q = start + jnp.arange(chunk)
        ty, tx = (q // w2)[None], (q % w2)[None]
        ok = (q < count)[None]
        if keep_borders:
            ok = ok & ((tx >= r) | (sx < r)[:, None]) & ((tx <= w2 - 1 - r)
                                                         | (sx > full_w - 1 - r)[:, None])
            ok = ok & ((ty >= r) | (sy < r)[:, None]) & ((ty <= h2 - 1 - r)
                                                         | (sy > full_h - 1 - r)[:, None])
        score = jnp.where(ok, score, -jnp.inf)
        block_best = jnp.max(score, axis=1)
        better = block_best > best
        return (jnp.where(better, block_best, best),
                jnp.where(better, start + jnp.argmax(score, axis=1).astype(jnp.int32), index)
                ), None

    init = (jnp.full((h * w,), -jnp.inf, query.dtype), jnp.zeros((h * w,), jnp.int32))
    starts = jnp.arange(chunks, dtype=jnp.int32) * chunk
    (_, index), _ = jax.lax.scan(best_of, init, (pad(keys), pad(key_valid), pad(key_sq), starts))
    return jnp.stack([index // w2, index % w2], -1).reshape(h, w, 2).astype(jnp.int32)


def refine_field(field: jax.Array, guide: jax.Array, inside: jax.Array, size: int = 5,
                 iterations: int = 1) -> jax.Array:
    """Deep Painterly Harmonization's consistent mapping (cuda_utils.cu, refineNNF): each
    position inside takes, among the matches its k x k neighbours propose for it (neighbour
    p + d matched to q proposes q - d), the one whose guide colour is closest on average to
    the colours of all the neighbours' proposals, so that contiguous positions map to
    contiguous style positions. A proposal counts only if it lies at least k // 2 inside the
    target (and before its last row and column, as the code's bound); the distance averages
    over the proposals inside the target; ties go to the first offset with dx outer, dy inner
    (the code's loop). Each iteration refines the previous one's field (Jacobi).

    Args:
      field: int[H, W, 2], a centre-based field (or a crop of one) into a target map of the
        guide's size.
      guide: float[H2, W2, G], the target's colours at the map's size (the painting, resized).
      inside: bool[H, W], the positions to refine (the tight mask); the others keep their match.
      size: k, odd (the code's refine_size).
    Returns:
      int32[H, W, 2].
    """
    field, guide = jnp.asarray(field, jnp.int32), jnp.asarray(guide)
    h, w = field.shape[:2]
    h2, w2 = guide.shape[:2]
    r = size // 2
    offsets = jnp.array([(dy, dx) for dx in range(-r, r + 1) for dy in range(-r, r + 1)],
                        jnp.int32)

    def once(_, current):
        padded, in_map = _pad(current, r)
        near = [_shifted(padded, in_map, r, (h, w), o) for o in offsets]
        proposals = jnp.stack([m - o for (m, _), o in zip(near, offsets)], 2)  # [H, W, D, 2]
        from_map = jnp.stack([v for _, v in near], 2)
        y, x = proposals[..., 0], proposals[..., 1]
        in_target = from_map & (y >= 0) & (y < h2) & (x >= 0) & (x < w2)
        candidate = from_map & (y >= r) & (y < h2 - r - 1) & (x >= r) & (x < w2 - r - 1)
        colour = guide[jnp.clip(y, 0, h2 - 1), jnp.clip(x, 0, w2 - 1)]  # [H, W, D, G]
        apart = jnp.sqrt(jnp.sum(jnp.square(colour[:, :, :, None] - colour[:, :, None]), -1))
        mean = (jnp.sum(jnp.where(in_target[:, :, None], apart, 0.0), -1)
                / jnp.maximum(jnp.sum(in_target, -1, keepdims=True), 1))
        best = jnp.argmin(jnp.where(candidate, mean, jnp.inf), axis=-1)
        chosen = jnp.take_along_axis(proposals, best[..., None, None], axis=2)[:, :, 0]
        take = inside & jnp.any(candidate, -1)
        return jnp.where(take[..., None], chosen, current)

    return jax.lax.fori_loop(0, iterations, once, field)


def used_positions(field: jax.Array, inside: jax.Array, target_shape: tuple[int, int],
                   radius: int = 1) -> jax.Array:
    """The target positions a field uses, each once however often it is matched, with their
    neighbours within `radius` (cuda_utils.cu, Ring2: Deep Painterly Harmonization's duplicate
    suppression, whose style statistics then count every used style position once).

    Args:
      field: int[H, W, 2]; inside: bool[H, W], the positions whose matches count.
      target_shape: (H2, W2).
    Returns:
      float32[H2, W2], 1 at used positions, else 0.
    """
    h2, w2 = target_shape
    used = jnp.zeros((h2, w2), jnp.float32)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            y, x = field[..., 0] + dy, field[..., 1] + dx
            ok = inside & (y >= 0) & (y < h2) & (x >= 0) & (x < w2)
            used = used.at[jnp.clip(y, 0, h2 - 1), jnp.clip(x, 0, w2 - 1)].max(
                ok.astype(jnp.float32))
    return used
