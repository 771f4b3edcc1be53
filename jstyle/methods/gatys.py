"""Gatys, Ecker & Bethge (2016), "Image style transfer using convolutional neural networks".

Optimises the pixels of an image O so that its VGG-19 features match the content image I at the
content layers and its Gram matrices match the style image(s) S at the style layers:

  L = alpha * L_c + beta * L_s + w_tv * L_tv            (see jstyle.losses for each term)

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
import math
import pathlib
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jstyle import image as image_lib
from jstyle import losses, optimize, vgg
from jstyle.errors import InputError
from jstyle.methods import register
from jstyle.progress import Progress
from jstyle.weights import VGGWeights

NORMALIZATIONS = ("jstyle", "neural-style")
PRESERVE_COLORS = ("none", "luminance")
IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)  # VGG's mean pixel, 8-bit levels, RGB


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["content_weight", "style_weight", "tv_weight", "content_layer_weights",
                 "style_layer_weights"],
    meta_fields=["content_layers", "style_layers", "pooling", "normalization"])
@dataclasses.dataclass(frozen=True)
class GatysParams:
    """The objective's hyperparameters, a pytree.

    Layer choices are static; weights are leaves, so a sweep can vmap over them (a layer that
    is switched off is a zero weight).
    """
    content_layers: tuple[str, ...] = ("relu4_2",)
    style_layers: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    pooling: str = "max"  # "max" or "avg"
    normalization: str = "jstyle"  # one of NORMALIZATIONS
    content_weight: Any = 1.0  # alpha
    style_weight: Any = 10.0  # beta
    tv_weight: Any = 0.0  # w_tv
    content_layer_weights: Any = (1.0,)  # w_c,l, one per content layer
    style_layer_weights: Any = (1.0, 1.0, 1.0, 1.0, 1.0)  # w_s,l, one per style layer


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
    preserve_colors: str = "none"  # "none" or "luminance" (output luma, content chroma)
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
    """What the objective compares against, computed once per run."""
    content: dict[str, jax.Array]  # layer -> F_l[I], float32[H_l, W_l, C_l]
    style: dict[str, jax.Array]  # layer -> blended G_l[S], float32[C_l, C_l]


def validate(hp: GatysParams, opts: RunOptions, num_styles: int) -> None:
    """Raises InputError for option values that cannot work, naming the fix."""
    vgg.check_layers(hp.content_layers + hp.style_layers)
    if hp.normalization not in NORMALIZATIONS:
        raise InputError(f"unknown normalization {hp.normalization!r}; "
                         f"use one of {', '.join(NORMALIZATIONS)}")
    if hp.pooling not in ("max", "avg"):
        raise InputError(f"unknown pooling {hp.pooling!r}; use max or avg")
    for name, layers, layer_weights in (("content", hp.content_layers, hp.content_layer_weights),
                                        ("style", hp.style_layers, hp.style_layer_weights)):
        if len(layer_weights) != len(layers):
            raise InputError(f"{len(layer_weights)} --{name}_layer_weights for "
                             f"{len(layers)} --{name}_layers; give one weight per layer")
    named = {"content_weight": [hp.content_weight], "style_weight": [hp.style_weight],
             "tv_weight": [hp.tv_weight], "content_layer_weights": hp.content_layer_weights,
             "style_layer_weights": hp.style_layer_weights,
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
    if opts.preserve_colors not in PRESERVE_COLORS:
        raise InputError(f"unknown --preserve_colors={opts.preserve_colors}; "
                         f"use one of {', '.join(PRESERVE_COLORS)}")
    for name in ("size", "steps", "lbfgs_memory"):
        if getattr(opts, name) < 1:
            raise InputError(f"--{name}={getattr(opts, name)} must be >= 1")
    for name in ("print_every", "save_every"):
        if getattr(opts, name) < 0:
            raise InputError(f"--{name}={getattr(opts, name)} must be >= 0")


def _check_size(img: np.ndarray, layers: tuple[str, ...], what: str) -> None:
    need = vgg.min_size(layers)
    if min(img.shape[:2]) < need:
        raise InputError(
            f"the {what} image is {img.shape[1]}x{img.shape[0]} px after resizing, but layer "
            f"{max(layers, key=vgg.LAYERS.index)} needs at least {need} px on each side; use a "
            "larger --size/--style_scale or shallower layers")


def _gram_normalize(hp: GatysParams) -> str:
    return "elements" if hp.normalization == "neural-style" else "positions"


def layer_scales(weights: VGGWeights, hp: GatysParams) -> dict[str, jax.Array]:
    """Feature divisors, `{layer: float32[]}`: each layer's mean activation (a normalised
    network, see vgg.layer_scale) for the jstyle normalisation, ones for neural-style's raw
    features."""
    layers = dict.fromkeys(hp.content_layers + hp.style_layers)
    if hp.normalization == "neural-style":
        return {l: jnp.float32(1.0) for l in layers}
    return {l: jnp.asarray(vgg.layer_scale(weights.filter_means, l)) for l in layers}


def _features(vgg_params: dict, scales: dict, image: jax.Array, layers: tuple[str, ...],
              hp: GatysParams, convention) -> dict[str, jax.Array]:
    """Scaled features of `image` (float32[H, W, 3], 8-bit levels) at `layers`."""
    feats = vgg.features(vgg_params, image_lib.preprocess(image, convention), layers, hp.pooling)
    return {l: feats[l] / scales[l] for l in layers}


def compute_targets(vgg_params: dict, scales: dict, content: jax.Array, styles: list[jax.Array],
                    blend: tuple[float, ...], hp: GatysParams, convention) -> Targets:
    """Content features and blended style Grams.

    Args:
      content: float32[H, W, 3] in 8-bit levels; styles: float32[H_i, W_i, 3] in 8-bit levels.
      blend: one weight per style, summing to 1.
    """
    content_feats = _features(vgg_params, scales, content, hp.content_layers, hp, convention)
    grams = {layer: 0.0 for layer in hp.style_layers}
    for style, weight in zip(styles, blend):
        feats = _features(vgg_params, scales, style, hp.style_layers, hp, convention)
        for layer in hp.style_layers:
            grams[layer] = grams[layer] + weight * losses.gram_matrix(feats[layer],
                                                                      _gram_normalize(hp))
    return Targets(content=content_feats, style=grams)


def loss_terms(image: jax.Array, vgg_params: dict, scales: dict, targets: Targets,
               hp: GatysParams, convention) -> dict[str, jax.Array]:
    """The weighted loss terms and their sum at `image` (float32[H, W, 3], 8-bit levels).

    Returns:
      `{"content": alpha L_c, "style": beta L_s, "tv": w_tv L_tv, "total": their sum}`,
      each float32[].
    """
    scale = 1.0 if hp.normalization == "neural-style" else 0.5
    layers = tuple(dict.fromkeys(hp.content_layers + hp.style_layers))
    feats = _features(vgg_params, scales, image, layers, hp, convention)
    content = sum(w * losses.content_loss(feats[l], targets.content[l], scale)
                  for l, w in zip(hp.content_layers, hp.content_layer_weights))
    style = sum(w * losses.style_loss(losses.gram_matrix(feats[l], _gram_normalize(hp)),
                                      targets.style[l], scale)
                for l, w in zip(hp.style_layers, hp.style_layer_weights))
    tv = (losses.total_variation_neural_style(image) if hp.normalization == "neural-style"
          else losses.total_variation(image))
    terms = {"content": hp.content_weight * content, "style": hp.style_weight * style,
             "tv": hp.tv_weight * tv}
    terms["total"] = terms["content"] + terms["style"] + terms["tv"]
    return terms


def objective(image: jax.Array, data: tuple, convention) -> jax.Array:
    """The scalar loss; `data` is `(vgg_params, scales, targets, hp)`."""
    return loss_terms(image, *data, convention)["total"]


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
    terms: Callable  # jitted (image, data) -> {"content", "style", "tv", "total"}
    content: np.ndarray  # float32[H, W, 3], 8-bit levels, resized
    styles: list[np.ndarray]  # float32[H_i, W_i, 3], 8-bit levels, resized
    blend: list[float]  # normalised style blend weights
    init: np.ndarray  # the initial image, 8-bit levels


def setup(content: np.ndarray, styles: list[np.ndarray], hp: GatysParams, opts: RunOptions,
          weights: VGGWeights, key: jax.Array) -> Problem:
    """Resizes the images, computes the targets and builds the compiled chunk (see `run`)."""
    validate(hp, opts, len(styles))
    content = image_lib.to_levels(image_lib.resize_to_edge(content, opts.size))
    style_edge = max(1, round(opts.size * opts.style_scale))
    styles = [image_lib.to_levels(image_lib.resize_to_edge(s, style_edge)) for s in styles]
    _check_size(content, hp.content_layers + hp.style_layers, "content")
    for s in styles:
        _check_size(s, hp.style_layers, "style")
    blend = list(opts.style_blend_weights or [1.0] * len(styles))
    blend = [b / sum(blend) for b in blend]
    hp = dataclasses.replace(
        hp, content_layer_weights=tuple(float(w) for w in hp.content_layer_weights),
        style_layer_weights=tuple(float(w) for w in hp.style_layer_weights))

    convention = weights.convention
    vgg_params = vgg.prepare(weights.params)
    scales = layer_scales(weights, hp)
    targets = jax.jit(compute_targets, static_argnums=(4, 6))(
        vgg_params, scales, jnp.asarray(content), [jnp.asarray(s) for s in styles],
        tuple(blend), hp, convention)
    init = initial_image(key, opts.init, content, styles, opts.init_noise)
    optimizer = optimize.make_optimizer(opts.optimizer, opts.learning_rate, opts.lbfgs_memory)
    chunk = optimize.make_chunk(functools.partial(objective, convention=convention), optimizer,
                                uses_linesearch=opts.optimizer == "lbfgs", tol=opts.tol,
                                bounds=(0.0, 255.0))
    terms = jax.jit(lambda image, data: loss_terms(image, *data, convention))
    return Problem(chunk=chunk, state=optimize.init(optimizer, init),
                   data=(vgg_params, scales, targets, hp), terms=terms, content=content,
                   styles=styles, blend=blend, init=init)


def run(content: np.ndarray, styles: list[np.ndarray], hp: GatysParams, opts: RunOptions,
        weights: VGGWeights, key: jax.Array, *,
        snapshot: Callable[[int, np.ndarray], None] | None = None,
        checkpoint: pathlib.Path | None = None, progress: bool = True) -> Result:
    """Stylises `content` with `styles`.

    Args:
      content: float32[H, W, 3] in [0, 1], any size (resized to `opts.size` on the longer edge).
      styles: one or more float32[H_i, W_i, 3] in [0, 1] (resized to style_scale * size).
      hp, opts: the objective and the run's options (see PRESETS for defaults).
      weights: VGG-19 weights (jstyle.weights.load).
      key: PRNG key for the noise init.
      snapshot: called as snapshot(step, image in [0, 1]) every `opts.save_every` steps.
      checkpoint: where to save a resumable checkpoint every `opts.save_every` steps; a matching
        checkpoint found there is resumed from.
      progress: report progress (bar or log lines) every `opts.print_every` steps.
    Returns:
      Result with the image in [0, 1], the run record and the loss history.
    """
    started = time.perf_counter()
    problem = setup(content, styles, hp, opts, weights, key)
    data, terms_fn = problem.data, problem.terms
    state = problem.state
    record = {"method": "gatys", "hyperparameters": dataclasses.asdict(data[3]),
              "options": dataclasses.asdict(opts), "weights": weights.digest,
              "inputs": _digest(problem.content, *problem.styles, problem.init)}
    if checkpoint is not None and checkpoint.exists():
        resumed = optimize.load_checkpoint(checkpoint, state, record)
        if resumed is not None:
            state = resumed
    first_step = int(state.step)

    initial_terms = _terms_to_floats(terms_fn(jnp.asarray(problem.init), data))
    history: list[dict] = []
    bar = Progress(opts.steps, "gatys", enabled=progress)
    if first_step:
        bar.update(first_step, "resumed")

    def on_stop(s: optimize.LoopState) -> None:
        step = int(s.step)
        out = np.clip(np.asarray(s.good_image if bool(s.failed) else s.image), 0, 255)
        terms = _terms_to_floats(terms_fn(jnp.asarray(out), data))
        history.append({"step": step, **terms})
        bar.update(step, " ".join(f"{k}={v:.4g}" for k, v in terms.items()))
        if opts.save_every and step % opts.save_every == 0 and step < opts.steps:
            if snapshot is not None:
                snapshot(step, out / 255.0)
            if checkpoint is not None:
                optimize.save_checkpoint(checkpoint, s, record)

    stops = optimize.boundaries(opts.steps, opts.print_every, opts.save_every)
    state = optimize.run(problem.chunk, state, data, stops, on_stop)
    bar.close()

    failed = bool(state.failed)
    final = np.clip(np.asarray(state.good_image if failed else state.image), 0.0, 255.0)
    final_terms = _terms_to_floats(terms_fn(jnp.asarray(final), data))
    output = final / 255.0
    if opts.preserve_colors == "luminance":
        output = image_lib.keep_colors(output, problem.content / 255.0)
    stopped = "nan" if failed else "converged" if bool(state.converged) else "steps"
    record.update({
        "size": list(problem.content.shape[:2]),
        "style_sizes": [list(s.shape[:2]) for s in problem.styles],
        "style_blend_weights": problem.blend, "initial_loss": initial_terms,
        "final_loss": final_terms, "steps": int(state.step), "resumed_from_step": first_step,
        "stopped": stopped, "seconds": time.perf_counter() - started})
    return Result(image=output.astype(np.float32), record=record, history=history)


@register("gatys")
class Gatys:
    """The registry entry: hyperparameters, presets, validation and `run`."""
    Params = GatysParams
    Options = RunOptions
    presets = PRESETS
    validate = staticmethod(validate)
    run = staticmethod(run)
