"""Deep Image Analogy: its pieces against plain-numpy transcriptions of the authors' CUDA
kernels (GeneralizedPatchMatch.cu) on small odd-sized maps, the feature deconvolution, the
identity pair, keys, and a run from the command."""

import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jstyle.ops import fields, patches
from jstyle.nets import vgg
from jstyle.errors import InputError
from jstyle.methods import analogy
from jstyle.engine.options import RunOptions
from jstyle.engine.session import Session, Stopped

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), patches.EPS)


def _distance(a, b, a1, b1, p, q, size):
    """dist_compute, negated and halved: the mean over the offsets inside both maps of
    (a . b + a1 . b1) / 2."""
    r, total, count = size // 2, 0.0, 0
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            ay, ax, by, bx = p[0] + dy, p[1] + dx, q[0] + dy, q[1] + dx
            if 0 <= ay < a.shape[0] and 0 <= ax < a.shape[1] and \
                    0 <= by < b.shape[0] and 0 <= bx < b.shape[1]:
                total += a[ay, ax] @ b[by, bx] + a1[ay, ax] @ b1[by, bx]
                count += 1
    return total / count / 2


def _maps(rng, *shapes, channels=4):
    return [_unit(rng.random((*s, channels)).astype(np.float32) - 0.3) for s in shapes]


@pytest.mark.parametrize("size", [3, 5])
def test_overlap_similarity_is_the_authors_clipped_distance(size):
    rng = np.random.default_rng(size)
    a, a1 = _maps(rng, (7, 9), (7, 9))
    b, b1 = _maps(rng, (6, 11), (6, 11))
    field = np.stack([rng.integers(0, 6, (7, 9)), rng.integers(0, 11, (7, 9))], -1)
    got = fields.overlap_similarity(np.concatenate([a, a1], -1), np.concatenate([b, b1], -1),
                                    jnp.asarray(field), size) / 2
    want = [[_distance(a, b, a1, b1, (y, x), field[y, x], size) for x in range(9)]
            for y in range(7)]
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bidirectional_field_finds_the_brute_force_best(seed):
    """On random maps (no coherence for propagation to use, PatchMatch's hardest case) 30
    iterations find the exact best match for at least 80% of the positions (84-98% over eight
    seeds) and 98% of the best mean similarity; the identity start scores about half of it."""
    rng = np.random.default_rng(seed)
    a_prime, a = _maps(rng, (7, 9), (7, 9))
    b_prime, b = _maps(rng, (8, 5), (8, 5))
    # analogy.match normalises per position itself; the maps are already unit vectors
    field, score = analogy.match(jax.random.key(0), (a_prime, a), (b_prime, b),
                                 fields.identity_field(7, 9), size=3, iterations=30,
                                 max_jump=8, radius=8.0)
    best = np.array([[max(_distance(a_prime, b_prime, a, b, (y, x), (qy, qx), 3)
                          for qy in range(8) for qx in range(5)) for x in range(9)]
                     for y in range(7)])
    field = np.asarray(field)
    mine = np.array([[_distance(a_prime, b_prime, a, b, (y, x), field[y, x], 3)
                      for x in range(9)] for y in range(7)])
    start = np.array([[_distance(a_prime, b_prime, a, b, (y, x), (min(y, 7), min(x, 4)), 3)
                       for x in range(9)] for y in range(7)])
    np.testing.assert_allclose(score, mine, atol=1e-5)  # the score is the field's distance
    assert np.mean(np.isclose(mine, best, atol=1e-5)) >= 0.8
    assert mine.mean() >= 0.98 * best.mean() > start.mean()


def test_vote_centred_is_the_authors_average_vote():
    rng = np.random.default_rng(2)
    target = rng.random((6, 8, 3)).astype(np.float32)
    field = np.stack([rng.integers(0, 6, (5, 7)), rng.integers(0, 8, (5, 7))], -1)
    got = np.asarray(fields.vote_centred(jnp.asarray(target), jnp.asarray(field), 3))
    want = np.zeros((5, 7, 3), np.float32)
    for y in range(5):
        for x in range(7):
            total, count = 0.0, 0
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    if 0 <= y + dy < 5 and 0 <= x + dx < 7:
                        qy, qx = field[y + dy, x + dx] - (dy, dx)
                        if 0 <= qy < 6 and 0 <= qx < 8:
                            total, count = total + target[qy, qx], count + 1
            want[y, x] = total / count
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_upsample_offsets_is_the_authors_upsampling():
    rng = np.random.default_rng(3)
    coarse = np.stack([rng.integers(0, 4, (5, 7)), rng.integers(0, 6, (5, 7))], -1)
    rows, cols, t_rows, t_cols = 11, 14, 9, 13
    got = np.asarray(fields.upsample_offsets(jnp.asarray(coarse), rows, cols, t_rows, t_cols))
    want = np.zeros((rows, cols, 2), int)
    ry, rx = np.float32(rows / 5), np.float32(cols / 7)
    for y in range(rows):
        for x in range(cols):
            hy = min(max(int((y + 0.5) / ry), 0), 4)
            hx = min(max(int((x + 0.5) / rx), 0), 6)
            by = int(np.floor(y + (coarse[hy, hx, 0] - hy) * ry + 0.5))
            bx = int(np.floor(x + (coarse[hy, hx, 1] - hx) * rx + 0.5))
            want[y, x] = min(max(by, 0), t_rows - 1), min(max(bx, 0), t_cols - 1)
    np.testing.assert_array_equal(got, want)


def test_deconvolution_reproduces_its_target(tiny_weights):
    """Features at relu2_1 whose forward pass to relu4_1 matches another image's relu4_1, from
    the first image's relu2_1: L-BFGS cuts the relative error at least tenfold, to under 5%."""
    rng = np.random.default_rng(4)
    params = vgg.prepare(tiny_weights.params)
    pre = lambda img: vgg.preprocess(jnp.asarray(img * 255.0), vgg.CAFFE)
    one, two = (pre(rng.random((37, 45, 3)).astype(np.float32)) for _ in range(2))
    target = vgg.features(params, two, ["relu4_1"])["relu4_1"]
    start = vgg.features(params, one, ["relu2_1"])["relu2_1"]
    _, before = analogy.invert(params, target, "relu2_1", "relu4_1", start, 0)
    x, after = analogy.invert(params, target, "relu2_1", "relu4_1", start, 100)
    assert x.shape == start.shape and np.all(np.isfinite(x))
    assert after < before / 10 and after < 0.05, (before, after)


@pytest.fixture(scope="module")
def tiny_pair():
    rng = np.random.default_rng(5)
    return (rng.random((37, 45, 3)).astype(np.float32),
            rng.random((41, 33, 3)).astype(np.float32))


TINY = analogy.AnalogyParams(min_side=16, iterations=2)
OPTS = RunOptions(size=0, steps=3)


def _run(a, bp, hp, weights, key=None, output=None):
    """analogy.run on the new API: the key first (default: the options' seed), a quiet session
    (keeping its checkpoint beside `output`)."""
    key = jax.random.key(OPTS.seed) if key is None else key
    return analogy.run(key, analogy.Inputs(content=a, styles=[bp]), hp, OPTS, weights,
                       session=Session(output=output, progress=False))


def test_identity_pair_gives_back_the_image(tiny_weights, tiny_pair):
    a = tiny_pair[0]
    result = _run(a, a, TINY, tiny_weights)
    np.testing.assert_allclose(result.images["output"], a, atol=1e-5)
    np.testing.assert_allclose(result.images["b"], a, atol=1e-5)
    assert result.record["final_similarity"]["ab"] > 0.9  # dead ReLUs of the random net: 0


def test_same_key_same_images_and_a_record_of_every_layer(tiny_weights, tiny_pair):
    a, bp = tiny_pair
    run = lambda key: _run(a, bp, TINY, tiny_weights, key)
    first, again, other = run(jax.random.key(3)), run(jax.random.key(3)), run(jax.random.key(4))
    for name in ("output", "b"):
        np.testing.assert_array_equal(first.images[name], again.images[name])
    assert first.images["output"].shape == a.shape and first.images["b"].shape == bp.shape
    assert not np.array_equal(first.images["output"], other.images["output"])
    layers = first.record["layers"]
    assert [l["layer"] for l in layers] == list(analogy.LAYERS)
    assert all(l["patchmatch_seconds"] > 0 and -1 <= l["similarity_ab"] <= 1 for l in layers)
    assert all(l["deconv_seconds"] > 0 and np.isfinite(l["deconv_error_b"]) for l in layers[:-1])
    forward = _run(a, bp, analogy.AnalogyParams(min_side=16, iterations=2,
                                                 directions="forward"),
                   tiny_weights, jax.random.key(3))
    assert set(forward.images) == {"output"} and "deconv_error_b" not in forward.record["layers"][0]


def test_size_limits_follow_the_authors_order():
    hp = analogy.AnalogyParams()
    assert analogy.fit_limits((1331, 1054), hp, "x") == (665, 526)  # rows > 700, then area
    assert analogy.fit_limits((150, 300), hp, "x") == (200, 400)  # rows < 200
    assert analogy.fit_limits((448, 448), hp, "x") == (448, 448)
    with pytest.raises(Exception, match="no size within the limits"):
        analogy.fit_limits((100, 1000), hp, "x")


def test_the_command_writes_both_images_and_one_record(tmp_path, vgg_weights):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 255, (52, 36, 3), np.uint8)).save(tmp_path / "bp.png")
    done = subprocess.run(
        [sys.executable, "-m", "jstyle", "--method=analogy", "--content=a.png", "--style=bp.png",
         "--output=out.png", "--min_side=44", "--iterations=2", "--steps=2"],
        cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert Image.open(tmp_path / "out.png").size == (48, 40)
    assert Image.open(tmp_path / "out_b.png").size == (36, 52)
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["images"] == {"output": "out.png", "b": "out_b.png"}
    assert record["hyperparameters"]["min_side"] == 44 and record["options"]["seed"] == 0
    assert record["sizes"]["content_limited"] == [44, 53] and len(record["layers"]) == 5
    assert "relu4_1 -> relu3_1: deconvolution" in done.stderr
    assert "jstyle: wrote out.png, out_b.png (" in done.stderr


def test_an_interrupted_run_resumes_to_the_same_images(tiny_weights, tiny_pair, tmp_path,
                                                        monkeypatch):
    a, bp = tiny_pair
    run = lambda key=jax.random.key(3), **kw: _run(a, bp, TINY, tiny_weights, key, **kw)
    whole = run()
    output = tmp_path / "out.png"
    checkpoint, real, calls = tmp_path / "out.ckpt.npz", analogy.invert, []

    def stop_in_the_third_layer(*args):
        calls.append(args)
        if len(calls) == 5:  # two deconvolutions per layer
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(analogy, "invert", stop_in_the_third_layer)
    with pytest.raises(Stopped) as stopped:
        run(output=output)
    assert stopped.value.position == "layer 2 of 5" and stopped.value.checkpoint == checkpoint
    monkeypatch.setattr(analogy, "invert", real)
    with pytest.raises(InputError, match="made by another run .*differs in key"):
        run(jax.random.key(4), output=output)
    resumed = run(output=output)
    assert resumed.record["resumed_after_layers"] == 2
    assert [l["layer"] for l in resumed.record["layers"]] == list(analogy.LAYERS)
    for name in ("output", "b"):
        np.testing.assert_array_equal(resumed.images[name], whole.images[name])
