"""Each loss against a plain-numpy reference on small odd-sized inputs; plain, jit and vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jstyle.ops import losses
from jstyle.ops import patches

RNG = np.random.default_rng(0)
FEATS = RNG.normal(size=(7, 5, 3)).astype(np.float32) ** 2  # H=7, W=5, C=3
TARGET = RNG.normal(size=(7, 5, 3)).astype(np.float32) ** 2
IMAGE = RNG.uniform(0, 255, size=(9, 11, 3)).astype(np.float32)


def np_gram(f, normalize):
    h, w, c = f.shape
    m = f.reshape(h * w, c).astype(np.float64)
    g = np.zeros((c, c))
    for i in range(c):
        for j in range(c):
            g[i, j] = sum(m[p, i] * m[p, j] for p in range(h * w))
    return g / (h * w * (c if normalize == "elements" else 1))


def np_tv(img):
    """The seed formula, literally: sum over x, y of both squared differences, per position."""
    h, w, c = img.shape
    img = img.astype(np.float64)
    total = 0.0
    for y in range(h):
        for x in range(w):
            if x > 0:
                total += np.sum((img[y, x] - img[y, x - 1]) ** 2)
            if y > 0:
                total += np.sum((img[y, x] - img[y - 1, x]) ** 2)
    return total / (h * w)


def np_tv_neural_style_grad(img):
    """neural-style's TVLoss:updateGradInput (strength 1), transcribed to numpy (CHW -> HWC)."""
    img = img.astype(np.float64)
    grad = np.zeros_like(img)
    x_diff = img[:-1, :-1] - img[:-1, 1:]
    y_diff = img[:-1, :-1] - img[1:, :-1]
    grad[:-1, :-1] += x_diff + y_diff
    grad[:-1, 1:] -= x_diff
    grad[1:, :-1] -= y_diff
    return grad


@pytest.mark.parametrize("normalize", ["positions", "elements"])
def test_gram_matrix_matches_numpy(normalize):
    np.testing.assert_allclose(losses.gram_matrix(FEATS, normalize), np_gram(FEATS, normalize),
                               rtol=1e-5)


def test_content_loss_is_seed_formula():
    n, d = FEATS.shape[2], FEATS.shape[0] * FEATS.shape[1]
    expected = 1.0 / (2 * n * d) * np.sum((FEATS.astype(np.float64) - TARGET) ** 2)
    np.testing.assert_allclose(losses.content_loss(FEATS, TARGET), expected, rtol=1e-5)
    np.testing.assert_allclose(losses.content_loss(FEATS, TARGET, scale=1.0), 2 * expected,
                               rtol=1e-5)


def test_style_loss_is_seed_formula():
    g, gt = np_gram(FEATS, "positions"), np_gram(TARGET, "positions")
    n = FEATS.shape[2]
    expected = 1.0 / (2 * n ** 2) * np.sum((g - gt) ** 2)
    got = losses.style_loss(losses.gram_matrix(FEATS), losses.gram_matrix(TARGET))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_total_variation_is_seed_formula_per_position():
    np.testing.assert_allclose(losses.total_variation(IMAGE), np_tv(IMAGE), rtol=1e-5)


def test_total_variation_neural_style_gradient_matches_its_lua_gradient():
    grad = jax.grad(losses.total_variation_neural_style)(jnp.asarray(IMAGE))
    np.testing.assert_allclose(grad, np_tv_neural_style_grad(IMAGE), rtol=1e-5, atol=1e-3)


def test_total_variation_is_size_independent_for_a_uniform_gradient():
    ramp = lambda h, w: np.broadcast_to(np.arange(w, dtype=np.float32)[None, :, None], (h, w, 3))
    small, large = losses.total_variation(ramp(40, 40)), losses.total_variation(ramp(160, 160))
    np.testing.assert_allclose(small, large, rtol=0.05)


def np_quantiles(style, count):
    """The style's sorted activations read at ranks (r + 1/2) K / count - 1/2, per channel."""
    flat = np.sort(style.reshape(-1, style.shape[-1]).astype(np.float64), axis=0)
    k = len(flat)
    pos = np.clip((np.arange(count) + 0.5) * k / count - 0.5, 0, k - 1)
    return np.stack([np.interp(pos, np.arange(k), flat[:, c]) for c in range(flat.shape[1])], 1)


def np_match(features, style):
    """Per channel: the value of rank r takes the style's quantile of rank r (numpy argsort)."""
    h, w, c = features.shape
    flat = features.reshape(h * w, c)
    q = np_quantiles(style, h * w)
    out = np.empty_like(flat, dtype=np.float64)
    for ch in range(c):
        out[np.argsort(flat[:, ch]), ch] = q[:, ch]
    return out.reshape(h, w, c)


HIST_FEATS = RNG.normal(size=(7, 5, 3)).astype(np.float32)  # distinct values, some negative
HIST_STYLE = (RNG.normal(size=(9, 11, 3)) * 3 + 1).astype(np.float32)  # 99 positions, not 35


def test_style_quantiles_at_equal_counts_are_the_sorted_style():
    got = losses.style_quantiles(HIST_STYLE, 99)
    np.testing.assert_array_equal(got, np.sort(HIST_STYLE.reshape(99, 3), axis=0))


def test_match_histograms_equal_counts_gives_exactly_the_style_values():
    style = RNG.normal(size=(5, 7, 3)).astype(np.float32) * 4
    matched = np.asarray(losses.match_histograms(HIST_FEATS, losses.style_quantiles(style, 35)))
    for c in range(3):  # the matched channel is a permutation of the style's values ...
        np.testing.assert_array_equal(np.sort(matched[..., c].ravel()),
                                      np.sort(style[..., c].ravel()))
    # ... placed in the order of the output's values
    np.testing.assert_array_equal(matched, np_match(HIST_FEATS, style).astype(np.float32))


def test_match_histograms_interpolates_when_counts_differ():
    got = losses.match_histograms(HIST_FEATS, losses.style_quantiles(HIST_STYLE, 35))
    np.testing.assert_allclose(got, np_match(HIST_FEATS, HIST_STYLE), rtol=1e-5, atol=1e-5)


def test_match_histograms_masked_matches_only_the_region():
    mask = np.zeros((7, 5), np.float32)
    mask[1:5, 1:4] = 1.0  # 12 positions
    style = np.sort(HIST_STYLE.reshape(99, 3), axis=0)
    padded = np.concatenate([style, np.full((5, 3), 1e6, np.float32)])  # padding is ignored
    got = np.asarray(losses.match_histograms_masked(HIST_FEATS, mask, padded, jnp.int32(99)))
    np.testing.assert_array_equal(got[mask == 0], HIST_FEATS[mask == 0])
    inside = HIST_FEATS[mask == 1][:, None]  # [12, 1, 3]
    np.testing.assert_allclose(got[mask == 1][:, None], np_match(inside, HIST_STYLE),
                               rtol=1e-5, atol=1e-5)
    full = losses.match_histograms_masked(HIST_FEATS, np.ones((7, 5)), style, jnp.int32(99))
    np.testing.assert_allclose(full, np_match(HIST_FEATS, HIST_STYLE), rtol=1e-5, atol=1e-5)


def test_histogram_loss_is_mean_square_to_the_matched_features():
    target = np_match(HIST_FEATS, HIST_STYLE)
    matched = losses.match_histograms(HIST_FEATS, losses.style_quantiles(HIST_STYLE, 35))
    np.testing.assert_allclose(losses.histogram_loss(HIST_FEATS, matched),
                               np.mean((HIST_FEATS - target) ** 2), rtol=1e-5)
    mask = (RNG.uniform(size=(7, 5)) > 0.5).astype(np.float32)
    np.testing.assert_allclose(losses.histogram_loss(HIST_FEATS, matched, mask),
                               np.mean((HIST_FEATS - target)[mask == 1] ** 2), rtol=1e-5)


def test_histogram_loss_gradient_is_finite_and_pulls_towards_the_target():
    q = losses.style_quantiles(HIST_STYLE, 35)
    fn = lambda f: losses.histogram_loss(f, losses.match_histograms(f, q))
    grad = jax.grad(fn)(jnp.asarray(HIST_FEATS))
    target = np_match(HIST_FEATS, HIST_STYLE)
    assert np.all(np.isfinite(grad))
    # R is a constant target: the gradient is exactly 2 (F - R) / (D C)
    np.testing.assert_allclose(grad, 2 * (HIST_FEATS - target) / HIST_FEATS.size, rtol=1e-4,
                               atol=1e-6)


def np_guided_gram(f, m):
    h, w, c = f.shape
    x = (f * m[..., None]).reshape(h * w, c).astype(np.float64)
    return x.T @ x / np.sum(m.astype(np.float64) ** 2)


def test_guided_gram_matches_numpy_and_all_ones_is_the_plain_gram():
    mask = RNG.uniform(size=(7, 5)).astype(np.float32)
    np.testing.assert_allclose(losses.guided_gram_matrix(FEATS, mask), np_guided_gram(FEATS, mask),
                               rtol=1e-5)
    np.testing.assert_allclose(losses.guided_gram_matrix(FEATS, np.ones((7, 5), np.float32)),
                               losses.gram_matrix(FEATS), rtol=1e-6)


LOSSES = {
    "gram": lambda f, t, img: losses.gram_matrix(f),
    "content": lambda f, t, img: losses.content_loss(f, t),
    "style": lambda f, t, img: losses.style_loss(losses.gram_matrix(f), losses.gram_matrix(t)),
    "tv": lambda f, t, img: losses.total_variation(img),
    "tv_ns": lambda f, t, img: losses.total_variation_neural_style(img),
    "guided_gram": lambda f, t, img: losses.guided_gram_matrix(f, t[..., 0]),
    "hist": lambda f, t, img: losses.histogram_loss(
        f, losses.match_histograms(f, losses.style_quantiles(t, 35))),
    "hist_masked": lambda f, t, img: losses.histogram_loss(
        f, losses.match_histograms_masked(f, t[..., 0], jnp.sort(t.reshape(35, 3), axis=0),
                                          jnp.int32(35)), t[..., 0]),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_plain_jit_and_vmap_agree(name):
    fn = LOSSES[name]
    plain = fn(FEATS, TARGET, IMAGE)
    np.testing.assert_allclose(jax.jit(fn)(FEATS, TARGET, IMAGE), plain, rtol=1e-5)
    batch = lambda a: jnp.stack([a, a * 0.5])
    batched = jax.vmap(fn)(batch(FEATS), batch(TARGET), batch(IMAGE))
    np.testing.assert_allclose(batched[0], plain, rtol=1e-5)
    np.testing.assert_allclose(batched[1], fn(FEATS * 0.5, TARGET * 0.5, IMAGE * 0.5), rtol=1e-5)


@pytest.mark.parametrize("name", ["content", "style", "tv", "tv_ns", "guided_gram", "hist",
                                  "hist_masked"])
def test_gradients_are_finite_and_nonzero(name):
    fn = LOSSES[name]
    scalar = lambda f, img: jnp.sum(fn(f, TARGET, img))
    grad = jax.grad(scalar, argnums=(0, 1))(FEATS, IMAGE)
    grad = grad[1] if name.startswith("tv") else grad[0]
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)


def _np_grid(x, k, s):
    """Patches at stride s, float64[P, k, k, C], and their top-left corners."""
    h, w, _ = x.shape
    corners = [(r, c) for r in range(0, h - k + 1, s) for c in range(0, w - k + 1, s)]
    return np.stack([x[r:r + k, c:c + k] for r, c in corners]).astype(np.float64), corners


def _np_cosines(a, b):
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)
    return unit(a) @ unit(b).T


def np_mrf(f, style, k, style_stride, stride=1, weights=None, guide=None, style_guide=None,
           guide_weight=1.0):
    """Brute force: every output patch (at `stride`) against every style patch (cosine of the
    features, plus guide_weight times the guides' cosine), then the (weighted) energy and the
    matched patches."""
    (out, corners), (sty, _) = _np_grid(f, k, stride), _np_grid(style, k, style_stride)
    score = _np_cosines(out, sty)
    if guide is not None:
        score += guide_weight * _np_cosines(_np_grid(guide, k, stride)[0],
                                            _np_grid(style_guide, k, style_stride)[0])
    nn = np.argmax(score, axis=1)
    w = np.ones(f.shape[:2]) if weights is None else weights
    energy = sum(np.sum(w[r:r + k, c:c + k, None] * (out[i] - sty[nn[i]]) ** 2)
                 for i, (r, c) in enumerate(corners))
    return energy, sty[nn], corners


MRF_STYLE = RNG.normal(size=(8, 9, 3)).astype(np.float32)


@pytest.mark.parametrize("style_stride,stride", [(1, 1), (2, 1), (2, 2), (1, 3)])
def test_mrf_term_matches_brute_force(style_stride, stride):
    candidates = patches.extract_patches(MRF_STYLE, 3, style_stride)
    np.testing.assert_allclose(losses.mrf_term(FEATS, candidates, stride),
                               np_mrf(FEATS, MRF_STYLE, 3, style_stride, stride)[0], rtol=1e-5)


def test_mrf_coverage_weights_give_cnnmrfs_gradient():
    """CNNMRF's gradient at a position is F - (average of the matched patches covering it)."""
    h, w, _ = FEATS.shape
    weights = losses.mrf_coverage_weights(h, w, 3, 2)
    candidates = patches.extract_patches(MRF_STYLE, 3, 1)
    _, chosen, corners = np_mrf(FEATS, MRF_STYLE, 3, 1, 2, weights)
    total, count = np.zeros(FEATS.shape), np.zeros(FEATS.shape[:2] + (1,))
    for patch, (r, c) in zip(chosen, corners):
        total[r:r + 3, c:c + 3] += patch
        count[r:r + 3, c:c + 3] += 1
    expected = np.where(count > 0, FEATS - total / np.maximum(count, 1), 0.0)
    grad = jax.grad(lambda f: losses.mrf_term(f, candidates, 2, jnp.asarray(weights)))(
        jnp.asarray(FEATS))
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(losses.mrf_term(FEATS, candidates, 2, jnp.asarray(weights)),
                               np_mrf(FEATS, MRF_STYLE, 3, 1, 2, weights)[0], rtol=1e-5)


def test_mrf_guide_channels_keep_matches_within_regions():
    h, w, _ = FEATS.shape
    guide = np.zeros((h, w, 2), np.float32)
    guide[:, : w // 2, 0] = guide[:, w // 2:, 1] = 1.0
    style_guide = np.zeros(MRF_STYLE.shape[:2] + (2,), np.float32)
    style_guide[: 4, :, 0] = style_guide[4:, :, 1] = 1.0
    candidates = patches.extract_patches(MRF_STYLE, 3, 1)
    got = losses.mrf_term(FEATS, candidates, 1, None, guide,
                          patches.extract_patches(style_guide, 3, 1), 10.0)
    expected, _, _ = np_mrf(FEATS, MRF_STYLE, 3, 1, 1, None, guide, style_guide, 10.0)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert abs(float(got) - np_mrf(FEATS, MRF_STYLE, 3, 1)[0]) > 1e-3 * expected  # it mattered
    # one region everywhere: the ranking is the features' alone
    one = np.zeros_like(guide)
    one[..., 0] = 1.0
    np.testing.assert_allclose(
        losses.mrf_term(FEATS, candidates, 1, None, one, patches.extract_patches(
            np.ones_like(style_guide), 3, 1), 10.0), np_mrf(FEATS, MRF_STYLE, 3, 1)[0], rtol=1e-5)


def test_mrf_term_rematches_at_every_evaluation_and_has_a_finite_gradient():
    candidates = patches.extract_patches(MRF_STYLE, 3, 1)
    grad = jax.jit(jax.grad(lambda f: losses.mrf_term(f, candidates)))(jnp.asarray(FEATS))
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)
    # a different output matches different style patches: the energy is not the first match's
    moved = FEATS[::-1].copy()
    np.testing.assert_allclose(losses.mrf_term(moved, candidates),
                               np_mrf(moved, MRF_STYLE, 3, 1)[0], rtol=1e-5)
    # the style itself is its own best match everywhere: zero energy, zero gradient
    zero = jax.grad(lambda f: losses.mrf_term(f, candidates))(jnp.asarray(MRF_STYLE))
    np.testing.assert_allclose(losses.mrf_term(MRF_STYLE, candidates), 0.0, atol=1e-4)
    np.testing.assert_allclose(zero, 0.0, atol=1e-4)
