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
tools/make_composite.py writes), measured against the composite and the painting. A method
whose content is a clip (`video`, Ruder et al.) runs on a clip filmed from each pair's photo
(tools/make_clip.py: --video_frames frames of a panning, zooming window with a disc crossing
it, 4:3 at --size), measured on its middle frame, with its flicker (E_warp,
`jstyle.ops.flow.warping_error`) added.

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
A rerun with the same workdir and flags reuses finished runs. A run stopped by Ctrl-C or
SIGTERM keeps its finished runs, and the unfinished one's checkpoint where its method keeps
one (OUTPUT.ckpt.npz, video.ckpt.npz, a training's checkpoints/): the command's rules then
hold for the experiment as for one run, a rerun refuses to start over it, and a rerun with
--resume continues it.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags, logging

import common

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tools"))
from jstyle import image, methods, results
from jstyle.ops import flow
from jstyle.system import interrupt
from jstyle.ops import losses
from jstyle.engine import options as run_options
from jstyle.engine import session as session_lib
from jstyle.methods.fast import train
from jstyle.nets import vgg
from jstyle.nets import weights as weights_lib
from jstyle.errors import InputError, JStyleError

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
                  "composite.png, painting.png and mask.png (tools/make_composite.py).")
flags.DEFINE_bool("resume", False, "Continue the runs an interruption left unfinished from "
                  "their checkpoints (finished runs are always reused).")

DEFAULT_PAIRS = [("tubingen", "starry_night"), ("brad_pitt", "picasso_selfport1907"),
                 ("golden_gate", "the_scream")]
CONTENT_LAYER = "relu4_2"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
FAST = "fast"  # needs a model: a network is trained per style (jstyle train) first
COMPOSITE = "harmonize"  # needs a composite and its mask: runs on the --composites rows only


@dataclasses.dataclass(frozen=True)
class Pair:
    name: str
    content: pathlib.Path
    style: pathlib.Path
    mask: pathlib.Path | None = None  # a --composites row: the pasted object's mask


def _images(flag: str, folder: str) -> list[pathlib.Path]:
    if not pathlib.Path(folder).is_dir():
        raise InputError(f"--{flag}={folder} is not a folder; give a folder of .jpg or .png "
                         "files")
    found = sorted(p for p in pathlib.Path(folder).iterdir()
                   if p.suffix.lower() in image.IMAGE_SUFFIXES)
    if not found:
        raise InputError(f"no images in --{flag}={folder}; give a folder of .jpg or .png files")
    return found


def pairs() -> list[Pair]:
    """The content/style pairs of this run (see the module docstring)."""
    if (FLAGS.content_dir is None) != (FLAGS.style_dir is None):
        raise InputError("give both --content_dir and --style_dir, or neither")
    if FLAGS.content_dir is not None:
        return [Pair(f"{c.stem}-{s.stem}", c, s) for c in _images("content_dir", FLAGS.content_dir)
                for s in _images("style_dir", FLAGS.style_dir)]
    shared = [(common.shared_image("content", c), common.shared_image("style", s))
              for c, s in DEFAULT_PAIRS]
    found = [Pair(f"{c.stem}-{s.stem}", c, s) for c, s in shared if c and s]
    if found:
        return found
    c, s = image.sample_paths()
    return [Pair("sample", c, s)]


def composite_pairs() -> list[Pair]:
    """The --composites rows.

    Raises:
      InputError: a folder without its composite.png, painting.png and mask.png.
    """
    rows = []
    for d in map(pathlib.Path, FLAGS.composites):
        files = [d / f"{n}.png" for n in ("composite", "painting", "mask")]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise InputError(f"--composites={d} lacks {', '.join(missing)}; give folders that "
                             "tools/make_composite.py wrote")
        rows.append(Pair(f"composite-{d.name}", *files))
    return rows


def _child(args: list[str], label: str) -> dict:
    """Runs `jstyle ARGS` in a child process: its wall seconds and peak resident memory (MiB).
    The child runs in its own session: an interruption reaches it once, from here, so that it
    keeps its checkpoint (two signals could cut the checkpoint's writing short).

    Raises:
      JStyleError: the command failed (its last line of stderr is quoted).
      KeyboardInterrupt: this script was interrupted; the child was stopped the same way.
    """
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "jstyle", *args], stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
    try:
        stderr = child.stderr.read()
        _, status, usage = os.wait4(child.pid, 0)
    except KeyboardInterrupt:  # stop the child the same way: it keeps what it can resume from
        child.send_signal(interrupt.RECEIVED[-1] if interrupt.RECEIVED else signal.SIGINT)
        child.communicate()
        raise
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        raise JStyleError(f"{label} failed (exit {code}): {last}")
    return {"wall_seconds": time.perf_counter() - started,
            "peak_memory_mib": usage.ru_maxrss / 1024}  # Linux: KiB


def _model_folder(workdir: pathlib.Path, style: pathlib.Path) -> pathlib.Path:
    return workdir / "models" / f"{style.stem}-{FLAGS.fast_steps}x{FLAGS.fast_size}"


def _train_args(workdir: pathlib.Path, style: pathlib.Path, data_dir: pathlib.Path
                ) -> list[str]:
    args = ["train", f"--style={style}", f"--data_dir={data_dir}",
            f"--workdir={_model_folder(workdir, style)}", f"--steps={FLAGS.fast_steps}",
            f"--size={FLAGS.fast_size}", f"--print_every={max(1, FLAGS.fast_steps // 10)}"]
    return args + ([f"--vgg_weights={FLAGS.vgg_weights}"] if FLAGS.vgg_weights else [])


def _trained(workdir: pathlib.Path, style: pathlib.Path, data_dir: pathlib.Path) -> dict | None:
    """The record of the finished training of this run's fast network for `style`, or None."""
    folder = _model_folder(workdir, style)
    done = results.read_json(folder / "comparison.json")
    finished = done is not None and done.get("args") == _train_args(workdir, style, data_dir)
    return done if finished and (folder / "model.msgpack").exists() else None


def unfinished(workdir: pathlib.Path, method: str, pair: Pair, data_dir: pathlib.Path
               ) -> pathlib.Path | None:
    """Where an interrupted run of `method` on `pair` left what it continues from with
    --resume (its checkpoint; for fast, its network's unfinished training), or None."""
    if method == FAST:
        folder = _model_folder(workdir, pair.style)
        earlier = train.checkpoint_steps(folder) or any(
            (folder / n).exists() for n in train.EARLIER)
        return folder if earlier and _trained(workdir, pair.style, data_dir) is None else None
    out, _ = outputs_of(workdir, method, pair)
    checkpoint = session_lib.checkpoint_path(out, method)  # OUTPUT.ckpt.npz; a clip's folder:
    #   OUTPUT/<method>.ckpt.npz
    return checkpoint if checkpoint.exists() else None


def train_fast(workdir: pathlib.Path, style: pathlib.Path, data_dir: pathlib.Path
               ) -> tuple[pathlib.Path, dict]:
    """Trains (or reuses) the fast network for `style` with `jstyle train` in a child process
    (with --resume, continuing an unfinished training): the model file, and the training's
    steps, wall seconds and peak memory."""
    folder = _model_folder(workdir, style)
    args = _train_args(workdir, style, data_dir)
    model = folder / "model.msgpack"
    done = _trained(workdir, style, data_dir)
    if done is None:
        resume = ["--resume"] if FLAGS.resume and train.checkpoint_steps(folder) else []
        logging.info("fast: training for %s (%d steps%s)", style.stem, FLAGS.fast_steps,
                     ", resumed" if resume else "")
        done = {"args": args, **_child(args + resume, f"training fast for {style.stem}")}
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
    """Runs (or reuses) one method on one pair in a child process (with --resume, continuing
    its unfinished run): its record, with the child's wall seconds and peak resident memory
    added (for fast: the stylisation's, and its model's training's as train_*)."""
    out, record_path = outputs_of(workdir, method, pair)
    module = methods.get(method)
    options, takes = methods.options(module), methods.inputs(module)
    content = pair.content
    if methods.takes_clips(module):
        film(workdir, pair)
        content = workdir / "clips" / pair.name / "frame_%04d.png"
    args = [f"--method={method}", f"--content={content}", f"--output={out}"]
    args += [f"--style={pair.style}"] if "styles" in takes else []  # its Inputs' style images
    if pair.mask is not None:  # harmonize: --steps counts in both passes
        args += [f"--mask={pair.mask}"] + ([f"--pass1_steps={FLAGS.steps}"] if FLAGS.steps
                                           else [])
    if methods.takes_clips(module) and FLAGS.steps:  # the first frame's steps too
        args.append(f"--first_frame_steps={FLAGS.steps}")
    args += [f"--size={FLAGS.size}"] if "size" in options else []
    args += ["--print_every=0"] if "print_every" in options else []
    args += [f"--steps={FLAGS.steps}"] if FLAGS.steps is not None and "steps" in options else []
    args += [f"--vgg_weights={FLAGS.vgg_weights}"] if FLAGS.vgg_weights and \
        methods.uses_vgg(module) else []
    training = {}
    if method == FAST:
        model, training = train_fast(workdir, pair.style, fast_data)
        args.append(f"--model={model}")
    record = results.read_json(record_path)
    if (record is not None and record.get("comparison", {}).get("args") == args and out.exists()
            and (method != FAST or record["model_sha256"] == results.file_sha256(model))):
        logging.info("%s on %s: reusing %s", method, pair.name, out)
        return record
    resume = ["--resume"] if FLAGS.resume and method != FAST and \
        unfinished(workdir, method, pair, fast_data) else []
    logging.info("%s on %s: %s", method, pair.name, "resuming" if resume else "running")
    measured = _child(args + resume, f"{method} on {pair.name}")
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


PLANNED: dict = {}  # what this run does, once `plan` has checked it


def _pending(workdir: pathlib.Path, names: list[str], todo: list[Pair],
             fast_data: pathlib.Path) -> list[pathlib.Path]:
    """What the unfinished runs among these left behind to continue from (`unfinished`)."""
    return [found for pair in todo for method in names
            if (method == COMPOSITE) == (pair.mask is not None)
            and (found := unfinished(workdir, method, pair, fast_data))]


def plan(workdir: pathlib.Path) -> tuple[list[str], list[Pair], pathlib.Path]:
    """The methods, the pairs and the fast network's photos of this run, every flag and path
    checked and the command's rules on unfinished runs applied, before anything is written.

    Raises:
      InputError: a bad flag, path or method; an unfinished run without --resume, or --resume
        with none to continue.
    """
    given = {n: getattr(FLAGS, n) for n in ("size", "steps", "fast_steps", "fast_size",
                                            "video_frames") if getattr(FLAGS, n) is not None}
    run_options.check_at_least(given, 1, "give a positive whole number")
    names = FLAGS.methods or list(methods.BUILTIN)
    for name in names:  # jstyle's, or a module path; an unknown or broken one is an error here
        methods.get(name)
    common.check_workdir(workdir)
    todo = pairs() + composite_pairs()
    fast_data = pathlib.Path(FLAGS.fast_data_dir or todo[0].content.parent)
    if FAST in names and not fast_data.is_dir():
        raise InputError(f"--fast_data_dir={fast_data} is not a folder; give a folder of photos")
    PLANNED.update(workdir=workdir, names=names, todo=todo, fast_data=fast_data)
    pending = _pending(**PLANNED)
    if pending and not FLAGS.resume:
        raise InputError(f"{pending[0]} holds an unfinished run"
                         + (f" ({len(pending)} in all)" if len(pending) > 1 else "")
                         + "; rerun with --resume to continue it, or delete it to start over")
    if FLAGS.resume and not pending:
        raise InputError(f"--resume: {workdir} holds no unfinished run to continue; run "
                         "without --resume (finished runs are reused)")
    return names, todo, fast_data


def main(argv):
    del argv
    workdir = pathlib.Path(FLAGS.workdir)
    names, todo, fast_data = plan(workdir)
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


def _how_to_go_on() -> str:
    """After an interruption: --resume where a run was left unfinished, else a plain rerun."""
    kept = _pending(**PLANNED) if PLANNED else []
    if kept:
        return (f"the finished runs are kept and {kept[0]} holds the unfinished one: rerun the "
                "same command with --resume to continue")
    return "the finished runs are kept: rerun the same command to do the rest"


if __name__ == "__main__":
    common.run("compare_methods", main, _how_to_go_on)
