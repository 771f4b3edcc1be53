"""A short clip whose motion is known: a crop window sliding and zooming over a photo.

  python tools/make_clip.py --out=DIR [--photo=P --frames=12 --size=256x192 --shift=3:1
      --zoom=1.01 --object=P2 --object_speed=-4:2]

Frame t shows the photo through a window whose top-left corner moves by --shift photo pixels
per frame and whose scale grows by --zoom per frame (bilinear sampling of the photo blurred
against aliasing), every window inside the photo (a --shift whose travel over --frames would
take more than half the photo is scaled down, and said so); with --object, a disc
cut from another photo crosses the frame at --object_speed px per frame (occluding and
disoccluding the background). The flow between frames is then known exactly:
DIR/frame_%04d.png (from 1, the authors' numbering), DIR/forward_%d_%d.flo and
DIR/backward_%d_%d.flo (the true flows, Middlebury files), DIR/reliable_%d_%d.pgm (their
consistency check, as the authors' makeOptFlow.sh writes it), all in the authors' naming, and
DIR/clip.mp4.
"""

from __future__ import annotations

import pathlib

import numpy as np
from absl import app, flags
from PIL import Image
from scipy import ndimage

SHARED = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "images"

FLAGS = flags.FLAGS


def fit_shift(photo_shape: tuple[int, ...], count: int, shift: tuple[float, float]
              ) -> tuple[float, float]:
    """`shift` (dx, dy photo pixels per frame), scaled down (direction kept) so that the
    window's travel over `count` frames takes at most half the photo along each axis: the
    rest is left for the window, so that every frame shows the photo."""
    ph, pw = photo_shape[:2]
    travel = [abs(d) * (count - 1) for d in shift]
    room = [(pw - 1) / 2, (ph - 1) / 2]
    factor = min([1.0] + [r / t for r, t in zip(room, travel) if t > r])
    return shift[0] * factor, shift[1] * factor


def pan_zoom(photo: np.ndarray, count: int, width: int, height: int, shift: tuple[float, float],
             zoom: float) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Frames of a moving window over `photo` (float[H, W, 3] in [0, 1]) and the true flows.

    Window t maps frame pixel (x, y) to photo point origin_t + scale_t (x, y), with origin_t =
    origin_0 + t * shift and scale_t = scale_0 * zoom^t. The windows' union is centred in the
    photo at the largest scale (less a 10% margin) that keeps every window inside it, so no
    frame samples beyond the photo; a shift too large for that is clamped (`fit_shift`). The
    photo is blurred by the smallest scale first (sigma (scale - 1) / 2, against aliasing).
    Returns:
      (frames float32[height, width, 3]; forward flows t -> t+1 and backward flows t+1 -> t,
      float32[height, width, 2] each, count - 1 of them).
    """
    if count < 1 or width < 2 or height < 2 or zoom <= 0:
        raise ValueError("give --frames >= 1, a --size of at least 2x2 and --zoom > 0")
    ph, pw, _ = photo.shape
    shift = fit_shift(photo.shape, count, shift)
    widest = max(1.0, zoom ** (count - 1))  # the largest window's scale, relative to scale_0
    # Along an axis of n photo pixels and d frame pixels, the windows span the travel
    # |shift| (count - 1) plus the widest window, scale_0 widest (d - 1), between the first
    # and last pixel centres (0 and n - 1): scale_0 is what fits, the margin centres it.
    travel = lambda s: abs(s) * (count - 1)
    fits = lambda n, d, s: (n - 1 - travel(s)) / ((d - 1) * widest)
    scale0 = 0.9 * min(fits(pw, width, shift[0]), fits(ph, height, shift[1]))
    margin = lambda n, d, s: (n - 1 - travel(s) - scale0 * widest * (d - 1)) / 2
    origin0 = np.array([margin(pw, width, shift[0]) + max(0.0, -shift[0]) * (count - 1),
                        margin(ph, height, shift[1]) + max(0.0, -shift[1]) * (count - 1)])
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    place = lambda t: (origin0 + t * np.array(shift), scale0 * zoom ** t)
    # a frame pixel spans `scale` photo pixels: blurred as a lens would, the photo's fine
    # detail does not alias into flicker that the true flow cannot carry
    sigma = max(0.0, (scale0 * min(1.0, zoom ** (count - 1)) - 1) / 2)
    photo = ndimage.gaussian_filter(photo, (sigma, sigma, 0)) if sigma > 0 else photo

    def frame(t):
        (ox, oy), s = place(t)
        coords = [oy + s * ys, ox + s * xs]
        return np.stack([ndimage.map_coordinates(photo[..., c], coords, order=1)
                         for c in range(3)], -1).astype(np.float32).clip(0, 1)

    def flow(a, b):
        (ax, ay), sa = place(a)
        (bx, by), sb = place(b)
        return np.stack([(ax + sa * xs - bx) / sb - xs, (ay + sa * ys - by) / sb - ys],
                        -1).astype(np.float32)

    frames = [frame(t) for t in range(count)]
    return (frames, [flow(t, t + 1) for t in range(count - 1)],
            [flow(t + 1, t) for t in range(count - 1)])


def add_object(frames: list[np.ndarray], forward: list[np.ndarray], backward: list[np.ndarray],
               sprite: np.ndarray, speed: tuple[float, float]) -> None:
    """Pastes a disc of `sprite` (float[h, w, 3] in [0, 1]; its centre, a third of the frame's
    height across) into every frame, moving `speed` (dx, dy) px per frame from the upper right,
    and sets the true flow of its pixels (in place). The background it uncovers keeps the
    camera's flow, which then fails the consistency check: a disocclusion."""
    height, width, _ = frames[0].shape
    radius = height / 6
    disc = ndimage.zoom(sprite, (2 * radius / sprite.shape[0], 2 * radius / sprite.shape[1], 1),
                        order=1, mode="nearest")[: int(2 * radius), : int(2 * radius)]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    centre = lambda t: (width * 0.75 + speed[0] * t, height * 0.35 + speed[1] * t)
    inside = lambda t: (xs - centre(t)[0]) ** 2 + (ys - centre(t)[1]) ** 2 <= radius ** 2
    for t, f in enumerate(frames):
        cx, cy = centre(t)
        coords = [ys - (cy - radius), xs - (cx - radius)]
        paint = np.stack([ndimage.map_coordinates(disc[..., c], coords, order=1, mode="nearest")
                          for c in range(3)], -1)  # its rim: the sprite's edge, not black
        f[inside(t)] = paint[inside(t)].clip(0, 1)
    for t in range(len(frames) - 1):
        forward[t][inside(t)] = speed
        backward[t][inside(t + 1)] = (-speed[0], -speed[1])


def main(argv):
    del argv
    from jstyle import image
    from jstyle.image import clips
    from jstyle.ops import flow
    width, height = (int(v) for v in FLAGS.size.split("x"))
    shift = tuple(float(v) for v in FLAGS.shift.split(":"))
    photo = image.load(FLAGS.photo)
    if fit_shift(photo.shape, FLAGS.frames, shift) != shift:
        print("the window's travel over --frames={} would leave too little of the photo; "
              "--shift clamped to {:.3g}:{:.3g}".format(
                  FLAGS.frames, *fit_shift(photo.shape, FLAGS.frames, shift)))
    frames, forward, backward = pan_zoom(photo, FLAGS.frames, width, height, shift, FLAGS.zoom)
    if FLAGS.object:
        add_object(frames, forward, backward, image.load(FLAGS.object),
                   tuple(float(v) for v in FLAGS.object_speed.split(":")))
    out = pathlib.Path(FLAGS.out)
    out.mkdir(parents=True, exist_ok=True)
    for t, f in enumerate(frames, start=1):
        image.save(out / f"frame_{t:04d}.png", f)
    for t, (fw, bw) in enumerate(zip(forward, backward), start=1):
        flow.write_flo(out / f"forward_{t}_{t + 1}.flo", fw)
        flow.write_flo(out / f"backward_{t + 1}_{t}.flo", bw)
        for name, there, back in ((f"reliable_{t}_{t + 1}", fw, bw),
                                  (f"reliable_{t + 1}_{t}", bw, fw)):
            levels = np.asarray(flow.reliability(there, back)) * 255
            Image.fromarray(levels.astype(np.uint8)).save(out / f"{name}.pgm")
    clips.encode_mp4(frames, 25.0, out / "clip.mp4")
    print(f"wrote {len(frames)} frames of {width}x{height}, their true flows and clip.mp4 to "
          f"{out}")


def define_flags() -> None:
    """The script's flags (defined only when it runs, so that others can import it)."""
    flags.DEFINE_string("photo", str(SHARED / "content" / "tubingen.jpg"), "Photo to film.")
    flags.DEFINE_integer("frames", 12, "Number of frames.")
    flags.DEFINE_string("size", "256x192", "Frame width x height, pixels.")
    flags.DEFINE_string("shift", "3:1", "Window motion per frame, dx:dy photo pixels.")
    flags.DEFINE_float("zoom", 1.01, "Window scale factor per frame (> 1 zooms out).")
    flags.DEFINE_string("object", str(SHARED / "content" / "brad_pitt.jpg"),
                        "Photo the moving disc is cut from ('' for none).")
    flags.DEFINE_string("object_speed", "-4:2", "The disc's motion per frame, dx:dy frame pixels.")
    flags.DEFINE_string("out", None, "Output folder.")
    flags.mark_flag_as_required("out")


if __name__ == "__main__":
    define_flags()
    app.run(main)
