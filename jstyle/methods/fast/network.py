"""The feed-forward style network of Johnson, Alahi & Fei-Fei (2016), as a Flax NNX module.

With the reference implementations' improvements over the paper: reflection padding instead of
zero padding (no dark borders), instance normalisation instead of batch normalisation (Ulyanov
et al. 2016; sharper results), and nearest-neighbour upsampling followed by a convolution
instead of fractionally strided convolutions (no checkerboard artifacts; Odena et al. 2016):

  9x9 conv 32 -> 3x3 conv 64 /2 -> 3x3 conv 128 /2 -> 5 residual blocks of 128
  -> upsample x2, 3x3 conv 64 -> upsample x2, 3x3 conv 32 -> 9x9 conv 3 -> (tanh + 1) / 2

every conv but the last followed by instance norm and ReLU. `width` scales every channel count
(0.5: the half-width network, about 4x fewer FLOPs).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jstyle.nets.conv import valid_conv
from jstyle.errors import InputError

STRIDE = 4  # two stride-2 convolutions: inputs are padded to a multiple of this
MIN_SIZE = 8  # the 9x9 convolution's reflection padding needs 5+ pixels; padded to STRIDE
FORWARD_GIB_PER_MPX = 0.51  # the forward pass's activations at width 1, per megapixel. On the
#   2-core development machine the peak resident memory of a forward pass (0.64, 1.09 and 2.77
#   GiB at 512, 1024 and 2048 px square, width 1; 1.20 GiB at 2048 px, width 0.25) is within 4%
#   of 0.52 GiB, plus the images, plus this times the width


def forward_gib(height: int, width: int, multiplier: float = 1.0) -> float:
    """Estimated memory (GiB) of the network's activations in one forward pass (no gradients)
    on an H x W image, its channels scaled by `multiplier` (TransformNet's width)."""
    return FORWARD_GIB_PER_MPX * multiplier * height * width / 1e6


def _reflect(x: jax.Array, pad: int) -> jax.Array:
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


class ConvLayer(nnx.Module):
    """Reflection padding, then a k x k convolution (optionally strided)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, *, rngs: nnx.Rngs):
        self.pad, self.stride = kernel // 2, stride
        # holds the parameters; the convolution itself is conv.valid_conv (faster on XLA:CPU)
        self.conv = nnx.Conv(cin, cout, (kernel, kernel), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return (valid_conv(_reflect(x, self.pad), self.conv.kernel[...], self.stride)
                + self.conv.bias[...])


class NormConv(nnx.Module):
    """ConvLayer, instance norm, ReLU; with `upsample`, nearest-neighbour x2 first."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1,
                 upsample: bool = False, *, rngs: nnx.Rngs):
        self.upsample = upsample
        self.conv = ConvLayer(cin, cout, kernel, stride, rngs=rngs)
        self.norm = nnx.InstanceNorm(cout, epsilon=1e-5, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.upsample:
            x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return jax.nn.relu(self.norm(self.conv(x)))


class Residual(nnx.Module):
    """x + IN(conv(ReLU(IN(conv(x))))), two 3x3 convolutions of `channels`."""

    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        self.first = NormConv(channels, channels, 3, rngs=rngs)
        self.conv = ConvLayer(channels, channels, 3, rngs=rngs)
        self.norm = nnx.InstanceNorm(channels, epsilon=1e-5, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.norm(self.conv(self.first(x)))


class TransformNet(nnx.Module):
    """images float32[B, H, W, 3] in [0, 1] -> stylised float32[B, H, W, 3] in [0, 1].

    Any H and W: the input is reflection-padded to a multiple of STRIDE and the output cropped
    back.
    """

    def __init__(self, width: float = 1.0, *, rngs: nnx.Rngs):
        c1, c2, c3 = (max(1, round(c * width)) for c in (32, 64, 128))
        self.width = width
        self.down = nnx.List([NormConv(3, c1, 9, rngs=rngs), NormConv(c1, c2, 3, 2, rngs=rngs),
                              NormConv(c2, c3, 3, 2, rngs=rngs)])
        self.residuals = nnx.List([Residual(c3, rngs=rngs) for _ in range(5)])
        self.up = nnx.List([NormConv(c3, c2, 3, upsample=True, rngs=rngs),
                            NormConv(c2, c1, 3, upsample=True, rngs=rngs)])
        self.out = ConvLayer(c1, 3, 9, rngs=rngs)

    def __call__(self, images: jax.Array) -> jax.Array:
        _, h, w, _ = images.shape
        if min(h, w) < MIN_SIZE:
            raise InputError(f"a {h}x{w} image is too small for the fast network; images must "
                             f"be at least {MIN_SIZE} px on each side")
        ph, pw = -h % STRIDE, -w % STRIDE
        x = jnp.pad(images, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="reflect")
        for layer in (*self.down, *self.residuals, *self.up):
            x = layer(x)
        return ((jnp.tanh(self.out(x)) + 1.0) / 2.0)[:, :h, :w, :]
