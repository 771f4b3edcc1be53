"""Patches of feature maps and nearest-neighbour fields (NNFs) between two maps.

The primitive under CNNMRF (Li & Wand 2016), Deep Image Analogy and Deep Painterly
Harmonization: for every k x k patch of a source map, the most similar k x k patch of a target
map. Every function is pure and jittable; maps are one image's features, float[H, W, C].

Patch grid: a map of H x W positions has (H - k) // s + 1 rows and (W - k) // s + 1 columns of
k x k patches at stride s ("valid" positions only, as CNNMRF's style patches). Patch index
p = row * columns + column. A patch is float[k, k, C].
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


def nnf_exact(source: jax.Array, target: jax.Array, size: int = 3, target_stride: int = 1,
              budget_bytes: int = 256 * 2**20) -> tuple[jax.Array, jax.Array]:
    """The exact NNF by normalised cross-correlation (cosine similarity of patches), as CNNMRF.

    The target's normalised patches are convolution filters over the source; each source patch's
    response is divided by its own norm, and the best target patch is the argmax. Target patches
    are scored in chunks (`chunk_size` from the map sizes and `budget_bytes`), keeping a running
    best, so memory stays bounded however many patches the target has.

    Args:
      source: float[H, W, C]; every k x k patch at stride 1 is matched.
      target: float[H2, W2, C]; its patches at `target_stride` are the candidates.
    Returns:
      (index int32[rows, columns] of the best target patch, on the target's grid at
      `target_stride`; similarity float32[rows, columns] in [-1, 1]), rows and columns the
      source's stride-1 grid.
    """
    h, w, c = source.shape
    rows, cols = grid_shape(h, w, size)
    filters = normalize_patches(extract_patches(target, size, target_stride))  # [P, k, k, C]
    count = filters.shape[0]
    chunk = chunk_size(rows * cols, count, budget_bytes)
    chunks = math.ceil(count / chunk)
    padded = jnp.concatenate([filters, jnp.zeros((chunks * chunk - count, size, size, c),
                                                 filters.dtype)])
    padded = padded.reshape(chunks, chunk, size, size, c)
    window = jnp.ones((size, size, c, 1), source.dtype)
    norms = jax.lax.conv_general_dilated(jnp.square(source)[None], window, (1, 1), "VALID",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))[0, ..., 0]
    norms = jnp.sqrt(jnp.maximum(norms, 0.0)).reshape(-1)

    def best_of(carry, inputs):
        best, index = carry
        block, start = inputs
        kernel = jnp.transpose(block, (1, 2, 3, 0))  # HWIO with O = this chunk's patches
        response = jax.lax.conv_general_dilated(
            source[None], kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=jax.lax.Precision.HIGHEST)[0].reshape(rows * cols, chunk)
        valid = start + jnp.arange(chunk) < count
        response = jnp.where(valid[None], response, -jnp.inf)
        block_best = jnp.max(response, axis=1)
        block_index = start + jnp.argmax(response, axis=1).astype(jnp.int32)
        better = block_best > best
        return (jnp.where(better, block_best, best), jnp.where(better, block_index, index)), None

    init = (jnp.full((rows * cols,), -jnp.inf, source.dtype), jnp.zeros((rows * cols,), jnp.int32))
    starts = jnp.arange(chunks, dtype=jnp.int32) * chunk
    (best, index), _ = jax.lax.scan(best_of, init, (padded, starts))
    similarity = best / jnp.maximum(norms, EPS)
    return index.reshape(rows, cols), similarity.reshape(rows, cols)


def vote(patches: jax.Array, field: jax.Array, height: int, width: int) -> jax.Array:
    """Rebuilds a map from matched patches: each position is the average of the overlapping
    patches' values there (patch voting).

    Args:
      patches: float[P, k, k, C], the candidates (e.g. `extract_patches(target, k, s)`).
      field: int[rows, columns], the chosen patch for every stride-1 patch position of the
        map being rebuilt; rows = height - k + 1, columns = width - k + 1.
    Returns:
      float[height, width, C].
    """
    _, k, _, c = patches.shape
    rows, cols = field.shape
    chosen = patches[field]  # [rows, cols, k, k, C]
    total = jnp.zeros((height, width, c), patches.dtype)
    counts = jnp.zeros((height, width, 1), patches.dtype)
    for dy in range(k):
        for dx in range(k):
            total = total.at[dy:dy + rows, dx:dx + cols].add(chosen[:, :, dy, dx])
            counts = counts.at[dy:dy + rows, dx:dx + cols].add(1.0)
    return total / jnp.maximum(counts, 1.0)
