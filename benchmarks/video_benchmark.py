"""Video benchmark: independent frames against Ruder et al.'s temporal method (single pass)
and multi-pass, by flicker (E_warp) and time.

  python benchmarks/video_benchmark.py --out=DIR [--sizes=256x192,450x350 --frames=6]

The clip is filmed from --content by a window that pans and zooms, with a disc cut from another
photo crossing it (tools/make_clip.py: occlusions and disocclusions), and stylised with
--style by `jstyle.methods.video` in three ways, from the "quick" preset:
  independent  every frame from noise, --first_frame_steps each, no temporal term;
  temporal     the single-pass algorithm: frame 1 from noise (--first_frame_steps), later
               frames from the previous result warped (--steps), the temporal term on;
  multipass    --passes sequential passes of --pass_steps each, the temporal term from pass 2.
For each it reports E_warp (`flow.warping_error`: DIS flow and occlusion from the original
frames; the original clip's own E_warp is the floor), seconds per frame, and the seconds per
frame spent on optical flow (DIS in both directions and the consistency check). Writes
DIR/results.json, DIR/results.md and every variant's frames and mp4. On an accelerator it also
reports frames per second.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
import time

import jax
import numpy as np
from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tools"))
import make_clip  # noqa: E402

SHARED = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "images"

flags.DEFINE_string("out", None, "Output folder.")
flags.DEFINE_list("sizes", ["256x192", "450x350"], "Frame sizes, WIDTHxHEIGHT.")
flags.DEFINE_integer("frames", 6, "Frames per clip.")
flags.DEFINE_string("content", str(SHARED / "content" / "tubingen.jpg"), "Photo to film.")
flags.DEFINE_string("object", str(SHARED / "content" / "brad_pitt.jpg"),
                    "The moving disc's photo (if missing: the photo itself).")
flags.DEFINE_string("style", str(SHARED / "style" / "starry_night.jpg"), "Style image.")
flags.DEFINE_integer("first_frame_steps", 200, "Steps of a frame started from noise.")
flags.DEFINE_integer("steps", 100, "Steps of a later frame (temporal).")
flags.DEFINE_integer("passes", 3, "Multi-pass: passes.")
flags.DEFINE_integer("pass_steps", 50, "Multi-pass: steps per frame and pass.")
flags.DEFINE_list("variants", ["independent", "temporal", "multipass"], "What to run.")
flags.mark_flag_as_required("out")
FLAGS = flags.FLAGS


def clip(width: int, height: int) -> list[np.ndarray]:
    from jstyle import image
    frames, forward, backward = make_clip.pan_zoom(image.load(FLAGS.content), FLAGS.frames,
                                                   width, height, (3.0, 1.0), 1.01)
    disc = FLAGS.object if pathlib.Path(FLAGS.object).exists() else FLAGS.content
    make_clip.add_object(frames, forward, backward, image.load(disc), (-4.0, 2.0))
    return frames


def variant(name: str, width: int):
    from jstyle.methods import video
    hp, opts = video.PRESETS["quick"]
    opts = dataclasses.replace(opts, size=width, print_every=0)
    if name == "independent":
        return (dataclasses.replace(hp, temporal_weight=0.0, later_init="init",
                                    first_frame_steps=FLAGS.first_frame_steps),
                dataclasses.replace(opts, steps=FLAGS.first_frame_steps))
    if name == "temporal":
        return (dataclasses.replace(hp, first_frame_steps=FLAGS.first_frame_steps),
                dataclasses.replace(opts, steps=FLAGS.steps))
    return (dataclasses.replace(hp, passes=FLAGS.passes, temporal_after=2),
            dataclasses.replace(opts, steps=FLAGS.pass_steps, tol=0.0))


def main(argv):
    del argv
    from jstyle import image
    from jstyle.image import clips
    from jstyle.ops import flow
    from jstyle.engine.session import Session
    from jstyle.nets import weights
    from jstyle.methods import video
    out = pathlib.Path(FLAGS.out)
    out.mkdir(parents=True, exist_ok=True)
    vgg_weights = weights.load()
    style = image.load(FLAGS.style)
    rows = []
    for size in FLAGS.sizes:
        width, height = (int(v) for v in size.split("x"))
        frames = clip(width, height)
        floor = flow.warping_error(frames, frames)
        clips.encode_mp4(frames, 10.0, out / f"clip_{size}.mp4")
        for name in FLAGS.variants:
            hp, opts = variant(name, width)
            started = time.perf_counter()
            result = video.run(jax.random.key(opts.seed),
                               video.Inputs(clips.Clip(frames, 10.0), [style]), hp, opts,
                               vgg_weights, session=Session())
            seconds = time.perf_counter() - started
            stylised = list(result.images.values())
            folder = out / f"{name}_{size}"
            folder.mkdir(exist_ok=True)
            for k, f in result.images.items():
                image.save(folder / f"{k}.png", f)
            clips.encode_mp4(stylised, 10.0, folder / "video.mp4")
            last = [r for r in result.record["frames"] if r["pass"] == hp.passes]
            row = {
                "size": size, "variant": name, "frames": len(frames),
                "e_warp": flow.warping_error(frames, stylised), "e_warp_original": floor,
                "seconds_per_frame": seconds / len(frames),
                "flow_seconds_per_frame": result.record["flow_seconds"] / len(frames),
                "steps": result.record["steps"],
                "content_loss": float(np.mean([r["final_loss"]["content"] for r in last])),
                "style_loss": float(np.mean([r["final_loss"]["style"] for r in last])),
                "device": jax.devices()[0].device_kind}
            row["frames_per_second"] = 1.0 / row["seconds_per_frame"]
            rows.append(row)
            print(json.dumps(row), flush=True)
            (out / "results.json").write_text(json.dumps(rows, indent=2))
    lines = ["| size | variant | E_warp (original clip) | s / frame | flow s / frame | steps | "
             "content | style |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['size']} | {r['variant']} | {r['e_warp']:.5f} ({r['e_warp_original']:.5f}) "
              f"| {r['seconds_per_frame']:.1f} | {r['flow_seconds_per_frame']:.3f} | "
              f"{r['steps']} | {r['content_loss']:.3g} | {r['style_loss']:.3g} |" for r in rows]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
