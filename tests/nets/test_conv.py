"""valid_conv equals the unpadded convolution it stands for."""

import jax
import numpy as np
import pytest

from jstyle.nets.conv import valid_conv


@pytest.mark.parametrize("kernel_shape, stride", [((9, 9), 1), ((3, 5), 1), ((3, 3), 2),
                                                  ((1, 1), 1)])
def test_equals_the_unpadded_convolution(kernel_shape, stride):
    x = jax.random.normal(jax.random.key(0), (2, 13, 11, 5))
    kernel = jax.random.normal(jax.random.key(1), (*kernel_shape, 5, 4))
    plain = jax.lax.conv_general_dilated(x, kernel, (stride, stride), "VALID",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
    ours = valid_conv(x, kernel, stride)
    assert ours.shape == plain.shape
    np.testing.assert_allclose(ours, plain, atol=1e-4)
