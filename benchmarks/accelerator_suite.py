"""Every benchmark of benchmarks/ in one command, sized for a short accelerator lease.

  python benchmarks/accelerator_suite.py --out=DIR                # about 8 minutes on an H200
  python benchmarks/accelerator_suite.py --out=DIR --mode=tiny    # seconds-sized, on any CPU

Accelerator time comes rarely and briefly, so one call measures everything: the Gatys step
(256 and 512 px, Adam and L-BFGS, float32 and bfloat16), L-BFGS's evaluations per step at
2048 px, and a 500-step 512 px L-BFGS run end to end through the command; the vmapped sweep
against sequential runs at K = 32; fast stylisation and training throughput; the exact NNF
against PatchMatch at relu3_1 of 1024 px; the CNNMRF step; Deep Image Analogy and Deep
Painterly Harmonization end to end; video (independent frames, the temporal single pass and
multi-pass: flicker and frames per second); peak memory up to 4096 px, whole and in tiles, in
float32 and bfloat16. The peers (PyTorch) are left out: the lent machine reaches no package
registry to install them (their ratios come from the CPU runs in the README). Each benchmark
runs in a child process; one that fails is recorded with its error and the others go on.

Writes DIR/suite.json (every benchmark's JSON lines, seconds, command, exit status, the device)
and DIR/suite.md (one table per benchmark). A later method adds its benchmark to BENCHMARKS.
"""

from __future__ import annotations

import concurrent.futures
import json
import pathlib
import subprocess
import sys
import time

from absl import app, flags

SCRIPTS = pathlib.Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Folder for suite.json and suite.md (created).", required=True)
flags.DEFINE_enum("mode", "accelerator", ["accelerator", "tiny"],
                  "accelerator: the sizes the README reports; tiny: smallest sizes, for tests.")
flags.DEFINE_list("only", None, "Run only these benchmarks (names in BENCHMARKS).")

# name -> (command after `python`, {mode: extra arguments})
BENCHMARKS = {
    "gatys_step": (["benchmarks/benchmark.py", "--peer=none"], {
        "accelerator": ["--sizes=256,512", "--optimizers=adam,lbfgs", "--steps=20",
                        "--rounds=5", "--precisions=float32,bfloat16"],
        "tiny": ["--sizes=32", "--optimizers=adam", "--steps=1", "--rounds=1",
                 "--precisions=bfloat16"]}),
    "lbfgs": (["benchmarks/lbfgs_benchmark.py"], {
        "accelerator": ["--runs=2048:optax,2048:jstyle", "--steps=50"],
        "tiny": ["--runs=32:jstyle", "--steps=2"]}),
    "gatys_run": (["-m", "jstyle", "--preset=classic", "--print_every=100"], {
        "accelerator": ["--size=512", "--steps=500", "--optimizer=lbfgs"],
        "tiny": ["--size=32", "--steps=2"]}),
    "sweep": (["benchmarks/sweep_benchmark.py"], {
        "accelerator": ["--size=256", "--points=32", "--optimizers=adam", "--steps=20",
                        "--devices=", "--rounds=1"],
        "tiny": ["--size=32", "--points=2", "--optimizers=adam", "--steps=1", "--devices=",
                 "--rounds=1"]}),
    "fast": (["benchmarks/fast_benchmark.py", "--peer=none", "--lite=false"], {
        "accelerator": ["--sizes=512x512,768x1024", "--rounds=5", "--repeats=3",
                        "--train_steps=20"],
        "tiny": ["--sizes=32x48", "--rounds=1", "--repeats=1", "--train_steps=1"]}),
    "nnf": (["benchmarks/nnf_benchmark.py"], {
        "accelerator": ["--sizes=1024", "--layers=relu3_1", "--curve=16,32"],
        "tiny": ["--sizes=48", "--layers=relu3_1", "--curve=2", "--iterations=2",
                 "--refine_iterations=1"]}),
    "mrf_step": (["benchmarks/mrf_benchmark.py", "--peer=none"], {
        "accelerator": ["--size=384", "--strides=2,1", "--steps=5", "--rounds=5"],
        "tiny": ["--size=64", "--strides=2", "--steps=1", "--rounds=1"]}),
    "analogy": (["benchmarks/analogy_benchmark.py"], {
        "accelerator": ["--size=448", "--runs=1:both,0.5:both"],
        "tiny": ["--size=32", "--runs=1:forward", "--iterations=1", "--deconv_steps=1"]}),
    "harmonize": (["benchmarks/harmonize_benchmark.py"], {
        "accelerator": ["--runs=quick,code"],
        "tiny": ["--size=96", "--runs=quick:2", "--polygon=100:50,350:50,350:250,100:250",
                 "--offset=0:0"]}),
    "video": (["benchmarks/video_benchmark.py"], {
        "accelerator": ["--sizes=256x192,450x350", "--frames=8"],
        "tiny": ["--sizes=48x36", "--frames=2", "--first_frame_steps=1", "--steps=1",
                 "--variants=temporal"]}),
    "memory": (["benchmarks/memory_benchmark.py"], {
        "accelerator": ["--sizes=1024,2048,4096", "--steps=2", "--remats=no",
                        "--tiles=1,2", "--precisions=float32,bfloat16"],
        "tiny": ["--sizes=32", "--steps=1"]}),
}


def _images(mode: str) -> list[str]:
    """Content and style flags: tubingen x starry_night where ../shared/images has them (the
    README's numbers), else the built-in sample (the benchmarks' own default)."""
    shared = ROOT.parent / "shared" / "images"
    content, style = shared / "content" / "tubingen.jpg", shared / "style" / "starry_night.jpg"
    if mode == "tiny" or not (content.exists() and style.exists()):
        from jstyle import image
        content, style = image.sample_paths()
    return [f"--content={content}", f"--style={style}"]


def run_one(name: str, out: pathlib.Path, mode: str) -> dict:
    """Runs one benchmark in a child process: its JSON lines, seconds and exit status."""
    command, extra = BENCHMARKS[name]
    args = [sys.executable, *command, *extra[mode]]
    if name != "fast" and name != "sweep":
        args += _images(mode)
    if name == "gatys_run":
        args.append(f"--output={out / 'gatys_run.png'}")
    if name == "video":
        args.append(f"--out={out / 'video'}")
    started = time.perf_counter()
    child = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    lines = [json.loads(l) for l in child.stdout.splitlines() if l.startswith("{")]
    entry = {"name": name, "command": args[1:], "returncode": child.returncode,
             "seconds": time.perf_counter() - started, "lines": lines}
    if name == "gatys_run" and child.returncode == 0:
        record = json.loads((out / "gatys_run.json").read_text())
        entry["lines"] = [{k: record[k] for k in ("size", "steps", "seconds", "stopped")}
                          | {"final_total": record["final_loss"]["total"]}]
    if child.returncode != 0:
        entry["error"] = child.stderr.strip().splitlines()[-1:] or ["(no output)"]
    return entry


def table(entry: dict) -> str:
    """One benchmark's Markdown: a heading with its command, then its JSON lines as rows."""
    head = (f"### {entry['name']} ({entry['seconds']:.0f} s)\n\n"
            f"`python {' '.join(entry['command'])}`\n")
    if "error" in entry:
        return head + f"\nfailed (exit {entry['returncode']}): {entry['error'][0]}\n"
    rows = [l for l in entry["lines"] if isinstance(l, dict)]
    keys = list(dict.fromkeys(k for r in rows for k in r
                              if not isinstance(r[k], (dict, list))))
    show = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(show(r.get(k, "")) for k in keys) + " |" for r in rows]
    return head + "\n" + "\n".join(lines) + "\n"


def main(argv):
    del argv
    import jax
    out = pathlib.Path(FLAGS.out)
    out.mkdir(parents=True, exist_ok=True)
    names = FLAGS.only or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"accelerator_suite: error: unknown benchmark {unknown[0]}; choose from "
              f"{', '.join(BENCHMARKS)}", file=sys.stderr)
        sys.exit(2)
    device = f"{jax.devices()[0].device_kind} ({jax.default_backend()})"
    entries = []

    def one(name: str) -> dict:
        print(f"accelerator_suite: {name} ...", file=sys.stderr, flush=True)
        return run_one(name, out, FLAGS.mode)

    # On the accelerator one benchmark at a time, so that none disturbs another's timing; the
    # tiny mode only checks that each runs, two at a time (most of a tiny run is starting
    # Python and compiling, which leave the second core idle).
    with concurrent.futures.ThreadPoolExecutor(2 if FLAGS.mode == "tiny" else 1) as pool:
        for entry in pool.map(one, names):
            entries.append(entry)
            suite = {"device": device, "mode": FLAGS.mode, "benchmarks": entries}
            (out / "suite.json").write_text(json.dumps(suite, indent=2))  # kept if killed
    (out / "suite.md").write_text(f"Device: {device}, mode {FLAGS.mode}\n\n"
                                  + "\n".join(table(e) for e in entries))
    failed = [e["name"] for e in entries if "error" in e]
    print(f"accelerator_suite: {len(entries) - len(failed)} of {len(entries)} benchmarks ran"
          + (f"; failed: {', '.join(failed)}" if failed else ""), file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    app.run(main)
