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
from typing import NamedTuple

import jax
import numpy as np
from flax import nnx

from jstyle import image as image_lib
from jstyle import results
from jstyle.system import memory
from jstyle.engine import options
from jstyle.engine.kinds import Image, Model
from jstyle.engine.session import Result, Session, made
from jstyle.methods.fast import network as transform_net
from jstyle.errors import InputError
from jstyle.engine.options import RunOptions
from jstyle.methods.fast import train

PRESERVE_COLORS = ("none", "luminance", "original")
OPTIONS = ("size", "preserve_colors")  # the run options it reads
USES_VGG = False  # the model holds its style: no style image, no VGG weights


@dataclasses.dataclass(frozen=True)
class FastParams:
    """Nothing to set: the trained network (the `model` input) holds its style and training."""


Params = FastParams
PRESETS = {"model": (FastParams(), RunOptions(size=0))}  # the model holds everything else


class Inputs(NamedTuple):
    """The photo and the trained network."""
    content: Image  # float32[H, W, 3] in [0, 1]
    model: Model  # a Stylist (`load_model`)


def validate(hp: FastParams, opts: RunOptions, num_styles: int) -> None:
    """Raises InputError for option values that cannot work, naming the fix."""
    del hp, num_styles
    if opts.preserve_colors not in PRESERVE_COLORS:
        raise InputError(f"--preserve_colors={opts.preserve_colors} does not apply to "
                         f"--method=fast; use one of {', '.join(PRESERVE_COLORS)}")
    if opts.size < 0:
        raise InputError(f"--size={opts.size} must be >= 0; give the longer edge in pixels, or "
                         "0 for the photo's own size")
    options.check_size(opts)


def estimate_gib(height: int, width: int, multiplier: float) -> float:
    """Estimated peak memory (GiB) of stylising an H x W photo with a network of width
    `multiplier`: the network's forward pass and the images (photo, padded input, output), on
    memory.BASE_GIB (above the 0.52 GiB measured: the estimate errs on the safe side)."""
    return (memory.BASE_GIB + 3 * memory.image_gib(height, width)
            + transform_net.forward_gib(height, width, multiplier))


class Stylist:
    """A loaded model and its jitted forward pass (compiled once per image size)."""

    def __init__(self, model: str | pathlib.Path):
        net, self.record = train.load_model(model)
        self.path, self.digest = pathlib.Path(model), results.file_sha256(model)
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


def load_model(path: str | pathlib.Path) -> Stylist:
    """The model.msgpack that `jstyle train` wrote, loaded once per file and version.

    Raises:
      InputError: the file cannot be read, or is not a jstyle fast model (train.load_model).
    """
    path = pathlib.Path(path)
    try:
        stat = path.stat()
    except OSError as e:
        raise InputError(f"cannot read --model={path} ({e.strerror}); give the model.msgpack "
                         "that `jstyle train` wrote") from None
    return _stylist(str(path), (stat.st_mtime_ns, stat.st_size))


def run(key: jax.Array, inputs: Inputs, hp: FastParams, opts: RunOptions, weights,
        *, session: Session) -> Result:
    """Stylises `inputs.content` (float[H, W, 3] in [0, 1]) with the trained network
    `inputs.model`. The network is deterministic and holds its style: `key` and the VGG
    `weights` are not used."""
    del key, weights
    validate(hp, opts, 0)
    content, stylist = inputs.content, inputs.model
    h, w = image_lib.fit_edge(*content.shape[:2], opts.size) if opts.size else content.shape[:2]
    session.require(estimate_gib(h, w, stylist.record["hyperparameters"]["width"]),
                    "give a smaller --size")  # before the photo is resized
    session.begin(made("fast", hp, {n: getattr(opts, n) for n in OPTIONS}, None, [content],
                       model=str(stylist.path), model_sha256=stylist.digest,
                       training=stylist.record), total=0, resumable=False)
    photo = image_lib.resize_to_edge(content, opts.size) if opts.size else content
    out = stylist(photo, opts.preserve_colors)
    if not np.isfinite(out).all():  # finite weights can still overflow
        raise InputError(f"--model={stylist.path} makes NaN or infinite pixels (its weights "
                         "overflow); nothing was written; train the model again, with a lower "
                         "--learning_rate")
    return session.result({"output": out}, size=list(out.shape[:2]))
