"""Gatys step time: jstyle against pastiche 1.6.0 (PyTorch, CPU), side by side in one run.

  python benchmarks/benchmark.py [--sizes=256,512] [--optimizers=adam,lbfgs]
      [--precisions=float32,bfloat16] [--markdown=FILE]

Both run the same problem: the same content and style images at the same size, content layer
relu4_2 and style layers relu1_1 ... relu5_1, the same 256-level quantised VGG-19 weights, Adam
(one loss evaluation per step) and L-BFGS. jstyle runs in each of `--precisions` (its network
in float32 or bfloat16, `--precision`); pastiche in float32. pastiche runs in its own venv
under jstyle's cache folder (made on first use: `pip install torch==2.13.0 pastiche==1.6.0`),
driven by benchmarks/peers/pastiche_worker.py. Rounds alternate between the two so that a noisy machine
affects both alike; compile and warm-up time are reported apart; per-step times are medians over
rounds.

It also measures a large float32 matmul's FLOP rate (the machine's practical peak) and reports
the FLOP rate jstyle reaches (XLA's cost analysis of one evaluation) and the lower bound of a
step: two forward passes of convolution FLOPs (forward, input gradient) at that peak.

Output: one JSON line per (size, optimizer) on stdout, and a Markdown table (--markdown).
"""

from __future__ import annotations

import functools
import json
import pathlib
import statistics
import sys
import time

from absl import app, flags, logging

import jax
import jax.numpy as jnp
import numpy as np

from jstyle import image
from jstyle.nets import weights
from jstyle.methods import gatys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from peers.peer import Worker, alternate  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "images"

flags.DEFINE_list("sizes", ["256", "512"], "Longer edges to measure, pixels.")
flags.DEFINE_list("optimizers", ["adam", "lbfgs"], "Optimisers to measure.")
flags.DEFINE_list("precisions", ["float32"], "jstyle's network precisions to measure.")
flags.DEFINE_integer("steps", 10, "Steps timed per round.")
flags.DEFINE_integer("rounds", 5, "Alternating rounds per configuration.")
flags.DEFINE_string("content", None, "Content image (default: ../shared/images tubingen, else "
                    "the built-in sample).")
flags.DEFINE_string("style", None, "Style image (default: starry_night, else the sample).")
flags.DEFINE_enum("peer", "pastiche", ["pastiche", "none"], "The PyTorch peer, or none.")
flags.DEFINE_string("peer_venv", None, "The peer's venv (default: <jstyle cache>/peer-venv).")
flags.DEFINE_string("markdown", None, "Also write the Markdown table here.")
FLAGS = flags.FLAGS


def _images() -> tuple[pathlib.Path, pathlib.Path]:
    if FLAGS.content and FLAGS.style:
        return pathlib.Path(FLAGS.content), pathlib.Path(FLAGS.style)
    if (SHARED / "content" / "tubingen.jpg").exists():
        return SHARED / "content" / "tubingen.jpg", SHARED / "style" / "starry_night.jpg"
    import skimage.data
    folder = pathlib.Path(skimage.data.__file__).parent
    return folder / "chelsea.png", folder / "ihc.png"


class JStyle:
    """jstyle's compiled Gatys chunk on the same problem."""

    def __init__(self, content, style, size, optimizer, vgg_weights, precision="float32"):
        hp = gatys.GatysParams()  # content relu4_2, style relu1_1..relu5_1
        opts = gatys.RunOptions(size=size, optimizer=optimizer, tol=0.0, learning_rate=1.0,
                                precision=precision)
        start = time.perf_counter()
        self.problem = gatys.setup(image.load(content), [image.load(style)], hp, opts,
                                   vgg_weights, jax.random.key(0))
        self.state = self._advance(1)  # compiles
        self.setup_seconds = time.perf_counter() - start
        self.shape = list(self.problem.content.shape)
        self.convention = vgg_weights.convention

    def _advance(self, steps: int):
        p = self.problem
        state = p.chunk(getattr(self, "state", p.state), jnp.int32(
            int(getattr(self, "state", p.state).step) + steps), p.data)
        return jax.block_until_ready(state)

    def time(self, steps: int) -> float:
        start = time.perf_counter()
        self.state = self._advance(steps)
        return time.perf_counter() - start

    def evaluation_flops(self) -> float:
        p = self.problem
        value_and_grad = jax.jit(jax.value_and_grad(
            functools.partial(gatys.objective, convention=self.convention)))
        cost = value_and_grad.lower(jnp.asarray(p.init), p.data).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        return float(cost["flops"])

    def evaluations_per_step(self) -> float:
        """L-BFGS: line-search trials of the last step (the first is the next step's value)."""
        info = getattr(self.state.opt_state[-1], "info", None)
        return float(info.num_linesearch_steps) if info is not None else 1.0


def conv_forward_flops(height: int, width: int, deepest: str = "conv5_1") -> float:
    """2 * multiply-adds of VGG-19's convolutions up to `deepest` on an H x W image."""
    total, h, w = 0.0, height, width
    for name, cin, cout in weights.CONV_LAYERS:
        if name.endswith("_1") and name != "conv1_1":
            h, w = h // 2, w // 2
        total += 2.0 * h * w * 9 * cin * cout
        if name == deepest:
            break
    return total


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of an n x n float32 matmul in XLA (the practical peak of this machine)."""
    a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f(a).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2.0 * n ** 3 / min(times)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    content, style = _images()
    vgg_weights = weights.load()
    peak = matmul_peak()
    rows = []
    for size, optimizer, precision in ((int(s), o, p) for s in FLAGS.sizes
                                       for o in FLAGS.optimizers for p in FLAGS.precisions):
        ours = JStyle(content, style, size, optimizer, vgg_weights, precision)
        peer = (Worker("pastiche_worker.py", content, style, size, optimizer,
                       venv_folder=FLAGS.peer_venv) if FLAGS.peer == "pastiche" else None)
        mine, theirs = alternate(ours, peer, FLAGS.rounds, FLAGS.steps)
        h, w = ours.shape[:2]
        flops = ours.evaluation_flops()
        step = statistics.median(mine)
        evals = ours.evaluations_per_step() if optimizer == "lbfgs" else 1.0
        bound = 2 * conv_forward_flops(h, w) / peak
        row = {
            "size": size, "shape": [h, w], "optimizer": optimizer, "precision": precision,
            "jstyle_step_s": step, "jstyle_compile_s": ours.setup_seconds,
            "jstyle_gflops_per_s": flops / step / 1e9 if optimizer == "adam" else None,
            "evaluation_gflop": flops / 1e9, "matmul_peak_gflops_per_s": peak / 1e9,
            "bound_step_s": bound, "jstyle_rounds_s": mine,
            "lbfgs_last_step_evaluations": evals if optimizer == "lbfgs" else None,
            "jax": jax.__version__, "devices": str(jax.devices()),
        }
        if peer:
            row.update({"pastiche_step_s": statistics.median(theirs),
                        "pastiche_setup_s": peer.info["setup_seconds"],
                        "pastiche_rounds_s": theirs, "torch": peer.info["torch"],
                        "torch_threads": peer.info["threads"],
                        "ratio_jstyle_over_pastiche": step / statistics.median(theirs)})
        print(json.dumps(row), flush=True)
        rows.append(row)
    table = markdown(rows)
    print(table)
    if FLAGS.markdown:
        pathlib.Path(FLAGS.markdown).write_text(table + "\n")


def markdown(rows: list[dict]) -> str:
    lines = ["| size (H x W) | optimiser | jstyle precision | jstyle s/step | pastiche s/step | "
             "ratio | jstyle compile s | jstyle GFLOP/s (matmul peak) | bound s/step |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        peer = r.get("pastiche_step_s")
        peer_cell = f"{peer:.3f}" if peer else "-"
        ratio_cell = f"{r['ratio_jstyle_over_pastiche']:.2f}x" if peer else "-"
        peak = f"{r['matmul_peak_gflops_per_s']:.0f}"
        rate = (f"{r['jstyle_gflops_per_s']:.0f} ({peak})" if r["jstyle_gflops_per_s"]
                else f"- ({peak})")
        lines.append(
            f"| {r['size']} ({r['shape'][0]} x {r['shape'][1]}) | {r['optimizer']} | "
            f"{r['precision']} | "
            f"{r['jstyle_step_s']:.3f} | {peer_cell} | {ratio_cell} | "
            f"{r['jstyle_compile_s']:.1f} | {rate} | {r['bound_step_s']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    app.run(main)
