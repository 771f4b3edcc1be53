"""Patches of feature maps and nearest-neighbour fields (NNFs) between two maps.

The primitive under CNNMRF (Li & Wand 2016), Deep Image Analogy and Deep Painterly
Harmonization: for every k x k patch of a source map, the most similar k x k patch of a target
map. Every function is pure and jittable; maps are one image's features, float[H, W, C].

One field type everywhere: a nearest-neighbour field from a source map to a target map is
int32[rows, columns, 2], for each patch of the source's grid the (row, column) of a patch on the
target's grid. Two ways to it: `nnf_exact` (normalised cross-correlation, chunked under a memory
budget) and `patchmatch` (Barnes et al. 2009, every position updated in parallel, with masks
and an initial field); `similarity` scores any field, `upsample_field` carries a field to the
next finer level, and `vote` rebuilds a map from the target patches a field points at. A field
B -> A is the same call with the maps swapped. Candidates pooled from several maps (CNNMRF's
rotated and scaled style copies) have no common grid: `nearest_patches` indexes them by their
position in the pool, int32[rows, columns] (`index_to_field` turns an index on one grid into a
field). `search` is PatchMatch over any score of a field.

Centre-based fields (Deep Image Analogy) have one match per map position instead of one per
valid patch, neighbourhoods clipped at the borders: `overlap_similarity` scores them,
`vote_centred` rebuilds a map through them and `upsample_offsets` carries them to a finer map.

Patch grid: a map of H x W positions has (H - k) // s + 1 rows and (W - k) // s + 1 columns of
k x k patches at stride s ("valid" positions only, as CNNMRF's style patches). Patch index
p = row * columns + column. A patch is float[k, k, C].
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

from jstyle.nets.conv import valid_conv

EPS = 1e-8


def grid_shape(height: int, width: int, size: int, stride: int = 1) -> tuple[int, int]:
    """(rows, columns) of the k x k patch grid at `stride` on an H x W map."""
    return (height - size) // stride + 1, (width - size) // stride + 1


def extract_patches(features: jax.Array, size: int = 3, stride: int = 1) -> jax.Array:
    """All k x k patches on the grid: float[H, W, C] -> float[rows * columns, k, k, C]."""
    features = jnp.asarray(features)
    h, w, c = features.shape
    rows, cols = grid_shape(h, w, size, stride)
    ys = jnp.arange(rows) * stride
    xs = jnp.arange(cols) * stride
    offsets = jnp.arange(size)
    y = (ys[:, None] + offsets[None])[:, None, :, None]  # [rows, 1, k, 1]
    x = (xs[:, None] + offsets[None])[None, :, None, :]  # [1, cols, 1, k]
    return features[y, x].reshape(rows * cols, size, size, c)


def normalize_patches(patches: jax.Array) -> jax.Array:
    """Each patch divided by its L2 norm (over k, k, C): float[P, k, k, C] -> same."""
    norms = jnp.sqrt(jnp.sum(jnp.square(patches), axis=(1, 2, 3), keepdims=True))
    return patches / jnp.maximum(norms, EPS)


def chunk_size(positions: int, patches: int, budget_bytes: int) -> int:
    """How many target patches one step of `nnf_exact` scores at once so that its similarity
    block, float32[positions, chunk], takes at most `budget_bytes` (at least 1, at most all)."""
    return max(1, min(patches, budget_bytes // (4 * max(positions, 1))))


def nearest_patches(source: jax.Array, candidates: jax.Array, size: int = 3,
                    source_stride: int = 1, budget_bytes: int = 256 * 2**20,
                    guide: jax.Array | None = None, candidate_guide: jax.Array | None = None,
                    guide_weight: float | jax.Array = 1.0) -> tuple[jax.Array, jax.Array]:
    """For every k x k patch of `source` (at `source_stride`), the most similar of `candidates`
    by normalised cross-correlation (cosine similarity), as CNNMRF matches.

    CNNMRF convolves the source with the normalised candidates as filters; jstyle computes the
    same responses as one matrix product of the source's normalised patch matrix (a row per
    patch, k*k*C wide) with the normalised candidates, which XLA:CPU runs about 4x faster than
    the equivalent convolution with thousands of output channels. Candidates are scored in
    chunks (`chunk_size` from the sizes and `budget_bytes`), keeping a running best, so the
    response block stays within the budget however many candidates there are; the source's
    patch matrix (k*k times the source map, over the stride squared) comes on top.

    With guide channels (semantic labels), the score is cos(features) + guide_weight *
    cos(guides), each cosine over its own channels, so within one region the ranking is the
    features' alone, and a large weight keeps every match inside its region.

    Args:
      source: float[H, W, C].
      candidates: float[P, k, k, C], unnormalised (e.g. `extract_patches` of one or several
        style maps, concatenated).
      source_stride: match the source patches at this stride only.
      guide, candidate_guide: optional float[H, W, G] and float[P, k, k, G].
    Returns:
      (index int32[rows, columns] into `candidates`; score float32[rows, columns], the cosine
      similarity in [-1, 1] plus the guide term), rows and columns the source's grid at
      `source_stride`.
    """
    h, w, _ = source.shape
    rows, cols = grid_shape(h, w, size, source_stride)
    flat = lambda x: x.reshape(x.shape[0], -1)
    unit_rows = lambda x: flat(normalize_patches(extract_patches(x, size, source_stride)))
    query = unit_rows(source)
    filters = flat(normalize_patches(candidates))
    if guide is not None:
        query = jnp.concatenate([query, guide_weight * unit_rows(guide)], axis=1)
        filters = jnp.concatenate([filters, flat(normalize_patches(candidate_guide))], axis=1)
    count = filters.shape[0]
    chunk = chunk_size(rows * cols, count, budget_bytes)
    chunks = math.ceil(count / chunk)
    padded = jnp.concatenate([filters, jnp.zeros((chunks * chunk - count, filters.shape[1]),
                                                 filters.dtype)]).reshape(chunks, chunk, -1)

    def best_of(carry, inputs):
        best, index = carry
        block, start = inputs
        response = jnp.matmul(query, block.T, precision=jax.lax.Precision.HIGHEST)
        valid = start + jnp.arange(chunk) < count
        response = jnp.where(valid[None], response, -jnp.inf)
        block_best = jnp.max(response, axis=1)
        block_index = start + jnp.argmax(response, axis=1).astype(jnp.int32)
        better = block_best > best
        return (jnp.where(better, block_best, best), jnp.where(better, block_index, index)), None

    init = (jnp.full((rows * cols,), -jnp.inf, query.dtype), jnp.zeros((rows * cols,), jnp.int32))
    starts = jnp.arange(chunks, dtype=jnp.int32) * chunk
    (best, index), _ = jax.lax.scan(best_of, init, (padded, starts))
    return index.reshape(rows, cols), best.reshape(rows, cols)


def nnf_exact(source: jax.Array, target: jax.Array, size: int = 3, target_stride: int = 1,
              budget_bytes: int = 256 * 2**20, source_stride: int = 1
              ) -> tuple[jax.Array, jax.Array]:
    """The exact NNF from `source` to `target` (`nearest_patches` over the target's patches).

    Args:
      source: float[H, W, C]; its k x k patches at `source_stride` are matched.
      target: float[H2, W2, C]; its patches at `target_stride` are the candidates.
    Returns:
      (field int32[rows, columns, 2], the (row, column) of the best patch on the target's
      grid at `target_stride`; similarity float32[rows, columns] in [-1, 1]), rows and columns
      the source's grid at `source_stride`.
    """
    index, score = nearest_patches(source, extract_patches(target, size, target_stride), size,
                                   source_stride, budget_bytes)
    columns = grid_shape(target.shape[0], target.shape[1], size, target_stride)[1]
    return index_to_field(index, columns), score


def index_to_field(index: jax.Array, target_columns: int) -> jax.Array:
    """Row-major patch indices int[rows, columns] -> (row, column) field int32[rows, columns, 2]
    on a target grid `target_columns` wide (the form PatchMatch uses)."""
    index = jnp.asarray(index, jnp.int32)
    return jnp.stack([index // target_columns, index % target_columns], axis=-1)


def upsample_field(field: jax.Array, rows: int, columns: int, target_rows: int,
                   target_columns: int, factor: int = 2) -> jax.Array:
    """An NNF carried to the next finer pyramid level (maps `factor` times larger), as the
    coarse-to-fine NNF search of Deep Image Analogy starts each level.

    Fine position (y, x) takes its coarse parent's match (y // factor, x // factor), scaled by
    `factor` and moved by the same offset within the parent, (y % factor, x % factor).

    Args:
      field: int[r, c, 2], (row, column) matches on the coarse target grid.
      rows, columns: the fine source grid; target_rows, target_columns: the fine target grid.
    Returns:
      int32[rows, columns, 2], clipped to the fine target grid.
    """
    ys, xs = jnp.arange(rows), jnp.arange(columns)
    parent = field[jnp.minimum(ys // factor, field.shape[0] - 1)][
        :, jnp.minimum(xs // factor, field.shape[1] - 1)]
    offset = jnp.stack(jnp.meshgrid(ys % factor, xs % factor, indexing="ij"), axis=-1)
    fine = parent * factor + offset
    return jnp.clip(fine, 0, jnp.array([target_rows - 1, target_columns - 1])).astype(jnp.int32)


def vote(target: jax.Array, field: jax.Array, size: int, target_stride: int = 1) -> jax.Array:
    """Rebuilds a map from the target patches a field points at: each position is the average
    of the overlapping patches' values there (patch voting).

    Args:
      target: float[H2, W2, C], the map the patches come from.
      field: int[rows, columns, 2], for every stride-1 patch position of the map being rebuilt
        the (row, column) of a patch on the target's grid at `target_stride`.
    Returns:
      float[rows + size - 1, columns + size - 1, C].
    """
    rows, cols, _ = field.shape
    ty, tx = field[..., 0] * target_stride, field[..., 1] * target_stride
    total = jnp.zeros((rows + size - 1, cols + size - 1, target.shape[-1]), target.dtype)
    counts = jnp.zeros((rows + size - 1, cols + size - 1, 1), target.dtype)
    for dy in range(size):
        for dx in range(size):
            total = total.at[dy:dy + rows, dx:dx + cols].add(target[ty + dy, tx + dx])
            counts = counts.at[dy:dy + rows, dx:dx + cols].add(1.0)
    return total / counts


def patch_norms(features: jax.Array, size: int) -> jax.Array:
    """L2 norm of every stride-1 k x k patch: float[H, W, C] -> float[H - k + 1, W - k + 1]."""
    window = jnp.ones((size, size, features.shape[-1], 1), features.dtype)
    sums = valid_conv(jnp.square(features)[None], window)[0, ..., 0]
    return jnp.sqrt(jnp.maximum(sums, 0.0))


def similarity(source: jax.Array, target: jax.Array, field: jax.Array, size: int,
               target_stride: int = 1, norms: tuple[jax.Array, jax.Array] | None = None
               ) -> jax.Array:
    """Cosine similarity of each source patch with the target patch the field points at.

    Args:
      source: float[H, W, C]; target: float[H2, W2, C].
      field: int[rows, columns, 2], for each stride-1 source patch the (row, column) of a
        patch on the target's grid at `target_stride`.
      norms: `_grid_norms(source, target, size, target_stride)`, if already computed (PatchMatch
        scores many fields against the same maps).
    Returns:
      float[rows, columns] in [-1, 1]. Computed from the k x k shifted feature products, so no
      k*k*C patch vectors are materialised.
    """
    source, target, field = jnp.asarray(source), jnp.asarray(target), jnp.asarray(field)
    rows, cols, _ = field.shape
    ty, tx = field[..., 0] * target_stride, field[..., 1] * target_stride
    dot = jnp.zeros((rows, cols), source.dtype)
    for dy in range(size):
        for dx in range(size):
            dot = dot + jnp.sum(source[dy:dy + rows, dx:dx + cols] * target[ty + dy, tx + dx],
                                axis=-1)
    src_norm, tgt_norm = norms or _grid_norms(source, target, size, target_stride)
    return dot / jnp.maximum(src_norm * tgt_norm[field[..., 0], field[..., 1]], EPS)


# Centre-based fields (Deep Image Analogy): one match per map position, field[y, x] the
# (row, column) of the target position whose k x k neighbourhood is compared with (y, x)'s.
# Neighbourhoods are clipped at the borders: only offsets inside both maps count.

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


def _grid_norms(source, target, size, target_stride):
    """(norms of the source's stride-1 patches, norms of the target's patches on its grid)."""
    return (patch_norms(source, size),
            patch_norms(target, size)[::target_stride, ::target_stride])


def _best(score_fn, field, score, candidate, fill, allowed):
    """Keeps, per position to `fill`, the better of the current match and `candidate` (same
    shapes), counting only `allowed` target positions."""
    candidate_score = jnp.where(allowed[candidate[..., 0], candidate[..., 1]],
                                score_fn(candidate), -jnp.inf)
    better = (candidate_score > score) & fill
    return jnp.where(better[..., None], candidate, field), jnp.where(better, candidate_score, score)


def patchmatch(key: jax.Array, source: jax.Array, target: jax.Array, size: int = 3,
               target_stride: int = 1, iterations: int = 16, alpha: float = 0.5,
               samples: int = 4, init: jax.Array | None = None,
               fill: jax.Array | None = None, allowed: jax.Array | None = None
               ) -> tuple[jax.Array, jax.Array]:
    """PatchMatch (Barnes et al. 2009) by cosine similarity of k x k patches (`similarity`),
    vectorised: an approximate NNF, every position at once (`search`).

    The default of 16 iterations (4 samples per radius) is the count at which the mean
    similarity first reaches 98% of the exact NNF's on real VGG-19 features up to relu3_1 of
    512 px images (tubingen x starry_night; relu4_1 needs 4 or fewer). Larger maps need more
    iterations; starting from the coarser level's field (`init`, `upsample_field`) is the
    cheaper way (README, "Nearest-neighbour fields").

    Args:
      key: PRNG key for the initial field and the random search.
      source: float[H, W, C]; every stride-1 k x k patch is matched.
      target: float[H2, W2, C]; its patches at `target_stride` are the candidates.
      iterations, alpha, samples, init, fill, allowed: as for `search`, on the source's patch
        grid and the target's grid at `target_stride`.
    Returns:
      (field int32[rows, columns, 2], (row, column) on the target's grid;
       similarity float32[rows, columns]).
    """
    norms = _grid_norms(source, target, size, target_stride)  # fixed: computed once
    return search(key, lambda f: similarity(source, target, f, size, target_stride, norms),
                  grid_shape(source.shape[0], source.shape[1], size),
                  grid_shape(target.shape[0], target.shape[1], size, target_stride),
                  iterations, alpha=alpha, samples=samples, init=init, fill=fill,
                  allowed=allowed)


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


# ---------------------------------------------------------------------------------------------
# Centre-based exact matching and the consistency steps of Deep Painterly Harmonization
# (Luan et al. 2018; the authors' cuda_utils.cu: patchmatch, patchmatch_r, refineNNF, Ring2).

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
