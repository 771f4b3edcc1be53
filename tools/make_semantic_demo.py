"""Draws the two-region label maps of the README's semantic-mask example.

  python tools/make_semantic_demo.py --out=DIR \
      [--content=tubingen.jpg] [--style=starry_night.jpg]

Writes DIR/tubingen_sem.png (sky / town, from the photo's flat blue sky: the blue pixels
connected to the top edge) and DIR/starry_night_sem.png (sky / cypress, hills and village,
hand-drawn polygons in fractions of the painting's size), both the size of their image, sky
painted blue (40, 110, 255) and the rest green (40, 170, 60). Also writes DIR/overlay.png,
each map blended over its image, to check the drawing.
"""

from __future__ import annotations

import pathlib

import numpy as np
from absl import app, flags
from PIL import Image, ImageDraw
from scipy import ndimage

from jstyle import image, results

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Folder for the label maps (created).", required=True)
flags.DEFINE_string("content", "../shared/images/content/tubingen.jpg", "The photo.")
flags.DEFINE_string("style", "../shared/images/style/starry_night.jpg", "The painting.")

SKY, GROUND = (40, 110, 255), (40, 170, 60)

# The painting's non-sky parts, as (x, y) fractions of its width and height.
CYPRESS = [(0.137, 1.0), (0.146, 0.62), (0.137, 0.31), (0.176, 0.0), (0.195, 0.0),
           (0.215, 0.31), (0.245, 0.56), (0.30, 0.72), (0.36, 0.82), (0.41, 1.0)]
HILLS_AND_VILLAGE = [(0.0, 0.81), (0.39, 0.82), (0.586, 0.766), (0.742, 0.703),
                     (0.879, 0.625), (1.0, 0.53), (1.0, 1.0), (0.0, 1.0)]


def sky_of_photo(photo: np.ndarray) -> np.ndarray:
    """bool[H, W]: blue, bright pixels connected to the top edge, holes filled, edges smoothed.
    photo: float[H, W, 3] in [0, 1]."""
    r, g, b = (photo[..., i] for i in range(3))
    blue = (b > 0.55) & (b > r + 0.15) & (b > g + 0.05)
    regions, _ = ndimage.label(blue)
    touching = np.setdiff1d(np.unique(regions[0]), [0])
    sky = np.isin(regions, touching)
    sky = ndimage.binary_closing(sky, iterations=3, border_value=1)  # keep the top edge
    return ndimage.binary_fill_holes(sky)


def painted(height: int, width: int, polygons) -> np.ndarray:
    """bool[H, W]: inside any of `polygons` (lists of (x, y) fractions)."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in polygons:
        draw.polygon([(x * width, y * height) for x, y in polygon], fill=255)
    return np.asarray(canvas) > 0


def label_map(sky: np.ndarray) -> np.ndarray:
    """bool[H, W] sky -> float32[H, W, 3] in [0, 1], painted SKY and GROUND."""
    return np.where(sky[..., None], np.array(SKY), np.array(GROUND)).astype(np.float32) / 255.0


def main(argv):
    del argv
    out = pathlib.Path(FLAGS.out)
    out.mkdir(parents=True, exist_ok=True)
    photo, painting = image.load(FLAGS.content), image.load(FLAGS.style)
    photo_map = label_map(sky_of_photo(photo))
    painting_map = label_map(~painted(*painting.shape[:2], [CYPRESS, HILLS_AND_VILLAGE]))
    image.save(out / f"{pathlib.Path(FLAGS.content).stem}_sem.png", photo_map)
    image.save(out / f"{pathlib.Path(FLAGS.style).stem}_sem.png", painting_map)
    image.save(out / "overlay.png", results.contact_sheet(
        [[(0.5 * photo + 0.5 * photo_map, "content map"),
          (0.5 * painting + 0.5 * painting_map, "style map")]], tile=512))


if __name__ == "__main__":
    app.run(main)
