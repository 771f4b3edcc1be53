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


SHARDED = """
import jax, jax.numpy as jnp, numpy as np
from jstyle import image, sweep, weights
from jstyle.methods import gatys
assert jax.device_count() == 8
content, style = (image.load(p, 48) for p in image.sample_paths())
points = [gatys.GatysParams(style_weight=10.0 ** (k - 3)) for k in range(8)]
opts = gatys.RunOptions(size=32, steps=2, optimizer="adam", tol=0.0)
inits = np.stack([image.to_levels(image.resize_to_edge(content, 32))] * 8).astype(np.float32)
problem = sweep.setup(content, [style], points, opts, weights.load(), inits)
plain = problem.chunk(jax.tree.map(jnp.copy, problem.state), jnp.int32(2), problem.data)
spread = sweep.shard(problem)
assert len(spread.state.image.sharding.device_set) == 8
sharded = problem.chunk(spread.state, jnp.int32(2), spread.data)
assert len(sharded.image.sharding.device_set) == 8
np.testing.assert_allclose(sharded.image, plain.image, atol=1e-3)
print("same on 8 devices")
"""


def test_sweep_shards_over_8_devices_with_the_same_results(vgg_weights):
    import os
    import subprocess
    import sys
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    result = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "same on 8 devices" in result.stdout
