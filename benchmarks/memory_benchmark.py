"""Peak memory and time of a Gatys run at print sizes: whole or in tiles, with and without
rematerialisation, in float32 or bfloat16.

  python benchmarks/memory_benchmark.py [--sizes=512,1024,2048] [--steps=2] [--remats=no,yes] \
      [--tiles=1] [--precisions=float32] [--content=PATH --style=PATH] [--out=memory.jsonl]

Each configuration runs in a fresh worker process, so its peak is its own: the worker
sets the run up (targets, compiled L-BFGS chunk), takes one step (compile included), then
--steps more, timed. It reports the process's peak resident memory (getrusage ru_maxrss,
which includes JAX's runtime and the compiler) and, on a GPU, the device's peak bytes in use.
The objective is jstyle's default (content relu4_2, style relu1_1..relu5_1); the style is
scaled to the same longer edge. Adam (the default here) evaluates once per step, so its step
times compare across sizes; --optimizer=lbfgs adds L-BFGS's history and line search to the
memory. --tiles=0 picks the tiles as a run does (pyramid.tile_count); the estimate is
pyramid.level_gib's. Prints JSON lines and a Markdown table.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import resource
import subprocess
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["512", "1024", "2048"], "Longer edges to measure, pixels.")
flags.DEFINE_integer("steps", 2, "Timed steps after the first (compiling) one (0: none).")
flags.DEFINE_enum("optimizer", "adam", ["adam", "lbfgs"],
                  "adam: one evaluation per step, so step times compare across sizes; lbfgs: "
                  "the default run's memory (history and line search; its step count varies).")
flags.DEFINE_string("content", None, "Content image (default: the built-in sample).")
flags.DEFINE_string("style", None, "Style image (default: the built-in sample).")
flags.DEFINE_string("out", None, "Also append the JSON lines to this file.")
flags.DEFINE_list("remats", ["no", "yes"], "Rematerialisation settings to measure.")
flags.DEFINE_list("tiles", ["1"], "Tiles per side to measure (0: chosen from the memory "
                  "available, as a run does).")
flags.DEFINE_list("precisions", ["float32"], "Network precisions to measure.")
flags.DEFINE_integer("worker_size", None, "Internal: run one measurement at this size.")
flags.DEFINE_bool("worker_remat", False, "Internal: the worker's remat setting.")
flags.DEFINE_integer("worker_tile", 1, "Internal: the worker's tiles per side.")
flags.DEFINE_string("worker_precision", "float32", "Internal: the worker's precision.")



def measure(size: int, remat: bool, steps: int, optimizer: str, content_path, style_path,
            tile: int = 1, precision: str = "float32") -> dict:
    """One measurement, in this process."""
    import jax
    import jax.numpy as jnp
    from jstyle import image
    from jstyle.system import memory
    from jstyle.engine import pyramid
    from jstyle.nets import weights
    from jstyle.methods import gatys

    vgg_weights = weights.load()
    content, style = image.load(content_path), image.load(style_path)
    hp = gatys.GatysParams()
    opts = gatys.RunOptions(size=size, steps=steps + 1, remat=remat, tol=0.0,
                            optimizer=optimizer, precision=precision)
    h, w = image.fit_edge(*content.shape[:2], size)
    tile = pyramid.tile_count(h, w, dataclasses.replace(opts, tile=tile),
                              gatys.deepest_layer(hp), memory.available_gib())
    opts = dataclasses.replace(opts, tile=tile)
    estimate = pyramid.level_gib(h, w, opts, gatys.deepest_layer(hp), tile)
    start = time.perf_counter()
    problem = gatys.setup(content, [style], hp, opts, vgg_weights, jax.random.key(0))
    state = problem.chunk(problem.state, jnp.int32(1), problem.data)
    state.image.block_until_ready()
    first = time.perf_counter() - start
    start = time.perf_counter()
    state = problem.chunk(state, jnp.int32(1 + steps), problem.data)
    state.image.block_until_ready()
    step = (time.perf_counter() - start) / steps if steps else None
    device = jax.devices()[0]
    stats = device.memory_stats() or {}
    return {"size": size, "image": list(problem.content.shape[:2]), "remat": remat,
            "optimizer": optimizer, "tiles": tile, "precision": precision,
            "estimated_gib": round(estimate, 2),
            "setup_and_first_step_s": round(first, 2),
            "step_s": None if step is None else round(step, 3),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "device_peak_gib": round(stats["peak_bytes_in_use"] / 2**30, 2)
            if "peak_bytes_in_use" in stats else None,
            "device": device.device_kind, "loss_finite": bool(jnp.isfinite(state.loss))}


def main(argv):
    del argv
    from jstyle import image
    sample = image.sample_paths()
    content = FLAGS.content or str(sample[0])
    style = FLAGS.style or str(sample[1])
    if FLAGS.worker_size:
        print(json.dumps(measure(FLAGS.worker_size, FLAGS.worker_remat, FLAGS.steps,
                                 FLAGS.optimizer, content, style, FLAGS.worker_tile,
                                 FLAGS.worker_precision)))
        return
    rows = []
    for size in (int(s) for s in FLAGS.sizes):
        for remat, tile, precision in ((r == "yes", int(t), p) for r in FLAGS.remats
                                       for t in FLAGS.tiles for p in FLAGS.precisions):
            cmd = [sys.executable, __file__, f"--worker_size={size}",
                   f"--{'' if remat else 'no'}worker_remat", f"--steps={FLAGS.steps}",
                   f"--optimizer={FLAGS.optimizer}", f"--worker_tile={tile}",
                   f"--worker_precision={precision}",
                   f"--content={content}", f"--style={style}"]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode == 0:
                row = json.loads(done.stdout.strip().splitlines()[-1])
            else:  # killed for memory, typically
                row = {"size": size, "remat": remat, "optimizer": FLAGS.optimizer,
                       "failed": done.returncode,
                       "error": done.stderr.strip().splitlines()[-1:]}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if FLAGS.out:
                with pathlib.Path(FLAGS.out).open("a") as f:
                    f.write(json.dumps(row) + "\n")
    print("\n| max edge | image | optimiser | remat | tiles | precision | estimate (GiB) | "
          "peak RSS (GiB) | device peak (GiB) | first step incl. setup and compile (s) | "
          "step (s) |\n|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "failed" in r:
            print(f"| {r['size']} | | {r['optimizer']} | {'yes' if r['remat'] else 'no'} | | | "
                  f"| failed ({r['failed']}) | | | |")
            continue
        print(f"| {r['size']} | {r['image'][1]}x{r['image'][0]} | {r['optimizer']} | "
              f"{'yes' if r['remat'] else 'no'} | {r['tiles']}x{r['tiles']} | {r['precision']} | "
              f"{r['estimated_gib']} | {r['peak_rss_gib']} | {r['device_peak_gib'] or '-'} | "
              f"{r['setup_and_first_step_s']} | {r['step_s']} |")


if __name__ == "__main__":
    app.run(main)
