"""Sweep throughput: K points as one vmapped program against K sequential runs, and scaling
over devices.

  python benchmarks/sweep_benchmark.py [--size=128] [--steps=20] [--points=8,32] \
      [--optimizers=adam,lbfgs] [--devices=1,2,4,8] [--markdown=FILE]

Sequential: one compiled single-point chunk (gatys.setup's), run for each point in turn; the
points differ only in alpha/beta and w_TV (leaves of the hyperparameter pytree), so the one
compilation serves all. Vmapped: sweep.setup's batched chunk, all points at once (L-BFGS with
the zoom line search: point by point inside it, see optimize.make_chunk). Both run
the same steps at the same size from the content image; compile time is excluded (a warm-up
chunk of one step first), and each time is the best of --rounds.

Scaling: the vmapped sweep of max(--points) points sharded over 1, 2, 4, 8 devices, each count
in a child process (on a CPU the devices are XLA host devices made with
--xla_force_host_platform_device_count, sharing the same cores; on GPUs and TPUs, real ones).

Output: one JSON line per measurement on stdout, and a Markdown table (--markdown).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time

from absl import app, flags

import jax
import jax.numpy as jnp
import numpy as np

from jstyle import image, sweep
from jstyle.nets import weights
from jstyle.methods import gatys

flags.DEFINE_integer("size", 128, "Longer edge, pixels.")
flags.DEFINE_integer("steps", 20, "Steps timed per point.")
flags.DEFINE_list("points", ["8", "32"], "Sweep sizes K.")
flags.DEFINE_list("optimizers", ["adam", "lbfgs"], "Optimisers (L-BFGS: zoom line search).")
flags.DEFINE_list("devices", ["1", "2", "4", "8"], "Device counts for the scaling runs.")
flags.DEFINE_integer("rounds", 2, "Timed rounds; the best is kept.")
flags.DEFINE_integer("only_devices", 0, "Internal: time the sharded sweep on this many devices.")
flags.DEFINE_string("markdown", None, "Also write the Markdown table here.")
FLAGS = flags.FLAGS


def _points(k: int) -> list[gatys.GatysParams]:
    return [gatys.GatysParams(style_weight=10.0 ** (i % 6 - 1), tv_weight=1e-3 * (i // 6))
            for i in range(k)]


def _opts(optimizer: str) -> gatys.RunOptions:
    return gatys.RunOptions(size=FLAGS.size, steps=FLAGS.steps, optimizer=optimizer, tol=0.0)


def _best(run) -> float:
    """Best wall time of `run()` over the rounds; `run` blocks until its work is done."""
    times = []
    for _ in range(FLAGS.rounds):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def _fresh(state):
    return jax.tree.map(jnp.copy, state)  # chunks donate their input state


def sequential(content, style, points, opts, w) -> float:
    problems = [gatys.setup(content, [style], p, opts, w, jax.random.key(0)) for p in points]
    warm = problems[0].chunk(_fresh(problems[0].state), jnp.int32(1), problems[0].data)
    jax.block_until_ready(warm)

    def run():
        for p in problems:
            jax.block_until_ready(problems[0].chunk(_fresh(p.state), jnp.int32(opts.steps),
                                                    p.data))
    return _best(run)


def vmapped(content, style, points, opts, w, shard: bool = False) -> float:
    levels = image.to_levels(image.resize_to_edge(content, opts.size))
    problem = sweep.setup(content, [style], points, opts, w,
                          np.stack([levels] * len(points)).astype(np.float32))
    if shard:
        problem = sweep.shard(problem)
    jax.block_until_ready(problem.chunk(_fresh(problem.state), jnp.int32(1), problem.data))
    return _best(lambda: jax.block_until_ready(
        problem.chunk(_fresh(problem.state), jnp.int32(opts.steps), problem.data)))


def main(argv):
    del argv
    content, style = (image.load(p) for p in image.sample_paths())
    w = weights.load()
    if FLAGS.only_devices:
        points = _points(max(int(k) for k in FLAGS.points))
        seconds = vmapped(content, style, points, _opts("adam"), w, shard=True)
        print(json.dumps({"devices": jax.device_count(), "seconds": seconds}), flush=True)
        return
    rows = []
    device = f"{jax.devices()[0].device_kind} x{jax.device_count()}"
    for optimizer in FLAGS.optimizers:
        for k in (int(k) for k in FLAGS.points):
            points, opts = _points(k), _opts(optimizer)
            one_by_one = sequential(content, style, points, opts, w)
            batched = vmapped(content, style, points, opts, w)
            row = {"optimizer": optimizer, "points": k, "size": FLAGS.size,
                   "steps": FLAGS.steps, "sequential_s": one_by_one, "vmapped_s": batched,
                   "speedup": one_by_one / batched, "device": device}
            print(json.dumps(row), flush=True)
            rows.append(row)
    scaling = []
    on_cpu = jax.default_backend() == "cpu"
    for n in (int(n) for n in FLAGS.devices):
        env = dict(os.environ)
        if on_cpu:
            env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n}"
        elif n > jax.device_count():
            continue
        else:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, range(n)))
        child = subprocess.run(
            [sys.executable, __file__, f"--only_devices={n}", f"--size={FLAGS.size}",
             f"--steps={FLAGS.steps}", f"--points={','.join(FLAGS.points)}",
             f"--rounds={FLAGS.rounds}"], env=env, capture_output=True, text=True, check=True)
        result = json.loads(child.stdout.strip().splitlines()[-1])
        scaling.append(result)
        print(json.dumps({"scaling": result}), flush=True)
    if FLAGS.markdown:
        k_max = max(int(k) for k in FLAGS.points)
        lines = ["| optimizer | K | sequential (s) | vmapped (s) | speed-up |", "|---|---|---|---|---|"]
        lines += [f"| {r['optimizer']} | {r['points']} | {r['sequential_s']:.2f} | "
                  f"{r['vmapped_s']:.2f} | {r['speedup']:.2f}x |" for r in rows]
        lines += ["", f"| devices | K = {k_max}, adam (s) | speed-up vs 1 |", "|---|---|---|"]
        lines += [f"| {s['devices']} | {s['seconds']:.2f} | "
                  f"{scaling[0]['seconds'] / s['seconds']:.2f}x |" for s in scaling]
        pathlib.Path(FLAGS.markdown).write_text(
            f"{device}, {FLAGS.size} px, {FLAGS.steps} steps per point\n\n" + "\n".join(lines)
            + "\n")


if __name__ == "__main__":
    app.run(main)
