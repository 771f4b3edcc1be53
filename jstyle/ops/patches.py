"""Patches of feature maps and the nearest patch of a pool (CNNMRF, Li & Wand 2016).

Patch grid: a map of H x W positions has (H - k) // s + 1 rows and (W - k) // s + 1 columns of
k x k patches at stride s ("valid" positions only, as CNNMRF's style patches). Patch index
p = row * columns + column. A patch is float[k, k, C]. Candidates pooled from several maps
(CNNMRF's rotated and scaled style copies) have no common grid: `nearest_patches` indexes them
by their position in the pool, int32[rows, columns]. Every function is pure and jittable; maps
are one image's features, float[H, W, C]. Fields between maps: jstyle.ops.fields; PatchMatch:
jstyle.ops.patchmatch.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


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


def index_to_field(index: jax.Array, target_columns: int) -> jax.Array:
    """Row-major patch indices int[rows, columns] -> (row, column) field int32[rows, columns, 2]
    on a target grid `target_columns` wide (the form PatchMatch uses)."""
    index = jnp.asarray(index, jnp.int32)
    return jnp.stack([index // target_columns, index % target_columns], axis=-1)
