"""jstyle.clips: frames from folders, patterns and video files, mp4 output, bad clips; and a
clip with known motion (scripts/make_clip.py) checks DIS and warping against the true flow."""

import pathlib
import sys

import numpy as np
import pytest

from jstyle import clips, flow, image
from jstyle.errors import InputError

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import make_clip  # noqa: E402


@pytest.fixture(scope="module")
def moving():
    photo = image.load(image.sample_paths()[0])
    return make_clip.pan_zoom(photo, 4, 96, 64, (3.0, 1.0), 1.02)


def test_frames_come_from_patterns_folders_and_videos(tmp_path, moving):
    frames, _, _ = moving
    for t, f in enumerate(frames, start=1):
        image.save(tmp_path / f"frame_{t:04d}.png", f)
    from_pattern, fps = clips.read(tmp_path / "frame_%04d.png", start=1, count=2)
    assert len(from_pattern) == 2 and fps == clips.DEFAULT_FPS
    np.testing.assert_allclose(from_pattern[0], frames[1], atol=1 / 255)
    from_folder, _ = clips.read(tmp_path)
    assert len(from_folder) == 4
    clips.encode_mp4(frames, 12.0, tmp_path / "clip.mp4")
    decoded, fps = clips.read(tmp_path / "clip.mp4", max_edge=48)
    assert len(decoded) == 4 and fps == 12.0 and decoded[0].shape == (32, 48, 3)
    assert np.abs(decoded[2] - image.resize_to_edge(frames[2], 48)).mean() < 0.05  # lossy


def test_bad_clips_are_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.mp4").write_text("not a video")
    for source, words in ((tmp_path / "empty", "holding no frames"),
                          (tmp_path / "f_%03d.png", "matches no file"),
                          (tmp_path / "notes.mp4", "not a video OpenCV can read")):
        with pytest.raises(InputError, match=words):
            clips.read(source)


def test_dis_and_warping_agree_with_the_known_motion(moving):
    frames, forward, backward = moving
    found = flow.dis_flow(frames[0], frames[1])
    core = (slice(8, -8), slice(8, -8))
    assert np.median(np.abs(found[core] - forward[0][core])) < 0.25
    warped, inside = flow.warp(frames[1], forward[0])
    both = np.asarray(inside)[core]
    error = np.abs(np.asarray(warped)[core] - frames[0][core])[both]
    assert error.mean() < 0.02  # the true flow warps frame 2 back onto frame 1
    assert flow.reliability(forward[0], backward[0])[core].mean() > 0.95
