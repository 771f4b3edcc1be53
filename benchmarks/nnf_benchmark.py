"""Nearest-neighbour fields on real VGG-19 features: exact NNF against PatchMatch.

  python benchmarks/nnf_benchmark.py [--sizes=256,512,1024] [--layers=relu3_1,relu4_1] \
      [--content=PATH --style=PATH] [--iterations=16]

For each input size (longer edge) and layer, both images' features are computed, then the
3 x 3 NNF from content to style (style stride 1) by `grid_fields.nnf_exact` and by
`grid_fields.patchmatch` (benchmarks/grid_fields.py), each jitted, warmed up, and timed as
the median of 3 runs. Reports the maps' sizes, both times, PatchMatch's mean similarity as a
share of the exact field's, the iteration count at which it first reaches 98% (`--curve`),
the coarse-to-fine variant (the half-size images' field upsampled, then `--refine_iterations`
at full size: time and quality), and each compiled function's temporary memory (XLA's memory
analysis). Prints JSON lines and a Markdown table.
"""

from __future__ import annotations

import json
import statistics
import time

import jax
import jax.numpy as jnp
from absl import app, flags

import grid_fields  # benchmarks/grid_fields.py, beside this script
from jstyle import image
from jstyle.ops import patches
from jstyle.nets import vgg
from jstyle.nets import weights

FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["256", "512", "1024"], "Longer edges of the input images, pixels.")
flags.DEFINE_list("layers", ["relu3_1", "relu4_1"], "VGG-19 layers whose maps are matched.")
flags.DEFINE_string("content", None, "Source image (default: the built-in sample).")
flags.DEFINE_string("style", None, "Target image (default: the built-in sample).")
flags.DEFINE_integer("iterations", 16, "PatchMatch iterations of the timed run.")
flags.DEFINE_integer("refine_iterations", 4,
                     "Coarse to fine: PatchMatch iterations at full size after the field of the "
                     "half-size images (at the default iterations) is upsampled.")
flags.DEFINE_list("curve", ["2", "4", "8", "12", "16", "24", "32"],
                  "Iteration counts at which to measure PatchMatch's quality (one continued "
                  "run); the smallest reaching 98% is reported.")


def _timed(fn, *args) -> tuple[float, object]:
    """Median seconds of 3 calls after a warm-up call, and the last result."""
    result = jax.block_until_ready(fn(*args))
    times = []
    for _ in range(3):
        start = time.perf_counter()
        result = jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _temp_mib(fn, *args) -> float:
    return fn.lower(*args).compile().memory_analysis().temp_size_in_bytes / 2**20


def main(argv):
    del argv
    sample = image.sample_paths()
    content_path, style_path = FLAGS.content or sample[0], FLAGS.style or sample[1]
    vgg_weights = weights.load()
    params = vgg.prepare(vgg_weights.params)
    layers = tuple(FLAGS.layers)
    extract = jax.jit(lambda x: vgg.features(
        params, vgg.preprocess(x, vgg_weights.convention), layers))
    exact = jax.jit(lambda s, t: grid_fields.nnf_exact(s, t, 3, 1))
    match = jax.jit(lambda key, s, t: grid_fields.patchmatch(key, s, t, 3, 1,
                                                             FLAGS.iterations))
    more = jax.jit(grid_fields.patchmatch,
                   static_argnames=("size", "target_stride", "iterations"))

    def curve(key, s, t, exact_mean):
        """{iterations: quality} along one run continued from count to count."""
        field, done, out = None, 0, {}
        for total in sorted(int(c) for c in FLAGS.curve):
            key, sub = jax.random.split(key)
            field, sim = more(sub, s, t, size=3, target_stride=1, iterations=total - done,
                              init=field)
            done, out[total] = total, round(float(sim.mean() / exact_mean), 4)
        return out

    def coarse_to_fine(key, s, t, half_s, half_t):
        """The half-size images' field (default iterations), upsampled, then refined."""
        coarse, _ = more(key, half_s, half_t, size=3, target_stride=1)
        rows, cols = patches.grid_shape(s.shape[0], s.shape[1], 3)
        init = grid_fields.upsample_field(coarse, rows, cols, *patches.grid_shape(
            t.shape[0], t.shape[1], 3))
        return more(jax.random.fold_in(key, 1), s, t, size=3, target_stride=1,
                    iterations=FLAGS.refine_iterations, init=init)

    key = jax.random.key(0)
    rows = []
    for size in (int(s) for s in FLAGS.sizes):
        load = lambda path, edge: extract(jnp.asarray(image.to_levels(image.load(path, edge))))
        source, target = load(content_path, size), load(style_path, size)
        half_source, half_target = load(content_path, size // 2), load(style_path, size // 2)
        for layer in layers:
            s, t = source[layer], target[layer]
            exact_s, (_, exact_sim) = _timed(exact, s, t)
            match_s, (_, match_sim) = _timed(match, key, s, t)
            qualities = curve(key, s, t, exact_sim.mean())
            enough = [n for n, q in qualities.items() if q >= 0.98]
            c2f_s, (_, c2f_sim) = _timed(coarse_to_fine, key, s, t, half_source[layer],
                                         half_target[layer])
            row = {"size": size, "layer": layer, "source": list(s.shape),
                   "target": list(t.shape), "exact_s": round(exact_s, 3),
                   "patchmatch_s": round(match_s, 3), "iterations": FLAGS.iterations,
                   "quality": round(float(match_sim.mean() / exact_sim.mean()), 4),
                   "quality_by_iterations": qualities,
                   "iterations_to_98": min(enough) if enough else None,
                   "coarse_to_fine_s": round(c2f_s, 3),
                   "coarse_to_fine_quality": round(float(c2f_sim.mean() / exact_sim.mean()), 4),
                   "exact_temp_mib": round(_temp_mib(exact, s, t), 1),
                   "patchmatch_temp_mib": round(_temp_mib(match, key, s, t), 1),
                   "device": jax.devices()[0].device_kind}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| input | layer | map (H x W x C) | exact s | PatchMatch s | PatchMatch / exact "
          "similarity | iterations to 98% | coarse to fine s | coarse to fine similarity | "
          "exact temp MiB | PatchMatch temp MiB |\n|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        h, w, c = r["source"]
        print(f"| {r['size']} | {r['layer']} | {h} x {w} x {c} | {r['exact_s']} | "
              f"{r['patchmatch_s']} | {r['quality']:.1%} | "
              f"{r['iterations_to_98'] or '> ' + FLAGS.curve[-1]} | {r['coarse_to_fine_s']} | "
              f"{r['coarse_to_fine_quality']:.1%} | {r['exact_temp_mib']} | "
              f"{r['patchmatch_temp_mib']} |")


if __name__ == "__main__":
    app.run(main)
