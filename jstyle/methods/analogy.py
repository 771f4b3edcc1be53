"""Deep Image Analogy (Liao, Yao, Yuan, Hua & Kang 2017), "Visual attribute transfer through
deep image analogy".

  jstyle --method=analogy --content=A.png --style=BP.png --output=out.png
  -> out.png (A': A's structure with B''s appearance), out_b.png (B: B''s structure with A's
     appearance) and out.json

A and B' are given; A' and B are unknown. Coarse to fine over VGG-19's relu5_1, relu4_1,
relu3_1, relu2_1 and relu1_1, with both nearest-neighbour fields phi_a->b and phi_b->a
(centre-based, one match per position; jstyle.ops.patches):

  1. At relu5_1, F_A' = F_A and F_B = F_B', and the fields start as the identity.
  2. At each layer L, PatchMatch finds phi_a->b maximising the bidirectional similarity: the
     mean cosine of A's features with B's and of A''s with B''s over clipped k x k
     neighbourhoods (features normalised per position), and phi_b->a likewise.
  3. Unless L is the last layer: B''s features warped by phi_a->b (an averaging vote) are the
     target of a feature deconvolution: layer L-1's features whose forward pass through the
     network block matches the target, by L-BFGS. They are blended with A's own features at
     L-1: F_A' = W F_A + (1 - W) R, W = alpha_L times a mask of A's normalised feature
     response (|F_A|^2 scaled to [0, 1]). B likewise from A's warped features. The fields are
     upsampled to L-1.
  4. At the pixels, A' is the averaging vote of B''s pixels through phi_a->b (3 x 3), and B of
     A's through phi_b->a.

Where the paper and the authors' code (msracver/Deep-Image-Analogy, deep_image_analogy/source:
DeepAnalogy.cu, GeneralizedPatchMatch.cu, Deconv.cpp) differ, the presets `code` (the
default) and `paper` offer both:
  * the deconvolution: the code optimises layer L-2's features and forwards them to L-1
    (DeepAnalogy.cu, ComputeAnn: `next_layer = curr_layer + 2`; the authors explain in
    msracver/Deep-Image-Analogy#30 that passing through the extra block keeps the solution
    distributed like real L-1 features); the paper solves for L-1 directly (Sec. 4.3,
    `--deconv_depth=1`);
  * the mask: the code's hard threshold (GeneralizedPatchMatch.cu, blend: W = alpha where the
    response >= 0.05, else 0); the paper's sigmoid (Sec. 4.3: W = alpha * sigmoid(kappa (r -
    tau)), kappa = 300, tau = 0.05);
  * alpha_L for relu4_1..relu1_1: the code's blend level 3 (0.9, 0.8, 0.7, 0.2; DeepAnalogy.cu,
    ComputeAnn's `weightLevel` switch) against the paper's 0.8, 0.7, 0.6, 0.1 (Sec. 4.3; the
    code's level 2).
The presets photo2style, portrait, style2style, style2photo and photo2photo carry the settings
the authors' README recommends per application (README, "Tips").

Sizes, as the code's LoadInputs: an image with a side over `max_side` (700) or under
`min_side` (200), or an area over `max_area` (350,000 px), is resized first, and the results
are resized back to the inputs' sizes; `--size=N` instead sizes both images to a longer edge
of N and keeps the results at that size. `ratio` scales both images before the network (the code's
resizeRatio): the fields are found at that size and upsampled, and the pixel vote uses the
full-size images.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jstyle import image as image_lib
from jstyle.engine import optimize
from jstyle.ops import fields, patches, patchmatch
from jstyle.engine import options
from jstyle.engine.kinds import Image, Images
from jstyle.engine.session import Result, Session, made
from jstyle.nets import vgg
from jstyle.errors import InputError
from jstyle.params import field
from jstyle.engine.options import RunOptions
from jstyle.nets.weights import VGGWeights

LAYERS = ("relu5_1", "relu4_1", "relu3_1", "relu2_1", "relu1_1")  # DeepAnalogy.cu: the
#   blobs conv5_1 .. conv1_1, which Caffe's in-place ReLUs make the relu outputs
BLEND_LEVELS = {1: (0.7, 0.6, 0.5, 0.0), 2: (0.8, 0.7, 0.6, 0.1), 3: (0.9, 0.8, 0.7, 0.2)}
#   alpha for relu4_1 .. relu1_1 (DeepAnalogy.cu, ComputeAnn, `switch (weightLevel)`)
MASKS = ("hard", "sigmoid")
DIRECTIONS = ("both", "forward")
OPTIONS = ("size", "steps", "seed", "print_every")  # the run options it reads: --steps is the
#   L-BFGS iterations of each deconvolution (100, Deconv.cpp's solver); --size the longer edge
#   of both images in place of the size limits (0: the limits)
OUTPUTS = ("output", "b")  # "b" with directions=both only (`outputs`)
RESUMABLE = True  # a checkpoint after every layer; --resume continues at the next
RUN_GIB = (0.9, 8.7)  # peak memory: GiB, plus GiB per megapixel of A and B' together


@dataclasses.dataclass(frozen=True)
class AnalogyParams:
    """Deep Image Analogy's settings. Defaults: the authors' code (DeepAnalogy.cu, ComputeAnn
    and LoadInputs; GeneralizedPatchMatch.cu)."""
    patch_sizes: tuple[int, ...] = field(
        (3, 3, 3, 5, 5), "PatchMatch patch size per layer, relu5_1 to relu1_1 (odd).",
        kind="ints")  # `sizes`
    pixel_patch_size: int = field(3, "Patch size of the final vote of pixels (odd).")
    #   `sizes[5]`
    radii: tuple[int, ...] = field(
        (0, 6, 6, 4, 4), "PatchMatch's random-search radius per layer, relu5_1 to relu1_1 "
        "(0: A's longer side at the working size / 16).", kind="ints")  # `range`
    iterations: int = field(10, "PatchMatch iterations per layer.")  # `params.iter = 10`
    max_jump: int = field(8, "PatchMatch's longest propagation jump (halved down to 1).")
    #   GeneralizedPatchMatch.cu, patchmatch: `for (int jump = 8; ...; jump /= 2)`
    blend_level: int = field(3, "Blend weights alpha for relu4_1..relu1_1: 1 (0.7, 0.6, 0.5, "
                             "0), 2 (0.8, 0.7, 0.6, 0.1), 3 (0.9, 0.8, 0.7, 0.2). Higher keeps "
                             "more of the content's structure.")  # `weightLevel = 3`
    mask: str = field("hard", "Response mask of the blend: hard (the code: alpha where the "
                      "normalised response >= --threshold) or sigmoid (the paper: alpha * "
                      "sigmoid(--sharpness * (response - --threshold))).", choices=MASKS)
    threshold: float = field(0.05, "tau: the normalised feature response where the mask "
                             "turns on.")  # blend: `thre = 0.05`; paper Sec. 4.3
    sharpness: float = field(300.0, "kappa of --mask=sigmoid.")  # paper Sec. 4.3
    deconv_depth: int = field(2, "Deconvolve layer L's target down to layer L-2 and forward to "
                              "L-1 (2, the code), or solve for L-1 directly (1, the paper).")
    directions: str = field("both", "both (A' and B) or forward (A' only, half the work: B is "
                            "taken as B' in the matching).", choices=DIRECTIONS)
    ratio: float = field(1.0, "Scale of both images before the network (the code's "
                          "resizeRatio; 0.5 quarters the work, and suits faces).")
    max_side: int = field(700, "Images with a longer side are resized to it first (px).")
    min_side: int = field(200, "Images with a shorter side are resized up to it first (px).")
    max_area: int = field(350000, "Images with a larger area are resized to it first (px).")


Params = AnalogyParams
OPTS = RunOptions(size=0, steps=100)  # the size limits; 100 L-BFGS iterations per deconvolution
PRESETS = {
    "code": (AnalogyParams(), OPTS),
    "paper": (AnalogyParams(blend_level=2, mask="sigmoid", deconv_depth=1), OPTS),
    # the authors' README, "Tips": settings per application
    "photo2style": (AnalogyParams(blend_level=3, ratio=1.0), OPTS),
    "portrait": (AnalogyParams(blend_level=3, ratio=0.5), OPTS),  # "for face (portrait)
    #   cases, we find ratio = 0.5 often make the results better"
    "style2style": (AnalogyParams(blend_level=3, ratio=1.0), OPTS),
    "style2photo": (AnalogyParams(blend_level=2, ratio=0.5), OPTS),
    "photo2photo": (AnalogyParams(blend_level=3, ratio=1.0), OPTS),
}


def outputs(hp: AnalogyParams) -> tuple[str, ...]:
    """The images a run with `hp` makes: A', and B unless directions=forward."""
    return OUTPUTS if hp.directions == "both" else OUTPUTS[:1]


def validate(hp: AnalogyParams, opts: RunOptions, num_styles: int) -> None:
    """Raises InputError for settings that cannot work, naming the fix."""
    if num_styles != 1:
        raise InputError(f"--method=analogy takes one --style image (B'), got {num_styles}; "
                         "give one")
    for name, values in (("patch_sizes", hp.patch_sizes), ("radii", hp.radii)):
        if len(values) != len(LAYERS):
            raise InputError(f"--{name} has {len(values)} values; give one per layer "
                             f"({', '.join(LAYERS)})")
    for size in (*hp.patch_sizes, hp.pixel_patch_size):
        if size < 1 or size % 2 == 0:
            raise InputError(f"patch size {size} is invalid; give odd patch sizes >= 1 "
                             "(--patch_sizes, --pixel_patch_size), such as 3 or 5")
    if min(hp.radii) < 0:
        raise InputError(f"--radii={','.join(map(str, hp.radii))} has a negative radius; give "
                         "radii >= 0 (0: automatic)")
    if hp.blend_level not in BLEND_LEVELS:
        raise InputError(f"--blend_level={hp.blend_level} is invalid; use 1, 2 or 3")
    if hp.deconv_depth not in (1, 2):
        raise InputError(f"--deconv_depth={hp.deconv_depth} is invalid; use 2 (the code) or 1 "
                         "(the paper)")
    for name in ("iterations", "max_jump", "min_side", "max_side", "max_area"):
        if getattr(hp, name) < 1:
            raise InputError(f"--{name}={getattr(hp, name)} must be >= 1; give a positive "
                             "whole number")
    for name in ("size", "steps", "print_every"):
        if getattr(opts, name) < 0:
            raise InputError(f"--{name}={getattr(opts, name)} must be >= 0; give a positive "
                             "whole number, or 0" + (" for the size limits" if name == "size"
                                                     else ""))
    options.check_size(opts)
    if hp.min_side > hp.max_side:
        raise InputError(f"--min_side={hp.min_side} is above --max_side={hp.max_side}; give "
                         "min_side <= max_side")
    if not 0 < hp.ratio <= 4:
        raise InputError(f"--ratio={hp.ratio} is invalid; give a scale in (0, 4], such as 0.5")
    if not 0 <= hp.threshold <= 1 or hp.sharpness <= 0:
        raise InputError(f"--threshold={hp.threshold} and --sharpness={hp.sharpness} are "
                         "invalid; give a threshold in [0, 1] and a positive sharpness, such as "
                         "0.05 and 300")


def run_gib(a: tuple[int, int], bp: tuple[int, int]) -> float:
    """Estimated peak memory (GiB) of a run on A and B' of these working sizes (after --ratio):
    a line through the README's peaks (4.4 GiB for two 448 x 448 images, 1.8 GiB at 224 x 224)."""
    return RUN_GIB[0] + RUN_GIB[1] * (a[0] * a[1] + bp[0] * bp[1]) / 1e6


def fit_limits(shape: tuple[int, int], hp: AnalogyParams, what: str) -> tuple[int, int]:
    """The (height, width) an image of `shape` is resized to by the size limits, in the code's
    order (DeepAnalogy.cu, LoadInputs): rows, then columns, over max_side; under min_side;
    then the area.

    Raises:
      InputError: no size satisfies the limits (a very long or thin image).
    """
    h, w = shape
    scale = lambda f: (max(1, round(h * f)), max(1, round(w * f)))
    for side in (0, 1):
        if (h, w)[side] > hp.max_side:
            h, w = scale(hp.max_side / (h, w)[side])
    for side in (0, 1):
        if (h, w)[side] < hp.min_side:
            h, w = scale(hp.min_side / (h, w)[side])
    if h * w > hp.max_area:
        h, w = scale(math.sqrt(hp.max_area / (h * w)))
    if max(h, w) > hp.max_side or min(h, w) < hp.min_side:
        raise InputError(f"{what} is {shape[1]}x{shape[0]} px, which no size within the limits "
                         f"fits (sides {hp.min_side}-{hp.max_side} px, area <= {hp.max_area}); "
                         "crop it closer to square, or change --min_side/--max_side/--max_area")
    return h, w


def response_mask(features: jax.Array, hp: AnalogyParams) -> jax.Array:
    """Where a map's own features are kept in the blend: float[H, W, C] -> float[H, W] in
    [0, 1], from the squared feature norm scaled to [0, 1] over the map (DeepAnalogy.cu, norm)."""
    energy = jnp.sum(jnp.square(features), axis=-1)
    low, high = jnp.min(energy), jnp.max(energy)
    response = (energy - low) / jnp.maximum(high - low, patches.EPS)
    if hp.mask == "hard":
        return (response >= hp.threshold).astype(features.dtype)
    return jax.nn.sigmoid(hp.sharpness * (response - hp.threshold))


def blend(own: jax.Array, reconstructed: jax.Array, weight: jax.Array) -> jax.Array:
    """own * W + reconstructed * (1 - W): float[H, W, C] twice and W float[H, W]."""
    return own * weight[..., None] + reconstructed * (1.0 - weight[..., None])


@functools.partial(jax.jit, static_argnames=("size", "iterations", "max_jump", "radius"))
def match(key: jax.Array, source: tuple[jax.Array, jax.Array],
          target: tuple[jax.Array, jax.Array], init: jax.Array, *, size: int, iterations: int,
          max_jump: int, radius: float) -> tuple[jax.Array, jax.Array]:
    """The bidirectional nearest-neighbour field from `source` to `target` by PatchMatch.

    Args:
      key: PRNG key of the random search.
      source: (F_A', F_A), float[H, W, C] each; target: (F_B', F_B), float[H2, W2, C] each.
        phi_a->b compares A' with B' and A with B at once (the paper's Eq. 2); phi_b->a is
        the call with (F_B, F_B') against (F_A, F_A').
      init: int[H, W, 2], the starting field (identity or the coarser layer's, upsampled).
    Returns:
      (field int32[H, W, 2]; similarity float32[H, W] in [-1, 1]: the mean of the two clipped
      neighbourhoods' mean cosines).
    """
    joined = lambda maps: jnp.concatenate([fields.unit_features(m) for m in maps], axis=-1)
    s, t = joined(source), joined(target)
    score = lambda field: fields.overlap_similarity(s, t, field, size) / 2.0
    return patchmatch.search(key, score, s.shape[:2], t.shape[:2], iterations, alpha=0.5,
                          samples=1, init=init, max_jump=max_jump, radius=radius)


@functools.lru_cache(maxsize=None)
def _inversion(start: str | None, end: str):
    """(optimiser, compiled L-BFGS chunk) of `invert` from layer `start` to `end`."""
    def objective(x, data):
        params, target = data
        return jnp.mean(jnp.square(vgg.forward(params, x, start, end) - target))
    # optax's zoom line search: about 1.1 evaluations per step here; a backtracking search
    # (the authors' solver's) stalled on the image-level inversion at 448 px (README)
    optimizer = optimize.make_optimizer("lbfgs", 1.0)
    return optimizer, optimize.make_chunk(objective, optimizer, linesearch="zoom", tol=0.0,
                                          bounds=None)


def invert(params: dict, target: jax.Array, start: str | None, end: str, init: jax.Array,
           steps: int) -> tuple[jax.Array, float]:
    """Feature deconvolution: features x at layer `start` whose forward pass to layer `end`
    matches `target`, by L-BFGS from `init` (min ||forward(x) - target||^2; Deconv.cpp).

    Args:
      params: prepared VGG-19 weights (vgg.prepare).
      target: float[H_e, W_e, C_e], layer `end`'s features.
      start: a layer above `end`, or None for the preprocessed image.
      init: float[H_s, W_s, C_s], where L-BFGS starts (the known image's own features there).
    Returns:
      (x float32[H_s, W_s, C_s]; the relative error ||forward(x) - target|| / ||target||).
    Raises:
      optimize.Interrupted: Ctrl-C or SIGTERM (answered every few iterations).
    """
    optimizer, chunk = _inversion(start, end)
    state = optimize.init(optimizer, jnp.array(init, copy=True))  # its buffer is donated
    if steps:
        state = optimize.run(chunk, state, (params, target), [steps])
    x = state.good_image if bool(state.failed) else state.image
    error = jnp.linalg.norm(vgg.forward(params, x, start, end) - target) / jnp.maximum(
        jnp.linalg.norm(target), patches.EPS)
    return x, float(error)


class Inputs(NamedTuple):
    """A and B', float32[H, W, 3] in [0, 1] each."""
    content: Image  # A
    styles: Images  # [B']


class State(NamedTuple):
    """What a layer hands the next (and a checkpoint keeps)."""
    field_ab: jax.Array  # int32[H_a, W_a, 2], phi_a->b at the layer
    field_ba: jax.Array  # int32[H_b, W_b, 2], phi_b->a
    a_prime: jax.Array  # float32[H_a, W_a, C], F_A' at the layer
    b: jax.Array  # float32[H_b, W_b, C], F_B


class Network(NamedTuple):
    """The network's view of A and B' at the working size."""
    params: dict  # prepared VGG-19 weights
    inputs_a: jax.Array  # A preprocessed, float32[H_a, W_a, 3]
    inputs_bp: jax.Array  # B' preprocessed
    feats_a: dict  # layer -> F_A
    feats_bp: dict  # layer -> F_B'


def _layer_below(index: int) -> str | None:
    """The layer the deconvolution reaches from LAYERS[index] (None: the image)."""
    return LAYERS[index + 1] if index + 1 < len(LAYERS) else None


def working_images(content: np.ndarray, style: np.ndarray, hp: AnalogyParams,
                   opts: RunOptions) -> tuple[np.ndarray, ...]:
    """(A, B' at the limited size; A, B' at the network's size, after --ratio).

    Raises:
      InputError: an image too small for relu5_1 after the sizing.
    """
    if opts.size:  # the user's size for both, else the code's limits
        a_full, bp_full = (image_lib.resize_to_edge(x, opts.size) for x in (content, style))
    else:
        a_full = image_lib.resize(content, *fit_limits(content.shape[:2], hp, "--content"))
        bp_full = image_lib.resize(style, *fit_limits(style.shape[:2], hp, "--style"))
    scaled = lambda img: image_lib.resize(img, max(1, round(img.shape[0] * hp.ratio)),
                                          max(1, round(img.shape[1] * hp.ratio)))
    a, bp = scaled(a_full), scaled(bp_full)
    need = vgg.min_size(LAYERS)
    for img, what in ((a, "--content"), (bp, "--style")):
        if min(img.shape[:2]) < need:
            limits = f"--size={opts.size}" if opts.size else "the size limits"
            raise InputError(f"{what} is {img.shape[1]}x{img.shape[0]} px after {limits} "
                             f"and --ratio={hp.ratio}, but relu5_1 needs at least {need} px on "
                             "each side; give a larger --ratio or " +
                             ("--size" if opts.size else "--min_side"))
    return a_full, bp_full, a, bp


def network(a: np.ndarray, bp: np.ndarray, weights: VGGWeights) -> Network:
    """A's and B''s features at every layer of LAYERS."""
    params = vgg.prepare(weights.params)
    pre = lambda img: vgg.preprocess(jnp.asarray(img * 255.0), weights.convention)
    features = jax.jit(lambda params, x: vgg.features(params, x, LAYERS))
    inputs_a, inputs_bp = pre(a), pre(bp)
    return Network(params, inputs_a, inputs_bp, features(params, inputs_a),
                   features(params, inputs_bp))


def first_state(net: Network) -> State:
    """relu5_1: F_A' = F_A, F_B = F_B', identity fields."""
    a_prime, b = net.feats_a[LAYERS[0]], net.feats_bp[LAYERS[0]]
    return State(fields.identity_field(*a_prime.shape[:2]),
                 fields.identity_field(*b.shape[:2]), a_prime, b)


def layer(i: int, state: State, net: Network, hp: AnalogyParams, key: jax.Array,
          radius0: int) -> tuple[State, dict]:
    """Layer LAYERS[i]: the fields (from the coarser layer's, upsampled, after the blend of
    the paper's Eq. 4) and the record entry; `deconvolve` then makes the next layer's A' and
    B."""
    name, both = LAYERS[i], hp.directions == "both"
    fa, fbp = net.feats_a[name], net.feats_bp[name]
    field_ab, field_ba, a_prime, b = state
    if i > 0:
        alpha = BLEND_LEVELS[hp.blend_level][i - 1]
        field_ab = fields.upsample_offsets(field_ab, *fa.shape[:2], *fbp.shape[:2])
        field_ba = fields.upsample_offsets(field_ba, *fbp.shape[:2], *fa.shape[:2])
        a_prime = blend(fa, a_prime, alpha * response_mask(fa, hp))
        b = blend(fbp, b, alpha * response_mask(fbp, hp)) if both else fbp
    settings = dict(size=hp.patch_sizes[i], iterations=hp.iterations, max_jump=hp.max_jump,
                    radius=float(hp.radii[i] or radius0))
    clock, layer_key = time.perf_counter(), jax.random.fold_in(key, i)
    field_ab, sim_ab = match(jax.random.fold_in(layer_key, 0), (a_prime, fa), (fbp, b),
                             field_ab, **settings)
    if both:
        field_ba, sim_ba = match(jax.random.fold_in(layer_key, 1), (b, fbp), (fa, a_prime),
                                 field_ba, **settings)
    jax.block_until_ready((field_ab, field_ba))
    entry = {"layer": name, "patch_size": settings["size"], "radius": settings["radius"],
             "patchmatch_seconds": round(time.perf_counter() - clock, 3),
             "similarity_ab": float(jnp.mean(sim_ab))}
    if both:
        entry["similarity_ba"] = float(jnp.mean(sim_ba))
    return State(field_ab, field_ba, a_prime, b), entry


def deconvolve(i: int, state: State, net: Network, hp: AnalogyParams, opts: RunOptions,
               entry: dict) -> State:
    """The next layer's A' (and B): B''s features warped by phi_a->b (A's by phi_b->a),
    deconvolved to the layer below (Deconv.cpp); the timings and errors go into `entry`."""
    clock, name = time.perf_counter(), LAYERS[i]
    start, below = _layer_below(i + hp.deconv_depth - 1), _layer_below(i)
    layer_of = lambda feats, x: x if start is None else feats[start]  # a layer's or the image

    def reconstruct(own_feats, own_input, source_map, field):
        target = fields.vote_centred(source_map, field, hp.patch_sizes[i])
        x, error = invert(net.params, target, start, name, layer_of(own_feats, own_input),
                          opts.steps)
        return (x if start == below else vgg.forward(net.params, x, start, below)), error

    a_prime, entry["deconv_error_a"] = reconstruct(net.feats_a, net.inputs_a,
                                                   net.feats_bp[name], state.field_ab)
    b = state.b
    if hp.directions == "both":
        b, entry["deconv_error_b"] = reconstruct(net.feats_bp, net.inputs_bp,
                                                 net.feats_a[name], state.field_ba)
    jax.block_until_ready((a_prime, b))
    entry["deconv_seconds"] = round(time.perf_counter() - clock, 3)
    return state._replace(a_prime=a_prime, b=b)


def vote(state: State, a_full: np.ndarray, bp_full: np.ndarray, inputs: Inputs,
         hp: AnalogyParams, opts: RunOptions) -> dict[str, np.ndarray]:
    """The pixels: A' the vote of B''s pixels through phi_a->b at full size, B of A's through
    phi_b->a; back at the inputs' sizes unless --size set the working size."""
    def back(out, original):  # --size keeps the working size; the code resizes back
        out = np.asarray(out, np.float32)
        return out if opts.size else image_lib.resize(out, *original.shape[:2])
    field_ab = fields.upsample_offsets(state.field_ab, *a_full.shape[:2], *bp_full.shape[:2])
    images = {"output": back(fields.vote_centred(jnp.asarray(bp_full), field_ab,
                                                  hp.pixel_patch_size), inputs.content)}
    if hp.directions == "both":
        field_ba = fields.upsample_offsets(state.field_ba, *bp_full.shape[:2],
                                            *a_full.shape[:2])
        images["b"] = back(fields.vote_centred(jnp.asarray(a_full), field_ba,
                                                hp.pixel_patch_size), inputs.styles[0])
    return images


def run(key: jax.Array, inputs: Inputs, hp: AnalogyParams, opts: RunOptions,
        weights: VGGWeights, *, session: Session) -> Result:
    """A' and B from A and B' (`inputs`), coarse to fine over LAYERS; `key` seeds
    PatchMatch's random search (the same key gives the same fields and images). A checkpoint
    is kept after every layer; a matching one is continued from.

    Returns:
      Result with images {"output": A' at A's size, "b": B at B''s size (unless
      directions=forward)} and a record with per-layer timings and similarities.
    Raises:
      InputError: bad settings, an image too small, a checkpoint of another run.
      Stopped: Ctrl-C or SIGTERM; the finished layers are in the checkpoint.
    """
    validate(hp, opts, len(inputs.styles))
    a_full, bp_full, a, bp = working_images(inputs.content, inputs.styles[0], hp, opts)
    session.require(run_gib(a.shape[:2], bp.shape[:2]),
                    "lower --size or --ratio, or give --directions=forward")
    saved = session.begin(made(
        "analogy", hp, {n: getattr(opts, n) for n in OPTIONS}, weights,
        [inputs.content, inputs.styles[0]], key=np.asarray(jax.random.key_data(key)).tolist()),
        total=2 * len(LAYERS), unit="stage", may_change=("print_every",))
    net = network(a, bp, weights)
    layers = list(saved["layers"]) if saved else []
    state = State(*(jnp.asarray(session.arrays[n]) for n in State._fields)) if saved \
        else first_state(net)
    if layers:
        session.update(2 * len(layers), f"resumed after {LAYERS[len(layers) - 1]}")
    try:
        for i in range(len(layers), len(LAYERS)):
            state, entry = layer(i, state, net, hp, key, max(a.shape[:2]) // 16)
            session.update(2 * i + 1, f"{LAYERS[i]}: PatchMatch "
                           f"{entry['patchmatch_seconds']:.1f}s, similarity "
                           f"{entry['similarity_ab']:.3f}")
            if i + 1 < len(LAYERS):
                state = deconvolve(i, state, net, hp, opts, entry)
                session.update(2 * i + 2, f"{LAYERS[i]} -> {LAYERS[i + 1]}: deconvolution "
                               f"{entry['deconv_seconds']:.1f}s, relative error "
                               f"{entry['deconv_error_a']:.3f}")
            layers.append(entry)
            session.save({"layers": layers}, arrays=state._asdict())
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the finished layers are saved
        raise session.stopped(f"layer {len(layers)} of {len(LAYERS)}", bool(layers)) from None
    clock = time.perf_counter()
    images = vote(state, a_full, bp_full, inputs, hp, opts)
    vote_seconds = round(time.perf_counter() - clock, 3)
    session.update(2 * len(LAYERS), f"pixel vote {vote_seconds:.1f}s")
    return session.result(images, sizes={
        "content": list(inputs.content.shape[:2]), "style": list(inputs.styles[0].shape[:2]),
        "content_limited": list(a_full.shape[:2]), "style_limited": list(bp_full.shape[:2]),
        "content_network": list(a.shape[:2]), "style_network": list(bp.shape[:2])},
        layers=layers, vote_seconds=vote_seconds, steps=opts.steps,
        resumed_after_layers=len(saved["layers"]) if saved else 0,
        final_similarity={k: layers[-1][f"similarity_{k}"] for k in ("ab", "ba")
                          if f"similarity_{k}" in layers[-1]})
