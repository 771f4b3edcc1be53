"""tools/make_clip.py: every frame shows the photo (no black border from a window off the
photo, for short and long clips), and the true flows it writes carry each frame onto the one
before."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jstyle import image
from jstyle.ops import flow

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import make_clip  # noqa: E402


def _lifted(picture):
    """uint8[H, W, 3] -> float32 in [0.2, 1], smoothed (a frame pixel spans several photo
    pixels; unsmoothed fur would alias): nothing of it is near black, so a near-black pixel
    in a frame is one sampled off the photo."""
    from scipy import ndimage
    smooth = ndimage.gaussian_filter(picture.astype(np.float32) / 255.0, (2, 2, 0))
    return (0.2 + 0.8 * smooth).astype(np.float32)


@pytest.fixture(scope="module")
def photo():
    """scikit-image's cat photo, lifted: float32[300, 451, 3] in [0.2, 1]."""
    from skimage import data
    return _lifted(data.chelsea())


def _shows_the_photo(frame, photo):
    dark = float((np.asarray(frame).max(-1) < 0.15).mean())
    assert dark == 0, f"{dark:.0%} black: the window left the photo"
    assert abs(float(frame.mean()) - float(photo.mean())) < 0.1


def _carried(frames, forward, reliable=None):
    """Frame t+1 warped along the true flow t -> t+1 onto frame t, for every pair: its worst
    mean error over the pixels that stay in the frame (and are reliable, when given), and
    the least mean difference of the two frames unwarped (the error a wrong flow would
    leave)."""
    worst, still = 0.0, np.inf
    for t, field in enumerate(forward):
        warped, inside = flow.warp(frames[t + 1], field)
        keep = np.asarray(inside) if reliable is None else np.asarray(inside) & (
            reliable[t] > 0.5)
        assert keep.mean() > 0.8
        worst = max(worst, float(np.abs(np.asarray(warped) - frames[t])[keep].mean()))
        still = min(still, float(np.abs(frames[t + 1] - frames[t])[keep].mean()))
    return worst, still


@pytest.mark.parametrize("count, shift, zoom", [(2, (3.0, 1.0), 1.01), (5, (3.0, 1.0), 1.01),
                                                (12, (3.0, 1.0), 1.01), (40, (-5.0, 2.0), 0.99),
                                                (12, (60.0, 0.0), 1.0)])
def test_every_frame_shows_the_photo_and_the_true_flow_carries_it(photo, count, shift, zoom):
    frames, forward, backward = make_clip.pan_zoom(photo, count, 64, 48, shift, zoom)
    assert len(frames) == count and len(forward) == len(backward) == count - 1
    for f in frames:
        _shows_the_photo(f, photo)
    for pairs in ((frames, forward), (frames[::-1], backward[::-1])):
        error, unwarped = _carried(*pairs)
        assert error < 0.01 and error < unwarped / 3


def test_the_stated_motion_is_the_content_motion(photo):
    """Without zoom, the content moves by -shift / scale frame pixels per frame: the flow is
    that constant, and frame 2 is frame 1 moved by it."""
    frames, forward, _ = make_clip.pan_zoom(photo, 3, 64, 48, (4.0, -2.0), 1.0)
    dx, dy = forward[0][0, 0]
    np.testing.assert_allclose(forward[0], np.broadcast_to([dx, dy], forward[0].shape), atol=1e-4)
    assert dx < 0 < dy and dx / dy == pytest.approx(-2.0)
    # the content moves the other way: frame 2 at x shows what frame 1 had at x + shift / scale
    from scipy import ndimage
    back = np.stack([ndimage.shift(frames[1][..., c], (-dy, -dx), order=1) for c in range(3)], -1)
    core = (slice(8, -8), slice(8, -8))
    assert np.abs(back[core] - frames[0][core]).mean() < 0.02


def test_a_shift_too_long_for_the_clip_is_clamped_keeping_its_direction(photo):
    assert make_clip.fit_shift(photo.shape, 12, (3.0, 1.0)) == (3.0, 1.0)
    sx, sy = make_clip.fit_shift(photo.shape, 101, (10.0, 5.0))
    assert sx * 100 == pytest.approx(450 / 2) and sx / sy == pytest.approx(2.0)


def test_the_script_writes_frames_of_the_photo_and_flows_that_carry_them(photo, tmp_path):
    from skimage import data
    Image.fromarray((photo * 255).round().astype(np.uint8)).save(tmp_path / "photo.png")
    Image.fromarray((_lifted(data.astronaut()) * 255).round().astype(np.uint8)).save(
        tmp_path / "face.png")
    out = tmp_path / "clip"
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "make_clip.py"),
                           f"--out={out}", f"--photo={tmp_path / 'photo.png'}",
                           f"--object={tmp_path / 'face.png'}", "--frames=12", "--size=64x48"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    frames = [image.load(out / f"frame_{t:04d}.png") for t in range(1, 13)]
    for f in frames:
        _shows_the_photo(f, photo)
    forward = [flow.read_flo(out / f"forward_{t}_{t + 1}.flo") for t in range(1, 12)]
    reliable = [np.asarray(Image.open(out / f"reliable_{t}_{t + 1}.pgm")) / 255.0
                for t in range(1, 12)]
    error, unwarped = _carried(frames, forward, reliable)  # the disc's occlusions left out
    assert error < 0.015 and error < unwarped / 3
    assert (out / "clip.mp4").stat().st_size > 0
