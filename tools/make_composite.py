"""A composite for painterly harmonisation: an object cut out of a photo by a hand-drawn
polygon and pasted into a painting, with its mask.

  python tools/make_composite.py --out=DIR [--photo=P --painting=Q --polygon=... --offset=...]

The painting is resized to --size on its longer edge and the photo by --photo_scale; the
polygon's (x, y) points (photo pixels) are scaled with it and shifted by --offset
(--photo_scale and --offset are for a 700 px painting and scale with --size). Writes
DIR/composite.png (the painting with the object in), DIR/painting.png and DIR/mask.png (white
on the object), the inputs of `jstyle --method=harmonize`. The default is the README's
example: Stanford's Hoover Tower at night pasted into The Starry Night's village, covering
about 10% of the painting.
"""

from __future__ import annotations

import pathlib

import numpy as np
from absl import app, flags
from PIL import Image, ImageDraw

SHARED = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "images"

flags.DEFINE_string("photo", str(SHARED / "content" / "hoovertowernight.jpg"), "Photo to cut "
                    "the object from.")
flags.DEFINE_string("painting", str(SHARED / "style" / "starry_night.jpg"), "Painting.")
flags.DEFINE_list("polygon", [
    "583:6", "590:22", "598:42", "612:55", "617:75", "628:85", "632:140", "636:258",
    "535:258", "537:135", "540:82", "551:72", "556:55", "570:42", "577:22"],
    "The object's outline, x:y photo pixels, drawn by hand.")
flags.DEFINE_float("photo_scale", 1.2, "Scale of the photo in the painting.")
flags.DEFINE_string("offset", "-172:121", "dx:dy from scaled photo to painting pixels.")
flags.DEFINE_integer("size", 700, "The painting's longer edge, pixels.")
flags.DEFINE_string("out", None, "Folder for composite.png, painting.png and mask.png.")
flags.mark_flag_as_required("out")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    painting = Image.open(FLAGS.painting).convert("RGB")
    scale = FLAGS.size / max(painting.size)
    painting = painting.resize((round(painting.width * scale), round(painting.height * scale)),
                               Image.Resampling.LANCZOS)
    photo = Image.open(FLAGS.photo).convert("RGB")
    k = FLAGS.photo_scale * FLAGS.size / 700
    photo = photo.resize((round(photo.width * k), round(photo.height * k)),
                         Image.Resampling.LANCZOS)
    dx, dy = (round(int(v) * FLAGS.size / 700) for v in FLAGS.offset.split(":"))
    points = [tuple(round(k * int(v)) for v in p.split(":")) for p in FLAGS.polygon]
    cut = Image.new("L", photo.size, 0)
    ImageDraw.Draw(cut).polygon(points, fill=255)
    mask = Image.new("L", painting.size, 0)
    mask.paste(cut, (dx, dy))
    composite = painting.copy()
    composite.paste(photo, (dx, dy), cut)
    out = pathlib.Path(FLAGS.out)
    out.mkdir(parents=True, exist_ok=True)
    composite.save(out / "composite.png")
    painting.save(out / "painting.png")
    mask.save(out / "mask.png")
    share = np.asarray(mask).astype(bool).mean()
    print(f"wrote {out}/composite.png, painting.png, mask.png ({painting.width}x"
          f"{painting.height}, the object covers {100 * share:.1f}%)")


if __name__ == "__main__":
    app.run(main)
