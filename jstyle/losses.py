"""Loss terms of Gatys-style transfer: representations first, then comparisons.

Every function is pure and documented with its shapes, and each matches a plain-numpy reference
in tests/test_losses.py. Feature maps are one image's activations, float32[H, W, C] (D = H * W
positions, N = C channels).

jstyle's default objective (the "seed" formulas):
  L_c = sum_l w_c,l / (2 N_l D_l) * sum (F_l[O] - F_l[I])^2        = content_loss
  L_s = sum_l w_s,l / (2 N_l^2)   * sum (G_l[O] - G_l[S])^2        = style_loss of gram_matrix
  L_tv = 1 / D * sum_{x,y,c} (O_{x,y} - O_{x,y-1})^2 + (O_{x,y} - O_{x-1,y})^2
with G = F^T F / D (a mean over positions) and the image O in 8-bit levels [0, 255]. Dividing G
and L_tv by the number of positions makes every term independent of the image size, so weights
carry across sizes; the paper's L_tv is a plain sum (jstyle departs from it there).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gram_matrix(features: jax.Array, normalize: str = "positions") -> jax.Array:
    """Gram matrix of a feature map.

    Args:
      features: float[H, W, C].
      normalize: "positions": G = F^T F / (H W) (jstyle, size-independent);
        "elements": G = F^T F / (H W C) (jcjohnson/neural-style's GramMatrix + div(nElement)).
    Returns:
      float[C, C].
    """
    h, w, c = features.shape
    f = features.reshape(h * w, c)
    g = jnp.matmul(f.T, f, precision=jax.lax.Precision.HIGHEST)
    return g / (h * w * (c if normalize == "elements" else 1))


def content_loss(features: jax.Array, target: jax.Array, scale: float = 0.5) -> jax.Array:
    """scale * mean((F - F_target)^2) over all positions and channels.

    Args:
      features, target: float[H, W, C].
      scale: 0.5 gives the seed's 1 / (2 N D) * sum; 1.0 gives neural-style's MSECriterion.
    Returns:
      float[] loss.
    """
    return scale * jnp.mean(jnp.square(features - target))


def style_loss(gram: jax.Array, target_gram: jax.Array, scale: float = 0.5) -> jax.Array:
    """scale * mean((G - G_target)^2) over the N x N entries.

    Args:
      gram, target_gram: float[C, C] from `gram_matrix`.
      scale: 0.5 gives the seed's 1 / (2 N^2) * sum; 1.0 gives neural-style's MSECriterion.
    Returns:
      float[] loss.
    """
    return scale * jnp.mean(jnp.square(gram - target_gram))


def total_variation(image: jax.Array) -> jax.Array:
    """Squared total variation per position: 1/(H W) * sum of squared right and down differences.

    Args:
      image: float[H, W, C] (jstyle measures it in 8-bit levels, [0, 255]).
    Returns:
      float[] loss; each of the (H-1) x W vertical and H x (W-1) horizontal neighbour
      differences is squared and summed over channels, then divided by H W.
    """
    h, w, _ = image.shape
    dy = jnp.sum(jnp.square(image[1:] - image[:-1]))
    dx = jnp.sum(jnp.square(image[:, 1:] - image[:, :-1]))
    return (dx + dy) / (h * w)


def total_variation_neural_style(image: jax.Array) -> jax.Array:
    """jcjohnson/neural-style's TVLoss: 1/2 * sum over the top-left (H-1) x (W-1) positions.

    neural-style only writes the gradient; this is the loss whose gradient it is: half the sum of
    squared right and down differences at every position that has both neighbours.

    Args:
      image: float[H, W, C] in 8-bit levels (its Caffe input differs only by a constant mean).
    Returns:
      float[] loss.
    """
    core = image[:-1, :-1]
    dx = core - image[:-1, 1:]
    dy = core - image[1:, :-1]
    return 0.5 * jnp.sum(jnp.square(dx) + jnp.square(dy))
