"""jstyle.image.clips: frames from folders, patterns and video files, mp4 output, bad clips; and a
clip with known motion (tools/make_clip.py) checks DIS and warping against the true flow."""

import pathlib
import re
import sys

import numpy as np
import pytest

from jstyle import image
from jstyle.image import clips
from jstyle.ops import flow
from jstyle.errors import InputError

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
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


def test_a_0_based_pattern_starts_at_frame_0_and_a_1_based_one_at_1(tmp_path, moving):
    frames, _, _ = moving
    for t, f in enumerate(frames):
        image.save(tmp_path / f"f_{t:03d}.png", f)  # f_000 ... f_003
        image.save(tmp_path / f"g_{t + 1}.png", f)  # g_1 ... g_4
    for pattern in ("f_%03d.png", "g_%d.png"):
        got, _ = clips.read(tmp_path / pattern)
        assert len(got) == 4, pattern
        np.testing.assert_allclose(got[0], frames[0], atol=1 / 255)
    assert clips.frame_paths(tmp_path / "f_%03d.png")[0].name == "f_000.png"


def test_a_file_is_read_as_a_video_even_with_a_percent_in_its_name(tmp_path, moving):
    frames, _, _ = moving
    folder = tmp_path / "50% off"
    folder.mkdir()
    clips.encode_mp4(frames, 10.0, folder / "clip 50%.mp4")
    assert clips.kind(folder / "clip 50%.mp4") == "video"
    assert clips.files_of(folder / "clip 50%.mp4") == [folder / "clip 50%.mp4"]
    decoded, fps = clips.read(folder / "clip 50%.mp4")
    assert len(decoded) == 4 and fps == 10.0
    image.save(folder / "frame_1.png", frames[0])  # a pattern in a folder named with a %
    assert clips.kind(tmp_path / "50%% off" / "frame_%d.png") == "pattern"
    assert len(clips.read(tmp_path / "50%% off" / "frame_%d.png")[0]) == 1


@pytest.mark.parametrize("source, words", [
    ("missing.mp4", "--content=missing.mp4 does not exist; give a video file"),
    ("missing 50%.mp4", "does not exist and is not a frame pattern"),
    ("f_%q.png", "is not a frame pattern"), ("%", "is not a frame pattern"),
    ("f_%d_%d.png", "is not a frame pattern"), ("f_%s.png", "is not a frame pattern")])
def test_a_missing_clip_or_a_malformed_pattern_is_one_input_error(tmp_path, monkeypatch,
                                                                   source, words):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=re.escape(words)):
        clips.read(source)


def test_an_mp4_the_disk_could_not_hold_is_an_environment_fault_naming_it(tmp_path):
    """OpenCV's writer reports nothing when a write fails (here: past the file size limit):
    the frames are counted back."""
    script = ("import resource, numpy as np\n"
              "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
              "from jstyle.image import clips\n"
              "from jstyle.errors import EnvironmentFault\n"
              "frames = [np.random.default_rng(t).uniform(size=(96, 128, 3)) for t in range(8)]\n"
              "try:\n"
              f"    clips.encode_mp4(frames, 25.0, {str(tmp_path / 'big.mp4')!r})\n"
              "except EnvironmentFault as e:\n"
              "    print(e)\n")
    import subprocess
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert f"cannot write {tmp_path / 'big.mp4'} (it holds" in done.stdout, done.stderr[-2000:]
