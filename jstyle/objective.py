"""The objective of Gatys, Ecker & Bethge (2016), "Image style transfer using convolutional
neural networks": its hyperparameters, targets and loss terms, shared by the methods that
optimise it (gatys; video, which adds a temporal term) and by sweeps.

The pixels of an image O are optimised so that its VGG-19 features match the content image I
at the content layers and its Gram matrices match the style image(s) S at the style layers:

  L = alpha * L_c + beta * L_s + w_tv * L_tv + w_hist * L_hist   (see jstyle.ops.losses)

with the histogram loss (Wilmot et al. 2017) and semantic masks whose regions take their style
only from the matching style region (Chen & Hsu 2016; Champandard 2016; Gatys et al. 2017's
guided Grams).

Two normalisations:
  * "jstyle" (the seed formulas): G = F^T F / D, L_c and L_s halved means, L_tv per position,
    O in 8-bit levels. Every term is independent of the image size, so weights found at 256 px
    carry to 1024 px.
  * "neural-style": jcjohnson/neural-style's (StyleLoss divides the Gram by C H W,
    Content/StyleLoss use MSECriterion, TVLoss is half the squared differences over the
    interior), which the authors' video code keeps, so weights known from them carry over.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jstyle.ops import losses
from jstyle.ops import masks
from jstyle.engine import options
from jstyle.ops import tiles
from jstyle.nets import vgg
from jstyle.errors import InputError
from jstyle.params import field, pytree
from jstyle.engine.options import RunOptions
from jstyle.nets.weights import VGGWeights

NORMALIZATIONS = ("jstyle", "neural-style")


@pytree
@dataclasses.dataclass(frozen=True)
class GatysParams:
    """The objective's hyperparameters, a pytree.

    Layer choices are static; weights are leaves, so a sweep can vmap over them (a layer that
    is switched off is a zero weight).
    """
    content_layers: tuple[str, ...] = field(("relu4_2",), "Content layers.", static=True)
    style_layers: tuple[str, ...] = field(
        ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"), "Gram style layers.",
        static=True)
    hist_layers: tuple[str, ...] = field(("relu1_1", "relu4_1"), "Histogram-loss layers "
                                         "(Wilmot et al.'s choice).", static=True)
    pooling: str = field("max", "VGG pooling: max or avg.", choices=("max", "avg"), static=True)
    normalization: str = field("jstyle", "Loss normalisation: jstyle (size-independent) or "
                               "neural-style (jcjohnson/neural-style's); see the README.",
                               choices=NORMALIZATIONS, static=True)
    content_weight: Any = field(1.0, "Content weight alpha.")
    style_weight: Any = field(10.0, "Gram style weight beta.")
    tv_weight: Any = field(0.0, "Total-variation weight (image in 8-bit levels).")
    hist_weight: Any = field(0.0, "Histogram-loss weight (Wilmot et al. 2017; 0: off, and the "
                             "histogram term is left out of the compiled loss).")
    content_layer_weights: Any = field((1.0,), "Weight per content layer (1 each when "
                                       "--content_layers is given alone).")
    style_layer_weights: Any = field((1.0, 1.0, 1.0, 1.0, 1.0), "Weight per style layer (1 "
                                     "each when --style_layers is given alone).")
    hist_layer_weights: Any = field((1.0, 1.0), "Weight per histogram layer (1 each when "
                                    "--hist_layers is given alone).")


class Targets(NamedTuple):
    """What the objective compares against, computed once per run (per pyramid level).

    Without semantic masks `regions` is None. With them, R is the number of content regions,
    and the style and histogram targets are per region.
    """
    content: dict[str, jax.Array]  # layer -> F_l[I], float32[H_l, W_l, C_l]
    style: dict[str, jax.Array]  # layer -> blended G_l[S], float32[C_l, C_l] (masks: [R, ...])
    hist: dict[str, jax.Array]  # layer -> blended style quantiles, float32[H_l W_l, C_l]
    #   (masks: float32[R, K_l, C_l], each region's sorted style activations, padded)
    hist_counts: dict[str, jax.Array] | None  # masks: layer -> int32[R], valid rows of hist
    regions: dict[str, jax.Array] | None  # masks: layer -> float32[R, H_l, W_l], the output's


class Data(NamedTuple):
    """Everything the compiled objective takes besides the image: one level's data."""
    vgg_params: dict  # vgg.prepare(weights.params)
    scales: dict  # layer -> float32[], the feature divisors (`layer_scales`)
    targets: Targets
    hp: GatysParams  # the weights are leaves: float32[] (a sweep batch: float32[K])

    @classmethod
    def sweep_axes(cls) -> "Data":
        """The batch axes of a sweep's data: the hyperparameters vary, the rest is shared."""
        return cls(None, None, None, 0)


def validate(hp: GatysParams, opts: RunOptions, num_styles: int) -> None:
    """Raises InputError for option values that cannot work, naming the fix."""
    vgg.check_layers(hp.content_layers + hp.style_layers + hp.hist_layers)
    for name in ("content_layers", "style_layers") + (("hist_layers",) if float(
            hp.hist_weight) > 0 else ()):
        if not getattr(hp, name):
            raise InputError(f"--{name} is empty; give at least one layer (to leave a term "
                             "out, set its weight to 0)")
    if hp.normalization not in NORMALIZATIONS:
        raise InputError(f"unknown normalization {hp.normalization!r}; "
                         f"use one of {', '.join(NORMALIZATIONS)}")
    if hp.pooling not in ("max", "avg"):
        raise InputError(f"unknown pooling {hp.pooling!r}; use max or avg")
    options.check_layer_weights(hp, ("content", "style", "hist"))
    options.check_nonnegative({
        "content_weight": [hp.content_weight], "style_weight": [hp.style_weight],
        "tv_weight": [hp.tv_weight], "hist_weight": [hp.hist_weight],
        "content_layer_weights": hp.content_layer_weights,
        "style_layer_weights": hp.style_layer_weights,
        "hist_layer_weights": hp.hist_layer_weights})
    options.check_moves({
        "content_weight": hp.content_weight * sum(hp.content_layer_weights),
        "style_weight": hp.style_weight * sum(hp.style_layer_weights),
        "tv_weight": hp.tv_weight, "hist_weight": hp.hist_weight * sum(hp.hist_layer_weights)})
    options.validate_options(opts, num_styles)


def _gram(features: jax.Array, hp: GatysParams, mask: jax.Array | None = None) -> jax.Array:
    """G_l of one feature map (float[H, W, C]) in `hp`'s normalisation, inside `mask` if given."""
    if mask is None:
        return losses.gram_matrix(features, _gram_normalize(hp))
    g = losses.guided_gram_matrix(features, mask)
    return g / features.shape[-1] if hp.normalization == "neural-style" else g


def _gram_normalize(hp: GatysParams) -> str:
    return "elements" if hp.normalization == "neural-style" else "positions"


def layer_scales(weights: VGGWeights, hp: GatysParams) -> dict[str, jax.Array]:
    """Feature divisors, `{layer: float32[]}`: each layer's mean activation (a normalised
    network, see vgg.layer_scale) for the jstyle normalisation, ones for neural-style's raw
    features."""
    layers = hp.content_layers + hp.style_layers + hp.hist_layers
    if hp.normalization == "neural-style":
        return {l: jnp.float32(1.0) for l in dict.fromkeys(layers)}
    return vgg.layer_scales(weights.filter_means, layers)


def _features(vgg_params: dict, scales: dict, image: jax.Array, layers: tuple[str, ...],
              hp: GatysParams, convention, remat: bool = False) -> dict[str, jax.Array]:
    """Scaled features of `image` (float32[H, W, 3], 8-bit levels) at `layers`."""
    return vgg.image_features(vgg_params, image, layers, convention, scales, hp.pooling, remat)


@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6, 7))
def _extract(vgg_params: dict, scales: dict, image: jax.Array, layers: tuple[str, ...],
             gram_layers: tuple[str, ...], hp: GatysParams, convention,
             grid: tuple[int, int] | None) -> tuple[dict, dict]:
    """Target features of `image` (float32[H, W, 3], 8-bit levels): whole maps at `layers`
    ({layer: float32[H_l, W_l, C_l]}) and unnormalised Grams at `gram_layers` ({layer: sum F
    F^T, float32[C_l, C_l]}), computed tile by tile with `grid` (None: the whole image), so a
    print-size image's targets need no more memory than its optimisation."""
    h, w = image.shape[:2]
    read = tuple(dict.fromkeys(layers + gram_layers))

    def statistics(window, _, tile):
        f = _features(vgg_params, scales, window, read, hp, convention)
        return ({l: tiles.place(tile, vgg.pools(l), f[l], (h, w)) for l in layers},
                {l: _weighted_gram(f[l], tiles.core_mask(tile, vgg.pools(l), f[l].shape[:2]))
                 for l in gram_layers})
    if grid is None:
        return statistics(image, None, None)
    return tiles.accumulate(statistics, image, None, tiles.plan(h, w, grid, vgg.deepest(read)))


def content_targets(data: Data, content: np.ndarray, convention,
                    grid: tuple[int, int] | None = None) -> dict[str, jax.Array]:
    """The content targets of another image of the same size (a clip's next frame), with
    `data`'s network, scales and layers: content float32[H, W, 3] in 8-bit levels ->
    {layer: float32[H_l, W_l, C_l]}."""
    return _extract(data.vgg_params, data.scales, jnp.asarray(content), data.hp.content_layers,
                    (), data.hp, convention, grid)[0]


def _region_values(feats: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A region's activations, float[n, C]: positions where the layer mask is > 0.5 (or, for a
    region too thin to survive pooling that well, where it is largest)."""
    inside = mask > min(0.5, float(mask.max()) - 1e-6)
    return feats[inside]


def compute_targets(vgg_params: dict, scales: dict, content: jax.Array, styles: list[jax.Array],
                    blend: tuple[float, ...], hp: GatysParams, convention,
                    regions: tuple[np.ndarray, list[np.ndarray], np.ndarray] | None = None,
                    grid: tuple[int, int] | None = None) -> Targets:
    """Content features, blended style Grams and blended style quantiles.

    Args:
      content: float32[H, W, 3] in 8-bit levels; styles: float32[H_i, W_i, 3] in 8-bit levels.
      blend: one weight per style, summing to 1.
      regions: semantic masks, or None: (content masks float32[R, H, W]; per style, masks
        float32[R, H_i, W_i]; present bool[S, R], style i has region r). Region r then takes
        its targets from the styles that have it (blend weights renormalised among them), or
        from the whole of every style if none has it.
      grid: compute the features tile by tile (`_extract`), or None.
    """
    content_feats = _extract(vgg_params, scales, content, hp.content_layers, (), hp,
                             convention, grid)[0]
    layers = tuple(dict.fromkeys(hp.style_layers + hp.hist_layers))
    d = {l: (content.shape[0] >> vgg.pools(l)) * (content.shape[1] >> vgg.pools(l))
         for l in hp.hist_layers}
    if regions is None:
        read = [_extract(vgg_params, scales, s, hp.hist_layers, hp.style_layers, hp, convention,
                         grid) for s in styles]
        style = {l: sum(b * _gram_mean(g[l], (s.shape[0] >> vgg.pools(l))
                                       * (s.shape[1] >> vgg.pools(l)), hp)
                        for (_, g), s, b in zip(read, styles, blend))
                 for l in hp.style_layers}
        style_feats = [f for f, _ in read]
        hist = {l: sum(b * losses.style_quantiles(f[l], d[l]) for f, b in zip(style_feats, blend))
                for l in hp.hist_layers}
        return Targets(content=content_feats, style=style, hist=hist, hist_counts=None,
                       regions=None)

    style_feats = [_extract(vgg_params, scales, s, layers, (), hp, convention, grid)[0]
                   for s in styles]
    content_masks, style_masks, present = regions
    r_count = content_masks.shape[0]
    layer_masks = [{l: masks.at_layer(m, vgg.pools(l)) for l in layers} for m in style_masks]

    def sources(r):
        """(style index, weight, masked) of the styles region r draws from; masked is False
        where the region falls back to whole style images."""
        has = [i for i in range(len(styles)) if present[i, r]]
        total = sum(blend[i] for i in has)
        if not has or total <= 0:
            return [(i, blend[i], False) for i in range(len(styles))]
        return [(i, blend[i] / total, True) for i in has]

    style, hist, counts = {}, {}, {}
    for l in hp.style_layers:
        style[l] = jnp.stack([
            sum(b * _gram(style_feats[i][l], hp, layer_masks[i][l][r] if masked else None)
                for i, b, masked in sources(r)) for r in range(r_count)])
    for l in hp.hist_layers:
        per_region = []
        for r in range(r_count):
            values = [(_region_values(np.asarray(style_feats[i][l]), layer_masks[i][l][r])
                       if masked else
                       np.asarray(style_feats[i][l]).reshape(-1, style_feats[i][l].shape[-1]), b)
                      for i, b, masked in sources(r)]
            k = max(len(v) for v, _ in values)
            per_region.append(sum(b * np.asarray(losses.style_quantiles(v[:, None], k))
                                  for v, b in values))
        k_max = max(len(v) for v in per_region)
        hist[l] = jnp.stack([np.concatenate([v, np.repeat(v[-1:], k_max - len(v), 0)])
                             for v in per_region])
        counts[l] = jnp.asarray([len(v) for v in per_region], jnp.int32)
    output_masks = {l: jnp.asarray(masks.at_layer(content_masks, vgg.pools(l))) for l in layers}
    return Targets(content=content_feats, style=style, hist=hist, hist_counts=counts,
                   regions=output_masks)


def _region_weights(m: jax.Array) -> jax.Array:
    """float[R, H_l, W_l] masks -> float[R], each region's share of the image's area."""
    area = jnp.mean(m, axis=(1, 2))
    return area / jnp.maximum(jnp.sum(area), 1e-8)


def _weighted_gram(features: jax.Array, weight: jax.Array | None) -> jax.Array:
    """sum_p weight_p F_p F_p^T: features float[h, w, C], weight float[h, w] or None (all 1)
    -> float32[C, C], unnormalised (a sum over positions, so tiles add up)."""
    h, w, c = features.shape
    f = features.reshape(h * w, c)
    weighted = f if weight is None else f * weight.reshape(h * w, 1)
    return jnp.matmul(weighted.T, f, precision=jax.lax.Precision.HIGHEST)


def _gram_mean(total: jax.Array, positions, hp: GatysParams) -> jax.Array:
    """A Gram matrix in `hp`'s normalisation from its sum over `positions` (sum F F^T,
    float32[..., C, C]): divided by the positions (jstyle), and by C too (neural-style)."""
    per_channel = total.shape[-1] if hp.normalization == "neural-style" else 1
    return total / (positions * per_channel)


def _statistics(window: jax.Array, data: Data, tile: tiles.Tile | None, convention,
                remat: bool, shape: tuple[int, int]) -> dict:
    """The sums over positions that the loss terms are functions of, over the positions of
    `window` (float32[h, w, 3], 8-bit levels: the whole H x W image when `tile` is None, else a
    tile's window, counting only its core):

      content: {layer: sum (F - F_target)^2}, float32[];
      gram: {layer: sum F F^T}, float32[C, C] (masks: per region, sum m^2 F F^T, [R, C, C]);
      hist: {layer: F placed at its positions in a whole-image map}, float32[H_l, W_l, C]
        (histogram matching ranks every position of the image, so it needs them all).
    """
    vgg_params, scales, targets, hp = data
    layers = tuple(dict.fromkeys(hp.content_layers + hp.style_layers + hp.hist_layers))
    feats = _features(vgg_params, scales, window, layers, hp, convention, remat)
    core = {l: tiles.core_mask(tile, vgg.pools(l), feats[l].shape[:2]) for l in layers}
    content = {}
    for l in hp.content_layers:
        sq = jnp.square(feats[l] - tiles.window_of(tile, vgg.pools(l), targets.content[l],
                                                   feats[l].shape[:2]))
        content[l] = jnp.sum(sq if core[l] is None else sq * core[l][..., None])
    gram = {}
    for l in hp.style_layers:
        if targets.regions is None:
            gram[l] = _weighted_gram(feats[l], core[l])
            continue
        m = tiles.window_of(tile, vgg.pools(l), jnp.moveaxis(targets.regions[l], 0, -1),
                            feats[l].shape[:2])
        weights = jnp.moveaxis(jnp.square(m), -1, 0) * (1.0 if core[l] is None else core[l])
        gram[l] = jax.vmap(lambda w, f=feats[l]: _weighted_gram(f, w))(weights)
    hist = {l: tiles.place(tile, vgg.pools(l), feats[l], shape) for l in hp.hist_layers}
    return {"content": content, "gram": gram, "hist": hist}


def _finish(totals: dict, image: jax.Array, data: Data) -> dict[str, jax.Array]:
    """The weighted loss terms from the summed `_statistics` and the image (float32[H, W, 3],
    8-bit levels; the total variation reads its pixels): see `loss_terms`."""
    _, _, targets, hp = data
    scale = 1.0 if hp.normalization == "neural-style" else 0.5
    regions = targets.regions
    content = sum(w * scale * totals["content"][l] / targets.content[l].size
                  for l, w in zip(hp.content_layers, hp.content_layer_weights))

    def style_at(l):
        g, target = totals["gram"][l], targets.style[l]
        if regions is None:
            positions = (image.shape[0] >> vgg.pools(l)) * (image.shape[1] >> vgg.pools(l))
            return losses.style_loss(_gram_mean(g, positions, hp), target, scale)
        area = jnp.maximum(jnp.sum(jnp.square(regions[l]), axis=(1, 2)), 1e-8)
        per_region = jax.vmap(losses.style_loss, in_axes=(0, 0, None))(
            _gram_mean(g, area[:, None, None], hp), target, scale)
        return jnp.sum(_region_weights(regions[l]) * per_region)

    def hist_at(l):
        f = totals["hist"][l]
        if regions is None:
            return losses.histogram_loss(f, losses.match_histograms(f, targets.hist[l]))
        per_region = jax.vmap(lambda m, q, n: losses.histogram_loss(
            f, losses.match_histograms_masked(f, m, q, n), m))(
            regions[l], targets.hist[l], targets.hist_counts[l])
        return jnp.sum(_region_weights(regions[l]) * per_region)

    style = sum(w * style_at(l) for l, w in zip(hp.style_layers, hp.style_layer_weights))
    hist = sum(w * hist_at(l) for l, w in zip(hp.hist_layers, hp.hist_layer_weights))
    tv = (losses.total_variation_neural_style(image) if hp.normalization == "neural-style"
          else losses.total_variation(image))
    terms = {"content": hp.content_weight * content, "style": hp.style_weight * style,
             "tv": hp.tv_weight * tv, "hist": hp.hist_weight * jnp.float32(hist)}
    terms["total"] = terms["content"] + terms["style"] + terms["tv"] + terms["hist"]
    return terms


def deepest_layer(hp: GatysParams) -> str:
    """The deepest layer the objective reads (what a tile's margin must cover)."""
    return vgg.deepest(hp.content_layers + hp.style_layers + hp.hist_layers)


def loss_terms(image: jax.Array, data: Data, convention, remat: bool = False,
               tiles_grid: tuple[int, int] | None = None) -> dict[str, jax.Array]:
    """The weighted loss terms and their sum at `image` (float32[H, W, 3], 8-bit levels).

    With semantic masks, each region's guided-Gram and histogram losses are averaged, weighted
    by the region's share of the output's area (one region covering everything is the plain
    loss). With `tiles_grid` (rows, columns), the terms and their gradient are computed tile
    by tile (jstyle.ops.tiles): the same values, exactly, at one tile's memory.

    Returns:
      `{"content": alpha L_c, "style": beta L_s, "tv": w_tv L_tv, "hist": w_hist L_hist,
      "total": their sum}`, each float32[].
    """
    statistics = functools.partial(_statistics, convention=convention, remat=remat,
                                   shape=image.shape[:2])
    if tiles_grid is None:
        return _finish(statistics(image, data, None), image, data)
    cut = tiles.plan(*image.shape[:2], tiles_grid, deepest_layer(data.hp))
    return tiles.tiled(statistics, _finish, cut)(image, data)


def objective(image: jax.Array, data: Data, convention, remat: bool = False,
              tiles_grid: tuple[int, int] | None = None) -> jax.Array:
    """The scalar loss."""
    return loss_terms(image, data, convention, remat, tiles_grid)["total"]


def prepare_data(content: np.ndarray, styles: list[np.ndarray], hp: GatysParams,
                 opts: RunOptions, weights: VGGWeights, labels: masks.Labels | None = None
                 ) -> tuple[Data, np.ndarray, list[np.ndarray], list[float]]:
    """One level's data: the images resized to `opts.size`, checked against the layers, and
    the targets computed once.

    Args:
      content, styles: float[H, W, 3] in [0, 1], any size.
      labels: semantic regions (masks.match), or None.
    Returns:
      (data, content float32[H, W, 3] and styles in 8-bit levels at this size, normalised
      blend weights).
    """
    content, styles = options.resize_inputs(content, styles, opts)
    vgg.check_size(content.shape, hp.content_layers + hp.style_layers + hp.hist_layers,
                   "content")
    for s in styles:
        vgg.check_size(s.shape, hp.style_layers + hp.hist_layers, "style")
    blend = list(opts.style_blend_weights or [1.0] * len(styles))
    blend = [b / sum(blend) for b in blend]
    if not float(hp.hist_weight) > 0:  # keep the sorts out of the compiled loss
        hp = dataclasses.replace(hp, hist_layers=(), hist_layer_weights=())
    hp = dataclasses.replace(hp, **{f: tuple(float(w) for w in getattr(hp, f)) for f in (
        "content_layer_weights", "style_layer_weights", "hist_layer_weights")})
    regions = None
    if labels is not None:
        count = len(labels.colors)
        regions = (masks.one_hot(labels.content, count, *content.shape[:2]),
                   [masks.one_hot(l, count, *s.shape[:2]) for l, s in zip(labels.styles, styles)],
                   labels.present)
    vgg_params = vgg.prepare(weights.params, options.precision(opts))
    scales = layer_scales(weights, hp)
    targets = compute_targets(vgg_params, scales, jnp.asarray(content),
                              [jnp.asarray(s) for s in styles], tuple(blend), hp,
                              weights.convention, regions,
                              (opts.tile, opts.tile) if opts.tile > 1 else None)
    return Data(vgg_params, scales, targets, hp), content, styles, blend


