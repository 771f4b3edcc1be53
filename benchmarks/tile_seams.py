"""Looks for seams where a tiled run's tiles meet: the step between neighbouring pixels on the
tile borders against everywhere else, and a crop across a tile corner.

  python benchmarks/tile_seams.py --output=OUT.png [--content=PHOTO] [--crop=crop.jpg]

Reads OUT.png and its JSON record (OUT.json: the size, the tiles of the last level and the
layers), rebuilds the tiles (jstyle.ops.tiles.plan) and reports, for rows and columns apart, the
mean absolute difference between neighbouring pixels across the tile borders and across every
other boundary of the pooling grid the borders lie on. A seam is a step at the borders that
the scene does not have: with --content the same ratio is measured on the content image, and
a seamless output's ratios follow the content's. Prints one JSON line.
"""

from __future__ import annotations

import json
import pathlib

from absl import app, flags

import numpy as np

from jstyle import image, objective
from jstyle.ops import tiles
from jstyle.nets import vgg
from jstyle.methods import gatys

flags.DEFINE_string("output", None, "A tiled run's output image (its .json beside it).")
flags.DEFINE_string("content", None, "The run's content image: the same measure on it (resized "
                    "to the output's size) tells a seam from an edge of the scene.")
flags.DEFINE_string("crop", None, "Also write a crop centred on a tile corner here.")
flags.DEFINE_integer("crop_size", 512, "The crop's edge, pixels.")
flags.DEFINE_list("corner", ["0", "0"], "Which tile corner the crop is centred on: the index of "
                  "its border row and of its border column.")
FLAGS = flags.FLAGS


def border_steps(picture: np.ndarray, borders: list[int], axis: int, align: int
                 ) -> tuple[float, float]:
    """Mean |p[i] - p[i-1]| along `axis` across the borders, and across every other boundary
    of the same phase on the `align`-pixel grid the borders lie on (an upsampled or JPEG
    image steps differently at odd and even rows, so only the same phase compares)."""
    steps = np.abs(np.diff(picture, axis=axis)).mean(axis=tuple(a for a in range(3) if a != axis))
    index = np.arange(1, len(steps) + 1)  # steps[i - 1] is the step from i - 1 to i
    on = np.isin(index, borders)
    same_phase = (index % align == 0) & ~on
    return float(steps[on].mean()), float(steps[same_phase].mean())


def main(argv):
    del argv
    path = pathlib.Path(FLAGS.output)
    record = json.loads(path.with_suffix(".json").read_text())
    picture = image.load(path) * 255.0
    h, w = picture.shape[:2]
    grid = record["tiles"][-1]
    hp = gatys.GatysParams(**{k: tuple(v) if isinstance(v, list) else v
                              for k, v in record["hyperparameters"].items()})
    cut = tiles.plan(h, w, tuple(grid), objective.deepest_layer(hp))
    rows = sorted({int(r) for r in cut.cores[:, 0]} - {0})
    cols = sorted({int(c) for c in cut.cores[:, 2]} - {0})
    align = 2 ** vgg.pools(objective.deepest_layer(hp))
    row_on, row_off = border_steps(picture, rows, 0, align)
    col_on, col_off = border_steps(picture, cols, 1, align)
    result = {"output": str(path), "shape": [h, w], "tiles": grid, "window": list(cut.window),
              "border_rows": rows, "border_columns": cols,
              "row_step_on_borders": row_on, "row_step_elsewhere": row_off,
              "column_step_on_borders": col_on, "column_step_elsewhere": col_off,
              "ratio_rows": row_on / row_off, "ratio_columns": col_on / col_off}
    if FLAGS.content:
        content = image.resize(image.load(FLAGS.content), h, w) * 255.0
        (c_row_on, c_row_off), (c_col_on, c_col_off) = (
            border_steps(content, rows, 0, align), border_steps(content, cols, 1, align))
        result.update({"content_ratio_rows": c_row_on / c_row_off,
                       "content_ratio_columns": c_col_on / c_col_off})
    if FLAGS.crop and rows and cols:
        half = FLAGS.crop_size // 2
        row, col = rows[int(FLAGS.corner[0])], cols[int(FLAGS.corner[1])]
        r0 = min(max(0, row - half), h - FLAGS.crop_size)
        c0 = min(max(0, col - half), w - FLAGS.crop_size)
        crop = picture[r0: r0 + FLAGS.crop_size, c0: c0 + FLAGS.crop_size] / 255.0
        image.save(FLAGS.crop, crop, "JPEG" if FLAGS.crop.lower().endswith((".jpg", ".jpeg"))
                   else "PNG")
        result["crop"] = {"path": FLAGS.crop, "top": r0, "left": c0, "size": FLAGS.crop_size,
                          "corner_in_crop": [row - r0, col - c0]}
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
