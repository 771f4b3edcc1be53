"""Deep Painterly Harmonization's two passes: the objective of a pass (data, loss terms, the
code's normalised gradients) and each pass's targets."""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from jstyle import image as image_lib
from jstyle.errors import InputError
from jstyle.nets import vgg
from jstyle.ops import fields, losses, masks
from jstyle.methods.harmonize.regions import Box, Working, crop_of, nearest
from jstyle.methods.harmonize.settings import (CONTENT_LAYER, MASK_EPS, PASS1_STYLE, PASS2_HIST,
                                               PASS2_STYLE, HarmonizeParams)


def noise_level(painting: np.ndarray) -> float:
    """The painting's noise (neural_paint.lua, noise_estimate): the median over channels and
    the top-left (H-1) x (W-1) positions of the mean squared right and down differences, the
    image in [0, 1] (the lower median, as Torch's)."""
    x = np.asarray(painting, np.float64)
    core = x[:-1, :-1]
    sq = (np.square(core - x[:-1, 1:]) + np.square(core - x[1:, :-1])) / 2
    flat = np.sort(sq.reshape(-1))
    return float(flat[(flat.size - 1) // 2])


def pass2_weights(hp: HarmonizeParams, painting: np.ndarray) -> dict[str, float]:
    """Pass 2's weights from the style level and the painting's noise (params_wikiart_genre).

    Args:
      painting: float[H, W, 3] in [0, 1], at the working size.
    """
    tv = 10.0 / (1.0 + math.exp(min(1e4 * noise_level(painting) - 25.0, 700.0)))
    level = float(hp.style_level)
    return {"content": float(hp.content_weight), "style": level, "hist": (10.0 - tv) * level,
            "tv": tv * level}


# ---------------------------------------------------------------------------------------------
# The objective of a pass: data, loss terms, the code's normalised gradients.

class Data(NamedTuple):
    """One pass's data on its crop (h x w pixels), the compiled objective's argument."""
    vgg_params: dict  # vgg.prepare(weights.params)
    fixed: jax.Array  # float32[h, w, 3], the composite's pixels (8-bit levels)
    loose: jax.Array  # float32[h, w, 1], 1 where the pixels may change
    tv_mask: jax.Array  # float32[h, w], the loose mask grown by a pixel: total variation
    #   counts every neighbour pair that touches a pixel that may change, the others being
    #   constant (so its gradient there is the whole image's)
    masks: dict  # layer -> float32[h_l, w_l], the loose mask through the network
    content: dict  # CONTENT_LAYER -> (float32[h_l, w_l, C], the composite's features; float32[],
    #   the whole map's element count, the code's MSE divisor)
    grams: dict  # layer -> float32[C, C], the style Gram target
    hist: dict  # layer -> (float32[K, C], sorted painting activations; float32[], valid rows)
    weights: dict  # "content", "style", "hist", "tv" -> float32[]


def _content_loss(x, mask, target):
    feats, count = target
    return jnp.sum(jnp.square((x - feats) * mask[..., None])) / count


def _style_loss(x, mask, gram):
    return jnp.mean(jnp.square(losses.masked_gram_matrix(x, mask) - gram))


def _hist_loss(x, mask, target):
    ordered, count = target
    inside = (mask > MASK_EPS).astype(x.dtype)
    matched = losses.match_histograms_masked(x, inside, ordered, count.astype(jnp.int32))
    return losses.histogram_loss(x, matched, inside)


def _tv_loss(image, mask):
    """neural-style's total variation on the pixels where `mask` is 1 (float[H, W])."""
    core = image[:-1, :-1]
    sq = jnp.square(core - image[:-1, 1:]) + jnp.square(core - image[1:, :-1])
    return 0.5 * jnp.sum(sq * mask[:-1, :-1, None])


_TERMS = (("content", _content_loss), ("style", _style_loss), ("hist", _hist_loss))


def _layer_terms(data: Data, layer: str) -> list[tuple[str, Callable, Any]]:
    """(name, loss(x, mask, target), target) at `layer`, in the code's module order."""
    sources = {"content": data.content, "style": data.grams, "hist": data.hist}
    return [(name, fn, sources[name][layer]) for name, fn in _TERMS if layer in sources[name]]


def _unit(g: jax.Array) -> jax.Array:
    return g / (jnp.sqrt(jnp.sum(jnp.square(g))) + 1e-8)


@functools.lru_cache(maxsize=None)
def _tap(fns: tuple[Callable, ...]) -> Callable:
    """An identity on a layer's features whose backward pass is the code's loss modules' at
    that layer: for each term, last first, g <- mask * (g + weight * unit(its gradient))."""
    @jax.custom_vjp
    def tap(x, mask, weights, targets):
        return x

    def forward(x, mask, weights, targets):
        return x, (x, mask, weights, targets)

    def backward(saved, g):
        x, mask, weights, targets = saved
        for fn, w, t in reversed(list(zip(fns, weights, targets))):
            g = mask[..., None] * (g + w * _unit(jax.grad(fn)(x, mask, t)))
        return (g, jnp.zeros_like(mask), jax.tree.map(jnp.zeros_like, weights),
                jax.tree.map(jnp.zeros_like, targets))

    tap.defvjp(forward, backward)
    return tap


@jax.custom_vjp
def _tv_tap(image, mask, weight):
    """The code's TVLoss module (pass 2): backward g <- m * (g + weight * unit(m * its
    gradient)), m the loose mask (float[h, w])."""
    return image


def _tv_forward(image, mask, weight):
    return image, (image, mask, weight)


def _tv_backward(saved, g):
    image, mask, weight = saved
    m = mask[..., None]
    own = m * jax.grad(_tv_loss)(image, jnp.ones_like(mask))
    return m * (g + weight * _unit(own)), jnp.zeros_like(mask), jnp.zeros_like(weight)


_tv_tap.defvjp(_tv_forward, _tv_backward)


def _layers(data: Data) -> tuple[str, ...]:
    used = set(data.masks)
    return tuple(l for l in vgg.LAYERS if l in used)


def _terms(image: jax.Array, data: Data, convention, tapped: bool) -> dict[str, jax.Array]:
    """Each term's loss (summed over layers, unweighted) and the weighted total. With `tapped`,
    the total's gradient is the code's normalised one (`_tap`), not its true gradient."""
    x = data.loose * image + (1.0 - data.loose) * data.fixed
    tv = _tv_loss(x, data.tv_mask)
    if tapped:
        x = _tv_tap(x, data.loose[..., 0], data.weights["tv"])
    h = vgg.preprocess(x, convention)
    sums = {"content": 0.0, "style": 0.0, "hist": 0.0}
    previous = None
    for layer in _layers(data):
        h = vgg.forward(data.vgg_params, h, previous, layer)
        previous = layer
        terms = _layer_terms(data, layer)
        seen = jax.lax.stop_gradient(h) if tapped else h
        for name, fn, target in terms:
            sums[name] = sums[name] + fn(seen, data.masks[layer], target)
        if tapped and terms:
            h = _tap(tuple(fn for _, fn, _ in terms))(
                h, data.masks[layer], tuple(data.weights[n] for n, _, _ in terms),
                tuple(t for _, _, t in terms))
    out = {**{k: jnp.asarray(v, jnp.float32) for k, v in sums.items()}, "tv": tv}
    total = sum(data.weights[k] * out[k] for k in ("content", "style", "hist", "tv"))
    if tapped:  # the value is reported; the gradient comes from the taps alone
        total = jax.lax.stop_gradient(total) + 0.0 * jnp.sum(h)
    return {**out, "total": total}


def loss_terms(image: jax.Array, data: Data, convention, remat: bool = False
               ) -> dict[str, jax.Array]:
    """The terms and total of a pass with its true gradient, image float32[h, w, 3] in 8-bit
    levels (the crop)."""
    del remat
    return _terms(image, data, convention, tapped=False)


def loss_terms_normalized(image: jax.Array, data: Data, convention, remat: bool = False
                          ) -> dict[str, jax.Array]:
    """`loss_terms` whose total has the code's normalised gradient (pass 2 of "code")."""
    del remat
    return _terms(image, data, convention, tapped=True)


# ---------------------------------------------------------------------------------------------
# The two passes' targets.

def _features(vgg_params: dict, levels: np.ndarray, layers: tuple[str, ...], convention
              ) -> dict[str, jax.Array]:
    return _extract(vgg_params, jnp.asarray(levels), tuple(layers), convention)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _extract(vgg_params, levels, layers, convention):
    return vgg.image_features(vgg_params, levels, layers, convention)


def _sorted_rows(feats: jax.Array, used: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """The activations at used positions, sorted per channel and padded to every position:
    (float32[H W, C], float32[] count)."""
    values = np.asarray(feats).reshape(-1, feats.shape[-1])
    picked = values[np.asarray(used).reshape(-1) > 0.5]
    ordered = np.sort(picked, axis=0)
    padded = np.concatenate([ordered, np.zeros((values.shape[0] - len(ordered),
                                                 values.shape[1]), np.float32)])
    return jnp.asarray(padded), jnp.float32(len(ordered))


def _common(inputs: Working, box: Box, layers: tuple[str, ...], vgg_params, convention,
            weights: dict[str, float]) -> dict:
    """The parts of a pass's Data that do not depend on its targets."""
    full = masks.through_network(inputs.loose.astype(np.float32), layers)
    loose = crop_of(inputs.loose, box).astype(np.float32)
    content = _features(vgg_params, crop_of(inputs.composite, box), (CONTENT_LAYER,), convention)
    whole_map = full[CONTENT_LAYER].size * vgg.channels(CONTENT_LAYER)
    return dict(
        vgg_params=vgg_params, fixed=jnp.asarray(crop_of(inputs.composite, box)),
        loose=jnp.asarray(loose[..., None]),
        tv_mask=jnp.asarray(crop_of(ndimage.binary_dilation(inputs.loose, np.ones((3, 3))), box
                                  ).astype(np.float32)),
        masks={l: jnp.asarray(full[l][box.at(l)]) for l in layers},
        content={CONTENT_LAYER: (content[CONTENT_LAYER], jnp.float32(whole_map))},
        weights={k: jnp.float32(v) for k, v in weights.items()})


def pass1_data(inputs: Working, box: Box, hp: HarmonizeParams, vgg_params, convention) -> Data:
    """Pass 1 (neural_gram.lua): at each style layer every composite position's most similar
    painting position (cosine of patch_size neighbourhoods, `fields.nnf_centred`); the style
    targets are the masked Grams of the matched painting features."""
    layers = tuple(l for l in vgg.LAYERS if l in PASS1_STYLE or l == CONTENT_LAYER)
    common = _common(inputs, box, layers, vgg_params, convention, {
        "content": hp.pass1_content_weight, "style": hp.pass1_style_weight, "hist": 0.0,
        "tv": hp.pass1_tv_weight})
    composite = _features(vgg_params, crop_of(inputs.composite, box), PASS1_STYLE, convention)
    painting = _features(vgg_params, inputs.painting, PASS1_STYLE, convention)
    grams = {}
    for layer in PASS1_STYLE:
        found = _match(composite[layer], painting[layer], hp.patch_size)
        matched = painting[layer][found[..., 0], found[..., 1]]
        grams[layer] = losses.masked_gram_matrix(matched, common["masks"][layer])
    return Data(grams=grams, hist={}, **common)


@functools.partial(jax.jit, static_argnums=2)
def _match(source, target, size):
    return fields.nnf_centred(source, target, size, normalize=True, keep_borders=False)


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _consistent(source, target, size, refine_size, refine_iterations, ring_radius, guide,
                inside):
    field = fields.nnf_centred(fields.unit_features(source), fields.unit_features(target),
                                size, normalize=False, keep_borders=True)
    field = fields.refine_field(field, guide, inside, refine_size, refine_iterations)
    return fields.used_positions(field, inside, target.shape[:2], ring_radius)


def used_painting(inputs: Working, pass1: np.ndarray, hp: HarmonizeParams, vgg_params,
                  convention) -> np.ndarray:
    """Pass 2's mapping: the painting positions used by the consistent field from pass 1's
    image (float[H, W, 3], 8-bit levels) at the reference layer, float32[H_r, W_r] 0/1."""
    layer = hp.reference_layer
    source = _features(vgg_params, pass1, (layer,), convention)[layer]
    target = _features(vgg_params, inputs.painting, (layer,), convention)[layer]
    rows, cols = target.shape[:2]
    guide = image_lib.resize(inputs.painting / 255.0, rows, cols)
    inside = nearest(inputs.tight, rows, cols) > MASK_EPS
    if not inside.any():
        raise InputError(f"the object covers no position of {layer} ({2 ** vgg.pools(layer)} "
                         "px cells); give a larger --size or a larger object")
    return np.asarray(_consistent(source, target, hp.patch_size, hp.refine_size,
                                  hp.refine_iterations, hp.ring_radius, jnp.asarray(guide),
                                  jnp.asarray(inside)))


def pass2_data(inputs: Working, box: Box, hp: HarmonizeParams, used: np.ndarray, vgg_params,
               convention) -> Data:
    """Pass 2 (neural_paint.lua): masked Grams and histograms of the painting's features at
    the used positions (`used_painting`, carried to each layer by nearest neighbour)."""
    layers = PASS2_STYLE
    common = _common(inputs, box, layers, vgg_params, convention,
                     pass2_weights(hp, inputs.painting / 255.0))
    painting = _features(vgg_params, inputs.painting, layers, convention)
    at = {l: nearest(used, *painting[l].shape[:2]) for l in layers}
    grams = {l: losses.masked_gram_matrix(painting[l], jnp.asarray(at[l])) for l in layers}
    hist = {l: _sorted_rows(painting[l], at[l]) for l in PASS2_HIST}
    return Data(grams=grams, hist=hist, **common)


