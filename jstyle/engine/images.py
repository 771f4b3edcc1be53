"""The images a pixel-optimising run works on: colour control (Gatys et al. 2017) and the
first image (content, noise, style, a file or an array)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jstyle import image as image_lib
from jstyle.engine.options import IMAGENET_MEAN_RGB, RunOptions


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


def initial_image(key: jax.Array, init: str | np.ndarray, content: np.ndarray,
                  styles: list[np.ndarray], noise: float) -> np.ndarray:
    """The starting image, float32[H, W, 3] in 8-bit levels, the size of `content`.

    init: "content"; "noise" (the mean pixel plus `noise` x N(0, 1) per pixel); "style" (the
    first style image resized to the content's size); the path of an image file; or an image,
    float[h, w, 3] in [0, 1] (any size: resized to the content's).
    """
    h, w, _ = content.shape
    if isinstance(init, str) and init == "content":
        return content
    if isinstance(init, str) and init == "noise":
        normal = np.asarray(jax.random.normal(key, content.shape, jnp.float32))
        return np.asarray(IMAGENET_MEAN_RGB, np.float32) + noise * normal
    if not isinstance(init, str):
        source = np.clip(np.asarray(init, np.float32), 0.0, 1.0)
    elif init == "style":
        source = styles[0] / 255.0
    else:
        source = image_lib.load(init)
    return image_lib.to_levels(image_lib.resize(source, h, w))


def start_image(key: jax.Array, opts: RunOptions, content: np.ndarray,
                styles: list[np.ndarray], previous: np.ndarray | None) -> np.ndarray:
    """`initial_image` of `opts.init` at the first level; later levels (and a run given an
    image to start from) start from `previous` (float[h, w, 3], 8-bit levels), resized to the
    content's size."""
    if previous is None:
        return initial_image(key, opts.init, content, styles, opts.init_noise)
    return image_lib.to_levels(image_lib.resize(np.clip(previous / 255.0, 0.0, 1.0),
                                                *content.shape[:2]))

