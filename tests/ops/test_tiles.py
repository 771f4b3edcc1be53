"""Exact tiled objectives: the tiled loss terms and gradient equal the whole image's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jstyle import objective
from jstyle.engine import pyramid
from jstyle.engine.session import Session
from jstyle.ops import tiles
from jstyle.nets import vgg
from jstyle.methods import gatys


def _field(h, w, seed):
    """A smooth random colour field in 8-bit levels."""
    from jstyle import image
    rng = np.random.default_rng(seed)
    return image.resize(rng.uniform(size=(h // 8 + 2, w // 8 + 2, 3)).astype(np.float32),
                        h, w) * 255.0


def _data(weights, hp, content, style, regions=None):
    params = vgg.prepare(weights.params)
    scales = gatys.layer_scales(weights, hp)
    targets = gatys.compute_targets(params, scales, jnp.asarray(content), [jnp.asarray(style)],
                                    (1.0,), hp, weights.convention, regions)
    return gatys.Data(params, scales, targets, hp)


def _regions(h, w, hs, ws):
    """Two regions split at a slanted line, in the content and the style."""
    def split(h, w):
        rows, cols = np.mgrid[:h, :w]
        left = (cols < w * 0.4 + rows * 0.3).astype(np.float32)
        return np.stack([left, 1.0 - left])
    return split(h, w), [split(hs, ws)], np.ones((1, 2), bool)


def _value_and_grad(data, convention, image, grid):
    f = lambda x: gatys.objective(x, data, convention, tiles_grid=grid)
    return jax.jit(jax.value_and_grad(f))(image)


@pytest.mark.parametrize("grid", [(2, 2), (3, 2)])
@pytest.mark.parametrize("masked", [False, True])
def test_tiled_loss_and_gradient_equal_the_whole_images(tiny_weights, grid, masked):
    """Shallow layers (relu3_1 deepest: margin 32 px) on an odd-sized image, so the windows are
    smaller than the image and every term (content, Gram, histogram, TV) is tiled."""
    h, w = 101, 87
    hp = gatys.GatysParams(content_layers=("relu2_2",), style_layers=("relu1_1", "relu3_1"),
                           hist_layers=("relu2_1",), content_layer_weights=(1.0,),
                           style_layer_weights=(1.0, 2.0), hist_layer_weights=(1.0,),
                           hist_weight=3.0, tv_weight=0.01)
    regions = _regions(h, w, 64, 72) if masked else None
    data = _data(tiny_weights, hp, _field(h, w, 1), _field(64, 72, 2), regions)
    cut = tiles.plan(h, w, grid, objective.deepest_layer(hp))
    assert cut.grid == grid and cut.window[0] < h and cut.window[1] < w
    x = jnp.asarray(_field(h, w, 3))
    whole, whole_grad = _value_and_grad(data, tiny_weights.convention, x, None)
    tiled, tiled_grad = _value_and_grad(data, tiny_weights.convention, x, grid)
    assert float(whole) > 0 and np.all(np.isfinite(whole_grad))
    np.testing.assert_allclose(float(tiled), float(whole), rtol=1e-5)
    error = np.linalg.norm(tiled_grad - whole_grad) / np.linalg.norm(whole_grad)
    assert error < 1e-5, error
    terms = jax.jit(lambda x: gatys.loss_terms(x, data, tiny_weights.convention,
                                               tiles_grid=grid))(x)
    plain = gatys.loss_terms(x, data, tiny_weights.convention)
    for name in ("content", "style", "hist", "tv"):
        assert float(plain[name]) > 0
        np.testing.assert_allclose(float(terms[name]), float(plain[name]), rtol=1e-5)


def test_default_layers_tile_a_larger_image(tiny_weights):
    """relu5_1 deepest: 96 px margins on the 16 px pooling grid."""
    h, w = 417, 353
    hp = gatys.GatysParams()
    data = _data(tiny_weights, hp, _field(h, w, 4), _field(96, 80, 5))
    cut = tiles.plan(h, w, (2, 2), objective.deepest_layer(hp))
    assert cut.window[0] < h and cut.window[1] < w
    assert np.all(cut.starts % 16 == 0) and np.all(cut.cores[:, [0, 2]] % 16 == 0)
    x = jnp.asarray(_field(h, w, 6))
    whole, whole_grad = _value_and_grad(data, tiny_weights.convention, x, None)
    tiled, tiled_grad = _value_and_grad(data, tiny_weights.convention, x, (2, 2))
    np.testing.assert_allclose(float(tiled), float(whole), rtol=1e-5)
    assert np.linalg.norm(tiled_grad - whole_grad) / np.linalg.norm(whole_grad) < 1e-5


def test_plan_covers_every_position_once():
    cut = tiles.plan(1000, 700, (3, 4), "relu5_1")
    hits = np.zeros((1000, 700), int)
    for (r0, r1, c0, c1), (sr, sc) in zip(cut.cores, cut.starts):
        hits[r0:r1, c0:c1] += 1
        assert sr + cut.window[0] <= 1000 and sc + cut.window[1] <= 700
        assert sr <= max(0, r0 - 85) and min(1000, r1 + 85) <= sr + cut.window[0]
        assert sc <= max(0, c0 - 85) and min(700, c1 + 85) <= sc + cut.window[1]
    assert np.all(hits == 1)
    assert tiles.plan(40, 40, (8, 8), "relu5_1").grid == (2, 2)  # a core is one 16 px cell


@pytest.mark.parametrize("normalization", ["jstyle", "neural-style"])
def test_tiled_targets_equal_the_whole_images(tiny_weights, normalization):
    hp = gatys.GatysParams(content_layers=("relu2_2",), style_layers=("relu1_1", "relu3_1"),
                           content_layer_weights=(1.0,), style_layer_weights=(1.0, 1.0),
                           hist_layers=("relu2_1",), hist_layer_weights=(1.0,),
                           normalization=normalization)
    params, scales = vgg.prepare(tiny_weights.params), gatys.layer_scales(tiny_weights, hp)
    content, styles = jnp.asarray(_field(101, 87, 1)), [jnp.asarray(_field(93, 99, 2)),
                                                        jnp.asarray(_field(77, 81, 3))]
    make = lambda grid: gatys.compute_targets(params, scales, content, styles, (0.3, 0.7), hp,
                                              tiny_weights.convention, grid=grid)
    whole, tiled = make(None), make((3, 2))
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(tiled)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5,
                                   atol=1e-6 * float(np.abs(a).max()))


def test_a_tiled_run_makes_the_untiled_runs_image(tiny_weights):
    """--tile=2 through the whole run (targets, L-BFGS with its line search, progress terms)."""
    content, style = _field(300, 260, 7) / 255.0, _field(120, 100, 8) / 255.0
    opts = lambda tile: gatys.RunOptions(size=300, steps=3, print_every=0, tile=tile)
    run = lambda tile: gatys.run(jax.random.key(opts(tile).seed), gatys.Inputs(content, [style]),
                                 gatys.GatysParams(), opts(tile), tiny_weights,
                                 session=Session(progress=False))
    whole, tiled = run(1), run(2)
    assert whole.record["tiles"] == [[1, 1]] and tiled.record["tiles"] == [[2, 2]]
    assert np.abs(whole.image - content).max() > 0.01  # it moved
    np.testing.assert_allclose(tiled.image, whole.image, atol=2e-3)
    np.testing.assert_allclose(tiled.record["final_loss"]["total"],
                               whole.record["final_loss"]["total"], rtol=1e-3)


def test_the_record_names_the_tiles_used_not_those_asked():
    """A grid finer than the pooling grid allows is coarsened, and the record says so."""
    assert pyramid.tiles_used((64, 48), 1000, "relu5_1") == [4, 3]  # 16 px cells at relu5_1
    assert pyramid.tiles_used((64, 48), 1, "relu5_1") == [1, 1]
