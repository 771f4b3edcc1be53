"""The video method (Ruder et al. 2016) on the small random network: one compiled program for
every frame, the temporal term and its long-term weights, multi-pass (sequential and
parallel), resume after an interruption, the authors' file naming."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from jstyle.image import clips
from jstyle.ops import flow
from jstyle.engine import program
from jstyle.engine.session import Session, Stopped
from jstyle.methods import video

SIZE = 40


@pytest.fixture(scope="module")
def clip():
    """Five frames of a window panning over a smooth random scene, and a style."""
    rng = np.random.default_rng(0)
    from scipy import ndimage
    scene = ndimage.zoom(rng.uniform(size=(12, 20, 3)), (4, 4, 1), order=1).clip(0, 1)
    frames = [scene[4:36, 2 + 2 * t:42 + 2 * t].astype(np.float32) for t in range(5)]
    style = rng.uniform(size=(32, 32, 3)).astype(np.float32)
    return frames, [style]


def _hp(**changes):
    hp, opts = video.PRESETS["quick"]
    hp = dataclasses.replace(hp, first_frame_steps=6, **changes)
    return hp, dataclasses.replace(opts, size=SIZE, steps=4, print_every=0, tol=0.0)


def _run(frames, styles, hp, opts, weights, session=None):
    """video.run on the new API: the key of the options' seed, the frames as a clip numbered
    from 1, a quiet session without files unless given."""
    return video.run(jax.random.key(opts.seed),
                     video.Inputs(clip=clips.Clip(frames, 25.0, first=1, flows=None),
                                  styles=styles),
                     hp, opts, weights, session=session or Session(progress=False))


def test_every_frame_runs_on_one_compiled_program_tied_to_the_previous(clip, tiny_weights,
                                                                         tmp_path):
    frames, styles = clip
    hp, opts = _hp(flow_relative_indices=(1, 2))
    folder = tmp_path / "vid"
    result = _run(frames, styles, hp, opts, tiny_weights,
                  Session(output=folder, folder=True, method="video", progress=False))
    compiled = program.compile_program(video.loss_terms, tiny_weights.convention, opts)
    assert compiled.chunk._cache_size() == 1  # five frames, first and later step counts
    # every frame was written as it finished, in order, with its record
    got = [json.loads((folder / f"frame_{t:04d}.json").read_text()) for t in range(1, 6)]
    assert all((folder / f"frame_{t:04d}.png").is_file() for t in range(1, 6))
    assert [r["frame"] for r in result.record["frames"]] == [1, 2, 3, 4, 5]
    assert [r["frame"] for r in got] == [1, 2, 3, 4, 5] and len(result.images) == 5
    records = result.record["frames"]
    assert records[0]["steps"] == 6 and records[1]["steps"] == 4
    assert [r["tied_to"] for r in records] == [[], [1], [2, 1], [3, 2], [4, 3]]
    assert records[0]["initial_loss"]["temporal"] == 0 < records[2]["initial_loss"]["temporal"]
    assert all(r["reliable_fraction"] > 0.5 for r in records[1:])
    image = result.images["frame_0003"]
    assert image.shape == (32, 40, 3) and np.array_equal(image * 255, np.round(image * 255))


def test_the_temporal_term_is_the_weighted_mean_of_every_tie(clip, tiny_weights):
    frames, styles = clip
    hp, opts = _hp()
    data, levels, _, _ = video.objective.prepare_data(frames[0], styles, hp, opts, tiny_weights)
    rng = np.random.default_rng(1)
    warped = rng.uniform(0, 255, (2, *levels.shape)).astype(np.float32)
    weights = rng.uniform(size=(2, *levels.shape[:2])).astype(np.float32)
    image = rng.uniform(0, 255, levels.shape).astype(np.float32)
    terms = video.loss_terms(image, video.Data(data, data.targets.content, warped, weights),
                             tiny_weights.convention)
    want = sum(np.mean(w[..., None] * (image - x) ** 2) for x, w in zip(warped, weights))
    np.testing.assert_allclose(terms["temporal"], 1e3 * want, rtol=1e-5)
    gatys = video.objective.loss_terms(image, data, tiny_weights.convention)
    np.testing.assert_allclose(terms["total"], gatys["total"] + terms["temporal"], rtol=1e-5)


def test_long_term_ties_combine_closest_first_and_warp_the_earlier_results(clip):
    frames, _ = clip
    hp, _ = _hp(flow_relative_indices=(1, 2, 4))
    pair = video.FlowSource(frames, hp)
    results = {t: np.full(frames[0].shape, 10.0 * t, np.float32) for t in range(4)}
    job = video.single_pass_job(4, results, pair, hp, np.zeros(frames[0].shape, np.float32))
    assert job.tied_to == [3, 2, 0]
    want = flow.closest_first([pair(4, b).weights for b in (3, 2, 0)])
    for got, w in zip(job.weights, want):
        np.testing.assert_allclose(got, w)
    inside = np.asarray(flow.warp(results[3], pair(4, 3).flow)[1])
    np.testing.assert_allclose(job.warped[0][inside], 30.0, atol=1e-4)
    np.testing.assert_allclose(job.init[inside], 30.0, atol=1e-4)  # prev_warped


def test_the_authors_pattern_naming():
    assert video.fill_pattern("backward_[%d]_{%d}.flo", 3, 2) == "backward_3_2.flo"
    assert video.fill_pattern("f/reliable_[%04d]_{%02d}.pgm", 12, 8) == \
        "f/reliable_0012_08.pgm"


def test_an_interrupted_clip_resumes_to_the_same_frames(clip, tiny_weights, tmp_path):
    frames, styles = clip
    frames = frames[:3]
    hp, opts = _hp()
    whole = _run(frames, styles, hp, opts, tiny_weights)
    folder = tmp_path / "vid"

    class StopAfterTwo(Session):
        """Interrupted (Ctrl-C) while frame 2 is written."""
        def keep(self, name, image, record):
            super().keep(name, image, record)
            if name == "frame_0002":
                raise KeyboardInterrupt

    checkpoint = folder / "video.ckpt.npz"
    with pytest.raises(Stopped) as stopped:
        _run(frames, styles, hp, opts, tiny_weights,
             StopAfterTwo(output=folder, folder=True, method="video", progress=False))
    # stopped while frame 2 was handed over, before its place was saved: the resume redoes it
    assert stopped.value.position.startswith("frame 2 of pass 1") and checkpoint.exists()
    assert stopped.value.checkpoint == checkpoint
    # the resumed run reads the finished frames back from the folder
    resumed = _run(frames, styles, hp, opts, tiny_weights,
                   Session(output=folder, folder=True, method="video", progress=False))
    assert [r["frame"] for r in resumed.record["frames"]] == [1, 2, 3]
    for name, image in whole.images.items():
        np.testing.assert_array_equal(resumed.images[name], image)


@pytest.mark.parametrize("mode", ["sequential", "parallel"])
def test_multi_pass_blends_neighbours_and_ties_from_its_pass(clip, tiny_weights, mode):
    frames, styles = clip
    hp, opts = _hp(passes=3, temporal_after=3, pass_mode=mode)
    result = _run(frames[:3], styles, hp, opts, tiny_weights)
    records = result.record["frames"]
    assert [(r["pass"], r["frame"]) for r in records[:3]] == [(1, 1), (1, 2), (1, 3)]
    second = [r["frame"] for r in records[3:6]]
    assert second == ([1, 2, 3] if mode == "parallel" else [3, 2, 1])  # pass 2 goes backward
    assert all(r["initial_loss"]["temporal"] == 0 for r in records[:6])
    assert all(r["initial_loss"]["temporal"] > 0 for r in records[6:] if r["tied_to"])
    tied = {r["frame"]: r["tied_to"] for r in records[6:]}
    assert tied == ({1: [2], 2: [1, 3], 3: [2]} if mode == "parallel" else
                    {1: [], 2: [1], 3: [2]})
    if mode == "parallel":
        compiled = program.compile_program(video.loss_terms, tiny_weights.convention, opts,
                                           video.Data.sweep_axes())
        assert compiled.chunk._cache_size() == 1  # three passes, one program over the frames


def test_a_full_disk_during_a_clip_run_names_the_file_it_could_not_write(tmp_path, vgg_weights):
    """Past a file-size limit (as a full disk, writes fail with no file name attached): the
    command stops with one line naming the first frame, exit 1, and nothing left behind."""
    import subprocess
    import sys
    from jstyle import image
    rng = np.random.default_rng(0)
    for t in (1, 2):
        image.save(tmp_path / f"f_{t}.png", rng.uniform(size=(24, 32, 3)).astype(np.float32))
    image.save(tmp_path / "style.png", rng.uniform(size=(24, 32, 3)).astype(np.float32))
    done = subprocess.run(  # ulimit -f counts KiB; the first frame's PNG holds 2.3
        ["bash", "-c", 'ulimit -f 1 && exec "$@"', "bash", sys.executable, "-m", "jstyle",
         "--method=video", "--content=f_%d.png", "--style=style.png", "--output=vid",
         "--size=32", "--steps=1", "--first_frame_steps=1", "--print_every=0"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [
        "jstyle: error: cannot write vid/frame_0001.png (File too large); nothing of this "
        "result was kept; free disk space or fix the permissions, then run again"]
    assert not (tmp_path / "vid").exists()  # the folder the run made, removed empty
