"""Experiment 1: the Gatys parameter space, as one vmapped, sharded sweep.

  python experiments/gatys_sweep.py --workdir=DIR [--grid=quick|default|full] \
      [--size=128 --steps=200] [--content=PATH --style=PATH] [--batch_size=8]

Gatys et al. (2016) chose their objective by looking at a few slices of it: the content/style
ratio alpha/beta over decades against the style layer set (their Fig. 3: conv1_1, then adding
conv2_1 ... conv5_1, each set weighted equally), and the content layer. This script computes
those slices, and the effect of the start (noise or the content photo) and of the seed:

  ratio          alpha/beta (alpha = 1, beta = 1 / ratio)
  content_layer  relu1_2 ... relu5_2 (Caffe's in-place ReLU makes the paper's conv4_2 the
                 rectified output, jstyle's relu4_2)
  style_layers   relu1_1 .. reluN_1 for N = 1 ... 5, weight 1/N each
  init, seed     noise (mean pixel + 8 N(0, 1) per pixel, from the seed's key) or content

Grids: `quick` (4 points, a smoke test); `default` (about 50 points: the ratio x style-layer
panel, the content-layer x ratio panel and the init x seed panel; about 15 minutes at 128 px
and 200 Adam steps on a 2-core CPU); `full` (every combination, 1050 points, for GPUs and
TPUs). All points run with Adam (learning rate 4, 8-bit levels): it vmaps at the cost of the
points' evaluations and, at equal evaluations, reached lower losses than L-BFGS here (whose zoom
line search runs point by point in a sweep; see the README's "Sweeps").

The workdir (jstyle.results): config.json, points/, images/, metrics.jsonl, sweep.npz and
contact_sheet.png, one panel per slice. A rerun with the same workdir computes only the points
that are missing or corrupt. Defaults: tubingen x starry_night from ../shared/images when
present, else the built-in sample pair. Multi-host: --coordinator_address, --num_processes and
--process_id (or --distributed), the same command on every host.
"""

from __future__ import annotations

import itertools
import pathlib

from absl import flags, logging

import common
from jstyle import image, sweep
from jstyle.system import files
from jstyle.engine.session import Session
from jstyle.nets import weights as weights_lib
from jstyle.methods import gatys

FLAGS = flags.FLAGS
common.define_multihost_flags()
flags.adopt_module_key_flags(common)  # --help lists them
flags.DEFINE_string("workdir", None, "Output folder (created; reruns resume).", required=True)
flags.DEFINE_enum("grid", "default", ["quick", "default", "full"], "Which points to run.")
flags.DEFINE_integer("size", 128, "Longer edge of the outputs, pixels.")
flags.DEFINE_integer("steps", 200, "Adam steps per point.")
flags.DEFINE_float("learning_rate", 4.0, "Adam step size, 8-bit levels.")
flags.DEFINE_integer("batch_size", 8, "Points per compiled program (lower it if a batch does "
                     "not fit in memory).")
flags.DEFINE_string("content", None, "Content image (default: tubingen or the sample).")
flags.DEFINE_string("style", None, "Style image (default: starry_night or the sample).")
flags.DEFINE_string("vgg_weights", None, "VGG-19 weights file (default: the cached download).")

RATIOS = [1e1, 1e0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5]
CONTENT_LAYERS = ["relu1_2", "relu2_2", "relu3_2", "relu4_2", "relu5_2"]
STYLE_SETS = {"1_1": 1, "1_1..2_1": 2, "1_1..3_1": 3, "1_1..4_1": 4, "1_1..5_1": 5}
INITS = ["noise", "content"]
SEEDS = [0, 1, 2]
AXES = {"ratio": RATIOS, "content_layer": CONTENT_LAYERS, "style_layers": list(STYLE_SETS),
        "init": INITS, "seed": SEEDS}
BASE = {"ratio": 1e-2, "content_layer": "relu4_2", "style_layers": "1_1..5_1",
        "init": "noise", "seed": 0}


def point(coords: dict) -> sweep.Point:
    """The sweep point at `coords` (one value per axis)."""
    n = STYLE_SETS[coords["style_layers"]]
    hp = gatys.GatysParams(
        content_layers=(coords["content_layer"],), content_layer_weights=(1.0,),
        style_layers=tuple(f"relu{k}_1" for k in range(1, n + 1)),
        style_layer_weights=(1.0 / n,) * n, content_weight=1.0,
        style_weight=1.0 / coords["ratio"])
    name = "r{ratio:g}_c{content_layer}_s{style_layers}_{init}{seed}".format(**coords)
    return sweep.Point(name=name, coords=coords, hp=hp, init=coords["init"],
                       seed=coords["seed"])


def panels(grid: str) -> list[dict]:
    """The contact sheet's panels of a grid: (title, rows, columns, fixed coordinates)."""
    def panel(title, rows, columns):
        return {"title": title, "rows": rows, "columns": columns,
                "where": {a: v for a, v in BASE.items() if a not in (rows, columns)}}
    if grid == "quick":
        return [panel("style layers x alpha/beta", "style_layers", "ratio")]
    return [panel("style layers x alpha/beta (Gatys et al. Fig. 3)", "style_layers", "ratio"),
            panel("content layer x alpha/beta", "content_layer", "ratio"),
            panel("start x seed", "init", "seed")]


def grid_points(grid: str) -> list[sweep.Point]:
    """The points of a named grid, each once, in table order."""
    if grid == "full":
        coords = [dict(zip(AXES, values)) for values in itertools.product(*AXES.values())]
    elif grid == "quick":
        coords = [{**BASE, "ratio": r, "style_layers": s}
                  for s in ("1_1", "1_1..5_1") for r in (1e-1, 1e-3)]
    else:
        coords = ([{**BASE, "ratio": r, "style_layers": s} for s in STYLE_SETS for r in RATIOS]
                  + [{**BASE, "ratio": r, "content_layer": c} for c in CONTENT_LAYERS
                     for r in (1e-1, 1e-3)]
                  + [{**BASE, "init": i, "seed": s} for i in INITS for s in SEEDS])
    unique = {point(c).name: point(c) for c in coords}
    return list(unique.values())


def main(argv):
    del argv
    common.join_processes()
    content_path, style_path = common.content_and_style(
        FLAGS.content, FLAGS.style, ("tubingen", "starry_night"))
    workdir = pathlib.Path(FLAGS.workdir)
    common.check_workdir(workdir)
    opts = gatys.RunOptions(size=FLAGS.size, steps=FLAGS.steps, optimizer="adam",
                            learning_rate=FLAGS.learning_rate, tol=0.0,
                            print_every=max(1, FLAGS.steps // 10))
    points = grid_points(FLAGS.grid)
    files.check_outputs([p for p in sweep.planned_outputs(workdir, points)
                         if p.parent.is_dir()],
                        [("--content", content_path), ("--style", style_path)])
    content, style = image.load(content_path), image.load(style_path)
    weights = weights_lib.load(FLAGS.vgg_weights)
    logging.info("%s grid: %d points, %s x %s at %d px, %d steps", FLAGS.grid, len(points),
                 content_path.name, style_path.name, FLAGS.size, FLAGS.steps)
    sweep.run(workdir, content, [style], points, opts, weights,
              axes=AXES, panels=panels(FLAGS.grid), batch_size=FLAGS.batch_size,
              session=Session(method="sweep"),
              extra={"experiment": "gatys_sweep", "grid": FLAGS.grid,
                     "content": str(content_path), "style": str(style_path)})
    logging.info("wrote %s", FLAGS.workdir)


if __name__ == "__main__":
    common.run("gatys_sweep", main, "the finished points are kept: rerun the same command "
               "to compute the rest", smaller="--batch_size or --size")
