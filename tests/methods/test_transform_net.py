"""The feed-forward style network: shapes at odd sizes, value range, jit and vmap agree."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jstyle.methods.fast import network as transform_net


@pytest.fixture(scope="module")
def net():
    return transform_net.TransformNet(width=0.25, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("height,width", [(33, 47), (8, 8), (21, 10)])
def test_output_has_the_input_size_and_pixel_range(net, height, width):
    images = jax.random.uniform(jax.random.key(1), (2, height, width, 3))
    out = net(images)
    assert out.shape == (2, height, width, 3)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert np.isfinite(np.asarray(out)).all()


def test_images_are_stylised_independently_and_jit_agrees(net):
    images = jax.random.uniform(jax.random.key(2), (3, 20, 28, 3))
    batch = net(images)
    np.testing.assert_allclose(net(images[1:2])[0], batch[1], atol=1e-5)  # instance norm
    jitted = nnx.jit(lambda n, x: n(x))(net, images)
    np.testing.assert_allclose(jitted, batch, atol=1e-5)


def test_widths_and_parameter_count():
    full = transform_net.TransformNet(rngs=nnx.Rngs(0))
    half = transform_net.TransformNet(width=0.5, rngs=nnx.Rngs(0))
    count = lambda n: sum(x.size for x in jax.tree.leaves(nnx.state(n, nnx.Param)))
    assert count(full) == 1_679_235  # Johnson et al.'s network with instance norm
    assert 0.2 < count(half) / count(full) < 0.3
    assert half.down[0].conv.conv.kernel.shape == (9, 9, 3, 16)


def test_too_small_input_is_a_clear_error(net):
    from jstyle.errors import InputError
    with pytest.raises(InputError, match="at least 8"):
        net(jnp.zeros((1, 5, 30, 3)))


@pytest.mark.parametrize("kernel, stride", [(9, 1), (3, 2)])
def test_conv_layer_convolves_the_reflected_input(kernel, stride):
    layer = transform_net.ConvLayer(5, 4, kernel, stride, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(3), (2, 13, 11, 5))
    pad = kernel // 2
    padded = np.pad(np.asarray(x), ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    plain = jax.lax.conv_general_dilated(padded, layer.conv.kernel[...], (stride, stride),
                                         "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(layer(x), plain + layer.conv.bias[...], atol=1e-4)
