"""A method's objective compiled once per (loss, optimiser settings) and reused by every
problem of the same shapes: every pyramid level, pass, frame or sweep batch; and the batch of
problems split over the devices.

  program, compile_program   the compiled optimisation of a `loss_terms`
  Problem, make_problem      one problem made ready: the compiled chunk, its first state, data
  local_mesh, shard          a batch of problems over this process's devices
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from jstyle.engine import optimize
from jstyle.engine.options import RunOptions
from jstyle.errors import InputError

FIRST_STEP_LEVELS = 1.0  # L-BFGS's first step: 1 level RMS per pixel (optimize.make_optimizer)


class Program(NamedTuple):
    """An objective's compiled optimisation, shared by every problem of its kind."""
    optimizer: optax.GradientTransformationExtraArgs
    chunk: Callable  # jitted (state, end, data) -> state, optimize.make_chunk
    terms: Callable  # jitted (image, data) -> {term: float32[] (batched: float32[K])}


@functools.lru_cache(maxsize=None)
def program(loss_terms: Callable, convention, remat: bool, optimizer: str,
            learning_rate: float, lbfgs_memory: int, linesearch: str, tol: float,
            data_axes=None, tol_interval: int = 1, tile: int = 1) -> Program:
    """The compiled program of a method's objective: built once per (loss, convention,
    optimiser settings, batch axes) and reused by every level, pass, frame or sweep batch;
    jit then compiles once per shape of the image and the data.

    Args:
      loss_terms: a module-level `loss_terms(image, data, convention, remat) -> {term name:
        float32[], ..., "total": float32[]}`, image float32[H, W, 3] in 8-bit levels; with
        `tile` > 1 it also takes `tiles_grid=(tile, tile)` (jstyle.ops.tiles).
      data_axes: None for one problem; for a batch of problems, the data's batch axes (a
        pytree prefix of the data: 0 where a leaf has a leading batch axis, None where it is
        shared), e.g. the method's `Data.sweep_axes()`.
    """
    transform = optimize.make_optimizer(optimizer, learning_rate, lbfgs_memory, linesearch,
                                        FIRST_STEP_LEVELS)
    search = linesearch if optimizer == "lbfgs" and linesearch != "none" else None
    tiled = {} if tile <= 1 else {"tiles_grid": (tile, tile)}
    objective = lambda image, data: loss_terms(image, data, convention, remat, **tiled)["total"]
    chunk = optimize.make_chunk(objective, transform, linesearch=search, tol=tol,
                                bounds=(0.0, 255.0), data_axes=data_axes,
                                tol_interval=tol_interval)
    terms = lambda image, data: loss_terms(image, data, convention, False, **tiled)
    if data_axes is not None:
        terms = jax.vmap(terms, in_axes=(0, data_axes))
    return Program(transform, chunk, jax.jit(terms))


def compile_program(loss_terms: Callable, convention, opts: RunOptions, data_axes=None
                    ) -> Program:
    """`program` with the optimiser settings of `opts`."""
    return program(loss_terms, convention, opts.remat, opts.optimizer, opts.learning_rate,
                   opts.lbfgs_memory, opts.linesearch, opts.tol, data_axes, opts.tol_interval,
                   max(1, opts.tile))


class Problem(NamedTuple):
    """One level made ready: the compiled chunk, its first state and the data it takes."""
    chunk: Callable  # Program.chunk: (state, end, data) -> state
    state: optimize.LoopState  # before the first step
    data: Any  # the method's Data (weights, targets, hyperparameters), the chunk's argument
    terms: Callable  # Program.terms: (image, data) -> {term name: float32[], "total": ...}
    content: np.ndarray  # float32[H, W, 3], 8-bit levels, resized
    styles: list[np.ndarray]  # float32[H_i, W_i, 3], 8-bit levels, resized
    blend: list[float] | None  # normalised style blend weights (None: the method has none)
    init: np.ndarray  # the initial image, 8-bit levels


def make_problem(loss_terms: Callable, data: Any, convention, opts: RunOptions,
                 content: np.ndarray, styles: list[np.ndarray], blend: list[float] | None,
                 init: np.ndarray) -> Problem:
    """A Problem on the (cached) compiled program of `loss_terms` (see `program`), starting
    from `init` (float32[H, W, 3], 8-bit levels)."""
    compiled = compile_program(loss_terms, convention, opts)
    return Problem(chunk=compiled.chunk, state=optimize.init(compiled.optimizer, init),
                   data=data, terms=compiled.terms, content=content, styles=styles, blend=blend,
                   init=init)


def local_mesh() -> jax.sharding.Mesh:
    """This process's devices on one axis, "points", with automatic sharding (XLA carries the
    split through the network). Under jax.distributed each process runs its own points on its
    own devices, so no computation spans hosts."""
    return jax.sharding.Mesh(np.array(jax.local_devices()), ("points",),
                             axis_types=(jax.sharding.AxisType.Auto,))


def shard(problem: Problem, mesh: jax.sharding.Mesh | None = None) -> Problem:
    """A batched problem over the devices (the sweep machinery): the points' states and the
    data's batched leaves (the data type's `sweep_axes()`: a sweep's hyperparameters, a clip's
    frames) split along the mesh's first axis, the rest (the network, shared targets)
    replicated. The compiled chunk then runs each device's points where they lie.

    Args:
      problem: a batch of problems (`sweep.setup`, a video pass).
      mesh: default: `local_mesh()`.
    Raises:
      InputError: the number of points is not a multiple of the number of devices.
    """
    mesh = mesh or local_mesh()
    points, devices = problem.state.image.shape[0], mesh.devices.shape[0]
    if points % devices:
        raise InputError(f"{points} points do not split over {devices} devices; use a multiple "
                         f"of {devices} points")
    spread = NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))
    same = NamedSharding(mesh, PartitionSpec())
    axes = type(problem.data).sweep_axes()
    data = jax.tree.map(lambda axis, d: jax.device_put(d, same if axis is None else spread),
                        axes, problem.data, is_leaf=lambda x: x is None)
    return problem._replace(state=jax.device_put(problem.state, spread), data=data)

