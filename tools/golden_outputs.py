"""Golden outputs: tiny, seeded runs of every method through its command, to show that a
refactoring left behaviour unchanged.

  python tools/golden_outputs.py --workdir=DIR                 # record
  python tools/golden_outputs.py --workdir=DIR2 --compare=DIR  # record again and compare

The cases (the built-in sample pair, 32-64 px, a few steps each): gatys plain, with
histogram loss, with semantic masks, coarse to fine, the neural-style preset; mrf; analogy
(both directions); harmonize (a patch of the content pasted into the style); video on a
3-frame clip panned across the content (single pass, sequential and parallel multi-pass); a
quick Gatys sweep; a fast network trained for 2 steps and its stylisation. Comparison: every image
identical or within one 8-bit level (a float summation order may change), every final loss
term within 1e-5 relative (1e-3 where the image differs by a level). Exits 1 on a difference.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
from absl import app, flags
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Where the outputs go (created).", required=True)
flags.DEFINE_string("compare", None, "A workdir recorded earlier to compare with.")

BASE = ["--size=48", "--steps=6", "--print_every=0"]
CASES = {
    "gatys": BASE,
    "gatys_adam_tv": [*BASE, "--optimizer=adam", "--tv_weight=0.01", "--init=noise"],
    "gatys_hist": [*BASE, "--hist_weight=10"],
    "gatys_masks": [*BASE, "--content_mask={d}/content_sem.png",
                    "--style_mask={d}/style_sem.png", "--hist_weight=10"],
    "gatys_pyramid": ["--size=64", "--pyramid_levels=2", "--pyramid_steps=3,3",
                      "--print_every=0", "--preserve_colors=luminance"],
    "gatys_neural_style": ["--preset=neural-style", *BASE],
    "mrf": ["--method=mrf", "--size=96", "--pyramid_levels=2", "--steps=3", "--print_every=0"],
    "mrf_masks": ["--method=mrf", "--size=64", "--pyramid_levels=1", "--steps=3",
                  "--print_every=0", "--content_mask={d}/content_sem.png",
                  "--style_mask={d}/style_sem.png"],
    "analogy": ["--method=analogy", "--size=48", "--steps=3", "--iterations=2",
                "--print_every=0"],
    "harmonize": ["--method=harmonize", "--preset=quick", "--content={d}/composite.png",
                  "--mask={d}/mask.png", "--size=64", "--steps=3", "--pass1_steps=3",
                  "--print_every=0"],
}
VIDEO = ["--method=video", "--preset=quick", "--content={d}/clip/frame_%04d.png", "--size=40",
         "--first_frame_steps=3", "--steps=2", "--print_every=0"]
CLIPS = {  # runs whose --output is a folder of frames
    "video": VIDEO,
    "video_multipass": [*VIDEO, "--passes=2", "--temporal_after=2"],
    "video_parallel": [*VIDEO, "--passes=2", "--temporal_after=2", "--pass_mode=parallel"],
}


def _inputs(folder: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """The sample pair at 64 px, with two-region label maps beside them."""
    from jstyle import image
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, source in zip(("content", "style"), image.sample_paths()):
        pixels = np.round(image.load(source, 64) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{name}.png")
        label = np.zeros_like(pixels)
        label[:, : label.shape[1] // 2], label[:, label.shape[1] // 2:] = (230, 20, 20), (20, 20, 230)
        Image.fromarray(label if name == "content" else label[::-1, ::-1]).save(
            folder / f"{name}_sem.png")
        paths.append(folder / f"{name}.png")
    content, style = (np.asarray(Image.open(p)) for p in paths)
    composite = style.copy()  # a patch of the content pasted into the painting
    composite[16:40, 20:44] = content[8:32, 8:32]
    mask = np.zeros(style.shape[:2], np.uint8)
    mask[16:40, 20:44] = 255
    Image.fromarray(composite).save(folder / "composite.png")
    Image.fromarray(mask).save(folder / "mask.png")
    (folder / "clip").mkdir(exist_ok=True)
    for t in range(3):  # a window panning 4 px a frame
        Image.fromarray(content[:, 4 * t:4 * t + 48]).save(folder / "clip" / f"frame_{t + 1:04d}.png")
    return paths[0], paths[1]


def _run(args: list[str]) -> None:
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")


def record(workdir: pathlib.Path) -> None:
    inputs = workdir / "inputs"
    content, style = _inputs(inputs)
    for name, args in CASES.items():
        _run(["-m", "jstyle", f"--content={content}", f"--style={style}",
              f"--output={workdir / name}.png", *[a.format(d=inputs) for a in args]])
    for name, args in CLIPS.items():
        _run(["-m", "jstyle", f"--style={style}", f"--output={workdir / name}",
              *[a.format(d=inputs) for a in args]])
    _run([str(ROOT / "experiments" / "gatys_sweep.py"), f"--workdir={workdir / 'sweep'}",
          "--grid=quick", "--size=32", "--steps=4", "--batch_size=2", f"--content={content}",
          f"--style={style}"])
    _run(["-m", "jstyle", "train", f"--style={style}", f"--data_dir={inputs}",
          f"--workdir={workdir / 'train'}", "--steps=2", "--size=32", "--print_every=1"])
    _run(["-m", "jstyle", "--method=fast", f"--model={workdir / 'train' / 'model.msgpack'}",
          f"--content={content}", f"--output={workdir / 'fast.png'}"])


def _pairs(workdir: pathlib.Path) -> list[tuple[str, pathlib.Path, dict]]:
    """(name, image, final loss terms) of every output in `workdir`."""
    found = []
    for name in [*CASES, "fast"]:
        rec = json.loads((workdir / f"{name}.json").read_text())
        found.append((name, workdir / f"{name}.png", rec.get("final_loss", {})))
        for other, path in rec.get("images", {}).items():  # analogy's B, harmonize's pass 1
            if other != "output":
                found.append((f"{name}_{other}", workdir / pathlib.Path(path).name, {}))
    for name in CLIPS:
        for frame in sorted((workdir / name).glob("frame_*.png")):
            rec = json.loads(frame.with_suffix(".json").read_text())
            found.append((f"{name}/{frame.stem}", frame, rec.get("final_loss", {})))
    for point in sorted((workdir / "sweep" / "points").glob("*.json")):
        rec = json.loads(point.read_text())
        found.append((f"sweep/{point.stem}", workdir / "sweep" / "images" / f"{point.stem}.png",
                      rec["final_loss"]))
    return found


def compare(new: pathlib.Path, old: pathlib.Path) -> list[str]:
    """The differences between two recorded workdirs, one line each."""
    problems = []
    before = {name: (png, loss) for name, png, loss in _pairs(old)}
    for name, png, loss in _pairs(new):
        old_png, old_loss = before[name]
        a = np.asarray(Image.open(png), np.int32)
        b = np.asarray(Image.open(old_png), np.int32)
        if a.shape != b.shape:
            problems.append(f"{name}: shape {a.shape} != {b.shape}")
            continue
        levels = int(np.abs(a - b).max())
        if levels > 1:
            problems.append(f"{name}: image differs by up to {levels} levels")
        rtol = 1e-5 if levels == 0 else 1e-3
        for term, value in old_loss.items():
            if not np.isclose(loss.get(term, np.nan), value, rtol=rtol, atol=1e-12):
                problems.append(f"{name}: final {term} {loss.get(term)} != {value}")
        print(f"{name}: max difference {levels} level(s)")
    return problems


def main(argv):
    del argv
    workdir = pathlib.Path(FLAGS.workdir)
    if workdir.exists():  # earlier goldens are kept: a record is never replaced
        raise SystemExit(f"golden_outputs: error: --workdir={workdir} exists; give a new "
                         "folder, or remove it")
    record(workdir)
    if FLAGS.compare:
        problems = compare(workdir, pathlib.Path(FLAGS.compare))
        for line in problems:
            print(line)
        print("unchanged" if not problems else f"{len(problems)} difference(s)")
        sys.exit(1 if problems else 0)


if __name__ == "__main__":
    app.run(main)
