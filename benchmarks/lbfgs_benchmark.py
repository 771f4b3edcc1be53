"""L-BFGS's evaluations per step at print sizes: optax's first step against jstyle's.

  python benchmarks/lbfgs_benchmark.py [--runs=1024:optax,1024:jstyle,2048:jstyle] [--steps=50]

Each run optimises the default Gatys objective (tubingen x starry_night) from the content
image with L-BFGS and its zoom line search, one step per compiled chunk, and reads the line
search's trials of every step (`num_linesearch_steps`: each is one evaluation of the loss and
its gradient). "optax" is `optax.lbfgs`, whose first direction is capped at Euclidean norm 1;
"jstyle" scales the first direction to 1 level RMS per pixel (`optimize.make_optimizer`,
`program.FIRST_STEP_LEVELS`). Output: one JSON line per run, and a Markdown table.
"""

from __future__ import annotations

import json
import pathlib
import statistics
import time

from absl import app, flags, logging

import jax
import jax.numpy as jnp

from jstyle import image
from jstyle.engine import optimize
from jstyle.engine import program
from jstyle.nets import weights
from jstyle.methods import gatys

SHARED = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "images"

flags.DEFINE_list("runs", ["1024:optax", "1024:jstyle", "2048:jstyle"],
                  "SIZE:VARIANT pairs; VARIANT is optax or jstyle.")
flags.DEFINE_integer("steps", 50, "L-BFGS steps per run.")
flags.DEFINE_string("content", str(SHARED / "content" / "tubingen.jpg"), "Content image.")
flags.DEFINE_string("style", str(SHARED / "style" / "starry_night.jpg"), "Style image.")
FLAGS = flags.FLAGS


def measure(size: int, variant: str, steps: int, vgg_weights) -> dict:
    """Evaluations of each of `steps` L-BFGS steps at `size` px, and the seconds they took."""
    opts = gatys.RunOptions(size=size, tol=0.0)
    problem = gatys.setup(image.load(FLAGS.content), [image.load(FLAGS.style)],
                          gatys.GatysParams(), opts, vgg_weights, jax.random.key(0))
    first = program.FIRST_STEP_LEVELS if variant == "jstyle" else None
    optimizer = optimize.make_optimizer("lbfgs", 1.0, opts.lbfgs_memory, "zoom", first)
    objective = lambda x, d: gatys.objective(x, d, vgg_weights.convention)
    chunk = optimize.make_chunk(objective, optimizer, linesearch="zoom", tol=0.0,
                                bounds=(0.0, 255.0))
    state = optimize.init(optimizer, problem.init)
    evaluations, started = [], time.perf_counter()
    for k in range(steps):
        if k == 1:  # the first chunk compiles; time the rest
            started, counted = time.perf_counter(), sum(evaluations)
        state = jax.block_until_ready(chunk(state, jnp.int32(k + 1), problem.data))
        evaluations.append(int(state.opt_state[-1].info.num_linesearch_steps))
        logging.info("%d px %s step %d: %d evaluations, loss %.4g", size, variant, k,
                     evaluations[-1], float(state.loss))
    seconds = time.perf_counter() - started
    return {"size": size, "shape": list(problem.content.shape[:2]), "variant": variant,
            "steps": steps, "evaluations": evaluations,
            "mean_evaluations": statistics.mean(evaluations),
            "seconds_per_evaluation": seconds / max(1, sum(evaluations) - counted),
            "final_loss": float(state.loss)}


def main(argv):
    del argv
    vgg_weights = weights.load()
    rows = []
    for spec in FLAGS.runs:
        size, variant = spec.split(":")
        rows.append(measure(int(size), variant, FLAGS.steps, vgg_weights))
        print(json.dumps(rows[-1]), flush=True)
    print("| size (H x W) | first step | evaluations per step (mean of first "
          f"{FLAGS.steps}) | first 5 steps | s per evaluation | loss after {FLAGS.steps} |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} ({r['shape'][0]} x {r['shape'][1]}) | {r['variant']} | "
              f"{r['mean_evaluations']:.2f} | {r['evaluations'][:5]} | "
              f"{r['seconds_per_evaluation']:.1f} | {r['final_loss']:.4g} |")


if __name__ == "__main__":
    app.run(main)
