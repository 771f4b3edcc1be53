"""Many Gatys configurations as one compiled program.

The hyperparameters that vary between points (alpha, beta, w_tv, w_hist, the per-layer content
and style weights) are leaves of `GatysParams`, so K points stack into one pytree with a
leading batch axis and the optimisation is `jax.vmap`ped over it. Layer choices vary too: every
point is mapped onto the union of all points' layers, a layer a point does not use getting
weight 0. The network runs once per evaluation for the union; the content and style targets
are computed once and shared by every point.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jax.sharding import NamedSharding, PartitionSpec

from jstyle import optimize, vgg
from jstyle.errors import InputError
from jstyle.methods import gatys, pixels
from jstyle.weights import VGGWeights

_KINDS = ("content", "style", "hist")


def on_layers(hp: gatys.GatysParams, layers: dict[str, tuple[str, ...]]) -> gatys.GatysParams:
    """`hp` on the given content, style and histogram layers: its own layers keep their weights,
    the others get weight 0 (off)."""
    changes = {}
    for kind in _KINDS:
        own = dict(zip(getattr(hp, f"{kind}_layers"), getattr(hp, f"{kind}_layer_weights")))
        changes[f"{kind}_layers"] = layers[kind]
        changes[f"{kind}_layer_weights"] = tuple(float(own.get(l, 0.0)) for l in layers[kind])
    return dataclasses.replace(hp, **changes)


def stack(points: list[gatys.GatysParams]) -> gatys.GatysParams:
    """K points -> one GatysParams whose weights are float32[K] (layer weights tuples of
    float32[K]), on the union of the points' layers (in VGG order).

    Raises:
      InputError: the points differ in pooling or normalisation (these cannot vary in a batch).
    """
    if not points:
        raise InputError("a sweep needs at least one point")
    for field in ("pooling", "normalization"):
        if len({getattr(p, field) for p in points}) > 1:
            raise InputError(f"the points of one sweep must share {field}; run one sweep per "
                             f"{field}")
    layers = {kind: tuple(sorted({l for p in points for l in getattr(p, f"{kind}_layers")},
                                 key=vgg.LAYERS.index)) for kind in _KINDS}
    aligned = [on_layers(p, layers) for p in points]
    return jax.tree.map(lambda *xs: jnp.asarray(xs, jnp.float32), *aligned)


def setup(content: np.ndarray, styles: list[np.ndarray], points: list[gatys.GatysParams],
          opts: pixels.RunOptions, weights: VGGWeights, inits: np.ndarray) -> pixels.Problem:
    """One compiled program for all `points`: targets for the union of their layers, computed
    once, and a chunk vmapped over the points.

    Args:
      content, styles: float[H, W, 3] in [0, 1], any size (resized as `gatys.setup` does).
      points: K hyperparameter sets; `opts` applies to all.
      inits: float32[K, h, w, 3], each point's starting image in 8-bit levels (any size:
        resized to the content's).
    Returns:
      a pixels.Problem whose state and `terms` are batched (leading axis K); its data is
      (vgg params, layer scales, targets, stacked hyperparameters).
    """
    batched = stack(points)
    first = jax.tree.map(lambda x: float(x[0]), batched)  # hashable, as gatys.setup needs
    if any(float(p.hist_weight) > 0 for p in points):  # keep the histogram term for everyone
        first = dataclasses.replace(first, hist_weight=1.0)
    single = gatys.setup(content, styles, first, opts, weights, jax.random.key(0),
                         init=np.asarray(inits[0]))
    vgg_params, scales, targets, hp = single.data
    if hp.hist_layers != batched.hist_layers:  # no point uses the histogram loss
        batched = dataclasses.replace(batched, hist_layers=(), hist_layer_weights=())
    data = (vgg_params, scales, targets, batched)
    convention = weights.convention
    optimizer, chunk = pixels.compiled_chunk(
        functools.partial(gatys.objective, convention=convention, remat=opts.remat), opts,
        data_axes=(None, None, None, 0))
    starts = np.stack([pixels.start_image(None, opts, single.content, single.styles,
                                          np.asarray(i)) for i in inits])
    state = jax.vmap(lambda image: optimize.init(optimizer, image))(jnp.asarray(starts))
    terms = jax.vmap(lambda image, hp: gatys.loss_terms(image, vgg_params, scales, targets, hp,
                                                        convention), in_axes=(0, 0))
    return pixels.Problem(chunk=chunk, state=state, data=data,
                          terms=jax.jit(lambda images, data: terms(images, data[3])),
                          content=single.content, styles=single.styles, blend=single.blend,
                          init=starts)


def shard(problem: pixels.Problem, mesh: jax.sharding.Mesh | None = None) -> pixels.Problem:
    """The batch over the devices: the points' states and hyperparameters split along the
    mesh's first axis, the network and the targets replicated. The compiled chunk then runs
    each device's points where they lie.

    Args:
      problem: from `setup`.
      mesh: default: every device on one axis, "points" (automatic sharding: XLA carries the
        split through the network).
    Raises:
      InputError: the number of points is not a multiple of the number of devices.
    """
    mesh = mesh or jax.make_mesh((jax.device_count(),), ("points",),
                                 axis_types=(jax.sharding.AxisType.Auto,))  # XLA propagates
    points, devices = problem.state.image.shape[0], mesh.devices.shape[0]
    if points % devices:
        raise InputError(f"{points} points do not split over {devices} devices; use a multiple "
                         f"of {devices} points")
    spread = NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))
    same = NamedSharding(mesh, PartitionSpec())
    vgg_params, scales, targets, hp = problem.data
    data = (*jax.device_put((vgg_params, scales, targets), same), jax.device_put(hp, spread))
    return problem._replace(state=jax.device_put(problem.state, spread), data=data)
