"""What experiments write and notebooks read: workdirs of JSON records, images and labelled
contact sheets.

Every file is complete or absent (temp file, then rename), so an interrupted experiment resumes
by skipping what exists. A sweep's workdir (jstyle.sweep.run) holds:

  config.json          the axes, the panels, the run options, the weights' and inputs' digests
                       and every point (name, coordinates, hyperparameters, start)
  points/<point>.json  one finished point: how it was made, its loss history (every logged
                       step, every term), final losses, steps, seconds, its image's SHA-256
  images/<point>.png   its result
  metrics.jsonl        one line per point per logged step: point, coordinates,
                       hyperparameters, step and every loss term
  sweep.npz            the axes and each term's final value, per point and on the grid
  contact_sheet.png    the results, one labelled panel per slice of the grid

`load_metrics`, `load_points` and `load_images` read a workdir into pandas DataFrames and
arrays (pandas is the optional extra `jstyle[notebook]`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import pathlib

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jstyle import image as image_lib
from jstyle.system import files

LABEL_HEIGHT = 22  # pixels of caption under each tile


def write_json(path: pathlib.Path, obj) -> None:
    """Writes `obj` as indented JSON, atomically."""
    files.write_atomic(pathlib.Path(path), lambda f: f.write(
        json.dumps(obj, indent=2, default=str).encode()))


def write_jsonl(path: pathlib.Path, lines: list[dict]) -> None:
    """Writes one JSON object per line, atomically."""
    files.write_atomic(pathlib.Path(path), lambda f: f.write(
        "".join(json.dumps(l) + "\n" for l in lines).encode()))


def read_json(path: pathlib.Path):
    """The JSON object at `path`, or None if the file does not exist."""
    path = pathlib.Path(path)
    return json.loads(path.read_text()) if path.exists() else None


def file_sha256(path: str | pathlib.Path) -> str:
    """The SHA-256 hex digest of a file's bytes."""
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def array_digest(*arrays: np.ndarray) -> str:
    """SHA-256 of the arrays' shapes and float32 values: what a record names its inputs by."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a, np.float32).tobytes())
    return h.hexdigest()


def contact_sheet(rows: list[list[tuple[np.ndarray | None, str]]], tile: int = 256
                  ) -> np.ndarray:
    """A grid of captioned images.

    Args:
      rows: each row a list of (image float[H, W, 3] in [0, 1], caption) or (None, text): a
        cell with the text in its middle (a label); rows may differ in length.
      tile: each image is fitted into a tile x tile cell, aspect kept, centred.
    Returns:
      float32[H, columns * tile, 3] in [0, 1], white background; a row is tile + LABEL_HEIGHT
      high, or 2 * LABEL_HEIGHT if it holds text only.
    """
    columns = max(len(r) for r in rows)
    # rows of text only (titles) are one line high
    heights = [tile + LABEL_HEIGHT if any(img is not None for img, _ in row) else 2 * LABEL_HEIGHT
               for row in rows]
    sheet = Image.new("RGB", (columns * tile, sum(heights)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=14)
    for row, top, height in zip(rows, np.cumsum([0, *heights]), heights):
        for x, (img, caption) in enumerate(row):
            if img is not None:
                h, w = image_lib.fit_edge(img.shape[0], img.shape[1], tile)
                pixels = np.uint8(np.round(np.clip(image_lib.resize(img, h, w), 0, 1) * 255))
                sheet.paste(Image.fromarray(pixels),
                            (x * tile + (tile - w) // 2, int(top) + (tile - h) // 2))
            middle = tile + LABEL_HEIGHT // 2 if img is not None else height // 2
            draw.text((x * tile + tile // 2, int(top) + middle), caption, fill="black",
                      font=font, anchor="mm")
    return np.asarray(sheet, np.float32) / 255.0


# ---------------------------------------------------------------------------------------------
# Sweep workdirs.

def write_point(workdir: pathlib.Path, record: dict, output: np.ndarray) -> None:
    """Writes a finished point: its image (float[H, W, 3] in [0, 1]), then its record with the
    image's SHA-256; the record is written last, so its presence marks a complete point."""
    name = record["point"]["name"]
    png = pathlib.Path(workdir) / "images" / f"{name}.png"
    image_lib.save(png, output)
    write_json(pathlib.Path(workdir) / "points" / f"{name}.json",
               {**record, "image_sha256": file_sha256(png)})


def finished_point(workdir: pathlib.Path, name: str) -> dict | None:
    """The record of the point `name` if it is complete and intact (its image matches the
    SHA-256 recorded), however it was made; else None."""
    try:
        record = json.loads((pathlib.Path(workdir) / "points" / f"{name}.json").read_text())
        png = pathlib.Path(workdir) / "images" / f"{name}.png"
        if file_sha256(png) != record["image_sha256"]:
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record


def differs(record: dict, made: dict) -> list[str]:
    """The keys of `made` (as it reads back from JSON) whose values `record` does not hold."""
    made = json.loads(json.dumps(made))
    return [k for k, v in made.items() if record.get(k) != v]


def read_point(workdir: pathlib.Path, made: dict) -> dict | None:
    """The record of the point `made["point"]["name"]` if it is finished (`finished_point`) and
    was made as `made` says (every key of `made` equal); else None, and the point is to be
    computed."""
    record = finished_point(workdir, made["point"]["name"])
    return None if record is None or differs(record, made) else record


def _label(axis: str, value) -> str:
    return f"{axis}={value:g}" if isinstance(value, float) else f"{axis}={value}"


def default_panels(axes: dict[str, list]) -> list[dict]:
    """Rows along the first axis, columns along the second, one panel per combination of the
    values of the others."""
    names = list(axes)
    rows, columns = names[0], names[1] if len(names) > 1 else None
    rest = names[2:]
    return [{"title": ", ".join(_label(a, v) for a, v in zip(rest, values)) or "sweep",
             "rows": rows, "columns": columns, "where": dict(zip(rest, values))}
            for values in itertools.product(*(axes[a] for a in rest))]


def _sheet(config: dict, records: dict[str, dict], workdir: pathlib.Path, tile: int
           ) -> np.ndarray:
    """The contact sheet: per panel a title, then one row per value of its row axis (its
    label first), one column per value of its column axis; values without points are left
    out, points not finished show as "(missing)"."""
    axes, points = config["axes"], config["points"]
    cells: list[list] = []
    for panel in config["panels"] or default_panels(axes):
        rows, columns = panel["rows"], panel["columns"]

        def find(r, c):
            want = {**panel["where"], rows: r, **({columns: c} if columns else {})}
            return next((p["name"] for p in points
                         if all(p["coords"].get(a) == v for a, v in want.items())), None)

        column_values = axes[columns] if columns else [None]
        grid = {(r, c): find(r, c) for r in axes[rows] for c in column_values}
        used_rows = [r for r in axes[rows] if any(grid[r, c] for c in column_values)]
        used_columns = [c for c in column_values if any(grid[r, c] for r in axes[rows])]
        cells.append([(None, panel["title"])])
        for r in used_rows:
            row = [(None, _label(rows, r))]
            for c in used_columns:
                name, caption = grid[r, c], _label(columns, c) if columns else ""
                if name in records:
                    row.append((image_lib.load(workdir / "images" / f"{name}.png"), caption))
                else:
                    row.append((None, "(missing)" if name else ""))
            cells.append(row)
    return contact_sheet(cells, tile)


def write_sweep(workdir: str | pathlib.Path, tile: int = 160) -> None:
    """Merges the finished points of the sweep in `workdir/config.json` into metrics.jsonl,
    sweep.npz and contact_sheet.png (points not finished are left out, NaN in sweep.npz)."""
    workdir = pathlib.Path(workdir)
    config = read_json(workdir / "config.json")
    records = {p["name"]: r for p in config["points"]
               if (r := read_json(workdir / "points" / f"{p['name']}.json")) is not None}
    write_jsonl(workdir / "metrics.jsonl", [
        {"point": p["name"], **p["coords"], "hyperparameters": {
            **p["hyperparameters"], "init": p["init"], "init_noise": p["init_noise"],
            "seed": p["seed"]}, **entry}
        for p in config["points"] if p["name"] in records
        for entry in records[p["name"]]["history"]])

    axes = config["axes"]
    names = [p["name"] for p in config["points"]]
    index = np.array([[axes[a].index(p["coords"][a]) if p["coords"].get(a) in axes[a] else -1
                       for a in axes] for p in config["points"]], np.int64).reshape(len(names),
                                                                                    len(axes))
    terms = sorted({t for r in records.values() for t in r["final_loss"]})
    arrays = {"axes": np.array(list(axes)), "points": np.array(names), "index": index,
              **{f"axis__{a}": np.array(v) for a, v in axes.items()}}
    for term in terms:
        final = np.array([records[n]["final_loss"][term] if n in records else np.nan
                          for n in names], np.float64)
        grid = np.full([len(v) for v in axes.values()], np.nan)
        for k, i in enumerate(index):
            if (i >= 0).all():
                grid[tuple(i)] = final[k]
        arrays[f"final__{term}"], arrays[f"grid__{term}"] = final, grid
    files.write_atomic(workdir / "sweep.npz", lambda f: np.savez(f, **arrays))
    image_lib.save(workdir / "contact_sheet.png", _sheet(config, records, workdir, tile))


# ---------------------------------------------------------------------------------------------
# Loading workdirs into notebooks.

def _pandas():
    try:
        import pandas
    except ImportError:
        raise ImportError("jstyle.results' DataFrames need pandas; install it with "
                          "pip install 'jstyle[notebook]'") from None
    return pandas


def load_metrics(workdir: str | pathlib.Path):
    """metrics.jsonl as a pandas DataFrame, one row per line, nested keys flattened with dots
    (e.g. `hyperparameters.style_weight`)."""
    path = pathlib.Path(workdir) / "metrics.jsonl"
    return _pandas().json_normalize([json.loads(l) for l in path.read_text().splitlines() if l])


def load_points(workdir: str | pathlib.Path):
    """A sweep's finished points as a pandas DataFrame, one row per point: name, coordinates,
    hyperparameters, final loss terms (`final.<term>`), steps, why it stopped, seconds."""
    workdir = pathlib.Path(workdir)
    rows = []
    for p in read_json(workdir / "config.json")["points"]:
        record = read_json(workdir / "points" / f"{p['name']}.json")
        if record is not None:
            rows.append({"point": p["name"], **p["coords"],
                         "hyperparameters": p["hyperparameters"], "init": p["init"],
                         "seed": p["seed"], "final": record["final_loss"],
                         "steps": record["steps"], "stopped": record["stopped"],
                         "seconds": record["seconds"]})
    return _pandas().json_normalize(rows)


def load_images(workdir: str | pathlib.Path) -> dict[str, np.ndarray]:
    """{name: float32[H, W, 3] in [0, 1]} for every PNG in workdir/images."""
    return {p.stem: image_lib.load(p)
            for p in sorted((pathlib.Path(workdir) / "images").glob("*.png"))}
