"""Fast style transfer (Johnson, Alahi & Fei-Fei 2016): one forward pass of a trained network.

  jstyle train --style=S.jpg --data_dir=photos/ --workdir=W      (jstyle.train)
  jstyle --method=fast --model=W/model.msgpack --content=IMG_OR_DIR --output=OUT_OR_DIR

The network (jstyle.transform_net) takes any size: it is reflection-padded to its stride and
cropped back. With a folder as --content every image in it is stylised into the --output
folder. --preserve_colors=luminance or original keeps the photo's colours (the result's
luminance with the photo's chroma, as for the Gatys objective).
"""

from __future__ import annotations

import pathlib
import time

import jax
import numpy as np
from flax import nnx

from jstyle import image as image_lib
from jstyle import results
from jstyle.errors import InputError
from jstyle.train import IMAGE_SUFFIXES, load_model

PRESERVE_COLORS = ("none", "luminance", "original")


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


def inputs_and_outputs(content: pathlib.Path, output: pathlib.Path
                       ) -> list[tuple[pathlib.Path, pathlib.Path]]:
    """(photo, result) paths: one pair for a file, one per image for a folder (results as
    OUTPUT/<stem>.png).

    Raises:
      InputError: a missing input, an empty folder, or a folder in with a file out.
    """
    if content.is_dir():
        photos = sorted(p for p in content.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not photos:
            raise InputError(f"--content={content} holds no .jpg or .png files")
        if output.suffix:
            raise InputError(f"--content={content} is a folder, so --output must be a folder "
                             f"too (got {output})")
        output.mkdir(parents=True, exist_ok=True)
        return [(p, output / f"{p.stem}.png") for p in photos]
    if not content.exists():
        raise InputError(f"--content={content} does not exist; check the path")
    return [(content, output)]


def stylise_files(stylist: Stylist, pairs: list[tuple[pathlib.Path, pathlib.Path]],
                  size: int | None, preserve_colors: str) -> tuple[list[dict], list[str]]:
    """Stylises each photo (resized to `size` on the longer edge when given) into its result
    file, atomically. Returns one record per result (seconds exclude loading and saving) and,
    for a folder, the messages of the files that could not be read (skipped).

    Raises:
      InputError: a bad option, or the one photo given cannot be read.
    """
    if preserve_colors not in PRESERVE_COLORS:
        raise InputError(f"--preserve_colors={preserve_colors} does not apply to --method=fast;"
                         f" use one of {', '.join(PRESERVE_COLORS)}")
    records, skipped = [], []
    for photo_path, out_path in pairs:
        try:
            photo = image_lib.load(photo_path, size)
        except InputError as e:
            if len(pairs) == 1:
                raise
            skipped.append(str(e))
            continue
        started = time.perf_counter()
        out = stylist(photo, preserve_colors)
        seconds = time.perf_counter() - started
        image_lib.save(out_path, out)
        records.append({"content": str(photo_path), "output": str(out_path),
                        "size": list(out.shape[:2]), "seconds": seconds})
    return records, skipped
