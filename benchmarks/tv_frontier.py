"""The frontier behind the default TV and content weights: the default command's schedule and
objective at each pair of the two, as one sweep per image pair (jstyle.sweep: every setting a
point of one compiled program per level, coarse to fine as the default runs), every output
measured on the neutral evaluator (benchmarks/neutral.py) beside neural-style's published
output for the pair.

  python benchmarks/tv_frontier.py --images=../shared/images \
      --references=NEURAL_STYLE/examples/outputs --workdir=/tmp/tv_frontier

Writes under --workdir: one sweep folder per pair (jstyle.results: images, records, contact
sheet), frontier.json (a row per pair and setting: seconds, content, style, TV), frontier.md
(the table) and frontier.png (content, style and TV against the TV weight, a line per content
weight, neural-style's as dashed lines). A setting passes a pair when its content, style and
TV are each at or below neural-style's; the settings are printed last, ranked by their margin
over neural-style's (the default is the first). A rerun with the same workdir computes only
what is missing.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

from absl import app, flags

import neutral
from jstyle import image, sweep
from jstyle.engine.session import Session
from jstyle.methods import gatys
from jstyle.nets import weights as weights_lib

FLAGS = flags.FLAGS
flags.DEFINE_string("images", "../shared/images", "Folder with content/ and style/ images.")
flags.DEFINE_list("pairs", neutral.PUBLISHED_PAIRS,
                  "CONTENT:STYLE[:REFERENCE] file stems (and the reference's file name).")
flags.DEFINE_string("references", None, "Folder of neural-style's published outputs "
                    "(examples/outputs of jcjohnson/neural-style).")
flags.DEFINE_list("tv_weights", ["0", "0.001", "0.002", "0.005", "0.01", "0.02"],
                  "The TV weights (w_tv, on 8-bit levels) to run.")
flags.DEFINE_list("content_weights", ["3", "3.25", "3.5"],
                  "The content weights (alpha) to run each TV weight with.")
flags.DEFINE_string("preset", "jstyle", "The preset whose objective and schedule every point "
                    "runs, but for its TV weight.")
flags.DEFINE_integer("size", 512, "Output size, px.")
flags.DEFINE_integer("batch_size", 6, "Points per compiled program.")
flags.DEFINE_string("workdir", None, "Where the sweeps and the frontier go.", required=True)

TERMS = ("content", "style", "tv")


def points(hp: gatys.GatysParams) -> list[sweep.Point]:
    """Every content weight with every TV weight."""
    return [sweep.Point(f"cw{c}_tv{w}", {"content_weight": float(c), "tv_weight": float(w)},
                        dataclasses.replace(hp, content_weight=float(c), tv_weight=float(w)))
            for c in FLAGS.content_weights for w in FLAGS.tv_weights]


def plot(rows: list[dict], path: pathlib.Path, default: gatys.GatysParams) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(1, 3, figsize=(13, 5))
    pairs = list(dict.fromkeys(r["pair"] for r in rows))
    alphas = sorted({r["content_weight"] for r in rows if r["content_weight"] is not None})
    for colour, pair in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], pairs):
        reference = [r for r in rows if r["pair"] == pair and r["tv_weight"] is None]
        for alpha, style in zip(alphas, ["o:", "s--", "^-", "v-.", "d-"]):
            mine = sorted((r for r in rows if r["pair"] == pair
                           and r["content_weight"] == alpha), key=lambda r: r["tv_weight"])
            for ax, term in zip(axes, TERMS):
                ax.plot([r["tv_weight"] for r in mine], [r[term] for r in mine], style,
                        color=colour, markersize=4, linewidth=1,
                        label=f"{pair}, content weight {alpha:g}")
        for ax, term in zip(axes, TERMS):
            if reference:
                ax.axhline(reference[0][term], color=colour, linestyle="--", linewidth=1)
    for ax, term in zip(axes, TERMS):
        ax.axvline(default.tv_weight, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("symlog", linthresh=1e-3)
        ax.set_xlabel("TV weight")
        ax.set_title(f"{term} distance" if term != "tv" else "TV (0-255 levels)")
    figure.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=3,
                  fontsize=7)
    figure.suptitle("jstyle's default at each TV weight (solid), neural-style's published "
                    f"outputs (dashed); dotted: the {FLAGS.preset} preset's TV weight "
                    f"(content weight {default.content_weight:g})", fontsize=10)
    figure.tight_layout(rect=(0, 0.04 * (len(pairs) * len(alphas) / 3 + 1), 1, 1))
    figure.savefig(path, dpi=110)


def markdown(rows: list[dict]) -> str:
    lines = ["| pair | content weight | TV weight | seconds | content | style | TV |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        weights = ("neural-style | (published)" if r["tv_weight"] is None else
                   f"{r['content_weight']:g} | {r['tv_weight']:g}")
        seconds = "-" if r["seconds"] is None else f"{r['seconds']:.0f}"
        lines.append(f"| {r['pair']} | {weights} | {seconds} | {r['content']:.3f} | "
                     f"{r['style']:.3f} | {r['tv']:.0f} |")
    return "\n".join(lines)


def ranking(rows: list[dict]) -> str:
    """The settings by their margin over neural-style: the smallest, over the pairs and the
    three distances, of (neural-style's - ours) / neural-style's; a setting passes every pair
    where it is >= 0. The default is the setting of the largest margin."""
    references = {r["pair"]: r for r in rows if r["tv_weight"] is None}
    margins = {}
    for r in rows:
        if r["tv_weight"] is not None and r["pair"] in references:
            setting = (r["content_weight"], r["tv_weight"])
            worst = min((references[r["pair"]][t] - r[t]) / references[r["pair"]][t]
                        for t in TERMS)
            margins[setting] = min(margins.get(setting, worst), worst)
    lines = ["Margin over neural-style's published outputs (worst pair and distance; >= 0 "
             "passes every pair):"]
    for (alpha, tv), margin in sorted(margins.items(), key=lambda m: -m[1]):
        lines.append(f"  content weight {alpha:g}, TV weight {tv:g}: {margin:+.1%}")
    return "\n".join(lines)


def main(argv):
    del argv
    workdir = pathlib.Path(FLAGS.workdir)
    hp, opts = gatys.PRESETS[FLAGS.preset]
    opts = dataclasses.replace(opts, size=FLAGS.size, print_every=0)
    weights = weights_lib.load(None)
    rows, jobs = [], []
    for pair in neutral.pairs(FLAGS.pairs, FLAGS.images, FLAGS.references):
        folder = workdir / pair.name
        sweep.run(folder, image.load(pair.content), [image.load(pair.style)], points(hp), opts,
                  weights, axes={"content_weight": [float(c) for c in FLAGS.content_weights],
                                 "tv_weight": [float(w) for w in FLAGS.tv_weights]},
                  batch_size=FLAGS.batch_size, session=Session(method="sweep"),
                  extra={"experiment": "tv_frontier", "pair": pair.name})
        for point in points(hp):
            record = json.loads((folder / "points" / f"{point.name}.json").read_text())
            rows.append({"pair": pair.name, **point.coords, "seconds": record["seconds"]})
            jobs.append((folder / "images" / f"{point.name}.png", pair.content, pair.style))
        if pair.reference:
            rows.append({"pair": pair.name, "content_weight": None, "tv_weight": None,
                         "seconds": None})
            jobs.append((pair.reference, pair.content, pair.style))
    for row, distances in zip(rows, neutral.measure(jobs, FLAGS.size)):
        row.update({term: distances[term] for term in TERMS})
    (workdir / "frontier.json").write_text(json.dumps(rows, indent=2))
    table = markdown(rows)
    (workdir / "frontier.md").write_text(table + "\n")
    plot(rows, workdir / "frontier.png", hp)
    print(table)
    print(ranking(rows))


if __name__ == "__main__":
    app.run(main)
