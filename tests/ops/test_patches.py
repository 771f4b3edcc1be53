"""Patch extraction, the exact NNF and voting against brute-force numpy on small odd maps."""

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jstyle.ops import patches

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import grid_fields  # noqa: E402  (the grid-field family, benchmarks/grid_fields.py)

RNG = np.random.default_rng(0)
SOURCE = RNG.normal(size=(9, 7, 5)).astype(np.float32)  # H, W, C odd and unequal
TARGET = RNG.normal(size=(11, 8, 5)).astype(np.float32)


def np_patches(f, k, s):
    h, w, _ = f.shape
    rows, cols = (h - k) // s + 1, (w - k) // s + 1
    return np.stack([f[r * s:r * s + k, c * s:c * s + k] for r in range(rows)
                     for c in range(cols)])


def np_nnf(source, target, k, stride, source_stride=1):
    """Brute force: cosine similarity of every source patch with every target patch."""
    src = np_patches(source, k, source_stride).reshape(-1, k * k * source.shape[2])
    tgt = np_patches(target, k, stride).reshape(-1, k * k * target.shape[2]).astype(np.float64)
    sim = (src @ tgt.T) / np.linalg.norm(src, axis=1)[:, None] / np.linalg.norm(tgt, axis=1)
    rows = (source.shape[0] - k) // source_stride + 1
    cols = (source.shape[1] - k) // source_stride + 1
    return sim.argmax(1).reshape(rows, cols), sim.max(1).reshape(rows, cols)


@pytest.mark.parametrize("k,s", [(3, 1), (3, 2), (5, 3), (1, 1)])
def test_extract_patches_matches_numpy(k, s):
    got = patches.extract_patches(SOURCE, k, s)
    np.testing.assert_array_equal(got, np_patches(SOURCE, k, s))
    assert got.shape[0] == np.prod(patches.grid_shape(9, 7, k, s))


def test_normalized_patches_have_unit_norm():
    p = patches.normalize_patches(patches.extract_patches(SOURCE, 3, 1))
    np.testing.assert_allclose(np.linalg.norm(np.asarray(p).reshape(len(p), -1), axis=1), 1.0,
                               rtol=1e-5)


@pytest.mark.parametrize("stride,source_stride", [(1, 1), (2, 1), (1, 2), (2, 3)])
def test_exact_nnf_matches_brute_force(stride, source_stride):
    field, sim = grid_fields.nnf_exact(SOURCE, TARGET, 3, stride, source_stride=source_stride)
    t_cols = patches.grid_shape(*TARGET.shape[:2], 3, stride)[1]
    index = field[..., 0] * t_cols + field[..., 1]
    want_index, want_sim = np_nnf(SOURCE, TARGET, 3, stride, source_stride)
    np.testing.assert_array_equal(index, want_index)
    np.testing.assert_allclose(sim, want_sim, rtol=1e-5, atol=1e-6)


def test_chunked_and_unchunked_nnf_agree_and_jit_matches():
    whole = grid_fields.nnf_exact(SOURCE, TARGET, 3, 1, budget_bytes=2**30)
    assert patches.chunk_size(35, 54, 35 * 4 * 7) == 7  # 8 chunks, the last one padded
    chunked = grid_fields.nnf_exact(SOURCE, TARGET, 3, 1, budget_bytes=35 * 4 * 7)
    jitted = jax.jit(grid_fields.nnf_exact, static_argnums=(2, 3, 4))(SOURCE, TARGET, 3, 1,
                                                                      35 * 4 * 7)
    for got in (chunked, jitted):
        np.testing.assert_array_equal(got[0], whole[0])
        np.testing.assert_allclose(got[1], whole[1], rtol=1e-6)


def test_nearest_patches_indexes_candidates_pooled_from_several_maps():
    other = RNG.normal(size=(6, 10, 5)).astype(np.float32)
    pooled = np.concatenate([np_patches(TARGET, 3, 2), np_patches(other, 3, 1)])
    index, sim = patches.nearest_patches(SOURCE, jnp.asarray(pooled), 3)
    src = np_patches(SOURCE, 3, 1).reshape(len(np_patches(SOURCE, 3, 1)), -1)
    cand = pooled.reshape(len(pooled), -1).astype(np.float64)
    want = (src @ cand.T) / np.linalg.norm(src, axis=1)[:, None] / np.linalg.norm(cand, axis=1)
    np.testing.assert_array_equal(np.ravel(index), want.argmax(1))
    np.testing.assert_allclose(np.ravel(sim), want.max(1), rtol=1e-5)


def test_index_to_field_and_upsampled_fields():
    t_rows, t_cols = patches.grid_shape(11, 8, 3)
    index = patches.nearest_patches(SOURCE, patches.extract_patches(TARGET, 3, 1), 3)[0]
    field = patches.index_to_field(index, t_cols)
    np.testing.assert_array_equal(field, grid_fields.nnf_exact(SOURCE, TARGET, 3, 1)[0])
    np.testing.assert_array_equal(field[..., 0] * t_cols + field[..., 1], index)
    # each fine position takes its parent's match, doubled, plus its offset within the parent
    fine = np.asarray(grid_fields.upsample_field(field, 15, 9, 2 * t_rows + 1, 2 * t_cols))
    assert fine.shape == (15, 9, 2)
    for y, x in [(0, 0), (5, 3), (14, 8), (7, 6)]:
        parent = np.asarray(field)[min(y // 2, field.shape[0] - 1), min(x // 2, field.shape[1] - 1)]
        want = np.minimum(parent * 2 + [y % 2, x % 2], [2 * t_rows, 2 * t_cols - 1])
        np.testing.assert_array_equal(fine[y, x], want)


def test_patchmatch_continues_from_a_given_field():
    exact_field, sim = grid_fields.nnf_exact(SOURCE, TARGET, 3, 1)
    field, got = grid_fields.patchmatch(jax.random.key(0), SOURCE, TARGET, 3, 1, iterations=1,
                                        init=exact_field)
    np.testing.assert_array_equal(field, exact_field)  # nothing beats the exact field
    np.testing.assert_allclose(got, sim, rtol=1e-5)


def test_a_map_matched_to_itself_finds_itself():
    field, sim = grid_fields.nnf_exact(TARGET, TARGET, 3, 1)
    rows, cols = patches.grid_shape(11, 8, 3)
    np.testing.assert_array_equal(field[..., 0] * cols + field[..., 1],
                                  np.arange(rows * cols).reshape(rows, cols))
    np.testing.assert_allclose(sim, 1.0, rtol=1e-5)


def test_voting_with_the_identity_field_reproduces_the_input():
    rows, cols = patches.grid_shape(9, 7, 3)
    identity = patches.index_to_field(jnp.arange(rows * cols).reshape(rows, cols), cols)
    rebuilt = grid_fields.vote(SOURCE, identity, 3)
    np.testing.assert_allclose(rebuilt, SOURCE, rtol=1e-6)


def test_voting_averages_overlapping_patches():
    """Two constant patches, chosen left and right: the overlap columns are their mean."""
    const = jnp.concatenate([jnp.zeros((3, 3, 1)), jnp.ones((3, 3, 1))], axis=1)  # 2 patches
    field = jnp.array([[0, 0, 1, 1]])  # one row of 4 patch positions on a 3 x 6 map
    rebuilt = np.asarray(grid_fields.vote(const, patches.index_to_field(field, 2), 3, 3)
                         )[0, :, 0]
    # column j is covered by positions j-2..j; its value is the mean of their patches
    want = [np.mean([field[0, p] for p in range(max(0, j - 2), min(3, j) + 1)]) for j in range(6)]
    np.testing.assert_allclose(rebuilt, want, rtol=1e-6)


def test_similarity_of_a_field_matches_brute_force():
    rows, cols = patches.grid_shape(9, 7, 3)
    t_rows, t_cols = patches.grid_shape(11, 8, 3, 2)
    field = np.stack([RNG.integers(0, t_rows, (rows, cols)), RNG.integers(0, t_cols, (rows, cols))],
                     -1).astype(np.int32)
    src = np_patches(SOURCE, 3, 1).reshape(rows, cols, -1).astype(np.float64)
    tgt = np_patches(TARGET, 3, 2).reshape(t_rows, t_cols, -1).astype(np.float64)
    chosen = tgt[field[..., 0], field[..., 1]]
    want = np.sum(src * chosen, -1) / np.linalg.norm(src, axis=-1) / np.linalg.norm(chosen, axis=-1)
    np.testing.assert_allclose(grid_fields.similarity(SOURCE, TARGET, field, 3, 2), want,
                               rtol=1e-5)


def test_patchmatch_reaches_98_percent_of_the_exact_similarity_on_real_features(vgg_weights):
    """relu3_1 of the built-in sample pair at 96 px: the default iterations and samples."""
    from jstyle import image
    from jstyle.nets import vgg
    params = vgg.prepare(vgg_weights.params)

    def relu3_1(path):
        x = vgg.preprocess(jnp.asarray(image.to_levels(image.load(path, 96))),
                             vgg_weights.convention)
        return vgg.features(params, x, ("relu3_1",))["relu3_1"]

    source, target = (relu3_1(p) for p in image.sample_paths())
    _, exact = grid_fields.nnf_exact(source, target, 3, 1)
    field, sim = grid_fields.patchmatch(jax.random.key(0), source, target, 3, 1)
    np.testing.assert_allclose(sim, grid_fields.similarity(source, target, field, 3, 1),
                               rtol=1e-5)
    assert np.all(np.asarray(sim) <= np.asarray(exact) + 1e-5)
    assert float(np.mean(sim)) >= 0.98 * float(np.mean(exact)), (np.mean(sim), np.mean(exact))
    again, _ = grid_fields.patchmatch(jax.random.key(0), source, target, 3, 1)
    np.testing.assert_array_equal(again, field)  # same key, same field
    other, _ = grid_fields.patchmatch(jax.random.key(1), source, target, 3, 1)
    assert np.any(np.asarray(other) != np.asarray(field))


def test_patchmatch_fills_only_the_masked_positions_from_the_allowed_patches():
    exact, _ = grid_fields.nnf_exact(SOURCE, TARGET, 3, 1)
    rows, cols = exact.shape[:2]
    t_rows, t_cols = patches.grid_shape(11, 8, 3)
    fill = np.zeros((rows, cols), bool)
    fill[:, : cols // 2] = True
    allowed = np.zeros((t_rows, t_cols), bool)
    allowed[:, : t_cols // 2] = True
    start = jnp.zeros_like(exact)
    field, score = grid_fields.patchmatch(jax.random.key(0), SOURCE, TARGET, 3, 1, iterations=8,
                                          init=start, fill=fill, allowed=allowed)
    field = np.asarray(field)
    np.testing.assert_array_equal(field[~fill], 0)  # untouched: the init
    assert (field[fill][:, 1] < t_cols // 2).all()  # only allowed columns
    # the best allowed match, by brute force over the allowed patches' columns of the target
    best = np_nnf(SOURCE, TARGET[:, : t_cols // 2 + 2], 3, 1)[1][fill]
    assert (np.asarray(score)[fill] <= best + 1e-5).all()
    assert np.asarray(score)[fill].mean() >= 0.9 * best.mean()  # approximate on random maps
    free, _ = grid_fields.patchmatch(jax.random.key(0), SOURCE, TARGET, 3, 1, iterations=4,
                                     allowed=allowed)
    assert (np.asarray(free)[..., 1] < t_cols // 2).all()
