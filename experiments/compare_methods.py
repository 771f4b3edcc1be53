"""Experiment 2: every method side by side on common content/style pairs.

  python experiments/compare_methods.py --workdir=DIR [--size=256] [--steps=N] \
      [--content_dir=DIR --style_dir=DIR] [--methods=gatys,mrf,fast] \
      [--fast_data_dir=PHOTOS --fast_steps=400 --fast_size=128]

Each of jstyle's methods (and any --methods=mypackage.mymethod) runs with its default preset
(`--steps` overrides the steps of every method that has steps, for quick runs) on each pair,
as the `jstyle` command in a child process, so that its wall time and peak resident memory
are its own. The fast network (Johnson et al.) is trained once per style first (`jstyle train` in a child process, on the
photos of --fast_data_dir, by default the first content photo's folder: a demonstration-grade
model; give a COCO folder and more steps for a real one), then stylises each photo in one
pass; its training time and memory are listed beside its stylisation's. One evaluator then
measures every output the same way, on the same VGG-19 layers:

  content_distance  |F(O) - F(C)|^2 / |F(C)|^2 at relu4_2, O and C at the output's size
  style_distance    the mean over relu1_1 ... relu5_1 of |G(O) - G(S)|^2 / |G(S)|^2, with
                    G = F^T F / (H W) and S at the output's size (a Gram matrix compares
                    feature statistics, so the sizes need not match)

The inputs' own distances are listed too (method "content": the photo itself, "style": the
painting resized to the photo), as the two ends of the scale. Pairs: with --content_dir and
--style_dir every content with every style; otherwise tubingen x starry_night,
brad_pitt x picasso_selfport1907 and golden_gate x the_scream from ../shared/images when present,
else the built-in sample pair. `harmonize` (Deep Painterly Harmonization) needs a composite
and its mask, so it runs on the extra rows of --composites only (folders that
scripts/make_composite.py writes), measured against the composite and the painting. A method
whose content is a clip (`video`, Ruder et al.) runs on a clip filmed from each pair's photo
(scripts/make_clip.py: --video_frames frames of a panning, zooming window with a disc crossing
it, 4:3 at --size), measured on its middle frame, with its flicker (E_warp,
`jstyle.flow.warping_error`) added.

The workdir (jstyle.results.load_metrics reads metrics.jsonl):
  images/<method>__<pair>.png and .json   each output and the command's record of it
  images/video__<pair>/                   a clip method's frames, video.mp4 and video.json
  clips/<pair>/frame_%04d.png             the clip filmed from the pair's photo
  models/<style>-<steps>x<size>/          the fast network trained for a style
  metrics.jsonl                           one line per method and pair: distances, seconds,
                                          wall seconds, peak memory (MiB), steps (fast:
                                          train_steps, train_wall_seconds,
                                          train_peak_memory_mib)
  grid.png                                rows: pairs; columns: content, style, each method
A rerun with the same workdir and flags reuses finished runs.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

import common

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "scripts"))
from jstyle import flow, image, interrupt, losses, methods, results, vgg
from jstyle import weights as weights_lib
from jstyle.errors import JStyleError

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Output folder (created; reruns resume).", required=True)
flags.DEFINE_integer("size", 256, "Longer edge of the outputs, pixels.")
flags.DEFINE_integer("steps", None, "Steps of every method, of each pass for harmonize "
                     "(default: each preset's).")
flags.DEFINE_string("content_dir", None, "Folder of content images (with --style_dir).")
flags.DEFINE_string("style_dir", None, "Folder of style images (with --content_dir).")
flags.DEFINE_list("methods", None, "Methods to run (default: every registered one).")
flags.DEFINE_string("fast_data_dir", None, "Photos the fast network trains on (default: the "
                    "folder of the first pair's content photo).")
flags.DEFINE_integer("fast_steps", 400, "Training steps of each style's fast network.")
flags.DEFINE_integer("fast_size", 128, "Crop edge of the fast network's training, pixels.")
flags.DEFINE_string("vgg_weights", None, "VGG-19 weights file (default: the cached download).")
flags.DEFINE_integer("video_frames", 4, "Frames of the clip a clip method stylises per pair.")
flags.DEFINE_list("composites", [], "Extra rows for harmonize: folders each holding "
                  "composite.png, painting.png and mask.png (scripts/make_composite.py).")

DEFAULT_PAIRS = [("tubingen", "starry_night"), ("brad_pitt", "picasso_selfport1907"),
                 ("golden_gate", "the_scream")]
CONTENT_LAYER = "relu4_2"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
FAST = "fast"  # needs a model: a network is trained per style (jstyle train) first
COMPOSITE = "harmonize"  # needs a composite and its mask: runs on the --composites rows only
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclasses.dataclass(frozen=True)
class Pair:
    name: str
    content: pathlib.Path
    style: pathlib.Path
    mask: pathlib.Path | None = None  # a --composites row: the pasted object's mask


def _images(folder: str) -> list[pathlib.Path]:
    found = sorted(p for p in pathlib.Path(folder).iterdir()
                   if p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise JStyleError(f"no images in {folder}; give a folder of .jpg or .png files")
    return found


def pairs() -> list[Pair]:
    """The content/style pairs of this run (see the module docstring)."""
    if (FLAGS.content_dir is None) != (FLAGS.style_dir is None):
        raise JStyleError("give both --content_dir and --style_dir, or neither")
    if FLAGS.content_dir is not None:
        return [Pair(f"{c.stem}-{s.stem}", c, s) for c in _images(FLAGS.content_dir)
                for s in _images(FLAGS.style_dir)]
    shared = [(common.shared_image("content", c), common.shared_image("style", s))
              for c, s in DEFAULT_PAIRS]
    found = [Pair(f"{c.stem}-{s.stem}", c, s) for c, s in shared if c and s]
    if found:
        return found
    c, s = image.sample_paths()
    return [Pair("sample", c, s)]


def _child(args: list[str], label: str) -> dict:
    """Runs `jstyle ARGS` in a child process: its wall seconds and peak resident memory (MiB).

    Raises:
      JStyleError: the command failed (its last line of stderr is quoted).
    """
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "jstyle", *args], stderr=subprocess.PIPE,
                             text=True)
    try:
        stderr = child.stderr.read()
        _, status, usage = os.wait4(child.pid, 0)
    except KeyboardInterrupt:  # stop the child too: its half-done output is never kept
        child.terminate()
        child.wait()
        raise
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        raise JStyleError(f"{label} failed (exit {code}): {last}")
    return {"wall_seconds": time.perf_counter() - started,
            "peak_memory_mib": usage.ru_maxrss / 1024}  # Linux: KiB


def train_fast(workdir: pathlib.Path, style: pathlib.Path, data_dir: pathlib.Path
               ) -> tuple[pathlib.Path, dict]:
    """Trains (or reuses) the fast network for `style` with `jstyle train` in a child process:
    the model file, and the training's steps, wall seconds and peak memory."""
    folder = workdir / "models" / f"{style.stem}-{FLAGS.fast_steps}x{FLAGS.fast_size}"
    args = ["train", f"--style={style}", f"--data_dir={data_dir}", f"--workdir={folder}",
            f"--steps={FLAGS.fast_steps}", f"--size={FLAGS.fast_size}",
            f"--print_every={max(1, FLAGS.fast_steps // 10)}"]
    if FLAGS.vgg_weights:
        args.append(f"--vgg_weights={FLAGS.vgg_weights}")
    model = folder / "model.msgpack"
    done = results.read_json(folder / "comparison.json")
    if done is None or done.get("args") != args or not model.exists():
        logging.info("fast: training for %s (%d steps)", style.stem, FLAGS.fast_steps)
        done = {"args": args, **_child(args, f"training fast for {style.stem}")}
        results.write_json(folder / "comparison.json", done)
    return model, {"train_steps": FLAGS.fast_steps, "train_wall_seconds": done["wall_seconds"],
                   "train_peak_memory_mib": done["peak_memory_mib"]}


def film(workdir: pathlib.Path, pair: Pair) -> list[np.ndarray]:
    """The clip filmed from the pair's photo (written once to clips/<pair>/), its frames."""
    import make_clip
    folder = workdir / "clips" / pair.name
    paths = [folder / f"frame_{t + 1:04d}.png" for t in range(FLAGS.video_frames)]
    if not all(p.exists() for p in paths):
        frames, forward, backward = make_clip.pan_zoom(
            image.load(pair.content), FLAGS.video_frames, FLAGS.size, round(FLAGS.size * 3 / 4),
            (3.0, 1.0), 1.01)
        make_clip.add_object(frames, forward, backward, image.load(pair.style), (-4.0, 2.0))
        folder.mkdir(parents=True, exist_ok=True)
        for p, f in zip(paths, frames):
            image.save(p, f)
    return [image.load(p) for p in paths]


def outputs_of(workdir: pathlib.Path, method: str, pair: Pair) -> tuple[pathlib.Path,
                                                                        pathlib.Path]:
    """(what --output names, the record's path) of a method on a pair."""
    if methods.takes_clips(methods.get(method)):
        folder = workdir / "images" / f"{method}__{pair.name}"
        return folder, folder / "video.json"
    out = workdir / "images" / f"{method}__{pair.name}.png"
    return out, out.with_suffix(".json")


def run_method(workdir: pathlib.Path, method: str, pair: Pair, fast_data: pathlib.Path) -> dict:
    """Runs (or reuses) one method on one pair in a child process: its record, with the
    child's wall seconds and peak resident memory added (for fast: the stylisation's, and
    its model's training's as train_*)."""
    out, record_path = outputs_of(workdir, method, pair)
    module = methods.get(method)
    options, takes = methods.options(module), methods.inputs(module)
    content = pair.content
    if methods.takes_clips(module):
        film(workdir, pair)
        content = workdir / "clips" / pair.name / "frame_%04d.png"
    args = [f"--method={method}", f"--content={content}", f"--output={out}"]
    args += [f"--style={pair.style}"] if "style" in takes else []
    if pair.mask is not None:  # harmonize: --steps counts in both passes
        args += [f"--mask={pair.mask}"] + ([f"--pass1_steps={FLAGS.steps}"] if FLAGS.steps
                                           else [])
    if methods.takes_clips(module) and FLAGS.steps:  # the first frame's steps too
        args.append(f"--first_frame_steps={FLAGS.steps}")
    args += [f"--size={FLAGS.size}"] if "size" in options else []
    args += ["--print_every=0"] if "print_every" in options else []
    args += [f"--steps={FLAGS.steps}"] if FLAGS.steps is not None and "steps" in options else []
    args += [f"--vgg_weights={FLAGS.vgg_weights}"] if FLAGS.vgg_weights and "weights" in takes \
        else []
    training = {}
    if method == FAST:
        model, training = train_fast(workdir, pair.style, fast_data)
        args.append(f"--model={model}")
    record = results.read_json(record_path)
    if (record is not None and record.get("comparison", {}).get("args") == args and out.exists()
            and (method != FAST or record["model_sha256"] == results.file_sha256(model))):
        logging.info("%s on %s: reusing %s", method, pair.name, out)
        return record
    logging.info("%s on %s: running", method, pair.name)
    measured = _child(args, f"{method} on {pair.name}")
    record = results.read_json(record_path)
    record["comparison"] = {"args": args, **measured, **training}
    results.write_json(record_path, record)
    return record


class Evaluator:
    """The common measure of every output (see the module docstring)."""

    def __init__(self, weights: weights_lib.VGGWeights):
        self.params = vgg.prepare(weights.params)
        self.convention = weights.convention
        self.features = jax.jit(lambda params, x: vgg.features(
            params, vgg.preprocess(x, self.convention), (CONTENT_LAYER, *STYLE_LAYERS)))

    def _features(self, img: np.ndarray) -> dict:
        return self.features(self.params, jnp.asarray(image.to_levels(img)))

    def distances(self, output: np.ndarray, content: np.ndarray, style: np.ndarray
                  ) -> dict[str, float]:
        """output float[H, W, 3] in [0, 1]; content and style any size (resized to H x W)."""
        h, w = output.shape[:2]
        o, c, s = (self._features(x) for x in (output, image.resize(content, h, w),
                                               image.resize(style, h, w)))
        content_distance = float(jnp.sum((o[CONTENT_LAYER] - c[CONTENT_LAYER]) ** 2)
                                 / jnp.sum(c[CONTENT_LAYER] ** 2))
        grams = [(losses.gram_matrix(o[l]), losses.gram_matrix(s[l])) for l in STYLE_LAYERS]
        style_distance = np.mean([float(jnp.sum((g - t) ** 2) / jnp.sum(t ** 2))
                                  for g, t in grams])
        return {"content_distance": content_distance, "style_distance": float(style_distance)}


def main(argv):
    del argv
    workdir = pathlib.Path(FLAGS.workdir)
    try:
        names = FLAGS.methods or list(methods.BUILTIN)
        for name in names:  # jstyle's, or a module path; an unknown one is an error here
            methods.get(name)
        todo = pairs() + [Pair(f"composite-{pathlib.Path(d).name}",
                                    pathlib.Path(d) / "composite.png",
                                    pathlib.Path(d) / "painting.png", pathlib.Path(d) / "mask.png")
                               for d in FLAGS.composites]
        fast_data = pathlib.Path(FLAGS.fast_data_dir or todo[0].content.parent)
        evaluator = Evaluator(weights_lib.load(FLAGS.vgg_weights))
        (workdir / "images").mkdir(parents=True, exist_ok=True)
        rows, lines, failures = [], [], []
        for pair in todo:
            content, style = image.load(pair.content), image.load(pair.style)
            shown = image.resize_to_edge(content, FLAGS.size)
            row = [(shown, f"{pair.content.stem}"),
                   (image.resize_to_edge(style, FLAGS.size), f"{pair.style.stem}")]
            base = {"pair": pair.name, "content": str(pair.content), "style": str(pair.style)}
            lines.append({**base, "method": "content",
                          **evaluator.distances(shown, content, style)})
            lines.append({**base, "method": "style", **evaluator.distances(
                image.resize(style, *shown.shape[:2]), content, style)})
            for method in names:
                if (method == COMPOSITE) != (pair.mask is not None):
                    continue  # harmonisation needs a composite; the others take none
                try:
                    record = run_method(workdir, method, pair, fast_data)
                except JStyleError as e:  # one method's failure does not stop the others
                    logging.error("%s", e)
                    failures.append(str(e))
                    lines.append({**base, "method": method, "error": str(e)})
                    row.append((None, f"{method} failed"))
                    continue
                out, _ = outputs_of(workdir, method, pair)
                if methods.takes_clips(methods.get(method)):  # its middle frame, and flicker
                    frames = film(workdir, pair)
                    stylised = [image.load(out / f"frame_{t + 1:04d}.png")
                                for t in range(len(frames))]
                    middle = len(frames) // 2
                    output = stylised[middle]
                    measured = {**evaluator.distances(output, frames[middle], style),
                                "e_warp": flow.warping_error(frames, stylised),
                                "e_warp_clip": flow.warping_error(frames, frames)}
                else:
                    output = image.load(out)
                    measured = evaluator.distances(output, content, style)
                lines.append({**base, "method": method, **measured,
                              **{k: record[k] for k in ("seconds", "steps", "preset")
                                 if k in record}, **record["comparison"]})
                row.append((output, f"{method}  c {measured['content_distance']:.2f}  "
                                    f"s {measured['style_distance']:.2f}"))
            rows.append(row)
    except (JStyleError, OSError) as e:
        common.fail("compare_methods", e)
    results.write_jsonl(workdir / "metrics.jsonl", lines)
    image.save(workdir / "grid.png", results.contact_sheet(rows))
    for l in lines:
        if "error" not in l:
            logging.info("%-8s %-32s content %.3f style %.3f%s", l["method"], l["pair"],
                         l["content_distance"], l["style_distance"],
                         f"  {l['seconds']:.1f}s  {l['peak_memory_mib']:.0f} MiB"
                         if "seconds" in l else "")
    if failures:
        print(f"compare_methods: {len(failures)} run(s) failed, listed in metrics.jsonl; "
              f"first: {failures[0]}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(interrupt.main("compare_methods", main, "the finished runs are kept: rerun "
                             "the same command to do the rest"))
