"""Li & Wand (2016), "Combining Markov random fields and convolutional neural networks for image
synthesis" (CNNMRF).

Optimises the pixels of an image O so that every k x k patch of its VGG-19 features at the MRF
layers resembles the style patch most similar to it, while its features at the content layers
stay close to the content image's:

  L = w_c sum_l L_c,l + w_mrf sum_l E_l + w_tv L_tv,   E_l = sum_i ||Psi_i(F_l) - Psi_NN(i)||^2

Psi_i are the output's patches (at the synthesis stride) and Psi_NN(i) the style patch (at the
style stride, from every style image and its rotated and scaled copies) with the highest
normalised cross-correlation, re-matched at every evaluation of the loss. With label maps
(neural doodle, Champandard 2016) the label channels join the matching: the score adds
`semantic_weight` times the labels' cosine to the features', so patches match within their
regions.

Features are VGG-19's raw activations of the Caffe-preprocessed image (8-bit levels), as in the
authors' Torch code, and L_c is MSECriterion's mean. Two energy normalisations:
  * "cnnmrf" (both presets): the authors' code, whose gradient at a position is F - V, V the
    average of the matched patches covering it (mylib/mrf.lua); `losses.mrf_coverage_weights`
    gives the energy with that gradient, so their weights carry over.
  * "paper": the paper's plain sum E above (the gradient 2 c_p (F - V), c_p the number of
    patches covering a position: about 2 k^2 / s^2 times larger).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jstyle import image as image_lib
from jstyle.ops import losses
from jstyle.ops import masks
from jstyle.ops import patches
from jstyle.engine import options, pyramid
from jstyle.nets import vgg
from jstyle.errors import InputError
from jstyle.params import field, pytree
from jstyle.engine.options import RunOptions
from jstyle.engine.session import Result, Session
from jstyle.nets.weights import VGGWeights

NORMALIZATIONS = ("cnnmrf", "paper")
ROTATION_STEP = math.pi / 24  # transfer_CNNMRF_wrapper.lua: target_step_rotation
SCALE_STEP = 1.05  # transfer_CNNMRF_wrapper.lua: target_step_scale


@pytree
@dataclasses.dataclass(frozen=True)
class MRFParams:
    """CNNMRF's objective, a pytree (weights are leaves; layers, patch geometry and style
    copies are static). Defaults: the authors' code (transfer_CNNMRF_wrapper.lua, run_test)."""
    content_layers: tuple[str, ...] = field(("relu4_1",), "Content layers.", static=True)
    #   content_layers {21}
    mrf_layers: tuple[str, ...] = field(("relu3_1", "relu4_1"), "MRF layers.", static=True)
    #   mrf_layers {12, 21}
    patch_size: int = field(3, "MRF patch size k (k x k feature positions).", static=True)
    #   mrf_patch_size {3, 3}
    style_stride: int = field(2, "Stride of the candidate style patches.", static=True)
    #   mrf_sample_stride {2, 2}
    synthesis_stride: int = field(2, "Stride of the output's patches.", static=True)
    #   mrf_synthesis_stride {2, 2}
    rotations: int = field(0, "Style copies rotated by +-1..N steps of pi/24.", static=True)
    #   mrf_num_rotation
    scales: int = field(0, "Style copies scaled by 1.05^(+-1..N).", static=True)
    #   mrf_num_scale
    normalization: str = field("cnnmrf", "Energy normalisation: cnnmrf (the authors' code) or "
                               "paper (Li & Wand 2016); see the README.",
                               choices=NORMALIZATIONS, static=True)
    pooling: str = field("max", "VGG pooling: max or avg.", choices=("max", "avg"), static=True)
    content_weight: Any = field(2e1, "Content weight.")  # content_weight 2e1
    mrf_weight: Any = field(1e-4, "MRF energy weight.")  # mrf_weight {1e-4, 1e-4}
    tv_weight: Any = field(1e-3, "Total-variation weight (image in 8-bit levels).")
    #   tv_weight 1e-3
    semantic_weight: Any = field(10.0, "Weight of the label channels' cosine in the match "
                                 "score, with --content_mask/--style_mask (10: never across "
                                 "regions).")
    content_layer_weights: Any = field((1.0,), "Weight per content layer (1 each when "
                                       "--content_layers is given alone).")
    mrf_layer_weights: Any = field((1.0, 1.0), "Weight per MRF layer (1 each when "
                                   "--mrf_layers is given alone).")


Params = MRFParams


_CODE_RUN = RunOptions(size=384, steps=100, pyramid_levels=3, lbfgs_memory=25, linesearch="none",
                       learning_rate=1.0, init="content", tol=0.0, print_every=10)
#   max_size 384, num_res 3, num_iter {100, 100, 100}, nCorrection 25, ini_method 'image',
#   tolX = tolFun = 0, print_iter 10; mylbfgs without a line search, learningRate 1

PRESETS: dict[str, tuple[MRFParams, RunOptions]] = {
    "cnnmrf": (MRFParams(), _CODE_RUN),
    # Where the paper differs from the code's defaults: content at relu4_2, every patch of the
    # output and the style (stride 1), and rotated and scaled style copies (one step each way,
    # as the authors' reference tests in run_trans.lua).
    "paper": (MRFParams(content_layers=("relu4_2",), style_stride=1, synthesis_stride=1,
                        rotations=1, scales=1), _CODE_RUN),
}


class Targets(NamedTuple):
    """What the objective compares against, per pyramid level."""
    content: dict[str, jax.Array]  # layer -> F_l[I], float32[H_l, W_l, C_l]
    candidates: dict[str, jax.Array]  # layer -> style patches, float32[P_l, k, k, C_l]
    position_weights: dict[str, jax.Array] | None  # "cnnmrf": layer -> float32[H_l, W_l]
    guide: dict[str, jax.Array] | None  # labels: layer -> the output's masks, float32[H_l, W_l, R]
    candidate_guide: dict[str, jax.Array] | None  # labels: layer -> the candidates' masks,
    #   float32[P_l, k, k, R]


class Data(NamedTuple):
    """Everything the compiled objective takes besides the image: one level's data."""
    vgg_params: dict  # vgg.prepare(weights.params)
    targets: Targets
    hp: MRFParams

    @classmethod
    def sweep_axes(cls) -> "Data":
        """The batch axes of a sweep's data: the hyperparameters vary, the rest is shared."""
        return cls(None, None, 0)


def validate(hp: MRFParams, opts: RunOptions, num_styles: int) -> None:
    """Raises InputError for option values that cannot work, naming the fix."""
    vgg.check_layers(hp.content_layers + hp.mrf_layers)
    if hp.normalization not in NORMALIZATIONS:
        raise InputError(f"unknown --normalization={hp.normalization} for mrf; use one of "
                         f"{', '.join(NORMALIZATIONS)}")
    if hp.pooling not in ("max", "avg"):
        raise InputError(f"unknown pooling {hp.pooling!r}; use max or avg")
    options.check_layer_weights(hp, ("content", "mrf"))
    options.check_nonnegative({
        "content_weight": [hp.content_weight], "mrf_weight": [hp.mrf_weight],
        "tv_weight": [hp.tv_weight], "semantic_weight": [hp.semantic_weight],
        "content_layer_weights": hp.content_layer_weights,
        "mrf_layer_weights": hp.mrf_layer_weights})
    options.check_at_least({n: getattr(hp, n) for n in ("patch_size", "style_stride",
                                                      "synthesis_stride")}, 1,
                        "give a positive whole number")
    options.check_at_least({n: getattr(hp, n) for n in ("rotations", "scales")}, 0,
                        "give a count of copies each way, or 0 for none")
    for name in ("content_layers", "mrf_layers"):
        if not getattr(hp, name):
            raise InputError(f"--{name} is empty; give at least one layer (to leave a term "
                             "out, set its weight to 0)")
    options.check_moves({
        "content_weight": hp.content_weight * sum(hp.content_layer_weights),
        "mrf_weight": hp.mrf_weight * sum(hp.mrf_layer_weights), "tv_weight": hp.tv_weight})
    if opts.style_blend_weights is not None:
        raise InputError("--style_blend_weights does not apply to --method=mrf: the patches of "
                         "all style images are candidates alike; leave it out")
    options.validate_options(opts, num_styles)


def style_copies(image: np.ndarray, rotations: int, scales: int) -> list[np.ndarray]:
    """The style image and its rotated and scaled copies, as the authors' code makes them:
    angles k pi/24 for k in -rotations..rotations (cropped to the part with no fill), each at
    scales 1.05^j for j in -scales..scales of its longer edge.

    Args:
      image: float32[H, W, C] in [0, 1] (C: colour, or label masks).
    Returns:
      (2 rotations + 1)(2 scales + 1) arrays float32[H', W', C], the unchanged image among them.
    """
    out = []
    for r in range(-rotations, rotations + 1):
        rotated = image_lib.rotate_crop(image, r * ROTATION_STEP)
        for j in range(-scales, scales + 1):
            edge = max(1, math.floor(max(rotated.shape[:2]) * SCALE_STEP ** j))
            out.append(rotated if j == 0 else image_lib.resize_to_edge(rotated, edge))
    return out


def _layer_features(vgg_params: dict, image: jax.Array, layers: tuple[str, ...], pooling: str,
                    convention, remat: bool = False) -> dict[str, jax.Array]:
    """Raw VGG-19 features of `image` (float32[H, W, 3], 8-bit levels) at `layers`."""
    return vgg.image_features(vgg_params, image, layers, convention, None, pooling, remat)


def compute_targets(vgg_params: dict, content: np.ndarray, styles: list[np.ndarray],
                    hp: MRFParams, convention, labels: masks.Labels | None = None) -> Targets:
    """Content features, the candidate style patches and, with labels, the guide channels.

    Args:
      content: float32[H, W, 3] and styles float32[H_i, W_i, 3], in 8-bit levels, at this
        level's size.
      labels: semantic regions (masks.match), or None.
    """
    extract = jax.jit(_layer_features, static_argnums=(2, 3, 4))
    content_feats = extract(vgg_params, jnp.asarray(content), hp.content_layers, hp.pooling,
                            convention)
    k, stride = hp.patch_size, hp.style_stride
    count = 0 if labels is None else len(labels.colors)
    candidates = {l: [] for l in hp.mrf_layers}
    label_candidates = {l: [] for l in hp.mrf_layers}
    for i, style in enumerate(styles):
        stacked = style / 255.0
        if labels is not None:  # transform the label masks with their image
            style_masks = masks.one_hot(labels.styles[i], count, *style.shape[:2])
            stacked = np.concatenate([stacked, style_masks.transpose(1, 2, 0)], axis=-1)
        for copy in style_copies(stacked, hp.rotations, hp.scales):
            vgg.check_size(copy.shape, hp.mrf_layers, "style (or a rotated or scaled copy)",
                           hp.patch_size)
            feats = extract(vgg_params, jnp.asarray(image_lib.to_levels(copy[..., :3])),
                            hp.mrf_layers, hp.pooling, convention)
            for l in hp.mrf_layers:
                candidates[l].append(patches.extract_patches(feats[l], k, stride))
                if labels is not None:
                    layer_masks = masks.at_layer(copy[..., 3:].transpose(2, 0, 1), vgg.pools(l))
                    label_candidates[l].append(patches.extract_patches(
                        jnp.asarray(layer_masks.transpose(1, 2, 0)), k, stride))
    candidates = {l: jnp.concatenate(c) for l, c in candidates.items()}

    h, w = content.shape[:2]
    weights = None
    if hp.normalization == "cnnmrf":
        weights = {l: jnp.asarray(losses.mrf_coverage_weights(
            h >> vgg.pools(l), w >> vgg.pools(l), k, hp.synthesis_stride)) for l in hp.mrf_layers}
    guide = candidate_guide = None
    if labels is not None:
        content_masks = masks.one_hot(labels.content, count, h, w)
        guide = {l: jnp.asarray(masks.at_layer(content_masks, vgg.pools(l)).transpose(1, 2, 0))
                 for l in hp.mrf_layers}
        candidate_guide = {l: jnp.concatenate(c) for l, c in label_candidates.items()}
    return Targets(content=content_feats, candidates=candidates, position_weights=weights,
                   guide=guide, candidate_guide=candidate_guide)


def loss_terms(image: jax.Array, data: Data, convention, remat: bool = False
               ) -> dict[str, jax.Array]:
    """The weighted loss terms and their sum at `image` (float32[H, W, 3], 8-bit levels).

    Returns:
      `{"content": w_c L_c, "mrf": w_mrf E, "tv": w_tv L_tv, "total": their sum}`, each
      float32[].
    """
    vgg_params, targets, hp = data
    layers = tuple(dict.fromkeys(hp.content_layers + hp.mrf_layers))
    feats = _layer_features(vgg_params, image, layers, hp.pooling, convention, remat)
    content = sum(w * losses.content_loss(feats[l], targets.content[l], 1.0)
                  for l, w in zip(hp.content_layers, hp.content_layer_weights))
    pick = lambda table, l: None if table is None else table[l]
    mrf = sum(w * losses.mrf_term(feats[l], targets.candidates[l], hp.synthesis_stride,
                                  pick(targets.position_weights, l), pick(targets.guide, l),
                                  pick(targets.candidate_guide, l), hp.semantic_weight)
              for l, w in zip(hp.mrf_layers, hp.mrf_layer_weights))
    terms = {"content": hp.content_weight * content, "mrf": hp.mrf_weight * mrf,
             "tv": hp.tv_weight * losses.total_variation_neural_style(image)}
    terms["total"] = terms["content"] + terms["mrf"] + terms["tv"]
    return terms


def objective(image: jax.Array, data: Data, convention, remat: bool = False) -> jax.Array:
    """The scalar loss."""
    return loss_terms(image, data, convention, remat)["total"]


def prepare_data(content: np.ndarray, styles: list[np.ndarray], hp: MRFParams,
                 opts: RunOptions, weights: VGGWeights, labels: masks.Labels | None = None
                 ) -> tuple[Data, np.ndarray, list[np.ndarray], None]:
    """One level's data: the images resized to `opts.size`, checked against the layers and
    patches, and the targets computed once.

    Args:
      content, styles: float[H, W, 3] in [0, 1], any size.
      labels: semantic regions (masks.match), or None.
    Returns:
      (data, content float32[H, W, 3] and styles in 8-bit levels at this size, None: mrf has
      no blend weights).
    """
    content, styles = options.resize_inputs(content, styles, opts)
    vgg.check_size(content.shape, hp.content_layers + hp.mrf_layers, "content", hp.patch_size)
    hp = dataclasses.replace(hp, **{f: tuple(float(w) for w in getattr(hp, f))
                                    for f in ("content_layer_weights", "mrf_layer_weights")})
    vgg_params = vgg.prepare(weights.params)
    targets = compute_targets(vgg_params, content, styles, hp, weights.convention, labels)
    return Data(vgg_params, targets, hp), content, styles, None


setup = pyramid.level_setup(prepare_data, loss_terms)  # one level: prepare_data, then the
#   problem on the shared compiled program
Inputs = pyramid.Inputs  # content, styles, and optionally labels and a start image


def run(key: jax.Array, inputs: Inputs, hp: MRFParams, opts: RunOptions, weights: VGGWeights,
        *, session: Session) -> Result:
    """Stylises `inputs.content` with the patches of `inputs.styles`, coarse to fine with
    `opts.pyramid_levels` > 1 (jstyle.engine.pyramid.run); `key` draws the noise init. See
    PRESETS for the defaults."""
    validate(hp, opts, len(inputs.styles))
    return pyramid.run("mrf", setup, inputs, hp, opts, weights, key, session=session,
                       extra_memory=candidates_gib)


def candidates_gib(hp: MRFParams, opts: RunOptions, size: tuple[int, int],
                   style_shapes: list[tuple[int, ...]]) -> float:
    """The candidate patches' memory, GiB: their values, normalised copy and gradient-time
    transposes (3 copies of P x k x k x C float32 per MRF layer; calibrated on the `paper`
    preset at 384 px, whose run peaks at 3.1 GiB), plus the matching's 256 MiB budget."""
    copies = (2 * hp.rotations + 1) * (2 * hp.scales + 1)
    edge = max(1, round(opts.size * opts.style_scale))
    total = 0.0
    for shape in style_shapes:
        sh, sw = image_lib.fit_edge(shape[0], shape[1], edge)
        for layer in hp.mrf_layers:
            pools, channels = vgg.pools(layer), vgg.channels(layer)
            rows, cols = patches.grid_shape(sh >> pools, sw >> pools, hp.patch_size,
                                            hp.style_stride)
            total += 3 * copies * max(rows, 0) * max(cols, 0) * hp.patch_size ** 2 * channels * 4
    return total / 2 ** 30 + 0.25
