"""What bfloat16 costs in quality: the same Gatys run in float32 and in bfloat16, compared by
neutral distances computed in float32.

  python benchmarks/precision_benchmark.py [--size=512] [--steps=300] [--optimizer=lbfgs]

Each precision runs the default objective (tubingen x starry_night, content relu4_2, Gram
style relu1_1 ... relu5_1) from the content image for `--steps` steps. The outputs are then
measured by the float32 network: the content distance at relu4_2 (L_c) and the Gram style
distance summed over relu1_1 ... relu5_1 (L_s), both in jstyle's normalisation with unit
weights. Speed is measured by benchmarks/benchmark.py --precisions=float32,bfloat16.
Output: one JSON line per precision, then a Markdown table.
"""

from __future__ import annotations

import json
import pathlib

from absl import app, flags

import jax
import jax.numpy as jnp

from jstyle import image
from jstyle.engine.session import Session
from jstyle.nets import weights
from jstyle.methods import gatys

SHARED = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "images"

flags.DEFINE_integer("size", 512, "Longer edge, pixels.")
flags.DEFINE_integer("steps", 300, "Optimiser steps per run.")
flags.DEFINE_string("optimizer", "lbfgs", "Optimiser.")
flags.DEFINE_list("precisions", ["float32", "bfloat16"], "Precisions to run.")
flags.DEFINE_string("content", str(SHARED / "content" / "tubingen.jpg"), "Content image.")
flags.DEFINE_string("style", str(SHARED / "style" / "starry_night.jpg"), "Style image.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    vgg_weights = weights.load()
    content, style = image.load(FLAGS.content), image.load(FLAGS.style)
    hp = gatys.GatysParams()
    neutral = gatys.GatysParams(content_weight=1.0, style_weight=1.0)
    measure_opts = gatys.RunOptions(size=FLAGS.size, precision="float32")
    data, _, _, _ = gatys.prepare_data(content, [style], neutral, measure_opts, vgg_weights)
    distances = jax.jit(lambda x: gatys.loss_terms(x, data, vgg_weights.convention))
    rows = []
    for precision in FLAGS.precisions:
        opts = gatys.RunOptions(size=FLAGS.size, steps=FLAGS.steps, optimizer=FLAGS.optimizer,
                                tol=0.0, print_every=0, precision=precision)
        result = gatys.run(jax.random.key(0), gatys.Inputs(content, [style]), hp, opts,
                           vgg_weights, session=Session(progress=False))
        terms = distances(jnp.asarray(image.to_levels(result.image)))
        rows.append({"precision": precision, "size": FLAGS.size, "steps": FLAGS.steps,
                     "optimizer": FLAGS.optimizer, "content_distance": float(terms["content"]),
                     "style_distance": float(terms["style"]),
                     "run_loss": result.record["final_loss"]["total"],
                     "seconds": result.record["seconds"]})
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]
    print("| precision | content distance (relu4_2) | style distance (relu1_1..relu5_1) | "
          f"vs {base['precision']} (content, style) | run seconds |")
    print("|---|---|---|---|---|")
    for r in rows:
        change = [r[k] / base[k] - 1 for k in ("content_distance", "style_distance")]
        print(f"| {r['precision']} | {r['content_distance']:.4g} | {r['style_distance']:.4g} | "
              f"{change[0]:+.2%}, {change[1]:+.2%} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    app.run(main)
