"""Each loss against a plain-numpy reference on small odd-sized inputs; plain, jit and vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jstyle import losses

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


LOSSES = {
    "gram": lambda f, t, img: losses.gram_matrix(f),
    "content": lambda f, t, img: losses.content_loss(f, t),
    "style": lambda f, t, img: losses.style_loss(losses.gram_matrix(f), losses.gram_matrix(t)),
    "tv": lambda f, t, img: losses.total_variation(img),
    "tv_ns": lambda f, t, img: losses.total_variation_neural_style(img),
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


@pytest.mark.parametrize("name", ["content", "style", "tv", "tv_ns"])
def test_gradients_are_finite_and_nonzero(name):
    fn = LOSSES[name]
    grad = jax.grad(lambda f, img: fn(f, TARGET, img), argnums=(0, 1))(FEATS, IMAGE)
    grad = grad[1] if name.startswith("tv") else grad[0]
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)
