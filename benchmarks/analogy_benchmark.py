"""Deep Image Analogy on a square pair: time per stage and in total, and peak memory.

  python benchmarks/analogy_benchmark.py [--size=448] [--runs=1:both,0.5:both] [--markdown=FILE]

Both images are centre-cropped to squares and resized to --size x --size (the authors' usual
448 x 448), then `jstyle.methods.analogy` runs its `code` preset at each --runs entry's ratio
and directions, each in a fresh process (so peak memory is that run's): 10 PatchMatch
iterations per layer, 100 L-BFGS iterations per deconvolution. Times include compilation (a
run compiles each layer's PatchMatch and deconvolution once). The authors' code runs on CUDA
GPUs only, so no peer runs beside it on a CPU.

Output: one JSON line per run on stdout, and a Markdown table (--markdown).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import subprocess
import sys

from absl import app, flags

SHARED = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "images"

flags.DEFINE_integer("size", 448, "Side of both square images, pixels.")
flags.DEFINE_list("runs", ["1:both", "0.5:both"], "Runs to measure, each RATIO:DIRECTIONS "
                  "(--ratio and --directions: both, or forward for A' only).")
flags.DEFINE_string("content", str(SHARED / "content" / "brad_pitt.jpg"), "Image A.")
flags.DEFINE_string("style", str(SHARED / "style" / "picasso_selfport1907.jpg"), "Image B'.")
flags.DEFINE_integer("iterations", 10, "PatchMatch iterations per layer.")
flags.DEFINE_integer("deconv_steps", 100, "L-BFGS iterations per deconvolution.")
flags.DEFINE_string("markdown", None, "Also write the Markdown table here.")
flags.DEFINE_string("worker", None, "Internal: run one RATIO:DIRECTIONS in this process.")
flags.DEFINE_string("save", None, "Internal: where the worker writes A' (PNG).")
FLAGS = flags.FLAGS


def _square(path: str, size: int):
    """The image at `path`, centre-cropped to a square and resized to size x size."""
    from jstyle import image
    img = image.load(path)
    h, w = img.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return image.resize(img[top:top + side, left:left + side], size, size)


def worker(spec: str) -> dict:
    """Runs analogy once as `spec` (RATIO:DIRECTIONS) says; returns its timings and peak
    memory."""
    import jax
    from jstyle import image
    from jstyle.engine.session import Session
    from jstyle.system import memory
    from jstyle.nets import weights
    from jstyle.methods import analogy
    hp, opts = analogy.PRESETS["code"]
    ratio, directions = float(spec.split(":")[0]), spec.split(":")[1]
    hp = dataclasses.replace(hp, ratio=ratio, directions=directions,
                             iterations=FLAGS.iterations)
    opts = dataclasses.replace(opts, steps=FLAGS.deconv_steps, size=FLAGS.size)
    a, bp = _square(FLAGS.content, FLAGS.size), _square(FLAGS.style, FLAGS.size)
    result = analogy.run(jax.random.key(0), analogy.Inputs(a, [bp]), hp, opts, weights.load(),
                         session=Session())
    if FLAGS.save:
        image.save(FLAGS.save, result.image)
    layers = result.record["layers"]
    return {"size": FLAGS.size, "ratio": ratio, "directions": directions,
            "device": jax.devices()[0].device_kind,
            "patchmatch_seconds": round(sum(l["patchmatch_seconds"] for l in layers), 1),
            "deconv_seconds": round(sum(l.get("deconv_seconds", 0.0) for l in layers), 1),
            "vote_seconds": result.record["vote_seconds"],
            "total_seconds": round(result.record["seconds"], 1),
            "peak_rss_gib": round(memory.peak_rss_gib(), 2),
            "final_similarity": result.record["final_similarity"], "layers": layers}


def markdown(rows: list[dict]) -> str:
    lines = ["| pair | ratio | directions | network size | PatchMatch | deconvolution | "
             "pixel vote | total | peak memory |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        side = round(r["size"] * r["ratio"])
        lines.append(f"| {r['size']} x {r['size']} | {r['ratio']:g} | {r['directions']} | "
                     f"{side} x {side} | "
                     f"{r['patchmatch_seconds']:.0f} s | {r['deconv_seconds']:.0f} s | "
                     f"{r['vote_seconds']:.1f} s | **{r['total_seconds']:.0f} s** | "
                     f"{r['peak_rss_gib']:.1f} GiB |")
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    if FLAGS.worker is not None:
        print(json.dumps(worker(FLAGS.worker)), flush=True)
        return
    rows = []
    for spec in FLAGS.runs:
        args = [sys.executable, __file__, f"--worker={spec}", f"--size={FLAGS.size}",
                f"--content={FLAGS.content}", f"--style={FLAGS.style}",
                f"--iterations={FLAGS.iterations}", f"--deconv_steps={FLAGS.deconv_steps}"]
        done = subprocess.run(args, stdout=subprocess.PIPE, text=True, check=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        print(json.dumps(row), flush=True)
        rows.append(row)
    table = markdown(rows)
    print(table)
    if FLAGS.markdown:
        pathlib.Path(FLAGS.markdown).write_text(table)


if __name__ == "__main__":
    app.run(main)
