"""Gatys, Ecker & Bethge (2016), "Image style transfer using convolutional neural networks":
the objective of `jstyle.objective` optimised coarse to fine, with colour control and
coarse-to-fine scale control (Gatys et al. 2017, "Controlling perceptual factors in neural style
transfer") and semantic masks.

Presets:
  * "jstyle" (default): the size-independent normalisation, coarse to fine (1/4, 1/2 and full
    size; levels under 128 px left out) with most steps where they are cheap, content weight 3.5
    and a total-variation weight of 0.005, chosen from measurements on the neutral evaluator
    (README, Defaults).
  * "classic": the same objective as one level of 500 L-BFGS steps with content weight 1 and
    no total variation (jstyle's default before).
  * "neural-style": jcjohnson/neural-style's normalisation and defaults (neural_style.lua:
    content_weight 5e0, style_weight 1e2, tv_weight 1e-3, image_size 512, num_iterations 1000,
    init random = mean pixel + 0.001 N(0, 1), learning_rate 1e1, lbfgs with 100 corrections),
    so weights known from it carry over. Its L-BFGS has no line search; jstyle's always uses
    optax's zoom line search.
"""

from __future__ import annotations

import jax

from jstyle.engine import pyramid
from jstyle.objective import (  # noqa: F401  (the objective's names, re-exported)
    NORMALIZATIONS, Data, GatysParams, Targets, compute_targets, deepest_layer, layer_scales,
    loss_terms, objective, prepare_data, validate)
from jstyle.engine.options import RunOptions
from jstyle.engine.session import Result, Session
from jstyle.nets.weights import VGGWeights

Params = GatysParams


DEFAULT_SCHEDULE = (100, 40, 15)  # L-BFGS steps at 1/4, 1/2 and full size (README, Defaults)
PRESETS: dict[str, tuple[GatysParams, RunOptions]] = {
    "jstyle": (GatysParams(content_weight=3.5, tv_weight=0.005),
               RunOptions(pyramid_levels=3, pyramid_steps=DEFAULT_SCHEDULE,
                          steps=DEFAULT_SCHEDULE[-1], pyramid_min_size=128, tol=1e-4,
                          tol_interval=5)),
    "classic": (GatysParams(), RunOptions()),
    "neural-style": (
        GatysParams(normalization="neural-style", content_weight=5.0, style_weight=100.0,
                    tv_weight=1e-3),
        RunOptions(size=512, steps=1000, init="noise", init_noise=0.001, learning_rate=10.0,
                   lbfgs_memory=100, tol=0.0, save_every=100)),
}


setup = pyramid.level_setup(prepare_data, loss_terms)  # one level: prepare_data, then the
#   problem on the shared compiled program
Inputs = pyramid.Inputs  # content, styles, and optionally labels and a start image


def run(key: jax.Array, inputs: Inputs, hp: GatysParams, opts: RunOptions, weights: VGGWeights,
        *, session: Session) -> Result:
    """Stylises `inputs.content` with `inputs.styles`, coarse to fine with
    `opts.pyramid_levels` > 1 (jstyle.engine.pyramid.run); `key` draws the noise init. Print
    sizes are cut into tiles (`--tile`, jstyle.ops.tiles) where the whole image would not fit
    in memory. See PRESETS for the defaults."""
    validate(hp, opts, len(inputs.styles))
    return pyramid.run("gatys", setup, inputs, hp, opts, weights, key, session=session,
                       deepest=deepest_layer(hp))
