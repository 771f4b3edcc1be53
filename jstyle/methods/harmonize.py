"""Luan, Paris, Shechtman & Bala (2018), "Deep Painterly Harmonization".

  jstyle --method=harmonize --content=composite.png --style=painting.jpg --mask=object.png

`composite` is the painting with an object pasted in, `mask` marks the object (white). The
object is painted into the painting in two passes of pixel optimisation that move only the
pixels of a loose mask around it (the tight mask dilated as the authors' dilate_mask.m does, or
--dilated_mask); every other pixel stays the composite's own.

Pass 1 (neural_gram.lua): at relu3_1, relu4_1 and relu5_1 every composite position is matched
independently to its most similar painting position (cosine of 3 x 3 neighbourhoods,
`patches.nnf_centred`), and the masked Grams of the matched painting features are the style
targets; content at relu4_1 and total variation; weights 5 / 100 / 1e-3; L-BFGS.

Pass 2 (neural_paint.lua): one field at the reference layer from pass 1's image to the painting
(exact, on features normalised per position), made consistent (`patches.refine_field`: each
position takes the neighbours' proposal closest in the painting's colours to the others) and
stripped of duplicates (`patches.used_positions`: the painting positions used, each counted
once, with their neighbours). The style targets are the masked Grams (relu1_1 ... relu4_1) and
the histograms (relu1_1, relu4_1) of the painting's features at the used positions, carried
to each layer; content at relu4_1; total variation inside the mask. The weights follow a style
level (the authors' painting categories, 1 / 5 / 10) and the painting's noise: tv = 10 / (1 +
exp(1e4 * noise - 25)), style = level, histogram = (10 - tv) * level, tv * level
(params_wikiart_genre). The result is the tight mask's region (its edge blurred) over the
composite; `--postprocess=guided` then smooths its chroma (filt_cnn_artifact.m).

Only the region that can change is computed: each pass runs the network on a crop around the
loose mask, extended by twice the receptive radius of its deepest layer (`vgg.receptive_radius`:
the masks spread as far as the receptive field through the network, and the features of every
position they touch must see the pixels the whole image would give them) and aligned to that
layer's pooling grid. Normalisations that count the whole map (the content loss's mean) use the
whole image's sizes, so a crop's loss and gradient equal the whole image's (tested).

Presets (paper vs the authors' code):
  * "code" (default): neural_paint.lua's layer list puts the reference layer at relu4_1
    (`layers = 'relu1_1,relu2_1,relu3_1,relu4_1'`, the field made at `i == #layers`); its
    loss modules replace each term's gradient by the unit vector times the weight and mask the
    gradient at every loss layer (ContentLoss/StyleLoss/HistLoss/TVLoss:updateGradInput,
    `gradInput:div(magnitude + 1e-8)`), with L-BFGS at learningRate 0.1 without line search
    (optim_state: tolX = tolFun = -1); pass 2 starts from the composite (`img =
    content_image_caffe`, the README's `-content_image data/X_naive.jpg`); pass 1 is L-BFGS
    without line search at Torch's default step 1 (neural_gram.lua optim_state).
  * "paper": the paper's reference layer conv4_1, pass 2 starting from pass 1's output (the
    paper's pipeline: the second pass refines the first's result), and the weighted sum of
    the losses optimised with its true gradient in both passes (L-BFGS with a line search).
  * "quick": "code" with 80 + 200 iterations and pass 1 under a line search (with fixed steps
    its image is still noise after 100 iterations), so a 700 px painting finishes within 10
    minutes on 2 CPU cores (README).
Where jstyle departs from the code: the content loss of pass 1 is masked as pass 2's (the code
compares the whole map and masks only its gradient); the histogram loss is the exact,
bin-free quantile match (`losses.match_histograms_masked`) where the code remaps through a
256-bin histogram; pass 1's gradient is the true gradient of its masked losses (the code masks
the gradient again at every loss layer, a difference only where the blurred mask is below 1).
The authors' WikiArt classifier that picks the style level was never released: --style_level.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pathlib
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
from scipy import ndimage

from jstyle import image as image_lib
from jstyle import results
from jstyle.ops import losses
from jstyle.ops import masks
from jstyle.system import memory
from jstyle.engine import optimize
from jstyle.ops import patches
from jstyle.engine import runs
from jstyle.nets import vgg
from jstyle.errors import InputError
from jstyle.params import field, pytree
from jstyle.system.progress import Progress
from jstyle.engine.runs import RunOptions
from jstyle.nets.weights import VGGWeights

OPTIONS = ("size", "steps", "print_every", "save_every")
INPUTS = ("content", "style", "weights")
OUTPUTS = ("output", "pass1")
WHOLE_IMAGES = 6  # whole-size float32 images held beside a pass's crop: composite,
#   painting, pass 1's result, the composed output and the post-processing's two
REFERENCE_LAYERS = ("relu4_1", "relu5_1", "conv4_1")  # code, code's comment, paper
PASS1_STYLE = ("relu3_1", "relu4_1", "relu5_1")  # neural_gram.lua -style_layers
PASS2_STYLE = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")  # neural_paint.lua style_layers
PASS2_HIST = ("relu1_1", "relu4_1")  # neural_paint.lua hist_layers
CONTENT_LAYER = "relu4_1"  # both passes' content layer
MASK_EPS = 0.1  # the code's threshold of a blurred mask (HistLoss maskI, tmask, dilation)


@pytree
@dataclasses.dataclass(frozen=True)
class HarmonizeParams:
    """Deep Painterly Harmonization's hyperparameters (defaults: the authors' code)."""
    mask: str | None = field(None, "Mask of the pasted object: any image of the composite's "
                             "aspect ratio, white on the object.", static=True)
    dilated_mask: str | None = field(None, "Loose mask, the region the passes may change "
                                     "(default: --mask dilated as the authors' "
                                     "dilate_mask.m).", static=True)
    reference_layer: str = field("relu4_1", "Layer of pass 2's field: relu4_1 (code), relu5_1 "
                                 "(code's comment) or conv4_1 (paper).",
                                 choices=REFERENCE_LAYERS, static=True)
    gradients: str = field("normalized", "Pass 2's update: normalized (each term's gradient a "
                           "unit vector times its weight, masked at every layer, fixed L-BFGS "
                           "steps of 0.1: the code) or true (the weighted sum's gradient, "
                           "L-BFGS with a line search).", choices=("normalized", "true"),
                           static=True)
    pass2_init: str = field("composite", "Pass 2 starts from the composite (code) or from "
                            "pass 1's output (pass1).", choices=("composite", "pass1"),
                            static=True)
    pass1_linesearch: str = field("none", "Pass 1's L-BFGS: none (fixed steps of 1, Torch's "
                                  "optim.lbfgs as neural_gram.lua runs it) or zoom (optax's "
                                  "line search: smooth within fewer iterations).",
                                  choices=optimize.LINESEARCHES, static=True)
    postprocess: str = field("none", "none, or guided: the result's CIELAB chroma smoothed "
                             "by a guided filter on the composite (filt_cnn_artifact.m).",
                             choices=("none", "guided"), static=True)
    pass1_steps: int = field(1000, "Pass 1's L-BFGS iterations (--steps: pass 2's).",
                             static=True)
    patch_size: int = field(3, "Patch size of both passes' matching.", static=True)
    refine_size: int = field(5, "Neighbourhood of the consistent mapping (refineNNF).",
                             static=True)
    refine_iterations: int = field(1, "Iterations of the consistent mapping.", static=True)
    ring_radius: int = field(1, "Neighbours counted around each used painting position "
                             "(Ring2).", static=True)
    style_level: float = field(5.0, "Pass 2's style level: 1, 5 or 10 in the authors' "
                               "categories (stronger for looser, more textured paintings).")
    pass1_content_weight: float = field(5.0, "Pass 1's content weight.")
    pass1_style_weight: float = field(100.0, "Pass 1's style weight.")
    pass1_tv_weight: float = field(1e-3, "Pass 1's total-variation weight.")
    content_weight: float = field(1.0, "Pass 2's content weight.")


Params = HarmonizeParams

_CODE_RUN = RunOptions(size=700, steps=1000, print_every=100)  # -image_size 700, 1000 iterations
PRESETS: dict[str, tuple[HarmonizeParams, RunOptions]] = {
    "code": (HarmonizeParams(), _CODE_RUN),
    "paper": (HarmonizeParams(reference_layer="conv4_1", gradients="true", pass2_init="pass1",
                              pass1_linesearch="zoom"), _CODE_RUN),
    "quick": (HarmonizeParams(pass1_steps=80, pass1_linesearch="zoom"),
              dataclasses.replace(_CODE_RUN, steps=200, print_every=50)),
}


def validate(hp: HarmonizeParams, opts: RunOptions, num_styles: int) -> None:
    """Raises InputError for option values that cannot work, naming the fix."""
    if num_styles != 1:
        raise InputError(f"--method=harmonize paints into one painting; give one --style (got "
                         f"{num_styles})")
    for name, value, allowed in (
            ("reference_layer", hp.reference_layer, REFERENCE_LAYERS),
            ("gradients", hp.gradients, ("normalized", "true")),
            ("pass2_init", hp.pass2_init, ("composite", "pass1")),
            ("postprocess", hp.postprocess, ("none", "guided")),
            ("pass1_linesearch", hp.pass1_linesearch, optimize.LINESEARCHES)):
        if value not in allowed:
            raise InputError(f"unknown --{name}={value}; use one of {', '.join(allowed)}")
    runs.check_at_least({"pass1_steps": hp.pass1_steps, "refine_iterations":
                         hp.refine_iterations}, 0, "give a count, or 0")
    runs.check_at_least({"ring_radius": hp.ring_radius}, 0, "give a radius in positions")
    for name in ("patch_size", "refine_size"):
        if getattr(hp, name) < 1 or getattr(hp, name) % 2 == 0:
            raise InputError(f"--{name}={getattr(hp, name)} must be odd and >= 1, such as 3")
    runs.check_nonnegative({n: [getattr(hp, n)] for n in (
        "style_level", "pass1_content_weight", "pass1_style_weight", "pass1_tv_weight",
        "content_weight")})
    runs.check_at_least({"size": opts.size, "steps": opts.steps}, 1,
                        "give a positive whole number")
    runs.check_size(opts)
    runs.check_at_least({n: getattr(opts, n) for n in ("print_every", "save_every")}, 0,
                        "give a step count, or 0 to turn it off")


# ---------------------------------------------------------------------------------------------
# Inputs: sizes, masks, crops.

class Inputs(NamedTuple):
    """The images the passes work on, at the working size (H, W)."""
    composite: np.ndarray  # float32[H, W, 3], 8-bit levels
    painting: np.ndarray  # float32[H, W, 3], 8-bit levels
    tight: np.ndarray  # bool[H, W], the pasted object
    loose: np.ndarray  # bool[H, W], the pixels the passes may change (contains `tight`)


def _mask_image(given: np.ndarray | None, path: str | None) -> np.ndarray | None:
    """A mask given as an image, else loaded from its path (transparent pixels are not
    selected: an exported selection), else None."""
    if given is not None:
        return np.asarray(given, np.float32)
    return None if not path else image_lib.load(path, background=image_lib.BLACK)


def prepare_inputs(composite: np.ndarray, painting: np.ndarray, mask: np.ndarray,
                   dilated: np.ndarray | None, size: int) -> Inputs:
    """Checks and sizes the inputs: composite and painting (float[H, W, 3] in [0, 1], the same
    size) to `size` on the longer edge, the masks (any image of their aspect ratio, white =
    inside) resized and thresholded; without `dilated`, `masks.dilate` of the tight mask.

    Raises:
      InputError: sizes that differ, a mask of another aspect ratio, an empty mask.
    """
    (h0, w0), (ph, pw) = composite.shape[:2], painting.shape[:2]
    if (h0, w0) != (ph, pw):
        raise InputError(f"the composite is {w0}x{h0} px but the painting is {pw}x{ph}; the "
                         "composite must be the painting with the object pasted in, at the "
                         "painting's size")
    for name, m in (("--mask", mask), ("--dilated_mask", dilated)):
        if m is not None and abs(m.shape[0] / m.shape[1] - h0 / w0) > 0.02 * h0 / w0:
            raise InputError(f"{name} is {m.shape[1]}x{m.shape[0]} px but the composite is "
                             f"{w0}x{h0}; a mask must have the composite's aspect ratio")
    h, w = image_lib.fit_edge(h0, w0, size)
    tight = masks.object_mask(mask, h, w)
    if not tight.any():
        raise InputError("--mask marks nothing to harmonise (no pixel is lighter than mid "
                         "grey); paint the pasted object white on black")
    loose = tight | (masks.object_mask(dilated, h, w) if dilated is not None
                     else masks.dilate(tight))
    return Inputs(image_lib.to_levels(image_lib.resize(composite, h, w)),
                  image_lib.to_levels(image_lib.resize(painting, h, w)), tight, loose)


class Box(NamedTuple):
    """A crop of the image: rows top:bottom, columns left:right (pixels)."""
    top: int
    bottom: int
    left: int
    right: int

    def at(self, layer: str) -> tuple[slice, slice]:
        """The crop's rows and columns on `layer`'s map (whole positions: the box starts on
        the pooling grid)."""
        p = vgg.pools(layer)
        return (slice(self.top >> p, (self.top >> p) + ((self.bottom - self.top) >> p)),
                slice(self.left >> p, (self.left >> p) + ((self.right - self.left) >> p)))


def crop_box(loose: np.ndarray, deepest: str) -> Box:
    """The crop a pass computes: the loose mask's bounding box grown by twice the receptive
    radius of its deepest layer, its edges on that layer's pooling grid (or the image's)."""
    h, w = loose.shape
    step, margin = 2 ** vgg.pools(deepest), 2 * vgg.receptive_radius(deepest)
    ys, xs = np.nonzero(loose)
    low = lambda v: max(0, (v - margin) // step * step)
    high = lambda v, end: min(end, -(-(v + 1 + margin) // step) * step)
    return Box(low(ys.min()), high(ys.max(), h), low(xs.min()), high(xs.max(), w))


def whole(shape: tuple[int, ...]) -> Box:
    """The box of the whole image."""
    return Box(0, shape[0], 0, shape[1])


def _crop(x: np.ndarray, box: Box) -> np.ndarray:
    return x[box.top:box.bottom, box.left:box.right]


def _nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """float32[height, width]: `mask` resized by nearest neighbour (the code's 'simple')."""
    return np.asarray(Image.fromarray(np.asarray(mask, np.float32), mode="F").resize(
        (width, height), Image.Resampling.NEAREST))


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


def _common(inputs: Inputs, box: Box, layers: tuple[str, ...], vgg_params, convention,
            weights: dict[str, float]) -> dict:
    """The parts of a pass's Data that do not depend on its targets."""
    full = masks.through_network(inputs.loose.astype(np.float32), layers)
    loose = _crop(inputs.loose, box).astype(np.float32)
    content = _features(vgg_params, _crop(inputs.composite, box), (CONTENT_LAYER,), convention)
    whole_map = full[CONTENT_LAYER].size * vgg.channels(CONTENT_LAYER)
    return dict(
        vgg_params=vgg_params, fixed=jnp.asarray(_crop(inputs.composite, box)),
        loose=jnp.asarray(loose[..., None]),
        tv_mask=jnp.asarray(_crop(ndimage.binary_dilation(inputs.loose, np.ones((3, 3))), box
                                  ).astype(np.float32)),
        masks={l: jnp.asarray(full[l][box.at(l)]) for l in layers},
        content={CONTENT_LAYER: (content[CONTENT_LAYER], jnp.float32(whole_map))},
        weights={k: jnp.float32(v) for k, v in weights.items()})


def pass1_data(inputs: Inputs, box: Box, hp: HarmonizeParams, vgg_params, convention) -> Data:
    """Pass 1 (neural_gram.lua): at each style layer every composite position's most similar
    painting position (cosine of patch_size neighbourhoods, `patches.nnf_centred`); the style
    targets are the masked Grams of the matched painting features."""
    layers = tuple(l for l in vgg.LAYERS if l in PASS1_STYLE or l == CONTENT_LAYER)
    common = _common(inputs, box, layers, vgg_params, convention, {
        "content": hp.pass1_content_weight, "style": hp.pass1_style_weight, "hist": 0.0,
        "tv": hp.pass1_tv_weight})
    composite = _features(vgg_params, _crop(inputs.composite, box), PASS1_STYLE, convention)
    painting = _features(vgg_params, inputs.painting, PASS1_STYLE, convention)
    grams = {}
    for layer in PASS1_STYLE:
        found = _match(composite[layer], painting[layer], hp.patch_size)
        matched = painting[layer][found[..., 0], found[..., 1]]
        grams[layer] = losses.masked_gram_matrix(matched, common["masks"][layer])
    return Data(grams=grams, hist={}, **common)


@functools.partial(jax.jit, static_argnums=2)
def _match(source, target, size):
    return patches.nnf_centred(source, target, size, normalize=True, keep_borders=False)


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _consistent(source, target, size, refine_size, refine_iterations, ring_radius, guide,
                inside):
    field = patches.nnf_centred(patches.unit_features(source), patches.unit_features(target),
                                size, normalize=False, keep_borders=True)
    field = patches.refine_field(field, guide, inside, refine_size, refine_iterations)
    return patches.used_positions(field, inside, target.shape[:2], ring_radius)


def used_painting(inputs: Inputs, pass1: np.ndarray, hp: HarmonizeParams, vgg_params,
                  convention) -> np.ndarray:
    """Pass 2's mapping: the painting positions used by the consistent field from pass 1's
    image (float[H, W, 3], 8-bit levels) at the reference layer, float32[H_r, W_r] 0/1."""
    layer = hp.reference_layer
    source = _features(vgg_params, pass1, (layer,), convention)[layer]
    target = _features(vgg_params, inputs.painting, (layer,), convention)[layer]
    rows, cols = target.shape[:2]
    guide = image_lib.resize(inputs.painting / 255.0, rows, cols)
    inside = _nearest(inputs.tight, rows, cols) > MASK_EPS
    if not inside.any():
        raise InputError(f"the object covers no position of {layer} ({2 ** vgg.pools(layer)} "
                         "px cells); give a larger --size or a larger object")
    return np.asarray(_consistent(source, target, hp.patch_size, hp.refine_size,
                                  hp.refine_iterations, hp.ring_radius, jnp.asarray(guide),
                                  jnp.asarray(inside)))


def pass2_data(inputs: Inputs, box: Box, hp: HarmonizeParams, used: np.ndarray, vgg_params,
               convention) -> Data:
    """Pass 2 (neural_paint.lua): masked Grams and histograms of the painting's features at
    the used positions (`used_painting`, carried to each layer by nearest neighbour)."""
    layers = PASS2_STYLE
    common = _common(inputs, box, layers, vgg_params, convention,
                     pass2_weights(hp, inputs.painting / 255.0))
    painting = _features(vgg_params, inputs.painting, layers, convention)
    at = {l: _nearest(used, *painting[l].shape[:2]) for l in layers}
    grams = {l: losses.masked_gram_matrix(painting[l], jnp.asarray(at[l])) for l in layers}
    hist = {l: _sorted_rows(painting[l], at[l]) for l in PASS2_HIST}
    return Data(grams=grams, hist=hist, **common)


# ---------------------------------------------------------------------------------------------
# The run.

def _blend_tight(inputs: Inputs) -> np.ndarray:
    """The tight mask's soft edge for the result, float32[H, W, 1]: the code's 7 x 7 Torch
    image.gaussian(7, 3) (sigma 3 x 7 px: nearly a box) over the mask, zero-padded."""
    d = np.arange(7) - 3.0
    k = np.exp(-(d[:, None] ** 2 + d[None] ** 2) / (2 * 21.0 ** 2))
    return masks.smooth(inputs.tight, k / k.sum())[..., None]


def compose(inputs: Inputs, box: Box, crop: np.ndarray) -> np.ndarray:
    """A pass's image: the optimised crop (float[h, w, 3], 8-bit levels) inside the soft tight
    mask, the composite elsewhere; pixels outside the loose mask are the composite's exactly.
    Returns float32[H, W, 3] in 8-bit levels."""
    full = inputs.composite.copy()
    full[box.top:box.bottom, box.left:box.right] = np.clip(crop, 0.0, 255.0)
    soft = _blend_tight(inputs)
    out = soft * full + (1.0 - soft) * inputs.composite
    return np.where(inputs.loose[..., None], out, inputs.composite).astype(np.float32)


def postprocess(inputs: Inputs, levels: np.ndarray) -> np.ndarray:
    """filt_cnn_artifact.m's first part: the chroma guided-filtered by the composite, kept
    inside the tight mask grown by a 7 x 7 Gaussian (sigma 3, > 0.01) and blurred again.
    float[H, W, 3] in 8-bit levels -> the same."""
    k = masks.gaussian_kernel(7, 3.0)
    grown = masks.smooth(masks.smooth(inputs.tight, k) > 0.01, k)[..., None]
    filtered = image_lib.denoise_chroma(levels / 255.0, inputs.composite / 255.0) * 255.0
    out = grown * filtered + (1.0 - grown) * inputs.composite
    return np.where(inputs.loose[..., None], out, inputs.composite).astype(np.float32)


def _pass_options(opts: RunOptions, steps: int, linesearch: str, learning_rate: float
                  ) -> RunOptions:
    """The optimiser of a pass: L-BFGS (100 pairs, as Torch's optim.lbfgs) with optax's line
    search ("zoom") or fixed steps of `learning_rate` ("none", Torch's without one); every
    iteration runs (the code's tolX = tolFun = -1)."""
    return dataclasses.replace(opts, steps=steps, optimizer="lbfgs", lbfgs_memory=100,
                               linesearch=linesearch, learning_rate=learning_rate, tol=0.0,
                               remat=False)


def run(content: np.ndarray, styles: list[np.ndarray], hp: HarmonizeParams, opts: RunOptions,
        weights: VGGWeights, key: jax.Array | None = None, *, labels=None,
        init: np.ndarray | None = None, snapshot=None, checkpoint: pathlib.Path | None = None,
        progress: bool = True, mask: np.ndarray | None = None,
        dilated_mask: np.ndarray | None = None) -> runs.Result:
    """Paints the object of `content` (the composite) into `styles[0]` (the painting).

    Args:
      content: the composite, float32[H, W, 3] in [0, 1]; styles: [the painting], the same
        size.
      mask, dilated_mask: the masks as images (float[h, w, C] in [0, 1], white inside), in
        place of the files --mask and --dilated_mask.
      checkpoint: where each pass's state is saved every --save_every steps and when
        interrupted; a matching checkpoint there is resumed from.
    Returns:
      Result with images {"output": pass 2, "pass1": pass 1}, float32[H', W', 3] in [0, 1] at
      the working size (--size on the longer edge), and a record with both passes' losses,
      steps and seconds.
    Raises:
      InputError: bad options or inputs (one line each, before any work).
      runs.Stopped: Ctrl-C or SIGTERM; the state was saved to `checkpoint`.
    """
    del key, labels, init  # deterministic: no noise, no other start
    started = time.perf_counter()
    validate(hp, opts, len(styles))
    tight_image = _mask_image(mask, hp.mask)
    if tight_image is None:
        raise InputError("--method=harmonize needs --mask (the pasted object, white on black)")
    loose_image = _mask_image(dilated_mask, hp.dilated_mask)
    inputs = prepare_inputs(content, styles[0], tight_image, loose_image, opts.size)
    boxes = (crop_box(inputs.loose, PASS1_STYLE[-1]),
             crop_box(inputs.loose, max(PASS2_STYLE, key=vgg.LAYERS.index)))
    memory_entry = memory.require(
        max(memory.pixel_run_gib(b.bottom - b.top, b.right - b.left, "lbfgs", 100)
            for b in boxes) + WHOLE_IMAGES * memory.image_gib(*inputs.composite.shape[:2]),
        "lower --size")
    vgg_params = vgg.prepare(weights.params)
    convention = weights.convention
    record = runs.start_record("harmonize", hp, opts, weights, content, styles, None)
    record["inputs"] = results.array_digest(content, *styles, tight_image, *(
        [] if loose_image is None else [loose_image]))
    record["levels"] = [{"size": opts.size, "steps": hp.pass1_steps},  # a level per pass
                        {"size": opts.size, "steps": opts.steps}]
    saved = runs.saved_run(checkpoint, record)
    history: list[dict] = list(saved["history"]) if saved else []
    first = saved["level"] if saved else 0
    bar = Progress(hp.pass1_steps + opts.steps, "harmonize", enabled=progress)
    passes, pass1, offset = [], None, 0
    if first == 1:  # pass 1 finished before the interruption: its image was kept
        pass1 = optimize.checkpoint_arrays(checkpoint)["pass1"]
        passes = list(saved["passes"])
        offset = passes[0]["steps"]
    for index in range(first, 2):
        t0 = time.perf_counter()
        box = boxes[index]
        if index == 0:
            data = pass1_data(inputs, box, hp, vgg_params, convention)
            terms = loss_terms
            pass_opts = _pass_options(opts, hp.pass1_steps, hp.pass1_linesearch, 1.0)
            start = _crop(inputs.composite, box)
        else:
            used = used_painting(inputs, pass1, hp, vgg_params, convention)
            data = pass2_data(inputs, box, hp, used, vgg_params, convention)
            true = hp.gradients == "true"
            terms = loss_terms if true else loss_terms_normalized
            pass_opts = _pass_options(opts, opts.steps, "zoom" if true else "none", 0.1)
            start = _crop(pass1 if hp.pass2_init == "pass1" else inputs.composite, box)
        matched = time.perf_counter() - t0
        problem = runs.make_problem(terms, data, convention, pass_opts, inputs.composite,
                                    [inputs.painting], None, start)
        floats = lambda image: {k: float(v) for k, v in problem.terms(
            jnp.asarray(image), data).items()}
        initial = floats(start)
        done = runs.optimise(
            problem, pass_opts.steps, pass_opts, level=index, offset=offset,
            record={**record, "passes": passes}, history=history, bar=bar,
            resume=saved is not None and index == first, checkpoint=checkpoint,
            keep={} if pass1 is None else {"pass1": pass1},
            snapshot=None if snapshot is None else (
                lambda step, image: snapshot(step, compose(inputs, box, image * 255.0) / 255.0)))
        image = compose(inputs, box, done.image)
        final = floats(done.image)
        steps_taken = int(done.state.step)
        offset += steps_taken
        passes.append({"pass": index + 1, "crop": [int(v) for v in box], "initial_loss": initial,
                       "final_loss": final, "steps": steps_taken,
                       "stopped": "nan" if bool(done.state.failed) else "steps",
                       "matching_seconds": round(matched, 3),
                       "seconds": round(time.perf_counter() - t0, 3),
                       "peak_rss_gib": round(memory.peak_rss_gib(), 3),
                       "weights": {k: float(v) for k, v in data.weights.items()}})
        if index == 0:
            pass1 = image
    bar.close()
    output = postprocess(inputs, image) if hp.postprocess == "guided" else image
    record.update({
        "size": list(inputs.composite.shape[:2]), "passes": passes, "steps": offset,
        "loose_fraction": round(float(inputs.loose.mean()), 4),
        "tight_fraction": round(float(inputs.tight.mean()), 4),
        "stopped": passes[-1]["stopped"],
        "memory": memory.measured(memory_entry),
        "seconds": time.perf_counter() - started})
    return runs.Result(images={"output": output / 255.0, "pass1": pass1 / 255.0},
                       record=record, history=history)
