"""Loss terms of Gatys-style transfer: representations first, then comparisons.

Every function is pure and documented with its shapes, and each matches a plain-numpy reference
in tests/test_losses.py. Feature maps are one image's activations, float32[H, W, C] (D = H * W
positions, N = C channels).

jstyle's default objective (the "seed" formulas):
  L_c = sum_l w_c,l / (2 N_l D_l) * sum (F_l[O] - F_l[I])^2        = content_loss
  L_s = sum_l w_s,l / (2 N_l^2)   * sum (G_l[O] - G_l[S])^2        = style_loss of gram_matrix
  L_tv = 1 / D * sum_{x,y,c} (O_{x,y} - O_{x,y-1})^2 + (O_{x,y} - O_{x-1,y})^2
with G = F^T F / D (a mean over positions) and the image O in 8-bit levels [0, 255]. Dividing G
and L_tv by the number of positions makes every term independent of the image size, so weights
carry across sizes; the paper's L_tv is a plain sum (jstyle departs from it there).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def gram_matrix(features: jax.Array, normalize: str = "positions") -> jax.Array:
    """Gram matrix of a feature map.

    Args:
      features: float[H, W, C].
      normalize: "positions": G = F^T F / (H W) (jstyle, size-independent);
        "elements": G = F^T F / (H W C) (jcjohnson/neural-style's GramMatrix + div(nElement)).
    Returns:
      float[C, C].
    """
    h, w, c = features.shape
    f = features.reshape(h * w, c)
    g = jnp.matmul(f.T, f, precision=jax.lax.Precision.HIGHEST)
    return g / (h * w * (c if normalize == "elements" else 1))


def content_loss(features: jax.Array, target: jax.Array, scale: float = 0.5) -> jax.Array:
    """scale * mean((F - F_target)^2) over all positions and channels.

    Args:
      features, target: float[H, W, C].
      scale: 0.5 gives the seed's 1 / (2 N D) * sum; 1.0 gives neural-style's MSECriterion.
    Returns:
      float[] loss.
    """
    return scale * jnp.mean(jnp.square(features - target))


def style_loss(gram: jax.Array, target_gram: jax.Array, scale: float = 0.5) -> jax.Array:
    """scale * mean((G - G_target)^2) over the N x N entries.

    Args:
      gram, target_gram: float[C, C] from `gram_matrix`.
      scale: 0.5 gives the seed's 1 / (2 N^2) * sum; 1.0 gives neural-style's MSECriterion.
    Returns:
      float[] loss.
    """
    return scale * jnp.mean(jnp.square(gram - target_gram))


def total_variation(image: jax.Array) -> jax.Array:
    """Squared total variation per position: 1/(H W) * sum of squared right and down differences.

    Args:
      image: float[H, W, C] (jstyle measures it in 8-bit levels, [0, 255]).
    Returns:
      float[] loss; each of the (H-1) x W vertical and H x (W-1) horizontal neighbour
      differences is squared and summed over channels, then divided by H W.
    """
    h, w, _ = image.shape
    dy = jnp.sum(jnp.square(image[1:] - image[:-1]))
    dx = jnp.sum(jnp.square(image[:, 1:] - image[:, :-1]))
    return (dx + dy) / (h * w)


def total_variation_neural_style(image: jax.Array) -> jax.Array:
    """jcjohnson/neural-style's TVLoss: 1/2 * sum over the top-left (H-1) x (W-1) positions.

    neural-style only writes the gradient; this is the loss whose gradient it is: half the sum of
    squared right and down differences at every position that has both neighbours.

    Args:
      image: float[H, W, C] in 8-bit levels (its Caffe input differs only by a constant mean).
    Returns:
      float[] loss.
    """
    core = image[:-1, :-1]
    dx = core - image[:-1, 1:]
    dy = core - image[1:, :-1]
    return 0.5 * jnp.sum(jnp.square(dx) + jnp.square(dy))


def guided_gram_matrix(features: jax.Array, mask: jax.Array) -> jax.Array:
    """Gram matrix of the features inside one region (Gatys et al. 2017, spatial control).

    Args:
      features: float[H, W, C].
      mask: float[H, W] in [0, 1], the region's guidance channel at this layer's resolution.
    Returns:
      float[C, C]: (m F)^T (m F) / sum(m^2), a weighted mean over the region's positions (for a
      binary mask, its area), so an all-ones mask gives `gram_matrix(features, "positions")`. An
      empty region gives zeros.
    """
    h, w, c = features.shape
    m = mask.reshape(h * w, 1)
    f = features.reshape(h * w, c) * m
    g = jnp.matmul(f.T, f, precision=jax.lax.Precision.HIGHEST)
    return g / jnp.maximum(jnp.sum(jnp.square(m)), 1e-8)


def masked_gram_matrix(features: jax.Array, mask: jax.Array) -> jax.Array:
    """Deep Painterly Harmonization's masked Gram matrix: (m F)^T (m F) / (C sum(m)), the mask
    summed over the C channels it is expanded to (neural_gram.lua and neural_paint.lua,
    StyleLoss: the Gram of input * mask divided by mask:sum()). Its targets use the same
    normalisation, so a 0/1 mask gives a mean over the region's positions, divided by C.

    Args:
      features: float[H, W, C]; mask: float[H, W] in [0, 1].
    Returns:
      float[C, C]; an empty mask gives zeros.
    """
    h, w, c = features.shape
    f = features.reshape(h * w, c) * mask.reshape(h * w, 1)
    g = jnp.matmul(f.T, f, precision=jax.lax.Precision.HIGHEST)
    return g / jnp.maximum(c * jnp.sum(mask), 1e-8)


def temporal_loss(image: jax.Array, warped: jax.Array, weights: jax.Array) -> jax.Array:
    """Ruder et al.'s temporal consistency: mean over pixels and channels of w (O - W)^2, O the
    frame being stylised, W the previous stylised frame warped to it, w its reliability
    (artistic_video_core.lua's WeightedContentLoss on the image with MSECriterion: it scales
    input and target by sqrt(w), so every element's squared error is weighted by w and the
    sum divided by the element count).

    Args:
      image, warped: float[H, W, C] (the authors compare them in the network's input units);
      weights: float[H, W] in [0, 1].
    Returns:
      float[] loss.
    """
    return jnp.mean(weights[..., None] * jnp.square(image - warped))


def style_quantiles(features: jax.Array, count: int) -> jax.Array:
    """Each channel's quantile function, sampled at `count` evenly spaced ranks.

    This is the representation the histogram loss compares against: entry [r, c] is the value
    that channel c takes at rank r of `count`, read from the sorted style activations by linear
    interpolation at position (r + 1/2) K / count - 1/2 (clamped), K = H W. For count == K these
    are exactly the sorted activations.

    Args:
      features: float[H, W, C] (the style's activations).
      count: the number of positions of the image that will be matched (D = H_O W_O).
    Returns:
      float[count, C], non-decreasing along axis 0.
    """
    h, w, c = features.shape
    ordered = jnp.sort(features.reshape(h * w, c), axis=0)
    return _interpolate_sorted(ordered, (jnp.arange(count) + 0.5) * (h * w) / count - 0.5)


def _interpolate_sorted(ordered: jax.Array, position: jax.Array, valid=None) -> jax.Array:
    """ordered: float[K, C] sorted along 0, its first `valid` rows used (default all K);
    position: float[n] fractional row indices. Returns float[n, C], linearly interpolated and
    clamped to the first and last used row."""
    last = (ordered.shape[0] if valid is None else valid) - 1
    position = jnp.clip(position, 0.0, last)
    low = jnp.floor(position).astype(jnp.int32)
    high = jnp.minimum(low + 1, last)
    frac = (position - low)[:, None]
    return ordered[low] * (1.0 - frac) + ordered[high] * frac


def _sort_keys(values: jax.Array) -> jax.Array:
    """float32 -> int32 with the same order (XLA sorts integers several times faster)."""
    bits = jax.lax.bitcast_convert_type(values, jnp.int32)
    magnitude = bits & jnp.int32(0x7FFFFFFF)
    return jnp.where(bits < 0, -magnitude - 1, magnitude)


def _ranks(values: jax.Array, inside: jax.Array | None = None) -> jax.Array:
    """Rank of each value within its channel: float[D, C] -> int32[D, C] in [0, D).

    The rank is the number of strictly smaller values, so tied values share the lowest rank of
    their block. With `inside` (bool[D]) only the positions inside count and are ranked.
    """
    keys = _sort_keys(values).T  # [C, D]: rows sort contiguously
    if inside is not None:
        keys = jnp.where(inside[None], keys, jnp.iinfo(jnp.int32).max)
    ordered = jax.lax.sort(keys, dimension=1, is_stable=False)
    return jax.vmap(lambda row, query: jnp.searchsorted(row, query, method="scan"))(
        ordered, keys).T.astype(jnp.int32)


def match_histograms(features: jax.Array, quantiles: jax.Array) -> jax.Array:
    """R(F): F with each channel's histogram remapped exactly onto the style's (Wilmot et al.).

    The activation of rank r in channel c becomes quantiles[r, c]: the order of the values is
    kept, their distribution becomes the style's. Exact and bin-free for distinct values; tied
    values (a ReLU's zeros) all take the quantile of the lowest rank in their block (no
    gradient passes a ReLU at zero, so this changes no update). No gradient flows through R:
    it is a constant target, recomputed at every evaluation.

    Args:
      features: float[H, W, C].
      quantiles: float[H W, C] from `style_quantiles(style_features, H * W)`.
    Returns:
      float[H, W, C].
    """
    h, w, c = features.shape
    f = jax.lax.stop_gradient(features).reshape(h * w, c)
    remapped = jnp.take_along_axis(quantiles, _ranks(f), axis=0)
    return jax.lax.stop_gradient(remapped.reshape(h, w, c))


def match_histograms_masked(features: jax.Array, mask: jax.Array,
                            style_sorted: jax.Array, style_count: jax.Array) -> jax.Array:
    """`match_histograms` inside a region only: positions outside it are left unchanged.

    Used where only part of an image is matched (semantic regions, painterly harmonisation).
    The region's n activations are matched to its style's K by quantile: rank r reads the
    sorted style values at position (r + 1/2) K / n - 1/2, linearly interpolated.

    Args:
      features: float[H, W, C].
      mask: bool or float[H, W]; positions with mask > 0.5 are matched.
      style_sorted: float[K, C]: the style activations of the matching region, sorted along
        axis 0, with the first `style_count` rows valid (the rest are ignored padding).
      style_count: int[], number of valid rows (>= 1).
    Returns:
      float[H, W, C], no gradient.
    """
    h, w, c = features.shape
    inside = mask.reshape(h * w) > 0.5
    f = jax.lax.stop_gradient(features).reshape(h * w, c)
    count = jnp.maximum(jnp.sum(inside), 1)
    position = (_ranks(f, inside) + 0.5) * style_count / count - 0.5  # [D, C]
    values = jax.vmap(lambda column, pos: _interpolate_sorted(column[:, None], pos,
                                                              style_count)[:, 0],
                      in_axes=1, out_axes=1)(style_sorted, position)
    return jax.lax.stop_gradient(jnp.where(inside[:, None], values, f).reshape(h, w, c))


def histogram_loss(features: jax.Array, matched: jax.Array, mask: jax.Array | None = None
                   ) -> jax.Array:
    """Wilmot et al.'s histogram loss at one layer: mean over positions and channels of
    (F - R(F))^2, with R(F) from `match_histograms` (or its masked form, then averaged over the
    region's positions only).

    The paper sums; jstyle takes the mean (as for L_c), so the term is independent of the image
    size and of the layer's width (see README for the weights this gives).

    Args:
      features, matched: float[H, W, C]; mask: optional float[H, W] (> 0.5 inside).
    Returns:
      float[] loss.
    """
    sq = jnp.square(features - matched)
    if mask is None:
        return jnp.mean(sq)
    inside = (mask > 0.5).astype(sq.dtype)
    return jnp.sum(sq * inside[..., None]) / (jnp.maximum(jnp.sum(inside), 1.0) * sq.shape[-1])


def mrf_loss(features: jax.Array, style_patches: jax.Array, field: jax.Array, stride: int = 1,
             position_weights: jax.Array | None = None) -> jax.Array:
    """Li & Wand's MRF energy for a given match: E = sum_i ||Psi_i(F) - Psi_NN(i)(F_s)||^2.

    A sum over the k x k patches i of F on its grid at `stride` and over their elements, as in
    the paper; overlapping patches count a position once per patch that covers it. With
    `position_weights`, each element's squared difference is weighted by its position's
    weight (see `mrf_coverage_weights` for CNNMRF's code normalisation).

    Args:
      features: float[H, W, C], the output's features.
      style_patches: float[P, k, k, C], the candidate style patches (unnormalised).
      field: int[rows, columns], the matched candidate of every patch of F on its grid at
        `stride` (e.g. from `patches.nearest_patches`, which CNNMRF recomputes at every
        evaluation).
      position_weights: optional float[H, W].
    Returns:
      float[] loss.
    """
    rows, cols = field.shape
    k = style_patches.shape[1]
    chosen = style_patches[field]  # [rows, cols, k, k, C]
    span = lambda d, n: slice(d, d + (n - 1) * stride + 1, stride)
    total = jnp.zeros((), features.dtype)
    for dy in range(k):
        for dx in range(k):
            sq = jnp.square(features[span(dy, rows), span(dx, cols)] - chosen[:, :, dy, dx])
            if position_weights is not None:
                sq = sq * position_weights[span(dy, rows), span(dx, cols), None]
            total = total + jnp.sum(sq)
    return total


def mrf_coverage_weights(height: int, width: int, size: int, stride: int) -> np.ndarray:
    """Weights that make `mrf_loss`'s gradient CNNMRF's: float32[height, width], 1 / (2 c_p)
    where c_p counts the patches (k x k, at `stride`) covering position p, 0 where none does.

    CNNMRF's code sets the gradient at each position to F - V, V the average of the matched
    patches' values there (mylib/mrf.lua), not the paper energy's 2 c_p (F - V); this weighted
    energy has exactly that gradient, so the authors' weights carry over.
    """
    rows, cols = (height - size) // stride + 1, (width - size) // stride + 1
    count = np.zeros((height, width), np.float32)
    for dy in range(size):
        for dx in range(size):
            count[dy:dy + (rows - 1) * stride + 1:stride,
                  dx:dx + (cols - 1) * stride + 1:stride] += 1
    return np.where(count > 0, 0.5 / np.maximum(count, 1), 0).astype(np.float32)


def mrf_term(features: jax.Array, candidates: jax.Array, stride: int = 1,
             position_weights: jax.Array | None = None, guide: jax.Array | None = None,
             candidate_guide: jax.Array | None = None, guide_weight: float | jax.Array = 1.0,
             budget_bytes: int = 256 * 2**20) -> jax.Array:
    """CNNMRF's style term: match every patch of the output's features to its nearest candidate
    (normalised cross-correlation, `patches.nearest_patches`) at this evaluation, then
    `mrf_loss`. The match is a constant (no gradient flows through the argmax), recomputed on
    every call: matching once would freeze the field of the first image.

    Args:
      features: float[H, W, C]; candidates: float[P, k, k, C] (e.g. the style's patches).
      stride: the output's patches are taken at this stride (CNNMRF's synthesis stride).
      position_weights: see `mrf_loss`.
      guide, candidate_guide: optional extra channels for matching only, float[H, W, G] and
        float[P, k, k, G] (semantic labels, neural doodle), scored with `guide_weight` (see
        `patches.nearest_patches`), so that patches match within their regions.
    Returns:
      float[] loss.
    """
    from jstyle.ops import patches
    field, _ = patches.nearest_patches(jax.lax.stop_gradient(features), candidates,
                                       candidates.shape[1], stride, budget_bytes, guide,
                                       candidate_guide, guide_weight)
    return mrf_loss(features, candidates, field, stride, position_weights)
