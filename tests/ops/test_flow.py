"""jstyle.ops.flow: warping with a known flow, the authors' consistency check against a numpy
transcription of consistencyChecker.cpp, .flo files, DIS on a clip whose flow is known, and
the warping error."""

import numpy as np
import jax
import pytest
from scipy import ndimage

from jstyle.ops import flow
from jstyle.errors import InputError


def _smooth(h, w, seed=0, channels=3):
    rng = np.random.default_rng(seed)
    return ndimage.zoom(rng.uniform(size=(h // 4, w // 4, channels)), (4, 4, 1), order=3
                        ).astype(np.float32).clip(0, 1)


def test_warping_with_a_known_flow_samples_bilinearly_and_marks_what_leaves():
    image = _smooth(20, 24)
    field = np.zeros((20, 24, 2), np.float32)
    field[..., 0], field[..., 1] = 2.5, -1.25
    out, inside = flow.warp(image, field, fill=-1.0)
    ys, xs = np.mgrid[0:20, 0:24]
    want = np.stack([ndimage.map_coordinates(image[..., c], [ys - 1.25, xs + 2.5], order=1)
                     for c in range(3)], -1)
    ok = (ys - 1.25 >= 0) & (xs + 2.5 <= 23)
    np.testing.assert_array_equal(np.asarray(inside), ok)
    np.testing.assert_allclose(np.asarray(out)[ok], want[ok], atol=1e-5)
    assert (np.asarray(out)[~ok] == -1).all()
    jitted = jax.jit(flow.warp)(image, field)[0]
    batched = jax.vmap(flow.warp, in_axes=(0, None))(np.stack([image, image]), field)[0]
    np.testing.assert_allclose(jitted, flow.warp(image, field)[0], atol=1e-6)
    np.testing.assert_allclose(batched[1], jitted, atol=1e-6)


def _np_consistency(f1, f2):
    """consistencyChecker.cpp, loop for loop (then its smoothing and clipping)."""
    h, w, _ = f1.shape
    d = lambda a, axis: ndimage.correlate1d(a, [-0.5, 0, 0.5], axis=axis, mode="reflect")
    edge = (d(f1, 1) ** 2).sum(-1) + (d(f1, 0) ** 2).sum(-1)
    rel = np.full((h, w), 255.0)
    for ay in range(h):
        for ax in range(w):
            bx, by = ax + f1[ay, ax, 0], ay + f1[ay, ax, 1]
            x1, y1 = int(np.floor(bx)), int(np.floor(by))
            x2, y2 = x1 + 1, y1 + 1
            if x1 < 0 or x2 >= w or y1 < 0 or y2 >= h:
                rel[ay, ax] = 0
                continue
            tx, ty = bx - x1, by - y1
            uv = [(1 - ty) * ((1 - tx) * f2[y1, x1, c] + tx * f2[y1, x2, c])
                  + ty * ((1 - tx) * f2[y2, x1, c] + tx * f2[y2, x2, c]) for c in (0, 1)]
            u2, v2 = f1[ay, ax]
            if (bx + uv[0] - ax) ** 2 + (by + uv[1] - ay) ** 2 >= 0.01 * (
                    u2 * u2 + v2 * v2 + uv[0] ** 2 + uv[1] ** 2) + 0.5:
                rel[ay, ax] = -255
                continue
            if edge[ay, ax] > 0.01 * (u2 * u2 + v2 * v2) + 0.002:
                rel[ay, ax] = 0
    k = np.exp(-np.arange(-2, 3) ** 2 / (2 * 0.64))
    for axis in (0, 1):
        rel = ndimage.correlate1d(rel, k / k.sum(), axis=axis, mode="reflect")
    return np.clip(rel, 0, 255) / 255


def test_the_consistency_check_matches_the_authors_checker():
    rng = np.random.default_rng(1)
    h, w = 17, 23
    forward = np.zeros((h, w, 2), np.float32)
    forward[..., 0] = 1.5
    forward[5:11, 6:14] = (-2.0, 1.0)  # a moving block: boundaries and disocclusions
    forward += rng.normal(0, 0.05, forward.shape).astype(np.float32)
    backward = -forward + rng.normal(0, 0.3, forward.shape).astype(np.float32)
    got = flow.reliability(forward, backward)
    want = _np_consistency(forward, backward)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert (got == 0).any() and (got == 1).any()


def test_flo_files_round_trip_and_a_bad_one_is_named(tmp_path):
    field = np.random.default_rng(2).normal(size=(5, 7, 2)).astype(np.float32)
    flow.write_flo(tmp_path / "a.flo", field)
    np.testing.assert_array_equal(flow.read_flo(tmp_path / "a.flo"), field)
    (tmp_path / "b.flo").write_bytes(b"JUNK" + bytes(20))
    with pytest.raises(InputError, match="not a Middlebury .flo file"):
        flow.read_flo(tmp_path / "b.flo")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_a_flo_file_of_non_finite_vectors_is_refused_naming_it(tmp_path, value):
    """A NaN flow would otherwise pass the consistency check (every comparison with NaN is
    false) and tie a frame to nothing with full weight."""
    field = np.zeros((5, 7, 2), np.float32)
    field[2, 3, 1] = value
    flow.write_flo(tmp_path / "c.flo", field)
    with pytest.raises(InputError, match=f"{tmp_path / 'c.flo'} holds 1 NaN or infinite flow "
                                         "vectors .*; compute the flow again"):
        flow.read_flo(tmp_path / "c.flo")


def test_dis_finds_a_sliding_windows_motion_and_the_warping_error_sees_flicker():
    scene = _smooth(80, 120, seed=3)
    frames = [scene[10:58, 10 + 2 * t:74 + 2 * t] for t in range(3)]  # the view pans right
    found = flow.dis_flow(frames[0], frames[1])
    core = found[8:-8, 8:-8]
    assert np.abs(np.median(core[..., 0]) + 2.0) < 0.2  # the scene moves 2 px left
    assert np.abs(np.median(core[..., 1])) < 0.2
    steady = flow.warping_error(frames, frames)
    rng = np.random.default_rng(4)
    flicker = flow.warping_error(frames, [np.clip(f + rng.normal(0, 0.05, f.shape), 0, 1)
                                          for f in frames])
    assert steady < 1e-3 and flicker > 10 * steady


def test_the_temporal_loss_and_the_long_term_weights_match_numpy():
    from jstyle.ops import losses
    rng = np.random.default_rng(5)
    o, w = rng.normal(size=(2, 6, 5, 3))
    weights = rng.uniform(size=(6, 5))
    np.testing.assert_allclose(losses.temporal_loss(o, w, weights),
                               np.sum(weights[..., None] * (o - w) ** 2) / o.size, rtol=1e-5)
    masks = [rng.uniform(size=(4, 4)) for _ in range(3)]
    a = masks[0]
    b = np.maximum(masks[1] - a, 0)
    c = np.maximum(masks[2] - b - a, 0)  # the code subtracts the already reduced weights
    for got, want in zip(flow.closest_first(masks), (a, b, c)):
        np.testing.assert_allclose(got, want, rtol=1e-6)
