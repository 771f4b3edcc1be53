"""VGG-19 (Simonyan & Zisserman 2015) as pure functions on channels-last images, with its
conventions: layer names and shapes, each weight source's input convention (`Convention`,
`preprocess`, `postprocess`) and the per-layer scales of Gatys et al.'s normalised network.

`features(params, image, layers)` runs the network only as deep as the deepest requested layer
and returns exactly the requested activations; `image_features` does the same from an RGB image
in 8-bit levels, preprocessed and scaled as the methods compare features; `forward(params, x,
start, end)` runs it from one layer's output to a deeper layer (Deep Image Analogy's feature
"deconvolution" inverts that). Layer names follow the Caffe model and jcjohnson/neural-style:
conv{b}_{c}, relu{b}_{c} (b = 1..5), pool1..pool5.
"""

from __future__ import annotations

import pathlib
from typing import Iterable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jstyle import image as image_lib
from jstyle.errors import InputError

# VGG-19's convolution layers: (name, input channels, output channels).
CONV_LAYERS = (
    ("conv1_1", 3, 64), ("conv1_2", 64, 64),
    ("conv2_1", 64, 128), ("conv2_2", 128, 128),
    ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256), ("conv3_4", 256, 256),
    ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512), ("conv4_4", 512, 512),
    ("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512), ("conv5_4", 512, 512),
)


class Convention(NamedTuple):
    """How a network expects its input: x = (rgb_or_bgr(pixels) / 255 * scale - mean) / std."""
    name: str
    bgr: bool  # channel order the network was trained on
    scale: float  # pixel range the network was trained on: 255.0 (Caffe) or 1.0 (torchvision)
    mean: tuple[float, float, float]  # in the network's channel order and range
    std: tuple[float, float, float]


# Caffe VGG: BGR, 0-255, mean pixel subtracted (Simonyan & Zisserman's model page).
CAFFE = Convention("caffe", True, 255.0, (103.939, 116.779, 123.68), (1.0, 1.0, 1.0))
# torchvision: RGB, 0-1, ImageNet mean and standard deviation.
TORCHVISION = Convention("torchvision", False, 1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CONVENTIONS = {c.name: c for c in (CAFFE, TORCHVISION)}

_BLOCK_DEPTHS = (2, 2, 4, 4, 4)


def _layer_names() -> tuple[str, ...]:
    names = []
    for block, depth in enumerate(_BLOCK_DEPTHS, start=1):
        for conv in range(1, depth + 1):
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
        names.append(f"pool{block}")
    return tuple(names)


LAYERS = _layer_names()  # all 37 layer names in network order
_INDEX = {name: i for i, name in enumerate(LAYERS)}
assert [n for n in LAYERS if n.startswith("conv")] == [n for n, _, _ in CONV_LAYERS]


def check_layers(layers: Iterable[str]) -> tuple[str, ...]:
    """Returns `layers` as a tuple, or raises InputError naming an unknown layer."""
    layers = tuple(layers)
    for name in layers:
        if name not in _INDEX:
            raise InputError(f"unknown VGG-19 layer {name!r}; valid names are conv1_1 ... "
                             "relu5_4 and pool1 ... pool5 (e.g. relu4_2)")
    return layers


def deepest(layers: Iterable[str]) -> str:
    """The deepest of `layers` (the one a network must run to)."""
    return max(check_layers(layers), key=_INDEX.get)


def min_size(layers: Iterable[str]) -> int:
    """Smallest image edge (pixels) for which every layer in `layers` is at least 1x1."""
    deepest = max(_INDEX[name] for name in check_layers(layers))
    pools = sum(1 for name in LAYERS[: deepest + 1] if name.startswith("pool"))
    return 2 ** pools


def pools(layer: str) -> int:
    """How many 2x2 poolings come before `layer` (its map is the image's floor-divided by
    2**pools)."""
    return sum(1 for n in LAYERS[: _INDEX[check_layers([layer])[0]]] if n.startswith("pool"))


def receptive_radius(layer: str) -> int:
    """Pixels by which an activation at `layer` can reach past its own position on the image:
    each 3x3 convolution reaches one position further and each 2x2 pooling one more, at the
    scale of the map it works on. Features of a crop equal the whole image's wherever the crop
    extends this far around them (and the crop starts on the layer's pooling grid)."""
    reach, scale = 0, 1
    for name in LAYERS[: _INDEX[check_layers([layer])[0]] + 1]:
        if name.startswith(("conv", "pool")):
            reach += scale
        if name.startswith("pool"):
            scale *= 2
    return reach


def check_size(shape: tuple[int, ...], layers: Iterable[str], what: str, patch: int = 1) -> None:
    """Raises InputError unless an image of `shape` ([H, W, ...]) is large enough for every
    layer in `layers` to be at least 1x1, and `patch` x `patch` patches at the deepest.

    what: how the message names the image ("content", "style").
    """
    layers = check_layers(layers)
    deepest = max(layers, key=_INDEX.get)
    need = max(min_size(layers), patch << pools(deepest))
    if min(shape[:2]) < need:
        needs = (f"layer {deepest} needs" if patch == 1 else
                 f"{patch}x{patch} patches at {deepest} need")
        raise InputError(
            f"the {what} image is {shape[1]}x{shape[0]} px at this size, but {needs} at least "
            f"{need} px on each side; use a larger --size/--style_scale, fewer --pyramid_levels "
            "or shallower layers")


def channels(layer: str) -> int:
    """How many channels `layer`'s activations have."""
    block = int(check_layers([layer])[0][4])
    return dict((n[4], c) for n, _, c in CONV_LAYERS)[str(block)]


def preprocess(levels: jax.Array, convention: Convention) -> jax.Array:
    """RGB float[..., 3] in 8-bit levels -> the network input of `convention`."""
    x = levels[..., ::-1] if convention.bgr else levels
    x = x * (convention.scale / 255.0)
    return (x - jnp.asarray(convention.mean)) / jnp.asarray(convention.std)


def postprocess(x: jax.Array, convention: Convention) -> jax.Array:
    """The inverse of `preprocess`: a network input -> RGB float[..., 3] in 8-bit levels."""
    levels = (x * jnp.asarray(convention.std) + jnp.asarray(convention.mean)) \
        * (255.0 / convention.scale)
    return levels[..., ::-1] if convention.bgr else levels


def image_features(params: dict, levels: jax.Array, layers: Iterable[str],
                   convention: Convention, scales: dict | None = None, pooling: str = "max",
                   remat: bool = False) -> dict[str, jax.Array]:
    """The features the methods compare: `levels` (RGB float32[H, W, 3] in 8-bit levels)
    preprocessed for `convention`, run through the network, each layer divided by its scale
    (`layer_scales`; None: raw activations).

    Returns:
      `{layer: float32[H_l, W_l, C_l]}` for exactly `layers`.
    """
    layers = check_layers(layers)
    feats = features(params, preprocess(levels, convention), layers, pooling, remat)
    feats = {l: feats[l].astype(jnp.float32) for l in layers}
    return feats if scales is None else {l: feats[l] / scales[l] for l in layers}


def _pool(x: jax.Array, pooling: str) -> jax.Array:
    """2x2 pooling with stride 2 on [H, W, C]; an odd last row or column is dropped (floor)."""
    h, w, c = x.shape
    x = x[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2, c)
    return x.max(axis=(1, 3)) if pooling == "max" else x.mean(axis=(1, 3))


_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def _raw_conv(x: jax.Array, w: jax.Array) -> jax.Array:
    """3x3 convolution, stride 1, zero padding 1: [1, H, W, C_in] x HWIO -> [1, H, W, C_out].

    It runs in the kernel's dtype (`x` is cast to it: bfloat16 under that precision) and
    accumulates and returns float32."""
    return jax.lax.conv_general_dilated(x.astype(w.dtype), w, window_strides=(1, 1),
                                        padding=((1, 1), (1, 1)),
                                        dimension_numbers=_DIMENSIONS,
                                        preferred_element_type=jnp.float32)


@jax.custom_vjp
def _conv(x: jax.Array, w: jax.Array, w_flipped: jax.Array) -> jax.Array:
    """`_raw_conv` whose input gradient is a plain convolution with `w_flipped`.

    The input gradient of a convolution is a convolution with the kernel flipped spatially and
    its in/out channels swapped. Left to autodiff, XLA:CPU folds that transpose into the
    convolution's dimension labels, and inside a while loop (optax's line search, jstyle's
    compiled chunks) the folded form runs about 5x slower. Passing the flipped kernel as a
    ready array, made once outside jit by `prepare`, keeps every convolution on the fast path.
    The result and gradients are identical.
    """
    return _raw_conv(x, w)


def _conv_fwd(x, w, w_flipped):
    return _raw_conv(x, w), (x, w, w_flipped)


def _conv_bwd(residuals, g):
    x, w, w_flipped = residuals
    dw = jax.vjp(lambda w: _raw_conv(x, w), w)[1](g)[0]  # removed by XLA when unused
    return _raw_conv(g, w_flipped).astype(x.dtype), dw, jnp.zeros_like(w_flipped)


_conv.defvjp(_conv_fwd, _conv_bwd)


def flip_kernel(w) -> np.ndarray:
    """HWIO kernel -> the kernel of its input gradient: flipped in H and W, I and O swapped."""
    return np.ascontiguousarray(np.flip(np.asarray(w), (0, 1)).swapaxes(2, 3))


PRECISIONS = ("float32", "bfloat16")


def prepare(params: dict, precision: str = "float32") -> dict:
    """Device arrays for `features`, with each layer's flipped kernel `w_flipped` added.

    Call once, outside jit; `features` also accepts params without `w_flipped` (it then flips
    the kernel itself, which is slower to differentiate inside loops on CPU).

    precision: "bfloat16" stores the kernels in bfloat16, and the network then runs in it:
    each convolution multiplies bfloat16 activations and kernels, accumulates in float32 and
    adds the float32 bias, and the activations stay bfloat16 between layers; `features`
    returns float32. The speed of accelerators' bfloat16 units, at half the activations'
    memory; what is compared (Grams, losses) stays float32.
    """
    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[precision]
    return {name: {"w": jnp.asarray(p["w"], dtype), "b": jnp.asarray(p["b"], jnp.float32),
                   "w_flipped": jnp.asarray(p["w_flipped"] if "w_flipped" in p
                                            else flip_kernel(p["w"]), dtype)}
            for name, p in params.items()}


def _conv_bias(x: jax.Array, p: dict) -> jax.Array:
    """One VGG convolution with bias on one [H, W, C_in] image."""
    w_flipped = p["w_flipped"] if "w_flipped" in p else jnp.flip(p["w"], (0, 1)).swapaxes(2, 3)
    return (_conv(x[None], p["w"], w_flipped)[0] + p["b"]).astype(p["w"].dtype)


def features(params: dict, image: jax.Array, layers: Iterable[str],
             pooling: str = "max", remat: bool = False) -> dict[str, jax.Array]:
    """Computes the requested VGG-19 activations of one preprocessed image.

    Args:
      params: `{conv name: {"w": [3, 3, C_in, C_out], "b": [C_out]}}` (see jstyle.nets.weights),
        best passed through `prepare` once.
      image: float32[H, W, 3], already in the weights' input convention (`preprocess`).
        No batch axis: use `jax.vmap` for batches.
      layers: names from `LAYERS`; the network stops at the deepest one.
      pooling: "max" (the trained network) or "avg" (Gatys et al. 2016's choice for synthesis).
      remat: rematerialise each block under `jax.checkpoint`: a gradient then keeps only the
        blocks' inputs and the requested activations, and recomputes the rest on the way back
        (about one more forward pass). Whether the peak falls depends on the backend's buffer
        assignment: on XLA:CPU it does not (README, "Memory at print sizes").
    Returns:
      `{name: float32[H_l, W_l, C_l]}` (bfloat16 with bfloat16 params, see `prepare`) for
      exactly the requested names, where H_l = H // 2**p
      and p is the number of pooling layers before the layer.
    """
    layers = check_layers(layers)
    deepest = max(_INDEX[name] for name in layers)
    return _run(params, image, LAYERS[: deepest + 1], set(layers), pooling, remat)


def forward(params: dict, x: jax.Array, start: str | None, end: str, pooling: str = "max",
            remat: bool = False) -> jax.Array:
    """Runs the network from the output of layer `start` to layer `end`.

    Args:
      params: as for `features`.
      x: float32[H_s, W_s, C_s], the activation of `start` (None: the preprocessed image).
      start, end: layer names, `end` deeper than `start`.
    Returns:
      float32[H_e, W_e, C_e], equal to `features(params, image, [end])[end]` when `x` is
      `features(params, image, [start])[start]`.
    """
    first = -1 if start is None else _INDEX[check_layers([start])[0]]
    last = _INDEX[check_layers([end])[0]]
    if last <= first:
        raise InputError(f"layer {end} is not deeper than {start}; give a later end layer")
    return _run(params, x, LAYERS[first + 1: last + 1], {end}, pooling, remat)[end]


def _run(params: dict, x: jax.Array, names: tuple[str, ...], wanted: set[str], pooling: str,
         remat: bool) -> dict[str, jax.Array]:
    """Applies the layers `names` in order to `x`, keeping the activations in `wanted`."""
    if pooling not in ("max", "avg"):
        raise InputError(f"unknown pooling {pooling!r}; use max or avg")
    out = {}
    for block in _blocks(names):
        def run_block(x, params, block=block):
            kept = {}
            for name in block:
                if name.startswith("conv"):
                    x = _conv_bias(x, params[name])
                elif name.startswith("relu"):
                    x = jax.nn.relu(x)
                else:
                    x = _pool(x, pooling)
                if name in wanted:
                    kept[name] = x
            return x, kept
        x, kept = (jax.checkpoint(run_block) if remat else run_block)(x, params)
        out.update(kept)
    return out


def _blocks(names: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Splits consecutive layer names into VGG blocks, each ending at its pooling layer."""
    blocks, current = [], []
    for name in names:
        current.append(name)
        if name.startswith("pool"):
            blocks.append(tuple(current))
            current = []
    return blocks + [tuple(current)] if current else blocks


# Real photographs shipped in scikit-image's wheel (public domain; skimage/data/README.txt).
REFERENCE_IMAGES = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg",
                    "motorcycle_left.png", "retina.jpg", "ihc.png", "hubble_deep_field.jpg")
REFERENCE_EDGE = 224  # ImageNet's training size


def reference_images() -> list[np.ndarray]:
    """The photos that define the filter means: float32[H, W, 3] in [0, 1], longer edge 224."""
    import skimage.data
    folder = pathlib.Path(skimage.data.__file__).parent
    return [image_lib.load(folder / name, REFERENCE_EDGE) for name in REFERENCE_IMAGES]


def filter_means(params: dict, convention) -> dict[str, np.ndarray]:
    """Each filter's mean ReLU activation over `reference_images()` and positions.

    Gatys et al. (2016) used VGG-19 "normalized by scaling the weights such that the mean
    activation of each convolutional filter over images and positions is equal to one". ReLU
    and pooling commute with positive per-channel scaling, so that network's activations are
    this network's divided by these means, channel by channel; jstyle divides the features it
    compares instead of rescaling the weights. A filter that never fires gets mean 1.

    Returns:
      `{conv name: float32[C_out]}`, strictly positive.
    """
    relus = tuple(n for n in LAYERS if n.startswith("relu"))
    extract = jax.jit(lambda p, x: image_features(p, x, relus, convention))
    sums = {n: 0.0 for n in relus}
    for img in reference_images():
        feats = extract(params, jnp.asarray(image_lib.to_levels(img)))
        for n in relus:
            sums[n] = sums[n] + np.asarray(feats[n].mean(axis=(0, 1)), np.float64)
    means = {}
    for n in relus:
        m = sums[n] / len(REFERENCE_IMAGES)
        means["conv" + n[4:]] = np.where(m > 1e-6, m, 1.0).astype(np.float32)
    return means


def layer_scale(means: dict[str, np.ndarray], layer: str) -> np.ndarray:
    """The divisor that normalises `layer`'s activations: float32[] (see filter_means).

    jstyle divides each layer by the mean of its filters' means, one scalar per layer, rather
    than each filter by its own mean as Gatys et al. did: a filter that rarely fires on the
    reference photos has a tiny mean, and dividing by it inflates that channel's Gram entries
    (which grow with the fourth power of the scale) until one layer drowns the others. With a
    scalar per layer, every layer's content and Gram losses are of order one.
    """
    check_layers([layer])
    if layer.startswith("pool"):  # the last conv of the block feeds it
        block = layer[4]
        conv = max(n for n in means if n.startswith(f"conv{block}_"))
    else:
        conv = "conv" + layer[4:]
    return np.float32(means[conv].mean())


def layer_scales(means: dict[str, np.ndarray], layers: Iterable[str]) -> dict[str, jax.Array]:
    """`{layer: float32[]}`, `layer_scale` of each of `layers` (repeats dropped)."""
    return {l: jnp.asarray(layer_scale(means, l)) for l in dict.fromkeys(layers)}
