"""Flicker of a stylised clip: Lai et al. 2018's warping error, reproducibly.

  python benchmarks/video_metrics.py --original=CLIP --stylised=CLIP [--flow_preset=medium]

Each CLIP is a video file, a folder of frames or a printf pattern (as `jstyle --content`
takes). The original frames are resized to the stylised ones' size; the flow and the
occlusions come from the ORIGINAL frames (OpenCV DIS, the authors' consistency check), so the
number does not depend on the method measured. Prints one JSON object: E_warp
(`jstyle.ops.flow.warping_error`, every choice documented there), each pair's error, and the
original clip's own E_warp for scale.
"""

from __future__ import annotations

import functools
import json

import numpy as np
from absl import app, flags

flags.DEFINE_string("original", None, "The clip before stylisation.")
flags.DEFINE_string("stylised", None, "The stylised clip (frame for frame).")
flags.DEFINE_string("flow_preset", "medium", "OpenCV DIS preset of the flow.")
flags.mark_flags_as_required(["original", "stylised"])
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from jstyle import image
    from jstyle.image import clips
    from jstyle.ops import flow
    from jstyle.errors import JStyleError
    try:
        stylised, _ = clips.read(FLAGS.stylised)
        original, _ = clips.read(FLAGS.original, count=len(stylised))
    except JStyleError as e:
        raise SystemExit(f"video_metrics: error: {e}")
    if len(original) != len(stylised):
        raise SystemExit(f"video_metrics: error: {len(original)} original frames for "
                         f"{len(stylised)} stylised ones; give clips of the same length")
    original = [image.resize(f, *stylised[0].shape[:2]) for f in original]
    flow_fn = functools.partial(flow.dis_flow, preset=FLAGS.flow_preset)
    pairs = [flow.warping_error(original[t - 1:t + 1], stylised[t - 1:t + 1], flow_fn)
             for t in range(1, len(stylised))]
    print(json.dumps({"e_warp": float(np.mean(pairs)) if pairs else 0.0, "pairs": pairs,
                      "e_warp_original": flow.warping_error(original, original, flow_fn),
                      "frames": len(stylised), "size": list(stylised[0].shape[:2]),
                      "flow": f"DIS {FLAGS.flow_preset}"}))


if __name__ == "__main__":
    app.run(main)
