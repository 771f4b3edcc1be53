"""Gatys, Ecker & Bethge (2016), "Image style transfer using convolutional neural networks".

Optimises the pixels of an image O so that its VGG-19 features match the content image I at the
content layers and its Gram matrices match the style image(s) S at the style layers:

  L = alpha * L_c + beta * L_s + w_tv * L_tv + w_hist * L_hist   (see jstyle.losses)

with the refinements users of the field expect: the histogram loss (Wilmot et al. 2017),
colour control and coarse-to-fine scale control (Gatys et al. 2017, "Controlling perceptual
factors in neural style transfer"), and semantic masks whose regions take their style only from
the matching style region (Chen & Hsu 2016; Champandard 2016; Gatys et al. 2017's guided Grams).

Two normalisations (presets) are offered:
  * "jstyle" (default, the seed formulas): G = F^T F / D, L_c and L_s halved means, L_tv per
    position, O in 8-bit levels. Every term is independent of the image size, so weights found
    at 256 px carry to 1024 px.
  * "neural-style": jcjohnson/neural-style's normalisation and defaults (neural_style.lua:
    content_weight 5e0, style_weight 1e2, tv_weight 1e-3, image_size 512, num_iterations 1000,
    init random = mean pixel + 0.001 N(0, 1), learning_rate 1e1, lbfgs with 100 corrections;
    StyleLoss divides the Gram by C H W, Content/StyleLoss use MSECriterion, TVLoss is half the
    squared differences over the interior), so weights known from it carry over. Its L-BFGS has
    no line search; jstyle's always uses optax's zoom line search.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import pathlib
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jstyle import image as image_lib
from jstyle import losses, masks, optimize, vgg
from jstyle.errors import InputError
from jstyle.methods import register
from jstyle.progress import Progress
from jstyle.weights import VGGWeights

NORMALIZATIONS = ("jstyle", "neural-style")
PRESERVE_COLORS = ("none", "luminance", "match", "original")
COLOR_MATCH_MODES = ("pca", "chol", "sym")
IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)  # VGG's mean pixel, 8-bit levels, RGB


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["content_weight", "style_weight", "tv_weight", "hist_weight",
                 "content_layer_weights", "style_layer_weights", "hist_layer_weights"],
    meta_fields=["content_layers", "style_layers", "hist_layers", "pooling", "normalization"])
@dataclasses.dataclass(frozen=True)
class GatysParams:
    """The objective's hyperparameters, a pytree.

    Layer choices are static; weights are leaves, so a sweep can vmap over them (a layer that
    is switched off is a zero weight).
    """
    content_layers: tuple[str, ...] = ("relu4_2",)
    style_layers: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    hist_layers: tuple[str, ...] = ("relu1_1", "relu4_1")  # Wilmot et al.'s choice
    pooling: str = "max"  # "max" or "avg"
    normalization: str = "jstyle"  # one of NORMALIZATIONS
    content_weight: Any = 1.0  # alpha
    style_weight: Any = 10.0  # beta
    tv_weight: Any = 0.0  # w_tv
    hist_weight: Any = 0.0  # w_hist (0 leaves the histogram term out of the compiled loss)
    content_layer_weights: Any = (1.0,)  # w_c,l, one per content layer
    style_layer_weights: Any = (1.0, 1.0, 1.0, 1.0, 1.0)  # w_s,l, one per style layer
    hist_layer_weights: Any = (1.0, 1.0)  # gamma_l, one per histogram layer


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How a run is carried out (not part of the objective)."""
    size: int = 512  # longer edge of the output, pixels
    steps: int = 500  # optimiser steps (L-BFGS iterations or Adam steps)
    optimizer: str = "lbfgs"  # "lbfgs" or "adam"
    learning_rate: float = 4.0  # Adam step size in 8-bit levels
    lbfgs_memory: int = 10  # L-BFGS history length
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


PRESETS: dict[str, tuple[GatysParams, RunOptions]] = {
    "jstyle": (GatysParams(), RunOptions()),
    "neural-style": (
        GatysParams(normalization="neural-style", content_weight=5.0, style_weight=100.0,
                    tv_weight=1e-3),
        RunOptions(size=512, steps=1000, init="noise", init_noise=0.001, learning_rate=10.0,
                   lbfgs_memory=100, tol=0.0, save_every=100)),
}


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


def validate(hp: GatysParams, opts: RunOptions, num_styles: int) -> None:
    """Raises InputError for option values that cannot work, naming the fix."""
    vgg.check_layers(hp.content_layers + hp.style_layers + hp.hist_layers)
    if hp.normalization not in NORMALIZATIONS:
        raise InputError(f"unknown normalization {hp.normalization!r}; "
                         f"use one of {', '.join(NORMALIZATIONS)}")
    if hp.pooling not in ("max", "avg"):
        raise InputError(f"unknown pooling {hp.pooling!r}; use max or avg")
    for name, layers, layer_weights in (("content", hp.content_layers, hp.content_layer_weights),
                                        ("style", hp.style_layers, hp.style_layer_weights),
                                        ("hist", hp.hist_layers, hp.hist_layer_weights)):
        if len(layer_weights) != len(layers):
            raise InputError(f"{len(layer_weights)} --{name}_layer_weights for "
                             f"{len(layers)} --{name}_layers; give one weight per layer")
    named = {"content_weight": [hp.content_weight], "style_weight": [hp.style_weight],
             "tv_weight": [hp.tv_weight], "hist_weight": [hp.hist_weight],
             "content_layer_weights": hp.content_layer_weights,
             "style_layer_weights": hp.style_layer_weights,
             "hist_layer_weights": hp.hist_layer_weights,
             "style_blend_weights": opts.style_blend_weights or [1.0],
             "style_scale": [opts.style_scale], "init_noise": [opts.init_noise],
             "learning_rate": [opts.learning_rate], "tol": [opts.tol]}
    for name, values in named.items():
        for v in values:
            if not math.isfinite(float(v)) or float(v) < 0:
                raise InputError(f"--{name}={v} is invalid; weights must be finite and >= 0")
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


def _check_size(img: np.ndarray, layers: tuple[str, ...], what: str) -> None:
    need = vgg.min_size(layers)
    if min(img.shape[:2]) < need:
        raise InputError(
            f"the {what} image is {img.shape[1]}x{img.shape[0]} px after resizing, but layer "
            f"{max(layers, key=vgg.LAYERS.index)} needs at least {need} px on each side; use a "
            "larger --size/--style_scale (or coarsest pyramid level) or shallower layers")


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
    layers = dict.fromkeys(hp.content_layers + hp.style_layers + hp.hist_layers)
    if hp.normalization == "neural-style":
        return {l: jnp.float32(1.0) for l in layers}
    return {l: jnp.asarray(vgg.layer_scale(weights.filter_means, l)) for l in layers}


def _features(vgg_params: dict, scales: dict, image: jax.Array, layers: tuple[str, ...],
              hp: GatysParams, convention, remat: bool = False) -> dict[str, jax.Array]:
    """Scaled features of `image` (float32[H, W, 3], 8-bit levels) at `layers`."""
    feats = vgg.features(vgg_params, image_lib.preprocess(image, convention), layers, hp.pooling,
                         remat)
    return {l: feats[l] / scales[l] for l in layers}


def _pools(layer: str) -> int:
    return sum(1 for n in vgg.LAYERS[: vgg.LAYERS.index(layer)] if n.startswith("pool"))


def _region_values(feats: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A region's activations, float[n, C]: positions where the layer mask is > 0.5 (or, for a
    region too thin to survive pooling that well, where it is largest)."""
    inside = mask > min(0.5, float(mask.max()) - 1e-6)
    return feats[inside]


def compute_targets(vgg_params: dict, scales: dict, content: jax.Array, styles: list[jax.Array],
                    blend: tuple[float, ...], hp: GatysParams, convention,
                    regions: tuple[np.ndarray, list[np.ndarray], np.ndarray] | None = None
                    ) -> Targets:
    """Content features, blended style Grams and blended style quantiles.

    Args:
      content: float32[H, W, 3] in 8-bit levels; styles: float32[H_i, W_i, 3] in 8-bit levels.
      blend: one weight per style, summing to 1.
      regions: semantic masks, or None: (content masks float32[R, H, W]; per style, masks
        float32[R, H_i, W_i]; present bool[S, R], style i has region r). Region r then takes
        its targets from the styles that have it (blend weights renormalised among them), or
        from the whole of every style if none has it.
    """
    extract = jax.jit(_features, static_argnums=(3, 4, 5))
    content_feats = extract(vgg_params, scales, content, hp.content_layers, hp, convention)
    layers = tuple(dict.fromkeys(hp.style_layers + hp.hist_layers))
    style_feats = [extract(vgg_params, scales, s, layers, hp, convention) for s in styles]
    d = {l: (content.shape[0] >> _pools(l)) * (content.shape[1] >> _pools(l))
         for l in hp.hist_layers}
    if regions is None:
        style = {l: sum(b * _gram(f[l], hp) for f, b in zip(style_feats, blend))
                 for l in hp.style_layers}
        hist = {l: sum(b * losses.style_quantiles(f[l], d[l]) for f, b in zip(style_feats, blend))
                for l in hp.hist_layers}
        return Targets(content=content_feats, style=style, hist=hist, hist_counts=None,
                       regions=None)

    content_masks, style_masks, present = regions
    r_count = content_masks.shape[0]
    layer_masks = [{l: masks.at_layer(m, _pools(l)) for l in layers} for m in style_masks]

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
    output_masks = {l: jnp.asarray(masks.at_layer(content_masks, _pools(l))) for l in layers}
    return Targets(content=content_feats, style=style, hist=hist, hist_counts=counts,
                   regions=output_masks)


def _region_weights(m: jax.Array) -> jax.Array:
    """float[R, H_l, W_l] masks -> float[R], each region's share of the image's area."""
    area = jnp.mean(m, axis=(1, 2))
    return area / jnp.maximum(jnp.sum(area), 1e-8)


def loss_terms(image: jax.Array, vgg_params: dict, scales: dict, targets: Targets,
               hp: GatysParams, convention, remat: bool = False) -> dict[str, jax.Array]:
    """The weighted loss terms and their sum at `image` (float32[H, W, 3], 8-bit levels).

    With semantic masks, each region's guided-Gram and histogram losses are averaged, weighted
    by the region's share of the output's area (one region covering everything is the plain
    loss).

    Returns:
      `{"content": alpha L_c, "style": beta L_s, "tv": w_tv L_tv, "hist": w_hist L_hist,
      "total": their sum}`, each float32[].
    """
    scale = 1.0 if hp.normalization == "neural-style" else 0.5
    layers = tuple(dict.fromkeys(hp.content_layers + hp.style_layers + hp.hist_layers))
    feats = _features(vgg_params, scales, image, layers, hp, convention, remat)
    regions = targets.regions
    content = sum(w * losses.content_loss(feats[l], targets.content[l], scale)
                  for l, w in zip(hp.content_layers, hp.content_layer_weights))

    def style_at(l):
        f, target = feats[l], targets.style[l]
        if regions is None:
            return losses.style_loss(_gram(f, hp), target, scale)
        per_region = jax.vmap(lambda m, t: losses.style_loss(_gram(f, hp, m), t, scale))(
            regions[l], target)
        return jnp.sum(_region_weights(regions[l]) * per_region)

    def hist_at(l):
        f = feats[l]
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


def objective(image: jax.Array, data: tuple, convention, remat: bool = False) -> jax.Array:
    """The scalar loss; `data` is `(vgg_params, scales, targets, hp)`."""
    return loss_terms(image, *data, convention, remat)["total"]


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


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a, np.float32).tobytes())
    return h.hexdigest()


class Result(NamedTuple):
    image: np.ndarray  # float32[H, W, 3] in [0, 1]: the output (last good image on failure)
    record: dict  # how it was made: options, losses, steps, seconds, stop reason
    history: list[dict]  # one entry per progress point: step and each loss term


def _terms_to_floats(terms: dict) -> dict[str, float]:
    return {k: float(v) for k, v in terms.items()}


class Problem(NamedTuple):
    """A run made ready: the compiled chunk, its first state and the arrays it needs."""
    chunk: Callable  # optimize.make_chunk(...): (state, end, data) -> state
    state: optimize.LoopState  # before the first step
    data: tuple  # (vgg params, layer scales, targets, hp): the chunk's `data` argument
    terms: Callable  # jitted (image, data) -> {"content", "style", "tv", "hist", "total"}
    content: np.ndarray  # float32[H, W, 3], 8-bit levels, resized
    styles: list[np.ndarray]  # float32[H_i, W_i, 3], 8-bit levels, resized
    blend: list[float]  # normalised style blend weights
    init: np.ndarray  # the initial image, 8-bit levels


def setup(content: np.ndarray, styles: list[np.ndarray], hp: GatysParams, opts: RunOptions,
          weights: VGGWeights, key: jax.Array, *, init: np.ndarray | None = None,
          labels: masks.Labels | None = None) -> Problem:
    """Resizes the images to `opts.size`, computes the targets, builds the compiled chunk.

    Args:
      content, styles: float[H, W, 3] in [0, 1], any size.
      init: the starting image (float[h, w, 3], 8-bit levels, any size: resized to the
        content's), e.g. the previous pyramid level's result; default: `opts.init`.
      labels: semantic regions (masks.match), or None.
    """
    validate(hp, opts, len(styles))
    content = image_lib.to_levels(image_lib.resize_to_edge(content, opts.size))
    style_edge = max(1, round(opts.size * opts.style_scale))
    styles = [image_lib.to_levels(image_lib.resize_to_edge(s, style_edge)) for s in styles]
    _check_size(content, hp.content_layers + hp.style_layers + hp.hist_layers, "content")
    for s in styles:
        _check_size(s, hp.style_layers + hp.hist_layers, "style")
    blend = list(opts.style_blend_weights or [1.0] * len(styles))
    blend = [b / sum(blend) for b in blend]
    if float(hp.hist_weight) == 0.0:  # keep the sorts out of the compiled loss
        hp = dataclasses.replace(hp, hist_layers=(), hist_layer_weights=())
    hp = dataclasses.replace(hp, **{f: tuple(float(w) for w in getattr(hp, f)) for f in (
        "content_layer_weights", "style_layer_weights", "hist_layer_weights")})

    regions = None
    if labels is not None:
        count = len(labels.colors)
        regions = (masks.one_hot(labels.content, count, *content.shape[:2]),
                   [masks.one_hot(l, count, *s.shape[:2]) for l, s in zip(labels.styles, styles)],
                   labels.present)
    convention = weights.convention
    vgg_params = vgg.prepare(weights.params)
    scales = layer_scales(weights, hp)
    targets = compute_targets(vgg_params, scales, jnp.asarray(content),
                              [jnp.asarray(s) for s in styles], tuple(blend), hp, convention,
                              regions)
    if init is None:
        init = initial_image(key, opts.init, content, styles, opts.init_noise)
    else:
        init = image_lib.to_levels(image_lib.resize(np.clip(init / 255.0, 0.0, 1.0),
                                                    *content.shape[:2]))
    optimizer = optimize.make_optimizer(opts.optimizer, opts.learning_rate, opts.lbfgs_memory)
    chunk = optimize.make_chunk(
        functools.partial(objective, convention=convention, remat=opts.remat), optimizer,
        uses_linesearch=opts.optimizer == "lbfgs", tol=opts.tol, bounds=(0.0, 255.0))
    terms = jax.jit(lambda image, data: loss_terms(image, *data, convention))
    return Problem(chunk=chunk, state=optimize.init(optimizer, init),
                   data=(vgg_params, scales, targets, hp), terms=terms, content=content,
                   styles=styles, blend=blend, init=init)


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
    return _digest(content, *styles, *extra)


def run(content: np.ndarray, styles: list[np.ndarray], hp: GatysParams, opts: RunOptions,
        weights: VGGWeights, key: jax.Array, *, labels: masks.Labels | None = None,
        snapshot: Callable[[int, np.ndarray], None] | None = None,
        checkpoint: pathlib.Path | None = None, progress: bool = True) -> Result:
    """Stylises `content` with `styles`.

    With `opts.pyramid_levels` > 1 it optimises coarse to fine: each level starts from the
    previous level's result, upsampled, and recomputes the targets at its own size.

    Args:
      content: float32[H, W, 3] in [0, 1], any size (resized to `opts.size` on the longer edge).
      styles: one or more float32[H_i, W_i, 3] in [0, 1] (resized to style_scale * size).
      hp, opts: the objective and the run's options (see PRESETS for defaults).
      weights: VGG-19 weights (jstyle.weights.load).
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
    record = {"method": "gatys", "hyperparameters": dataclasses.asdict(hp),
              "options": dataclasses.asdict(opts), "weights": weights.digest,
              "inputs": _inputs_digest(content, styles, labels, opts),
              "levels": [{"size": size, "steps": steps} for size, steps in levels]}
    saved = optimize.checkpoint_record(checkpoint) if checkpoint is not None else None
    resume_level = saved.get("level", 0) if saved and {**saved, "level": 0} == {
        **json.loads(json.dumps(record)), "level": 0} else 0

    history: list[dict] = []
    bar = Progress(sum(steps for _, steps in levels), "gatys", enabled=progress)
    image, initial_terms, resumed_from = None, None, 0
    offset = sum(steps for _, steps in levels[:resume_level])
    for level, (size, steps) in enumerate(levels):
        if level < resume_level:
            continue
        level_opts = dataclasses.replace(opts, size=size, steps=steps)
        problem = setup(work_content, work_styles, hp, level_opts, weights, key, init=image,
                        labels=labels)
        data, terms_fn, state = problem.data, problem.terms, problem.state
        level_record = {**record, "level": level}
        if level == resume_level and saved:
            resumed = optimize.load_checkpoint(checkpoint, state, level_record)
            if resumed is not None:
                state, resumed_from = resumed, offset + int(resumed.step)
                bar.update(resumed_from, "resumed")
        if initial_terms is None:
            initial_terms = _terms_to_floats(terms_fn(jnp.asarray(problem.init), data))

        def on_stop(s: optimize.LoopState, offset=offset, steps=steps) -> None:
            step = offset + int(s.step)
            out = np.clip(np.asarray(s.good_image if bool(s.failed) else s.image), 0, 255)
            terms = _terms_to_floats(terms_fn(jnp.asarray(out), data))
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

    final_terms = _terms_to_floats(terms_fn(jnp.asarray(image), data))
    output = finish_colors(image / 255.0, content, opts)
    stopped = "nan" if failed else "converged" if bool(state.converged) else "steps"
    record.update({
        "hyperparameters": dataclasses.asdict(hp), "size": list(problem.content.shape[:2]),
        "style_sizes": [list(s.shape[:2]) for s in problem.styles],
        "style_blend_weights": problem.blend, "initial_loss": initial_terms,
        "final_loss": final_terms, "steps": offset, "resumed_from_step": resumed_from,
        "stopped": stopped, "seconds": time.perf_counter() - started})
    if labels is not None:
        record["regions"] = [{"color": [round(float(v)) for v in c],
                              "styles": [i for i in range(len(styles)) if labels.present[i, r]]}
                             for r, c in enumerate(labels.colors)]
    return Result(image=output.astype(np.float32), record=record, history=history)


@register("gatys")
class Gatys:
    """The registry entry: hyperparameters, presets, validation and `run`."""
    Params = GatysParams
    Options = RunOptions
    presets = PRESETS
    validate = staticmethod(validate)
    run = staticmethod(run)
