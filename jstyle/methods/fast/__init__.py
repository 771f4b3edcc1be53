"""Fast style transfer (Johnson, Alahi & Fei-Fei 2016): one forward pass of a trained network.

  jstyle train --style=S.jpg --data_dir=photos/ --workdir=W      (jstyle.methods.fast.train)
  jstyle --method=fast --model=W/model.msgpack --content=IMG_OR_DIR --output=OUT_OR_DIR

The network (jstyle.methods.fast.network) takes any size: it is reflection-padded to its stride and
cropped back. --size resizes the photo first (0: its own size). --preserve_colors=luminance or
original keeps the photo's colours (the result's luminance with the photo's chroma, as for the
Gatys objective). The model holds its style and training, so the method takes no style image
and no VGG weights.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import time

import jax
import numpy as np
from flax import nnx

from jstyle import image as image_lib
from jstyle import results
from jstyle.system import memory
from jstyle.engine import runs
from jstyle.methods.fast import network as transform_net
from jstyle.errors import InputError
from jstyle.params import field
from jstyle.engine.runs import Result, RunOptions
from jstyle.methods.fast.train import load_model

PRESERVE_COLORS = ("none", "luminance", "original")
OPTIONS = ("size", "preserve_colors")  # the run options it reads
INPUTS = ("content",)  # no style image, labels or VGG weights: the model holds its style


@dataclasses.dataclass(frozen=True)
class FastParams:
    """Which trained network to run."""
    model: str | None = field(None, "The model.msgpack that `jstyle train` wrote.",
                              kind="string")


Params = FastParams
PRESETS = {"model": (FastParams(), RunOptions(size=0))}  # the model holds everything else


def validate(hp: FastParams, opts: RunOptions, num_styles: int) -> None:
    """Raises InputError for option values that cannot work, naming the fix."""
    del num_styles
    if not hp.model:
        raise InputError("--method=fast needs --model (the model.msgpack from jstyle train)")
    if opts.preserve_colors not in PRESERVE_COLORS:
        raise InputError(f"--preserve_colors={opts.preserve_colors} does not apply to "
                         f"--method=fast; use one of {', '.join(PRESERVE_COLORS)}")
    if opts.size < 0:
        raise InputError(f"--size={opts.size} must be >= 0 (0: the photo's own size)")
    runs.check_size(opts)


def estimate_gib(height: int, width: int, multiplier: float) -> float:
    """Estimated peak memory (GiB) of stylising an H x W photo with a network of width
    `multiplier`: the network's forward pass and the images (photo, padded input, output), on
    memory.BASE_GIB (above the 0.52 GiB measured: the estimate errs on the safe side)."""
    return (memory.BASE_GIB + 3 * memory.image_gib(height, width)
            + transform_net.forward_gib(height, width, multiplier))


class Stylist:
    """A loaded model and its jitted forward pass (compiled once per image size)."""

    def __init__(self, model: str | pathlib.Path):
        net, self.record = load_model(model)
        self.digest = results.file_sha256(model)
        graphdef, params = nnx.split(net)
        self.params = params
        self.forward = jax.jit(lambda params, x: nnx.merge(graphdef, params)(x))

    def __call__(self, photo: np.ndarray, preserve_colors: str = "none") -> np.ndarray:
        """photo float[H, W, 3] in [0, 1] -> the stylised float32[H, W, 3] in [0, 1]."""
        out = np.asarray(self.forward(self.params, photo[None].astype(np.float32))[0])
        if preserve_colors in ("luminance", "original"):
            out = image_lib.keep_colors(out, photo)
        return out


@functools.lru_cache(maxsize=4)
def _stylist(path: str, stamp: tuple[int, int]) -> Stylist:
    """One Stylist per model file (and version of it), so a folder of photos loads it once."""
    del stamp
    return Stylist(path)


def run(content: np.ndarray, styles: list[np.ndarray], hp: FastParams, opts: RunOptions,
        weights=None, key: jax.Array | None = None, **unused) -> Result:
    """Stylises `content` (float[H, W, 3] in [0, 1]) with the model `hp.model`.

    `styles`, `weights`, `key` and the keywords of pixel methods (labels, snapshot, ...) are
    not used: the network is deterministic and holds its style.
    """
    del styles, weights, key, unused
    validate(hp, opts, 0)
    path = pathlib.Path(hp.model)
    try:
        stat = path.stat()
    except OSError as e:
        raise InputError(f"cannot read --model={path} ({e.strerror}); give the model.msgpack "
                         "that `jstyle train` wrote") from None
    stylist = _stylist(str(path), (stat.st_mtime_ns, stat.st_size))
    h, w = image_lib.fit_edge(*content.shape[:2], opts.size) if opts.size else content.shape[:2]
    entry = memory.require(estimate_gib(h, w, stylist.record["hyperparameters"]["width"]),
                           "give a smaller --size")  # before the photo is resized
    photo = image_lib.resize_to_edge(content, opts.size) if opts.size else content
    started = time.perf_counter()
    out = stylist(photo, opts.preserve_colors)
    if not np.isfinite(out).all():  # finite weights can still overflow
        raise InputError(f"--model={path} makes NaN or infinite pixels (its weights overflow); "
                         "nothing was written; train the model again, with a lower "
                         "--learning_rate")
    record = {"method": "fast", "model": str(path), "model_sha256": stylist.digest,
              "training": stylist.record, "options": {n: getattr(opts, n) for n in OPTIONS},
              "size": list(out.shape[:2]), "seconds": time.perf_counter() - started,
              "memory": memory.measured(entry)}
    return Result(images={"output": out}, record=record, history=[])
