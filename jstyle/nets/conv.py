"""Unpadded ("VALID") convolution, computed the way XLA:CPU runs fastest.

XLA:CPU runs a convolution with zero padding 2-28x faster than the same convolution without
padding (measured on jstyle's shapes: the fast network's layers at 512 px, patch norms of VGG
feature maps). So `valid_conv` computes the unpadded convolution as a padded one and drops the
extra first output row and column: the same numbers, for one row and column more work.
"""

from __future__ import annotations

import jax


def valid_conv(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
    """x float[B, H, W, C_in], kernel float[kh, kw, C_in, C_out] -> the unpadded convolution,
    float[B, (H - kh) // stride + 1, (W - kw) // stride + 1, C_out] (no bias)."""
    padded = jax.lax.conv_general_dilated(x, kernel, (stride, stride),
                                          ((stride, 0), (stride, 0)),
                                          dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return padded[:, 1:, 1:, :]
