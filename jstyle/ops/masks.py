"""Semantic label maps -> per-region masks at every VGG layer (Chen & Hsu 2016; Champandard's
neural doodle; Gatys et al. 2017, spatial control).

A label map is an image painted with one flat colour per region (sky, trees, face...). Content
and style maps share colours: a region of the content takes its style only from the style
region of the same colour. Anti-aliased edges and JPEG noise are snapped to the map's dominant
colours first. Masks reach each layer through the same 2x2 floor pooling the network uses
(averaged), so they line up with the features exactly.

A binary object mask (painterly harmonisation) is thresholded from any image, dilated into a
loose mask and carried through the network as the authors of Deep Painterly Harmonization
carry it (`object_mask`, `dilate`, `through_network`).
"""

from __future__ import annotations

import pathlib
from typing import NamedTuple

import numpy as np
from PIL import Image
from scipy import ndimage

from jstyle.nets import vgg
from jstyle.errors import InputError

MIN_FRACTION = 0.005  # a colour is a region if at least this share of the map has it ...
MIXTURE_FRACTION = 0.05  # ... or this share, if it is a blend of two larger regions' colours
COLOR_TOLERANCE = 48.0  # 8-bit RGB distance within which two maps' colours are one label
UNMATCHED = ("error", "global")


def sem_path(image_path: str | pathlib.Path) -> pathlib.Path:
    """neural doodle's convention: the label map of `photo.jpg` is `photo_sem.png` beside it."""
    path = pathlib.Path(image_path)
    return path.with_name(f"{path.stem}_sem.png")


def dominant_colors(label_map: np.ndarray, min_fraction: float = MIN_FRACTION) -> np.ndarray:
    """The flat colours a label map is painted with.

    Colours are binned at 5 bits per channel; bins are taken most frequent first, and a bin
    within COLOR_TOLERANCE / 2 of a colour already taken joins it (JPEG noise spreads one flat
    colour over neighbouring bins). Every colour holding at least `min_fraction` of the pixels
    is a region, represented by the mean of the pixels near it; a colour that is a blend of
    two larger regions' colours (an anti-aliased edge between them) needs MIXTURE_FRACTION.
    `snap` gives the pixels of colours that are not regions to the nearest region.

    Args:
      label_map: float[H, W, 3] RGB in [0, 1].
    Returns:
      float32[R, 3] in 8-bit levels, R >= 1, most frequent first.
    """
    levels = np.round(np.asarray(label_map, np.float64).reshape(-1, 3) * 255.0)
    bins = (levels.astype(np.int64) >> 3) @ np.array([1024, 32, 1])
    counts = np.bincount(bins, minlength=32768)
    centres: list[np.ndarray] = []
    for b in np.argsort(-counts, kind="stable")[: np.count_nonzero(counts)]:
        colour = levels[bins == b].mean(axis=0)
        if all(np.linalg.norm(colour - c) > COLOR_TOLERANCE / 2 for c in centres):
            centres.append(colour)
    centres = np.array(centres)
    nearest = np.argmin(np.linalg.norm(levels[:, None] - centres[None], axis=-1), axis=1)
    share = np.bincount(nearest, minlength=len(centres)) / len(levels)
    kept = []
    for r in np.argsort(-share, kind="stable"):
        blend = any(_distance_to_segment(centres[r], centres[a], centres[b]) <= COLOR_TOLERANCE / 2
                    for i, a in enumerate(kept) for b in kept[i + 1:])
        if share[r] >= (MIXTURE_FRACTION if blend else min_fraction):
            kept.append(r)
    close = lambda r: np.linalg.norm(levels - centres[r], axis=1) <= COLOR_TOLERANCE / 2
    return np.array([levels[(nearest == r) & close(r)].mean(axis=0) for r in kept], np.float32)


def _distance_to_segment(point: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Distance from `point` to the colours t a + (1 - t) b, t in [0, 1] (an edge's blends)."""
    t = np.clip(np.dot(point - b, a - b) / max(np.dot(a - b, a - b), 1e-9), 0.0, 1.0)
    return float(np.linalg.norm(point - (t * a + (1 - t) * b)))


def snap(label_map: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """Index of the nearest of `colors` (float[R, 3], 8-bit levels) for every pixel of
    `label_map` (float[H, W, 3] in [0, 1]): int32[H, W] in [0, R)."""
    levels = np.asarray(label_map, np.float32) * 255.0
    distance = np.sum(np.square(levels[:, :, None, :] - colors[None, None]), axis=-1)
    return np.argmin(distance, axis=-1).astype(np.int32)


def one_hot(labels: np.ndarray, count: int, height: int, width: int) -> np.ndarray:
    """int[H0, W0] label indices -> float32[count, height, width] binary masks, resized with
    nearest-neighbour sampling (labels are never blended)."""
    resized = np.asarray(Image.fromarray(labels.astype(np.int32), mode="I")
                         .resize((width, height), Image.Resampling.NEAREST))
    return (resized[None] == np.arange(count)[:, None, None]).astype(np.float32)


def at_layer(masks: np.ndarray, pools: int) -> np.ndarray:
    """float[R, H, W] masks after `pools` 2x2 floor poolings (averaged): float32[R, H_l, W_l]
    with H_l = H // 2**pools, as VGG's features at a layer after that many poolings."""
    m = np.asarray(masks, np.float32)
    for _ in range(pools):
        r, h, w = m.shape
        m = m[:, : h // 2 * 2, : w // 2 * 2].reshape(r, h // 2, 2, w // 2, 2).mean(axis=(2, 4))
    return m


class Labels(NamedTuple):
    """Label maps made consistent: the content's regions, and where each style has them."""
    colors: np.ndarray  # float32[R, 3], the content map's region colours, 8-bit levels
    content: np.ndarray  # int32[H_c, W_c], region index per pixel of the content map
    styles: list[np.ndarray]  # per style map, int32[H_i, W_i], region index or -1 (no region)
    present: np.ndarray  # bool[S, R]: style i has region r


def match(content_map: np.ndarray, style_maps: list[np.ndarray], unmatched: str = "error"
          ) -> Labels:
    """Snaps the maps to their dominant colours and pairs the style regions with the content's.

    Args:
      content_map: float[H, W, 3] in [0, 1]; style_maps: one float[H_i, W_i, 3] per style image.
      unmatched: what a content region that no style map has does: "error" (raise) or "global"
        (take its style from the whole of every style image; see gatys).
    Raises:
      InputError: a content region's colour is in no style map, and unmatched is "error".
    """
    if unmatched not in UNMATCHED:
        raise InputError(f"unknown --unmatched={unmatched}; use error or global")
    colors = dominant_colors(content_map)
    content = snap(content_map, colors)
    styles, present = [], []
    for style_map in style_maps:
        own = dominant_colors(style_map)
        distance = np.linalg.norm(own[:, None] - colors[None], axis=-1)  # [R_i, R]
        label = np.where(distance.min(axis=1) <= COLOR_TOLERANCE, distance.argmin(axis=1), -1)
        styles.append(label[snap(style_map, own)].astype(np.int32))
        present.append(np.isin(np.arange(len(colors)), label))
    present = np.array(present, bool).reshape(len(style_maps), len(colors))
    missing = [r for r in range(len(colors)) if not present[:, r].any()]
    if missing and unmatched == "error":
        rgb = ", ".join("#%02x%02x%02x" % tuple(int(round(v)) for v in colors[r])
                        for r in missing)
        raise InputError(
            f"region colour(s) {rgb} of the content mask appear in no style mask; paint them into "
            f"a style mask or pass --unmatched=global to style them from the whole style image")
    return Labels(colors=colors, content=content, styles=styles, present=present)


def object_mask(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """A mask image (white = object; any colours, JPEG noise tolerated) as bool[height, width]:
    its mean channel resized (bilinear) and thresholded at one half."""
    grey = np.asarray(image, np.float32).mean(axis=-1)
    resized = np.asarray(Image.fromarray(grey, mode="F").resize(
        (width, height), Image.Resampling.BILINEAR))
    return resized > 0.5


def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    """float64[size, size], exp(-d^2 / (2 sigma^2)) about the centre, summing to 1 (Matlab's
    fspecial('gaussian'))."""
    d = np.arange(size) - (size - 1) / 2
    k = np.exp(-(d[:, None] ** 2 + d[None] ** 2) / (2 * sigma ** 2))
    return k / k.sum()


def smooth(mask: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """float32[H, W]: `mask` filtered by `kernel`, zero outside the map (imfilter 'same')."""
    return ndimage.correlate(np.asarray(mask, np.float64), kernel, mode="constant").astype(
        np.float32)


def dilate(mask: np.ndarray) -> np.ndarray:
    """The loose mask of a tight one, bool[H, W], as Deep Painterly Harmonization's
    dilate_mask.m makes it: a 35 x 35 Gaussian (sigma 35 / 3) blur, thresholded at 0.1 (about
    16 px of growth around a large object)."""
    return smooth(mask, gaussian_kernel(35, 35 / 3)) > 0.1


def through_network(mask: np.ndarray, layers) -> dict[str, np.ndarray]:
    """A mask float[H, W] at each of `layers`, carried as the authors' neural_gram.lua and
    neural_paint.lua carry theirs: every 3 x 3 convolution averages it over 3 x 3 (zeros
    outside, so it spreads by one position and fades at the edges as the receptive field
    grows), every pooling halves it (bilinear, to the features' floor size).

    Returns:
      {layer: float32[H_l, W_l]} in [0, 1].
    """
    wanted = vgg.check_layers(layers)
    deepest = max(vgg.LAYERS.index(l) for l in wanted)
    m, out = np.asarray(mask, np.float32), {}
    for name in vgg.LAYERS[: deepest + 1]:
        if name.startswith("conv"):
            m = ndimage.uniform_filter(m, 3, mode="constant")
        elif name.startswith("pool"):
            m = np.asarray(Image.fromarray(m, mode="F").resize(
                (m.shape[1] // 2, m.shape[0] // 2), Image.Resampling.BILINEAR))
        if name in wanted:
            out[name] = np.clip(m, 0.0, 1.0).astype(np.float32)
    return out
