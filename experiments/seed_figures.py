"""The seed's two figures: what total variation and histogram losses do to a Gatys result.

  python experiments/seed_figures.py --workdir=DIR \
      [--content=PATH --style=PATH] [--size=256 --steps=200] [--seed=0]

One content/style pair is stylised with w_TV in --tv_weights and, separately, with w_hist in
--hist_weights; everything else (jstyle's default objective, L-BFGS, the seed) is fixed, and the
setting with both weights 0 is shared by the two rows. The workdir gets:

  DIR/seed_figures.png   a labelled panel: content and style, then each setting (TV row on
                         top, histogram row below)
  DIR/seed_figures.json  per setting: the output's total variation (jstyle's L_tv of the
                         image in 8-bit levels: squared neighbour differences per position)
                         and the distance between the output's and the style's per-channel
                         activation statistics (mean and std) at the histogram layers; and
                         whether the expected effects hold
  DIR/images/*.png, DIR/runs/*.json   each setting's output and its run record

A rerun with the same workdir and flags reuses finished settings. With neither --content nor
--style it uses the command's built-in sample pair (scikit-image's chelsea and ihc).
Quick run: --size=64 --steps=10.
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import numpy as np
from absl import flags, logging

import common
from jstyle import image, results
from jstyle.ops import losses
from jstyle.nets import vgg
from jstyle.nets import weights as weights_lib
from jstyle.engine.session import Session
from jstyle.errors import InputError
from jstyle.methods import gatys

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Output folder (created; reruns resume).", required=True)
flags.DEFINE_string("content", None, "Content image (default: the built-in sample).")
flags.DEFINE_string("style", None, "Style image (default: the built-in sample).")
flags.DEFINE_integer("size", 256, "Longer edge of the outputs, pixels.")
flags.DEFINE_integer("steps", 200, "L-BFGS steps per setting.")
flags.DEFINE_integer("seed", 0, "Seed of the jax.random key (the same for every setting).")
flags.DEFINE_list("tv_weights", ["0", "0.001", "0.01"], "w_TV of the first row (the seed's).")
flags.DEFINE_list("hist_weights", ["0", "100", "500"], "w_hist of the second row (the seed's).")
flags.DEFINE_string("vgg_weights", None, "VGG-19 weights file (default: the cached download).")


def _name(tv: float, hist: float) -> str:
    return f"tv{tv:g}_hist{hist:g}"


def activation_statistics(img: np.ndarray, weights: weights_lib.VGGWeights, params: dict,
                          hp: gatys.GatysParams) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-channel mean and std of the normalised features the objective compares, at the
    histogram layers: {layer: (float[C], float[C])}. img: float[H, W, 3] in [0, 1]; params:
    `vgg.prepare(weights.params)`."""
    scales = gatys.layer_scales(weights, hp)
    feats = vgg.features(params, vgg.preprocess(image.to_levels(img), weights.convention),
                         hp.hist_layers, hp.pooling)
    return {l: (np.asarray(f.mean((0, 1)) / scales[l]), np.asarray(f.std((0, 1)) / scales[l]))
            for l, f in feats.items()}


def statistics_distance(a: dict, b: dict) -> dict[str, float]:
    """Per layer, the root mean square over channels of the differences of means and of stds,
    and their sum over layers ("total")."""
    out = {}
    for layer in a:
        (mu_a, sd_a), (mu_b, sd_b) = a[layer], b[layer]
        out[layer] = float(np.sqrt(np.mean((mu_a - mu_b) ** 2 + (sd_a - sd_b) ** 2)))
    out["total"] = sum(out.values())
    return out


def run_setting(workdir: pathlib.Path, content, style, hp, opts, weights, key):
    """The output of one setting (float[H, W, 3] in [0, 1]), computed or read back."""
    name = _name(float(hp.tv_weight), float(hp.hist_weight))
    png, record_path = workdir / "images" / f"{name}.png", workdir / "runs" / f"{name}.json"
    record = results.read_json(record_path)
    wanted = {"hyperparameters": dataclasses.asdict(hp), "options": dataclasses.asdict(opts)}
    if record is not None and png.exists():
        differ = results.differs(record, wanted)
        if differ:  # another figure's setting: computing it would replace that image
            raise InputError(f"--workdir={workdir} holds setting {name} made with other "
                             f"{' and '.join(differ)}; give a new --workdir, or remove its "
                             "images/ and runs/ to compute them again")
        logging.info("%s: reusing %s", name, png)
        return image.load(png), record
    logging.info("%s: running %d steps at %d px", name, opts.steps, opts.size)
    result = gatys.run(key, gatys.Inputs(content, [style]), hp, opts, weights,
                       session=Session())
    image.save(png, result.image)
    record = {**result.record, "history": result.history}
    results.write_json(record_path, record)
    return image.load(png), record  # exactly what was written (8-bit)


def _weights(name: str) -> list[float]:
    """The numbers of the list flag --name."""
    try:
        return [float(w) for w in getattr(FLAGS, name)]
    except ValueError:
        raise InputError(f"--{name}={','.join(getattr(FLAGS, name))} must be comma-separated "
                         f"numbers; give e.g. --{name}=0,0.01") from None


def main(argv):
    del argv
    workdir = pathlib.Path(FLAGS.workdir)
    tv_weights, hist_weights = _weights("tv_weights"), _weights("hist_weights")
    if FLAGS.content is None and FLAGS.style is None:
        content_path, style_path = image.sample_paths()
    elif FLAGS.content is None or FLAGS.style is None:
        raise InputError("give both --content and --style (or neither, for the sample)")
    else:
        content_path, style_path = pathlib.Path(FLAGS.content), pathlib.Path(FLAGS.style)
    base = gatys.GatysParams()
    opts = gatys.RunOptions(size=FLAGS.size, steps=FLAGS.steps, seed=FLAGS.seed,
                            print_every=max(1, FLAGS.steps // 4))
    for tv, hist in [(w, 0.0) for w in tv_weights] + [(0.0, w) for w in hist_weights]:
        gatys.validate(dataclasses.replace(base, tv_weight=tv, hist_weight=hist), opts, 1)
    common.check_workdir(workdir)
    content, style = image.load(content_path), image.load(style_path)
    weights = weights_lib.load(FLAGS.vgg_weights)
    (workdir / "images").mkdir(parents=True, exist_ok=True)
    (workdir / "runs").mkdir(exist_ok=True)

    key = jax.random.key(FLAGS.seed)
    styled_at_size = image.resize_to_edge(style, FLAGS.size)
    params = vgg.prepare(weights.params)
    style_stats = activation_statistics(styled_at_size, weights, params, base)

    def measure(tv, hist):
        hp = dataclasses.replace(base, tv_weight=tv, hist_weight=hist)
        out, record = run_setting(workdir, content, style, hp, opts, weights, key)
        return out, {
            "tv_weight": tv, "hist_weight": hist, "image": f"images/{_name(tv, hist)}.png",
            "total_variation": float(losses.total_variation(image.to_levels(out))),
            "stats_distance": statistics_distance(
                activation_statistics(out, weights, params, base), style_stats),
            "final_loss": record["final_loss"], "seconds": record["seconds"]}

    tv_row = [measure(w, 0.0) for w in tv_weights]
    hist_row = [measure(0.0, w) for w in hist_weights]

    tv_by_weight = [m["total_variation"] for _, m in sorted(tv_row, key=lambda r: r[1]["tv_weight"])]
    zero_hist = [m["stats_distance"]["total"] for _, m in hist_row if m["hist_weight"] == 0]
    effects = {
        "tv_falls_as_w_tv_rises": all(a > b for a, b in zip(tv_by_weight, tv_by_weight[1:])),
        "hist_closer_to_style_than_without": bool(zero_hist) and all(
            m["stats_distance"]["total"] < zero_hist[0]
            for _, m in hist_row if m["hist_weight"] > 0)}
    summary = {
        "content": str(content_path), "style": str(style_path), "size": FLAGS.size,
        "steps": FLAGS.steps, "seed": FLAGS.seed, "weights": weights.digest,
        "hyperparameters": dataclasses.asdict(base), "hist_layers": list(base.hist_layers),
        "tv": [m for _, m in tv_row], "hist": [m for _, m in hist_row], "effects": effects}
    panel = results.contact_sheet([
        [(image.resize_to_edge(content, FLAGS.size), "content"), (styled_at_size, "style")]
        + [(out, f"w_TV = {m['tv_weight']:g}  (TV {m['total_variation']:.0f})")
           for out, m in tv_row],
        [(None, ""), (None, "")]
        + [(out, f"w_hist = {m['hist_weight']:g}  (stats {m['stats_distance']['total']:.3f})")
           for out, m in hist_row]])
    image.save(workdir / "seed_figures.png", panel)
    results.write_json(workdir / "seed_figures.json", summary)
    logging.info("wrote %s and %s; effects: %s", workdir / "seed_figures.png",
                 workdir / "seed_figures.json", effects)


if __name__ == "__main__":
    common.run("seed_figures", main, "the finished settings are kept: rerun the same command "
               "to do the rest")
