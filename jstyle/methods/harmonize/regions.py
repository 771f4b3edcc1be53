"""Deep Painterly Harmonization's regions: the inputs at the working size, the masks, the crop
a pass computes, and the result put back over the composite."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image

from jstyle import image as image_lib
from jstyle.errors import InputError
from jstyle.nets import vgg
from jstyle.ops import masks

# ---------------------------------------------------------------------------------------------
# Working: sizes, masks, crops.

class Working(NamedTuple):
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
                   dilated: np.ndarray | None, size: int) -> Working:
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
    return Working(image_lib.to_levels(image_lib.resize(composite, h, w)),
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


def crop_of(x: np.ndarray, box: Box) -> np.ndarray:
    return x[box.top:box.bottom, box.left:box.right]


def nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """float32[height, width]: `mask` resized by nearest neighbour (the code's 'simple')."""
    return np.asarray(Image.fromarray(np.asarray(mask, np.float32), mode="F").resize(
        (width, height), Image.Resampling.NEAREST))




def _blend_tight(inputs: Working) -> np.ndarray:
    """The tight mask's soft edge for the result, float32[H, W, 1]: the code's 7 x 7 Torch
    image.gaussian(7, 3) (sigma 3 x 7 px: nearly a box) over the mask, zero-padded."""
    d = np.arange(7) - 3.0
    k = np.exp(-(d[:, None] ** 2 + d[None] ** 2) / (2 * 21.0 ** 2))
    return masks.smooth(inputs.tight, k / k.sum())[..., None]


def compose(inputs: Working, box: Box, crop: np.ndarray) -> np.ndarray:
    """A pass's image: the optimised crop (float[h, w, 3], 8-bit levels) inside the soft tight
    mask, the composite elsewhere; pixels outside the loose mask are the composite's exactly.
    Returns float32[H, W, 3] in 8-bit levels."""
    full = inputs.composite.copy()
    full[box.top:box.bottom, box.left:box.right] = np.clip(crop, 0.0, 255.0)
    soft = _blend_tight(inputs)
    out = soft * full + (1.0 - soft) * inputs.composite
    return np.where(inputs.loose[..., None], out, inputs.composite).astype(np.float32)


def postprocess(inputs: Working, levels: np.ndarray) -> np.ndarray:
    """filt_cnn_artifact.m's first part: the chroma guided-filtered by the composite, kept
    inside the tight mask grown by a 7 x 7 Gaussian (sigma 3, > 0.01) and blurred again.
    float[H, W, 3] in 8-bit levels -> the same."""
    k = masks.gaussian_kernel(7, 3.0)
    grown = masks.smooth(masks.smooth(inputs.tight, k) > 0.01, k)[..., None]
    filtered = image_lib.denoise_chroma(levels / 255.0, inputs.composite / 255.0) * 255.0
    out = grown * filtered + (1.0 - grown) * inputs.composite
    return np.where(inputs.loose[..., None], out, inputs.composite).astype(np.float32)


