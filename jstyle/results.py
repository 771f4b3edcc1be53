"""What experiments write: JSON records and labelled contact sheets, written atomically.

A workdir is read by notebooks with nothing but `json` and Pillow; each file is complete or
absent (temp file, then rename), so an interrupted experiment resumes by skipping what exists.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jstyle import image as image_lib

LABEL_HEIGHT = 22  # pixels of caption under each tile


def write_json(path: pathlib.Path, obj) -> None:
    """Writes `obj` as indented JSON, atomically."""
    image_lib.write_atomic(pathlib.Path(path), lambda f: f.write(
        json.dumps(obj, indent=2, default=str).encode()))


def read_json(path: pathlib.Path):
    """The JSON object at `path`, or None if the file does not exist."""
    path = pathlib.Path(path)
    return json.loads(path.read_text()) if path.exists() else None


def contact_sheet(rows: list[list[tuple[np.ndarray | None, str]]], tile: int = 256
                  ) -> np.ndarray:
    """A grid of captioned images.

    Args:
      rows: each row a list of (image float[H, W, 3] in [0, 1] or None for a blank cell,
        caption); rows may differ in length.
      tile: each image is fitted into a tile x tile cell, aspect kept, centred.
    Returns:
      float32[rows * (tile + LABEL_HEIGHT), columns * tile, 3] in [0, 1], white background.
    """
    columns = max(len(r) for r in rows)
    cell_h = tile + LABEL_HEIGHT
    sheet = Image.new("RGB", (columns * tile, len(rows) * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=14)
    for y, row in enumerate(rows):
        for x, (img, caption) in enumerate(row):
            if img is not None:
                h, w = image_lib.fit_edge(img.shape[0], img.shape[1], tile)
                pixels = np.uint8(np.round(np.clip(image_lib.resize(img, h, w), 0, 1) * 255))
                sheet.paste(Image.fromarray(pixels),
                            (x * tile + (tile - w) // 2, y * cell_h + (tile - h) // 2))
            draw.text((x * tile + tile // 2, y * cell_h + tile + LABEL_HEIGHT // 2), caption,
                      fill="black", font=font, anchor="mm")
    return np.asarray(sheet, np.float32) / 255.0
