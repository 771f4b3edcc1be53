"""Sweeps: K Gatys points as one vmapped program give each point's own single run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jstyle import image, sweep
from jstyle.errors import InputError
from jstyle.methods import gatys

CONTENT_PATH, STYLE_PATH = image.sample_paths()
CONTENT, STYLE = image.load(CONTENT_PATH, 64), image.load(STYLE_PATH, 64)
POINTS = [
    gatys.GatysParams(),
    gatys.GatysParams(content_weight=0.1, style_weight=100.0, tv_weight=0.01),
    gatys.GatysParams(style_layers=("relu1_1", "relu2_1"), style_layer_weights=(1.0, 2.0)),
]


def test_stack_maps_points_onto_the_union_of_layers():
    batched = sweep.stack(POINTS)
    assert batched.style_layers == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    np.testing.assert_array_equal(batched.style_layer_weights[1], [1.0, 1.0, 2.0])
    np.testing.assert_array_equal(batched.style_layer_weights[4], [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(batched.style_weight, [10.0, 100.0, 10.0])
    with pytest.raises(InputError, match="must share pooling"):
        sweep.stack([gatys.GatysParams(), gatys.GatysParams(pooling="avg")])


@pytest.mark.parametrize("optimizer,steps", [("adam", 4), ("lbfgs", 3)])
def test_vmapped_points_match_their_single_runs(vgg_weights, optimizer, steps):
    opts = gatys.RunOptions(size=48, steps=steps, optimizer=optimizer, tol=0.0)
    rng = np.random.default_rng(0)
    content = image.to_levels(image.resize_to_edge(CONTENT, 48))
    inits = np.stack([np.clip(content + rng.normal(0, 20, content.shape), 0, 255)
                      for _ in POINTS]).astype(np.float32)
    problem = sweep.setup(CONTENT, [STYLE], POINTS, opts, vgg_weights, inits)
    state = problem.chunk(problem.state, jnp.int32(steps), problem.data)
    assert state.image.shape == (3,) + content.shape
    terms = problem.terms(state.image, problem.data)
    for k, point in enumerate(POINTS):
        single = gatys.setup(CONTENT, [STYLE], point, opts, vgg_weights, jax.random.key(0),
                             init=inits[k])
        alone = single.chunk(single.state, jnp.int32(steps), single.data)
        np.testing.assert_allclose(state.image[k], alone.image, atol=0.05)
        np.testing.assert_allclose(terms["total"][k], single.terms(alone.image, single.data)[
            "total"], rtol=1e-3)
