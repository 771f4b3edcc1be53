"""Deep Painterly Harmonization at 700 px: time and peak memory per pass.

  python benchmarks/harmonize_benchmark.py [--runs=quick,code:100] [--size=700] [--markdown=FILE]

Makes the README's composite (tools/make_composite.py: Hoover Tower pasted into The Starry
Night, about 10% of the painting) at --size, then runs `jstyle --method=harmonize` once per
--runs entry, each in a fresh process (so its peak memory is its own): PRESET runs the preset
as it is; PRESET:N runs N iterations of each pass and reports the time per iteration and what
the preset's own iteration counts would take at that rate (measured, then multiplied: the
"code" preset's 1000 + 1000 iterations take about an hour on 2 CPU cores). Times include
compilation and the matching of each pass. Peak memory is the process's resident peak after
each pass (pass 2's is the larger of the two passes'). The authors' code needs CUDA, so no
peer runs beside it on a CPU.

Output: one JSON line per run on stdout, and a Markdown table (--markdown).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import tempfile
import time

from absl import app, flags

ROOT = pathlib.Path(__file__).resolve().parent.parent

flags.DEFINE_list("runs", ["quick", "code:100"], "Runs, each PRESET or PRESET:ITERATIONS.")
flags.DEFINE_integer("size", 700, "Longer edge of the painting, pixels (the code's "
                     "-image_size).")
flags.DEFINE_string("content", None, "Photo to cut the object from (default: "
                    "make_composite.py's).")
flags.DEFINE_string("style", None, "Painting (default: make_composite.py's).")
flags.DEFINE_list("polygon", None, "The object's outline, x:y photo pixels (default: "
                  "make_composite.py's, for its photo).")
flags.DEFINE_string("offset", None, "dx:dy from photo to painting (default: make_composite.py's).")
flags.DEFINE_string("workdir", None, "Where the composite and the outputs go (default: a "
                    "temporary folder).")
flags.DEFINE_string("markdown", None, "Also write the Markdown table here.")
FLAGS = flags.FLAGS


def _run(folder: pathlib.Path, entry: str) -> dict:
    from jstyle.methods import harmonize
    preset, _, iterations = entry.partition(":")
    hp, opts = harmonize.PRESETS[preset]
    out = folder / f"{preset}{'_' + iterations if iterations else ''}.png"
    args = [sys.executable, "-m", "jstyle", "--method=harmonize", f"--preset={preset}",
            f"--content={folder / 'composite.png'}", f"--style={folder / 'painting.png'}",
            f"--mask={folder / 'mask.png'}", f"--output={out}", f"--size={FLAGS.size}",
            "--print_every=0"]
    if iterations:
        args += [f"--pass1_steps={iterations}", f"--steps={iterations}"]
    for stale in (out, out.with_suffix(".json")):
        stale.unlink(missing_ok=True)
    started = time.perf_counter()
    subprocess.run(args, check=True)
    wall = time.perf_counter() - started
    record = json.loads(out.with_suffix(".json").read_text())
    full = (hp.pass1_steps, opts.steps)
    passes = []
    for p, own in zip(record["passes"], full):
        per_step = (p["seconds"] - p["matching_seconds"]) / p["steps"]
        passes.append({"pass": p["pass"], "crop": p["crop"], "steps": p["steps"],
                       "matching_seconds": p["matching_seconds"], "seconds": p["seconds"],
                       "seconds_per_step": round(per_step, 3),
                       "preset_seconds": round(p["matching_seconds"] + own * per_step, 1),
                       "peak_rss_gib": p["peak_rss_gib"]})
    return {"run": entry, "size": record["size"], "object_fraction": record["tight_fraction"],
            "loose_fraction": record["loose_fraction"], "wall_seconds": round(wall, 1),
            "passes": passes, "output": str(out)}


def _markdown(rows: list[dict]) -> str:
    lines = ["| run | pass | crop (rows x cols) | iterations | matching | time | s / iteration "
             "| preset's iterations at that rate | peak RSS |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for p in r["passes"]:
            top, bottom, left, right = p["crop"]
            lines.append(f"| {r['run']} | {p['pass']} | {bottom - top} x {right - left} | "
                         f"{p['steps']} | {p['matching_seconds']:.1f} s | {p['seconds']:.0f} s "
                         f"| {p['seconds_per_step']:.2f} | {p['preset_seconds'] / 60:.1f} min | "
                         f"{p['peak_rss_gib']:.2f} GiB |")
        lines.append(f"| {r['run']} | whole command | | | | {r['wall_seconds']:.0f} s | | | |")
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as scratch:
        folder = pathlib.Path(FLAGS.workdir or scratch)
        given = {"photo": FLAGS.content, "painting": FLAGS.style, "offset": FLAGS.offset,
                 "polygon": ",".join(FLAGS.polygon) if FLAGS.polygon else None}
        subprocess.run([sys.executable, str(ROOT / "tools" / "make_composite.py"),
                        f"--out={folder}", f"--size={FLAGS.size}",
                        *(f"--{k}={v}" for k, v in given.items() if v)], check=True)
        rows = []
        for entry in FLAGS.runs:
            rows.append(_run(folder, entry))
            print(json.dumps(rows[-1]), flush=True)
    table = _markdown(rows)
    print(table)
    if FLAGS.markdown:
        pathlib.Path(FLAGS.markdown).write_text(table)


if __name__ == "__main__":
    app.run(main)
