"""Optical flow for video style transfer (Ruder, Dosovitskiy & Brox 2016): flow between two
frames, backward warping, the reliability of a flow, and the warping error that measures
flicker (Lai et al. 2018).

A flow is float32[H, W, 2], (dx, dy) for every pixel of the frame it starts from: pixel (x, y)
of that frame is seen at (x + dx, y + dy) in the other (Middlebury's convention and the order
of its .flo files). Frames are float[H, W, 3] in [0, 1].
"""

from __future__ import annotations

import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from jstyle.errors import InputError

FLO_TAG = 202021.25  # the first four bytes of a Middlebury .flo file, as a float32
DIS_PRESETS = ("ultrafast", "fast", "medium")


def read_flo(path: str | os.PathLike) -> np.ndarray:
    """A Middlebury .flo file: float32[H, W, 2].

    Raises:
      InputError: a file that is not a .flo flow (wrong tag, or truncated), or one holding
        NaN or infinite vectors (these would warp nothing, yet pass the consistency check).
    """
    raw = open(path, "rb").read()
    if len(raw) < 12 or np.frombuffer(raw[:4], "<f4")[0] != np.float32(FLO_TAG):
        raise InputError(f"{path} is not a Middlebury .flo file (its tag is missing); give "
                         "the flow files that DeepFlow or jstyle wrote")
    width, height = (int(v) for v in np.frombuffer(raw[4:12], "<i4"))
    if width < 1 or height < 1 or len(raw) != 12 + 8 * width * height:
        raise InputError(f"{path} is truncated or corrupt ({len(raw)} bytes for a {width} x "
                         f"{height} flow); compute the flow again")
    flow = np.frombuffer(raw[12:], "<f4").reshape(height, width, 2).copy()
    bad = int((~np.isfinite(flow)).any(-1).sum())
    if bad:
        raise InputError(f"{path} holds {bad} NaN or infinite flow vectors (of {width * height});"
                         " compute the flow again")
    return flow


def write_flo(path: str | os.PathLike, flow: np.ndarray) -> None:
    """Writes float[H, W, 2] as a Middlebury .flo file (whole or not at all, the path named
    on an error: `files.write_atomic`)."""
    from jstyle.system.files import write_atomic
    h, w, _ = flow.shape
    write_atomic(pathlib.Path(path), lambda f: f.write(
        np.float32(FLO_TAG).tobytes() + np.array([w, h], "<i4").tobytes()
        + np.asarray(flow, "<f4").tobytes()))


def dis_flow(first: np.ndarray, second: np.ndarray, preset: str = "medium") -> np.ndarray:
    """The flow from `first` to `second` by OpenCV's DIS optical flow (Kroeger et al. 2016) on
    the frames' grey levels: float32[H, W, 2].

    Args:
      first, second: float[H, W, 3] in [0, 1], the same size.
      preset: DIS's "ultrafast", "fast" or "medium" (OpenCV's presets).
    """
    import cv2
    if preset not in DIS_PRESETS:
        raise InputError(f"unknown flow preset {preset!r}; use one of {', '.join(DIS_PRESETS)}")
    grey = lambda f: cv2.cvtColor((np.clip(f, 0, 1) * 255 + 0.5).astype(np.uint8),
                                  cv2.COLOR_RGB2GRAY)
    dis = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{preset.upper()}"))
    return dis.calc(grey(first), grey(second), None).astype(np.float32)


def warp(image: jax.Array, flow: jax.Array, fill: jax.Array | float = 0.0
         ) -> tuple[jax.Array, jax.Array]:
    """Backward warping: out(x) = image(x + flow(x)), bilinear (Torch's image.warp, as the
    authors' warpImage calls it).

    Args:
      image: float[H, W, C], the frame the flow points into.
      flow: float[H, W, 2], from the frame being built to `image`.
      fill: the value where x + flow(x) leaves the image (the authors fill the mean pixel).
    Returns:
      (float[H, W, C], the warped image; bool[H, W], where the point lay inside the image).
    """
    image, flow = jnp.asarray(image), jnp.asarray(flow)
    h, w = image.shape[:2]
    ys, xs = jnp.meshgrid(jnp.arange(h, dtype=flow.dtype), jnp.arange(w, dtype=flow.dtype),
                          indexing="ij")
    px, py = xs + flow[..., 0], ys + flow[..., 1]
    inside = (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)
    x0 = jnp.clip(jnp.floor(px), 0, w - 1).astype(jnp.int32)
    y0 = jnp.clip(jnp.floor(py), 0, h - 1).astype(jnp.int32)
    x1, y1 = jnp.minimum(x0 + 1, w - 1), jnp.minimum(y0 + 1, h - 1)
    ax, ay = (px - x0)[..., None], (py - y0)[..., None]
    top = image[y0, x0] * (1 - ax) + image[y0, x1] * ax
    bottom = image[y1, x0] * (1 - ax) + image[y1, x1] * ax
    out = top * (1 - ay) + bottom * ay
    return jnp.where(inside[..., None], out, fill), inside


def _correlate(x: jax.Array, taps: jax.Array, axis: int) -> jax.Array:
    """x correlated with the odd-length `taps` along `axis`, the border mirrored (d c b a | a b
    c d, as the authors' NFilter and scipy.ndimage's "reflect")."""
    r = taps.shape[0] // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    padded = jnp.pad(x, pad, mode="symmetric")
    n = x.shape[axis]
    return sum(t * jax.lax.slice_in_dim(padded, k, k + n, axis=axis) for k, t in enumerate(taps))


@jax.jit
def reliability(flow: jax.Array, reverse: jax.Array) -> jax.Array:
    """Where `flow` (frame a -> frame b) can be trusted, in [0, 1], checked against `reverse`
    (b -> a): the authors' consistencyChecker.cpp (its masks are these values times 255; the
    authors check the backward flow i -> i-1 against the forward one). Pure and jitted.

    A pixel x of frame a is unreliable (0) where the round trip through `flow` w and then
    `reverse` w^ (bilinear at x + w(x)) misses, |w + w^|^2 >= 0.01 (|w|^2 + |w^|^2)
    + 0.5 (disocclusion), where x + w(x) leaves the frame, or at a motion boundary, |grad
    w|^2 > 0.01 |w|^2 + 0.002 (central differences, the border mirrored). The map (255
    reliable, 0 at boundaries, -255 at failed round trips so that smoothing pushes outwards) is
    smoothed by a 5-tap Gaussian of sigma 0.8 per axis, mirrored at the borders, and clipped.

    Args:
      flow, reverse: float[H, W, 2].
    Returns:
      float32[H, W] in [0, 1].
    """
    forward = jnp.asarray(flow, jnp.float32)
    backward = jnp.asarray(reverse, jnp.float32)
    h, w, _ = forward.shape
    central = jnp.array([-0.5, 0.0, 0.5], jnp.float32)
    edge = sum(jnp.square(_correlate(forward, central, axis)).sum(-1) for axis in (0, 1))
    ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                          indexing="ij")
    bx, by = xs + forward[..., 0], ys + forward[..., 1]
    x1, y1 = jnp.floor(bx).astype(jnp.int32), jnp.floor(by).astype(jnp.int32)
    outside = (x1 < 0) | (x1 + 1 >= w) | (y1 < 0) | (y1 + 1 >= h)
    x1, y1 = jnp.clip(x1, 0, w - 2), jnp.clip(y1, 0, h - 2)
    ax, ay = (bx - x1)[..., None], (by - y1)[..., None]
    back = ((1 - ay) * ((1 - ax) * backward[y1, x1] + ax * backward[y1, x1 + 1])
            + ay * ((1 - ax) * backward[y1 + 1, x1] + ax * backward[y1 + 1, x1 + 1]))
    miss = jnp.square(forward + back).sum(-1)
    length = jnp.square(forward).sum(-1) + jnp.square(back).sum(-1)
    failed = miss >= 0.01 * length + 0.5
    boundary = edge > 0.01 * jnp.square(forward).sum(-1) + 0.002
    value = jnp.where(failed, -255.0, jnp.where(boundary, 0.0, 255.0))
    value = jnp.where(outside, 0.0, value)
    d = jnp.arange(-2, 3, dtype=jnp.float32)
    kernel = jnp.exp(-d ** 2 / (2 * 0.8 ** 2))
    kernel = kernel / kernel.sum()
    for axis in (0, 1):
        value = _correlate(value, kernel, axis)
    return jnp.clip(value, 0.0, 255.0) / 255.0


def warping_error(frames: list[np.ndarray], stylised: list[np.ndarray],
                  flow_fn=dis_flow) -> float:
    """Lai et al. 2018's flicker measure E_warp, with every choice fixed so that anyone can
    rerun it: for each consecutive pair (t-1, t), the flow F from ORIGINAL frame t-1 to frame
    t (`flow_fn`, DIS medium by default) and its reverse; the reliable pixels are those where
    `reliability(F, reverse) >= 0.5` and x + F(x) lies in the frame; the pair's error is the
    sum over reliable pixels and channels of (warp(O_t, F) - O_{t-1})^2 divided by their
    number (pixels x 3); E_warp is the mean over pairs. Frames and outputs in [0, 1].

    Args:
      frames: the clip, float[H, W, 3] each; stylised: its stylised frames, the same size.
    Returns:
      E_warp (0 for a clip of one frame).
    """
    errors = []
    for t in range(1, len(frames)):
        forward = flow_fn(frames[t - 1], frames[t])
        reverse = flow_fn(frames[t], frames[t - 1])
        warped, inside = warp(stylised[t], forward)
        mask = np.asarray(reliability(forward, reverse) >= 0.5) & np.asarray(inside)
        diff = np.square(np.asarray(warped) - np.asarray(stylised[t - 1], np.float32))
        errors.append(float(diff[mask].sum() / max(mask.sum() * diff.shape[-1], 1)))
    return float(np.mean(errors)) if errors else 0.0


def closest_first(weights: list[np.ndarray]) -> list[np.ndarray]:
    """Long-term temporal weights combined as the authors' `closestFirst`
    (artistic_video.lua, processFlowWeights): the weights of the frames 1, 2, 4... back, in
    that order, each reduced by the (already reduced) weights of every closer frame and
    clipped at 0, so that each pixel is tied to the closest previous frame where that frame's
    flow is reliable.

    Args:
      weights: float[H, W] in [0, 1] per previous frame, closest first.
    Returns:
      the combined weights, the same shapes.
    """
    out = [np.asarray(w, np.float32).copy() for w in weights]
    for j in range(1, len(out)):
        for k in range(1, j + 1):
            out[j] -= out[j - k]
        out[j] = np.maximum(out[j], 0.0)
    return out
